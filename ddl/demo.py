"""``ddl demo``: the paper's case study (Section 2.5) on the embedded MNIST-5k, end to end.

SSGD and DPSGD (ring) with n = 16 learners of local batch 25 (total batch 400, the large-batch regime) at a
learning rate near SSGD's stability limit on this data (SSGD still converges at 0.8 and not at 0.9 here;
DPSGD on the ring already fails at 0.7 for seed 0, so 0.5 keeps both stable), the paper's 784-30-30-10 MLP,
three seeds, noise measured during training; then the duality analysis of every run's middle 30×30 layer
(``fc2``, the layer the paper analyses) and the comparison report.
"""

from __future__ import annotations

import time
from pathlib import Path

from ddl.analyze import analyze_run
from ddl.config import TrainConfig
from ddl.report.compare import compare_runs
from ddl.train import train

DEMO = dict(learners=16, batch_size=25, lr=0.5, epochs=300, stop_loss=1e-3, measure_noise=50, model="mlp",
            dataset="mnist5k", eval_every=5)
DEMO_LAYER = "fc2"


def run_demo(out: str | Path = "runs/demo", epochs: int | None = None, seeds: list[int] | None = None) -> Path:
    out = Path(out)
    seeds = [0, 1, 2] if seeds is None else seeds
    params = {**DEMO, **({"epochs": epochs} if epochs else {})}
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        for algo in ("ssgd", "dpsgd"):
            cfg = TrainConfig(algo=algo, seed=seed, out=str(out / f"{algo}-s{seed}"), overwrite=True, **params)
            res = train(cfg)
            msg = f"diverged at step {res.diverged_step}" if res.status == "diverged" else res.status
            print(f"  {algo} seed {seed}: {msg} after {res.steps} steps, test acc {res.final.get('test_acc', 0):.4f}")
            runs.append(cfg.out)
    for r in runs:
        analyze_run(r, layer=DEMO_LAYER, progress=True)
    report = compare_runs(runs, out / "report", title="SSGD vs DPSGD on MNIST-5k (n=16, B=400)")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; runs in {out}")
    print(f"report: {report}")
    return report
