"""The figure of the learners' data shards (non-IID runs): a learners × classes heat map per configuration."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ddl.report.groups import Group
from ddl.rundir.layout import read_partition


def group_partition(g: Group) -> dict | None:
    """The shards of the group's first seed that has ``partition.json`` (each seed draws its own); None: IID."""
    for r in g.runs:
        part = read_partition(r.path)
        if part is not None:
            return {**part, "seed": r.seed}
    return None


def has_partition(g: Group) -> bool:
    return group_partition(g) is not None


def fig_partition(groups: list[Group]) -> Figure | None:
    """Per group with non-IID data, each learner's class fractions (rows: learners, columns: classes)."""
    parts = [(g, p) for g in groups if (p := group_partition(g)) is not None]
    if not parts:
        return None
    fig = Figure(figsize=(3.6 * len(parts) + 0.8, 3.8), layout="constrained")
    axes = fig.subplots(1, len(parts), squeeze=False)[0]
    im = None
    for ax, (g, p) in zip(axes, parts):
        h = np.asarray(p["histograms"], dtype=float)
        frac = h / np.maximum(h.sum(1, keepdims=True), 1)
        im = ax.imshow(frac, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{g.label}\nα = {p['alpha']:g} (seed {p['seed']})", fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("learner")
    fig.colorbar(im, ax=list(axes), label="fraction of the learner's shard")
    return fig
