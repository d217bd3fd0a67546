"""Every synchronous algorithm's extra noise (docs/theory.md §8.1): the realized change of the average weight
over one step, minus the SSGD step at w̄ with the same minibatches, is what the noise meter measures."""

import pytest

from ddl.loop.train import Trainer

ALGOS = [("dpsgd", {}), ("local_sgd", dict(period=3)), ("gossip_pga", dict(period=3)), ("gradient_tracking", {}),
         ("choco", dict(compressor="topk", compress_ratio=0.2, consensus_step=0.6)),
         ("choco", dict(compressor="qsgd", compress_ratio=0.25, consensus_step=0.6))]


def extra_noise_by_definition(tr, step, lr):
    """η = −(w̄(t+1) − w̄(t))/α − (1/n) Σ_a ∇L_{μ_a}(w̄(t)), from the state before and after one real step."""
    xs, ys = tr.batch(step)
    w_before = tr.state.W.mean(0)
    G_bar, _, _ = tr.gradients.grads(w_before.expand_as(tr.state.W).contiguous(), tr.state.buffers, xs, ys)
    tr.algo.step(tr.state, xs, ys, lr, 0.0)
    return -(tr.state.W.mean(0) - w_before) / lr - G_bar.mean(0), xs, ys


def meter(tr, cfg):
    from ddl.measure.noise import NoiseMeter

    return NoiseMeter(tr.gradients.eval_loss, tr.comm, tr.x_train, tr.y_train, top_k=1, max_iter=20)


@pytest.mark.parametrize("algo,extra", ALGOS, ids=[f"{a}-{e.get('compressor', '')}" for a, e in ALGOS])
def test_meter_measures_each_algorithms_extra_noise(small_cfg, algo, extra):
    cfg = small_cfg(algo=algo, learners=5, batch_size=10, lr=0.2, dtype="float64", **extra).validate()
    tr = Trainer(cfg)
    m = meter(tr, cfg)
    for step in range(5):  # the learners spread (with H = 3 the last average was after step 2)
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)
    step = tr.state.step
    W = tr.state.W.clone()
    rec = m.measure(step, W, W.mean(0), tr.state.buffers, *tr.batch(step))
    eta, _, _ = extra_noise_by_definition(tr, step, cfg.lr)
    assert rec["dpsgd_noise_sq"] > 1e-12  # the learners differ: there is extra noise to measure
    assert float(eta @ eta) == pytest.approx(rec["dpsgd_noise_sq"], rel=1e-8, abs=1e-20)


@pytest.mark.parametrize("algo", ["local_sgd", "gossip_pga"])
def test_period_one_has_no_extra_noise(small_cfg, algo):
    cfg = small_cfg(algo=algo, period=1, learners=4, batch_size=10, lr=0.2, dtype="float64").validate()
    tr = Trainer(cfg)
    m = meter(tr, cfg)
    for step in range(3):
        W = tr.state.W.clone()
        rec = m.measure(step, W, W.mean(0), tr.state.buffers, *tr.batch(step))
        eta, _, _ = extra_noise_by_definition(tr, step, cfg.lr)
        assert rec["dpsgd_noise_sq"] == 0.0 and float(eta.abs().max()) <= 1e-12


def test_choco_uncompressed_has_dpsgd_noise(small_cfg):
    recs = {}
    for algo in ("dpsgd", "choco"):
        cfg = small_cfg(algo=algo, learners=5, batch_size=10, lr=0.2, name=algo).validate()
        tr = Trainer(cfg)
        m = meter(tr, cfg)
        for step in range(4):
            xs, ys = tr.batch(step)
            tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)
        W = tr.state.W.clone()
        recs[algo] = m.measure(4, W, W.mean(0), tr.state.buffers, *tr.batch(4))["dpsgd_noise_sq"]
    assert recs["dpsgd"] > 0 and recs["choco"] == pytest.approx(recs["dpsgd"], rel=1e-4)
