"""Per-class subsets and label noise, both deterministic in a seed."""

from __future__ import annotations

import torch


def per_class_subset(x: torch.Tensor, y: torch.Tensor, per_class: int, seed: int, return_rest: bool = False):
    """Take ``per_class`` samples of each class (seeded choice), ordered by class then by choice.

    With ``return_rest`` also returns the samples not taken (in their original order).
    """
    g = torch.Generator().manual_seed(seed)
    take = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if per_class > idx.numel():
            raise ValueError(f"class {c} has {idx.numel()} samples, {per_class} requested")
        take.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    chosen = torch.cat(take)
    if not return_rest:
        return x[chosen], y[chosen]
    rest = torch.ones(y.numel(), dtype=torch.bool)
    rest[chosen] = False
    return x[chosen], y[chosen], x[rest], y[rest]


def add_label_noise(y: torch.Tensor, n_noisy_per_class: int, num_classes: int, seed: int):
    """Relabel ``n_noisy_per_class`` samples of every class to a uniformly drawn *wrong* class.

    Returns ``(noisy_labels, clean_mask)``; exactly ``n_noisy_per_class * num_classes`` labels change.
    """
    g = torch.Generator().manual_seed(seed + 7919)
    y_noisy = y.clone()
    clean = torch.ones_like(y, dtype=torch.bool)
    for c in range(num_classes):
        idx = torch.nonzero(y == c).flatten()
        pick = idx[torch.randperm(idx.numel(), generator=g)[:n_noisy_per_class]]
        # an offset in 1..C-1 guarantees a different class
        offset = torch.randint(1, num_classes, (pick.numel(),), generator=g)
        y_noisy[pick] = (c + offset) % num_classes
        clean[pick] = False
    return y_noisy, clean
