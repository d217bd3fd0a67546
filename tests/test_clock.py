"""The simulated clock: closed forms, and the vectorized recursion against a discrete-event oracle."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
import torch

from ddl.algorithms import Communication
from ddl.algorithms.topology import make_topology
from ddl.measure.clock import Clock, ClockError, ComputeModel, Network, model_message_bytes, neighbour_table, simulate

NET = Network(latency_s=20e-6, bandwidth_Bps=1e9)  # 1 GB/s: a 1 MB model takes 1.02 ms per message
MODEL_BYTES = 1_000_000


class HandRing:
    """A ring written out by hand (incoming neighbours a−1, a, a+1), independent of ddl.algorithms.topology.

    ``is_complete`` only declares what the clock asks (the clock must take the topology's word for it)."""

    period = 1

    def __init__(self, n: int, name: str = "ring", is_complete: bool = False):
        self.n, self.name, self.is_complete = n, name, is_complete

    def neighbours(self, a: int, step: int = 0) -> list[int]:
        return sorted({(a - 1) % self.n, a, (a + 1) % self.n})


class AlternatingPeer:
    """A time-varying graph: at even steps learner a hears from a+1, at odd steps from a+3 (one peer each)."""

    name = "alternating"
    is_complete = False
    period = None  # not declared periodic: the clock rebuilds its tables every step

    def __init__(self, n: int):
        self.n = n

    def neighbours(self, a: int, step: int = 0) -> list[int]:
        return [a, (a + (1 if step % 2 == 0 else 3)) % self.n]


class AlternatingWithPeriod(AlternatingPeer):
    """The same graph declaring its period, so the clock caches one table per phase."""

    period = 2


class Uneven:
    """A static directed graph on 7 learners with unequal in- and out-degrees (learner 0 feeds everyone)."""

    name = "uneven"
    n = 7
    is_complete = False
    period = 1
    _incoming = {0: [1], 1: [0], 2: [0, 1], 3: [0, 2], 4: [0], 5: [0, 4, 6], 6: [0, 3]}

    def neighbours(self, a: int, step: int = 0) -> list[int]:
        return sorted([a, *self._incoming[a]])


# ---- the oracle: every message as an event ---------------------------------------------------------------


def event_oracle_dpsgd(c: np.ndarray, topo, overlap: bool, shared_nic: bool = True) -> np.ndarray:
    """Start times [steps+1, n] from a discrete-event simulation of DPSGD's messages.

    Learner a starts step t+1 when its gradient of step t is done and it has received w_j(t) from every
    incoming neighbour j ≠ a.  w_j(t) leaves j when j starts step t (overlap) or when its gradient is done; it
    takes α + B/β, or with a shared link α + k·B/β where k is the larger of the number of messages j sends and
    a receives in that step (fair sharing).
    """
    steps, n = c.shape
    start = np.full((steps + 1, n), np.nan)
    received = [[set() for _ in range(n)] for _ in range(steps)]
    grad_done = [[False] * n for _ in range(steps)]
    queue: list = []
    seq = itertools.count()

    def incoming(a, t):
        return {j for j in topo.neighbours(a, t) if j != a}

    def message_s(j, b, t):
        sends = sum(j in incoming(x, t) for x in range(n))
        k = max(sends, len(incoming(b, t))) if shared_nic else 1
        return NET.latency_s + k * MODEL_BYTES / NET.bandwidth_Bps

    def send(j, t, at):
        for b in range(n):
            if j in incoming(b, t):
                heapq.heappush(queue, (at + message_s(j, b, t), next(seq), "msg", j, b, t))

    def begin(a, t, at):
        start[t, a] = at
        if t == steps:
            return
        heapq.heappush(queue, (at + c[t, a], next(seq), "grad", a, a, t))
        if overlap:
            send(a, t, at)

    def maybe_start(a, t, now):
        if grad_done[t][a] and received[t][a] >= incoming(a, t) and np.isnan(start[t + 1, a]):
            begin(a, t + 1, now)

    for a in range(n):
        begin(a, 0, 0.0)
    while queue:
        now, _, kind, j, a, t = heapq.heappop(queue)
        if kind == "grad":
            grad_done[t][a] = True
            if not overlap:
                send(a, t, now)
        else:
            received[t][a].add(j)
        maybe_start(a, t, now)
    return start


def event_oracle_ssgd(c: np.ndarray, chunk_s: float) -> np.ndarray:
    """Start times [steps+1, n] from the messages of a ring all-reduce, chunk by chunk.

    In round r (0 … 2n−3) learner i sends one chunk to i+1; it may send round 0 once its gradient is done and
    round r once it has received round r−1 from i−1 (and sent its own round r−1).  Its step ends when it has
    received the last round.  No barrier: a learner near the slowest one in the ring may finish earlier.
    """
    steps, n = c.shape
    start = np.zeros((steps + 1, n))
    rounds = 2 * (n - 1)
    for t in range(steps):
        grad = start[t] + c[t]
        sent = np.full((rounds, n), np.nan)
        for r in range(rounds):
            for i in range(n):
                ready = grad[i] if r == 0 else max(sent[r - 1, i], sent[r - 1, (i - 1) % n] + chunk_s)
                sent[r, i] = ready
        start[t + 1] = [sent[rounds - 1, (i - 1) % n] + chunk_s for i in range(n)] if n > 1 else grad
    return start


def history(clock: Clock, c: np.ndarray) -> np.ndarray:
    return np.vstack([np.zeros((1, clock.n)), clock.advance_with(c, history=True)])


# ---- closed forms ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [5e-3, 0.5e-3])  # compute longer / shorter than one message
def test_no_spread_every_step_costs_compute_plus_communication(base):
    n, steps = 8, 30
    cm = ComputeModel(base)
    msg = NET.latency_s + 2 * MODEL_BYTES / NET.bandwidth_Bps  # two neighbours share the link
    allreduce = 2 * (n - 1) * (NET.latency_s + MODEL_BYTES / n / NET.bandwidth_Bps)
    ss = Clock("ssgd", n, NET, MODEL_BYTES, cm).advance(steps)
    np.testing.assert_allclose(np.diff(ss, prepend=0.0), base + allreduce, rtol=1e-12)
    dp = Clock("dpsgd", n, NET, MODEL_BYTES, cm, HandRing(n)).advance(steps)
    np.testing.assert_allclose(np.diff(dp, prepend=0.0), max(base, msg), rtol=1e-12)
    dp_seq = Clock("dpsgd", n, NET, MODEL_BYTES, cm, HandRing(n), overlap=False).advance(steps)
    np.testing.assert_allclose(np.diff(dp_seq, prepend=0.0), base + msg, rtol=1e-12)
    own_links = Clock("dpsgd", n, NET, MODEL_BYTES, cm, HandRing(n), overlap=False, shared_nic=False).advance(steps)
    np.testing.assert_allclose(np.diff(own_links, prepend=0.0), base + NET.message_s(MODEL_BYTES), rtol=1e-12)


def test_one_permanent_straggler_sets_both_rates():
    """SSGD waits for the straggler every step.  On a ring DPSGD cannot escape it either: learner a at distance d
    can be at most d steps ahead of the straggler (each hop lets a learner run one step ahead), so in the long run
    everyone advances at the straggler's rate — the lead is bounded, the rate is not."""
    n, steps, base, slow = 8, 200, 4e-3, 3.0
    c = np.full((steps, n), base)
    c[:, 5] *= slow
    msg = NET.latency_s + 2 * MODEL_BYTES / NET.bandwidth_Bps
    ss = Clock("ssgd", n, NET, MODEL_BYTES).advance_with(c)
    np.testing.assert_allclose(np.diff(ss), slow * base + NET.ring_allreduce_s(n, MODEL_BYTES), rtol=1e-12)
    T = history(Clock("dpsgd", n, NET, MODEL_BYTES, topology=HandRing(n)), c)
    rate = np.diff(T[-20:], axis=0)
    np.testing.assert_allclose(rate, slow * base, rtol=1e-9)
    # steady state: learner a at ring distance d starts each step d·(slow·base − message) before the straggler,
    # i.e. it runs d steps ahead, held back one message per hop
    dist = np.minimum((np.arange(n) - 5) % n, (5 - np.arange(n)) % n)
    np.testing.assert_allclose(T[-1, 5] - T[-1], dist * (slow * base - msg), rtol=1e-9, atol=1e-15)


def test_transient_stragglers_are_absorbed_by_dpsgd():
    """Three one-step stragglers far apart in the ring and in time: SSGD pays each delay, DPSGD pays one (the
    slack base − message shrinks a delay by that much per hop, so the waves never meet)."""
    n, steps, base, delay = 48, 120, 4e-3, 12e-3
    c = np.full((steps, n), base)
    for learner, step in ((3, 10), (19, 50), (35, 90)):
        c[step, learner] += delay
    ss = Clock("ssgd", n, NET, MODEL_BYTES).advance_with(c)
    assert ss[-1] == pytest.approx(steps * (base + NET.ring_allreduce_s(n, MODEL_BYTES)) + 3 * delay, rel=1e-12)
    dp = Clock("dpsgd", n, NET, MODEL_BYTES, topology=HandRing(n)).advance_with(c)
    assert NET.latency_s + 2 * MODEL_BYTES / NET.bandwidth_Bps < base
    assert dp[-1] == pytest.approx(steps * base + delay, rel=1e-12)


def test_complete_graph_mixes_by_all_reduce_like_ssgd():
    n = 6
    cm = ComputeModel(2e-3, jitter=0.3, straggler_prob=0.1, straggler_slowdown=4.0)
    ss = simulate("ssgd", n, 50, cm, NET, MODEL_BYTES, seed=3)
    dp = simulate("dpsgd", n, 50, cm, NET, MODEL_BYTES, HandRing(n, is_complete=True), seed=3)
    assert dp == pytest.approx(ss, rel=1e-12)
    # the topology's own answer decides, not its name
    assert simulate("dpsgd", n, 50, cm, NET, MODEL_BYTES, HandRing(n, name="complete"), seed=3) != pytest.approx(ss)
    assert make_topology("complete", n).is_complete and not make_topology("ring", n).is_complete


# ---- the recursion against the event oracle --------------------------------------------------------------


@pytest.mark.parametrize("shared_nic", [True, False])
@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("topo_kind", ["ring", "alternating", "alternating-period", "uneven"])
def test_dpsgd_recursion_matches_event_simulation(overlap, topo_kind, shared_nic):
    n, steps = 7, 25
    rng = np.random.default_rng(11)
    c = 1e-3 * np.exp(rng.normal(0, 0.8, (steps, n)))  # wide spread so that messages and compute both bind
    topo = {"ring": HandRing(n), "alternating": AlternatingPeer(n), "alternating-period": AlternatingWithPeriod(n),
            "uneven": Uneven()}[topo_kind]
    want = event_oracle_dpsgd(c, topo, overlap, shared_nic)
    got = history(Clock("dpsgd", n, NET, MODEL_BYTES, topology=topo, overlap=overlap, shared_nic=shared_nic), c)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_dpsgd_on_the_projects_ring_matches_event_simulation():
    n, steps = 9, 20
    c = 1e-3 * np.exp(np.random.default_rng(2).normal(0, 0.5, (steps, n)))
    topo = make_topology("ring", n)
    want = event_oracle_dpsgd(c, HandRing(n), True)
    np.testing.assert_allclose(history(Clock("dpsgd", n, NET, MODEL_BYTES, topology=topo), c), want, rtol=1e-12)


def test_ssgd_all_reduce_against_chunk_messages():
    """With equal compute across learners the barrier formula is exact; with spread it is an upper bound that
    overestimates by at most (n−1) chunk messages per step (a learner downstream of the slowest one finishes
    its last rounds earlier)."""
    n, steps = 5, 15
    chunk = NET.message_s(MODEL_BYTES / n)
    rng = np.random.default_rng(4)
    equal = np.repeat(1e-3 * np.exp(rng.normal(0, 0.5, (steps, 1))), n, axis=1)
    want = event_oracle_ssgd(equal, chunk)
    np.testing.assert_allclose(history(Clock("ssgd", n, NET, MODEL_BYTES), equal), want, rtol=1e-12)
    spread = 1e-3 * np.exp(rng.normal(0, 0.5, (steps, n)))
    oracle = event_oracle_ssgd(spread, chunk)
    model = history(Clock("ssgd", n, NET, MODEL_BYTES), spread)
    gap = model - oracle
    assert (gap >= -1e-15).all()
    assert (gap <= np.arange(steps + 1)[:, None] * (n - 1) * chunk + 1e-15).all()
    assert gap[-1].max() > 0  # the bound is not an identity on this input


# ---- the compute sampler and the plumbing ----------------------------------------------------------------


def test_compute_times_are_seeded_chunk_invariant_and_leave_training_streams_alone():
    cm = ComputeModel(1e-3, jitter=0.2, straggler_prob=0.1, straggler_slowdown=5.0)
    torch.manual_seed(0)
    np.random.seed(0)
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    a = cm.sampler(6, seed=7).draw(40)
    s = cm.sampler(6, seed=7)
    b = np.vstack([s.draw(15), s.draw(25)])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cm.sampler(6, seed=8).draw(40))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)


def test_jitter_has_mean_one_and_stragglers_their_probability():
    cm = ComputeModel(2e-3, jitter=0.3, straggler_prob=0.05, straggler_slowdown=4.0)
    c = cm.sampler(100, seed=0).draw(2000)
    assert c.mean() == pytest.approx(2e-3 * (1 + 0.05 * 3), rel=0.02)
    plain = ComputeModel(2e-3, jitter=0.3).sampler(100, seed=0).draw(2000)
    assert (c / plain > 3.99).mean() == pytest.approx(0.05, abs=0.005)


def test_advance_in_pieces_equals_advance_at_once():
    cm = ComputeModel(1e-3, jitter=0.2, straggler_prob=0.05, straggler_slowdown=3.0)
    one = Clock("dpsgd", 16, NET, MODEL_BYTES, cm, HandRing(16), seed=5)
    one.advance(100)
    two = Clock("dpsgd", 16, NET, MODEL_BYTES, cm, HandRing(16), seed=5)
    two.advance(33)
    two.advance(67)
    assert two.now == one.now and two.step == 100


def test_neighbour_table_drops_self_and_pads():
    idx, valid = neighbour_table(HandRing(5))
    assert [sorted(idx[a][valid[a]].tolist()) for a in range(5)] == [[1, 4], [0, 2], [1, 3], [2, 4], [0, 3]]


def test_message_sizes_and_bad_parameters():
    assert model_message_bytes(1000, "float32") == 4000 and model_message_bytes(1000, "float64") == 8000
    assert Network.from_units(50, 10).message_s(1.25e9) == pytest.approx(1 + 50e-6)
    assert Network().ring_allreduce_s(1, 1e6) == 0.0
    with pytest.raises(ClockError, match="--straggler-prob"):
        ComputeModel(1e-3, straggler_prob=1.5)
    with pytest.raises(ClockError, match="--bandwidth-gbps"):
        Network.from_units(50, 0)
    with pytest.raises(ClockError, match="topology"):
        Clock("dpsgd", 4, NET, MODEL_BYTES)


# ---- the clock asks the algorithm's declaration -----------------------------------------------------------


def test_clock_costs_follow_the_declaration_not_the_name():
    """A declaration equal to SSGD's costs what SSGD costs; one equal to DPSGD's what DPSGD costs."""
    n, steps = 6, 12
    c = 1e-3 * np.exp(np.random.default_rng(5).normal(0, 0.4, (steps, n)))
    allreduce = Communication(gradient_allreduce=True)
    gossip = Communication(neighbour_mixing=True)
    np.testing.assert_array_equal(history(Clock(allreduce, n, NET, MODEL_BYTES), c),
                                  history(Clock("ssgd", n, NET, MODEL_BYTES), c))
    np.testing.assert_array_equal(history(Clock(gossip, n, NET, MODEL_BYTES, topology=HandRing(n)), c),
                                  history(Clock("dpsgd", n, NET, MODEL_BYTES, topology=HandRing(n)), c))


def test_periodic_global_average_and_silent_steps_closed_form():
    """Local steps send nothing (T_a advances by a's own compute); every H-th step ends with a barrier and a ring
    all-reduce of the weights — written out by hand for 3 learners."""
    n, H = 3, 2
    c = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 1.0], [2.0, 2.0, 2.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) * 1e-3
    ar = NET.ring_allreduce_s(n, MODEL_BYTES)
    T1 = c[0]
    T2 = np.full(n, (T1 + c[1]).max() + ar)
    T3 = T2 + c[2]
    T4 = np.full(n, (T3 + c[3]).max() + ar)
    T5 = T4 + c[4]
    want = np.vstack([np.zeros(n), T1, T2, T3, T4, T5])
    local = Communication(global_average_every=H)
    np.testing.assert_allclose(history(Clock(local, n, NET, MODEL_BYTES), c), want, rtol=1e-12)
    # a global average moves whole models whatever an algorithm's (neighbour) messages weigh
    quarter = Communication(global_average_every=H, message_fraction=0.25)
    got = history(Clock(quarter, n, NET, MODEL_BYTES), c)
    assert got[2, 0] == pytest.approx((T1 + c[1]).max() + ar, rel=1e-12)


def _ring4_mix(T, c, nbytes):
    """One overlapped mixing step on the hand-written ring of 4 (each learner sends to and hears from 2
    neighbours over its shared link: α + 2·bytes/β)."""
    msg = NET.latency_s + 2 * nbytes / NET.bandwidth_Bps
    arrive = np.array([max(T[(a - 1) % 4], T[(a + 1) % 4]) + msg for a in range(4)])
    return np.maximum(T + c, arrive)


def test_new_algorithms_priced_from_their_declarations_closed_form():
    """Gossip-PGA: gossip, and every H-th step a barrier + all-reduce instead; gradient tracking: two rows per
    neighbour per step (twice the bytes, one latency); CHOCO: messages of the compressed size.  Written out by
    hand on a ring of 4 with H = 2."""
    from ddl.algorithms import communication_of
    from ddl.config import TrainConfig

    n, H = 4, 2
    c = np.array([[1.0, 2.0, 3.0, 1.5], [3.0, 1.0, 1.0, 2.0], [2.0, 2.0, 2.0, 4.0], [1.0, 5.0, 1.0, 1.0]]) * 1e-3
    ar = NET.ring_allreduce_s(n, MODEL_BYTES)
    ring = HandRing(n)

    pga = communication_of("gossip_pga", TrainConfig(algo="gossip_pga", period=H))
    T1 = _ring4_mix(np.zeros(n), c[0], MODEL_BYTES)
    T2 = np.full(n, (T1 + c[1]).max() + ar)
    T3 = _ring4_mix(T2, c[2], MODEL_BYTES)
    T4 = np.full(n, (T3 + c[3]).max() + ar)
    np.testing.assert_allclose(history(Clock(pga, n, NET, MODEL_BYTES, topology=ring), c),
                               np.vstack([np.zeros(n), T1, T2, T3, T4]), rtol=1e-12)

    gt = communication_of("gradient_tracking", TrainConfig(algo="gradient_tracking"))
    assert gt.exchanges_per_step == 2
    T, want = np.zeros(n), [np.zeros(n)]
    for row in c:
        T = _ring4_mix(T, row, 2 * MODEL_BYTES)
        want.append(T)
    np.testing.assert_allclose(history(Clock(gt, n, NET, MODEL_BYTES, topology=ring), c), np.vstack(want),
                               rtol=1e-12)

    # top-k of 10 % in float32: values + 32-bit indices = 20 % of the dense bytes; qsgd at r = 1/8: 4 bits
    for compressor, ratio, fraction in (("topk", 0.1, 0.2), ("qsgd", 0.125, 0.125), ("none", 1.0, 1.0)):
        choco = communication_of("choco", TrainConfig(algo="choco", compressor=compressor, compress_ratio=ratio))
        assert choco.message_fraction == pytest.approx(fraction)
        T, want = np.zeros(n), [np.zeros(n)]
        for row in c:
            T = _ring4_mix(T, row, fraction * MODEL_BYTES)
            want.append(T)
        np.testing.assert_allclose(history(Clock(choco, n, NET, MODEL_BYTES, topology=ring), c), np.vstack(want),
                                   rtol=1e-12)

    # local SGD: silent steps, a barrier + all-reduce every H-th
    local = communication_of("local_sgd", TrainConfig(algo="local_sgd", period=H))
    assert local == Communication(global_average_every=H)


def test_an_unmodelled_pattern_or_unknown_algorithm_is_an_error():
    with pytest.raises(ClockError, match="asynchronous"):
        Clock(Communication(neighbour_mixing=True, synchronous=False), 4, NET, MODEL_BYTES, topology=HandRing(4))
    with pytest.raises(ClockError, match="subset of the neighbours"):
        Clock(Communication(neighbour_mixing=True, neighbours_per_step=1), 4, NET, MODEL_BYTES, topology=HandRing(4))
    with pytest.raises(ClockError, match="--algo"):
        Clock("no-such-algorithm", 4, NET, MODEL_BYTES)


def test_run_clock_refuses_an_algorithm_it_cannot_model(monkeypatch, small_cfg):
    """An algorithm the clock does not model makes the run's clock an error, never a run silently unstamped."""
    from ddl import algorithms
    from ddl.measure.clock import RunClock

    class Async(algorithms.DPSGD):
        name = "async-test"
        communication = Communication(neighbour_mixing=True, synchronous=False)

    monkeypatch.setitem(algorithms.ALGORITHMS, Async.name, Async)
    cfg = small_cfg(algo=Async.name, learners=4)
    assert RunClock.applies(cfg)
    with pytest.raises(ClockError, match="asynchronous"):
        RunClock(cfg, 100, make_topology("ring", 4), 4)


# ---- the clock in a training run -------------------------------------------------------------------------


def test_training_run_is_stamped_with_the_clock_and_its_weights_do_not_change(small_cfg):
    import json

    from ddl.loop.train import train
    from ddl.rundir.layout import load_run

    kw = dict(algo="dpsgd", learners=4, batch_size=10, epochs=2, seed=4, compute_ms=3.0, jitter=0.2,
              straggler_prob=0.1, straggler_slowdown=4.0, latency_us=30.0, bandwidth_gbps=25.0)
    res = train(small_cfg(name="on", **kw))
    off = train(small_cfg(name="off", clock=False, **kw))
    w_on = torch.load(res.out / "checkpoints" / "learners.pt")["weights"]
    w_off = torch.load(off.out / "checkpoints" / "learners.pt")["weights"]
    assert torch.equal(w_on, w_off)
    assert all("sim_time_s" not in r for r in load_run(off.out).metrics())
    recs = load_run(res.out).metrics()
    # an independent clock from the same config: parameter count of the 784-30-30-10 MLP, float32, seed 4
    clock = Clock("dpsgd", 4, Network.from_units(30.0, 25.0), model_message_bytes(784 * 30 + 30 * 30 + 30 * 10),
                  ComputeModel(3e-3, 0.2, 0.1, 4.0), HandRing(4), seed=4)
    times = clock.advance(recs[-1]["step"])
    assert [r["sim_time_s"] for r in recs] == pytest.approx([times[r["step"] - 1] for r in recs], rel=1e-12)
    summary = json.loads((res.out / "summary.json").read_text())
    assert summary["sim_time_s"] == pytest.approx(times[-1], rel=1e-12)
    assert summary["clock"]["compute_measured"] is False and summary["clock"]["message_bytes"] == 4 * 24_720


def test_measured_compute_time_when_not_configured(small_cfg):
    import json

    from ddl.loop.train import train

    res = train(small_cfg(name="m", algo="ssgd", learners=2, batch_size=10, jitter=0.0, straggler_prob=0.0))
    clock = json.loads((res.out / "summary.json").read_text())["clock"]
    assert clock["compute_measured"] is True and clock["compute_base_s"] > 0
    # no spread: every step costs the measured base plus the all-reduce
    per_step = clock["compute_base_s"] + clock["allreduce_s"]
    assert clock["sim_time_s"] == pytest.approx(res.steps * per_step, rel=1e-9)


def test_bad_clock_flag_is_one_clear_line(capsys):
    from ddl.commands.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--straggler-prob", "2", "--no-progress"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "ddl: error: --straggler-prob: must be in [0, 1], got 2.0\n"


# ---- ddl clock and the report functions ------------------------------------------------------------------


def test_model_sizes_by_count_and_name():
    from ddl.commands.clock import model_params

    assert model_params("1000")[0] == 1000
    assert model_params("mlp")[0] == 784 * 30 + 30 * 30 + 30 * 10
    assert model_params("resnet18")[0] == 11_173_962  # the CIFAR ResNet-18 (3×3 stem, 10 classes)
    with pytest.raises(ClockError, match="--model"):
        model_params("vgg")


def test_ddl_clock_writes_figures_whose_numbers_match_the_closed_form(tmp_path, capsys):
    import json

    from ddl.commands.cli import main

    out = tmp_path / "clk"
    assert main(["clock", "--out", str(out), "--model", "200000", "--learners", "8", "--compute-ms", "2",
                 "--jitter", "0", "--straggler-prob", "0.2", "--latencies-us", "10", "1000", "--slowdowns", "1", "4",
                 "--ns", "4", "8", "--topologies", "ring", "complete", "--steps", "30", "--bandwidth-gbps", "8"]) == 0
    for name in ("speedup_heatmap", "speedup_vs_n"):
        assert (out / f"{name}.png").stat().st_size > 1000
    heat = json.loads((out / "speedup_heatmap.json").read_text())
    # row "1×" has no stragglers and no jitter: SSGD pays compute + all-reduce, DPSGD max(compute, 2 messages)
    nbytes, bw = 800_000, 1e9
    for j, lat in enumerate((10e-6, 1000e-6)):
        ssgd = 2e-3 + 2 * 7 * (lat + nbytes / 8 / bw)
        dpsgd = max(2e-3, lat + 2 * nbytes / bw)
        assert heat["speedup"][0][j] == pytest.approx(ssgd / dpsgd, rel=1e-9)
    assert heat["speedup"][1][0] > heat["speedup"][0][0]  # stragglers cost SSGD more than DPSGD
    scaling = json.loads((out / "speedup_vs_n.json").read_text())
    assert scaling["n"] == [4, 8] and scaling["speedup"]["complete"] == pytest.approx([1.0, 1.0])
    with pytest.raises(SystemExit):
        main(["clock", "--out", str(out), "--topologies", "moebius"])
    assert "ddl: error: --topology: unknown topology 'moebius'" in capsys.readouterr().err


def test_ddl_clock_maps_every_algorithm_by_its_declaration(tmp_path):
    """Without spread every algorithm's time has a closed form: 32 steps of 2 ms, ring of 8, 800 kB models."""
    import json

    from ddl.algorithms import ALGORITHMS
    from ddl.commands.cli import main

    out = tmp_path / "clk"
    assert main(["clock", "--out", str(out), "--model", "200000", "--learners", "8", "--compute-ms", "2",
                 "--jitter", "0", "--straggler-prob", "0", "--latencies-us", "10", "1000", "--slowdowns", "1",
                 "--ns", "4", "--topologies", "ring", "--steps", "32", "--bandwidth-gbps", "8", "--period", "8",
                 "--compressor", "topk", "--compress-ratio", "0.01"]) == 0
    assert (out / "algorithms.png").stat().st_size > 1000
    res = json.loads((out / "algorithms.json").read_text())
    rows = {r["algo"]: r for r in res["algorithms"]}
    assert set(rows) == set(ALGORITHMS)
    nbytes, bw, c, steps = 800_000, 1e9, 2e-3, 32
    for j, lat in enumerate((10e-6, 1000e-6)):
        ar = 2 * 7 * (lat + nbytes / 8 / bw)
        mix = max(c, lat + 2 * nbytes / bw)  # two neighbours share the link
        want = {
            "ssgd": steps * (c + ar),
            "dpsgd": steps * mix,
            "local_sgd": steps * c + 4 * ar,
            "gossip_pga": 28 * mix + 4 * (c + ar),
            "gradient_tracking": steps * max(c, lat + 2 * 2 * nbytes / bw),
            "choco": steps * max(c, lat + 2 * 0.02 * nbytes / bw),  # top-1 %: values + indices = 2 %
            # no barrier: each learner computes, averages with one peer (one message), computes again
            "adpsgd": steps * c + (steps - 1) * (lat + nbytes / bw),
        }
        for name, t in want.items():
            assert rows[name]["speedup"][j] == pytest.approx(want["ssgd"] / t, rel=1e-9), (name, lat)


def test_time_to_target_and_curves_against_the_clock(tmp_path):
    from ddl.report.clock import common_target, fig_against_clock, save_figure, time_to_target

    recs = [{"step": 10, "sim_time_s": 1.0, "test_acc": 0.80, "train_loss": 0.9},
            {"step": 20, "sim_time_s": 2.5, "test_acc": 0.93, "train_loss": 0.4},
            {"step": 30, "sim_time_s": 3.0, "test_acc": 0.97, "train_loss": 0.2}]
    assert time_to_target(recs, 0.10) == 2.5 and time_to_target(recs, 0.01) is None
    assert time_to_target([{k: v for k, v in r.items() if k != "sim_time_s"} for r in recs], 0.5) is None
    fig = fig_against_clock([("SSGD", "C0", recs), ("DPSGD", "C1", recs)], target_error=0.1)
    assert save_figure(fig, tmp_path / "clock.png").stat().st_size > 1000
    assert fig_against_clock([("SSGD", "C0", [{"test_acc": 0.5, "train_loss": 1.0}])]) is None
    # the default target is the lowest test error every run reached (run 2's best is 20 %)
    assert common_target([recs, recs[:1]]) == pytest.approx(0.20)
    assert common_target([[{"train_loss": 1.0}]]) is None
