"""Figures of a decomposition (PNG, matplotlib's Agg canvas; pyplot's global state is never touched).

Each ``plot_*`` function accepts one result or a list of results (with ``labels``) to compare runs, returns
the ``Figure`` and writes it to ``path`` when given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.result import DualityResult

FIGURES = ("sigma_g_vs_lambda", "sigma_w", "contributions")


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
        ok = (r.eigenvalues > 0) & (r.sigma_g > 0)
        ax.loglog(r.eigenvalues[ok], r.sigma_g[ok], ".", ms=4, alpha=0.7, label=lab)
    ax.set_xlabel(r"Hessian eigenvalue $\lambda_k$")
    ax.set_ylabel(r"$\sigma_{g,k}$")
    ax.set_title("sharpness determinant")
    ax.grid(True, which="major", alpha=0.3)
    if len(rs) > 1:
        ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_sigma_w(results, labels: Sequence[str] | None = None, path=None) -> Figure:
    """σ_w,k against the direction index (eigenvalue order) and its cumulative sum: the size determinant."""
    rs, labels = _as_list(results, labels)
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for r, lab in zip(rs, labels):
        k = np.arange(1, r.n_directions + 1)
        ax1.semilogy(k, np.where(r.sigma_w > 0, r.sigma_w, np.nan), lw=1, label=lab)
        ax2.plot(k, np.cumsum(r.sigma_w), lw=1.5, label=lab)
    ax1.set_xlabel("direction k (eigenvalue order, largest first)")
    ax1.set_ylabel(r"$\sigma_{w,k}$")
    ax1.set_title("size determinant per direction")
    ax2.set_xlabel("direction k")
    ax2.set_ylabel(r"$\sum_{j\leq k} \sigma_{w,j}$")
    ax2.set_title("cumulative")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    if len(rs) > 1:
        ax2.legend(fontsize=8)
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
        for ax in (ax1, ax2):
            ax.axvline(r.n_sharp + 0.5, color=line.get_color(), ls="--", lw=1)
        ax2.annotate(
            f"{lab}: sharp ({r.n_sharp}) {r.sharp_gap:.3g}, flat {r.flat_gap:.3g}\n"
            f"pair-wise gap {r.pairwise_gap:.3g}, true gap {r.true_gap:.3g}",
            xy=(0.98, 0.04 + 0.14 * i), xycoords="axes fraction", ha="right", va="bottom", fontsize=7,
            color=line.get_color(),
        )  # fmt: skip
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_xscale("log")
    ax1.set_xlabel("direction k (eigenvalue order, log scale)")
    ax1.set_ylabel(r"$\Delta L_k = \rho_k \sigma_{g,k} \sigma_{w,k}$")
    ax1.set_title("gap contributions (dashed: sharp | flat)")
    ax2.set_xscale("log")
    ax2.set_xlabel("direction k")
    ax2.set_ylabel(r"$\sum_{j\leq k} \Delta L_j$")
    ax2.set_title("cumulative")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    if len(rs) > 1:
        ax1.legend(fontsize=8)
    return _finish(fig, path)


def plot_sigma_w_vs_weight_norm(results, labels: Sequence[str] | None = None, path=None) -> Figure:
    """Across runs: the σ_w spectra (left, legend with each layer's ‖W‖_F) and the dual weights' total
    standard deviation ``sqrt(Σ_k σ_w,k²)`` against the layer's weight norm ‖W‖_F (right)."""
    rs, labels = _as_list(results, labels)
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for r, lab in zip(rs, labels):
        k = np.arange(1, r.n_directions + 1)
        (line,) = ax1.loglog(k, np.where(r.sigma_w > 0, r.sigma_w, np.nan), lw=1,
                             label=f"{lab} (|W|={r.weight_norm:.3g})")  # fmt: skip
        ax2.plot(r.weight_norm, r.sigma_w_total, "o", color=line.get_color())
        ax2.annotate(lab, (r.weight_norm, r.sigma_w_total), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax1.set_xlabel("direction k (eigenvalue order)")
    ax1.set_ylabel(r"$\sigma_{w,k}$")
    ax1.set_title(r"$\sigma_w$ spectra")
    ax1.legend(fontsize=7)
    ax2.set_xlabel(r"layer weight norm $\|W\|_F$")
    ax2.set_ylabel(r"$\sqrt{\sum_k \sigma_{w,k}^2}$")
    ax2.set_title(r"size determinant vs weight norm")
    for ax in (ax1, ax2):
        ax.grid(True, alpha=0.3)
    return _finish(fig, path)


def save_figures(result: DualityResult, directory, labels: Sequence[str] | None = None) -> list[Path]:
    """Write the three single-run figures as ``DIR/<name>.png``; returns their paths."""
    d = Path(directory)
    out = []
    for name, fn in (("sigma_g_vs_lambda", plot_sigma_g_vs_lambda), ("sigma_w", plot_sigma_w),
                     ("contributions", plot_contributions)):  # fmt: skip
        p = d / f"{name}.png"
        fn(result, labels, p)
        out.append(p)
    return out
