"""What a sweep runs: the spec (base flags, grid, seeds, analysis), the planned runs, and each run's state on
disk (done, to analyse, to resume, to train)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

from ddl.config import TrainConfig, fields_by_role, read_config_file
from ddl.errors import ConfigError, RunDirError
from ddl.rundir.checkpoint import list_checkpoints
from ddl.rundir.layout import read_config, read_summary
from ddl.sweep.analysis import AnalysisRequest
from ddl.sweep.grid import GRID_ROLES, fmt_value, normalize_grid

# a finished run is reused only if it agrees with the plan in all of these (execution flags may differ)
COMPARED_ROLES = GRID_ROLES + ("replicate",)
# train flags the sweep sets itself, or that select a distributed backend (sweep runs are simulated)
SWEEP_OWNED = ("seed", "out", "overwrite", "progress", "backend", "dist_backend", "workers", "address",
               "ray_transport")
SPEC_KEYS = ("title", "base", "grid", "seeds", "analyze", "analysis", "jobs", "executor", "threads",
             "cpus_per_run", "gpus_per_run")  # fmt: skip
EXECUTION_KEYS = ("jobs", "executor", "threads", "cpus_per_run", "gpus_per_run")


@dataclasses.dataclass
class SweepSpec:
    """What to run: base train flags, a grid (field → values, product taken in this order), seeds, analysis."""

    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, list] = dataclasses.field(default_factory=dict)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    analyze: bool = True
    analysis: dict[str, Any] = dataclasses.field(default_factory=dict)  # `ddl analyze` options by name
    title: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RunPlan:
    name: str
    values: dict[str, Any]
    seed: int
    config: TrainConfig
    path: Path


def _base_values(base: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {}
    for k, v in base.items():
        name = k.replace("-", "_")
        if name not in names:
            raise ConfigError(f"base: unknown train flag {k!r}")
        if name in SWEEP_OWNED:
            raise ConfigError(f"--{name.replace('_', '-')}: set by the sweep (use --seeds, --out, --executor)")
        out[name] = v
    return out


def plan_runs(spec: SweepSpec, out: str | Path) -> list[RunPlan]:
    """Every (grid point, seed), in grid order then seed, with its validated config and directory."""
    root = Path(out).absolute()
    base = _base_values(spec.base)
    if not spec.seeds:
        raise ConfigError("--seeds: at least one seed")
    keys = list(spec.grid)
    plans = []
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        for seed in spec.seeds:
            name = ",".join([f"{k}={fmt_value(v)}" for k, v in values.items()] + [f"seed={seed}"])
            path = root / name
            try:
                cfg = TrainConfig.from_dict({**base, **values, "seed": seed, "out": str(path), "overwrite": True,
                                             "progress": False}).validate()
            except TypeError as e:
                raise ConfigError(f"base: {e}") from None
            plans.append(RunPlan(name, values, seed, cfg, path))
    return plans


def load_spec(path: str | Path) -> tuple[SweepSpec, dict[str, Any]]:
    """A spec file (YAML/JSON/TOML) → the spec and its execution settings (jobs, executor, threads, …)."""
    try:
        raw = read_config_file(path)
    except ConfigError as e:
        raise ConfigError(str(e).replace("--config", "SPEC", 1)) from None
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"SPEC: {path}: unknown keys {', '.join(unknown)} (allowed: {', '.join(SPEC_KEYS)})")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    analysis = raw.get("analysis") or {}
    if not isinstance(analysis, dict):
        raise ConfigError("SPEC: analysis: must be a mapping of `ddl analyze` options")
    spec = SweepSpec(base=dict(raw.get("base") or {}), grid=normalize_grid(raw.get("grid")),
                     seeds=[int(s) for s in seeds], analyze=bool(raw.get("analyze", True)),
                     analysis={k.replace("-", "_"): v for k, v in analysis.items()}, title=raw.get("title"))
    execution = {k: raw[k] for k in EXECUTION_KEYS if k in raw}
    return spec, execution


# ---- a planned run's state on disk ------------------------------------------------------------------------
def run_status(run_dir: Path) -> str | None:
    """The training status in a run's ``summary.json`` (None: none yet, or unreadable)."""
    try:
        return (read_summary(run_dir) or {}).get("status")
    except RunDirError:
        return None


def _compared(cfg: TrainConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in fields_by_role(*COMPARED_ROLES)}


def _differences(plan: RunPlan) -> list[str]:
    """Fields in which the run on disk differs from the plan (empty: same configuration)."""
    try:
        have = _compared(read_config(plan.path / "config.json"))
    except Exception:  # unreadable: treat as different (it gets redone when unfinished)
        return ["config.json"]
    want = _compared(plan.config)
    return [f"{k}: {have[k]!r} → {want[k]!r}" for k in want if json.dumps(have.get(k)) != json.dumps(want[k])]


def run_state(plan: RunPlan, analysis: AnalysisRequest | None) -> str:
    """``"done"``, ``"analyze"`` (trained, analysis missing or with other options), ``"resume"`` (interrupted
    with a checkpoint: continued by ``ddl train --resume``, or trained again if that fails) or ``"train"``;
    ``analysis``: what every run gets analysed with (None: no analysis)."""
    trained = (plan.path / "summary.json").is_file() and (plan.path / "checkpoints" / "averaged.pt").is_file()
    if not trained:
        started = (plan.path / "config.json").is_file() and not _differences(plan)
        return "resume" if started and list_checkpoints(plan.path / "checkpoints") else "train"
    diff = _differences(plan)
    if diff:
        raise ConfigError(f"--out: {plan.path} holds a finished run with another configuration ({'; '.join(diff)}); "
                          "use another --out or delete that run")  # fmt: skip
    if analysis is None or run_status(plan.path) == "diverged" or analysis.done_in(plan.path):
        return "done"
    return "analyze"
