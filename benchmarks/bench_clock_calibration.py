"""Calibrate the simulated clock against real torchrun (gloo) ranks on this machine.

K ranks (one learner each) run the project's own SSGD / DPSGD step (``Trainer.algo.step``: the real all-reduce or
neighbour exchange over gloo) on an MLP; each rank sleeps a scheduled time inside its gradient computation
(the injected compute spread: a permanent straggler, or the clock's own log-normal + straggler draws).  The
sleep is injected by wrapping this process's ``LearnerGradients`` methods — no training flag, nothing in ddl
changes.  Every rank records when each step starts and ends (``time.perf_counter``: CLOCK_MONOTONIC, one
clock for all processes of the machine) and how long it waited for communication.

The clock then predicts the same run two ways, and both are compared with the measured time of the timed steps
(from the earliest rank's start to the last rank's end):

* ``per_step``: compute times c_a(t) = measured step time − measured communication wait (what the clock
  takes as input), network α, β fitted from gloo ping-pongs between ranks 0 and 1 measured in the same launch
  (before and after the cases: 4-byte messages for α, both model sizes for β);
* ``scheduled``: compute = the median un-slept compute of the run + the scheduled sleeps (what a user would
  give the clock: a base time and the spread).

As a check that the recursion matters, ``barrier_model`` predicts DPSGD with SSGD's barrier formula
(every step waits for the slowest learner): its error under transient stragglers is what the DPSGD recursion
removes.

    python benchmarks/bench_clock_calibration.py        # writes benchmarks/results/clock_calibration.json

Inputs are seeded random tensors of MNIST's shape and labels (the step time does not depend on pixel values),
so the benchmark also runs where the data set's wheel is not installed.

The machine is small and shared (2 cores for 4 ranks): sleeps dominate the step so that CPU contention is a
small part of it; timings are noisy — compare errors, not absolute times, and rerun before trusting a digit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the worker runs as a script under torchrun

from benchmarks.common import machine  # noqa: E402
from ddl.measure.clock import Clock, ComputeModel, Network  # noqa: E402

SCENARIOS = ("uniform", "permanent_straggler", "transient_stragglers")


def sleep_schedule(scenario: str, K: int, steps: int, base_s: float, seed: int = 0) -> np.ndarray:
    """[steps, K] seconds each rank sleeps inside its gradient at each step."""
    if scenario == "uniform":
        return np.full((steps, K), base_s)
    if scenario == "permanent_straggler":
        s = np.full((steps, K), base_s)
        s[:, 1] *= 2.5
        return s
    if scenario == "transient_stragglers":
        return ComputeModel(base_s, jitter=0.3, straggler_prob=0.1, straggler_slowdown=4.0).sampler(K, seed).draw(steps)
    raise ValueError(scenario)


# ---- the worker (one torchrun rank) ------------------------------------------------------------------------


def _ping_pong(comm, nbytes: int, repeats: int) -> float:
    """Mean one-way time of a ``nbytes`` message between ranks 0 and 1 (the others wait at the barrier).

    The mean, not the median: the clock adds message times up, so the scheduling stalls of a loaded machine
    belong in it."""
    import torch
    import torch.distributed as dist

    buf = torch.zeros(max(1, nbytes // 4), dtype=torch.float32)
    times = []
    comm.barrier()
    if comm.rank in (0, 1):
        peer = 1 - comm.rank
        for _ in range(repeats):
            t = time.perf_counter()
            if comm.rank == 0:
                dist.send(buf, peer)
                dist.recv(buf, peer)
            else:
                dist.recv(buf, peer)
                dist.send(buf, peer)
            times.append((time.perf_counter() - t) / 2)
    comm.barrier()
    return statistics.fmean(times) if times else float("nan")


def _instrument(trainer, comm, sleeps: np.ndarray, rank: int, state: dict) -> None:
    """Sleep the scheduled time inside the gradient; time the communication waits.  Both wrap this process's
    objects only: the algorithm's real all-reduce / exchange still runs."""
    compute = trainer.gradients
    for name in ("grads", "sum_grads_shared"):
        orig = getattr(compute, name)

        def wrapped(*a, _orig=orig, **kw):
            outer = not state["inside"]  # sum_grads_shared may call grads: sleep once per step
            state["inside"] = True
            t = time.perf_counter()
            try:
                out = _orig(*a, **kw)
            finally:
                state["inside"] = not outer
            if outer:
                state["grad_s"] += time.perf_counter() - t
                if state["step"] is not None:
                    time.sleep(float(sleeps[state["step"], rank]))
            return out

        setattr(compute, name, wrapped)

    orig_allreduce, orig_exchange = comm.allreduce_sum, comm.exchange

    def allreduce(t):
        t0 = time.perf_counter()
        out = orig_allreduce(t)
        state["wait_s"] += time.perf_counter() - t0
        return out

    def exchange(sends, shapes):
        pending = orig_exchange(sends, shapes)
        orig_wait = pending.wait

        def wait():
            t0 = time.perf_counter()
            got = orig_wait()
            state["wait_s"] += time.perf_counter() - t0
            return got

        pending.wait = wait
        return pending

    comm.allreduce_sum, comm.exchange = allreduce, exchange


def random_mnist_shape(n_train: int = 2000, n_test: int = 200):
    """Seeded random inputs and labels of MNIST's shape (timing only)."""
    import torch

    from ddl.data import Dataset

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (n_train,), generator=g)
    return Dataset("random-mnist-shape", torch.randn(n_train, 1, 28, 28, generator=g), y,
                   torch.randn(n_test, 1, 28, 28, generator=g), torch.randint(0, 10, (n_test,), generator=g),
                   torch.ones(n_train, dtype=torch.bool), y.clone(), 10)


def _network(comm, sizes: list[int]) -> dict:
    return {"alpha_s": _ping_pong(comm, 4, 300), **{str(b): _ping_pong(comm, b, 60) for b in sizes}}


def worker(spec_path: str) -> None:
    import torch

    from ddl.comm.torchdist import TorchDistCollective
    from ddl.config import TrainConfig
    from ddl.drivers.torchrun import setup_torchrun
    from ddl.loop.train import Trainer

    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    K = spec["ranks"]
    comm0, device = setup_torchrun(K, "gloo", "cpu")
    rank = comm0.rank
    data = random_mnist_shape()
    sizes = sorted({4 * (784 * h[0] + h[0] * h[1] + h[1] * 10) for h in (c["hidden"] for c in spec["cases"])})
    network = [_network(comm0, sizes)]
    results = []
    for case in spec["cases"]:
        comm = TorchDistCollective(K)
        cfg = TrainConfig(algo=case["algo"], learners=K, batch_size=25, lr=0.05, topology="ring", model="mlp",
                          hidden=case["hidden"], progress=False, clock=False, seed=0, out=None)
        tr = Trainer(cfg, comm=comm, device=device, data=data)
        nbytes = tr.spec.numel * 4
        sleeps = np.asarray(case["sleeps"])
        state = {"step": None, "grad_s": 0.0, "wait_s": 0.0, "inside": False}
        _instrument(tr, comm, sleeps, rank, state)
        for step in range(spec["warmup"]):
            xs, ys = tr.batch(step)
            tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)
        comm.barrier()
        starts, ends, waits, grads = [], [], [], []
        for t in range(len(sleeps)):
            state.update(step=t, grad_s=0.0, wait_s=0.0)
            t0 = time.perf_counter()
            xs, ys = tr.batch(spec["warmup"] + t)
            tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)
            ends.append(time.perf_counter())
            starts.append(t0)
            waits.append(state["wait_s"])
            grads.append(state["grad_s"])
        comm.barrier()
        results.append({"starts": starts, "ends": ends, "waits": waits, "grads": grads, "message_bytes": nbytes})
    network.append(_network(comm0, sizes))
    Path(spec["out"], f"rank{rank}.json").write_text(json.dumps({"cases": results, "network": network}))
    comm0.close()


# ---- the driver --------------------------------------------------------------------------------------------


def fit_network(pings: list[dict]) -> Network:
    """α = mean 4-byte one-way time; β by least squares through the model-sized messages' times minus α."""
    alpha = statistics.fmean(p["alpha_s"] for p in pings)
    pts = [(int(b), t - alpha) for p in pings for b, t in p.items() if b != "alpha_s"]
    slope = sum(b * t for b, t in pts) / sum(b * b for b, _ in pts)  # seconds per byte, through the origin
    return Network(alpha, 1.0 / max(slope, 1e-12))


def predict(case: dict, per_rank: list[dict], net: Network) -> dict:
    """Measured and predicted times of one case (seconds from the earliest rank's first step start)."""
    K = len(per_rank)
    starts = np.array([r["starts"] for r in per_rank]).T  # [steps, K]
    ends = np.array([r["ends"] for r in per_rank]).T
    waits = np.array([r["waits"] for r in per_rank]).T
    grads = np.array([r["grads"] for r in per_rank]).T
    origin = starts[0].min()
    measured = float(ends[-1].max() - origin)
    nbytes = per_rank[0]["message_bytes"]
    sleeps = np.asarray(case["sleeps"])
    compute_measured = (ends - starts) - waits
    base = float(np.median(compute_measured - sleeps))
    scheduled = base + sleeps

    def run(algo: str, c: np.ndarray, shared_nic: bool = True) -> float:
        from ddl.algorithms.topology import make_topology

        clock = Clock(algo, K, net, nbytes, topology=make_topology("ring", K) if algo == "dpsgd" else None,
                      shared_nic=shared_nic)
        clock.T = starts[0] - origin
        clock.advance_with(c)
        return clock.now

    algo = case["algo"]
    out = {"measured_s": measured, "steps": len(sleeps), "alpha_s": net.latency_s, "bandwidth_Bps": net.bandwidth_Bps,
           "message_bytes": nbytes, "compute_base_s": base,
           "mean_wait_s": float(waits.mean()), "mean_grad_s": float(grads.mean())}
    for name, c in (("per_step", compute_measured), ("scheduled", scheduled)):
        pred = run(algo, c)
        out[f"{name}_predicted_s"] = pred
        out[f"{name}_error"] = (pred - measured) / measured
    if algo == "dpsgd":
        T = starts[0] - origin  # every step waits for the slowest learner, then one message
        for c_t in scheduled:
            T = np.full(K, (T + c_t).max() + net.message_s(nbytes))
        pred = float(T.max())
        out["barrier_model_predicted_s"] = pred
        out["barrier_model_error"] = (pred - measured) / measured
    return out


def run_launch(K: int, steps: int, warmup: int, base_s: float) -> list[dict]:
    """One torchrun launch of K ranks running every case; a row per case."""
    cases = []
    for hidden, scenarios in (([30, 30], SCENARIOS), ([256, 256], ("transient_stragglers",))):
        for scenario in scenarios:
            for algo in ("ssgd", "dpsgd"):
                sleeps = sleep_schedule(scenario, K, steps, base_s, seed=len(cases))
                cases.append({"algo": algo, "scenario": scenario, "hidden": hidden, "sleeps": sleeps.tolist()})
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "spec.json"
        spec.write_text(json.dumps({"ranks": K, "warmup": warmup, "cases": cases, "out": d}))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", f"--nproc-per-node={K}", str(Path(__file__).resolve()), "--worker", str(spec)]
        print(f"torchrun: {K} ranks, {len(cases)} cases of {steps} steps", flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            raise SystemExit(f"torchrun failed:\n{r.stderr[-4000:]}")
        per = [json.loads((Path(d) / f"rank{k}.json").read_text()) for k in range(K)]
    net = fit_network(per[0]["network"])  # rank 0 timed the ping-pongs
    print(f"  network: α = {net.latency_s * 1e6:.0f} µs, β = {net.bandwidth_Bps / 1e9:.2f} GB/s", flush=True)
    rows = []
    for i, case in enumerate(cases):
        row = {"algo": case["algo"], "scenario": case["scenario"], "hidden": case["hidden"], "ranks": K,
               **predict(case, [p["cases"][i] for p in per], net)}
        rows.append(row)
        extra = f", barrier model {row['barrier_model_error']:+.1%}" if "barrier_model_error" in row else ""
        print(f"  {case['algo']:5s} {case['scenario']:21s} hidden={case['hidden']}: measured {row['measured_s']:.3f} s,"
              f" clock per-step {row['per_step_error']:+.1%}, scheduled {row['scheduled_error']:+.1%}{extra}",
              flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--base-ms", type=float, default=15.0, help="scheduled sleep of a normal step (ms)")
    p.add_argument("--out", default=str(HERE / "results" / "clock_calibration.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker)
        return
    load0 = os.getloadavg()
    rows = [row for K in a.ranks for row in run_launch(K, a.steps, a.warmup, a.base_ms * 1e-3)]
    summary = {}
    for K in a.ranks:
        for k in ("per_step_error", "scheduled_error", "barrier_model_error"):
            v = [abs(r[k]) for r in rows if r["ranks"] == K and k in r]
            summary[f"ranks{K}_max_abs_{k}"] = max(v)
            summary[f"ranks{K}_mean_abs_{k}"] = statistics.fmean(v)
    payload = {"benchmark": "clock_calibration", "ranks": a.ranks, "steps": a.steps, "base_ms": a.base_ms,
               "loadavg_before": load0, "loadavg_after": os.getloadavg(), "summary": summary, "rows": rows,
               "note": "gloo ranks on loopback of one machine; on a small shared machine the numbers are noisy"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    for k, v in summary.items():
        print(f"{k}: {v:.1%}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
