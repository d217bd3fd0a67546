"""The sweep report's words and table: findings (trends, the regime map's verdicts) and the table of grid
points."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ddl.algorithms import label_of
from ddl.report.formatting import format_stat
from ddl.report.outcome import FAILURE_WORDS, failure
from ddl.report.render import Cell, Row, Table
from ddl.report.stats import group_stats, run_numbers
from ddl.report.sweep_data import (
    CELL_COLUMNS,
    MAX_PANELS,
    GridPoint,
    RegimeMap,
    is_numeric,
    series_along,
    value_text,
    values_label,
)
from ddl.report.verdict import direction_outcome


def _corr(a: list[float], b: list[float]) -> tuple[float, int]:
    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or x[ok].std() == 0 or y[ok].std() == 0:
        return float("nan"), int(ok.sum())
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), int(ok.sum())


def findings(grid: dict, cells: list[GridPoint], maps: list[RegimeMap]) -> tuple[list[str], dict]:
    """Plain-language lines and the numbers behind them, from the runs that trained only (failed runs,
    :mod:`ddl.report.outcome`, are counted and named, never averaged in)."""
    lines, nums = [], {}
    runs = [r for c in cells for r in c.runs]
    n_planned = sum(c.planned for c in cells)
    status = Counter(r.status for r in runs)
    lines.append(f"{len(runs)} of {n_planned} planned runs finished ("
                 + ", ".join(f"{n} {s}" for s, n in status.items()) + ")." if runs else "No run has finished.")
    why = Counter(failure(r) for r in runs if failure(r) is not None)
    nums["failed_runs"] = dict(why)
    if why:
        lines.append(f"{sum(why.values())} of {len(runs)} runs failed (" + ", ".join(f"{n} {w}" for w, n in why.items())
                     + f"; failed = {FAILURE_WORDS}): every finding below uses the runs that trained only.")
    ok = [r for r in runs if failure(r) is None]
    nums_run = [run_numbers(r) for r in ok]
    r, n = _corr([x["pairwise_gap"] for x in nums_run], [x["true_gap"] for x in nums_run])
    nums["corr_aw_true_gap"] = {"r": r, "n": n}
    if n >= 3:
        lines.append(f"Across the {n} analysed runs that trained, the A-W estimate and the true gap correlate with "
                     f"Pearson r = {r:.2f}.")
    for param, values in grid.items():
        if not is_numeric(values) or len(values) < 2:
            continue
        for fixed, line in series_along(param, grid, cells)[:MAX_PANELS]:
            trend = _trend(param, values, fixed, line)
            if trend is not None:
                lines.append(trend[0])
                nums.setdefault("trends", []).append(trend[1])
    for m in maps:
        lines += _regime_lines(m)
    direction = _direction_lines(cells)
    if direction:
        lines.append("The landscape-dependent noise, tested directionally (per grid point, over the seeds that "
                     "trained): does η_DP put more of its energy in the top-k Hessian directions than the minibatch "
                     "noise ξ and than a random direction (k/P)?")  # fmt: skip
        lines += [f"- {x}" for x in direction]
    return lines, nums


def _ms(x: dict) -> str:
    return f"{x['mean']:.3f}" + (f" ± {x['std']:.3f}" if x["n"] > 1 else "")


def _direction_lines(cells: list[GridPoint]) -> list[str]:
    """One line per grid point whose trained runs have η_DP share measurements: the directional test's
    outcome (:func:`ddl.report.verdict.direction_outcome`) with its numbers."""
    out = []
    for c in cells:
        runs = c.trained_runs
        if not runs:
            continue
        st = group_stats(runs)
        if not math.isfinite(st["eta_top_share"]["mean"]):
            continue

        out.append(f"{values_label(c.values)}: **{direction_outcome(st)}** here — η_DP {_ms(st['eta_top_share'])}, "
                   f"ξ {_ms(st['xi_top_share'])}, η − ξ {_ms(st['eta_minus_xi_top_share'])}, k/P "
                   f"{st['random_top_share']['mean']:.2g} ({st['eta_top_share']['n']} seed(s), "
                   f"{st['noise_measurements']['mean']:.0f} measurement(s) per run after step 0).")  # fmt: skip
    return out


def _trend(param: str, values: list, fixed: dict, line: list[GridPoint | None]) -> tuple[str, dict] | None:
    """How the true gap moves along ``param`` over the seeds that trained; None with fewer than two points."""
    g = [c.trained_stat("true_gap")["mean"] if c else np.nan for c in line]
    xs = [v for v, x in zip(values, g) if np.isfinite(x)]
    ys = [x for x in g if np.isfinite(x)]
    failed = Counter(failure(r) for c in line if c for r in c.failed_runs)
    excluded = sum(failed.values())
    excl = (f"; {excluded} run{'s' if excluded != 1 else ''} excluded ("
            + ", ".join(f"{n} {w}" for w, n in failed.items()) + ")") if excluded else "; no run excluded"
    info = {"param": param, "fixed": fixed, "true_gap": g, "excluded": dict(failed)}
    if len(ys) < 2:
        if excluded:
            return (f"{values_label(fixed)}: no trend of the true gap against {param}: fewer than two of its values "
                    f"have a run that trained{excl}.", info)  # fmt: skip
        return None
    steps = np.diff(ys)
    word = "rises" if ys[-1] > ys[0] else "falls"
    if not (np.all(steps > 0) or np.all(steps < 0)):
        word += " (not monotonically)"
    seq = ", ".join(f"{x:.4g}" if np.isfinite(x) else "failed" for x in g)
    return (f"{values_label(fixed)}: the true gap {word} as {param} goes from {value_text(xs[0])} to "
            f"{value_text(xs[-1])}: {seq} (runs that trained{excl}).", info)  # fmt: skip


def _regime_lines(m: RegimeMap) -> list[str]:
    """The regime map's verdicts per algorithm against the baseline: where each is better by more than 1 pp
    (both trained), where one failed and the other trained, and where both failed (never a win)."""
    out = []
    where = f" ({values_label(m.fixed)})" if m.fixed else ""
    base_label = label_of(m.baseline)
    for algo in m.others:
        other = label_of(algo)
        d, spread = m.difference(algo), m.spread(algo)
        better = [(i, j, -d[i, j] * 100, spread[i, j] * 100) for i, j in np.argwhere(d < -0.01)]
        worse = [(i, j, d[i, j] * 100, spread[i, j] * 100) for i, j in np.argwhere(d > 0.01)]
        fb, fo = m.all_failed(m.baseline), m.all_failed(algo)
        has = (m.trained[m.baseline] + m.failed[m.baseline] > 0) & (m.trained[algo] + m.failed[algo] > 0)
        head = f"Regime map{where}, {other} vs {base_label}"
        if better:
            out.append(f"{head}: {other}'s test error is lower by more than 1 pp at "
                       + "; ".join(_diff_str(m, i, j, x, sp) for i, j, x, sp in better) + ".")
        if worse:
            out.append(f"{head}: {base_label}'s test error is lower by more than 1 pp at "
                       + "; ".join(_diff_str(m, i, j, x, sp) for i, j, x, sp in worse) + ".")
        for who, failed_algo, mask in ((base_label, m.baseline, fb & ~fo & has), (other, algo, fo & ~fb & has)):
            cells_ = [(i, j) for i, j in np.argwhere(mask)]
            if cells_:
                trained = other if who == base_label else base_label
                out.append(f"{head}: {who} failed ({_kinds(m, failed_algo, cells_)}) while {trained} trained at "
                           + "; ".join(_cell(m, i, j) for i, j in cells_) + ".")
        both = [(i, j) for i, j in np.argwhere(fb & fo)]
        if both:
            out.append(f"{head}: both diverge / collapse (no winner) at "
                       + "; ".join(f"{_cell(m, i, j)} ({base_label} {_kinds(m, m.baseline, [(i, j)])}, {other} "
                                   f"{_kinds(m, algo, [(i, j)])})" for i, j in both) + ".")  # fmt: skip
        partial = [(i, j) for i, j in np.argwhere((m.failed[m.baseline] + m.failed[algo] > 0) & np.isfinite(d))]
        if partial:
            out.append(f"{head}: some seeds failed at " + "; ".join(
                f"{_cell(m, i, j)} ({base_label} {m.failed[m.baseline][i, j]}, {other} {m.failed[algo][i, j]})"
                for i, j in partial) + "; the comparison there uses the seeds that trained.")  # fmt: skip
        if not better and not worse and np.isfinite(d).any():
            out.append(f"{head}: within 1 pp of each other wherever both trained.")
    return out


def _cell(m: RegimeMap, i: int, j: int) -> str:
    return f"{m.row_label(i)}, lr={value_text(m.lrs[j])}"


def _kinds(m: RegimeMap, algo: str, where: list) -> str:
    d = sum(int(m.diverged[algo][i, j]) for i, j in where)
    c = sum(int(m.collapsed[algo][i, j]) for i, j in where)
    words = [w for n, w in ((d, "diverged"), (c, "collapsed")) if n]
    return " / ".join(words) or "no final evaluation"


def _diff_str(m: RegimeMap, i: int, j: int, d: float, spread: float) -> str:
    s = f"{_cell(m, i, j)} ({d:.1f} pp"
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
        rows.append(Row([*(Cell(value_text(c.values[k]), left=True) for k in grid), Cell(f"{len(c.runs)}/{c.planned}"),
                         Cell(status, left=True),
                         *(Cell(format_stat(c.stat(k), kind), key=k) for k, _, kind in CELL_COLUMNS)],
                        {"data-cell": values_label(c.values)}))
    return Table(header, rows, "cells")
