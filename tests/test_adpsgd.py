"""AD-PSGD (ddl/algorithms/adpsgd.py) against a plain event loop written from the paper's pseudo-code."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
import torch

from ddl.algorithms import communication_of
from ddl.algorithms.adpsgd import peer_generator
from ddl.config import TrainConfig
from ddl.errors import ConfigError
from ddl.loop.train import Trainer
from ddl.measure.clock import ComputeModel, Network, RunClock, model_message_bytes


def _cfg(tmp_path, **kw):
    base = dict(algo="adpsgd", learners=5, batch_size=8, epochs=2, lr=0.2, stop_loss=None, progress=False,
                train_per_class=20, test_per_class=5, hidden=[6], dtype="float64", compute_ms=2.0, jitter=0.5,
                straggler_prob=0.2, straggler_slowdown=4.0, topology="ring", out=str(tmp_path / "run"),
                overwrite=True, weight_decay=0.01)
    return TrainConfig(**{**base, **kw})


def _grad(tr: Trainer, w: torch.Tensor, k: int, i: int, wd: float) -> torch.Tensor:
    """∇ of learner i's k-th minibatch loss at w, with autograd on the model itself (+ decay gradient β w)."""
    idx = tr.stream.indices(k, [i])[0]
    w = w.clone().requires_grad_(True)
    params = tr.spec.unflatten(w)
    out = torch.func.functional_call(tr.model, params, (tr.x_train[idx],))
    loss = torch.nn.functional.cross_entropy(out, tr.y_train[idx])
    (g,) = torch.autograd.grad(loss, w)
    return g + wd * w.detach()


def oracle(tr: Trainer, cfg: TrainConfig, steps: int) -> torch.Tensor:
    """Lian et al. 2018, Algorithm 1, one worker per learner, with a heap of finish times."""
    n = cfg.learners
    draw = ComputeModel(cfg.compute_ms * 1e-3, cfg.jitter, cfg.straggler_prob, cfg.straggler_slowdown) \
        .sampler(n, cfg.seed).draw
    rows = draw(4 * steps + 8)  # row r: every learner's r-th compute time
    msg = Network.from_units(cfg.latency_us, cfg.bandwidth_gbps).message_s(model_message_bytes(tr.spec.numel,
                                                                                               cfg.dtype))
    peers = peer_generator(cfg.seed)
    x = [tr.state.W[i].clone() for i in range(n)]
    count = [1] * n
    grad = [_grad(tr, x[i], 0, i, cfg.weight_decay) for i in range(n)]  # read x̂_i, compute at time 0
    heap = [(float(rows[0][i]), i) for i in range(n)]
    heapq.heapify(heap)
    for e in range(steps * n):
        t, i = heapq.heappop(heap)
        step = e // n
        nb = [j for j in tr.topology.neighbours(i, step) if j != i]
        j = nb[int(peers.integers(len(nb)))]
        x[i] = x[j] = (x[i] + x[j]) / 2  # atomic pairwise average
        x[i] = x[i] - cfg.lr * grad[i]  # the stale gradient
        grad[i] = _grad(tr, x[i], count[i], i, cfg.weight_decay)  # next: read, compute
        heapq.heappush(heap, (t + msg + float(rows[count[i]][i]), i))
        count[i] += 1
    return torch.stack(x)


def test_adpsgd_equals_the_pseudo_code_event_loop(tmp_path):
    cfg = _cfg(tmp_path)
    tr = Trainer(cfg)
    ref = oracle(tr, cfg, steps=6)
    for _ in range(6):
        tr.algo.step(tr.state, None, None, cfg.lr, cfg.weight_decay)
    assert torch.allclose(tr.state.W, ref, atol=1e-10, rtol=0)
    m = tr.algo.metrics()
    assert m["staleness_max"] >= 1 and sum(m["staleness_hist"]) == 6 * cfg.learners


def _history(cfg) -> tuple[torch.Tensor, list]:
    tr = Trainer(cfg)
    for _ in range(4):
        tr.algo.step(tr.state, None, None, cfg.lr, 0.0)
    return tr.state.W.clone(), tr.algo.metrics()["staleness_hist"]


def test_same_seed_same_asynchronous_history(tmp_path):
    a, b = _history(_cfg(tmp_path)), _history(_cfg(tmp_path))
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    c = _history(_cfg(tmp_path, seed=1))
    assert not torch.equal(a[0], c[0])


def test_the_clock_prices_the_algorithms_own_events(tmp_path):
    cfg = _cfg(tmp_path)
    tr = Trainer(cfg)
    clock = RunClock(cfg, tr.spec.numel, tr.topology, 1)
    for s in range(1, 5):
        tr.algo.step(tr.state, None, None, cfg.lr, 0.0)
        assert clock.at(s, 0.0, 0) == pytest.approx(tr.algo.events.now, rel=0, abs=1e-15)


def test_without_spread_learners_take_turns(tmp_path):
    """No jitter, no stragglers: every learner finishes one computation per round, in index order (ties), so
    each step is one gradient per learner and a gradient misses the n−1 updates of the others."""
    cfg = _cfg(tmp_path, jitter=0.0, straggler_prob=0.0)
    tr = Trainer(cfg)
    for _ in range(3):
        tr.algo.step(tr.state, None, None, cfg.lr, 0.0)
    assert tr.algo.events.started.tolist() == [4] * cfg.learners
    hist = tr.algo.metrics()["staleness_hist"]
    # first round: all read at time 0, learner i applies after i others; then always after the n−1 others
    assert hist == [1] * (cfg.learners - 1) + [1 + 2 * cfg.learners]


def test_declared_asynchronous():
    comm = communication_of("adpsgd")
    assert not comm.synchronous and comm.neighbours_per_step == 1


@pytest.mark.parametrize("kw,flag", [(dict(backend="ray"), "--backend"), (dict(compute_ms=None), "--compute-ms"),
                                     (dict(resume=True), "--resume")])
def test_bad_configs_are_one_line(tmp_path, kw, flag):
    with pytest.raises(ConfigError, match=flag) as e:
        _cfg(tmp_path, **kw).validate()
    assert "\n" not in str(e.value)


def test_momentum_refused(tmp_path):
    with pytest.raises(ConfigError, match="--momentum"):
        _cfg(tmp_path, momentum=0.9).validate()


def test_trains_and_records_staleness(tmp_path):
    from ddl.loop.train import train
    from ddl.rundir.layout import load_run

    res = train(_cfg(tmp_path, epochs=2, partition="dirichlet", dirichlet_alpha=0.5))
    assert res.status == "max_epochs"
    recs = load_run(tmp_path / "run").metrics()
    assert all(np.isfinite(r["staleness_mean"]) and "sim_time_s" in r for r in recs)


def _noise(tmp_path, n: int) -> list[dict]:
    from ddl.loop.train import train
    from ddl.rundir.layout import load_run

    train(_cfg(tmp_path, learners=n, epochs=1, measure_noise=3, noise_top_k=2, weight_decay=0.0))
    return load_run(tmp_path / "run").noise()


def test_noise_meter_measures_the_stale_gradients(tmp_path):
    recs = _noise(tmp_path, 4)
    assert len(recs) >= 2 and all(np.isfinite(r["dpsgd_noise_sq"]) for r in recs)
    assert any(r["dpsgd_noise_sq"] > 0 for r in recs[1:])  # stale gradients at read weights away from w̄


def test_noise_of_one_learner_is_zero(tmp_path):
    """n = 1: the learner reads its weights right after its update, so x̂ = w̄ and the extra noise vanishes."""
    recs = _noise(tmp_path, 1)
    assert recs and all(r["dpsgd_noise_sq"] == 0.0 for r in recs)
