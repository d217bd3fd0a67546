"""Validation of non-IID data, topologies and AD-PSGD against published patterns, on this CPU.

Trains the runs of five recipes (launch/recipes/noniid_alpha_n16.yaml, noniid_tracking_n16.yaml, topologies_n16.yaml,
periodic_averaging_n16.yaml,
adpsgd_stragglers_n16.yaml: grid × seeds, in process) and writes ``benchmarks/results/validate_algorithms.json``
(per run: final test accuracy and training loss, consensus distance, simulated time to the target training loss;
per configuration: mean and std over seeds) and one PNG per recipe.

    PYTHONPATH=. python benchmarks/validate_algorithms.py [--out runs/validate] [--target-loss 0.5]

Time to target: the simulated time (``sim_time_s``) of the first evaluation (one per epoch) at which the
averaged model's training loss is at or below the target; None when a run never reaches it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure

from benchmarks.common import RESULTS, machine
from ddl.config import TrainConfig
from ddl.loop.train import train
from ddl.rundir.layout import load_run

RECIPES = Path(__file__).parent.parent / "launch" / "recipes"
NAMES = ("noniid_alpha_n16", "noniid_tracking_n16", "topologies_n16", "periodic_averaging_n16", "adpsgd_stragglers_n16")


def cells(spec: dict) -> list[dict]:
    keys = list(spec["grid"])
    return [dict(zip(keys, vals)) for vals in itertools.product(*(spec["grid"][k] for k in keys))]


def label(cell: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())


def run_recipe(name: str, out: Path, target: float) -> dict:
    spec = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    rows = []
    for cell in cells(spec):
        for seed in spec["seeds"]:
            run_dir = out / name / (label(cell).replace(", ", "_").replace("=", "-") + f"_s{seed}")
            cfg = TrainConfig(**{**spec["base"], **cell, "seed": seed, "out": str(run_dir), "overwrite": True,
                                 "progress": False})
            t0 = time.perf_counter()
            res = train(cfg)
            recs = load_run(run_dir).metrics()
            hit = next((r for r in recs if r["train_loss"] <= target), None)
            rows.append({"cell": cell, "seed": seed, "status": res.status, "wall_s": time.perf_counter() - t0,
                         "test_acc": recs[-1]["test_acc"], "train_loss": recs[-1]["train_loss"],
                         "consensus": recs[-1]["consensus"], "sim_time_s": recs[-1].get("sim_time_s"),
                         "time_to_target_s": None if hit is None else hit.get("sim_time_s"),
                         "epoch_to_target": None if hit is None else hit["epoch"],
                         "staleness_mean": recs[-1].get("staleness_mean"),
                         "curve": [(r["epoch"], r.get("sim_time_s"), r["train_loss"], r["test_acc"]) for r in recs]})
            print(f"{name}: {label(cell)} seed {seed}: test acc {rows[-1]['test_acc']:.4f}, train loss "
                  f"{rows[-1]['train_loss']:.4f}, time to target {rows[-1]['time_to_target_s']}", flush=True)
    summary = []
    for cell in cells(spec):
        rs = [r for r in rows if r["cell"] == cell]
        entry = {"cell": cell, "seeds": [r["seed"] for r in rs], "failed": [r["seed"] for r in rs
                                                                           if r["status"] == "diverged"]}
        for k in ("test_acc", "train_loss", "consensus", "time_to_target_s"):
            v = [r[k] for r in rs if r[k] is not None]
            entry[k] = {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v)) if v else None,
                        "n": len(v)}
        summary.append(entry)
    return {"title": spec["title"], "target_loss": target, "runs": rows, "configurations": summary}


def figure(name: str, res: dict, path: Path) -> None:
    """Left: test accuracy per configuration (mean ± std over seeds, dots: seeds); right: training loss of the
    averaged model against simulated time (one line per seed)."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    confs = res["configurations"]
    for x, c in enumerate(confs):
        accs = [r["test_acc"] for r in res["runs"] if r["cell"] == c["cell"]]
        a1.bar(x, np.mean(accs), yerr=np.std(accs), color=f"C{x}", alpha=0.6)
        a1.plot([x] * len(accs), accs, "k.")
        for r in (r for r in res["runs"] if r["cell"] == c["cell"]):
            t = [p[1] for p in r["curve"]]
            a2.plot(t, [p[2] for p in r["curve"]], color=f"C{x}", label=label(c["cell"]) if r["seed"] ==
                    c["seeds"][0] else None)
    a1.set_xticks(range(len(confs)), [label(c["cell"]).replace(", ", "\n") for c in confs], fontsize=7)
    a1.set_ylabel("final test accuracy")
    lo = min(r["test_acc"] for r in res["runs"])
    a1.set_ylim(max(0.0, lo - 0.1), 1.0)
    a2.axhline(res["target_loss"], color="gray", ls=":", lw=1)
    a2.set_xlabel("simulated time (s)")
    a2.set_ylabel("training loss of w̄")
    a2.set_yscale("log")
    a2.legend(fontsize=7)
    fig.suptitle(res["title"], fontsize=10)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/validate")
    p.add_argument("--target-loss", type=float, default=0.5)
    p.add_argument("--only", choices=NAMES, nargs="*", default=list(NAMES))
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "validate_algorithms.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    for name in args.only:
        res = run_recipe(name, Path(args.out), args.target_loss)
        figure(name, res, RESULTS / f"validate_{name}.png")
        results[name] = res
        path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
