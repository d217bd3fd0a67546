"""Which graph to simulate: consensus distance and test error of DPSGD on 256 learners, ring vs torus vs
exponential graphs (and the one-peer exponential graph), same learning rate and batch; SSGD for reference.

    python -m benchmarks.consensus_scale [--learners 256] [--batch-size 2] [--lr 0.4] [--epochs 30]

Every run is the simulator's own training step (``Trainer``), on the paper's MLP and MNIST-5k, from the same
initial weights and the same minibatch streams; only the mixing graph differs.  After every step the consensus
distance mean_a ‖w_a − w̄‖² is recorded (it draws no random numbers); after every epoch the averaged model w̄ is
evaluated on the whole test set.  Writes ``benchmarks/results/consensus_n<n>.json`` and
``docs/figures/consensus_n<n>.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import write
from ddl.compute.learners import evaluate
from ddl.config import TrainConfig
from ddl.data import load_dataset
from ddl.loop.train import Trainer

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ("ring", "torus", "exponential", "one-peer-exponential")


def run(algo: str, topology: str, args, data) -> dict:
    cfg = TrainConfig(algo=algo, topology=topology, learners=args.learners, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, epochs=args.epochs, progress=False, out="/tmp/ddl-consensus")
    tr = Trainer(cfg, data=data)
    spe = tr.stream.steps_per_epoch
    consensus, test_error, t0 = [], [], time.perf_counter()
    for step in range(args.epochs * spe):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)
        w_bar = tr.state.W.mean(0)
        consensus.append(tr.consensus_distance(w_bar))
        if (step + 1) % spe == 0:
            model = tr.spec.load(tr.model, w_bar, {})
            test_error.append(1.0 - evaluate(model, tr.x_test, tr.y_test)[1])
    label = "ssgd" if algo == "ssgd" else topology
    out = {"label": label, "consensus_per_step": consensus, "test_error_per_epoch": test_error,
           "final_test_error": test_error[-1], "mean_consensus_last_epoch": sum(consensus[-spe:]) / spe,
           "wall_s": time.perf_counter() - t0}
    if tr.topology is not None:
        out["mixing"] = tr.topology.describe()
    print(f"{label:>22}: final test error {test_error[-1]:.4f}, consensus (last epoch mean) "
          f"{out['mean_consensus_last_epoch']:.3g}, {out['wall_s']:.0f}s", flush=True)
    return out


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    spe = res["steps_per_epoch"]
    for r in res["runs"]:
        if r["label"] == "ssgd":
            continue
        mix = r["mixing"]
        gap = f"spectral gap {mix['spectral_gap']:.3g}"
        if mix["time_varying"]:
            gap += f" per period of {mix['period']} steps"
        epochs = [(i + 1) / spe for i in range(len(r["consensus_per_step"]))]
        ax1.plot(epochs, r["consensus_per_step"], lw=1, label=f"{r['label']} ({gap})")
    ax1.set(yscale="log", xlabel="epoch", ylabel="consensus distance  mean_a ‖w_a − w̄‖²",
            title=f"DPSGD, n = {res['learners']}, b = {res['batch_size']}, lr = {res['lr']}")
    ax1.legend(fontsize=8)
    for r in res["runs"]:
        e = list(range(1, len(r["test_error_per_epoch"]) + 1))
        ax2.plot(e, r["test_error_per_epoch"], lw=1, ls="--" if r["label"] == "ssgd" else "-",
                 label=f"{r['label']} (final {r['final_test_error']:.3f})")
    ax2.set(xlabel="epoch", ylabel="test error of w̄", title="MLP 784-30-30-10 on MNIST-5k")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.4)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--graphs", nargs="+", default=list(GRAPHS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared machine, two-thread kernels stall on busy cores)")
    ap.add_argument("--replot", metavar="JSON", help="only redraw the figure from a results file of this script")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        fig = ROOT / "docs" / "figures" / f"consensus_n{res['learners']}.png"
        figure(res, fig)
        print(f"wrote {fig}")
        return
    data = load_dataset("mnist5k", seed=args.seed)
    runs = [run("dpsgd", g, args, data) for g in args.graphs] + [run("ssgd", "ring", args, data)]
    n = args.learners
    res = {"what": "consensus distance per step and test error per epoch of DPSGD on several graphs, same lr and "
                   "batch, same initial weights and minibatch streams; SSGD for reference",
           "learners": n, "batch_size": args.batch_size, "lr": args.lr, "epochs": args.epochs, "seed": args.seed,
           "model": "mlp 784-30-30-10", "dataset": "mnist5k", "torch_threads": torch.get_num_threads(),
           "steps_per_epoch": len(runs[0]["consensus_per_step"]) // args.epochs, "runs": runs}
    out = write(f"consensus_n{n}.json", res)
    fig = ROOT / "docs" / "figures" / f"consensus_n{n}.png"
    figure(res, fig)
    print(f"wrote {out}\nwrote {fig}")


if __name__ == "__main__":
    main()
