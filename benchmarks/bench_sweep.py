"""Wall time of one 8-run sweep with ``--jobs 1`` vs ``--jobs 2`` (local executor), measured side by side.

The same sweep (SSGD on MNIST-5k, 4 learning rates × 2 seeds, fixed number of epochs, no analysis, so every
run does the same work whatever the jobs) is run into fresh directories, the settings taking turns
``--repeats`` times: ``--jobs 2`` (1 torch thread per run), ``--jobs 1`` with 1 thread (and with
``--default-threads`` also ``--jobs 1`` with the default ``cores // jobs`` threads).  The ratio of the medians
is the speed-up of running two runs at a time.  Writes ``benchmarks/results/sweep.json``.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--repeats 1] [--epochs 10] [--default-threads]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write
from ddl.sweep.plan import SweepSpec
from ddl.sweep.run import run_sweep


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def autogroup() -> bool | None:
    """Whether the kernel schedules by session (autogroup); None where unknown."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--default-threads", action="store_true",
                    help="also time --jobs 1 with cores // jobs threads (very slow on an oversubscribed machine)")
    args = ap.parse_args()
    spec = SweepSpec(base=dict(learners=1, batch_size=25, epochs=args.epochs, stop_loss=None, eval_every=args.epochs),
                     grid={"lr": [0.02, 0.05, 0.1, 0.2]}, seeds=[0, 1], analyze=False)
    cores = len(os.sched_getaffinity(0))
    settings = {"jobs2_threads1": (2, 1), "jobs1_threads1": (1, 1)}
    if args.default_threads:
        settings[f"jobs1_threads{cores}"] = (1, cores)
    times: dict[str, list[float]] = {k: [] for k in settings}
    loads = []
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        for rep in range(args.repeats):
            order = list(settings) if rep % 2 == 0 else list(reversed(settings))
            for name in order:
                jobs, threads = settings[name]
                out = root / f"{name}-r{rep}"
                loads.append(load_average())
                t = time.perf_counter()
                res = run_sweep(spec, out, jobs=jobs, threads=threads, progress=False, report=False)
                times[name].append(time.perf_counter() - t)
                assert res.ran == 8 and not res.failed, res
                print(f"repeat {rep}: {name}: {times[name][-1]:.1f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    payload = {
        "benchmark": "sweep_jobs",
        "sweep": "8 runs: SSGD MNIST-5k MLP, B=25, lr in {0.02, 0.05, 0.1, 0.2} x seeds {0, 1}, "
                 f"{args.epochs} epochs each (stop rule off), no analysis; local executor",
        "cores": cores,
        "wall_s": times,
        "median_wall_s": med,
        "speedup_jobs2_over_jobs1_same_threads": med["jobs1_threads1"] / med["jobs2_threads1"],
        "load_average_before_each": loads,
        "sched_autogroup": autogroup(),
        "note": "With the kernel's autogroup scheduling on, all processes of one terminal session share that "
                "session's CPU share, so on a machine loaded by other sessions K jobs get no more CPU than one "
                "(and pay K worker start-ups); the speed-up of --jobs shows on an otherwise idle machine. "
                "Numbers from a shared, loaded machine are noisy.",
    }
    path = write("sweep.json", payload)
    print(", ".join(f"{k}: {v:.1f} s" for k, v in med.items()) + f"; wrote {path}")


if __name__ == "__main__":
    main()
