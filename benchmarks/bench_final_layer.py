"""DenseNet-121's final-layer analysis: full eigendecomposition against the top-k block-Lanczos route, side by side.

Writes ``benchmarks/results/final_layer.json``.  The layer is ``classifier`` of ``ddl.models.densenet121``
(full width, growth rate 32: 1024 → 10 with bias; the paper's weights-only Hessian, 10 240 parameters), fitted
by a few full-batch steps on class-structured, non-negative synthetic 1024-d features the size of Fashion-MNIST
(60 000 training / 10 000 test samples: what ``ddl analyze`` uses on a full Fashion-MNIST run).  The network
below the layer is not run on those 70 000 images: that forward pass is the ``capture`` stage, the same for both
routes; its cost is measured per image on random 1×28×28 inputs and reported separately (``capture_cost``).

Per route: wall and process CPU time of every repeat (repeats interleaved: full, fast, full, fast, …, so the
shared machine's load hits both), the median, the stage timings, load averages; then the agreement of the two
routes (per-direction values of the top k where the eigenvalue is simple, and every total).  ``eigh_scaling``
times ``torch.linalg.eigh`` at n = 4096 in float64/float32 with 1 and 2 threads.

    python benchmarks/bench_final_layer.py [--repeats 3] [--n-train 60000] [--n-test 10000] [--top-k 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import decompose  # noqa: E402
from benchmarks.bench_analysis import checks, synthetic_features  # noqa: E402
from benchmarks.common import write  # noqa: E402
from ddl.models.cifar import densenet121  # noqa: E402

PER_DIRECTION = ("eigenvalues", "sigma_g", "sigma_w", "rho", "mean_g", "mean_w", "contributions")
TOTALS = ("pairwise_gap", "true_gap", "sharp_gap", "flat_gap", "mean_gap", "sigma_w_sq_total", "sigma_g_sq_total")


def fitted_classifier(train) -> nn.Module:
    torch.manual_seed(0)
    head = nn.Sequential(densenet121((1, 28, 28), 10).classifier)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    for _ in range(30):  # a fitted (not random) softmax, as in bench_analysis
        opt.zero_grad()
        F.cross_entropy(head(train[0]), train[1]).backward()
        opt.step()
    return head.eval()


def timed_run(fn) -> tuple[dict, object]:
    load0 = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    r = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rec = {"wall_s": wall, "cpu_s": cpu, "loadavg_1min_before_after": [load0, os.getloadavg()[0]],
           "stage_s": {k: round(v, 3) for k, v in r.timings.items()}, "eigensolver": r.eigensolver,
           "n_directions": r.n_directions, "lanczos_vectors": r.lanczos_iterations,
           "lanczos_residual": r.lanczos_residual}  # fmt: skip
    print(f"  {r.eigensolver}: wall {wall:.1f} s, cpu {cpu:.1f} s, load {rec['loadavg_1min_before_after']}, "
          f"stages {rec['stage_s']}", flush=True)  # fmt: skip
    return rec, r


def agreement(fast, full) -> dict:
    K = fast.n_directions
    ev = full.eigenvalues
    sep = np.abs(np.diff(ev[: K + 1])) > 1e-8 * abs(ev).max()
    simple = [i for i in range(K) if sep[i] and (i == 0 or sep[i - 1])]
    per = {}
    for f in PER_DIRECTION:
        a, b = getattr(fast, f)[simple], getattr(full, f)[simple]
        per[f] = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300 + np.abs(b).max() * 1e-12)))
    tot = {f: {"fast": getattr(fast, f), "full": getattr(full, f),
               "rel_diff": abs(getattr(fast, f) - getattr(full, f)) / max(abs(getattr(full, f)), 1e-300)}
           for f in TOTALS}  # fmt: skip
    return {
        "top_k": K, "simple_directions_compared": len(simple), "max_rel_diff_per_direction": per, "totals": tot,
        "n_sharp": [fast.n_sharp, full.n_sharp],
        "size_top_k": {"fast": fast.size, "full_first_k": float(np.sum(full.sigma_w[:K]))},
        "size_all_directions_full": full.size,
        "sigma_w_sq_top_k_share": float(np.sum(fast.sigma_w**2) / fast.sigma_w_sq_total),
    }  # fmt: skip


def capture_cost(batch: int = 32) -> dict:
    model = densenet121((1, 28, 28), 10).eval()
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x[:4])
        t, c = time.perf_counter(), time.process_time()
        model(x)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"what": f"DenseNet-121 (full width) eval forward, batch {batch} of 1x28x28, float32",
            "s_per_image": wall / batch, "cpu_s_per_image": cpu / batch}  # fmt: skip


def eigh_scaling(n: int = 4096) -> dict:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = A + A.T
    out, threads = {}, torch.get_num_threads()
    for th in (1, 2):
        torch.set_num_threads(th)
        for dt in (torch.float64, torch.float32):
            M = A.to(dt)
            t, c = time.perf_counter(), time.process_time()
            torch.linalg.eigh(M)
            out[f"{str(dt).replace('torch.', '')}_threads{th}"] = {"wall_s": time.perf_counter() - t,
                                                                  "cpu_s": time.process_time() - c}
    torch.set_num_threads(threads)
    return {"n": n, "runs": out, "loadavg_1min_after": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="repeats of each route (interleaved)")
    p.add_argument("--n-train", type=int, default=60_000)
    p.add_argument("--n-test", type=int, default=10_000)
    p.add_argument("--top-k", type=int, default=None, help="directions of the fast route (default: decompose's)")
    p.add_argument("--out", default="final_layer.json")
    args = p.parse_args(argv)
    load_start = list(os.getloadavg())
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    train, test = synthetic_features(args.n_train, args.n_test, 1024)
    head = fitted_classifier(train)
    routes = {
        "full": lambda: decompose(head, train=train, test=test, eigensolver="dense"),
        "fast": lambda: decompose(head, train=train, test=test, top_k=args.top_k),  # auto: top-k above 8 192
    }
    runs: dict = {k: [] for k in routes}
    last: dict = {}
    for i in range(args.repeats):
        for name, fn in routes.items():
            print(f"repeat {i} {name}", flush=True)
            rec, last[name] = timed_run(fn)
            runs[name].append(rec)
    summary = {name: {"median_wall_s": statistics.median(r["wall_s"] for r in rs),
                      "median_cpu_s": statistics.median(r["cpu_s"] for r in rs), "repeats": len(rs)}
               for name, rs in runs.items()}  # fmt: skip
    summary["wall_speedup"] = summary["full"]["median_wall_s"] / summary["fast"]["median_wall_s"]
    summary["cpu_speedup"] = summary["full"]["median_cpu_s"] / summary["fast"]["median_cpu_s"]
    print(summary, flush=True)
    payload = {
        "benchmark": "final-layer duality analysis of DenseNet-121 (full eigh vs top-k block Lanczos)",
        "setting": f"ddl.models.densenet121 classifier 1024x10 + bias (weights-only Hessian, 10240 parameters), "
                   f"fitted on synthetic 1024-d features, {args.n_train} train / {args.n_test} test (Fashion-MNIST "
                   "size); capture of real-network features not included (capture_cost)",
        "target_s": 60.0, "loadavg_1min_5min_15min_at_start": load_start, "summary": summary, "runs": runs,
        "checks": {k: checks(v) for k, v in last.items()},
        "agreement_fast_vs_full": agreement(last["fast"], last["full"]),
        "capture_cost": capture_cost(), "eigh_scaling": eigh_scaling(),
        "timed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
    payload["capture_cost"]["extrapolated_s_for_all_samples"] = (
        payload["capture_cost"]["s_per_image"] * (args.n_train + args.n_test))
    print(f"wrote {write(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
