"""The sweep report's data: the grid points of a sweep directory (runs of one point are its seeds), the series
along a swept parameter, and the regime map (test error of the baseline and another algorithm over learning
rate × total batch size)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl.algorithms import BASELINE, label_of
from ddl.errors import RunDirError
from ddl.report.runs import RunData, read_run
from ddl.report.stats import run_numbers, seed_stat

# every data set of ddl.data has 10 classes: a model stuck at chance has cross-entropy ≈ ln 10
CHANCE_LOSS = math.log(10)
COLLAPSED_FRACTION = 0.9  # final training loss ≥ this × ln C: "collapsed" (learned next to nothing)
MAX_PANELS = 6  # series of the other grid parameters drawn per figure (and described in the findings)
CELL_COLUMNS = (("test_err", "test error", "err"), ("true_gap", "true gap", "num"),
                ("pairwise_gap", "A-W estimate", "num"), ("sharp_gap", "sharp part", "num"),
                ("flat_gap", "flat part", "num"), ("sigma_w_sum", "size Σσ_w", "num"),
                ("sigma_g_top", "mean σ_g top 10", "num"), ("lambda_max", "λ_max", "num"))  # fmt: skip


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


def cell_key(values: dict) -> str:
    return json.dumps(values, sort_keys=True)


def values_label(values: dict) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in values.items()) or "all runs"


def value_text(v) -> str:
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
        c = cells.setdefault(cell_key(r["values"]), GridPoint(r["values"], [], 0))
        c.planned += 1
        path = sweep_dir / r["dir"]
        if (path / "summary.json").is_file():
            c.runs.append(read_run(path))
    return doc["spec"], grid, list(cells.values())


def is_numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def series_along(param: str, grid: dict, cells: list[GridPoint]) -> list[tuple[dict, list[GridPoint | None]]]:
    """For each combination of the other grid parameters: the cells along ``param`` (None where missing)."""
    by_key = {cell_key(c.values): c for c in cells}
    others = [k for k in grid if k != param]
    out = []
    for combo in product([grid[k] for k in others]):
        fixed = dict(zip(others, combo))
        line = [by_key.get(cell_key({k: ({**fixed, param: v})[k] for k in grid})) for v in grid[param]]
        out.append((fixed, line))
    return out


def product(lists):
    if not lists:
        return [()]
    return [(a, *rest) for a in lists[0] for rest in product(lists[1:])]


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
    for combo in product([grid[k] for k in others]):
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
