"""Wall time of one 8-run sweep with ``--jobs 1`` vs ``--jobs 2`` (local executor), measured side by side.

The same sweep (SSGD on MNIST-5k, 4 learning rates × 2 seeds, fixed number of epochs, no analysis, so every
run does the same work whatever the jobs) is run into fresh directories, alternating the two settings
``--repeats`` times; the ratio of the medians is the speed-up of running two runs at a time.  Each run uses
``cores // jobs`` torch threads.  Writes ``benchmarks/results/sweep.json``.

    PYTHONPATH=. python benchmarks/bench_sweep.py [--repeats 2] [--epochs 3]
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
from ddl.sweep import SweepSpec, run_sweep


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    spec = SweepSpec(base=dict(learners=1, batch_size=25, epochs=args.epochs, stop_loss=None, eval_every=args.epochs),
                     grid={"lr": [0.02, 0.05, 0.1, 0.2]}, seeds=[0, 1], analyze=False)
    times: dict[str, list[float]] = {"jobs1": [], "jobs2": []}
    loads = []
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        for rep in range(args.repeats):
            for jobs in (1, 2) if rep % 2 == 0 else (2, 1):
                out = root / f"j{jobs}-r{rep}"
                loads.append(load_average())
                t = time.perf_counter()
                res = run_sweep(spec, out, jobs=jobs, progress=False, report=False)
                times[f"jobs{jobs}"].append(time.perf_counter() - t)
                assert res.ran == 8 and not res.failed, res
                print(f"repeat {rep}: --jobs {jobs}: {times[f'jobs{jobs}'][-1]:.1f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    payload = {
        "benchmark": "sweep_jobs",
        "sweep": "8 runs: SSGD MNIST-5k MLP, B=25, lr in {0.02, 0.05, 0.1, 0.2} x seeds {0, 1}, "
                 f"{args.epochs} epochs each (stop rule off), no analysis; local executor",
        "cores": len(os.sched_getaffinity(0)),
        "wall_s": times,
        "median_wall_s": med,
        "speedup_jobs2_over_jobs1": med["jobs1"] / med["jobs2"],
        "load_average_before_each": loads,
        "note": "shared 2-core machine under load from other users; numbers are noisy",
    }
    path = write("sweep.json", payload)
    print(f"--jobs 1: {med['jobs1']:.1f} s, --jobs 2: {med['jobs2']:.1f} s, "
          f"speed-up {payload['speedup_jobs2_over_jobs1']:.2f}x; wrote {path}")


if __name__ == "__main__":
    main()
