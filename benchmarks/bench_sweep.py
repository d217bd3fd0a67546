"""Sweep throughput: wall time of one small sweep for every ``--jobs`` × ``--threads`` combination the machine
allows (local executor), and the Ray executor's per-run overhead, measured side by side in one process.

The same sweep (SSGD on MNIST-5k, 2 learning rates × 2 seeds, a fixed number of epochs, no analysis, so every
run does the same work whatever the setting) is run into fresh directories, the settings taking turns (the
order reversed on every other repeat so that drift in the machine's load hits all of them).  Every setting's
median wall time is recorded with the load average before it; ``best`` names the fastest local setting, the
one ``ddl sweep`` uses by default (:func:`ddl.sweep.run.default_parallelism`, which this benchmark checks).
The Ray executor runs the same sweep on a local cluster it starts (``--cpus-per-run 1``, as many at a time as
cores); its overhead per run is (Ray wall − the same jobs × threads on the local executor) / runs, cluster
start-up included.  Writes ``benchmarks/results/sweep.json`` and its figure ``sweep.png`` (``--plot-only`` redraws
the figure from the JSON without measuring).

    PYTHONPATH=. python benchmarks/bench_sweep.py [--repeats 1] [--epochs 5] [--no-ray] [--plot-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure

from benchmarks.common import RESULTS, machine, write
from ddl.sweep.plan import SweepSpec
from ddl.sweep.run import default_parallelism, run_sweep


def load_average() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def settings_for(cores: int) -> dict[str, tuple[int, int]]:
    """Every jobs × threads with jobs, threads ∈ {1, 2, 4, …} up to ``cores`` and jobs · threads ≤ cores."""
    powers = [p for p in (1, 2, 4, 8, 16, 32, 64) if p <= cores]
    return {f"jobs{j}_threads{t}": (j, t) for j in powers for t in powers if j * t <= cores}


def plot(payload: dict, path: Path) -> None:
    """Bars: median wall time of the sweep per setting (dots: every repeat), the default of ``ddl sweep``
    outlined, the load average before each setting in its label."""
    names = list(payload["median_wall_s"])
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    default = payload["default_of_ddl_sweep"]
    for x, k in enumerate(names):
        st = payload["settings"][k]
        is_default = st["executor"] == "local" and (st["jobs"], st["threads"]) == (default["jobs"], default["threads"])
        ax.bar(x, payload["median_wall_s"][k], color="C1" if st["executor"] == "ray" else "C0", alpha=0.7,
               edgecolor="k" if is_default else "none", linewidth=2)
        ax.plot([x] * len(payload["wall_s"][k]), payload["wall_s"][k], "k.")
    labels = [f"{payload['settings'][k]['executor']}\n{payload['settings'][k]['jobs']} run(s) × "
              f"{payload['settings'][k]['threads']} thread(s)\nload {payload['load_average_before_each'][k][0][0]:.0f}"
              for k in names]
    ax.set_xticks(range(len(names)), labels, fontsize=7)
    ax.set_ylabel("wall time of the sweep (s)")
    ax.set_title(f"{payload['sweep']}\n{payload['cores']} cores; outlined: ddl sweep's default", fontsize=8)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--no-ray", action="store_true", help="leave out the Ray executor")
    ap.add_argument("--plot-only", action="store_true", help="redraw sweep.png from sweep.json, measure nothing")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads((RESULTS / "sweep.json").read_text()), RESULTS / "sweep.png")
        return
    spec = SweepSpec(base=dict(learners=1, batch_size=25, epochs=args.epochs, stop_loss=None, eval_every=args.epochs),
                     grid={"lr": [0.05, 0.1]}, seeds=[0, 1], analyze=False)
    runs = 4
    cores = len(os.sched_getaffinity(0))
    settings: dict[str, tuple] = {k: ("local", j, t) for k, (j, t) in settings_for(cores).items()}
    if not args.no_ray:
        settings[f"ray_cpus1_x{cores}"] = ("ray", cores, 1)
    times: dict[str, list[float]] = {k: [] for k in settings}
    loads: dict[str, list[list[float]]] = {k: [] for k in settings}
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        for rep in range(args.repeats):
            order = list(settings) if rep % 2 == 0 else list(reversed(settings))
            for name in order:
                executor, jobs, threads = settings[name]
                out = root / f"{name}-r{rep}"
                loads[name].append(load_average())
                t = time.perf_counter()
                kw = dict(cpus_per_run=1.0) if executor == "ray" else dict(jobs=jobs)
                res = run_sweep(spec, out, executor=executor, threads=threads, progress=False, report=False, **kw)
                times[name].append(time.perf_counter() - t)
                assert res.ran == runs and not res.failed, res
                print(f"repeat {rep}: {name}: {times[name][-1]:.1f} s (load {loads[name][-1]})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    local = {k: v for k, v in med.items() if settings[k][0] == "local"}
    best = min(local, key=local.get)
    default = default_parallelism(cores)
    payload = {
        "benchmark": "sweep_jobs_threads",
        "sweep": f"{runs} runs: SSGD MNIST-5k MLP, n=1, b=25, lr in {{0.05, 0.1}} x seeds {{0, 1}}, {args.epochs} "
                 "epochs each (stop rule off), no analysis",
        "machine": machine(),
        "cores": cores,
        "settings": {k: {"executor": e, "jobs": j, "threads": t} for k, (e, j, t) in settings.items()},
        "wall_s": times,
        "median_wall_s": med,
        "per_run_s": {k: v / runs for k, v in med.items()},
        "best_local": best,
        "default_of_ddl_sweep": {"jobs": default[0], "threads": default[1]},
        "default_is_best": settings[best][1:] == default,
        "speedup_best_over_jobs1_all_threads": local.get(f"jobs1_threads{max(t for _, _, t in settings.values())}",
                                                         float("nan")) / local[best],
        "load_average_before_each": loads,
        "note": "Measured on a shared machine that was NOT idle (other sessions' work; see the load averages): the "
                "figures are from a loaded box and noisy.",
    }  # fmt: skip
    ray = [k for k in settings if settings[k][0] == "ray"]
    if ray:
        same = f"jobs{cores}_threads1"
        payload["ray_overhead_per_run_s"] = (med[ray[0]] - med[same]) / runs if same in med else None
    path = write("sweep.json", payload)
    plot(payload, RESULTS / "sweep.png")
    print(", ".join(f"{k}: {v:.1f} s" for k, v in med.items()) + f"; best local {best}; wrote {path}")


if __name__ == "__main__":
    main()
