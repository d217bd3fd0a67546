"""Non-IID data: each learner's own shard of the training set, drawn per class from a Dirichlet distribution.

The construction is the standard one (Hsu, Qi & Brown 2019; Yurochkin et al. 2019; the non-IID splits of
RelaySGD): for every class c, its samples (in a seeded random order) are split among the n learners in
proportions p_c ~ Dir(α·1_n).  Large α gives every learner about 1/n of every class; small α gives each class
to a few learners.

**Tiny and empty shards.**  A learner draws b samples per step from its shard, so every shard must hold at
least ``min_size = b`` samples.  After the Dirichlet split, while some shard is smaller than ``min_size``, one
sample chosen at random from the currently largest shard moves to it (ties: the lowest learner index).  At
small α and n larger than the number of classes (α = 0.01, 16 learners, 10 classes) some learners are
empty after the split and are filled this way — with samples of the largest shard, so they stay concentrated on
few classes.  It always ends, since n·b ≤ the training-set size (the stream requires it).

All randomness comes from a generator of its own, seeded from the run seed and a fixed tag: never the training
streams.  The learners' minibatches are drawn by :class:`ddl.compute.stream.ShardStream`.
"""

from __future__ import annotations

import numpy as np
import torch

from ddl.errors import ConfigError

PARTITIONS = ("iid", "dirichlet")
# a fixed tag mixed into the run seed, so the partition's generator differs from every training stream
_PARTITION_KEY = 0xD1A1


def dirichlet_shards(labels: torch.Tensor, n: int, alpha: float, seed: int, min_size: int = 1) -> list[torch.Tensor]:
    """Sample indices of each of ``n`` learners' shards (sorted), a partition of ``range(len(labels))``."""
    if not alpha > 0:
        raise ConfigError(f"--dirichlet-alpha: must be > 0, got {alpha}")
    N = labels.numel()
    if n * min_size > N:
        raise ConfigError(f"--learners: {n} shards of at least {min_size} samples exceed the {N} training samples")
    rng = np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(_PARTITION_KEY,)))
    y = labels.cpu().numpy()
    shards: list[list[int]] = [[] for _ in range(n)]
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        p = rng.dirichlet(np.full(n, float(alpha)))
        cuts = (np.cumsum(p)[:-1] * idx.size).astype(np.int64)
        for a, part in enumerate(np.split(idx, cuts)):
            shards[a].extend(part.tolist())
    sizes = np.array([len(s) for s in shards])
    while sizes.min() < min_size:
        small, big = int(np.argmin(sizes)), int(np.argmax(sizes))
        k = int(rng.integers(sizes[big]))
        shards[small].append(shards[big].pop(k))
        sizes[small] += 1
        sizes[big] -= 1
    return [torch.as_tensor(sorted(s), dtype=torch.long) for s in shards]


def class_histograms(labels: torch.Tensor, shards: list[torch.Tensor], num_classes: int) -> list[list[int]]:
    """Per learner, the number of samples of each class in its shard ([n][classes])."""
    return [torch.bincount(labels[s], minlength=num_classes).tolist() for s in shards]


def partition_record(labels: torch.Tensor, shards: list[torch.Tensor], alpha: float, min_size: int,
                     num_classes: int) -> dict:
    """What ``partition.json`` holds for Dirichlet shards: the parameters, shard sizes and class histograms."""
    return {"partition": "dirichlet", "alpha": alpha, "min_size": min_size, "classes": num_classes,
            "shard_sizes": [int(s.numel()) for s in shards],
            "histograms": class_histograms(labels, shards, num_classes)}
