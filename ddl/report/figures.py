"""The figures of the comparison report (matplotlib ``Figure`` objects on the Agg canvas; pyplot is never
imported, so no global state or display is touched).

Every ``fig_*`` function takes the groups of :mod:`ddl.report.groups` and returns a ``Figure``, or ``None`` when
no group has the data it needs.  Curves are means over seeds with a ±1 std band; noise is aggregated in log space
(geometric mean, band ×/÷ the geometric std).  The plotting helpers and axis labels are those of the per-run
figures (:mod:`analysis.figures`); "size" is :attr:`analysis.result.DualityResult.size`, ``Σ_k σ_w,k``.
:data:`FIGURES` lists the figures in report order with the text shown around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import (
    CONTRIBUTION_LABEL,
    CUMULATIVE_CONTRIBUTION_LABEL,
    CUMULATIVE_SIGMA_W_LABEL,
    DIRECTION_LABEL,
    EIGENVALUE_LABEL,
    SIGMA_G_LABEL,
    SIGMA_W_LABEL,
    SIZE_LABEL,
    WEIGHT_NORM_LABEL,
    grid,
    legend,
    mark_split,
    plot_band,
    sharpness_points,
)
from ddl.algorithms import communication_of
from ddl.report.clock import fig_clock
from ddl.report.groups import Group
from ddl.report.partition import fig_partition, has_partition
from ddl.report.runs import noise_series
from ddl.report.stats import Band, direction_band, metric_band, noise_band, run_numbers


def _band(ax, b: Band, color: str, label: str | None, log: bool = False, ls: str = "-", lw: float = 1.6):
    plot_band(ax, b.x, b.mean, b.std, color, label, log=log, ls=ls, lw=lw)


def _duality_figure(groups: list[Group], size: tuple[float, float], panels: int):
    """The groups that have a duality analysis, and a figure with ``panels`` axes side by side for them
    (``(groups, None, (None,) * panels)`` when none has one)."""
    with_d = [g for g in groups if g.dualities()]
    if not with_d:
        return with_d, None, (None,) * panels
    fig = Figure(figsize=size)
    axes = fig.subplots(1, panels)
    return with_d, fig, (tuple(axes) if panels > 1 else (axes,))


def _seeds_label(g: Group) -> str:
    return f"{g.label} ({len(g.runs)} seed{'s' if len(g.runs) != 1 else ''})"


def _mark_median_split(ax, g: Group):
    """The sharp | flat split of a group: the median n_sharp over its seeds (for split rules whose sharp
    directions lead in eigenvalue order; the reference's top-σ_g rule is named in the report instead)."""
    ns = [int(d.n_sharp or 0) for d in g.dualities() if d.sharp_mask()[: d.n_sharp].all()]
    if ns:
        mark_split(ax, float(np.median(ns)), g.color)


# ---------------------------------------------------------------------------------------------------------
def fig_curves(groups: list[Group]) -> Figure | None:
    """Train/test loss (log) and error (%) against epoch."""
    if not any(metric_band(g.runs, "train_loss") for g in groups):
        return None
    fig = Figure(figsize=(11, 7.2))
    axes = fig.subplots(2, 2)
    panels = (("train_loss", "training loss", True), ("test_loss", "test loss", True),
              ("train_err", "training error (%)", False), ("test_err", "test error (%)", False))  # fmt: skip
    for ax, (key, title, log) in zip(axes.flat, panels):
        for g in groups:
            b = metric_band(g.runs, key)
            if b is None:
                continue
            if not log:
                b = b.scaled(100)
            _band(ax, b, g.color, _seeds_label(g))
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    grid(*axes.flat)
    legend(axes[0, 0])
    fig.tight_layout()
    return fig


def fig_final(groups: list[Group]) -> Figure | None:
    """Final test error per group (bars: mean ± std, dots: seeds) and the gap split per group."""
    nums = [g.numbers() for g in groups]
    if not any(np.isfinite(n["test_err"]["mean"]) for n in nums):
        return None
    has_gap = any(np.isfinite(n["pairwise_gap"]["mean"]) for n in nums)
    fig = Figure(figsize=(11 if has_gap else 5.8, 4.2))
    axes = fig.subplots(1, 2 if has_gap else 1)
    ax1 = axes[0] if has_gap else axes
    x = np.arange(len(groups))
    for i, (g, n) in enumerate(zip(groups, nums)):
        e = n["test_err"]
        ax1.bar(i, 100 * e["mean"], yerr=100 * e["std"] if np.isfinite(e["std"]) else None, color=g.color,
                alpha=0.75, capsize=4)  # fmt: skip
        seeds = [100 * run_numbers(r)["test_err"] for r in g.runs]
        ax1.plot(np.full(len(seeds), i) + np.linspace(-0.15, 0.15, len(seeds)), seeds, "k.", ms=5)
    ax1.set_xticks(x, [g.label for g in groups], rotation=12, ha="right", fontsize=8)
    ax1.set_ylabel("final test error (%)")
    ax1.set_title("test error (bar: mean ± std over seeds, dots: seeds)")
    lo = min((100 * run_numbers(r)["test_err"] for g in groups for r in g.runs), default=0.0)
    if np.isfinite(lo):
        ax1.set_ylim(bottom=max(0.0, 0.8 * lo))
    if has_gap:
        ax2 = axes[1]
        keys = (("true_gap", "true gap"), ("pairwise_gap", "A-W pairwise"), ("sharp_gap", "sharp part"),
                ("flat_gap", "flat part"))  # fmt: skip
        w = 0.8 / len(groups)
        for i, (g, n) in enumerate(zip(groups, nums)):
            m = [n[k]["mean"] for k, _ in keys]
            s = [n[k]["std"] if np.isfinite(n[k]["std"]) else 0.0 for k, _ in keys]
            ax2.bar(np.arange(len(keys)) + (i - (len(groups) - 1) / 2) * w, m, w, yerr=s, color=g.color, alpha=0.75,
                    capsize=3, label=g.label)  # fmt: skip
        ax2.axhline(0, color="k", lw=0.6)
        ax2.set_xticks(np.arange(len(keys)), [lab for _, lab in keys])
        ax2.set_ylabel("loss gap")
        ax2.set_title("generalization gap and its sharp / flat split")
        legend(ax2)
        grid(ax2)
    grid(ax1)
    fig.tight_layout()
    return fig


SIGMA_G_FLOOR = 1e-8  # σ_g axis floor, relative to the largest mean σ_g plotted


def fig_sigma_g(groups: list[Group]) -> Figure | None:
    """σ_g,k against k (log-log, mean ± std over seeds) and σ_g against λ (log-log scatter, all seeds)."""
    with_d, fig, (ax1, ax2) = _duality_figure(groups, (11, 4.3), 2)
    if fig is None:
        return None
    top = 0.0
    for g in with_d:
        b = direction_band(g.runs, "sigma_g")
        _band(ax1, b.where(b.mean > 0), g.color, _seeds_label(g))
        _mark_median_split(ax1, g)
        top = max(top, float(np.nanmax(b.mean, initial=0.0)))
        first = True
        for d in g.dualities():
            lam, sg = sharpness_points(d)
            ax2.scatter(lam, sg, s=7, alpha=0.5, color=g.color, lw=0, label=g.label if first else None)
            first = False
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(DIRECTION_LABEL)
    ax1.set_ylabel(SIGMA_G_LABEL)
    ax1.set_title(r"sharpness determinant $\sigma_g$ (dotted: sharp | flat split)")
    # numerically null directions (σ_g ~ 1e-50 where a layer has dead features) would squash every real curve
    # into the top of the axis; the floor is stated on the figure
    if top > 0 and ax1.get_ylim()[0] < top * SIGMA_G_FLOOR:
        ax1.set_ylim(bottom=top * SIGMA_G_FLOOR)
        ax1.text(0.99, 0.01, f"axis floor {SIGMA_G_FLOOR:g} × the largest σ_g", transform=ax1.transAxes,
                 ha="right", va="bottom", fontsize=7, color="0.4")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel(EIGENVALUE_LABEL)
    ax2.set_ylabel(SIGMA_G_LABEL)
    ax2.set_title(r"$\sigma_g$ against $\lambda$ (all seeds; $\lambda \approx 0$ left out)")
    grid(ax1, ax2)
    legend(ax1)
    legend(ax2)
    fig.tight_layout()
    return fig


def fig_sigma_w(groups: list[Group]) -> Figure | None:
    """Cumulative Σ_{j≤k} σ_w,j and σ_w,k against k (mean ± std over seeds)."""
    with_d, fig, (ax1, ax2) = _duality_figure(groups, (11, 4.3), 2)
    if fig is None:
        return None
    for g in with_d:
        _band(ax1, direction_band(g.runs, "sigma_w", cumulative=True), g.color, _seeds_label(g))
        b = direction_band(g.runs, "sigma_w")
        _band(ax2, b.where(b.mean > 0), g.color, _seeds_label(g), lw=1.0)
    ax1.set_xscale("log")
    ax1.set_xlabel(DIRECTION_LABEL)
    ax1.set_ylabel(CUMULATIVE_SIGMA_W_LABEL)
    ax1.set_title(r"size determinant, cumulative $\sum_{j\leq k}\sigma_{w,j}$")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("direction k")
    ax2.set_ylabel(SIGMA_W_LABEL)
    ax2.set_title(r"$\sigma_{w,k}$ per direction")
    grid(ax1, ax2)
    legend(ax1)
    fig.tight_layout()
    return fig


def fig_contributions(groups: list[Group]) -> Figure | None:
    """ΔL_k per direction and cumulatively (mean ± std over seeds), split marked."""
    with_d, fig, (ax1, ax2) = _duality_figure(groups, (11, 4.3), 2)
    if fig is None:
        return None
    for g in with_d:
        _band(ax1, direction_band(g.runs, "contributions"), g.color, _seeds_label(g), lw=1.0)
        _band(ax2, direction_band(g.runs, "contributions", cumulative=True), g.color, _seeds_label(g))
        _mark_median_split(ax1, g)
        _mark_median_split(ax2, g)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel(DIRECTION_LABEL)
    ax1.set_ylabel(CONTRIBUTION_LABEL)
    ax1.set_title("gap contribution per direction (dotted: sharp | flat)")
    ax2.set_ylabel(CUMULATIVE_CONTRIBUTION_LABEL)
    ax2.set_title("cumulative gap")
    grid(ax1, ax2)
    legend(ax2)
    fig.tight_layout()
    return fig


def fig_noise_time(groups: list[Group]) -> Figure | None:
    """Noise strength over training (SSGD: ‖ξ‖²; DPSGD: total ‖ξ+η_DP‖² and extra ‖η_DP‖²) and λ_max."""
    with_n = [g for g in groups if noise_band(g.runs, "ssgd_noise_sq") is not None]
    if not with_n:
        return None
    fig = Figure(figsize=(11, 4.3))
    ax1, ax2 = fig.subplots(1, 2)
    for g in with_n:
        if not communication_of(g.algo, g.config).learners_agree:
            _band(ax1, noise_band(g.runs, "total_noise_sq"), g.color, f"{g.label}: total ‖ξ+η_DP‖²", log=True)
            _band(ax1, noise_band(g.runs, "dpsgd_noise_sq"), g.color, f"{g.label}: extra ‖η_DP‖²", log=True,
                       ls="--", lw=1.2)  # fmt: skip
        else:
            _band(ax1, noise_band(g.runs, "ssgd_noise_sq"), g.color, f"{g.label}: ‖ξ‖²", log=True)
        _band(ax2, noise_band(g.runs, "sharpness"), g.color, _seeds_label(g), log=True)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("squared norm of the noise")
    ax1.set_title("noise at the average weight over training")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(r"top Hessian eigenvalue $\lambda_{max}$")
    ax2.set_title("landscape sharpness at the average weight")
    grid(ax1, ax2)
    legend(ax1)
    legend(ax2)
    fig.tight_layout()
    return fig


def fig_noise_sharpness(groups: list[Group]) -> Figure | None:
    """Fig. 6A: noise strength against the top Hessian eigenvalue, every measurement of every seed."""
    with_n = [g for g in groups if any(noise_series(r.noise) for r in g.runs)]
    if not with_n:
        return None
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    for g in with_n:
        first = True
        for r in g.runs:
            s = noise_series(r.noise)
            if not s:
                continue
            lam = s["sharpness"]
            if not communication_of(g.algo, g.config).learners_agree:
                ok = (lam > 0) & (s["dpsgd_noise_sq"] > 0)
                ax.scatter(lam[ok], s["dpsgd_noise_sq"][ok], s=14, marker="^", color=g.color, alpha=0.7, lw=0,
                           label=f"{g.label}: extra ‖η_DP‖²" if first else None)  # fmt: skip
                ok = (lam > 0) & (s["ssgd_noise_sq"] > 0)
                ax.scatter(lam[ok], s["ssgd_noise_sq"][ok], s=12, marker="o", facecolors="none",
                           edgecolors=g.color, alpha=0.6, label=f"{g.label}: its ‖ξ‖²" if first else None)
            else:
                ok = (lam > 0) & (s["ssgd_noise_sq"] > 0)
                ax.scatter(lam[ok], s["ssgd_noise_sq"][ok], s=14, marker="o", color=g.color, alpha=0.7, lw=0,
                           label=f"{g.label}: ‖ξ‖²" if first else None)  # fmt: skip
            first = False
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"top Hessian eigenvalue $\lambda_{max}$ at $\bar w$")
    ax.set_ylabel("squared norm of the noise")
    ax.set_title("noise against sharpness (paper Fig. 6A)")
    grid(ax)
    legend(ax)
    fig.tight_layout()
    return fig


def fig_size_vs_norm(groups: list[Group]) -> Figure | None:
    """Σ_k σ_w,k of every run against the Frobenius norm of the analysed layer's weights."""
    with_d, fig, (ax,) = _duality_figure(groups, (5.6, 4.3), 1)
    if fig is None:
        return None
    for g in with_d:
        pts = [(float(d.weight_norm), d.size) for d in g.dualities()]
        pts = np.array([p for p in pts if np.isfinite(p[0])]).reshape(-1, 2)
        ax.plot(pts[:, 0], pts[:, 1], "o", color=g.color, label=_seeds_label(g))
    ax.set_xlabel(WEIGHT_NORM_LABEL)
    ax.set_ylabel(SIZE_LABEL)
    ax.set_title("size against weight norm (one point per run)")
    grid(ax)
    legend(ax)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# the figures in report order, with their text
# ---------------------------------------------------------------------------------------------------------
NEEDS_DUALITY = "no run has a duality analysis: run `ddl analyze RUN` on each run"
NEEDS_NOISE = "no run has noise measurements: train with `--measure-noise K` (e.g. K = 20)"
LACKS_DUALITY = "no duality analysis (`ddl analyze RUN`)"
LACKS_NOISE = "no noise data (`--measure-noise K`)"


@dataclass(frozen=True)
class ReportFigure:
    """A figure of a report: ``draw(groups)`` makes it (``None`` without data) and the text goes around it."""

    name: str  # file stem and HTML anchor
    draw: Callable[[list[Group]], Figure | None]
    title: str
    intro: str  # what it shows and what to look for
    needs: str  # shown instead when no group has the data
    lacks: str = ""  # shown for each group without the data while others have it
    has_data: Callable[[Group], bool] | None = None

    def lacking(self, groups: list[Group]) -> list[str]:
        """``"label: what is missing"`` for the groups that lack this figure's data."""
        if self.has_data is None:
            return []
        return [f"{g.label}: {self.lacks}" for g in groups if not self.has_data(g)]


def _has_clock(g: Group) -> bool:
    return any("sim_time_s" in rec for r in g.runs for rec in r.metrics)


def _has_duality(g: Group) -> bool:
    return bool(g.dualities())


def _duality_figure_spec(name, draw, title, intro) -> ReportFigure:
    return ReportFigure(name, draw, title, intro, NEEDS_DUALITY, LACKS_DUALITY, _has_duality)


def _noise_figure_spec(name, draw, title, intro) -> ReportFigure:
    return ReportFigure(name, draw, title, intro, NEEDS_NOISE, LACKS_NOISE, Group.has_noise)


FIGURES: tuple[ReportFigure, ...] = (
    ReportFigure(
        "curves", fig_curves, "Training curves",
        "Loss and error of the averaged model w̄ at every evaluation; lines are means over seeds, bands ±1 std. "
        "Look for which configuration ends lower on the test panels and whether the bands overlap.",
        "no run has metrics.jsonl",
    ),
    ReportFigure(
        "final", fig_final, "Final test error and the generalization gap",
        "Left: final test error per configuration. Right: the true gap L_test − L_train of the analysed model, "
        "the activity-weight estimate ΔL_p = mean_n Δℓ_n and its split into the sharp directions "
        "Σ_{k sharp} ΔL_k (the split rule is named under Numbers) and the flat rest. Look for whether a lower "
        "test error comes with a smaller sharp part.",
        "no run has a final evaluation",
        "no duality analysis, so no gap bars (`ddl analyze RUN`)", _has_duality,
    ),
    _duality_figure_spec(
        "sigma_g", fig_sigma_g, "Sharpness determinant σ_g (“flatter in the sharp directions”)",
        "σ_g,k, the spread of the effective gradients along Hessian direction k (sharpest first), tracks the "
        "curvature λ_k (right). Look for DPSGD's curve below SSGD's in the first, sharp directions and the two "
        "meeting in the flat ones.",
    ),
    _duality_figure_spec(
        "sigma_w", fig_sigma_w, "Size determinant σ_w (“same size”)",
        "σ_w,k, the spread of the dual weights along direction k, accumulated over the directions as in the "
        "paper (the running sum smooths the per-direction noise and ends at the size Σ_k σ_w,k). Look for the "
        "cumulative curves lying on top of each other: the solutions have the same size.",
    ),
    _duality_figure_spec(
        "size_vs_norm", fig_size_vs_norm, "Size against the weight norm",
        "The size Σ_k σ_w,k of each run against ‖W‖_F of the analysed layer: σ_w is an activity-weighted norm "
        "of the solution (docs/theory.md). Look for whether a larger size comes with larger weights or with a "
        "different activity weighting.",
    ),
    _duality_figure_spec(
        "contributions", fig_contributions, "Gap contributions ΔL_k",
        "ΔL_k = ρ_k σ_g,k σ_w,k per direction and summed up to k (the right panel ends at the A-W gap minus the "
        "small mean terms). Look for where the configurations' gaps part: in the first, sharp directions or in "
        "the many flat ones.",
    ),
    _noise_figure_spec(
        "noise_time", fig_noise_time, "SSGD and DPSGD noise during training",
        "Left: the minibatch noise ξ = ∇L_B(w̄) − ∇L(w̄) of SSGD, and for DPSGD the total ξ + η_DP (solid) and "
        "its extra, landscape-dependent part η_DP = (1/n) Σ_a [∇L_μa(w_a) − ∇L_μa(w̄)] (dashed). Right: the top "
        "Hessian eigenvalue of the whole model at w̄. Geometric means over seeds, bands ×/÷ the geometric std; "
        "step 0 (identical learners, η_DP = 0) is left out. Look for DPSGD's total noise above SSGD's, most of "
        "all early, while the landscape is sharp.",
    ),
    _noise_figure_spec(
        "noise_sharpness", fig_noise_sharpness, "Noise against sharpness (paper Fig. 6A)",
        "Every measurement of every seed: noise strength against λ_max at that moment. Look for DPSGD's extra "
        "noise ‖η_DP‖² rising with λ_max: the noise is larger where the landscape is sharper.",
    ),
    ReportFigure(
        "clock", fig_clock, "Against simulated wall clock",
        "Training loss and test error of every run against the simulated time its steps would take on the "
        "cluster the run's clock flags describe (docs/clock.md), and the simulated time each run needed to reach "
        "the lowest test error every run reached (bars: mean ± std over seeds, dots: seeds). Look for which "
        "algorithm gets there first: DPSGD's cheaper steps against the extra steps it may need.",
        "no run has simulated time: train with the clock on (the default; `--clock`)",
        "no simulated time (trained with `--no-clock`)", _has_clock,
    ),
    ReportFigure(
        "partition", fig_partition, "The learners' data (non-IID shards)",
        "Each learner's class fractions in its own shard of the training set (`--partition dirichlet`: every "
        "class split among the learners in proportions ~ Dir(α); one seed per configuration). Look for how "
        "concentrated the rows are: small α gives each learner few classes.",
        "every run samples IID data (`--partition iid`)",
        "IID data", has_partition,
    ),
)  # fmt: skip
