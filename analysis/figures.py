"""Figures of a decomposition (PNG, matplotlib's Agg canvas; pyplot's global state is never touched).

Each ``plot_*`` function accepts one result or a list of results (with ``labels``) to compare runs, returns
the ``Figure`` and writes it to ``path`` when given.

The helpers below (``png_bytes``, ``plot_band``, ``grid``, ``legend``, ``mark_split``, ``sharpness_points`` and
the axis labels) are shared with the cross-run report figures of the application (``ddl.report.figures``), so
that one quantity is drawn and labelled one way everywhere.  "Size" is always :attr:`DualityResult.size`,
``Σ_k σ_w,k``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.result import DualityResult

# eigenvalues below this fraction of the largest are numerically zero (e.g. the softmax null space of a final
# layer); they are left out of log-log plots against λ
ZERO_EIGENVALUE = 1e-10

# axis labels, one spelling per quantity
DIRECTION_LABEL = "direction k (Hessian eigenvalue order, sharpest first)"
EIGENVALUE_LABEL = r"Hessian eigenvalue $\lambda_k$"
SIGMA_G_LABEL = r"$\sigma_{g,k}$"
SIGMA_W_LABEL = r"$\sigma_{w,k}$"
CUMULATIVE_SIGMA_W_LABEL = r"$\sum_{j\leq k}\sigma_{w,j}$"
CONTRIBUTION_LABEL = r"$\Delta L_k=\rho_k\sigma_{g,k}\sigma_{w,k}$"
CUMULATIVE_CONTRIBUTION_LABEL = r"$\sum_{j\leq k}\Delta L_j$"
SIZE_LABEL = r"size $\sum_k \sigma_{w,k}$"
WEIGHT_NORM_LABEL = r"layer weight norm $\|W\|_F$"


# ---------------------------------------------------------------------------------------------------------
# shared plotting helpers
# ---------------------------------------------------------------------------------------------------------
def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (Agg canvas, fixed DPI, no timestamp metadata: same figure, same bytes)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def plot_band(ax, x, mean, std, color, label: str | None, log: bool = False, ls: str = "-", lw: float = 1.6):
    """A line ``mean`` against ``x`` with a ±``std`` band where ``std`` is finite.

    With ``log``, ``mean`` and ``std`` are of log values: the line is the geometric mean and the band ×/÷ the
    geometric standard deviation.
    """
    x, mean, std = np.asarray(x), np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    ax.plot(x, np.exp(mean) if log else mean, ls=ls, color=color, lw=lw, label=label)
    has = np.isfinite(std)
    if has.any():
        lo, hi = mean - std, mean + std
        if log:
            lo, hi = np.exp(lo), np.exp(hi)
        ax.fill_between(x, np.where(has, lo, np.nan), np.where(has, hi, np.nan), color=color, alpha=0.18, lw=0)


def grid(*axes) -> None:
    """A light major grid on each axis."""
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)


def legend(ax, **kw) -> None:
    """A small legend, only when something on ``ax`` is labelled."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, **kw)


def mark_split(ax, n_sharp: float, color, ls: str = ":", lw: float = 1.2) -> None:
    """A vertical line between the last sharp direction (1-based index ``n_sharp``) and the first flat one."""
    ax.axvline(float(n_sharp) + 0.5, color=color, ls=ls, lw=lw)


def sharpness_points(result: DualityResult) -> tuple[np.ndarray, np.ndarray]:
    """``(λ_k, σ_g,k)`` of the directions fit for log-log axes: λ not numerically zero (see
    :data:`ZERO_EIGENVALUE`) and σ_g > 0."""
    lam, sg = np.asarray(result.eigenvalues, dtype=np.float64), np.asarray(result.sigma_g, dtype=np.float64)
    ok = (lam > ZERO_EIGENVALUE * np.max(lam, initial=0.0)) & (sg > 0)
    return lam[ok], sg[ok]


# ---------------------------------------------------------------------------------------------------------
# figures of one decomposition (or a few, overlaid)
# ---------------------------------------------------------------------------------------------------------
def _as_list(results, labels) -> tuple[list[DualityResult], list[str]]:
    rs = [results] if isinstance(results, DualityResult) else list(results)
    if labels is None:
        labels = [r.layer if len(rs) == 1 else f"{i}: {r.layer}" for i, r in enumerate(rs)]
    if len(labels) != len(rs):
        raise ValueError(f"labels: got {len(labels)} labels for {len(rs)} results")
    return rs, list(labels)


def _finish(fig: Figure, path) -> Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def plot_sigma_g_vs_lambda(results, labels: Sequence[str] | None = None, path=None) -> Figure:
    """σ_g,k against λ_k on log-log axes (directions with λ, σ_g > 0): the sharpness determinant."""
    rs, labels = _as_list(results, labels)
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    for r, lab in zip(rs, labels):
        ax.loglog(*sharpness_points(r), ".", ms=4, alpha=0.7, label=lab)
    ax.set_xlabel(EIGENVALUE_LABEL)
    ax.set_ylabel(SIGMA_G_LABEL)
    ax.set_title("sharpness determinant")
    grid(ax)
    if len(rs) > 1:
        ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_sigma_w(results, labels: Sequence[str] | None = None, path=None) -> Figure:
    """σ_w,k against the direction index (eigenvalue order) and its cumulative sum, which ends at the size
    ``Σ_k σ_w,k``: the size determinant."""
    rs, labels = _as_list(results, labels)
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for r, lab in zip(rs, labels):
        k = np.arange(1, r.n_directions + 1)
        ax1.semilogy(k, np.where(r.sigma_w > 0, r.sigma_w, np.nan), lw=1, label=lab)
        ax2.plot(k, np.cumsum(r.sigma_w), lw=1.5, label=lab)
    ax1.set_xlabel(DIRECTION_LABEL)
    ax1.set_ylabel(SIGMA_W_LABEL)
    ax1.set_title("size determinant per direction")
    ax2.set_xlabel("direction k")
    ax2.set_ylabel(CUMULATIVE_SIGMA_W_LABEL)
    ax2.set_title("cumulative (ends at the size)")
    grid(ax1, ax2)
    if len(rs) > 1:
        legend(ax2)
    return _finish(fig, path)


def plot_contributions(results, labels: Sequence[str] | None = None, path=None) -> Figure:
    """ΔL_k = ρ_k σ_g,k σ_w,k per direction and cumulatively, with the sharp/flat split marked."""
    rs, labels = _as_list(results, labels)
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for i, (r, lab) in enumerate(zip(rs, labels)):
        k = np.arange(1, r.n_directions + 1)
        (line,) = ax1.plot(k, r.contributions, lw=1, marker="." if r.n_directions <= 200 else None,
                           label=lab)  # fmt: skip
        ax2.plot(k, np.cumsum(r.contributions), lw=1.5, color=line.get_color(), label=lab)
        mask = r.sharp_mask()
        if mask[: r.n_sharp].all():  # a leading block: a line between it and the flat rest
            for ax in (ax1, ax2):
                mark_split(ax, r.n_sharp, line.get_color(), ls="--", lw=1)
        else:  # e.g. the reference's top-σ_g rule: ring the sharp directions wherever they are
            ax1.scatter(k[mask], r.contributions[mask], s=40, facecolors="none", edgecolors=line.get_color(), lw=1)
        ax2.annotate(
            f"{lab}: sharp ({r.n_sharp}) {r.sharp_gap:.3g}, flat {r.flat_gap:.3g}\n"
            f"pair-wise gap {r.pairwise_gap:.3g}, true gap {r.true_gap:.3g}",
            xy=(0.98, 0.04 + 0.14 * i), xycoords="axes fraction", ha="right", va="bottom", fontsize=7,
            color=line.get_color(),
        )  # fmt: skip
    for ax in (ax1, ax2):
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xscale("log")
    ax1.set_xlabel("direction k (eigenvalue order, log scale)")
    ax1.set_ylabel(CONTRIBUTION_LABEL)
    ax1.set_title("gap contributions (dashed: sharp | flat)")
    ax2.set_xlabel("direction k")
    ax2.set_ylabel(CUMULATIVE_CONTRIBUTION_LABEL)
    ax2.set_title("cumulative")
    grid(ax1, ax2)
    if len(rs) > 1:
        legend(ax1)
    return _finish(fig, path)


def plot_sigma_w_vs_weight_norm(results, labels: Sequence[str] | None = None, path=None) -> Figure:
    """Across runs: the σ_w spectra (left, legend with each layer's ‖W‖_F) and the size ``Σ_k σ_w,k``
    (:attr:`DualityResult.size`) against the layer's weight norm ‖W‖_F (right)."""
    rs, labels = _as_list(results, labels)
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for r, lab in zip(rs, labels):
        k = np.arange(1, r.n_directions + 1)
        (line,) = ax1.loglog(k, np.where(r.sigma_w > 0, r.sigma_w, np.nan), lw=1,
                             label=f"{lab} (|W|={r.weight_norm:.3g})")  # fmt: skip
        ax2.plot(r.weight_norm, r.size, "o", color=line.get_color())
        ax2.annotate(lab, (r.weight_norm, r.size), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax1.set_xlabel(DIRECTION_LABEL)
    ax1.set_ylabel(SIGMA_W_LABEL)
    ax1.set_title(r"$\sigma_w$ spectra")
    ax1.legend(fontsize=7)
    ax2.set_xlabel(WEIGHT_NORM_LABEL)
    ax2.set_ylabel(SIZE_LABEL)
    ax2.set_title("size against weight norm")
    grid(ax1, ax2)
    return _finish(fig, path)


# the figures ``ddl analyze`` writes for one run: (file stem, function)
FIGURES = (("sigma_g_vs_lambda", plot_sigma_g_vs_lambda), ("sigma_w", plot_sigma_w),
           ("contributions", plot_contributions))  # fmt: skip


def save_figures(result: DualityResult, directory, labels: Sequence[str] | None = None) -> list[Path]:
    """Write the single-run figures of :data:`FIGURES` as ``DIR/<name>.png``; returns their paths."""
    d = Path(directory)
    out = []
    for name, plot in FIGURES:
        p = d / f"{name}.png"
        plot(result, labels, p)
        out.append(p)
    return out
