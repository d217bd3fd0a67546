"""Sparse mixing against the dense product ``M(t) @ W`` for every topology, one worker or K worker blocks,
static and time-varying graphs; the exchange moves exactly the rows each neighbour needs."""

import pytest
import torch

from ddl.algorithms import Mixer, mixing
from ddl.algorithms.topology import TOPOLOGIES, make_topology
from ddl.comm import Collective, PendingExchange, SimCollective


class _Posted(PendingExchange):
    def __init__(self, group, me, peers):
        super().__init__()
        self.group, self.me, self.peers = group, me, peers

    def wait(self):
        return {p: self.group.mailbox.pop((p, self.me)) for p in self.peers}


class BlockGroup:
    """K in-process workers holding contiguous learner blocks; every sent row is recorded (the traffic oracle).

    All workers :meth:`Mixer.start` before any :meth:`Mixer.finish`, as ranks do concurrently.
    """

    def __init__(self, n: int, world: int):
        self.mailbox: dict[tuple[int, int], torch.Tensor] = {}
        self.sent: list[tuple[int, int, torch.Tensor]] = []  # (src, dst, rows)
        self.members = [_Member(self, r, world, n) for r in range(world)]


class _Member(Collective):
    def __init__(self, group, rank, world, n):
        self.group, self.rank, self.world, self.n = group, rank, world, n

    def allreduce_sum(self, t):
        raise AssertionError("a sparse graph mixes without an all-reduce")

    def exchange(self, sends, recv_shapes):
        for peer, t in sends.items():
            assert (self.rank, peer) not in self.group.mailbox
            self.group.mailbox[(self.rank, peer)] = t.clone()
            self.group.sent.append((self.rank, peer, t.clone()))
        return _Posted(self.group, self.rank, sorted(recv_shapes))


def mix_blocks(topology, W, world, step, group=None):
    """Mixed rows of all learners from K workers, via start/finish on each worker's block."""
    n = W.shape[0]
    group = group or BlockGroup(n, world)
    mixers = [Mixer(topology, c) for c in group.members]
    m = n // world
    pend = [mx.start(W[r * m : (r + 1) * m].clone(), step) for r, mx in enumerate(mixers)]
    out = [mx.finish(W[r * m : (r + 1) * m], pend[r], step) for r, mx in enumerate(mixers)]
    assert not group.mailbox, "every posted row was received"
    return torch.cat(out)


CASES = [(n, world) for n in (1, 2, 3, 4, 6, 8, 9, 12, 16) for world in (1, 2, 3, 4, 8) if n % world == 0]


@pytest.mark.parametrize("band_learners", [None, 1, 3])
@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_sparse_mixing_equals_dense_product(name, band_learners, monkeypatch):
    """Every topology, one worker (shift path, whole or in bands of 1 or 3 learners / grid rows) and K blocks
    (gather path), every phase of the period."""
    if band_learners is not None:
        monkeypatch.setattr(mixing, "_BAND_BYTES", band_learners * 5 * 8)  # rows of 5 float64 values
    for n, world in CASES:
        if band_learners is not None and world > 1:
            continue
        t = make_topology(name, n)
        W = torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(10 * n + world))
        for step in range(t.period + 1):
            dense = t.matrix_at(step) @ W
            if world == 1:
                mx = Mixer(t, SimCollective(n))
                got = mx.finish(W, mx.start(W, step), step)
            elif t.is_complete:
                continue  # an all-reduce: the real transports' tests cover it
            else:
                got = mix_blocks(t, W, world, step)
            assert torch.allclose(got, dense, atol=1e-13), (name, n, world, step)


@pytest.mark.parametrize("name", [k for k in TOPOLOGIES if k != "complete"])
def test_exchange_sends_exactly_the_rows_each_neighbour_needs(name):
    """Rows sent from worker r to worker q at step t = my rows with a non-zero weight in q's rows of M(t)."""
    for n, world in [(8, 2), (8, 4), (12, 3), (16, 4), (16, 8), (9, 3)]:
        t = make_topology(name, n)
        m = n // world
        W = torch.arange(n, dtype=torch.float64).unsqueeze(1).repeat(1, 3)  # row j holds j: identifies rows
        for step in range(t.period + 1):
            group = BlockGroup(n, world)
            mix_blocks(t, W, world, step, group)
            M = t.matrix_at(step)
            expect = {}
            for q in range(world):
                for r in range(world):
                    if q != r:
                        block = M[q * m : (q + 1) * m, r * m : (r + 1) * m]
                        rows = (torch.nonzero(block.sum(0)).flatten() + r * m).tolist()
                        if rows:
                            expect[(r, q)] = rows
            got = {(src, dst): rows[:, 0].long().tolist() for src, dst, rows in group.sent}
            assert got == expect, (name, n, world, step)


def test_one_peer_sends_one_row_per_learner_per_step():
    """One learner per worker on the one-peer graph: each worker sends and receives one row at every step,
    to the peer of that step (a − 2^(t mod 3) receives from a)."""
    n = 8
    t = make_topology("one-peer-exponential", n)
    W = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    for step in range(6):
        group = BlockGroup(n, n)
        mix_blocks(t, W, n, step, group)
        hop = 2 ** (step % 3)
        assert sorted((s, d) for s, d, _ in group.sent) == sorted((a, (a - hop) % n) for a in range(n))
        assert all(rows.shape[0] == 1 for *_, rows in group.sent)


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_accumulate_and_own_row_weight(name):
    """``out += M W + c·W`` and ``out = fill + M W + c·W`` (DPSGD's fused updates) on both paths."""
    n = 12
    t = make_topology(name, n)
    W = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for step in range(t.period):
        expect = base + t.matrix_at(step) @ W - 0.3 * W
        mx = Mixer(t, SimCollective(n))
        out = base.clone()
        assert mx.finish(W, mx.start(W, step), step, out=out, accumulate=True, self_extra=-0.3) is out
        assert torch.allclose(out, expect, atol=1e-13)
        # fill: the starting rows written band by band (every band exactly once, in bands of 1 learner too)
        for band_bytes in (mixing._BAND_BYTES, 4 * 8):
            calls = []

            def fill(lo, hi, rows, calls=calls):
                calls.append((lo, hi))
                rows.copy_(base[lo:hi])

            mixing._BAND_BYTES, saved = band_bytes, mixing._BAND_BYTES
            try:
                got = mx.finish(W, mx.start(W, step), step, out=torch.full_like(W, float("nan")), fill=fill,
                                self_extra=-0.3)
            finally:
                mixing._BAND_BYTES = saved
            assert torch.allclose(got, expect, atol=1e-13)
            covered = sorted(i for lo, hi in calls for i in range(lo, hi))
            assert covered == list(range(n)), calls
        if not t.is_complete:
            group = BlockGroup(n, 3)
            mixers = [Mixer(t, c) for c in group.members]
            pend = [mx.start(W[r * 4 : (r + 1) * 4], step) for r, mx in enumerate(mixers)]
            outs = [base[r * 4 : (r + 1) * 4].clone() for r in range(3)]
            for r, mx in enumerate(mixers):
                mx.finish(W[r * 4 : (r + 1) * 4], pend[r], step, out=outs[r], accumulate=True, self_extra=-0.3)
            assert torch.allclose(torch.cat(outs), expect, atol=1e-13)


@pytest.mark.parametrize("n", [2, 5, 8, 16])
def test_mixing_preserves_average(n):
    W = torch.randn(n, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    for name in TOPOLOGIES:
        t = make_topology(name, n)
        mixer = Mixer(t, SimCollective(n))
        for step in range(t.period):
            assert torch.allclose(mixer.finish(W, mixer.start(W, step), step).mean(0), W.mean(0), atol=1e-12)


def test_ring_of_1024_mixes_without_a_dense_matrix():
    """At n = 1 024 the plan is O(n · degree): no n × n tensor is built (the dense oracle is checked on rows)."""
    n = 1024
    for name in ("ring", "torus", "exponential", "one-peer-exponential"):
        t = make_topology(name, n)
        mx = Mixer(t, SimCollective(n))
        assert all(p.index.numel() <= n * 10 for p in mx.plans)
        W = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        got = mx.finish(W, mx.start(W, 1), 1)
        for a in (0, 1, 31, 32, 500, 1023):
            nb = t.neighbours(a, 1)
            assert torch.allclose(got[a], W[nb].mean(0), atol=1e-13), (name, a)
