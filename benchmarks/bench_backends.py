"""Per-step time and communication volume of SSGD vs DPSGD on each backend (CPU).

Backends: ``sim`` (all learners in this process), ``torchrun-gloo`` (K ranks launched by torchrun), ``ray-torch``
and ``ray-objects`` (K Ray actors over torch.distributed gloo, or over Ray's object store).  Workload: the
paper's MLP 784-30-30-10 on MNIST-5k, b = 25 per learner, n = K learners (one per worker) and n = 16.

For each case the algorithm's step is timed directly (no evaluation, no files): ``--warmup`` steps, a barrier,
``--steps`` timed steps, a barrier.  Communication is reported two ways:

* ``payload_bytes_per_step_per_worker``: what the Collective hands to the transport, by operation (all-reduce
  by the transport's algorithm: ring 2(K−1)/K·size for torch.distributed, all-to-all (K−1)·size for objects);
* ``loopback_bytes_per_step_per_worker``: measured, the bytes transmitted on all network interfaces of this
  machine during the timed steps (all ranks are local, so it is loopback traffic), divided by steps and K.
  It includes protocol framing and, on Ray, the control traffic of the cluster; object-store reads between
  actors on one node go through shared memory and are not in it.

    python benchmarks/bench_backends.py                       # writes benchmarks/results/backends.json

nccl is not measured here (no GPU on this machine); run with ``--dist-backend nccl`` on a GPU host under
torchrun to add it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ddl.config import TrainConfig

HERE = Path(__file__).resolve().parent


def base_config(algo: str, n: int) -> dict:
    return dict(algo=algo, learners=n, batch_size=25, lr=0.1, topology="ring", dataset="mnist5k", model="mlp",
                progress=False, seed=0, out=None)


def net_tx_bytes() -> int:
    """Bytes transmitted on all interfaces of this machine so far (/proc/net/dev)."""
    total = 0
    try:
        for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
            fields = line.split(":", 1)[1].split()
            total += int(fields[8])
    except OSError:
        return -1
    return total


def measure(comm, device, cfg_dict: dict, steps: int, warmup: int, repeats: int) -> dict:
    """Time ``repeats`` × ``steps`` algorithm steps of ``cfg`` on ``comm`` (run by every worker)."""
    from ddl.loop.train import Trainer

    cfg = TrainConfig(**cfg_dict)
    tr = Trainer(cfg, comm=comm, device=device)
    traffic = getattr(comm, "traffic", None)

    def steps_from(first: int, count: int) -> None:
        for step in range(first, first + count):
            xs, ys = tr.batch(step)
            tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)

    steps_from(0, warmup)
    seconds, tx, snap = [], [], {}
    for rep in range(repeats):
        comm.barrier()
        if traffic is not None:
            traffic.reset()
        tx0 = net_tx_bytes()
        t0 = time.perf_counter()
        steps_from(warmup + rep * steps, steps)
        snap = traffic.snapshot() if traffic is not None else {"bytes": {}, "calls": {}}
        comm.barrier()
        seconds.append(time.perf_counter() - t0)
        tx.append(net_tx_bytes() - tx0)
    return {"rank": comm.rank, "seconds": seconds, "traffic": snap, "tx_bytes": tx, "threads": torch.get_num_threads()}


def summarize(backend: str, algo: str, n: int, K: int, per_rank: list[dict], steps: int, **extra) -> dict:
    # a repeat lasts as long as its slowest worker; the machine is shared, so the fastest repeat is the
    # least disturbed one (the median is reported too)
    reps = [max(r["seconds"][i] for r in per_rank) for i in range(len(per_rank[0]["seconds"]))]
    ops: dict[str, float] = {}
    for r in per_rank:
        for op, b in r["traffic"]["bytes"].items():
            ops[op] = ops.get(op, 0.0) + b / steps / len(per_rank)
    # every rank reads the same machine-wide counter: take rank 0's, in its least disturbed repeat
    tx = min(per_rank[0]["tx_bytes"])
    row = {
        "backend": backend, "algo": algo, "learners": n, "workers": K, "learners_per_worker": n // K,
        "steps": steps, "repeats": len(reps),
        "step_ms": round(1e3 * min(reps) / steps, 3),
        "step_ms_median": round(1e3 * statistics.median(reps) / steps, 3),
        "payload_bytes_per_step_per_worker": round(sum(ops.values())),
        "payload_by_op": {k: round(v) for k, v in sorted(ops.items())},
        "loopback_bytes_per_step_per_worker": round(tx / steps / K) if K > 1 else 0,
        "threads_per_worker": per_rank[0]["threads"],
    }
    row.update(extra)
    return row


# ---- the backends ---------------------------------------------------------------------------------------
def run_sim(cases, steps, warmup, repeats) -> list[dict]:
    from ddl.comm import SimCollective

    torch.set_num_threads(1)  # one core for all learners, as one worker process of the other backends gets
    rows = []
    for algo, n in cases:
        r = measure(SimCollective(n), torch.device("cpu"), base_config(algo, n), steps, warmup, repeats)
        rows.append(summarize("sim", algo, n, 1, [r], steps))
    return rows


def run_torchrun(K: int, cases, steps, warmup, repeats) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "spec.json"
        spec.write_text(json.dumps({"cases": cases, "steps": steps, "warmup": warmup, "repeats": repeats, "out": d}))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", f"--nproc-per-node={K}", str(Path(__file__).resolve()), "--worker", str(spec)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"torchrun failed:\n{r.stderr[-4000:]}")
        per = [json.loads((Path(d) / f"rank{k}.json").read_text()) for k in range(K)]
    rows = []
    for i, (algo, n) in enumerate(cases):
        rows.append(summarize("torchrun-gloo", algo, n, K, [p[i] for p in per], steps))
    return rows


def torchrun_worker(spec_path: str) -> None:
    from ddl.comm.torchdist import TorchDistCollective
    from ddl.drivers.torchrun import setup_torchrun

    spec = json.loads(Path(spec_path).read_text())
    cases = spec["cases"]
    comm, device = setup_torchrun(cases[0][1], "gloo", "cpu")
    out = []
    for algo, n in cases:
        c = TorchDistCollective(n)  # a view of the same process group for another learner count
        out.append(measure(c, device, base_config(algo, n), spec["steps"], spec["warmup"], spec["repeats"]))
    Path(spec["out"], f"rank{comm.rank}.json").write_text(json.dumps(out))
    comm.close()


def run_ray(K: int, transport: str, cases, steps, warmup, repeats) -> list[dict]:
    from ddl.drivers.ray_cluster import RayWorkers

    rows = []
    for n in sorted({n for _, n in cases}):
        t0 = time.perf_counter()
        with RayWorkers(n, K, transport=transport) as pool:
            startup = time.perf_counter() - t0
            for algo, nn in cases:
                if nn == n:
                    per = pool.call(measure, base_config(algo, n), steps, warmup, repeats)
                    rows.append(summarize(f"ray-{transport}", algo, n, K, per, steps,
                                          actor_startup_s=round(startup, 2)))
    return rows


def ray_transport_choice(rows: list[dict]) -> dict:
    """The measured case for the Ray backend's default transport: objects / torch step-time ratios."""
    from ddl.drivers.ray_cluster import DEFAULT_TRANSPORT

    t = {(r["algo"], r["learners"], r["workers"]): r["step_ms"] for r in rows if r["backend"] == "ray-torch"}
    o = {(r["algo"], r["learners"], r["workers"]): r["step_ms"] for r in rows if r["backend"] == "ray-objects"}
    ratios = {f"{a} n={n} K={k}": round(o[c] / t[c], 2) for c in sorted(t) if c in o for a, n, k in [c]}
    faster = "torch" if ratios and all(v > 1 for v in ratios.values()) else "mixed"
    return {"objects_over_torch_step_time": ratios, "faster_in_every_case": faster,
            "default": DEFAULT_TRANSPORT, "reason": "torch.distributed inside the actors moves each tensor once per "
            "step with one collective call; the object store pays one Ray task submission per message, and an "
            "all-reduce over it is K(K-1) messages per step. 'objects' stays for clusters without direct TCP "
            "between nodes."}


def machine() -> dict:
    import ray

    cpu = ""
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                   if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = 0
    try:
        mem = int(next(x.split()[1] for x in Path("/proc/meminfo").read_text().splitlines()
                       if x.startswith("MemTotal"))) // 2**20
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of --steps steps (fastest reported)")
    p.add_argument("--ks", type=int, nargs="*", default=[2, 4])
    p.add_argument("--learners", type=int, nargs="*", default=[0, 16], help="0 means n = K")
    p.add_argument("--out", default=str(HERE / "results" / "backends.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        torchrun_worker(a.worker)
        return

    import ray

    rows: list[dict] = []
    per_k = {K: [(algo, n or K) for n in a.learners for algo in ("ssgd", "dpsgd")] for K in a.ks}
    sim_cases = sorted({c for cs in per_k.values() for c in cs}, key=lambda c: (c[1], c[0] != "ssgd"))
    load0 = os.getloadavg()
    rows += run_sim(sim_cases, a.steps, a.warmup, a.repeats)
    for K, cs in per_k.items():
        print(f"torchrun K={K}", flush=True)
        rows += run_torchrun(K, cs, a.steps, a.warmup, a.repeats)
    ray.init(num_cpus=max(a.ks), include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        for transport in ("torch", "objects"):
            for K, cs in per_k.items():
                print(f"ray-{transport} K={K}", flush=True)
                rows += run_ray(K, transport, cs, a.steps, a.warmup, a.repeats)
    finally:
        ray.shutdown()
    for r in rows:
        print(f"{r['backend']:>14} {r['algo']:>5} n={r['learners']:>2} K={r['workers']} "
              f"{r['step_ms']:8.2f} ms/step  payload {r['payload_bytes_per_step_per_worker']:>9} B  "
              f"loopback {r['loopback_bytes_per_step_per_worker']:>9} B")
    result = {
        "benchmark": "per-step time and communication volume, SSGD vs DPSGD, by backend",
        "workload": {"model": "mlp 784-30-30-10 (no bias)", "parameters": 24720, "dataset": "mnist5k (4000 train)",
                     "batch_per_learner": 25, "topology": "ring", "dtype": "float32", "device": "cpu",
                     "steps": a.steps, "warmup": a.warmup, "repeats": a.repeats},
        "machine": {**machine(), "load_average_1m_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)]},
        "notes": [
            "step_ms: wall time of --steps timed steps between two barriers (slowest worker) / steps, fastest of "
            "--repeats repeats; step_ms_median: the median repeat. The machine is shared with other work: see "
            "the load average.",
            "Every worker process runs one intra-op thread (OMP_NUM_THREADS=1); sim runs all n learners in one "
            "process with one thread.",
            f"K workers share {os.cpu_count()} cores: K > cores is oversubscribed, so K = 4 measures contention "
            "as much as communication.",
            "payload: bytes the Collective hands to the transport per step and worker (all-reduce: ring "
            "2(K-1)/K x size for torch.distributed, all-to-all (K-1) x size for Ray objects).",
            "loopback: measured bytes sent on this machine's interfaces during the timed steps / steps / K; "
            "includes framing and Ray's control traffic; object-store reads on one node use shared memory.",
            "nccl: not measured (no GPU in this session).",
        ],
        "ray_transport": ray_transport_choice(rows),
        "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
