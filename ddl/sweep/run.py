"""A sweep from start to end: plan, skip what is done, run the rest on an executor, keep ``results.csv`` current,
write the report."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from pathlib import Path

from analysis.io import write_json
from ddl.errors import ConfigError
from ddl.loop.progress import fmt_duration, is_terminal, progress_bar
from ddl.sweep.analysis import AnalysisRequest
from ddl.sweep.execute import cores, run_local, run_ray
from ddl.sweep.plan import RunPlan, SweepSpec, plan_runs, run_state
from ddl.sweep.results import run_line, write_results

EXECUTORS = ("local", "ray")


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


def default_parallelism(n_cores: int, jobs: int | None = None) -> tuple[int, int]:
    """(jobs, threads per run) when not given: one torch thread per run, as many runs at a time as cores; with
    ``jobs`` given, the cores shared among them.

    Measured (``benchmarks/bench_sweep.py``, ``benchmarks/results/sweep.json``; 2 cores): one thread per run was the
    faster in every measurement — 3.9× over 1 run × 2 threads on the loaded box, where a 2-thread run competes with
    other work for both cores, and 1.15× (2 runs × 1 thread against 1 × 2) on an idle one.  How many runs at a time
    depends on the load: idle, two 1-thread runs use both cores; on the loaded box 1 run × 1 thread finished first
    (1.29× over 2 × 1), the cores being taken by others already."""
    jobs = n_cores if jobs is None else jobs
    return jobs, max(1, n_cores // max(jobs, 1))


def run_sweep(spec: SweepSpec, out: str | Path, jobs: int | None = None, executor: str = "local",
              address: str | None = None, threads: int | None = None, cpus_per_run: float | None = None,
              gpus_per_run: float = 0.0, progress: bool = True, report: bool = True,
              baseline: str | None = None) -> SweepResult:
    """Run every planned run not done yet (see the module docstring), write ``results.csv`` and the report."""
    t0 = time.perf_counter()
    out = Path(out)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    n_cores = cores()
    jobs, default_threads = default_parallelism(n_cores, jobs)
    if jobs < 1:
        raise ConfigError(f"--jobs: must be ≥ 1, got {jobs}")
    if executor == "ray":  # a run's threads follow the CPUs Ray gives it
        if cpus_per_run is None:
            cpus_per_run = float(threads) if threads is not None else 1.0
        if cpus_per_run <= 0 or gpus_per_run < 0:
            raise ConfigError(f"--cpus-per-run: must be > 0, got {cpus_per_run}")
        threads = threads if threads is not None else max(1, int(cpus_per_run))
    threads = threads if threads is not None else default_threads
    if threads < 1:
        raise ConfigError(f"--threads: must be ≥ 1, got {threads}")
    analysis = AnalysisRequest.resolve(spec.analysis) if spec.analyze else None
    plans = plan_runs(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    with _Lock(out):
        states = {p.name: run_state(p, analysis) for p in plans}
        write_json(out / "sweep.json", {
            "spec": spec.to_dict(), "analysis_resolved": analysis.recorded if analysis else {},
            "runs": [{"name": p.name, "values": p.values, "seed": p.seed, "dir": p.name} for p in plans],
        })
        grid_keys = list(spec.grid)
        todo = [p for p in plans if states[p.name] != "done"]
        skipped = len(plans) - len(todo)
        token = uuid.uuid4().hex
        tasks = [{"name": p.name, "path": str(p.path), "config": {**p.config.to_dict()}, "token": token,
                  "train": states[p.name] in ("train", "resume"), "resume": states[p.name] == "resume",
                  "analyze": spec.analyze, "analysis": analysis.recorded if analysis else {}, "threads": threads}
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
                line = run_line(by_name[outcome["name"]], outcome, skipped + finished, len(plans), eta)
                if is_terminal():
                    bar.write(line)
                else:
                    print(line, file=sys.stderr, flush=True)
            bar.update(1)

        try:
            if todo:
                if executor == "local":
                    run_local(tasks, jobs, threads, token, on_done)
                else:
                    run_ray(tasks, address, cpus_per_run, gpus_per_run, on_done)
        finally:
            bar.close()
        results = write_results(out, plans, grid_keys)
        rep = None
        if report:
            rep = _build_report(out, progress, baseline)
    wall = time.perf_counter() - t0
    if progress:
        print(f"sweep: {len(todo)} run{'s' if len(todo) != 1 else ''} in {fmt_duration(wall)}, {skipped} skipped, "
              f"{len(failed)} failed; results {results}" + (f"; report {rep}" if rep else ""),
              file=sys.stderr, flush=True)  # fmt: skip
    return SweepResult(out, plans, len(todo), skipped, failed, results, wall, rep)


def _build_report(out: Path, progress: bool, baseline: str | None = None) -> Path:
    from ddl.report.sweep import build_sweep_report

    if progress:
        print("sweep: writing the report", file=sys.stderr, flush=True)
    return build_sweep_report(out, baseline=baseline)
