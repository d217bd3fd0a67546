"""``ddl demo``: in which regime does DPSGD generalize better than SSGD, and why — a small regime map run by the
sweep engine (:mod:`ddl.sweep`) on the embedded MNIST-5k.

SSGD and DPSGD (ring) with n = 16 learners, the paper's 784-30-30-10 MLP, two learning rates × two total batch
sizes around SSGD's stability edge on this data (with b = 25, i.e. B = 400, SSGD still converges at lr 0.8 and
fails at 0.9), two seeds, at most 300 epochs with the paper's stop rule, noise measured during training; every
run's middle 30×30 layer (``fc2``, the layer the paper analyses: the MLP's default analysis layer) decomposed.
Then the runs that trained in the cell where the two algorithms differ most are trained again with the noise
measured ≥ ``DEMO_MEASUREMENTS`` times each (``DIR/measure/RUN``: dedicated measurement runs; the meter never
changes training, and the report uses them only when their final evaluation equals the sweep run's).  The sweep
report has the regime map (both algorithms' test error over the seeds that trained, diverged and collapsed cells
marked, their difference), the duality comparison and the noise figures at that cell, and the trends.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ddl.algorithms import BASELINE, DPSGD
from ddl.loop.train import train
from ddl.report.sweep import build_sweep_report
from ddl.report.sweep_data import MEASURE_DIR, read_sweep, regime_maps
from ddl.sweep.execute import cores
from ddl.sweep.plan import SweepSpec
from ddl.sweep.run import default_parallelism, run_sweep

# The noise meter is exact by default (full training gradient, Lanczos to a tolerance), which costs seconds per
# measurement on a CPU; the demo measures every 500 steps against a stratified sample of 1 000 training samples
# (an approximation recorded in noise.jsonl and flagged in the report) to stay within ten minutes on 2 cores.
DEMO_BASE = dict(learners=16, topology="ring", epochs=300, stop_loss=1e-3, measure_noise=500, noise_samples=1000,
                 model="mlp", dataset="mnist5k", eval_every=5)
DEMO_GRID = {"algo": [BASELINE, DPSGD.name], "lr": [0.5, 1.0], "batch_size": [25, 100]}  # B = 400, 1600
DEMO_SEEDS = [0, 1]
DEMO_MEASUREMENTS = 24  # noise measurements after step 0 per dedicated measurement run (the paper's Fig. 6A)


def demo_spec(epochs: int | None = None, seeds: list[int] | None = None) -> SweepSpec:
    base = {**DEMO_BASE, **({"epochs": epochs} if epochs else {})}
    return SweepSpec(base=base, grid={k: list(v) for k, v in DEMO_GRID.items()},
                     seeds=list(DEMO_SEEDS if seeds is None else seeds), analyze=True,
                     title="Where does DPSGD beat SSGD? n = 16 on MNIST-5k")


def run_demo(out: str | Path = "runs/demo", epochs: int | None = None, seeds: list[int] | None = None,
             jobs: int | None = None) -> Path:
    """Run (or finish: done runs are kept) the demo sweep in ``out``; the report's path."""
    t0 = time.perf_counter()
    res = run_sweep(demo_spec(epochs, seeds), out, jobs=jobs, report=False)
    measure_most_different(res.out, threads=default_parallelism(cores(), jobs)[1])
    report = build_sweep_report(res.out)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; runs in {res.out}")
    print(f"report: {report}")
    return report


def measure_most_different(sweep_dir: Path, measurements: int = DEMO_MEASUREMENTS, threads: int = 1) -> list[Path]:
    """Train the runs that trained in the regime map's most-different cell again with the noise measured every
    ⌊steps / measurements⌋ steps (at least ``measurements`` times after step 0), into ``DIR/measure/RUN``, with
    the torch threads the sweep's runs had (so that the trajectory is the same bit for bit); done ones are kept.
    The directories written."""
    import torch

    torch.set_num_threads(threads)
    _, grid, cells = read_sweep(sweep_dir)
    maps = regime_maps(grid, cells)
    found = maps[0].most_different() if maps else None
    if found is None:
        return []
    algo, i, j = found
    m = maps[0]
    done = []
    for c in (m.cells[m.baseline][i][j], m.cells[algo][i][j]):
        for r in c.trained_runs:
            dest = Path(sweep_dir) / MEASURE_DIR / r.path.name
            if not (dest / "summary.json").is_file():
                steps = int(r.summary["steps"])
                every = max(1, steps // (measurements + 1))
                print(f"demo: measuring the noise of {r.path.name} every {every} steps (dedicated run)", flush=True)
                train(dataclasses.replace(r.config, measure_noise=every, out=str(dest), overwrite=True, progress=False))
            done.append(dest)
    return done
