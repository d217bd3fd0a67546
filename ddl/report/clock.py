"""The simulated clock's figures: the speed-up maps of ``ddl clock`` and the clock's part of a comparison report.

A speed-up per *step* is what the clock can say on its own; whether DPSGD needs more steps to reach a given
test error is a training question, answered per run pair by :func:`time_to_target` on the runs' ``sim_time_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def save_figure(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    return path


def fig_heatmap(grid: np.ndarray, latencies_us: Sequence[float], slowdowns: Sequence[float], title: str,
                labels: tuple[str, str]):
    """An algorithm's speed-up over the baseline (``labels``: baseline's, algorithm's), rows: straggler slowdown,
    columns: latency (a diverging map centred on 1)."""
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
    base, algo = labels
    fig.colorbar(im, ax=ax, label=f"{algo} speed-up over {base} (>1: {algo} faster)")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def fig_scaling(res: dict, title: str, labels: tuple[str, str]):
    """Speed-up against n per topology (left) and the per-step times behind it (right); ``labels``: the
    baseline's and the algorithm's."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    a1, a2 = fig.subplots(1, 2)
    base, algo = labels
    ns = res["n"]
    for t, v in res["speedup"].items():
        a1.plot(ns, v, "o-", label=t)
        a2.plot(ns, np.array(res["dpsgd_step_s"][t]) * 1e3, "o-", label=f"{algo} {t}")
    a2.plot(ns, np.array(res["ssgd_step_s"]) * 1e3, "k^--", label=f"{base} (ring all-reduce)")
    a1.axhline(1.0, color="grey", lw=0.8)
    for a in (a1, a2):
        a.set_xscale("log", base=2)
        a.set_xlabel("learners n")
        a.grid(True, alpha=0.3)
        a.legend(fontsize=8)
    a1.set_ylabel(f"{algo} speed-up over {base}")
    a2.set_ylabel("simulated time per step (ms)")
    a2.set_yscale("log")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def fig_algorithms(res: dict, title: str):
    """Every algorithm's speed-up over the baseline against link latency (one line per algorithm, its label and
    colour from its declaration)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    lat = res["latencies_us"]
    for row in res["algorithms"]:
        ax.plot(lat, row["speedup"], "o-", color=row["color"], label=row["label"])
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("link latency (µs)")
    ax.set_ylabel(f"speed-up per step over {res['baseline']} (>1: faster)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


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
