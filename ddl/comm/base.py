"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class PendingExchange:
    """A neighbour exchange in flight; :meth:`wait` returns ``{peer_rank: received rows}``."""

    def __init__(self, result: dict[int, torch.Tensor] | None = None):
        self._result = result or {}

    def wait(self) -> dict[int, torch.Tensor]:
        return self._result


class Collective(ABC):
    """What an algorithm needs from where its learners live.

    A worker (process, rank or actor) holds the contiguous block of global learners
    ``[rank·m, (rank+1)·m)``; ``n = world·m``.
    """

    rank: int = 0
    world: int = 1
    n: int = 1

    @property
    def m(self) -> int:
        return self.n // self.world

    @property
    def learners(self) -> list[int]:
        return list(range(self.rank * self.m, (self.rank + 1) * self.m))

    def owner(self, learner: int) -> int:
        return learner // self.m

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @abstractmethod
    def allreduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over all workers (every worker gets the result)."""

    def exchange(self, sends: dict[int, torch.Tensor], recv_shapes: dict[int, torch.Size]) -> PendingExchange:
        """Send ``sends[peer]`` to each peer and receive a tensor of ``recv_shapes[peer]`` from each.

        May return before the transfer completes (the algorithm overlaps it with the backward pass).
        """
        if sends or recv_shapes:
            raise RuntimeError(f"{type(self).__name__} has a single worker: nothing to exchange")
        return PendingExchange()

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        """``t`` from worker ``src`` on every worker."""
        return t

    def gather_rows(self, W_local: torch.Tensor) -> torch.Tensor | None:
        """All learners' rows [n, ...] on the main worker (None elsewhere): checkpoints, evaluation."""
        return W_local

    def barrier(self) -> None:
        return None

    def close(self) -> None:
        return None
