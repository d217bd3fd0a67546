"""Seeded, stratified subsets: the one way the project takes "k samples of a data set".

Evaluation (``--eval-samples``), the analysis test set (``ddl analyze --test-samples``) and the noise meter's
approximate gradient (``--noise-samples``) all use :func:`stratified_subset`.  Data sets are often stored
sorted by class (MNIST-5k's split is), so the first k rows would cover a few classes only; a stratified sample
takes from every class.  Two ways to share (``--stratify``): ``proportional`` (the default) gives each class
its share of the data (largest remainders), so a subset's mean loss estimates the whole set's even when the
classes are imbalanced (full MNIST); ``equal`` gives every class an equal count where the data allow it (a
class-balanced loss).  Each call draws from its own ``torch.Generator``
seeded by ``seed``: it never touches the global random state or the training streams.
"""

from __future__ import annotations

import zlib

import torch

STRATIFY_MODES = ("proportional", "equal")


def proportional_quotas(counts: list[int], k: int) -> list[int]:
    """How many samples each class gets when ``k`` are taken in proportion to the class sizes ``counts``:
    ⌊k·n_c/N⌋ each, the rest one each to the classes of largest remainder (ties: larger class, then lower
    index) — the largest-remainder rule, a deterministic function of ``counts`` and ``k``."""
    total = sum(counts)
    k = min(k, total)
    if total == 0 or k == 0:
        return [0] * len(counts)
    exact = [k * c / total for c in counts]
    quotas = [int(e) for e in exact]
    order = sorted(range(len(counts)), key=lambda c: (-(exact[c] - quotas[c]), -counts[c], c))
    for c in order[: k - sum(quotas)]:
        quotas[c] += 1
    return quotas


def class_quotas(counts: list[int], k: int) -> list[int]:
    """How many samples each class gets when ``k`` are taken from classes of sizes ``counts``.

    Equal shares where possible (water-filling): a class smaller than its share gives all it has and the
    remainder is shared among the others; the last few samples that do not divide evenly go to the largest
    classes first (ties: lower class index), so the result is a deterministic function of ``counts`` and ``k``.
    """
    quotas = [0] * len(counts)
    left = min(k, sum(counts))
    open_ = [c for c in range(len(counts)) if counts[c] > 0]
    while left > 0 and open_:
        share = left // len(open_)
        if share == 0:  # fewer left than open classes: one each to the largest classes
            for c in sorted(open_, key=lambda c: (-(counts[c] - quotas[c]), c))[:left]:
                quotas[c] += 1
            break
        for c in open_:
            take = min(share, counts[c] - quotas[c])
            quotas[c] += take
            left -= take
        open_ = [c for c in open_ if quotas[c] < counts[c]]
    return quotas


def stratified_subset(y: torch.Tensor, k: int | None, seed: int, purpose: str = "",
                      mode: str = "proportional") -> torch.Tensor:
    """Indices (sorted, int64, on the CPU) of a seeded, class-stratified sample of ``k`` of the labels ``y``.

    ``k`` of None or at least ``len(y)`` selects everything.  Within each class the samples are a uniformly
    random choice of its quota (``mode``: :func:`proportional_quotas` or the equal :func:`class_quotas`), drawn
    from a generator of its own seeded by ``seed`` and ``purpose`` (a name such as ``"eval-train"``, so that
    subsets taken for different purposes with one seed are independent draws).  On balanced classes both modes
    give the same quotas, hence the same subset.
    """
    y = torch.as_tensor(y).flatten().cpu()
    n = y.numel()
    if k is None or k >= n:
        return torch.arange(n)
    if k < 0:
        raise ValueError(f"subset size must be ≥ 0, got {k}")
    if mode not in STRATIFY_MODES:
        raise ValueError(f"stratify: {mode!r} is not one of {', '.join(STRATIFY_MODES)}")
    classes = torch.unique(y)
    members = [torch.nonzero(y == c).flatten() for c in classes.tolist()]
    quotas = (proportional_quotas if mode == "proportional" else class_quotas)([m.numel() for m in members], k)
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(purpose.encode())) % (1 << 63))
    picks = [m[torch.randperm(m.numel(), generator=g)[:q]] for m, q in zip(members, quotas)]
    return torch.sort(torch.cat(picks)).values
