"""Mixing matrices for decentralized averaging, as plain functions returning frozen dataclasses.

DPSGD's neighbour average is ``w̃_a = Σ_j M[a, j] w_j`` with a symmetric doubly-stochastic ``M``
(MATH.md §7).  The ring averages the *set* {a−1, a, a+1} uniformly, so for n ≤ 3 it coincides with the
complete graph (n = 2: both learners; n = 3: all three).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddl.errors import ConfigError


@dataclass(frozen=True)
class Topology:
    """A mixing matrix with its neighbour lists (sorted global learner indices) and weights."""

    name: str
    matrix: torch.Tensor  # [n, n], float64

    @property
    def n(self) -> int:
        return self.matrix.shape[0]

    def neighbours(self, a: int) -> list[int]:
        return torch.nonzero(self.matrix[a]).flatten().tolist()

    @property
    def is_complete(self) -> bool:
        """Every learner averages all learners uniformly (w̃_a = w̄): mixing is an all-reduce."""
        return bool(torch.allclose(self.matrix, torch.full_like(self.matrix, 1.0 / self.n)))

    @property
    def spectral_gap(self) -> float:
        """1 − |λ₂| of M (λ sorted by magnitude): how fast repeated mixing reaches consensus."""
        ev = torch.linalg.eigvalsh(self.matrix).abs().sort(descending=True).values
        return float(1.0 - ev[1]) if self.n > 1 else 1.0


def ring(n: int) -> Topology:
    m = torch.zeros(n, n, dtype=torch.float64)
    for a in range(n):
        nb = sorted({(a - 1) % n, a, (a + 1) % n})
        m[a, nb] = 1.0 / len(nb)
    return Topology("ring", m)


def complete(n: int) -> Topology:
    return Topology("complete", torch.full((n, n), 1.0 / n, dtype=torch.float64))


TOPOLOGIES = {"ring": ring, "complete": complete}


def make_topology(name: str, n: int) -> Topology:
    if name not in TOPOLOGIES:
        raise ConfigError(f"--topology: unknown topology {name!r}; accepted: {', '.join(TOPOLOGIES)}")
    return TOPOLOGIES[name](n)
