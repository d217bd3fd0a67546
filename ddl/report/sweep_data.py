"""The sweep report's data: the grid points of a sweep directory (runs of one point are its seeds), the series
along a swept parameter, and the regime map (test error of the baseline and another algorithm over learning
rate × (learners, batch size), every algorithm of the grid against the baseline)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl.algorithms import BASELINE
from ddl.errors import RunDirError
from ddl.report.outcome import COLLAPSED, DIVERGED, failure
from ddl.report.runs import RunData, read_run
from ddl.report.stats import run_numbers, seed_stat

MAX_PANELS = 6  # series of the other grid parameters drawn per figure (and described in the findings)
CELL_COLUMNS = (("test_err", "test error", "err"), ("true_gap", "true gap", "num"),
                ("pairwise_gap", "A-W estimate", "num"), ("sharp_gap", "sharp part", "num"),
                ("flat_gap", "flat part", "num"), ("sigma_w_sum", "size Σσ_w", "num"),
                ("sigma_g_top", "mean σ_g top 10", "num"), ("lambda_max", "layer λ_max", "num"))  # fmt: skip


@dataclass
class GridPoint:
    """One grid point: its values and the runs (seeds) of it that finished."""

    values: dict
    runs: list[RunData]
    planned: int

    def stat(self, key: str) -> dict:
        return seed_stat([run_numbers(r)[key] for r in self.runs])

    def trained_stat(self, key: str) -> dict:
        """Mean ± std of ``key`` over the seeds that trained (:mod:`ddl.report.outcome`)."""
        return seed_stat([run_numbers(r)[key] for r in self.trained_runs])

    @property
    def trained_runs(self) -> list[RunData]:
        return [r for r in self.runs if failure(r) is None]

    @property
    def failed_runs(self) -> list[RunData]:
        return [r for r in self.runs if failure(r) is not None]

    @property
    def diverged(self) -> int:
        return sum(failure(r) == DIVERGED for r in self.runs)

    @property
    def collapsed(self) -> int:
        return sum(failure(r) == COLLAPSED for r in self.runs)


#: ``SWEEP/measure/RUN``: a dedicated noise-measurement run of the sweep's run RUN (``ddl demo`` writes them for
#: the cell its report shows): the same configuration and seed with the noise measured more often.  The meter
#: never changes training, so the two trajectories are the same; the report uses its noise records only when the
#: final evaluations (less the timings) agree exactly (:func:`with_measurement_run`).
MEASURE_DIR = "measure"


def with_measurement_run(sweep_dir: Path, run: RunData) -> RunData:
    """``run`` with the noise records of its dedicated measurement run (``SWEEP/measure/RUN``) when there is one
    whose final evaluation equals the run's (same trajectory); ``run`` itself otherwise."""
    dense = Path(sweep_dir) / MEASURE_DIR / run.path.name
    if not (dense / "summary.json").is_file():
        return run
    other = read_run(dense)
    if _evaluation(other) != _evaluation(run) or other.summary.get("steps") != run.summary.get("steps"):
        return run
    return dataclasses.replace(run, noise=other.noise)


_EVALUATION = ("step", "minibatch_loss", "train_loss", "train_acc", "test_loss", "test_acc", "consensus")


def _evaluation(run: RunData) -> dict:
    """A run's final evaluation of the trajectory: losses, accuracies, consensus (not the timings or the clock's
    bookkeeping, which depend on the machine and the version)."""
    final = run.summary.get("final") or {}
    return {k: final.get(k) for k in _EVALUATION}


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
    """Test error of every algorithm of the grid (``algos``: the baseline first) over learning rate × (learners
    n, per-learner batch b), rows sorted by the total batch B = n·b: the mean over the seeds that **trained**
    (:mod:`ddl.report.outcome`; NaN where none did or there is no run), with the counts of failed seeds per cell.
    A cell is keyed by (n, b), never by B alone, so two shapes of one total batch stay two rows."""

    algos: tuple[str, ...]
    fixed: dict
    lrs: list
    rows: list[tuple[int, int]]  # (n, b)
    error: dict[str, np.ndarray]  # algo -> [len(rows), len(lrs)], over trained seeds
    failed: dict[str, np.ndarray]  # algo -> failed seeds per cell
    trained: dict[str, np.ndarray]  # algo -> trained seeds per cell
    diverged: dict[str, np.ndarray]
    collapsed: dict[str, np.ndarray]
    cells: dict[str, list[list[GridPoint | None]]]

    @property
    def baseline(self) -> str:
        return self.algos[0]

    @property
    def others(self) -> tuple[str, ...]:
        return self.algos[1:]

    @property
    def batches(self) -> list[int]:
        """The total batch B = n·b of each row."""
        return [n * b for n, b in self.rows]

    def row_label(self, i: int) -> str:
        n, b = self.rows[i]
        return f"B={n * b} (n={n}, b={b})"

    def difference(self, algo: str) -> np.ndarray:
        """``algo``'s test error minus the baseline's over trained seeds (NaN where either has none)."""
        return self.error[algo] - self.error[self.baseline]

    def spread(self, algo: str) -> np.ndarray:
        """Seed-to-seed standard deviation of the difference, √(std_base² + std_algo²), over trained seeds (NaN
        with fewer than two)."""
        std = {a: np.array([[c.trained_stat("test_err")["std"] if c else np.nan for c in row]
                            for row in self.cells[a]]) for a in (self.baseline, algo)}  # fmt: skip
        return np.sqrt(std[self.baseline] ** 2 + std[algo] ** 2)

    def all_failed(self, algo: str) -> np.ndarray:
        """Cells where ``algo`` has runs and every one of them failed."""
        return (self.failed[algo] > 0) & (self.trained[algo] == 0)

    def most_different(self) -> tuple[str, int, int] | None:
        """(algorithm, row, lr index) of the largest |test-error difference| to the baseline among the cells
        where both trained (at least one seed each); None when there is no such cell (a cell where one or both
        failed is never "where they differ most")."""
        best, where = -1.0, None
        for a in self.others:
            d = np.abs(self.difference(a))
            for i, j in np.argwhere(np.isfinite(d)):
                if d[i, j] > best:
                    best, where = float(d[i, j]), (a, int(i), int(j))
        return where


def regime_maps(grid: dict, cells: list[GridPoint], baseline: str | None = None) -> list[RegimeMap]:
    """One map per combination of the grid parameters other than algo, lr, batch_size and learners; needs the
    baseline (default: the algorithm that declares itself the baseline, :data:`ddl.algorithms.BASELINE`) and at
    least one other algorithm, and several learning rates, in the grid."""
    baseline = baseline or BASELINE
    algos = list(dict.fromkeys(grid.get("algo", [])))
    if len(algos) < 2 or baseline not in algos or len(grid.get("lr", [])) < 2:
        return []
    order = (baseline, *(a for a in algos if a != baseline))
    others = [k for k in grid if k not in ("algo", "lr", "batch_size", "learners")]
    maps = []
    for combo in product([grid[k] for k in others]):
        fixed = dict(zip(others, combo))
        mine = [c for c in cells if all(c.values.get(k) == v for k, v in fixed.items()) and c.runs]
        if not mine:
            continue
        lrs = sorted(grid["lr"])
        rows = sorted({(c.runs[0].config.learners, c.runs[0].config.batch_size) for c in mine},
                      key=lambda nb: (nb[0] * nb[1], nb[0]))
        shape = (len(rows), len(lrs))
        err = {a: np.full(shape, np.nan) for a in order}
        counts = {k: {a: np.zeros(shape, int) for a in order} for k in ("failed", "trained", "diverged", "collapsed")}
        where: dict[str, list[list[GridPoint | None]]] = {a: [[None] * len(lrs) for _ in rows] for a in order}
        for c in mine:
            cfg = c.runs[0].config
            i, j = rows.index((cfg.learners, cfg.batch_size)), lrs.index(cfg.lr)
            if where[cfg.algo][i][j] is not None:
                raise RunDirError(f"regime map: two grid points fall on one cell (algo={cfg.algo}, lr={cfg.lr}, "
                                  f"n={cfg.learners}, b={cfg.batch_size}): {values_label(where[cfg.algo][i][j].values)}"
                                  f" and {values_label(c.values)}")  # fmt: skip
            err[cfg.algo][i, j] = c.trained_stat("test_err")["mean"]
            for k, v in (("failed", len(c.failed_runs)), ("trained", len(c.trained_runs)),
                         ("diverged", c.diverged), ("collapsed", c.collapsed)):
                counts[k][cfg.algo][i, j] = v
            where[cfg.algo][i][j] = c
        maps.append(RegimeMap(order, fixed, lrs, rows, err, counts["failed"], counts["trained"],
                              counts["diverged"], counts["collapsed"], where))
    return maps
