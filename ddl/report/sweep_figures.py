"""The sweep report's figures: gap, spectra and trends against each swept parameter, and the regime map."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import (
    CUMULATIVE_SIGMA_W_LABEL,
    DIRECTION_LABEL,
    SIGMA_G_LABEL,
    SIZE_LABEL,
    legend,
    plot_band,
)
from analysis.figures import grid as grid_lines
from ddl.algorithms import label_of
from ddl.report.stats import direction_band
from ddl.report.sweep_data import (
    MAX_PANELS,
    GridPoint,
    RegimeMap,
    is_numeric,
    series_along,
    value_text,
    values_label,
)


def _axis(ax, values: list, name: str):
    """x positions for ``values`` (numbers on a log axis when they span a factor ≥ 8, else linear; anything else
    categorical) and the axis set up for them."""
    if is_numeric(values):
        xs = [float(v) for v in values]
        if min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([value_text(v) for v in values])
        ax.minorticks_off()
    else:
        xs = list(range(len(values)))
        ax.set_xticks(xs)
        ax.set_xticklabels([value_text(v) for v in values])
    ax.set_xlabel(name)
    return xs


def _errorbar(ax, xs, line: list[GridPoint | None], key: str, scale: float = 1.0, **kw):
    m = np.array([c.trained_stat(key)["mean"] if c else np.nan for c in line]) * scale
    s = np.array([c.trained_stat(key)["std"] if c else np.nan for c in line]) * scale
    ok = np.isfinite(m)
    if not ok.any():
        return False
    ax.errorbar(np.asarray(xs)[ok], m[ok], yerr=np.where(np.isfinite(s), s, 0)[ok], capsize=3, marker="o", ms=4,
                **kw)
    return True


def fig_gap(param: str, grid: dict, cells: list[GridPoint]) -> Figure | None:
    """True gap, A-W estimate and its sharp and flat parts against ``param`` (the paper's Fig. 3), one panel per
    combination of the other parameters."""
    series = [s for s in series_along(param, grid, cells) if any(c and c.stat("pairwise_gap")["n"] for c in s[1])]
    if not series:
        return None
    series = series[:MAX_PANELS]
    cols = min(3, len(series))
    rows = math.ceil(len(series) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (fixed, line) in zip(axes, series):
        xs = _axis(ax, grid[param], param)
        # drawn wide and pale underneath: where the estimate is exact the two lines coincide
        _errorbar(ax, xs, line, "true_gap", color="k", lw=4, alpha=0.3, label="true gap")
        _errorbar(ax, xs, line, "pairwise_gap", color="C0", label="A-W estimate")
        _errorbar(ax, xs, line, "sharp_gap", color="C3", ls="--", label="sharp part")
        _errorbar(ax, xs, line, "flat_gap", color="C2", ls=":", label="flat part")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_title(values_label(fixed), fontsize=9)
        ax.set_ylabel("loss gap")
        grid_lines(ax)
        legend(ax)
    for ax in axes[len(series):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def fig_spectra(param: str, grid: dict, cells: list[GridPoint]) -> Figure | None:
    """σ_g spectra and cumulative σ_w per value of ``param`` (the paper's Fig. 4), one row per combination of
    the other parameters (at most 3)."""
    series = [s for s in series_along(param, grid, cells) if any(c and any(r.duality for r in c.runs) for c in s[1])]
    if not series:
        return None
    series = series[:3]
    fig = Figure(figsize=(10.5, 3.5 * len(series)))
    axes = np.atleast_2d(fig.subplots(len(series), 2))
    colors = [f"C{i % 10}" for i in range(len(grid[param]))]
    for (ax_g, ax_w), (fixed, line) in zip(axes, series):
        for v, c, col in zip(grid[param], line, colors):
            if c is None:
                continue
            bg = direction_band(c.trained_runs, "sigma_g")
            bw = direction_band(c.trained_runs, "sigma_w", cumulative=True)
            if bg is None:
                continue
            plot_band(ax_g, bg.x, bg.mean, bg.std, col, f"{param}={value_text(v)}")
            plot_band(ax_w, bw.x, bw.mean, bw.std, col, f"{param}={value_text(v)}")
        ax_g.set_yscale("log")
        ax_g.set_xscale("log")
        ax_w.set_xscale("log")
        ax_g.set_ylabel(SIGMA_G_LABEL)
        ax_w.set_ylabel(CUMULATIVE_SIGMA_W_LABEL)
        for ax in (ax_g, ax_w):
            ax.set_xlabel(DIRECTION_LABEL, fontsize=8)
            ax.set_title(values_label(fixed), fontsize=9)
            grid_lines(ax)
            legend(ax)
    fig.tight_layout()
    return fig


def fig_trends(param: str, grid: dict, cells: list[GridPoint]) -> Figure | None:
    """Test error (per algorithm and other parameters) and size against ``param``."""
    series = series_along(param, grid, cells)[: 2 * MAX_PANELS]
    if not any(c and c.stat("test_err")["n"] for _, line in series for c in line):
        return None
    fig = Figure(figsize=(10.5, 3.8))
    ax_e, ax_s = fig.subplots(1, 2)
    for i, (fixed, line) in enumerate(series):
        kw = dict(color=f"C{i % 10}", label=values_label(fixed))
        xs = _axis(ax_e, grid[param], param)
        _errorbar(ax_e, xs, line, "test_err", scale=100, **kw)
        xs = _axis(ax_s, grid[param], param)
        _errorbar(ax_s, xs, line, "sigma_w_sum", **kw)
    ax_e.set_ylabel("test error (%)")
    ax_s.set_ylabel(SIZE_LABEL)
    for ax in (ax_e, ax_s):
        grid_lines(ax)
        legend(ax)
    fig.tight_layout()
    return fig


def fig_regime(m: RegimeMap) -> Figure:
    """One panel per algorithm (test error over the seeds that trained, one colour scale), then one panel per
    non-baseline algorithm with its difference to the baseline (only where both trained); ✕ marks a cell with a
    diverged seed, ○ one with a collapsed seed (:mod:`ddl.report.outcome`)."""
    panels = len(m.algos) + len(m.others)
    fig = Figure(figsize=(4.2 * panels + 1, 0.9 * len(m.rows) + 2.6))
    axes = np.atleast_1d(fig.subplots(1, panels))
    finite = np.concatenate([m.error[a][np.isfinite(m.error[a])] for a in m.algos])
    vmax = float(finite.max() * 100) if finite.size else 100.0
    for ax, algo in zip(axes, m.algos):
        im = ax.imshow(m.error[algo] * 100, origin="lower", cmap="viridis_r", vmin=0, vmax=max(vmax, 1e-9),
                       aspect="auto")
        _annotate(ax, m, [algo], m.error[algo] * 100, "{:.1f}")
        ax.set_title(f"{label_of(algo)} test error (%)", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85)
    base = label_of(m.baseline)
    for ax, algo in zip(axes[len(m.algos):], m.others):
        d = m.difference(algo) * 100
        lim = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
        im = ax.imshow(d, origin="lower", cmap="RdBu_r", vmin=-max(lim, 1e-9), vmax=max(lim, 1e-9), aspect="auto")
        _annotate(ax, m, [m.baseline, algo], d, "{:+.1f}")
        ax.set_title(f"{label_of(algo)} − {base} (pp; blue: {label_of(algo)} better)", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85)
    for ax in axes:
        ax.set_xticks(range(len(m.lrs)))
        ax.set_xticklabels([value_text(v) for v in m.lrs])
        ax.set_yticks(range(len(m.rows)))
        ax.set_yticklabels([f"{n}×{b}" for n, b in m.rows])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("learners × batch (n×b)")
    if m.fixed:
        fig.suptitle(values_label(m.fixed), fontsize=10)
    fig.tight_layout()
    return fig


def _annotate(ax, m: RegimeMap, algos: list[str], values: np.ndarray, fmt: str) -> None:
    for i in range(len(m.rows)):
        for j in range(len(m.lrs)):
            marks = ""
            for a in algos:
                tag = label_of(a)[0] if len(algos) > 1 else ""
                if m.diverged[a][i, j]:
                    marks += f" ✕{tag}"
                elif m.collapsed[a][i, j]:
                    marks += f" ○{tag}"
            v = values[i, j]
            text = (fmt.format(v) if np.isfinite(v) else "–") + marks
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="k",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.65))
