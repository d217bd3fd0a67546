"""Per-learner minibatch streams, a pure function of (seed, step, learner): identical on every backend.

Each epoch draws one seeded permutation of the training set; step k of the epoch takes the global batch
``perm[k·B:(k+1)·B]`` (B = n·b) and learner a takes its slice ``[a·b:(a+1)·b]``.  Hence n learners of batch b
see, together, exactly the samples one learner of batch n·b sees — the basis of the SSGD ≡ large-batch SGD
test — and any process can compute its own learners' indices without communication.  The incomplete tail
of each epoch is dropped.

With non-IID data (``--partition dirichlet``, :mod:`ddl.data.partition`) each learner draws from its own shard
instead (:class:`ShardStream`): learner a's samples are the concatenation of seeded permutations of its shard
("rounds"), step k taking positions ``[k·b, (k+1)·b)`` of it — again a pure function of (seed, step, learner),
and learner a never sees a sample outside its shard.  An epoch keeps its meaning in samples: n·b·steps_per_epoch
samples drawn in all (a learner with a small shard passes over it more often than one with a large shard).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ddl.errors import ConfigError


class MinibatchStream:
    def __init__(self, n_train: int, n_learners: int, batch_size: int, seed: int):
        self.n_train = n_train
        self.n = n_learners
        self.b = batch_size
        self.seed = seed
        self.steps_per_epoch = n_train // (n_learners * batch_size)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"--batch-size: total batch {n_learners}×{batch_size} exceeds the {n_train} training samples"
            )
        self._cached: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch))
            self._cached = (epoch, torch.randperm(self.n_train, generator=g))
        return self._cached[1]

    def indices(self, step: int, learners: Sequence[int]) -> torch.Tensor:
        """Sample indices [len(learners), b] of the given global learners at global step ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        batch = self.permutation(epoch)[k * self.n * self.b : (k + 1) * self.n * self.b].view(self.n, self.b)
        return batch[torch.as_tensor(list(learners))]

    def generator(self, step: int, learner: int, salt: int = 0) -> torch.Generator:
        """A generator for randomness owned by one learner at one step (augmentation)."""
        return torch.Generator().manual_seed(_mix(self.seed, step, learner, salt + 1))


class ShardStream:
    """Minibatches of learner a drawn from its own shard ``shards[a]`` (same interface as :class:`MinibatchStream`)."""

    def __init__(self, shards: Sequence[torch.Tensor], batch_size: int, seed: int):
        self.shards = [torch.as_tensor(s, dtype=torch.long) for s in shards]
        self.n = len(self.shards)
        self.b = batch_size
        self.seed = seed
        self.n_train = sum(s.numel() for s in self.shards)
        self.steps_per_epoch = self.n_train // (self.n * batch_size)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"--batch-size: total batch {self.n}×{batch_size} exceeds the {self.n_train} training samples"
            )
        small = min(range(self.n), key=lambda a: self.shards[a].numel())
        if self.shards[small].numel() < batch_size:
            raise ConfigError(f"--batch-size: learner {small}'s shard holds {self.shards[small].numel()} samples, "
                              f"fewer than the batch {batch_size}")
        self._rounds: dict[int, tuple[int, torch.Tensor]] = {}  # learner -> (round, its permutation of the shard)

    def _round(self, a: int, r: int) -> torch.Tensor:
        cached = self._rounds.get(a)
        if cached is None or cached[0] != r:
            g = torch.Generator().manual_seed(_mix(self.seed, _SHARD_KEY, a, r))
            shard = self.shards[a]
            cached = (r, shard[torch.randperm(shard.numel(), generator=g)])
            self._rounds[a] = cached
        return cached[1]

    def learner_indices(self, step: int, a: int) -> torch.Tensor:
        """Sample indices [b] of learner ``a`` at step ``step``: positions [step·b, (step+1)·b) of its rounds."""
        size = self.shards[a].numel()
        lo, hi = step * self.b, (step + 1) * self.b
        r_lo, r_hi = lo // size, (hi - 1) // size
        parts = []
        for r in range(r_lo, r_hi + 1):
            perm = self._round(a, r)
            parts.append(perm[max(lo - r * size, 0): min(hi - r * size, size)])
        return torch.cat(parts)

    def indices(self, step: int, learners: Sequence[int]) -> torch.Tensor:
        """Sample indices [len(learners), b] of the given global learners at global step ``step``."""
        return torch.stack([self.learner_indices(step, int(a)) for a in learners])

    def generator(self, step: int, learner: int, salt: int = 0) -> torch.Generator:
        """A generator for randomness owned by one learner at one step (augmentation)."""
        return torch.Generator().manual_seed(_mix(self.seed, step, learner, salt + 1))


_SHARD_KEY = 0x5A4D


def _mix(*xs: int) -> int:
    # splitmix-style hash of small integers into a 63-bit seed
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h >> 1
