"""What the simulated clock says, as figures: ``ddl clock`` and the clock's part of a comparison report.

``ddl clock`` (pure simulation, no training) writes into ``--out``:

* ``speedup_heatmap.png``/``.json``: DPSGD's speed-up over SSGD (SSGD's simulated time for the same steps over
  DPSGD's, same compute draws) against link latency × straggler slowdown, for one model size and n;
* ``speedup_vs_n.png``/``.json``: the speed-up against n (16 … 1024) per topology.

A speed-up per *step* is what the clock can say on its own; whether DPSGD needs more steps to reach a given
test error is a training question, answered per run pair by :func:`time_to_target` on the runs' ``sim_time_s``
(the report functions at the end of this module).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ddl.clock import ClockError, ComputeModel, Network, model_message_bytes, simulate

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
    from ddl.topology import TOPOLOGIES

    names = [t for t in PREFERRED_TOPOLOGIES if t in TOPOLOGIES]
    return names if len(names) > 1 else [*names, "complete"]


class _Progress:
    """A tqdm bar on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.enabled, self.desc, self.total, self.done = enabled, desc, total, 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, dynamic_ncols=True)

    def update(self, what: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.done == self.total:
                self.bar.close()
        elif self.enabled:
            print(f"{self.desc}: {what} done ({self.done}/{self.total})", file=sys.stderr, flush=True)


def speedup_grid(n: int, steps: int, compute_s: float, jitter: float, straggler_prob: float,
                 latencies_s: Sequence[float], slowdowns: Sequence[float], bandwidth_Bps: float, message_bytes: float,
                 topology: str = "ring", overlap: bool = True, shared_nic: bool = True, seed: int = 0,
                 progress: bool = False) -> np.ndarray:
    """[len(slowdowns), len(latencies)] SSGD time / DPSGD time for the same ``steps`` and compute draws."""
    from ddl.topology import make_topology

    topo = make_topology(topology, n)
    out = np.empty((len(slowdowns), len(latencies_s)))
    bar = _Progress(len(slowdowns), "heatmap", progress)
    for i, s in enumerate(slowdowns):
        cm = ComputeModel(compute_s, jitter, straggler_prob if s > 1 else 0.0, s)
        for j, lat in enumerate(latencies_s):
            net = Network(lat, bandwidth_Bps)
            t_ss = simulate("ssgd", n, steps, cm, net, message_bytes, seed=seed)
            t_dp = simulate("dpsgd", n, steps, cm, net, message_bytes, topo, overlap, seed, shared_nic)
            out[i, j] = t_ss / t_dp
        bar.update(f"slowdown {s:g}")
    return out


def speedup_vs_n(ns: Sequence[int], topologies: Sequence[str], steps: int, compute: ComputeModel, network: Network,
                 message_bytes: float, overlap: bool = True, shared_nic: bool = True, seed: int = 0,
                 progress: bool = False) -> dict:
    """Per topology: per-step times of SSGD and DPSGD and the speed-up, for each n."""
    from ddl.topology import make_topology

    res: dict = {"n": list(ns), "ssgd_step_s": [], "dpsgd_step_s": {t: [] for t in topologies},
                 "speedup": {t: [] for t in topologies}}
    bar = _Progress(len(ns), "speed-up against n", progress)
    for n in ns:
        t_ss = simulate("ssgd", n, steps, compute, network, message_bytes, seed=seed)
        res["ssgd_step_s"].append(t_ss / steps)
        for t in topologies:
            t_dp = simulate("dpsgd", n, steps, compute, network, message_bytes, make_topology(t, n), overlap, seed,
                            shared_nic)
            res["dpsgd_step_s"][t].append(t_dp / steps)
            res["speedup"][t].append(t_ss / t_dp)
        bar.update(f"n = {n}")
    return res


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    return path


def fig_heatmap(grid: np.ndarray, latencies_us: Sequence[float], slowdowns: Sequence[float], title: str):
    """DPSGD's speed-up over SSGD, rows: straggler slowdown, columns: latency (a diverging map centred on 1)."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    lo, hi = float(np.min(grid)), float(np.max(grid))
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(lo, 0.99), vmax=max(hi, 1.01))
    fig = Figure(figsize=(1.6 + 0.8 * len(latencies_us), 1.8 + 0.45 * len(slowdowns)))
    ax = fig.subplots()
    im = ax.imshow(grid, cmap="RdBu", norm=norm, origin="lower", aspect="auto")
    ax.set_xticks(range(len(latencies_us)), [f"{v:g}" for v in latencies_us])
    ax.set_yticks(range(len(slowdowns)), [f"{v:g}×" for v in slowdowns])
    ax.set_xlabel("link latency (µs)")
    ax.set_ylabel("straggler slowdown")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="DPSGD speed-up over SSGD (>1: DPSGD faster)")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def fig_scaling(res: dict, title: str):
    """Speed-up against n per topology (left) and the per-step times behind it (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    a1, a2 = fig.subplots(1, 2)
    ns = res["n"]
    for t, v in res["speedup"].items():
        a1.plot(ns, v, "o-", label=t)
        a2.plot(ns, np.array(res["dpsgd_step_s"][t]) * 1e3, "o-", label=f"DPSGD {t}")
    a2.plot(ns, np.array(res["ssgd_step_s"]) * 1e3, "k^--", label="SSGD (ring all-reduce)")
    a1.axhline(1.0, color="grey", lw=0.8)
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.set_xlabel("learners n")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=8)
    a1.set_ylabel("DPSGD speed-up over SSGD")
    a2.set_ylabel("simulated time per step (ms)")
    a2.set_yscale("log")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


# ---- ddl clock ----------------------------------------------------------------------------------------------


def add_clock_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", default="runs/clock", help="directory for the PNGs and JSON (default: runs/clock)")
    p.add_argument("--model", default="resnet18",
                   help="model size: a parameter count or a model name (mlp, cnn, resnet18, densenet121); "
                        "default resnet18 (CIFAR-10)")
    p.add_argument("--dtype", default="float32", help="parameter dtype of the messages (default float32)")
    p.add_argument("--learners", type=int, default=16, help="n for the heatmap (default 16)")
    p.add_argument("--topology", default="ring", help="DPSGD graph of the heatmap (default ring)")
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
    from ddl.topology import TOPOLOGIES

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
                        args.topology, args.overlap, args.shared_nic, args.seed, progress=True)
    title = (f"{model_desc}, n={args.learners}, DPSGD on {args.topology}; compute {args.compute_ms:g} ms, "
             f"jitter σ={args.jitter:g}, stragglers p={args.straggler_prob:g}, {args.bandwidth_gbps:g} Gbit/s")
    _save(fig_heatmap(grid, args.latencies_us, args.slowdowns, title), out / "speedup_heatmap.png")
    _write(out / "speedup_heatmap.json", {**common, "learners": args.learners, "topology": args.topology,
                                          "latencies_us": args.latencies_us, "slowdowns": args.slowdowns,
                                          "speedup": grid.tolist()})

    res = speedup_vs_n(args.ns, topologies, args.steps, compute, network, msg, args.overlap, args.shared_nic,
                       args.seed, progress=True)
    title = (f"{model_desc}; compute {args.compute_ms:g} ms, σ={args.jitter:g}, stragglers p={args.straggler_prob:g}"
             f" × {args.straggler_slowdown:g}; {args.latency_us:g} µs, {args.bandwidth_gbps:g} Gbit/s")
    _save(fig_scaling(res, title), out / "speedup_vs_n.png")
    _write(out / "speedup_vs_n.json", {**common, "latency_us": args.latency_us,
                                       "straggler_slowdown": args.straggler_slowdown, **res})
    print(f"wrote {out / 'speedup_heatmap.png'}, {out / 'speedup_vs_n.png'} (+ JSON)")
    return 0


def _write(path: Path, obj: dict) -> None:
    from ddl.rundir import write_json

    write_json(path, obj)


# ---- the clock in a comparison report ---------------------------------------------------------------------


def time_to_target(metrics: Sequence[dict], target_error: float) -> float | None:
    """Simulated seconds at the first evaluation whose test error (1 − test_acc) is ≤ ``target_error``.

    Resolution is the run's evaluation interval (``--eval-every``); None when the run never reached the target
    or has no clock stamps.
    """
    for r in metrics:
        if "sim_time_s" in r and "test_acc" in r and 1.0 - r["test_acc"] <= target_error:
            return float(r["sim_time_s"])
    return None


def clock_rows(runs: Sequence[tuple[str, Sequence[dict]]], target_error: float) -> list[dict]:
    """One row per run: label, simulated time of the whole run, time to reach ``target_error`` (or None)."""
    rows = []
    for label, metrics in runs:
        stamped = [r for r in metrics if "sim_time_s" in r]
        rows.append({"label": label, "sim_time_s": stamped[-1]["sim_time_s"] if stamped else None,
                     "time_to_target_s": time_to_target(metrics, target_error), "target_error": target_error})
    return rows


def common_target(runs: Sequence[Sequence[dict]]) -> float | None:
    """The lowest test error every run reached: the largest of the runs' best test errors (None without data)."""
    best = [min(1.0 - r["test_acc"] for r in m if "test_acc" in r) for m in runs if any("test_acc" in r for r in m)]
    return max(best) if best else None


def fig_against_clock(series: Sequence[tuple[str, str, Sequence[dict]]], target_error: float | None = None):
    """Training loss and test error against simulated wall clock, one line per run, and the time each run took
    to reach ``target_error`` (default: :func:`common_target`).

    ``series``: (label, colour, metrics records) per run; runs of one label share a colour and a legend entry.
    None when no run carries ``sim_time_s``.
    """
    from matplotlib.figure import Figure

    stamped = [(lab, col, [r for r in m if "sim_time_s" in r]) for lab, col, m in series]
    stamped = [s for s in stamped if s[2]]
    if not stamped:
        return None
    if target_error is None:
        target_error = common_target([m for _, _, m in stamped])
    fig = Figure(figsize=(14, 4))
    a1, a2, a3 = fig.subplots(1, 3)
    seen: dict[str, list[float | None]] = {}
    colours: dict[str, str] = {}
    for label, colour, recs in stamped:
        first = label not in seen
        seen.setdefault(label, []).append(time_to_target(recs, target_error) if target_error is not None else None)
        colours.setdefault(label, colour)
        t = [r["sim_time_s"] for r in recs]
        kw = {"color": colours[label], "label": label if first else None, "lw": 1.2}
        a1.plot(t, [r["train_loss"] for r in recs], **kw)
        a2.plot(t, [100 * (1.0 - r["test_acc"]) for r in recs], **kw)
    a1.set_yscale("log")
    a1.set_ylabel("training loss")
    a2.set_ylabel("test error (%)")
    if target_error is not None:
        a2.axhline(100 * target_error, color="grey", ls=":", lw=1, label=f"target {100 * target_error:.2f} %")
    for a in (a1, a2):
        a.set_xlabel("simulated wall clock (s)")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=8)
    labels = list(seen)
    for i, label in enumerate(labels):
        reached = [v for v in seen[label] if v is not None]
        if reached:
            a3.bar(i, np.mean(reached), color=colours[label], alpha=0.7,
                   yerr=np.std(reached, ddof=1) if len(reached) > 1 else None, capsize=4)
            a3.plot([i] * len(reached), reached, "k.", ms=5)
        missed = len(seen[label]) - len(reached)
        if missed:
            a3.text(i, 0, f"{missed} run(s) never\nreached it", ha="center", va="bottom", fontsize=7)
    a3.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize=7)
    a3.set_ylabel("simulated time to reach the target (s)")
    a3.set_title("time to target test error" + (f" ≤ {100 * target_error:.2f} %" if target_error is not None else ""),
                 fontsize=9)
    fig.tight_layout()
    return fig


def fig_clock(groups) -> object | None:
    """The comparison report's clock figure: :func:`fig_against_clock` over the groups' runs (``groups``: the
    report's groups, each with ``label``, ``color`` and ``runs`` carrying ``metrics``)."""
    return fig_against_clock([(g.label, g.color, r.metrics) for g in groups for r in g.runs])


def plot_against_clock(runs: Sequence[tuple[str, Sequence[dict]]], path: Path,
                       target_error: float | None = None) -> Path | None:
    """:func:`fig_against_clock` for (label, metrics) pairs, saved as a PNG at ``path`` (None: nothing to plot)."""
    colours = {lab: f"C{i % 10}" for i, lab in enumerate(dict.fromkeys(lab for lab, _ in runs))}
    fig = fig_against_clock([(lab, colours[lab], m) for lab, m in runs], target_error)
    return None if fig is None else _save(fig, path)
