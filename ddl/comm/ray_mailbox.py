"""The Ray object-store transport (``--ray-transport objects``): a :class:`Collective` between Ray actors.

Each actor is a threaded actor whose ``deliver`` method drops tensors into a :class:`Mailbox` keyed by
(operation sequence number, sender); every actor issues the same operations in the same order, so the sequence
numbers agree without coordination.  A sum over workers is an all-to-all: each actor ``ray.put``s its part once,
sends the reference to every peer and adds the K parts in rank order, so all actors get bitwise the same sum.
The actors themselves are started by :mod:`ddl.drivers.ray_cluster`.
"""

from __future__ import annotations

import threading

import numpy as np
import ray
import torch

from ddl.comm.base import Collective, PendingExchange
from ddl.comm.torchdist import Traffic, check_divisible, nbytes

DEFAULT_TIMEOUT_S = 1800.0  # a peer silent for this long is taken as dead (the driver usually notices first)


class Mailbox:
    """Tensors delivered by peers, keyed by (sequence number, sender); ``take`` blocks until one arrives."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, int], torch.Tensor] = {}
        self._cv = threading.Condition()

    def put(self, key: tuple[int, int], value: torch.Tensor) -> None:
        with self._cv:
            self._items[key] = value
            self._cv.notify_all()

    def take(self, key: tuple[int, int], timeout: float) -> torch.Tensor:
        with self._cv:
            if not self._cv.wait_for(lambda: key in self._items, timeout):
                raise TimeoutError(f"ray: no tensor from worker {key[1]} (operation {key[0]}) within {timeout:.0f} s")
            return self._items.pop(key)


def _host(t: torch.Tensor) -> np.ndarray:
    # numpy arrays travel through Ray's object store without pickling their data (zero-copy reads)
    return t.detach().cpu().contiguous().numpy()


class _MailboxPending(PendingExchange):
    def __init__(self, comm: RayCollective, seq: int, peers: list[int], device: torch.device):
        super().__init__()
        self._comm, self._seq, self._peers, self._device = comm, seq, peers, device

    def wait(self) -> dict[int, torch.Tensor]:
        return {r: self._comm._take(self._seq, r).to(self._device) for r in self._peers}


class RayCollective(Collective):
    """A :class:`Collective` between Ray actors over the object store (see the module docstring)."""

    def __init__(self, rank: int, world: int, n: int, peers: list, mailbox: Mailbox,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        check_divisible(n, world)
        self.rank, self.world, self.n = rank, world, n
        self.peers = peers  # actor handles, by rank
        self.mailbox = mailbox
        self.timeout_s = timeout_s
        self.traffic = Traffic()
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _send(self, dst: int, seq: int, payload) -> None:
        # fire and forget: the call returns once the argument is serialized; the peer's mailbox orders arrivals
        self.peers[dst].deliver.remote((seq, self.rank), payload)

    def _take(self, seq: int, src: int) -> torch.Tensor:
        return self.mailbox.take((seq, src), self.timeout_s)

    def _to_all(self, seq: int, t: torch.Tensor, op: str) -> None:
        ref = ray.put(_host(t))  # one copy in the object store, read by every peer
        for r in range(self.world):
            if r != self.rank:
                self._send(r, seq, ref)
        self.traffic.add(op, (self.world - 1) * nbytes(t))

    def allreduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t.clone()
        seq = self._next()
        self._to_all(seq, t, "allreduce")
        mine = t.detach().cpu()
        parts = [mine if r == self.rank else self._take(seq, r) for r in range(self.world)]
        out = parts[0].clone()
        for p in parts[1:]:  # rank order on every actor: the same bits everywhere
            out += p
        return out.to(t.device)

    def exchange(self, sends: dict[int, torch.Tensor], recv_shapes: dict[int, torch.Size]) -> PendingExchange:
        seq = self._next()
        device = next(iter(sends.values())).device if sends else torch.device("cpu")
        for peer in sorted(sends):
            self._send(peer, seq, _host(sends[peer]))
            self.traffic.add("exchange", nbytes(sends[peer]))
        return _MailboxPending(self, seq, sorted(recv_shapes), device)

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.world == 1:
            return t
        seq = self._next()
        if self.rank == src:
            self._to_all(seq, t, "broadcast")
            return t
        return self._take(seq, src).to(t.device)

    def gather_rows(self, W_local: torch.Tensor) -> torch.Tensor | None:
        if self.world == 1:
            return W_local
        seq = self._next()
        if self.rank != 0:
            self._send(0, seq, _host(W_local))
            self.traffic.add("gather", nbytes(W_local))
            return None
        return torch.cat([W_local.detach().cpu()] + [self._take(seq, r) for r in range(1, self.world)]).to(
            W_local.device)

    def barrier(self) -> None:
        self.allreduce_sum(torch.zeros(1))
