"""``ddl sweep``: a grid of training runs (product of grid values × seeds) run in parallel, each analysed.

Layout of a sweep directory::

    DIR/
      sweep.json      the spec (base flags, grid, seeds, analysis options) and the planned runs
      results.csv     one row per planned run (see RESULT_COLUMNS), rewritten after every finished run
      <NAME>/         one run directory per (grid values, seed), NAME = "key=value,…,seed=S"
                      (+ sweep.log: the run's output; error.txt / analysis-error.txt when it failed)
      report/         the sweep report (ddl.report.sweep)

``ddl compare DIR`` reads the runs of a sweep directory like any directory of runs.

Idempotent and resumable: a run is done when its ``summary.json`` exists with the planned configuration (and,
with analysis, its ``analysis/options.json`` holds the planned analysis options); done runs are skipped, every
other run is (re)done, so the same command given again after a kill continues where the sweep stopped.  A run
that was killed mid-way continues from its last checkpoint (``ddl train --resume``; ``--checkpoint-every``
sets how often one is written), or is trained again from its start when it has none.  A finished run whose
configuration differs from the plan (the base flags changed but the grid values did not) is an error, not
silently replaced.

Executors: ``local`` — K worker processes on this machine (spawned, each with ``cores // K`` torch threads, killed
with the sweep); ``ray`` — one Ray task per run on a local cluster or an existing one (``--address``), with
``--cpus-per-run`` / ``--gpus-per-run`` resources.  A run that raises or diverges is recorded and the others go on.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import shutil
import socket
import sys
import time
import traceback
import typing
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from analysis.io import atomic_write, write_json
from ddl.config import TrainConfig, fields_by_role, read_config_file
from ddl.errors import ConfigError, DDLError
from ddl.loop.progress import fmt_duration, is_terminal, progress_bar

__all__ = ["RESULT_COLUMNS", "RunPlan", "SweepSpec", "add_sweep_arguments", "load_spec", "parse_grid_item",
           "plan_runs", "read_results", "result_row", "run_sweep", "run_sweep_command"]

GRID_ROLES = ("algorithm", "model", "data", "stopping", "measure")
# a finished run is reused only if it agrees with the plan in all of these (execution flags may differ)
COMPARED_ROLES = GRID_ROLES + ("replicate",)
# train flags the sweep sets itself, or that select a distributed backend (sweep runs are simulated)
SWEEP_OWNED = ("seed", "out", "overwrite", "progress", "backend", "dist_backend", "workers", "address",
               "ray_transport")
RESULT_COLUMNS = ("seed", "status", "steps", "epochs", "train_loss", "test_loss", "test_error", "true_gap",
                  "aw_gap", "sharp_gap", "flat_gap", "n_sharp", "size", "sharpness_top10", "lambda_max",
                  "wall_s")  # fmt: skip
EXECUTORS = ("local", "ray")
SPEC_KEYS = ("title", "base", "grid", "seeds", "analyze", "analysis", "jobs", "executor", "threads",
             "cpus_per_run", "gpus_per_run")  # fmt: skip
# analyze flags that the sweep owns, or that clash with a train flag, get an "--analysis-" prefix
_ANALYZE_SKIP = ("help", "run_dir", "out", "progress")


# ---- grid values ------------------------------------------------------------------------------------------
def _field_types() -> dict[str, tuple[type, bool, bool]]:
    """Per config field: (element type, is a list, may be None)."""
    out = {}
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = [a for a in args if a is not type(None)]
        typ = base[0] if (optional and base) else hint
        if typing.get_origin(typ) is list:
            out[f.name] = (typing.get_args(typ)[0], True, optional)
        else:
            out[f.name] = (typ, False, optional)
    return out


def _grid_key(key: str) -> str:
    name = key.strip().lstrip("-").replace("-", "_")
    if name == "seed":
        raise ConfigError("--grid seed: give seeds with --seeds S1 S2 … (or 'seeds:' in the spec)")
    allowed = fields_by_role(*GRID_ROLES)
    if name not in allowed:
        if name in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise ConfigError(f"--grid {name}: an execution setting, not a parameter of the runs")
        raise ConfigError(f"--grid {name}: not a train flag (e.g. lr, batch_size, algo, learners, weight_decay)")
    return name


def _scalar(key: str, typ: type, optional: bool, v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"--grid {key}: None is not allowed")
    try:
        if typ is bool:
            if isinstance(v, bool):
                return v
            s = str(v).strip().lower()
            if s in ("true", "1", "yes", "on"):
                return True
            if s in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(v, float) and not v.is_integer() or isinstance(v, bool):
                raise ValueError
            return int(v) if not isinstance(v, str) else int(v.strip())
        if typ is float:
            if isinstance(v, bool):
                raise ValueError
            return float(v)
        return str(v).strip()
    except ValueError:
        raise ConfigError(f"--grid {key}: {v!r} is not a valid {typ.__name__}") from None


def coerce_value(key: str, v: Any) -> Any:
    """``v`` (a string from the command line or a value from YAML) as the type of config field ``key``.

    List fields (``hidden``, ``lr_milestones``) take ``:``-separated elements on the command line (``30:30``).
    """
    typ, is_list, optional = _field_types()[key]
    if is_list:
        if v is None and optional:
            return None
        if isinstance(v, str):
            v = [p for p in v.split(":") if p.strip()] if v.strip() else []
        elif not isinstance(v, (list, tuple)):
            v = [v]
        return [_scalar(key, typ, False, e) for e in v]
    value = _scalar(key, typ, optional, v)
    choices = next(f.metadata.get("choices") for f in dataclasses.fields(TrainConfig) if f.name == key)
    if choices and value not in choices:
        raise ConfigError(f"--grid {key}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def parse_grid_item(item: str) -> tuple[str, list]:
    """``"KEY=V1,V2,…"`` → (field name, typed values)."""
    if "=" not in item:
        raise ConfigError(f"--grid: {item!r} is not KEY=V1,V2,…")
    key, _, values = item.partition("=")
    name = _grid_key(key)
    parts = [p for p in values.split(",")]
    if not values.strip() or any(not p.strip() for p in parts):
        raise ConfigError(f"--grid {name}: empty value in {values!r}")
    return name, _unique(name, [coerce_value(name, p) for p in parts])


def _unique(name: str, values: list) -> list:
    seen = []
    for v in values:
        if v in seen:
            raise ConfigError(f"--grid {name}: {v!r} given twice")
        seen.append(v)
    return seen


def fmt_value(v: Any) -> str:
    """A grid value as it appears in run names and tables: ``0.1``, ``1e-05``, ``none``, ``30:30``, ``true``."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ":".join(fmt_value(e) for e in v)
    if isinstance(v, float):
        return repr(v)
    return str(v).replace("/", "_").replace(os.sep, "_")


# ---- the spec and the planned runs ------------------------------------------------------------------------
@dataclasses.dataclass
class SweepSpec:
    """What to run: base train flags, a grid (field → values, product taken in this order), seeds, analysis."""

    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, list] = dataclasses.field(default_factory=dict)
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    analyze: bool = True
    analysis: dict[str, Any] = dataclasses.field(default_factory=dict)  # `ddl analyze` options by dest name
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


def _normalize_grid(grid: Any) -> dict[str, list]:
    if grid is None:
        return {}
    if isinstance(grid, list):  # ["lr=0.1,0.2", …]
        return dict(parse_grid_item(str(g)) for g in grid)
    if not isinstance(grid, dict):
        raise ConfigError("grid: must map train flags to lists of values")
    out = {}
    for k, vs in grid.items():
        name = _grid_key(str(k))
        if not isinstance(vs, list) or (name in ("hidden", "lr_milestones") and vs and not isinstance(vs[0], list)):
            vs = [vs]
        if not vs:
            raise ConfigError(f"grid {name}: no values")
        out[name] = _unique(name, [coerce_value(name, v) for v in vs])
    return out


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
    spec = SweepSpec(base=dict(raw.get("base") or {}), grid=_normalize_grid(raw.get("grid")),
                     seeds=[int(s) for s in seeds], analyze=bool(raw.get("analyze", True)),
                     analysis={k.replace("-", "_"): v for k, v in analysis.items()}, title=raw.get("title"))
    execution = {k: raw[k] for k in ("jobs", "executor", "threads", "cpus_per_run", "gpus_per_run") if k in raw}
    return spec, execution


# ---- analysis options (the flags of `ddl analyze`) --------------------------------------------------------
def _analyze_parser() -> argparse.ArgumentParser:
    from ddl.commands.analyze import add_analyze_arguments

    return add_analyze_arguments(argparse.ArgumentParser(add_help=False))


def _analyze_actions() -> list[argparse.Action]:
    return [a for a in _analyze_parser()._actions if a.dest not in _ANALYZE_SKIP]


def analysis_defaults() -> dict[str, Any]:
    """Every `ddl analyze` option by dest name with its default (the decomposition's from DecomposeOptions)."""
    from analysis.decompose import DecomposeOptions

    options = DecomposeOptions()
    return {a.dest: getattr(options, a.dest) if a.default is argparse.SUPPRESS else a.default
            for a in _analyze_actions()}


def resolve_analysis(options: dict[str, Any]) -> dict[str, Any]:
    """``ddl analyze`` options by dest name, completed with the defaults; unknown names are an error."""
    d = analysis_defaults()
    unknown = sorted(set(options) - set(d))
    if unknown:
        raise ConfigError(f"analysis: unknown `ddl analyze` options {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(d))})")  # fmt: skip
    resolved = {**d, **options}
    from analysis.decompose import DecomposeOptions

    names = {f.name for f in dataclasses.fields(DecomposeOptions)}
    DecomposeOptions(**{k: v for k, v in resolved.items() if k in names}).checked()  # bad values fail now
    return resolved


def _analyze(run_dir: Path, options: dict[str, Any]) -> None:
    from ddl.commands.analyze import run_analyze

    run_analyze(argparse.Namespace(**options, run_dir=str(run_dir), out=None, progress=False))


# ---- one run (in a worker process or a Ray task) ----------------------------------------------------------
_STARTED = ".sweep-started"


def execute_run(task: dict) -> dict:
    """Train (if ``task["train"]``) and analyse one run; never raises for a failing run.

    Returns ``{"name", "ok", "error"}``; the run's output goes to ``RUN/sweep.log``, a failure's traceback to
    ``RUN/error.txt`` (training) or ``RUN/analysis-error.txt`` (analysis).
    """
    path = Path(task["path"])
    path.mkdir(parents=True, exist_ok=True)
    if task.get("threads"):
        import torch

        torch.set_num_threads(int(task["threads"]))
    (path / _STARTED).write_text(json.dumps({"token": task.get("token"), "pid": os.getpid()}))
    stage = "train"
    try:
        with open(path / "sweep.log", "a") as log, redirect_stdout(log), redirect_stderr(log):
            what = ["continuing" if task.get("resume") else "training"] if task["train"] else []
            what += ["analysing"] if task["analyze"] else []
            print(f"ddl sweep: {' and '.join(what)} {task['name']} in process {os.getpid()} on {_where()}, "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
            if task["train"]:
                for stale in ("error.txt", "analysis-error.txt"):
                    (path / stale).unlink(missing_ok=True)
                shutil.rmtree(path / "analysis", ignore_errors=True)
                from ddl.loop.train import train

                cfg, res = TrainConfig.from_dict(task["config"]), None
                if task.get("resume"):  # an interrupted run with a checkpoint: continue it (ddl train --resume)
                    try:
                        res = train(dataclasses.replace(cfg, resume=True, overwrite=False))
                        print("continued from its last checkpoint")
                    except DDLError as e:
                        print(f"cannot continue ({e}); training again from the start")
                if res is None:
                    res = train(cfg)
                print(f"{res.status} after {res.steps} steps")
            stage = "analysis"
            if task["analyze"] and _read_json(path / "summary.json").get("status") != "diverged":
                (path / "analysis-error.txt").unlink(missing_ok=True)
                (path / "analysis" / "options.json").unlink(missing_ok=True)  # valid again only once this is done
                _analyze(path, task["analysis"])
                write_json(path / "analysis" / "options.json", task["analysis"])
        return {"name": task["name"], "ok": True, "error": None}
    except Exception as e:  # a failing run is recorded, and the sweep goes on with the others
        name = "error.txt" if stage == "train" else "analysis-error.txt"
        atomic_write(path / name, lambda f: f.write(traceback.format_exc().encode()))
        line = (str(e).splitlines() or [""])[0] or type(e).__name__
        return {"name": task["name"], "ok": False, "error": f"{stage}: {type(e).__name__}: {line}"}
    finally:
        (path / _STARTED).unlink(missing_ok=True)


def _where() -> str:
    """This host, and the Ray node when running as a Ray task."""
    where = socket.gethostname()
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            where += f" (ray node {ray.get_runtime_context().get_node_id()[:12]})"
    return where


def _worker_init(threads: int) -> None:
    """Local worker: dies with the sweep (a killed sweep leaves no run going on), fixed torch threads."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the sweep died before prctl: do not start anything
            os._exit(1)
    import torch

    torch.set_num_threads(threads)


# ---- state on disk ----------------------------------------------------------------------------------------
def _read_json(p: Path) -> dict:
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _compared(cfg: TrainConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in fields_by_role(*COMPARED_ROLES)}


def _differences(plan: RunPlan) -> list[str]:
    """Fields in which the run on disk differs from the plan (empty: same configuration)."""
    from ddl.rundir.layout import read_config

    try:
        have = _compared(read_config(plan.path / "config.json"))
    except Exception:  # unreadable: treat as different (it gets redone when unfinished)
        return ["config.json"]
    want = _compared(plan.config)
    return [f"{k}: {have[k]!r} → {want[k]!r}" for k in want if json.dumps(have.get(k)) != json.dumps(want[k])]


def run_state(plan: RunPlan, analyze: bool, analysis: dict) -> str:
    """``"done"``, ``"analyze"`` (trained, analysis missing or with other options), ``"resume"`` (interrupted
    with a checkpoint: continued by ``ddl train --resume``, or trained again if that fails) or ``"train"``."""
    trained = (plan.path / "summary.json").is_file() and (plan.path / "checkpoints" / "averaged.pt").is_file()
    if not trained:
        from ddl.rundir.checkpoint import list_checkpoints

        started = (plan.path / "config.json").is_file() and not _differences(plan)
        return "resume" if started and list_checkpoints(plan.path / "checkpoints") else "train"
    diff = _differences(plan)
    if diff:
        raise ConfigError(f"--out: {plan.path} holds a finished run with another configuration ({'; '.join(diff)}); "
                          "use another --out or delete that run")  # fmt: skip
    if not analyze or _read_json(plan.path / "summary.json").get("status") == "diverged":
        return "done"
    done = _read_json(plan.path / "analysis" / "options.json")
    if done and json.dumps(done, sort_keys=True) == json.dumps(_json_safe(analysis), sort_keys=True) \
            and (plan.path / "analysis" / "duality.json").is_file():
        return "done"
    return "analyze"


def _json_safe(d: dict) -> dict:
    return json.loads(json.dumps(d))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def result_row(plan: RunPlan) -> dict[str, Any]:
    """One ``results.csv`` row from the run directory (grid values, then RESULT_COLUMNS).

    The numbers are the reports' (:func:`ddl.report.stats.run_numbers`): ``true_gap`` is the analysis's
    L_test − L_train (its training set: the clean training samples) when the run was analysed, else the final
    evaluation's test − train loss; ``size`` = Σ_k σ_w,k; ``sharpness_top10`` the mean σ_g over the 10 directions
    of largest Hessian eigenvalue; ``wall_s`` training plus analysis.  ``status``: the training status
    (converged, max_epochs, diverged), ``failed`` (training raised), ``analysis_failed``, or ``pending`` (not
    run yet, or interrupted).
    """
    from ddl.report.runs import read_run
    from ddl.report.stats import run_numbers

    row: dict[str, Any] = {k: fmt_value(v) for k, v in plan.values.items()}
    row.update({c: None for c in RESULT_COLUMNS})
    row["seed"] = plan.seed
    p = plan.path
    if not (p / "summary.json").is_file():
        row["status"] = "failed" if (p / "error.txt").is_file() else "pending"
        return row
    run = read_run(p)
    n = run_numbers(run)
    row.update(status=run.status, steps=int(n["steps"]), epochs=n["epochs"], train_loss=n["train_loss"],
               test_loss=n["test_loss"], test_error=n["test_err"], true_gap=n["loss_gap"])
    wall = n["wall_time_s"]
    if run.duality is not None:
        d = run.duality
        row.update(true_gap=n["true_gap"], aw_gap=n["pairwise_gap"], sharp_gap=n["sharp_gap"],
                   flat_gap=n["flat_gap"], n_sharp=int(d.n_sharp), size=n["sigma_w_sum"],
                   sharpness_top10=n["sigma_g_top"], lambda_max=n["lambda_max"])
        wall += sum(_num(d.timings.get(k)) for k in ("total", "load", "figures") if k in d.timings)
    elif (p / "analysis-error.txt").is_file():
        row["status"] = "analysis_failed"
    row["wall_s"] = wall if math.isfinite(wall) else None
    return row


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def write_results(out: Path, plans: list[RunPlan], grid_keys: list[str]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = list(grid_keys) + list(RESULT_COLUMNS)
    w.writerow(cols)
    for plan in plans:
        row = result_row(plan)
        w.writerow([_csv_cell(row.get(c)) for c in cols])
    path = out / "results.csv"
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))
    return path


def read_results(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- the sweep --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SweepResult:
    out: Path
    plans: list[RunPlan]
    ran: int
    skipped: int
    failed: list[str]
    results: Path
    wall_s: float
    report: Path | None = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _Lock:
    """One sweep at a time per directory (an advisory lock, released when the process dies)."""

    def __init__(self, out: Path):
        self.path = out / ".sweep.lock"
        self.f = None

    def __enter__(self):
        import fcntl

        self.f = open(self.path, "a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.f.close()
            raise ConfigError(f"--out: {self.path.parent} is in use by another `ddl sweep`") from None
        return self

    def __exit__(self, *exc):
        self.f.close()


def _run_line(plan: RunPlan, outcome: dict, done: int, total: int, eta: float) -> str:
    row = result_row(plan)
    parts = [f"[{done}/{total}] {plan.name}: {row['status']}"]
    if not outcome["ok"]:
        parts[0] = f"[{done}/{total}] {plan.name}: FAILED ({outcome['error']})"
    if row["steps"] is not None:
        parts.append(f"{row['steps']} steps")
    if row["test_error"] is not None:
        parts.append(f"test error {_num(row['test_error']):.4f}")
    if row["aw_gap"] is not None:
        parts.append(f"gap {_num(row['true_gap']):.4g} (A-W {_num(row['aw_gap']):.4g})")
    if row["wall_s"] is not None:
        parts.append(f"{row['wall_s']:.1f} s")
    return ", ".join(parts) + (f"; ETA {fmt_duration(eta)}" if done < total else "")


def run_sweep(spec: SweepSpec, out: str | Path, jobs: int | None = None, executor: str = "local",
              address: str | None = None, threads: int | None = None, cpus_per_run: float | None = None,
              gpus_per_run: float = 0.0, progress: bool = True, report: bool = True) -> SweepResult:
    """Run every planned run not done yet (see the module docstring), write ``results.csv`` and the report."""
    t0 = time.perf_counter()
    out = Path(out)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    cores = _cores()
    jobs = cores if jobs is None else jobs
    if jobs < 1:
        raise ConfigError(f"--jobs: must be ≥ 1, got {jobs}")
    if executor == "ray":  # a run's threads follow the CPUs Ray gives it
        if cpus_per_run is None:
            cpus_per_run = float(threads) if threads is not None else 1.0
        if cpus_per_run <= 0 or gpus_per_run < 0:
            raise ConfigError(f"--cpus-per-run: must be > 0, got {cpus_per_run}")
        threads = threads if threads is not None else max(1, int(cpus_per_run))
    threads = threads if threads is not None else max(1, cores // jobs)
    if threads < 1:
        raise ConfigError(f"--threads: must be ≥ 1, got {threads}")
    analysis = resolve_analysis(spec.analysis) if spec.analyze else {}
    plans = plan_runs(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    with _Lock(out):
        states = {p.name: run_state(p, spec.analyze, analysis) for p in plans}
        write_json(out / "sweep.json", {
            "spec": spec.to_dict(), "analysis_resolved": analysis,
            "runs": [{"name": p.name, "values": p.values, "seed": p.seed, "dir": p.name} for p in plans],
        })
        grid_keys = list(spec.grid)
        todo = [p for p in plans if states[p.name] != "done"]
        skipped = len(plans) - len(todo)
        token = uuid.uuid4().hex
        tasks = [{"name": p.name, "path": str(p.path), "config": {**p.config.to_dict()}, "token": token,
                  "train": states[p.name] in ("train", "resume"), "resume": states[p.name] == "resume",
                  "analyze": spec.analyze, "analysis": _json_safe(analysis), "threads": threads}
                 for p in todo]  # fmt: skip
        write_results(out, plans, grid_keys)
        by_name = {p.name: p for p in plans}
        if progress:
            print(f"sweep: {len(plans)} runs ({len(todo)} to do, {skipped} done before) in {out}; "
                  f"{executor} executor, " + (f"{jobs} at a time, " if executor == "local" else
                                              f"{cpus_per_run:g} CPUs and {gpus_per_run:g} GPUs per run, ") +
                  f"{threads} thread{'s' if threads != 1 else ''} per run", file=sys.stderr, flush=True)  # fmt: skip
        bar = progress_bar(len(plans), desc="sweep", unit="run", disable=not progress)
        bar.update(skipped)
        failed: list[str] = []
        t_start = time.perf_counter()
        finished = 0

        def on_done(outcome: dict) -> None:
            nonlocal finished
            finished += 1
            if not outcome["ok"]:
                failed.append(outcome["name"])
            write_results(out, plans, grid_keys)
            elapsed = time.perf_counter() - t_start
            eta = elapsed / finished * (len(todo) - finished)
            if progress:
                line = _run_line(by_name[outcome["name"]], outcome, skipped + finished, len(plans), eta)
                if is_terminal():
                    bar.write(line)
                else:
                    print(line, file=sys.stderr, flush=True)
            bar.update(1)

        try:
            if todo:
                if executor == "local":
                    _run_local(tasks, jobs, threads, token, on_done)
                else:
                    _run_ray(tasks, address, cpus_per_run, gpus_per_run, on_done)
        finally:
            bar.close()
        results = write_results(out, plans, grid_keys)
        rep = None
        if report:
            rep = _build_report(out, progress)
    wall = time.perf_counter() - t0
    if progress:
        print(f"sweep: {len(todo)} run{'s' if len(todo) != 1 else ''} in {fmt_duration(wall)}, {skipped} skipped, "
              f"{len(failed)} failed; results {results}" + (f"; report {rep}" if rep else ""),
              file=sys.stderr, flush=True)  # fmt: skip
    return SweepResult(out, plans, len(todo), skipped, failed, results, wall, rep)


def _build_report(out: Path, progress: bool) -> Path:
    from ddl.report.sweep import build_sweep_report

    if progress:
        print("sweep: writing the report", file=sys.stderr, flush=True)
    return build_sweep_report(out)


def _run_local(tasks: list[dict], jobs: int, threads: int, token: str, on_done) -> None:
    """K spawned worker processes; a worker that dies (killed, out of memory) fails only the run it held."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pending = list(tasks)
    while pending:
        with ProcessPoolExecutor(min(jobs, len(pending)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init, initargs=(threads,)) as ex:
            futures = {ex.submit(execute_run, t): t for t in pending}
            pending = []
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    on_done(fut.result())
                except BrokenProcessPool:
                    # the runs that were going on when a worker died failed; the queued ones are run again
                    marker = _read_json(Path(t["path"]) / _STARTED)
                    if marker.get("token") == token:
                        (Path(t["path"]) / _STARTED).unlink(missing_ok=True)
                        atomic_write(Path(t["path"]) / "error.txt",
                                     lambda f: f.write(b"the worker process running this run died\n"))
                        on_done({"name": t["name"], "ok": False, "error": "worker process died"})
                    else:
                        pending.append(t)


def _run_ray(tasks: list[dict], address: str | None, cpus: float, gpus: float, on_done) -> None:
    """One Ray task per run; the cluster is the one at ``address``, or a local one started (and stopped) here."""
    import ray

    from ddl.drivers.ray_cluster import init_ray

    started = init_ray(address, _cores())
    try:
        avail = ray.cluster_resources()
        if cpus > avail.get("CPU", 0) or gpus > avail.get("GPU", 0):
            raise ConfigError(f"--cpus-per-run/--gpus-per-run: a run needs {cpus} CPUs and {gpus} GPUs, the cluster "
                              f"has {avail.get('CPU', 0):g} and {avail.get('GPU', 0):g}")  # fmt: skip
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute_run)
        refs = {remote.remote(t): t for t in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                t = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task's worker died
                    line = (str(e).splitlines() or [""])[0]
                    atomic_write(Path(t["path"]) / "error.txt", lambda f, m=str(e): f.write(m.encode()))
                    outcome = {"name": t["name"], "ok": False, "error": f"ray: {type(e).__name__}: {line}"}
                on_done(outcome)
    finally:
        if started:
            ray.shutdown()


# ---- command line -----------------------------------------------------------------------------------------
def add_sweep_arguments(parser: argparse.ArgumentParser, train_flags: set[str]) -> argparse.ArgumentParser:
    """The sweep's own flags and the `ddl analyze` options (``train_flags``: dests already taken by train flags;
    a clashing analyze option gets an ``--analysis-`` prefix)."""
    parser.add_argument("spec", nargs="?", metavar="SPEC", help="spec file (YAML/JSON/TOML): base, grid, seeds, "
                        "analysis, jobs, executor; flags given here override it")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory (its runs, results.csv, report/)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a train flag (underscore name) and its values; repeat for a product; list flags take "
                             "':'-separated elements (hidden=30:30,100:100)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S", help="seeds (default: 0)")
    parser.add_argument("--jobs", type=int, default=None, metavar="K",
                        help="local executor: runs at a time (default: one per core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: cores // jobs, at least 1)")
    parser.add_argument("--executor", choices=EXECUTORS, default=None, help="local processes or Ray tasks "
                        "(default: local)")
    parser.add_argument("--address", default=None, metavar="ADDR",
                        help="ray: HOST:PORT, ray://HOST:PORT or auto of an existing cluster (default: a local one)")
    parser.add_argument("--cpus-per-run", type=float, default=None, help="ray: CPUs per run (default: --threads)")
    parser.add_argument("--gpus-per-run", type=float, default=None, help="ray: GPUs per run (default: 0)")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=None,
                        help="analyse every run (`ddl analyze`; default: on)")
    parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                        help="write DIR/report (default: on)")
    parser.add_argument("--title", default=None, help="report title")
    g = parser.add_argument_group("analysis options (as for `ddl analyze`)")
    taken = set(train_flags) | {a.dest for a in parser._actions}
    for a in _analyze_actions():
        dest, flags = a.dest, list(a.option_strings)
        if dest in taken:
            flags = ["--analysis-" + f.lstrip("-") for f in flags if f.startswith("--")]
            dest = "analysis_" + dest
        kw: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": a.help}
        if isinstance(a, argparse._StoreFalseAction):
            kw["action"] = "store_false"
        elif isinstance(a, argparse._StoreTrueAction):
            kw["action"] = "store_true"
        elif isinstance(a, argparse.BooleanOptionalAction):
            kw["action"] = argparse.BooleanOptionalAction
            flags = [f for f in flags if not f.startswith("--no-")]
        else:
            kw.update(type=a.type, choices=a.choices, metavar=a.metavar, nargs=a.nargs)
        g.add_argument(*flags, **kw)
    return parser


def run_sweep_command(args: argparse.Namespace) -> int:
    """``ddl sweep``: spec file < flags."""
    spec, execution = (load_spec(args.spec) if args.spec else (SweepSpec(), {}))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    spec.base.update({k: v for k, v in vars(args).items() if k in names and k not in SWEEP_OWNED})
    for item in args.grid:
        k, vs = parse_grid_item(item)
        spec.grid[k] = vs
    if args.seeds is not None:
        spec.seeds = _unique("seeds", list(args.seeds))
    if args.analyze is not None:
        spec.analyze = args.analyze
    if args.title is not None:
        spec.title = args.title
    defaults = analysis_defaults()
    for k, v in vars(args).items():
        if k.startswith("analysis_") and k[len("analysis_"):] in defaults:
            spec.analysis[k[len("analysis_"):]] = v
        elif k in defaults and k not in names:
            spec.analysis[k] = v
    execution.update({k: getattr(args, k) for k in ("jobs", "executor", "threads", "cpus_per_run", "gpus_per_run")
                      if getattr(args, k) is not None})
    if not spec.grid and len(spec.seeds) < 2 and not args.spec:
        raise ConfigError("--grid: nothing to sweep (give --grid KEY=V1,V2 or several --seeds)")
    res = run_sweep(spec, args.out, jobs=execution.get("jobs"), executor=execution.get("executor", "local"),
                    address=args.address, threads=execution.get("threads"),
                    cpus_per_run=execution.get("cpus_per_run"), gpus_per_run=execution.get("gpus_per_run") or 0.0,
                    report=args.report)  # fmt: skip
    print(f"{len(res.plans)} runs ({res.ran} run now, {res.skipped} skipped, {len(res.failed)} failed); "
          f"results {res.results}" + (f"; report {res.report}" if res.report else ""))
    return 0
