"""Reading run directories for a report: :func:`read_runs` turns command-line paths into :class:`RunData`.

A path is a run directory (it has ``config.json``) or a directory of runs, e.g. a sweep's output: its immediate
subdirectories that are runs are taken, in name order.  Nothing here trains or analyses: a run without
``analysis/duality.*`` or ``noise.jsonl`` simply has less data, and :attr:`RunData.missing` records what is
absent for :func:`missing_lines` to say how to get it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.result import DualityResult
from ddl.config import TrainConfig
from ddl.rundir.layout import RunDirError, load_run

# kinds of missing data, each with the line :func:`missing_lines` writes for them
MISSING_SUMMARY, MISSING_METRICS, MISSING_DUALITY, UNREADABLE_DUALITY, MISSING_NOISE = (
    "summary", "metrics", "duality", "duality_error", "noise")  # fmt: skip
NOISE_KEYS = ("step", "epoch", "ssgd_noise_sq", "dpsgd_noise_sq", "total_noise_sq", "sharpness", "consensus")


@dataclass
class RunData:
    """One run directory, read once: config, summary, metrics, noise and (if analysed) the duality result."""

    path: Path
    config: TrainConfig
    summary: dict
    metrics: list[dict]
    noise: list[dict]
    duality: DualityResult | None
    missing: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail): see :func:`missing_lines`

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unfinished"))

    @property
    def final(self) -> dict:
        """The last evaluation: ``summary.json``'s ``final``, else the last line of ``metrics.jsonl``."""
        f = self.summary.get("final") or {}
        return f if f else (self.metrics[-1] if self.metrics else {})


def as_float(v) -> float:
    """``v`` as a float; NaN for ``None`` or anything that is not a number."""
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def is_run_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def expand_run_dirs(paths: list) -> list[Path]:
    """The run directories named by ``paths``, in order and without repeats (compared after resolving).

    A path that is not a run but holds runs one level down (a sweep's output directory) stands for those runs,
    in name order.  Raises :class:`RunDirError` for a path that is neither.
    """
    if not paths:
        raise RunDirError("RUN: give at least one run directory")
    out, seen = [], set()
    for given in paths:
        p = Path(given)
        if is_run_dir(p):
            found = [p]
        elif p.is_dir():
            found = sorted((c for c in p.iterdir() if c.is_dir() and is_run_dir(c)), key=lambda c: c.name)
            if not found:
                raise RunDirError(f"RUN: {p} is neither a run directory (no config.json) nor a directory of runs")
        else:
            raise RunDirError(f"RUN_DIR: {p} has no config.json (not a ddl run directory)")
        for run in found:
            key = run.resolve()
            if key not in seen:
                seen.add(key)
                out.append(run)
    return out


def read_duality(analysis_dir: Path) -> tuple[DualityResult | None, str | None]:
    """The duality result in ``analysis_dir`` (``None`` when there is none) and, when one is there but cannot
    be read, one line saying why."""
    if not (analysis_dir / "duality.json").is_file() or not (analysis_dir / "duality.npz").is_file():
        return None, None
    try:
        return DualityResult.load(analysis_dir), None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        return None, f"{analysis_dir} holds an unreadable duality result ({type(e).__name__}: {e})"


def read_run(path: str | Path) -> RunData:
    """Read a run directory for a report (a run without checkpoints, e.g. one still training, is fine).
    Raises :class:`ddl.rundir.layout.RunDirError` if it is not a run directory."""
    run = load_run(path, require_checkpoint=False)
    metrics, noise = run.metrics(), run.noise()
    duality, why = read_duality(run.path / "analysis")
    missing = []
    if not run.summary:
        missing.append((MISSING_SUMMARY, ""))
    if not metrics:
        missing.append((MISSING_METRICS, ""))
    if duality is None:
        missing.append((UNREADABLE_DUALITY, why) if why else (MISSING_DUALITY, ""))
    if not noise:
        missing.append((MISSING_NOISE, ""))
    return RunData(run.path, run.config, run.summary, metrics, noise, duality, missing)


def read_runs(paths: list) -> list[RunData]:
    """Every run named by ``paths`` (see :func:`expand_run_dirs`), read."""
    return [read_run(p) for p in expand_run_dirs(paths)]


def missing_lines(runs: list[RunData]) -> list[str]:
    """What the runs lack and how to get it, one line per kind (Markdown inline code for commands)."""
    by_kind: dict[str, list[tuple[RunData, str]]] = {}
    for r in runs:
        for kind, detail in r.missing:
            by_kind.setdefault(kind, []).append((r, detail))

    def names(kind: str) -> str:
        return ", ".join(str(r.path) for r, _ in by_kind[kind])

    out = []
    if MISSING_SUMMARY in by_kind:
        out.append(f"No summary.json (training unfinished?) in {names(MISSING_SUMMARY)}: the last logged "
                   "evaluation stands in for the final one.")  # fmt: skip
    if MISSING_METRICS in by_kind:
        out.append(f"No metrics.jsonl in {names(MISSING_METRICS)}: no training curves for it.")
    if MISSING_DUALITY in by_kind:
        cmds = "; ".join(f"`ddl analyze {r.path}`" for r, _ in by_kind[MISSING_DUALITY])
        out.append(f"No duality analysis for {names(MISSING_DUALITY)}, so no gap split or spectra for it: run "
                   f"{cmds}.")  # fmt: skip
    out += [detail for _, detail in by_kind.get(UNREADABLE_DUALITY, [])]
    if MISSING_NOISE in by_kind:
        out.append(f"No noise measurements in {names(MISSING_NOISE)}: train with `--measure-noise K` "
                   "(e.g. K = 20) for the noise figures.")  # fmt: skip
    return out


def noise_series(noise: list[dict]) -> dict[str, np.ndarray]:
    """Arrays of the noise records after step 0 (where all learners are equal and η_DP = 0 by construction);
    empty if there are none."""
    recs = [r for r in noise if r.get("step", 0) > 0]
    if not recs:
        return {}
    return {k: np.array([as_float(r.get(k)) for r in recs]) for k in NOISE_KEYS}
