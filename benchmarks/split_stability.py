"""How stable is each sharp/flat split rule across seeds?  (docs/measurements.md, issue 9 item 6)

Trains SSGD and DPSGD in one cell of the demo's map (``ddl.commands.demo.DEMO_BASE`` with lr 0.5 and b = 25, i.e.
B = 400; optionally fewer epochs) for several seeds,
decomposes every run's ``fc2`` (the paper's layer; a full eigenbasis, so every rule can be re-applied to the
same spectrum), then applies each candidate split rule and reports, per algorithm, n_sharp and the sharp share
of the pair-wise gap across seeds.  Writes ``benchmarks/results/split_stability-e<EPOCHS>.json``.

    PYTHONPATH=. python -m benchmarks.split_stability --epochs 100 --runs runs/split
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine

CANDIDATES = [
    ("steepest", None, "sigma_g"),
    ("steepest", None, "eigenvalue"),
    ("count", 10, "sigma_g"),
    ("top", 10, "sigma_g"),
    ("fraction", 0.5, "sigma_g"),
    ("fraction", 0.9, "sigma_g"),
    ("fraction", 0.9, "eigenvalue"),
]


def _cell() -> dict:
    from ddl.commands.demo import DEMO_BASE

    return {**DEMO_BASE, "lr": 0.5, "batch_size": 25}


CELL = _cell()


def train_runs(root: Path, seeds: list[int], epochs: int | None) -> list[Path]:
    from ddl.config import TrainConfig
    from ddl.loop.train import train

    params = {**CELL, "measure_noise": 0, **({"epochs": epochs} if epochs else {})}
    runs = []
    for seed in seeds:
        for algo in ("ssgd", "dpsgd"):
            out = root / f"{algo}-s{seed}"
            runs.append(out)
            if (out / "summary.json").is_file():
                continue
            t = time.perf_counter()
            res = train(TrainConfig(algo=algo, seed=seed, out=str(out), overwrite=True, progress=False, **params))
            print(f"{algo} seed {seed}: {res.status} after {res.steps} steps ({time.perf_counter() - t:.0f} s)",
                  flush=True)
    return runs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/split", help="where the training runs go (reused when present)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the demo's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-only", action="store_true")
    a = p.parse_args(argv)
    runs = train_runs(Path(a.runs), a.seeds, a.epochs)
    if a.train_only:
        return
    from ddl.commands.analyze import analyze_run

    results = {}
    for r in runs:
        res = analyze_run(r, layer=None, progress=False, verbose=False, eigensolver="dense")
        results[r.name] = res
    table = []
    for rule, value, by in CANDIDATES:
        row = {"rule": rule, "value": value, "by": by}
        for algo in ("ssgd", "dpsgd"):
            alts = [res.with_split(rule, value, by) for name, res in results.items() if name.startswith(algo)]
            ns = [a.n_sharp for a in alts]
            share = [a.sharp_gap / a.pairwise_gap for a in alts]
            row[algo] = {"n_sharp": ns, "n_sharp_range": max(ns) - min(ns),
                         "sharp_share": share, "sharp_share_sd": statistics.pstdev(share)}
        table.append(row)
        print(f"{rule:9s} {str(value):5s} {by:10s} "
              + "  ".join(f"{algo}: n_sharp {row[algo]['n_sharp']} share "
                          f"{[round(s, 3) for s in row[algo]['sharp_share']]}" for algo in ("ssgd", "dpsgd")))
    gaps = {name: {"pairwise_gap": res.pairwise_gap, "true_gap": res.true_gap, "train_loss": res.train_loss,
                   "test_loss": res.test_loss} for name, res in results.items()}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"split_stability-e{a.epochs or CELL['epochs']}.json"
    layers = sorted({res.layer for res in results.values()})
    out.write_text(json.dumps({"machine": machine(), "epochs": a.epochs, "seeds": a.seeds, "layer": layers,
                               "runs": gaps, "rules": table}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
