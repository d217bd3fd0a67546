"""Running a sweep's runs: one run (train, then analyse) inside a worker, and the two executors that run many —
local worker processes and Ray tasks.  A failing run is recorded in its directory and never stops the others."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from analysis.io import atomic_write, write_json
from ddl.config import TrainConfig
from ddl.errors import ConfigError, DDLError
from ddl.loop.train import train
from ddl.sweep.analysis import AnalysisRequest
from ddl.sweep.plan import run_status

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
            if task["analyze"] and run_status(path) != "diverged":
                (path / "analysis-error.txt").unlink(missing_ok=True)
                (path / "analysis" / "options.json").unlink(missing_ok=True)  # valid again only once this is done
                request = AnalysisRequest.resolve(task["analysis"])
                request.run(path)
                write_json(path / "analysis" / "options.json", request.recorded)
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


def run_local(tasks: list[dict], jobs: int, threads: int, token: str, on_done) -> None:
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
                    marker = _read_marker(Path(t["path"]) / _STARTED)
                    if marker.get("token") == token:
                        (Path(t["path"]) / _STARTED).unlink(missing_ok=True)
                        atomic_write(Path(t["path"]) / "error.txt",
                                     lambda f: f.write(b"the worker process running this run died\n"))
                        on_done({"name": t["name"], "ok": False, "error": "worker process died"})
                    else:
                        pending.append(t)


def run_ray(tasks: list[dict], address: str | None, cpus: float, gpus: float, on_done) -> None:
    """One Ray task per run; the cluster is the one at ``address``, or a local one started (and stopped) here."""
    import ray

    from ddl.drivers.ray_cluster import init_ray

    started = init_ray(address, cores())
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


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _read_marker(p: Path) -> dict:
    try:
        d = json.loads(p.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}
