"""Landscape-dependent noise measurement (ddl.measure.noise) against direct computations."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, hessian

from ddl.comm import SimCollective
from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients
from ddl.config import TrainConfig
from ddl.data import Dataset
from ddl.loop.train import Trainer, train
from ddl.measure.noise import NoiseMeter


def tiny_data(n_train=80, shape=(1, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train, *shape, generator=g)
    y = torch.randint(0, 10, (n_train,), generator=g)
    return Dataset("tiny", x, y, x[:20].clone(), y[:20].clone(), torch.ones(n_train, dtype=torch.bool), y.clone(), 10)


def tiny_trainer(tmp_path, **kw):
    base = dict(algo="dpsgd", learners=4, batch_size=5, lr=0.1, hidden=[8], bias=True, dtype="float64",
                progress=False, out=str(tmp_path / "t"))
    return Trainer(TrainConfig(**{**base, **kw}), data=tiny_data())


def meter_for(tr, top_k=2, **kw):
    """A meter over the trainer's whole training set (the exact setting)."""
    return NoiseMeter(tr.gradients.eval_loss, tr.comm, tr.x_train, tr.y_train, top_k=top_k, seed=tr.cfg.seed,
                      steps_per_epoch=tr.stream.steps_per_epoch, **kw)


def measure(meter, tr, step, xs, ys):
    w_bar, bufs_bar = tr.averaged()
    return meter.measure(step, tr.state.W, w_bar, bufs_bar, xs, ys)


def plain_grad(model, spec, w, x, y, buffers=None):
    """∇ of the mean cross-entropy by plain autograd, eval mode, float64."""
    model.eval()
    w = w.detach().double().requires_grad_(True)
    out = functional_call(model, (spec.unflatten(w), buffers or {}), (x.double(),))
    return torch.autograd.grad(F.cross_entropy(out, y), w)[0]


def test_eta_is_zero_when_learners_agree(tmp_path):
    tr = tiny_trainer(tmp_path)
    xs, ys = tr.batch(0)
    rec = measure(meter_for(tr), tr, 0, xs, ys)
    assert rec["dpsgd_noise_sq"] == 0.0 and rec["consensus"] == 0.0
    assert rec["ssgd_noise_sq"] > 0


class SmallNet(nn.Sequential):
    def __init__(self, norm: bool, dropout: float):
        layers = [nn.Flatten(), nn.Linear(16, 12)]
        layers += [nn.BatchNorm1d(12)] if norm else []
        layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(12, 10)]
        super().__init__(*layers)


@pytest.mark.parametrize("norm,dropout", [(False, 0.3), (True, 0.0), (True, 0.3)])
def test_eta_is_zero_for_identical_learners_with_dropout_and_batchnorm(norm, dropout):
    """In train mode every gradient would draw its own dropout mask / batch statistics, so identical learners
    showed ‖η_DP‖² > 0; the meter measures the deterministic (eval-mode) network, where it is exactly 0."""
    torch.manual_seed(0)
    model = SmallNet(norm, dropout).double()
    if norm:  # non-trivial running statistics
        model.train()
        model(torch.randn(64, 1, 4, 4, dtype=torch.float64) * 2 + 1)
    spec = FlatSpec.of(model)
    compute = LearnerGradients(model, spec, "vmap")
    data = tiny_data()
    n, b = 4, 5
    comm = SimCollective(n)
    w = spec.flatten(model)
    W = w.unsqueeze(0).repeat(n, 1)
    bufs = {k: v.double() if v.is_floating_point() else v for k, v in spec.buffers(model).items()}
    xs, ys = data.x_train[: n * b].view(n, b, 1, 4, 4).double(), data.y_train[: n * b].view(n, b)
    meter = NoiseMeter(compute.eval_loss, comm, data.x_train, data.y_train, top_k=2, max_iter=40)
    rec = meter.measure(0, W, w, bufs, xs, ys)
    assert rec["dpsgd_noise_sq"] == 0.0 and rec["dpsgd_noise_lin_sq"] == 0.0
    assert rec["network"] == "eval" and rec["ssgd_noise_sq"] > 0
    # deterministic: a second measurement at other weights gives the same numbers twice
    W2 = W + 0.05 * torch.randn(W.shape, generator=torch.Generator().manual_seed(1), dtype=W.dtype)
    a = meter.measure(1, W2, W2.mean(0), bufs, xs, ys)
    b_ = meter.measure(1, W2, W2.mean(0), bufs, xs, ys)
    assert a["dpsgd_noise_sq"] == b_["dpsgd_noise_sq"] > 0
    # and equal to the definition by plain autograd on the eval-mode network with w̄'s running statistics
    w_bar = W2.mean(0)
    eta = sum(plain_grad(model, spec, W2[i], xs[i], ys[i], bufs) - plain_grad(model, spec, w_bar, xs[i], ys[i], bufs)
              for i in range(n)) / n
    assert a["dpsgd_noise_sq"] == pytest.approx(float(eta @ eta), rel=1e-9)


def test_eta_matches_hvp_linearisation_for_small_spreads(tmp_path):
    tr = tiny_trainer(tmp_path)
    meter = meter_for(tr)
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


def test_eta_and_xi_equal_their_definitions(tmp_path):
    """η_DP = (1/n) Σ_a [∇L_a(w_a) − ∇L_a(w̄)] and ξ = (1/n) Σ_a ∇L_a(w̄) − ∇L(w̄) with the full-batch gradient
    over all training samples, both by plain autograd; the meter's chunking does not matter."""
    tr = tiny_trainer(tmp_path)
    tr.state.W = tr.state.W + 0.05 * torch.randn_like(tr.state.W)
    xs, ys = tr.batch(3)
    rec = measure(meter_for(tr, chunk=7), tr, 3, xs, ys)  # 80 samples in chunks of 7: uneven last chunk
    w_bar = tr.state.W.mean(0)
    m, s = tr.model, tr.spec
    eta = sum(plain_grad(m, s, tr.state.W[a], xs[a], ys[a]) - plain_grad(m, s, w_bar, xs[a], ys[a])
              for a in range(4)) / 4
    xi = sum(plain_grad(m, s, w_bar, xs[a], ys[a]) for a in range(4)) / 4 - plain_grad(m, s, w_bar, tr.x_train,
                                                                                        tr.y_train)
    assert rec["dpsgd_noise_sq"] == pytest.approx(float(eta @ eta), rel=1e-9)
    assert rec["ssgd_noise_sq"] == pytest.approx(float(xi @ xi), rel=1e-9)
    assert rec["reference_samples"] == 80 and rec["reference_exact"] is True


def test_sharpness_matches_dense_hessian_at_the_production_setting(tmp_path):
    """The default tolerance and cap (no iteration count chosen by the test) give the dense Hessian's top-k."""
    tr = tiny_trainer(tmp_path)
    tr.state.W = tr.state.W + 0.3 * torch.randn_like(tr.state.W)
    cfg = tr.cfg
    meter = meter_for(tr, top_k=3, tol=cfg.noise_lanczos_tol, max_iter=cfg.noise_lanczos_max_iter)
    xs, ys = tr.batch(0)
    rec = measure(meter, tr, 0, xs, ys)
    w_bar = tr.state.W.mean(0)

    def loss(w):
        return F.cross_entropy(functional_call(tr.model, tr.spec.unflatten(w), (tr.x_train,)), tr.y_train)

    ref = torch.linalg.eigvalsh(hessian(loss)(w_bar)).flip(0)[:3]
    assert torch.allclose(torch.tensor(rec["top_eigenvalues"], dtype=torch.float64), ref, rtol=1e-6, atol=1e-9)
    assert rec["lanczos_converged"] and rec["lanczos_rel_residual"] <= cfg.noise_lanczos_tol
    assert 3 <= rec["lanczos_iterations"] <= cfg.noise_lanczos_max_iter


def measured_run(tmp_path, name, **kw):
    out = tmp_path / name
    base = dict(algo="dpsgd", learners=4, batch_size=10, lr=0.2, epochs=2, dropout=0.2, train_per_class=20,
                test_per_class=5, hidden=[16, 8], progress=False, out=str(out))
    train(TrainConfig(**{**base, **kw}))
    return out


def test_measuring_never_changes_training(tmp_path):
    """Same seed with and without --measure-noise: bit-identical weights, with dropout drawing from the stream."""
    a = measured_run(tmp_path, "plain", epochs=1)
    b = measured_run(tmp_path, "measured", epochs=1, measure_noise=2)
    wa = torch.load(a / "checkpoints" / "learners.pt")["weights"]
    wb = torch.load(b / "checkpoints" / "learners.pt")["weights"]
    assert torch.equal(wa, wb)
    assert (b / "noise.jsonl").is_file() and not (a / "noise.jsonl").exists()
    assert (wa - wa.mean(0)).abs().max() > 0  # DPSGD learners really differ (so η_DP was measured)


def test_measure_noise_records_exact_or_approximate_reference(tmp_path):
    out = measured_run(tmp_path, "full", measure_noise=5, dropout=0.0, epochs=4)
    recs = [json.loads(x) for x in (out / "noise.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [0, 5, 10, 15]
    assert all(len(r["top_eigenvalues"]) == 5 for r in recs)
    assert recs[-1]["dpsgd_noise_sq"] > 0 and recs[-1]["sharpness"] > 0
    for r in recs:
        assert r["reference_samples"] == 200 and r["reference_exact"] is True
        assert r["lanczos_converged"] and r["lanczos_rel_residual"] <= r["lanczos_tol"] == 1e-6
        assert r["lanczos_iterations"] >= 5
    # the warm start pays: later measurements need no more iterations than the cold first one
    assert max(r["lanczos_iterations"] for r in recs[1:]) <= recs[0]["lanczos_iterations"]
    approx = measured_run(tmp_path, "approx", measure_noise=5, dropout=0.0, epochs=1, noise_samples=50)
    rec = json.loads((approx / "noise.jsonl").read_text().splitlines()[0])
    assert rec["reference_samples"] == 50 and rec["reference_exact"] is False


def test_noise_samples_are_a_stratified_sample(tmp_path):
    tr = Trainer(TrainConfig(train_per_class=20, test_per_class=5, measure_noise=1, noise_samples=30,
                             progress=False, out=str(tmp_path / "s")))
    assert torch.bincount(tr.noise.y, minlength=10).tolist() == [3] * 10
    assert tr.noise.exact is False


def test_production_lanczos_against_curvlinops_and_scipy(tmp_path):
    """The production setting (default tol and cap, warm start) against an independent reference: curvlinops'
    Hessian operator of the same loss on the same data and scipy's eigsh (tol 1e-8), at two points of a run."""
    from curvlinops import HessianLinearOperator  # the `test` extra (pyproject.toml); CI installs it
    from scipy.sparse.linalg import eigsh

    tr = tiny_trainer(tmp_path, hidden=[12], learners=4, lr=0.3)
    meter = meter_for(tr, top_k=5, tol=tr.cfg.noise_lanczos_tol, max_iter=tr.cfg.noise_lanczos_max_iter)
    model = tr.model
    for step in range(9):
        xs, ys = tr.batch(step)
        if step in (0, 8):
            rec = measure(meter, tr, step, xs, ys)
            w_bar, _ = tr.averaged()
            tr.spec.load(model, w_bar)
            model.eval()
            op = HessianLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()),
                                       [(tr.x_train, tr.y_train)]).to_scipy()
            ref = np.sort(eigsh(op, k=5, which="LA", tol=1e-8)[0])[::-1]
            np.testing.assert_allclose(rec["top_eigenvalues"], ref, rtol=1e-6, atol=1e-10)
            assert rec["lanczos_converged"]
        tr.algo.step(tr.state, xs, ys, tr.cfg.lr, 0.0)


def test_learners_at_the_average_skip_their_passes_with_the_same_record(tmp_path, monkeypatch):
    """Learners that all sit at w̄ (SSGD) skip their own gradients and H·δw: the record is the full path's, field
    for field, and the Hessian-vector pass over the learners is not run."""
    import ddl.measure.noise as noise

    tr = tiny_trainer(tmp_path, algo="ssgd")
    xs, ys = tr.batch(0)
    meter = meter_for(tr)
    calls = []
    full_hvp = meter._hvp_learners
    meter._hvp_learners = lambda *a: calls.append(1) or full_hvp(*a)
    fast = measure(meter, tr, 0, xs, ys)
    assert calls == []
    meter.warm_start = None
    monkeypatch.setattr(noise.torch, "equal", lambda a, b: False)  # force the full path
    slow = measure(meter, tr, 0, xs, ys)
    assert calls == [1]
    assert fast == slow
    assert fast["dpsgd_noise_sq"] == 0.0 and fast["ssgd_noise_sq"] > 0
