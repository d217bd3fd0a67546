"""Landscape-dependent noise measurement (ddl.noise) against direct computations."""

import json

import pytest
import torch
from torch.func import functional_call, hessian

from ddl.config import TrainConfig
from ddl.data import Dataset
from ddl.noise import NoiseMeter
from ddl.train import Trainer, train


def tiny_data(n_train=80, shape=(1, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, *shape, generator=g)
    y = torch.randint(0, 10, (n_train,), generator=g)
    return Dataset("tiny", x, y, x[:20].clone(), y[:20].clone(), torch.ones(n_train, dtype=torch.bool), y.clone(), 10)


def tiny_trainer(tmp_path, **kw):
    cfg = TrainConfig(algo="dpsgd", learners=4, batch_size=5, lr=0.1, hidden=[8], bias=True, dtype="float64",
                      progress=False, out=str(tmp_path / "t"), **kw)
    return Trainer(cfg, data=tiny_data())


def meter_for(tr, samples=80, top_k=2, iters=20):
    """A meter over the trainer's first ``samples`` training samples (the tiny data set is unsorted)."""
    x, y = tr.x_train[:samples], tr.y_train[:samples]
    return NoiseMeter(tr.gradients.loss, tr.gradients.grads, tr.comm, x, y, top_k=top_k, iters=iters, seed=tr.cfg.seed,
                      steps_per_epoch=tr.stream.steps_per_epoch)


def measure(meter, tr, step, xs, ys):
    tr.model.train()
    w_bar, bufs_bar = tr.averaged()
    return meter.measure(step, tr.state.W, tr.state.buffers, w_bar, bufs_bar, xs, ys)


def test_eta_is_zero_when_learners_agree(tmp_path):
    tr = tiny_trainer(tmp_path)
    meter = meter_for(tr, top_k=2)
    xs, ys = tr.batch(0)
    rec = measure(meter, tr, 0, xs, ys)
    assert rec["dpsgd_noise_sq"] == 0.0 and rec["consensus"] == 0.0
    assert rec["ssgd_noise_sq"] > 0


def test_eta_matches_hvp_linearisation_for_small_spreads(tmp_path):
    tr = tiny_trainer(tmp_path)
    meter = meter_for(tr, top_k=2)
    xs, ys = tr.batch(0)
    g = torch.Generator().manual_seed(1)
    base = tr.state.W.clone()
    errs = []
    for eps in (1e-2, 1e-4):
        R = torch.randn(base.shape, dtype=base.dtype, generator=g)
        tr.state.W = base + eps * (R - R.mean(0))
        rec = measure(meter, tr, 0, xs, ys)
        assert rec["dpsgd_noise_sq"] > 0
        errs.append(rec["dpsgd_lin_rel_err"])
    assert errs[1] < 1e-3  # second-order remainder: the error shrinks with the spread
    assert errs[1] < errs[0]


def test_eta_equals_definition(tmp_path):
    """η_DP from the meter equals (1/n) Σ_a [∇L_a(w_a) − ∇L_a(w̄)] computed by plain autograd per learner."""
    tr = tiny_trainer(tmp_path)
    tr.state.W = tr.state.W + 0.05 * torch.randn_like(tr.state.W)
    xs, ys = tr.batch(3)
    meter = meter_for(tr, top_k=2)
    rec = measure(meter, tr, 3, xs, ys)
    w_bar = tr.state.W.mean(0)

    def g_at(w, x, y):
        w = w.detach().requires_grad_(True)
        out = functional_call(tr.model, tr.spec.unflatten(w), (x,))
        return torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), w)[0]

    eta = sum(g_at(tr.state.W[a], xs[a], ys[a]) - g_at(w_bar, xs[a], ys[a]) for a in range(4)) / 4
    assert rec["dpsgd_noise_sq"] == pytest.approx(float(eta @ eta), rel=1e-9)


def test_sharpness_matches_dense_hessian(tmp_path):
    tr = tiny_trainer(tmp_path)
    tr.state.W = tr.state.W + 0.3 * torch.randn_like(tr.state.W)
    meter = meter_for(tr, top_k=3, iters=60)
    xs, ys = tr.batch(0)
    rec = measure(meter, tr, 0, xs, ys)
    w_bar = tr.state.W.mean(0)

    def loss(w):
        out = functional_call(tr.model, tr.spec.unflatten(w), (meter.x,))
        return torch.nn.functional.cross_entropy(out, meter.y)

    H = hessian(loss)(w_bar)
    ref = torch.linalg.eigvalsh(H).flip(0)[:3]
    assert torch.allclose(torch.tensor(rec["top_eigenvalues"], dtype=torch.float64), ref, rtol=1e-6, atol=1e-9)


def test_measure_noise_flag_writes_noise_log(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(algo="dpsgd", learners=4, batch_size=10, lr=0.2, epochs=4, measure_noise=5, noise_samples=200,
                      train_per_class=20, test_per_class=5, progress=False, out=str(out)))
    recs = [json.loads(x) for x in (out / "noise.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [0, 5, 10, 15]
    assert all(len(r["top_eigenvalues"]) == 5 for r in recs)
    assert recs[-1]["dpsgd_noise_sq"] > 0 and recs[-1]["sharpness"] > 0
