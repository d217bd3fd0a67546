"""Time per epoch and peak memory of n simulated MLP learners against n, at a fixed total batch (CPU).

    python -m benchmarks.bench_scale [--total-batch 1024] [--learners 1 4 16 64 256 1024]

Workload: the paper's MLP 784-30-30-10 on MNIST-5k (4 000 training samples), total batch B = n·b = 1 024, so
every variant takes the same 3 steps per epoch over the same samples; only how they are split over learners
changes.  Variants, timed side by side in one process (round-robin, so machine drift hits all alike):

* ``ssgd``: every learner at w̄ (one model, batch B);
* ``dpsgd-<topology>``: DPSGD on ring, torus, exponential and one-peer exponential graphs (sparse mixing);
* ``dpsgd-ring-dense``: the previous implementation for reference, the n × n product ``M @ W`` after the
  gradient (O(n²·P)), at n ≤ 1 024.

Peak memory: each (variant, n) trains a few steps in a fresh child process and reports its peak resident set
(``VmHWM``: Python, torch and the data set included; the n = 1 row shows that fixed part).

Writes ``benchmarks/results/scale_mlp_cpu.json`` and the figure ``docs/figures/scale_mlp.png`` (time per
epoch and peak memory against n).  The target of issue 11: DPSGD at n = 1 024 (b = 1) within 8× of n = 16
(b = 64) per epoch; 1 024 learners within 2 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import machine, time_interleaved, write
from ddl.algorithms.topology import make_topology
from ddl.config import TrainConfig
from ddl.data import load_dataset
from ddl.loop.train import Trainer

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ("ring", "torus", "exponential", "one-peer-exponential")


def make_trainer(variant: str, n: int, b: int, data=None) -> Trainer:
    algo = "ssgd" if variant == "ssgd" else "dpsgd"
    topo = "ring" if variant in ("ssgd", "dpsgd-ring-dense") else variant.removeprefix("dpsgd-")
    cfg = TrainConfig(algo=algo, learners=n, batch_size=b, topology=topo, lr=0.05, epochs=1, progress=False,
                      out="/tmp/ddl-bench-scale")
    return Trainer(cfg, data=data)


def step_fn(variant: str, tr: Trainer):
    """One training step of ``tr`` (the dense variant re-implements the old O(n²·P) mixing)."""
    state = {"i": 0}
    spe = tr.stream.steps_per_epoch
    if variant == "dpsgd-ring-dense":
        M = make_topology("ring", tr.cfg.learners).matrix_at(0).to(tr.dtype)

        def dense():
            i = state["i"] = (state["i"] + 1) % spe
            xs, ys = tr.batch(i)
            G, _, tr.state.buffers = tr.gradients.grads(tr.state.W, tr.state.buffers, xs, ys)
            tr.state.W = (M @ tr.state.W).add_(G, alpha=-0.05)

        return dense

    def step():
        i = state["i"] = (state["i"] + 1) % spe
        xs, ys = tr.batch(i)
        tr.algo.step(tr.state, xs, ys, 0.05, 0.0)

    return step


def memory_child(variant: str, n: int, b: int, steps: int) -> dict:
    tr = make_trainer(variant, n, b)
    f = step_fn(variant, tr)
    for _ in range(steps):
        f()
    # VmHWM, not ru_maxrss: Linux carries the forking parent's resident size over into a child's ru_maxrss
    hwm_kb = next(int(x.split()[1]) for x in Path("/proc/self/status").read_text().splitlines()
                  if x.startswith("VmHWM:"))
    return {"peak_rss_mb": hwm_kb / 1024,
            "learner_state_mb": tr.state.W.numel() * tr.state.W.element_size() / 2**20}


def peak_memory(variant: str, n: int, b: int, threads: list[str], steps: int = 4) -> dict:
    r = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", *threads, "--memory-child", variant, str(n),
                        str(b), str(steps)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"memory child {variant} n={n} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for v, rows in res["epoch_time_s"].items():
        ns = sorted(int(k) for k in rows)
        ax1.plot(ns, [rows[str(k)] for k in ns], marker="o", label=v, ls="--" if "dense" in v else "-")
    ns = res["learners"]
    P = res["parameters"]
    ref = res["epoch_time_s"]["dpsgd-ring"][str(ns[-1])]
    ax1.plot(ns, [ref * k / ns[-1] for k in ns], color="grey", lw=0.8, ls=":", label="∝ n·P (through n = 1 024)")
    ax1.set(xscale="log", yscale="log", xlabel="learners n (total batch 1 024)", ylabel="seconds per epoch",
            title=f"MLP 784-30-30-10 (P = {P}), MNIST-5k, CPU")
    ax1.legend(fontsize=7)
    for v, rows in res["peak_rss_mb"].items():
        ns_m = sorted(int(k) for k in rows)
        ax2.plot(ns_m, [rows[str(k)]["peak_rss_mb"] for k in ns_m], marker="o", label=v)
    ax2.axhline(2048, color="grey", lw=0.8, ls=":", label="2 GB")
    ax2.set_ylim(0, 2300)
    ax2.set(xscale="log", xlabel="learners n", ylabel="peak resident memory (MB)", title="peak memory (whole process)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-batch", type=int, default=1024)
    ap.add_argument("--learners", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared machine, two-thread kernels stall on busy cores)")
    ap.add_argument("--memory-child", nargs=4, metavar=("VARIANT", "N", "B", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "scale_mlp.png"))
    ap.add_argument("--replot", metavar="JSON", help="only redraw the figure from a results file of this script")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.replot:
        figure(json.loads(Path(args.replot).read_text()), Path(args.figure))
        print(f"wrote {args.figure}")
        return
    if args.memory_child:
        v, n, b, steps = args.memory_child
        print(json.dumps(memory_child(v, int(n), int(b), int(steps))))
        return
    B = args.total_batch
    data = load_dataset("mnist5k")
    variants = ["ssgd"] + [f"dpsgd-{t}" for t in TOPOLOGIES] + ["dpsgd-ring-dense"]
    fns, spe, P = {}, {}, None
    t0 = time.perf_counter()
    for n in args.learners:
        b = B // n
        for v in variants:
            tr = make_trainer(v, n, b, data)
            P = tr.spec.numel
            fns[(v, n)] = step_fn(v, tr)
            spe[n] = tr.stream.steps_per_epoch
        print(f"built n={n} ({time.perf_counter() - t0:.0f}s)", flush=True)
    # one round-robin over every (variant, n); a sample of a fast step repeats it so that it lasts about as long
    # as one step at n = 1 024 (timer resolution and per-call noise)
    calls = {}
    for (v, n), f in fns.items():
        inner = max(1, 64 // n)

        def repeated(f=f, inner=inner):
            for _ in range(inner):
                f()

        calls[f"{v}@{n}"] = (repeated, inner)
    timings = {}
    print("timing (round-robin over all variants and n) …", flush=True)
    raw = time_interleaved({k: w for k, (w, _) in calls.items()}, repeats=args.repeats, inner=1, warmup=1)
    for k, r in raw.items():
        inner = calls[k][1]
        timings[k] = {"median_step_s": r["median_s"] / inner, "min_step_s": r["min_s"] / inner,
                      "samples_step_s": [s / inner for s in r["samples_s"]]}
    epoch = {v: {str(n): timings[f"{v}@{n}"]["median_step_s"] * spe[n] for n in args.learners} for v in variants}
    print(f"{'variant':>28} " + " ".join(f"{'n=' + str(n):>9}" for n in args.learners) + "   (s/epoch)")
    for v in variants:
        print(f"{v:>28} " + " ".join(f"{epoch[v][str(n)]:9.4f}" for n in args.learners))
    memory = {}
    if not args.no_memory:
        threads = ["--threads", str(args.threads)] if args.threads else []
        for v in ("ssgd", "dpsgd-ring", "dpsgd-exponential"):
            memory[v] = {}
            for n in args.learners:
                memory[v][str(n)] = peak_memory(v, n, B // n, threads)
                print(f"peak memory {v:>20} n={n:5d}: {memory[v][str(n)]['peak_rss_mb']:.0f} MB", flush=True)
    ratio = None
    if 16 in args.learners and 1024 in args.learners:
        ratio = {v: epoch[v]["1024"] / epoch[v]["16"] for v in variants}
        print("n=1024 / n=16 per epoch: " + ", ".join(f"{v} {r:.2f}x" for v, r in ratio.items()))
    payload = {
        "what": f"seconds per epoch of n MLP learners at total batch {B} (b = {B}/n), side by side in one run; "
                "peak RSS of a child process training each (variant, n)",
        "model": "mlp 784-30-30-10", "dataset": "mnist5k", "device": "cpu", "dtype": "float32",
        "parameters": P, "total_batch": B, "learners": args.learners, "torch_threads": torch.get_num_threads(),
        "steps_per_epoch": {str(n): spe[n] for n in args.learners},
        "timings": timings, "epoch_time_s": epoch, "peak_rss_mb": memory,
        "ratio_n1024_to_n16_per_epoch": ratio,
        "target": "dpsgd n=1024 (b=1) <= 8x n=16 (b=64) per epoch; 1024 MLP learners within 2 GB",
        "note": "shared 2-core machine: other processes ran at the same time; compare ratios within this file",
    }
    out = write("scale_mlp_cpu.json", payload)
    if memory:
        figure({**payload, "machine": machine()}, Path(args.figure))
        print(f"wrote {args.figure}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
