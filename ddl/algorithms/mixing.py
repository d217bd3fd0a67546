"""Neighbour averaging w̃ = M w over learners spread across workers.

Every worker computes, from the topology and the block partition alone, which of its rows each peer needs
and which rows it needs (the *halo*), so a backend only has to move tensors.  Every backend then forms
w̃ = M[mine, available] @ W[available] (one small dense product), so a simulated and a distributed run agree
to rounding.
"""

from __future__ import annotations

import torch

from ddl.comm.base import Collective, PendingExchange
from ddl.topology import Topology


class Mixer:
    def __init__(self, topology: Topology, comm: Collective):
        if topology.n != comm.n:
            raise ValueError(f"topology has {topology.n} learners, the backend {comm.n}")
        self.topology = topology
        self.comm = comm
        # the complete graph is an all-reduce (w̃ = w̄); other graphs, a ring of 3 included, use the mixing product
        self.complete = topology.name == "complete"
        mine = comm.learners
        mine_set = set(mine)
        need = sorted({j for a in mine for j in topology.neighbours(a)} - mine_set)
        # rows each peer needs from me, and rows I receive from each peer (both in sorted global order)
        self.recv: dict[int, list[int]] = {}
        for j in need:
            self.recv.setdefault(comm.owner(j), []).append(j)
        self.send: dict[int, list[int]] = {}
        for b in range(comm.n):
            if b in mine_set:
                continue
            for j in topology.neighbours(b):
                if j in mine_set:
                    lst = self.send.setdefault(comm.owner(b), [])
                    if j not in lst:
                        lst.append(j)
        for lst in self.send.values():
            lst.sort()
        avail = mine + [j for r in sorted(self.recv) for j in self.recv[r]]
        # rows: my learners; columns: the rows available here (mine, then the halo in receive order)
        self.weights = topology.matrix[mine][:, avail].clone()

    def start(self, W: torch.Tensor) -> PendingExchange | None:
        """Begin sending my rows to the peers that need them."""
        if self.complete:
            return None
        first = self.comm.learners[0]
        sends = {r: W[[j - first for j in rows]].contiguous() for r, rows in self.send.items()}
        shapes = {r: torch.Size((len(rows), W.shape[1])) for r, rows in self.recv.items()}
        return self.comm.exchange(sends, shapes)

    def finish(self, W: torch.Tensor, pending: PendingExchange | None) -> torch.Tensor:
        """w̃ for my learners, [m, P] (a new tensor)."""
        if self.complete:
            w_bar = self.comm.allreduce_sum(W.sum(0)) / self.comm.n
            return w_bar.expand_as(W).clone()
        got = pending.wait() if pending is not None else {}
        avail = torch.cat([W] + [got[r] for r in sorted(self.recv)]) if self.recv else W
        # one small dense product: for the sizes simulated here it beats gathering neighbour rows
        return self._on(W) @ avail

    def _on(self, W: torch.Tensor) -> torch.Tensor:
        key = (W.device, W.dtype)
        if getattr(self, "_cache_key", None) != key:
            self._cache = self.weights.to(device=W.device, dtype=W.dtype)
            self._cache_key = key
        return self._cache
