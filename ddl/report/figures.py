"""The figures of the comparison report (matplotlib ``Figure`` objects on the Agg canvas; pyplot is never
imported, so no global state or display is touched).

Every function takes the groups of :mod:`ddl.report.data` and returns a ``Figure``, or ``None`` when no
group has the data it needs.  Curves are means over seeds with a ±1 std band; noise is aggregated in log space
(geometric mean, band ×/÷ the geometric std).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddl.report.data import Band, Group, direction_band, metric_band, noise_band, noise_series

DPI = 110
# eigenvalues below this fraction of the largest are numerically zero (e.g. the softmax null space of a final
# layer); they are left out of the log-log σ_g-vs-λ scatter
ZERO_EIGENVALUE = 1e-10


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas, fixed DPI, no timestamp metadata)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _plot_band(ax, b: Band, color: str, label: str, log: bool = False, ls: str = "-", lw: float = 1.6):
    y = np.exp(b.mean) if log else b.mean
    ax.plot(b.x, y, ls=ls, color=color, lw=lw, label=label)
    has = np.isfinite(b.std)
    if has.any():
        if log:
            lo, hi = np.exp(b.mean - b.std), np.exp(b.mean + b.std)
        else:
            lo, hi = b.mean - b.std, b.mean + b.std
        ax.fill_between(b.x, np.where(has, lo, np.nan), np.where(has, hi, np.nan), color=color, alpha=0.18, lw=0)


def _grid(*axes):
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)


def _legend(ax, **kw):
    h, _ = ax.get_legend_handles_labels()
    if h:
        ax.legend(fontsize=8, **kw)


def _duality_figure(groups: list[Group], size: tuple[float, float], panels: int):
    """The groups that have a duality analysis, and a figure with ``panels`` axes side by side for them
    (``(groups, None, (None,) * panels)`` when none has one)."""
    with_d = [g for g in groups if g.dualities()]
    if not with_d:
        return with_d, None, (None,) * panels
    fig = Figure(figsize=size)
    axes = fig.subplots(1, panels)
    return with_d, fig, (tuple(axes) if panels > 1 else (axes,))


def _n(g: Group) -> str:
    return f"{g.label} ({len(g.runs)} seed{'s' if len(g.runs) != 1 else ''})"


# ---------------------------------------------------------------------------------------------------------
def fig_curves(groups: list[Group]) -> Figure | None:
    """Train/test loss (log) and error (%) against epoch."""
    if not any(metric_band(g, "train_loss") for g in groups):
        return None
    fig = Figure(figsize=(11, 7.2))
    axes = fig.subplots(2, 2)
    panels = (("train_loss", "training loss", True), ("test_loss", "test loss", True),
              ("train_err", "training error (%)", False), ("test_err", "test error (%)", False))  # fmt: skip
    for ax, (key, title, log) in zip(axes.flat, panels):
        for g in groups:
            b = metric_band(g, key)
            if b is None:
                continue
            if not log:
                b = Band(b.x, 100 * b.mean, 100 * b.std, b.n)
            _plot_band(ax, b, g.color, _n(g))
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    _grid(*axes.flat)
    _legend(axes[0, 0])
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
        seeds = [100 * r.numbers()["test_err"] for r in g.runs]
        ax1.plot(np.full(len(seeds), i) + np.linspace(-0.15, 0.15, len(seeds)), seeds, "k.", ms=5)
    ax1.set_xticks(x, [g.label for g in groups], rotation=12, ha="right", fontsize=8)
    ax1.set_ylabel("final test error (%)")
    ax1.set_title("test error (bar: mean ± std over seeds, dots: seeds)")
    lo = min((100 * r.numbers()["test_err"] for g in groups for r in g.runs), default=0.0)
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
        _legend(ax2)
        _grid(ax2)
    _grid(ax1)
    fig.tight_layout()
    return fig


def _mark_split(ax, g: Group):
    ns = [int(getattr(d, "n_sharp", 0) or 0) for d in g.dualities()]
    if ns:
        ax.axvline(float(np.median(ns)) + 0.5, color=g.color, ls=":", lw=1.2)


def fig_sigma_g(groups: list[Group]) -> Figure | None:
    """σ_g,k against k (log-log, mean ± std over seeds) and σ_g against λ (log-log scatter, all seeds)."""
    with_d, fig, (ax1, ax2) = _duality_figure(groups, (11, 4.3), 2)
    if fig is None:
        return None
    for g in with_d:
        b = direction_band(g, "sigma_g")
        ok = b.mean > 0
        _plot_band(ax1, Band(b.x[ok], b.mean[ok], b.std[ok], b.n[ok]), g.color, _n(g))
        _mark_split(ax1, g)
        first = True
        for d in g.dualities():
            lam, sg = np.asarray(d.eigenvalues), np.asarray(d.sigma_g)
            ok = (lam > ZERO_EIGENVALUE * np.max(lam, initial=0.0)) & (sg > 0)
            ax2.scatter(lam[ok], sg[ok], s=7, alpha=0.5, color=g.color, lw=0, label=g.label if first else None)
            first = False
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("direction k (Hessian eigenvalue order, sharpest first)")
    ax1.set_ylabel(r"$\sigma_{g,k}$")
    ax1.set_title(r"sharpness determinant $\sigma_g$ (dotted: sharp | flat split)")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel(r"Hessian eigenvalue $\lambda_k$")
    ax2.set_ylabel(r"$\sigma_{g,k}$")
    ax2.set_title(r"$\sigma_g$ against $\lambda$ (all seeds; $\lambda \approx 0$ left out)")
    _grid(ax1, ax2)
    _legend(ax1)
    _legend(ax2)
    fig.tight_layout()
    return fig


def fig_sigma_w(groups: list[Group]) -> Figure | None:
    """Cumulative Σ_{j≤k} σ_w,j and σ_w,k against k (mean ± std over seeds)."""
    with_d, fig, (ax1, ax2) = _duality_figure(groups, (11, 4.3), 2)
    if fig is None:
        return None
    for g in with_d:
        _plot_band(ax1, direction_band(g, "sigma_w", cumulative=True), g.color, _n(g))
        b = direction_band(g, "sigma_w")
        ok = b.mean > 0
        _plot_band(ax2, Band(b.x[ok], b.mean[ok], b.std[ok], b.n[ok]), g.color, _n(g), lw=1.0)
    ax1.set_xscale("log")
    ax1.set_xlabel("direction k (sharpest first)")
    ax1.set_ylabel(r"$\sum_{j\leq k}\sigma_{w,j}$")
    ax1.set_title(r"size determinant, cumulative $\sum_{j\leq k}\sigma_{w,j}$")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("direction k")
    ax2.set_ylabel(r"$\sigma_{w,k}$")
    ax2.set_title(r"$\sigma_{w,k}$ per direction")
    _grid(ax1, ax2)
    _legend(ax1)
    fig.tight_layout()
    return fig


def fig_contributions(groups: list[Group]) -> Figure | None:
    """ΔL_k per direction and cumulatively (mean ± std over seeds), split marked."""
    with_d, fig, (ax1, ax2) = _duality_figure(groups, (11, 4.3), 2)
    if fig is None:
        return None
    for g in with_d:
        _plot_band(ax1, direction_band(g, "contributions"), g.color, _n(g), lw=1.0)
        _plot_band(ax2, direction_band(g, "contributions", cumulative=True), g.color, _n(g))
        _mark_split(ax1, g)
        _mark_split(ax2, g)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("direction k (sharpest first)")
    ax1.set_ylabel(r"$\Delta L_k=\rho_k\sigma_{g,k}\sigma_{w,k}$")
    ax1.set_title("gap contribution per direction (dotted: sharp | flat)")
    ax2.set_ylabel(r"$\sum_{j\leq k}\Delta L_j$")
    ax2.set_title("cumulative gap")
    _grid(ax1, ax2)
    _legend(ax2)
    fig.tight_layout()
    return fig


def fig_noise_time(groups: list[Group]) -> Figure | None:
    """Noise strength over training (SSGD: ‖ξ‖²; DPSGD: total ‖ξ+η_DP‖² and extra ‖η_DP‖²) and λ_max."""
    with_n = [g for g in groups if noise_band(g, "ssgd_noise_sq") is not None]
    if not with_n:
        return None
    fig = Figure(figsize=(11, 4.3))
    ax1, ax2 = fig.subplots(1, 2)
    for g in with_n:
        if g.algo == "dpsgd":
            _plot_band(ax1, noise_band(g, "total_noise_sq"), g.color, f"{g.label}: total ‖ξ+η_DP‖²", log=True)
            _plot_band(ax1, noise_band(g, "dpsgd_noise_sq"), g.color, f"{g.label}: extra ‖η_DP‖²", log=True,
                       ls="--", lw=1.2)  # fmt: skip
        else:
            _plot_band(ax1, noise_band(g, "ssgd_noise_sq"), g.color, f"{g.label}: ‖ξ‖²", log=True)
        _plot_band(ax2, noise_band(g, "sharpness"), g.color, _n(g), log=True)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("squared norm of the noise")
    ax1.set_title("noise at the average weight over training")
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel(r"top Hessian eigenvalue $\lambda_{max}$")
    ax2.set_title("landscape sharpness at the average weight")
    _grid(ax1, ax2)
    _legend(ax1)
    _legend(ax2)
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
            if g.algo == "dpsgd":
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
    _grid(ax)
    _legend(ax)
    fig.tight_layout()
    return fig


def fig_size_vs_norm(groups: list[Group]) -> Figure | None:
    """Σ_k σ_w,k of every run against the Frobenius norm of the analysed layer's weights."""
    with_d, fig, (ax,) = _duality_figure(groups, (5.6, 4.3), 1)
    if fig is None:
        return None
    for g in with_d:
        pts = [(float(getattr(d, "weight_norm", np.nan)), float(np.sum(d.sigma_w))) for d in g.dualities()]
        pts = np.array([p for p in pts if np.isfinite(p[0])]).reshape(-1, 2)
        ax.plot(pts[:, 0], pts[:, 1], "o", color=g.color, label=_n(g))
    ax.set_xlabel(r"layer weight norm $\|W\|_F$")
    ax.set_ylabel(r"size $\sum_k \sigma_{w,k}$")
    ax.set_title("size against weight norm (one point per run)")
    _grid(ax)
    _legend(ax)
    fig.tight_layout()
    return fig


FIGURES = (
    ("curves", fig_curves),
    ("final", fig_final),
    ("sigma_g", fig_sigma_g),
    ("sigma_w", fig_sigma_w),
    ("size_vs_norm", fig_size_vs_norm),
    ("contributions", fig_contributions),
    ("noise_time", fig_noise_time),
    ("noise_sharpness", fig_noise_sharpness),
)
