"""The sweep report (``ddl sweep`` writes it to ``DIR/report``): how the generalization gap, its activity-weight
estimate and its sharp/flat parts, the spectra, the size and the test error move with each swept parameter,
and, for a grid over learning rate × batch size × algorithm, the SSGD-vs-DPSGD regime map.

Reads only files: ``DIR/sweep.json`` (the grid and the planned runs, written by :mod:`ddl.sweep`) and the run
directories.  Runs of one grid point are its seeds (mean ± std over them).  Files written, as for ``ddl compare``
(:func:`ddl.report.render.write_report`): ``report.html`` (self-contained), ``report.md``, one PNG per figure and
``numbers.json``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import (
    CUMULATIVE_SIGMA_W_LABEL,
    DIRECTION_LABEL,
    SIGMA_G_LABEL,
    SIZE_LABEL,
    legend,
    plot_band,
    png_bytes,
)
from analysis.figures import grid as grid_lines
from ddl.algorithms import BASELINE, label_of
from ddl.errors import RunDirError
from ddl.report.checks import check_lines, split_line
from ddl.report.figures import FIGURES
from ddl.report.formatting import format_stat
from ddl.report.groups import make_groups
from ddl.report.render import Block, Box, Cell, Heading, Image, Paragraph, Prose, Row, Table, write_report
from ddl.report.runs import RunData, read_run
from ddl.report.stats import direction_band, run_numbers, seed_stat

# every data set of ddl.data has 10 classes: a model stuck at chance has cross-entropy ≈ ln 10
CHANCE_LOSS = math.log(10)
COLLAPSED_FRACTION = 0.9  # final training loss ≥ this × ln C: "collapsed" (learned next to nothing)
MAX_PANELS = 6  # series of the other grid parameters drawn per figure
CELL_COLUMNS = (("test_err", "test error", "err"), ("true_gap", "true gap", "num"),
                ("pairwise_gap", "A-W estimate", "num"), ("sharp_gap", "sharp part", "num"),
                ("flat_gap", "flat part", "num"), ("sigma_w_sum", "size Σσ_w", "num"),
                ("sigma_g_top", "mean σ_g top 10", "num"), ("lambda_max", "λ_max", "num"))  # fmt: skip
FOOTER = ("Definitions (docs/theory.md): true gap = L_test − L_train of the analysed model; A-W estimate ΔL_p = "
          "mean over (test, nearest training partner) pairs of the loss difference = sharp + flat + mean terms; "
          "size = Σ_k σ_w,k. Collapsed: final training loss ≥ 0.9 ln C (chance). Written by `ddl sweep`.")


@dataclass
class GridPoint:
    """One grid point: its values and the runs (seeds) of it that finished."""

    values: dict
    runs: list[RunData]
    planned: int

    def stat(self, key: str) -> dict:
        return seed_stat([run_numbers(r)[key] for r in self.runs])

    @property
    def diverged(self) -> int:
        return sum(r.status == "diverged" for r in self.runs)

    @property
    def collapsed(self) -> int:
        return sum(r.status != "diverged" and run_numbers(r)["train_loss"] >= COLLAPSED_FRACTION * CHANCE_LOSS
                   for r in self.runs)


def _key(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


def _label(values: dict) -> str:
    return ", ".join(f"{k}={_vs(v)}" for k, v in values.items()) or "all runs"


def _vs(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return ":".join(map(str, v))
    return str(v)


def read_sweep(sweep_dir: Path) -> tuple[dict, dict[str, list], list[GridPoint]]:
    """The spec, the grid and one :class:`GridPoint` per grid point (runs without ``summary.json`` left out)."""
    try:
        doc = json.loads((sweep_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        raise RunDirError(f"SWEEP_DIR: {sweep_dir} has no readable sweep.json (not a ddl sweep directory)") from None
    grid = doc["spec"]["grid"]
    cells: dict[str, GridPoint] = {}
    for r in doc["runs"]:
        c = cells.setdefault(_key(r["values"]), GridPoint(r["values"], [], 0))
        c.planned += 1
        path = sweep_dir / r["dir"]
        if (path / "summary.json").is_file():
            c.runs.append(read_run(path))
    return doc["spec"], grid, list(cells.values())


# ---------------------------------------------------------------------------------------------------------
# per swept parameter
# ---------------------------------------------------------------------------------------------------------
def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _axis(ax, values: list, name: str):
    """x positions for ``values`` (numbers on a log axis when they span a factor ≥ 8, else linear; anything else
    categorical) and the axis set up for them."""
    if _numeric(values):
        xs = [float(v) for v in values]
        if min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([_vs(v) for v in values])
        ax.minorticks_off()
    else:
        xs = list(range(len(values)))
        ax.set_xticks(xs)
        ax.set_xticklabels([_vs(v) for v in values])
    ax.set_xlabel(name)
    return xs


def _series(param: str, grid: dict, cells: list[GridPoint]) -> list[tuple[dict, list[GridPoint | None]]]:
    """For each combination of the other grid parameters: the cells along ``param`` (None where missing)."""
    by_key = {_key(c.values): c for c in cells}
    others = [k for k in grid if k != param]
    out = []
    for combo in _product([grid[k] for k in others]):
        fixed = dict(zip(others, combo))
        line = [by_key.get(_key({k: ({**fixed, param: v})[k] for k in grid})) for v in grid[param]]
        out.append((fixed, line))
    return out


def _product(lists):
    if not lists:
        return [()]
    return [(a, *rest) for a in lists[0] for rest in _product(lists[1:])]


def _errorbar(ax, xs, line: list[GridPoint | None], key: str, scale: float = 1.0, **kw):
    m = np.array([c.stat(key)["mean"] if c else np.nan for c in line]) * scale
    s = np.array([c.stat(key)["std"] if c else np.nan for c in line]) * scale
    ok = np.isfinite(m)
    if not ok.any():
        return False
    ax.errorbar(np.asarray(xs)[ok], m[ok], yerr=np.where(np.isfinite(s), s, 0)[ok], capsize=3, marker="o", ms=4,
                **kw)
    return True


def fig_gap(param: str, grid: dict, cells: list[GridPoint]) -> Figure | None:
    """True gap, A-W estimate and its sharp and flat parts against ``param`` (the paper's Fig. 3), one panel per
    combination of the other parameters."""
    series = [s for s in _series(param, grid, cells) if any(c and c.stat("pairwise_gap")["n"] for c in s[1])]
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
        ax.set_title(_label(fixed), fontsize=9)
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
    series = [s for s in _series(param, grid, cells) if any(c and any(r.duality for r in c.runs) for c in s[1])]
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
            bg = direction_band(c.runs, "sigma_g")
            bw = direction_band(c.runs, "sigma_w", cumulative=True)
            if bg is None:
                continue
            plot_band(ax_g, bg.x, bg.mean, bg.std, col, f"{param}={_vs(v)}")
            plot_band(ax_w, bw.x, bw.mean, bw.std, col, f"{param}={_vs(v)}")
        ax_g.set_yscale("log")
        ax_g.set_xscale("log")
        ax_w.set_xscale("log")
        ax_g.set_ylabel(SIGMA_G_LABEL)
        ax_w.set_ylabel(CUMULATIVE_SIGMA_W_LABEL)
        for ax in (ax_g, ax_w):
            ax.set_xlabel(DIRECTION_LABEL, fontsize=8)
            ax.set_title(_label(fixed), fontsize=9)
            grid_lines(ax)
            legend(ax)
    fig.tight_layout()
    return fig


def fig_trends(param: str, grid: dict, cells: list[GridPoint]) -> Figure | None:
    """Test error (per algorithm and other parameters) and size against ``param``."""
    series = _series(param, grid, cells)[: 2 * MAX_PANELS]
    if not any(c and c.stat("test_err")["n"] for _, line in series for c in line):
        return None
    fig = Figure(figsize=(10.5, 3.8))
    ax_e, ax_s = fig.subplots(1, 2)
    for i, (fixed, line) in enumerate(series):
        kw = dict(color=f"C{i % 10}", label=_label(fixed))
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


# ---------------------------------------------------------------------------------------------------------
# the regime map
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RegimeMap:
    """Test error of the baseline and one other algorithm (``algos``: baseline first) over learning rate × total
    batch size B = n·b (mean over seeds; NaN where there is no run), with counts of diverged and collapsed seeds
    per cell."""

    algos: tuple[str, str]
    fixed: dict
    lrs: list
    batches: list
    error: dict[str, np.ndarray]  # algo -> [len(batches), len(lrs)]
    diverged: dict[str, np.ndarray]
    collapsed: dict[str, np.ndarray]
    cells: dict[str, list[list[GridPoint | None]]]

    @property
    def labels(self) -> tuple[str, str]:
        return label_of(self.algos[0]), label_of(self.algos[1])

    @property
    def difference(self) -> np.ndarray:
        """The other algorithm's test error minus the baseline's."""
        base, other = self.algos
        return self.error[other] - self.error[base]

    def spread(self) -> np.ndarray:
        """Seed-to-seed standard deviation of the difference, √(std_base² + std_other²) (NaN with one seed)."""
        std = {a: np.array([[c.stat("test_err")["std"] if c else np.nan for c in row] for row in self.cells[a]])
               for a in self.algos}
        return np.sqrt(std[self.algos[0]] ** 2 + std[self.algos[1]] ** 2)

    def failed(self, algo: str) -> np.ndarray:
        return (self.diverged[algo] > 0) | (self.collapsed[algo] > 0)

    def most_different(self) -> tuple[int, int] | None:
        """The (batch, lr) cell where the two algorithms' test errors differ most, preferring cells where both
        trained (neither diverged nor collapsed: their duality comparison means something), then cells where
        exactly one failed, then the rest."""
        ok_s, ok_d = ~self.failed(self.algos[0]), ~self.failed(self.algos[1])
        tier = np.where(ok_s & ok_d, 2, np.where(ok_s ^ ok_d, 1, 0))
        d = np.abs(self.difference)
        if not np.isfinite(d).any():
            return None
        score = np.where(np.isfinite(d), tier * 10.0 + np.minimum(d, 1.0), -1.0)  # |d| ≤ 1: tiers never mix
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        return int(i), int(j)


def regime_maps(grid: dict, cells: list[GridPoint]) -> list[RegimeMap]:
    """One map per combination of the grid parameters other than algo, lr, batch_size and learners; needs the
    baseline and exactly one other algorithm, and several learning rates, in the grid."""
    algos = set(grid.get("algo", []))
    if len(algos) != 2 or BASELINE not in algos or len(grid.get("lr", [])) < 2:
        return []
    pair = (BASELINE, *(algos - {BASELINE}))
    others = [k for k in grid if k not in ("algo", "lr", "batch_size", "learners")]
    maps = []
    for combo in _product([grid[k] for k in others]):
        fixed = dict(zip(others, combo))
        mine = [c for c in cells if all(c.values.get(k) == v for k, v in fixed.items()) and c.runs]
        if not mine:
            continue
        lrs = sorted(grid["lr"])
        batches = sorted({c.runs[0].config.total_batch for c in mine})
        shape = (len(batches), len(lrs))
        err = {a: np.full(shape, np.nan) for a in pair}
        div = {a: np.zeros(shape, int) for a in pair}
        col = {a: np.zeros(shape, int) for a in pair}
        where: dict[str, list[list[GridPoint | None]]] = {a: [[None] * len(lrs) for _ in batches] for a in err}
        for c in mine:
            cfg = c.runs[0].config
            i, j = batches.index(cfg.total_batch), lrs.index(cfg.lr)
            err[cfg.algo][i, j] = c.stat("test_err")["mean"]
            div[cfg.algo][i, j] = c.diverged
            col[cfg.algo][i, j] = c.collapsed
            where[cfg.algo][i][j] = c
        maps.append(RegimeMap(pair, fixed, lrs, batches, err, div, col, where))
    return maps


def fig_regime(m: RegimeMap) -> Figure:
    """The two algorithms' test errors side by side (one colour scale), and other − baseline; ✕ marks a cell
    with a diverged seed, ○ one with a collapsed seed (loss ≈ ln C)."""
    fig = Figure(figsize=(4.2 * 3 + 1, 0.9 * len(m.batches) + 2.6))
    axes = fig.subplots(1, 3)
    finite = np.concatenate([m.error[a][np.isfinite(m.error[a])] for a in m.algos])
    vmax = float(finite.max() * 100) if finite.size else 100.0
    for ax, algo in zip(axes[:2], m.algos):
        im = ax.imshow(m.error[algo] * 100, origin="lower", cmap="viridis_r", vmin=0, vmax=max(vmax, 1e-9),
                       aspect="auto")
        _annotate(ax, m, algo, m.error[algo] * 100, "{:.1f}")
        ax.set_title(f"{label_of(algo)} test error (%)", fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85)
    d = m.difference * 100
    lim = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
    im = axes[2].imshow(d, origin="lower", cmap="RdBu_r", vmin=-max(lim, 1e-9), vmax=max(lim, 1e-9), aspect="auto")
    _annotate(axes[2], m, None, d, "{:+.1f}")
    base, other = m.labels
    axes[2].set_title(f"{other} − {base} (pp; blue: {other} better)", fontsize=10)
    fig.colorbar(im, ax=axes[2], shrink=0.85)
    for ax in axes:
        ax.set_xticks(range(len(m.lrs)))
        ax.set_xticklabels([_vs(v) for v in m.lrs])
        ax.set_yticks(range(len(m.batches)))
        ax.set_yticklabels([str(b) for b in m.batches])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("total batch B = n·b")
    if m.fixed:
        fig.suptitle(_label(m.fixed), fontsize=10)
    fig.tight_layout()
    return fig


def _annotate(ax, m: RegimeMap, algo: str | None, values: np.ndarray, fmt: str) -> None:
    for i in range(len(m.batches)):
        for j in range(len(m.lrs)):
            marks = ""
            for a in ([algo] if algo else m.algos):
                tag = "" if algo else label_of(a)[0]
                if m.diverged[a][i, j]:
                    marks += f" ✕{tag}"
                elif m.collapsed[a][i, j]:
                    marks += f" ○{tag}"
            v = values[i, j]
            text = (fmt.format(v) if np.isfinite(v) else "–") + marks
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="k",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.65))


# ---------------------------------------------------------------------------------------------------------
# findings and tables
# ---------------------------------------------------------------------------------------------------------
def _corr(a: list[float], b: list[float]) -> tuple[float, int]:
    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or x[ok].std() == 0 or y[ok].std() == 0:
        return float("nan"), int(ok.sum())
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), int(ok.sum())


def findings(grid: dict, cells: list[GridPoint], maps: list[RegimeMap]) -> tuple[list[str], dict]:
    """Plain-language lines and the numbers behind them."""
    lines, nums = [], {}
    runs = [r for c in cells for r in c.runs]
    n_planned = sum(c.planned for c in cells)
    status = Counter(r.status for r in runs)
    lines.append(f"{len(runs)} of {n_planned} planned runs finished ("
                 + ", ".join(f"{n} {s}" for s, n in status.items()) + ")." if runs else "No run has finished.")
    nums_run = [run_numbers(r) for r in runs]
    r, n = _corr([x["pairwise_gap"] for x in nums_run], [x["true_gap"] for x in nums_run])
    nums["corr_aw_true_gap"] = {"r": r, "n": n}
    if n >= 3:
        lines.append(f"Across the {n} analysed runs, the A-W estimate and the true gap correlate with Pearson "
                     f"r = {r:.2f}.")
    for param, values in grid.items():
        if not _numeric(values) or len(values) < 2:
            continue
        for fixed, line in _series(param, grid, cells)[:MAX_PANELS]:
            g = [c.stat("true_gap")["mean"] if c else np.nan for c in line]
            if np.isfinite(g[0]) and np.isfinite(g[-1]):
                steps = np.diff([x for x in g if np.isfinite(x)])
                word = "rises" if g[-1] > g[0] else "falls"
                if not (np.all(steps > 0) or np.all(steps < 0)):
                    word += " (not monotonically)"
                seq = ", ".join(f"{x:.4g}" for x in g)
                lines.append(f"{_label(fixed)}: the true gap {word} as {param} goes from {_vs(values[0])} to "
                             f"{_vs(values[-1])}: {seq}.")  # fmt: skip
                nums.setdefault("trends", []).append({"param": param, "fixed": fixed, "true_gap": g})
    for m in maps:
        where = f" ({_label(m.fixed)})" if m.fixed else ""
        spread = m.spread()
        better = [(m.batches[i], m.lrs[j], -m.difference[i, j] * 100, spread[i, j] * 100)
                  for i, j in np.argwhere(m.difference < -0.01)]
        worse = [(m.batches[i], m.lrs[j], m.difference[i, j] * 100, spread[i, j] * 100)
                 for i, j in np.argwhere(m.difference > 0.01)]
        base, other = m.labels
        only_base_failed = [(m.batches[i], m.lrs[j])
                            for i, j in np.argwhere(m.failed(m.algos[0]) & ~m.failed(m.algos[1]))]
        if better:
            lines.append(f"Regime map{where}: {other}'s test error is lower by more than 1 pp at "
                         + "; ".join(_diff_str(b, lr, d, sp) for b, lr, d, sp in better) + ".")
        if worse:
            lines.append(f"Regime map{where}: {base}'s test error is lower by more than 1 pp at "
                         + "; ".join(_diff_str(b, lr, d, sp) for b, lr, d, sp in worse) + ".")
        if only_base_failed:
            lines.append(f"Regime map{where}: {base} diverged or collapsed while {other} trained at "
                         + "; ".join(f"B={b}, lr={_vs(lr)}" for b, lr in only_base_failed) + ".")
        if not better and not worse and not only_base_failed:
            lines.append(f"Regime map{where}: {base} and {other} are within 1 pp of each other everywhere.")
    return lines, nums


def _diff_str(b, lr, d: float, spread: float) -> str:
    s = f"B={b}, lr={_vs(lr)} ({d:.1f} pp"
    if np.isfinite(spread):
        s += ", beyond" if d > spread else ", within"
        s += f" the seeds' spread of {spread:.1f} pp"
    return s + ")"


def cell_table(grid: dict, cells: list[GridPoint]) -> Table:
    header = [*(Cell(k, left=True) for k in grid), Cell("runs"), Cell("status", left=True),
              *(Cell(label) for _, label, _ in CELL_COLUMNS)]
    rows = []
    for c in cells:
        status = ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in c.runs).items()) or "pending"
        rows.append(Row([*(Cell(_vs(c.values[k]), left=True) for k in grid), Cell(f"{len(c.runs)}/{c.planned}"),
                         Cell(status, left=True),
                         *(Cell(format_stat(c.stat(k), kind), key=k) for k, _, kind in CELL_COLUMNS)],
                        {"data-cell": _label(c.values)}))
    return Table(header, rows, "cells")


# ---------------------------------------------------------------------------------------------------------
def build_sweep_report(sweep_dir: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write the report of the sweep in ``sweep_dir`` to ``out`` (default ``sweep_dir/report``); the HTML path."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir / "report"
    spec, grid, cells = read_sweep(sweep_dir)
    title = title or spec.get("title") or ("Sweep over " + " × ".join(grid) if grid else "Sweep")
    maps = regime_maps(grid, cells)
    lines, nums = findings(grid, cells, maps)
    figures: list[tuple[str, bytes | None]] = []
    blocks: list[Block] = [Box("verdict", [Heading("Findings"), Prose(lines)])]
    all_runs = [r for c in cells for r in c.runs]
    checks, split = check_lines(all_runs), split_line(all_runs)
    if checks:  # how the numbers were measured, above the numbers it qualifies (as in `ddl compare`)
        blocks.append(Box("checks", [Prose(["**Checks that failed** (thresholds: docs/measurements.md):",
                                            *(f"- {c}" for c in checks)])]))  # fmt: skip
    n_runs = len(all_runs)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"{len(cells)} grid points × seeds {', '.join(map(str, spec.get('seeds', [])))}, {n_runs} finished "
                f"runs · grid " + "; ".join(f"{k} ∈ {{{', '.join(_vs(v) for v in vs)}}}" for k, vs in grid.items())
                + f" · generated {stamp}")  # fmt: skip

    def add(name: str, heading: str, intro: str, fig: Figure | None) -> None:
        if fig is None:
            return
        png = png_bytes(fig)
        figures.append((name, png))
        blocks.extend([Heading(heading, 3, anchor=name), *([Paragraph(intro, "intro")] if intro else []),
                       Image(name, heading, png)])

    if maps:
        base, other = maps[0].labels
        blocks.append(Heading(f"Regime map: {base} vs {other}", 2, anchor="regime"))
        blocks.append(Paragraph("Test error of the averaged model over learning rate × total batch size (mean over "
                                f"seeds), {base} and {other} on one colour scale, and their difference. ✕: a seed "
                                "diverged; ○: a seed collapsed (final training loss ≥ 0.9 ln C, chance level).",
                                "intro"))  # fmt: skip
        for i, m in enumerate(maps):
            add(f"regime_map{i or ''}", "Regime map" + (f" ({_label(m.fixed)})" if m.fixed else ""), "", fig_regime(m))
        _most_different(maps[0], blocks, figures)
    blocks.append(Heading("Grid points", 2))
    blocks.append(Paragraph("Mean ± standard deviation over seeds of each grid point's finished runs."
                            + (f" {split}" if split else ""), "intro"))
    blocks.append(cell_table(grid, cells))
    for param in grid:
        if len(grid[param]) < 2 or param == "algo":
            continue
        blocks.append(Heading(f"Against {param}", 2, anchor=f"param-{param}"))
        add(f"gap_{param}", f"Generalization gap against {param}",
            "True gap L_test − L_train, the activity-weight estimate and its sharp and flat parts (mean ± std over "
            "seeds); one panel per value of the other grid parameters.", fig_gap(param, grid, cells))
        add(f"spectra_{param}", f"Spectra per {param}",
            "σ_g,k (how much the per-sample gradients vary along Hessian direction k: sharpness as the data sees "
            "it) and the cumulative σ_w,k (the dual weights' spread: size) per value.", fig_spectra(param, grid, cells))
        add(f"trends_{param}", f"Test error and size against {param}",
            "Test error of the averaged model and the size Σ_k σ_w,k, per combination of the other grid "
            "parameters (algorithm included).", fig_trends(param, grid, cells))
    numbers = {
        "title": title, "generated": stamp, "grid": grid, "findings": lines, **nums, "checks": checks,
        "split": split,
        "cells": [{"values": c.values, "runs": [str(r.path) for r in c.runs], "planned": c.planned,
                   "diverged": c.diverged, "collapsed": c.collapsed,
                   "numbers": {k: c.stat(k) for k, _, _ in CELL_COLUMNS}} for c in cells],
        "regime_maps": [{"fixed": m.fixed, "lr": m.lrs, "total_batch": m.batches,
                         "test_error": {a: m.error[a].tolist() for a in m.error},
                         "diverged": {a: m.diverged[a].tolist() for a in m.diverged},
                         "collapsed": {a: m.collapsed[a].tolist() for a in m.collapsed},
                         "most_different": m.most_different()} for m in maps],
    }  # fmt: skip
    files = write_report(out, title, subtitle, blocks, figures, numbers, FOOTER)
    return files.html


def _most_different(m: RegimeMap, blocks: list[Block], figures: list) -> None:
    """The comparison report's duality and noise figures at the cell where the two algorithms differ most."""
    ij = m.most_different()
    if ij is None:
        return
    i, j = ij
    pair = [m.cells[a][i][j] for a in m.algos]
    if any(c is None for c in pair):
        return
    groups = make_groups([r for c in pair for r in c.runs])
    blocks.append(Heading(f"Where they differ most: B={m.batches[i]}, lr={_vs(m.lrs[j])}", 2, anchor="most"))
    e = [c.stat("test_err") for c in pair]
    base, other = m.labels
    blocks.append(Paragraph(f"{base} {format_stat(e[0], 'err')} vs {other} {format_stat(e[1], 'err')} test error. "
                            "The duality comparison and the noise measurements of the two (as in `ddl compare`).",
                            "intro"))  # fmt: skip
    for spec in FIGURES:
        if spec.name == "curves" or spec.name == "final":
            continue
        fig = spec.draw(groups)
        if fig is None:
            continue
        png = png_bytes(fig)
        name = f"most_different_{spec.name}"
        figures.append((name, png))
        blocks.extend([Heading(spec.title, 3), Paragraph(spec.intro, "intro"), Image(name, spec.title, png)])
