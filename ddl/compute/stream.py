"""Per-learner minibatch streams, a pure function of (seed, step, learner): identical on every backend.

Each epoch draws one seeded permutation of the training set; step k of the epoch takes the global batch
``perm[k·B:(k+1)·B]`` (B = n·b) and learner a takes its slice ``[a·b:(a+1)·b]``.  Hence n learners of batch b
see, together, exactly the samples one learner of batch n·b sees — the basis of the SSGD ≡ large-batch SGD
test — and any process can compute its own learners' indices without communication.  The incomplete tail
of each epoch is dropped.
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


def _mix(*xs: int) -> int:
    # splitmix-style hash of small integers into a 63-bit seed
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h >> 1
