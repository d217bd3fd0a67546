"""``ddl clock``: what the simulated clock says about speed-ups, without training (figures: :mod:`ddl.report.clock`).

``ddl clock`` (pure simulation, no training) writes into ``--out``:

* ``speedup_heatmap.png``/``.json``: DPSGD's speed-up over SSGD (SSGD's simulated time for the same steps over
  DPSGD's, same compute draws) against link latency × straggler slowdown, for one model size and n;
* ``speedup_vs_n.png``/``.json``: the speed-up against n (16 … 1024) per topology;
* ``algorithms.png``/``.json``: every registered algorithm's speed-up per step over SSGD against link latency,
  priced from its declared communication (``--period`` for local SGD / Gossip-PGA, ``--compressor`` and
  ``--compress-ratio`` for CHOCO-SGD), on ``--topology`` with n = ``--learners``.

A speed-up per *step* is what the clock can say on its own; whether DPSGD needs more steps to reach a given
test error is a training question, answered per run pair by :func:`ddl.report.clock.time_to_target` on the runs'
``sim_time_s``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ddl.algorithms import ALGORITHMS, BASELINE, DPSGD, communication_of, identity_of, label_of
from ddl.loop.progress import progress_bar
from ddl.measure.clock import ClockError, ComputeModel, Network, model_message_bytes, simulate
from ddl.report.clock import fig_algorithms, fig_heatmap, fig_scaling, save_figure

DEFAULT_LATENCIES_US = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
DEFAULT_SLOWDOWNS = (1, 1.5, 2, 3, 5, 8, 12)
DEFAULT_NS = (16, 32, 64, 128, 256, 512, 1024)
PREFERRED_TOPOLOGIES = ("ring", "torus", "exponential", "one-peer-exponential")
# the input each model is built for when its size is asked by name
_MODEL_DATASET = {"mlp": "mnist5k", "cnn": "mnist5k", "resnet18": "cifar10", "densenet121": "cifar10"}


def model_params(model: str) -> tuple[int, str]:
    """Parameter count of ``model``: an integer, or a model name (built for its usual data set)."""
    try:
        p = int(float(model))
    except ValueError:
        p = None
    if p is not None:
        if p < 1:
            raise ClockError(f"--model: a parameter count must be ≥ 1, got {model}")
        return p, f"{p:,} parameters"
    if model not in _MODEL_DATASET:
        raise ClockError(f"--model: {model!r} is neither a parameter count nor one of {', '.join(_MODEL_DATASET)}")
    from ddl.data import INPUT_SHAPES
    from ddl.models import build_model

    net = build_model(model, INPUT_SHAPES[_MODEL_DATASET[model]], 10, seed=0)
    p = sum(t.numel() for t in net.parameters())
    return p, f"{model} ({p / 1e6:.2f} M parameters)"


def default_topologies() -> list[str]:
    from ddl.algorithms.topology import TOPOLOGIES

    names = [t for t in PREFERRED_TOPOLOGIES if t in TOPOLOGIES]
    return names if len(names) > 1 else [*names, "complete"]


def speedup_grid(n: int, steps: int, compute_s: float, jitter: float, straggler_prob: float,
                 latencies_s: Sequence[float], slowdowns: Sequence[float], bandwidth_Bps: float, message_bytes: float,
                 topology: str = "ring", overlap: bool = True, shared_nic: bool = True, seed: int = 0,
                 progress: bool = False, algo: str = DPSGD.name) -> np.ndarray:
    """[len(slowdowns), len(latencies)] the baseline's time / ``algo``'s time for the same ``steps`` and compute
    draws."""
    from ddl.algorithms.topology import make_topology

    topo = make_topology(topology, n)
    out = np.empty((len(slowdowns), len(latencies_s)))
    bar = progress_bar(len(slowdowns), desc="heatmap", unit="row", disable=not progress)
    for i, s in enumerate(slowdowns):
        cm = ComputeModel(compute_s, jitter, straggler_prob if s > 1 else 0.0, s)
        for j, lat in enumerate(latencies_s):
            net = Network(lat, bandwidth_Bps)
            t_ss = simulate(BASELINE, n, steps, cm, net, message_bytes, seed=seed)
            t_dp = simulate(algo, n, steps, cm, net, message_bytes, topo, overlap, seed, shared_nic)
            out[i, j] = t_ss / t_dp
        bar.set_postfix_str(f"slowdown {s:g}")
        bar.update(1)
    bar.close()
    return out


def speedup_vs_n(ns: Sequence[int], topologies: Sequence[str], steps: int, compute: ComputeModel, network: Network,
                 message_bytes: float, overlap: bool = True, shared_nic: bool = True, seed: int = 0,
                 progress: bool = False, algo: str = DPSGD.name) -> dict:
    """Per topology: per-step times of the baseline (``ssgd_step_s``) and of ``algo`` (``dpsgd_step_s``) and the
    speed-up, for each n."""
    from ddl.algorithms.topology import make_topology

    res: dict = {"n": list(ns), "ssgd_step_s": [], "dpsgd_step_s": {t: [] for t in topologies},
                 "speedup": {t: [] for t in topologies}}
    bar = progress_bar(len(ns), desc="speed-up against n", unit="n", disable=not progress)
    for n in ns:
        t_ss = simulate(BASELINE, n, steps, compute, network, message_bytes, seed=seed)
        res["ssgd_step_s"].append(t_ss / steps)
        for t in topologies:
            t_dp = simulate(algo, n, steps, compute, network, message_bytes, make_topology(t, n), overlap, seed,
                            shared_nic)
            res["dpsgd_step_s"][t].append(t_dp / steps)
            res["speedup"][t].append(t_ss / t_dp)
        bar.set_postfix_str(f"n = {n}")
        bar.update(1)
    bar.close()
    return res


def speedup_by_algorithm(n: int, steps: int, compute: ComputeModel, latencies_s: Sequence[float],
                         bandwidth_Bps: float, message_bytes: float, topology: str, cfg, overlap: bool = True,
                         shared_nic: bool = True, seed: int = 0) -> list[dict]:
    """Per registered algorithm (its facts from ``cfg``: period, compressor): the baseline's simulated time over
    its own, same compute draws, at each latency."""
    from ddl.algorithms.topology import make_topology

    topo = make_topology(topology, n)
    rows = []
    for name in ALGORITHMS:
        comm = communication_of(name, replace_algo(cfg, name))
        speedup = []
        for lat in latencies_s:
            net = Network(lat, bandwidth_Bps)
            t_base = simulate(BASELINE, n, steps, compute, net, message_bytes, seed=seed)
            speedup.append(t_base / simulate(comm, n, steps, compute, net, message_bytes, topo, overlap, seed,
                                             shared_nic))
        ident = identity_of(name)
        rows.append({"algo": name, "label": ident.label, "color": ident.color, "speedup": speedup,
                     "global_average_every": comm.global_average_every, "message_fraction": comm.message_fraction,
                     "exchanges_per_step": comm.exchanges_per_step})
    return rows


def replace_algo(cfg, name: str):
    import dataclasses

    return dataclasses.replace(cfg, algo=name)


# ---- ddl clock ----------------------------------------------------------------------------------------------


def add_clock_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", default="runs/clock", help="directory for the PNGs and JSON (default: runs/clock)")
    p.add_argument("--model", default="resnet18",
                   help="model size: a parameter count or a model name (mlp, cnn, resnet18, densenet121); "
                        "default resnet18 (CIFAR-10)")
    p.add_argument("--dtype", default="float32", help="parameter dtype of the messages (default float32)")
    p.add_argument("--learners", type=int, default=16, help="n for the heatmap (default 16)")
    p.add_argument("--algo", default=DPSGD.name, choices=[a for a in ALGORITHMS if a != BASELINE],
                   help=f"the algorithm compared with the baseline {BASELINE} (default {DPSGD.name})")
    p.add_argument("--topology", default="ring", help="graph of the heatmap and the algorithms map (default ring)")
    p.add_argument("--period", type=int, default=8,
                   help="algorithms map: local SGD / Gossip-PGA average every H steps (default 8)")
    p.add_argument("--compressor", default="topk", help="algorithms map: CHOCO-SGD's compressor (default topk)")
    p.add_argument("--compress-ratio", type=float, default=0.01,
                   help="algorithms map: CHOCO-SGD's compression ratio (default 0.01)")
    p.add_argument("--compute-ms", type=float, default=40.0,
                   help="mean compute time of one learner's step in ms (default 40: ResNet-18, b=128, one V100)")
    p.add_argument("--jitter", type=float, default=0.1, help="σ of the log-normal compute factor (default 0.1)")
    p.add_argument("--straggler-prob", type=float, default=0.05,
                   help="probability that a learner's step straggles (default 0.05)")
    p.add_argument("--straggler-slowdown", type=float, default=3.0,
                   help="slowdown of a straggling step for the scaling figure (default 3)")
    p.add_argument("--latency-us", type=float, default=50.0, help="link latency for the scaling figure (default 50)")
    p.add_argument("--bandwidth-gbps", type=float, default=10.0, help="link bandwidth in Gbit/s (default 10)")
    p.add_argument("--latencies-us", type=float, nargs="+", default=list(DEFAULT_LATENCIES_US),
                   help="heatmap columns: link latencies in µs")
    p.add_argument("--slowdowns", type=float, nargs="+", default=list(DEFAULT_SLOWDOWNS),
                   help="heatmap rows: straggler slowdowns (1 = no stragglers)")
    p.add_argument("--ns", type=int, nargs="+", default=list(DEFAULT_NS), help="learner counts of the scaling figure")
    p.add_argument("--topologies", nargs="+", default=None,
                   help="graphs of the scaling figure (default: ring, torus, exponential, one-peer-exponential "
                        "where available)")
    p.add_argument("--steps", type=int, default=200, help="simulated steps per point (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clock's compute draws (default 0)")
    p.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=True,
                   help="DPSGD sends its weights as a step starts (default) or after the gradient")
    p.add_argument("--shared-nic", action=argparse.BooleanOptionalAction, default=True,
                   help="a learner's messages of one step share its link (default)")
    return p


def run_clock(args: argparse.Namespace) -> int:
    from ddl.algorithms.topology import TOPOLOGIES

    if args.steps < 1:
        raise ClockError(f"--steps: must be ≥ 1, got {args.steps}")
    if args.learners < 2 or min(args.ns) < 2:
        raise ClockError("--learners/--ns: the comparison needs at least 2 learners")
    topologies = args.topologies or default_topologies()
    for t in [args.topology, *topologies]:
        if t not in TOPOLOGIES:
            raise ClockError(f"--topology: unknown topology {t!r}; accepted: {', '.join(TOPOLOGIES)}")
    params, model_desc = model_params(args.model)
    msg = model_message_bytes(params, args.dtype)
    network = Network.from_units(args.latency_us, args.bandwidth_gbps)
    compute = ComputeModel(args.compute_ms * 1e-3, args.jitter, args.straggler_prob, args.straggler_slowdown)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = {"model": model_desc, "num_params": params, "message_bytes": msg, "dtype": args.dtype,
              "compute_ms": args.compute_ms, "jitter": args.jitter, "straggler_prob": args.straggler_prob,
              "bandwidth_gbps": args.bandwidth_gbps, "steps": args.steps, "seed": args.seed, "overlap": args.overlap,
              "shared_nic": args.shared_nic}

    grid = speedup_grid(args.learners, args.steps, compute.base_s, args.jitter, args.straggler_prob,
                        [v * 1e-6 for v in args.latencies_us], args.slowdowns, network.bandwidth_Bps, msg,
                        args.topology, args.overlap, args.shared_nic, args.seed, progress=True, algo=args.algo)
    labels = (label_of(BASELINE), label_of(args.algo))
    title = (f"{model_desc}, n={args.learners}, {labels[1]} on {args.topology}; compute {args.compute_ms:g} ms, "
             f"jitter σ={args.jitter:g}, stragglers p={args.straggler_prob:g}, {args.bandwidth_gbps:g} Gbit/s")
    save_figure(fig_heatmap(grid, args.latencies_us, args.slowdowns, title, labels), out / "speedup_heatmap.png")
    _write(out / "speedup_heatmap.json", {**common, "learners": args.learners, "topology": args.topology,
                                          "latencies_us": args.latencies_us, "slowdowns": args.slowdowns,
                                          "speedup": grid.tolist()})

    res = speedup_vs_n(args.ns, topologies, args.steps, compute, network, msg, args.overlap, args.shared_nic,
                       args.seed, progress=True, algo=args.algo)
    title = (f"{model_desc}; compute {args.compute_ms:g} ms, σ={args.jitter:g}, stragglers p={args.straggler_prob:g}"
             f" × {args.straggler_slowdown:g}; {args.latency_us:g} µs, {args.bandwidth_gbps:g} Gbit/s")
    save_figure(fig_scaling(res, title, labels), out / "speedup_vs_n.png")
    _write(out / "speedup_vs_n.json", {**common, "latency_us": args.latency_us,
                                       "straggler_slowdown": args.straggler_slowdown, **res})
    from ddl.config import TrainConfig
    from ddl.errors import ConfigError

    try:
        cfg = TrainConfig(period=args.period, compressor=args.compressor, compress_ratio=args.compress_ratio,
                          dtype=args.dtype).validate()
    except ConfigError as e:
        raise ClockError(str(e)) from None
    rows = speedup_by_algorithm(args.learners, args.steps, compute, [v * 1e-6 for v in args.latencies_us],
                                network.bandwidth_Bps, msg, args.topology, cfg, args.overlap, args.shared_nic,
                                args.seed)
    res = {**common, "learners": args.learners, "topology": args.topology, "period": args.period,
           "compressor": args.compressor, "compress_ratio": args.compress_ratio, "baseline": label_of(BASELINE),
           "latencies_us": args.latencies_us, "straggler_slowdown": args.straggler_slowdown, "algorithms": rows}
    title = (f"{model_desc}, n={args.learners}, {args.topology}, H={args.period}, CHOCO {args.compressor} "
             f"r={args.compress_ratio:g}; compute {args.compute_ms:g} ms, stragglers p={args.straggler_prob:g} × "
             f"{args.straggler_slowdown:g}, {args.bandwidth_gbps:g} Gbit/s")
    save_figure(fig_algorithms(res, title), out / "algorithms.png")
    _write(out / "algorithms.json", res)
    print(f"wrote {out / 'speedup_heatmap.png'}, {out / 'speedup_vs_n.png'}, {out / 'algorithms.png'} (+ JSON)")
    return 0


def _write(path: Path, obj: dict) -> None:
    from ddl.rundir.layout import write_json

    write_json(path, obj)
