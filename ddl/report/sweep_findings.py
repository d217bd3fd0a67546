"""The sweep report's words and table: findings (trends, the regime map's verdicts) and the table of grid
points."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ddl.report.formatting import format_stat
from ddl.report.render import Cell, Row, Table
from ddl.report.stats import run_numbers
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
        if not is_numeric(values) or len(values) < 2:
            continue
        for fixed, line in series_along(param, grid, cells)[:MAX_PANELS]:
            g = [c.stat("true_gap")["mean"] if c else np.nan for c in line]
            if np.isfinite(g[0]) and np.isfinite(g[-1]):
                steps = np.diff([x for x in g if np.isfinite(x)])
                word = "rises" if g[-1] > g[0] else "falls"
                if not (np.all(steps > 0) or np.all(steps < 0)):
                    word += " (not monotonically)"
                seq = ", ".join(f"{x:.4g}" for x in g)
                lines.append(f"{values_label(fixed)}: the true gap {word} as {param} goes from "
                             f"{value_text(values[0])} to "
                             f"{value_text(values[-1])}: {seq}.")  # fmt: skip
                nums.setdefault("trends", []).append({"param": param, "fixed": fixed, "true_gap": g})
    for m in maps:
        where = f" ({values_label(m.fixed)})" if m.fixed else ""
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
                         + "; ".join(f"B={b}, lr={value_text(lr)}" for b, lr in only_base_failed) + ".")
        if not better and not worse and not only_base_failed:
            lines.append(f"Regime map{where}: {base} and {other} are within 1 pp of each other everywhere.")
    return lines, nums


def _diff_str(b, lr, d: float, spread: float) -> str:
    s = f"B={b}, lr={value_text(lr)} ({d:.1f} pp"
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
