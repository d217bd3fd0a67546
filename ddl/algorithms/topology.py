"""Who averages with whom in DPSGD: mixing matrices of the neighbour average ``w̃_a = Σ_j M[a, j] w_j``
(docs/theory.md §7).

Every topology here is a *Cayley graph* of the cyclic grid ℤ_r × ℤ_c (n = r·c learners, learner a sits at row
a // c, column a % c): learner a averages uniformly over the learners at a fixed set of grid offsets from it,
``{(i + di) mod r, (j + dj) mod c}`` for (di, dj) in the offset set (which contains (0, 0): a learner keeps a
share of its own weights).  Offsets that coincide modulo the grid are counted once.  This one shape gives, for
free, what DPSGD needs and what the fast paths exploit:

* every row and every column of M sums to 1 (each learner is the neighbour of exactly as many learners as it
  has neighbours), so M is doubly stochastic and mixing preserves the average w̄;
* M is (block-)circulant, so its eigenvalues are the 2-D discrete Fourier transform of the offset weights
  (:meth:`Topology.eigenvalues`, O(n log n), checked against a dense eigen-solver in the tests), and mixing is a
  sum of shifted copies of the learner matrix (:mod:`ddl.algorithms.mixing`), O(n · degree · P).

The graphs (``TOPOLOGIES`` is the one registry; ``--topology`` accepts its keys):

``ring``
    the set {a−1, a, a+1}, weight 1/3 each (for n ≤ 3 the set has n members and the ring is the complete graph).
``torus``
    a 2-D torus on the r × c grid with r the largest divisor of n not above √n (as square as possible): the set
    {a, up, down, left, right}, weight 1/5 each; on a 2 × c grid up = down (weight 1/4 each of 4).  For a prime
    n the only grid is 1 × n and the torus *is* the ring: a training run refuses that request in one line
    (:func:`degenerate_request`; ask for the ring), the clock's cost model may still build it.
``exponential``
    the static exponential graph of Ying et al. (2021, "Exponential graph is provably efficient for
    decentralized deep training"): learner a averages itself and the learners a + 2^k (mod n),
    k = 0 … τ−1, τ = ⌈log₂ n⌉, weight 1/(τ+1) each.  We keep their *directed* graph (a receives from a + 2^k
    and sends to a − 2^k) rather than adding the reverse edges: it is the graph the literature's rates refer
    to, has half the degree, and is still doubly stochastic (circulant), though not symmetric.
``one-peer-exponential``
    its time-varying one-peer form (same paper): at step t learner a averages only with a + 2^(t mod τ),
    weight 1/2 each, so every learner sends and receives one row per step; the pattern repeats with period τ.
    For n a power of two the product over one period is exactly the uniform average.
``complete``
    every learner averages all learners, weight 1/n (DPSGD then equals SSGD; mixing is an all-reduce).

Spectral gap (``spectral_gap``): 1 − |λ₂| where |λ₂| is the second largest eigenvalue modulus of the mixing
over one period, i.e. of M for a static graph and of the product M(τ−1)···M(1)M(0) for a time-varying one (all
the matrices of a graph share the Fourier eigenvectors, so the product's eigenvalues are the products of theirs
and |λ₂| is its second singular value too).  Larger is faster consensus; 1 means one period reaches exact
consensus.  ``spectral_gap_per_step`` = 1 − |λ₂|^(1/period) puts time-varying and static graphs on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from ddl.errors import ConfigError

Offset = tuple[int, int]


@dataclass(frozen=True)
class Topology:
    """A (possibly time-varying) Cayley graph on the cyclic grid ℤ_rows × ℤ_cols with uniform weights.

    ``phases[p]`` holds the distinct offsets of step p (mod ``period``); ``n = rows · cols``.
    """

    name: str
    rows: int
    cols: int
    phases: tuple[tuple[Offset, ...], ...]

    def __post_init__(self) -> None:
        for p, offs in enumerate(self.phases):
            norm = [(di % self.rows, dj % self.cols) for di, dj in offs]
            if len(set(norm)) != len(norm) or (0, 0) not in norm:
                raise ValueError(f"{self.name}: phase {p} offsets must be distinct mod the grid and contain (0, 0)")

    # ---- the contract shared with the rest of ddl ------------------------------------------------------
    @property
    def n(self) -> int:
        return self.rows * self.cols

    @property
    def period(self) -> int:
        return len(self.phases)

    @property
    def time_varying(self) -> bool:
        return self.period > 1

    def offsets(self, step: int = 0) -> tuple[Offset, ...]:
        """Grid offsets (normalised to ``[0, rows) × [0, cols)``) learner a averages over at ``step``."""
        return tuple((di % self.rows, dj % self.cols) for di, dj in self.phases[step % self.period])

    def weight(self, step: int = 0) -> float:
        """The weight of every neighbour (uniform): 1 / degree."""
        return 1.0 / len(self.phases[step % self.period])

    def degree(self, step: int = 0) -> int:
        """Number of learners each learner averages over at ``step``, itself included."""
        return len(self.phases[step % self.period])

    def table(self, step: int = 0) -> torch.Tensor:
        """``[n, degree]`` long tensor: row a lists a's incoming neighbours (in offset order, self first)."""
        a = torch.arange(self.n)
        i, j = a // self.cols, a % self.cols
        cols = [((i + di) % self.rows) * self.cols + (j + dj) % self.cols for di, dj in self.offsets(step)]
        return torch.stack(cols, 1)

    def neighbours(self, a: int, step: int = 0) -> list[int]:
        """Sorted global indices of the learners whose weights learner ``a`` averages at ``step`` (a included)."""
        i, j = divmod(a, self.cols)
        return sorted(((i + di) % self.rows) * self.cols + (j + dj) % self.cols for di, dj in self.offsets(step))

    def matrix_at(self, step: int = 0) -> torch.Tensor:
        """Dense ``[n, n]`` float64 mixing matrix of ``step``: row a holds the weights a gives each learner."""
        m = torch.zeros(self.n, self.n, dtype=torch.float64)
        m.scatter_(1, self.table(step), self.weight(step))
        return m

    @property
    def matrix(self) -> torch.Tensor:
        """The mixing matrix of a static graph (``matrix_at(0)``)."""
        if self.time_varying:
            raise ValueError(f"{self.name} is time-varying: use matrix_at(step)")
        return self.matrix_at(0)

    @property
    def is_complete(self) -> bool:
        """Every learner averages all learners uniformly (w̃_a = w̄ at every step): mixing is an all-reduce."""
        return all(len(offs) == self.n for offs in self.phases)

    # ---- spectra -------------------------------------------------------------------------------------
    def eigenvalues(self, step: int = 0) -> torch.Tensor:
        """Eigenvalues of ``matrix_at(step)`` as a complex ``[rows, cols]`` grid (the 2-D DFT of its weights).

        For a circulant M with ``M[a, a + s] = c_s`` the Fourier vector ``v_a = ω^{a·k}`` gives
        ``(M v)_a = Σ_s c_s ω^{(a+s)·k} = v_a · Σ_s c_s ω^{s·k}``; in two dimensions the same per axis.
        """
        kernel = torch.zeros(self.rows, self.cols, dtype=torch.float64)
        for di, dj in self.offsets(step):
            kernel[di, dj] += self.weight(step)
        # Σ_s c_s ω^{+s·k} is n × the inverse DFT
        return torch.fft.ifft2(kernel) * self.n

    @cached_property
    def second_eigenvalue_modulus(self) -> float:
        """|λ₂| of the mixing over one period (see the module docstring); 0 for n = 1."""
        if self.n == 1:
            return 0.0
        lam = torch.ones(self.rows, self.cols, dtype=torch.complex128)
        for p in range(self.period):
            lam = lam * self.eigenvalues(p)
        mod = float(lam.abs().flatten()[1:].max())  # index 0 is the constant vector's eigenvalue, 1
        # an exact average (e.g. one period of the one-peer graph on 2^k learners) leaves only rounding behind
        return 0.0 if mod < 1e-12 else mod

    @property
    def spectral_gap(self) -> float:
        """1 − |λ₂| of the mixing over one period: how fast repeated mixing reaches consensus (1 = at once)."""
        return max(0.0, 1.0 - self.second_eigenvalue_modulus)

    @property
    def spectral_gap_per_step(self) -> float:
        """1 − |λ₂|^(1/period): the gap of one step on average, comparable across static and time-varying graphs."""
        return max(0.0, 1.0 - self.second_eigenvalue_modulus ** (1.0 / self.period))

    def describe(self) -> dict:
        """The facts a run directory records about its graph."""
        return {
            "name": self.name, "n": self.n, "grid": [self.rows, self.cols], "time_varying": self.time_varying,
            "period": self.period, "degree": [self.degree(p) for p in range(self.period)],
            "spectral_gap": self.spectral_gap, "spectral_gap_per_step": self.spectral_gap_per_step,
        }


def _distinct(offsets, rows: int, cols: int) -> tuple[Offset, ...]:
    """Offsets normalised mod the grid, duplicates dropped, first occurrence order kept."""
    seen: dict[Offset, None] = {}
    for di, dj in offsets:
        seen.setdefault((di % rows, dj % cols), None)
    return tuple(seen)


def ring(n: int) -> Topology:
    return Topology("ring", 1, n, (_distinct([(0, 0), (0, -1), (0, 1)], 1, n),))


def torus_shape(n: int) -> tuple[int, int]:
    """(r, c) with r·c = n and r the largest divisor of n not above √n (r = 1 for a prime n)."""
    r = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return r, n // r


def torus(n: int) -> Topology:
    r, c = torus_shape(n)
    return Topology("torus", r, c, (_distinct([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], r, c),))


def _hops(n: int) -> list[int]:
    """2^k for k = 0 … ⌈log₂ n⌉ − 1: the exponential graph's hop lengths (all below n, so distinct)."""
    return [2**k for k in range(math.ceil(math.log2(n)))] if n > 1 else []


def exponential(n: int) -> Topology:
    return Topology("exponential", 1, n, (_distinct([(0, 0)] + [(0, h) for h in _hops(n)], 1, n),))


def one_peer_exponential(n: int) -> Topology:
    phases = tuple(_distinct([(0, 0), (0, h)], 1, n) for h in _hops(n)) or (((0, 0),),)
    return Topology("one-peer-exponential", 1, n, phases)


def complete(n: int) -> Topology:
    return Topology("complete", 1, n, (tuple((0, j) for j in range(n)),))


#: The one list of topology names (``--topology`` choices): name → builder of an n-learner graph.
TOPOLOGIES: dict[str, Callable[[int], Topology]] = {
    "ring": ring,
    "torus": torus,
    "exponential": exponential,
    "one-peer-exponential": one_peer_exponential,
    "complete": complete,
}


def degenerate_request(name: str, n: int) -> str | None:
    """Why asking for topology ``name`` on ``n`` learners would silently give another graph (None when it would
    not): a torus of a prime n ≥ 2 has only the 1 × n grid, which is the ring."""
    if name == "torus" and n >= 2 and torus_shape(n)[0] == 1:
        return (f"--topology torus: n = {n} learners has no r × c grid with r, c ≥ 2 ({n} is prime), so the torus "
                "would be the 1 × n ring; ask for --topology ring, or a composite --learners")
    return None


def make_topology(name: str, n: int) -> Topology:
    if name not in TOPOLOGIES:
        raise ConfigError(f"--topology: unknown topology {name!r}; accepted: {', '.join(TOPOLOGIES)}")
    return TOPOLOGIES[name](n)
