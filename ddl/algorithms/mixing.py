"""Neighbour averaging w̃ = M w over learners spread across workers.

Every worker computes, from the topology and the block partition alone, which of its rows each peer needs
and which rows it needs (the *halo*), so a backend only has to move tensors.  The weighted sum runs over
neighbour slots in sorted global order on every backend, so a simulated and a distributed run do the same
arithmetic on the same numbers.
"""

from __future__ import annotations

import torch

from ddl.backends.base import Collective, PendingExchange
from ddl.topology import Topology


class Mixer:
    def __init__(self, topology: Topology, comm: Collective):
        if topology.n != comm.n:
            raise ValueError(f"topology has {topology.n} learners, the backend {comm.n}")
        self.topology = topology
        self.comm = comm
        # the complete graph is an all-reduce (w̃ = w̄); other graphs, a ring of 3 included, use the slot sum
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
        pos = {g: i for i, g in enumerate(avail)}
        deg = max(len(topology.neighbours(a)) for a in mine)
        idx = torch.zeros(len(mine), deg, dtype=torch.long)
        wts = torch.zeros(len(mine), deg, dtype=torch.float64)
        for i, a in enumerate(mine):
            for s, j in enumerate(topology.neighbours(a)):
                idx[i, s] = pos[j]
                wts[i, s] = topology.matrix[a, j]
        self.idx, self.wts = idx, wts
        self._local = {g: i for i, g in enumerate(mine)}

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
        idx, wts = self.idx.to(W.device), self.wts.to(device=W.device, dtype=W.dtype)
        out = wts[:, 0, None] * avail[idx[:, 0]]
        for s in range(1, idx.shape[1]):
            out.add_(wts[:, s, None] * avail[idx[:, s]])
        return out
