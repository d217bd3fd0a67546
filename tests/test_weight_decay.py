"""--weight-decay-kind: each penalty's gradient against autograd, and training steps against per-learner oracles
that add the penalty to the loss and differentiate it with plain autograd."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ddl.algorithms.weight_decay import decay_gradient, penalty
from ddl.compute.flat import FlatSpec
from ddl.loop.train import Trainer


@pytest.mark.parametrize("kind", ["l2sq", "l2norm"])
def test_decay_gradient_is_the_penalty_gradient(kind):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 37, generator=g, dtype=torch.float64) * torch.tensor([[0.1], [1.0], [3.0], [10.0]])
    Wr = W.clone().requires_grad_()
    (auto,) = torch.autograd.grad(penalty(Wr, 0.02, kind).sum(), Wr)
    assert torch.allclose(decay_gradient(W, 0.02, kind), auto, rtol=1e-12, atol=1e-15)
    if kind == "l2norm":  # the reference's penalty: β‖w‖₂, by hand
        assert torch.allclose(penalty(W, 0.02, kind), 0.02 * W.pow(2).sum(1).sqrt())
        assert torch.allclose(decay_gradient(W, 0.02, kind).norm(dim=1), torch.full((4,), 0.02, dtype=W.dtype))
    else:
        assert torch.allclose(decay_gradient(W, 0.02, kind), 0.02 * W)
    assert torch.equal(decay_gradient(torch.zeros(1, 5), 0.1, kind), torch.zeros(1, 5))


@pytest.fixture(scope="module")
def data():
    from ddl.data import load_dataset

    return load_dataset("mnist5k", train_per_class=40, test_per_class=20)


def oracle(cfg, k, mixing, data):
    """Each learner its own nn.Module; gradient of (minibatch loss + penalty over all its parameters) by
    autograd; then w_a ← Σ_j mixing[a][j] w_j − α g_a (SSGD: every learner at the average, gradients averaged)."""
    tr = Trainer(cfg, data=data)
    n = cfg.learners
    models = [copy.deepcopy(tr.model) for _ in range(n)]
    spec = FlatSpec.of(tr.model)
    out = []
    bufs = [torch.zeros(spec.numel, dtype=tr.dtype) for _ in range(n)]
    for step in range(k):
        idx = tr.stream.indices(step, range(n))
        grads, ws = [], []
        for a, m in enumerate(models):
            m.zero_grad()
            w = torch.cat([p.reshape(-1) for p in m.parameters()])
            loss = F.cross_entropy(m(tr.x_train[idx[a]]), tr.y_train[idx[a]])
            loss = loss + penalty(w.unsqueeze(0), cfg.weight_decay, cfg.weight_decay_kind)[0]
            loss.backward()
            grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
            ws.append(spec.flatten(m))
        if cfg.algo == "ssgd":
            grads = [sum(grads) / n] * n
        if cfg.momentum:  # heavy ball, per learner: u ← μ u + g
            bufs = [cfg.momentum * u + g for u, g in zip(bufs, grads)]
            grads = bufs
        for a, m in enumerate(models):
            spec.load(m, sum(mixing[a][j] * ws[j] for j in range(n)) - cfg.lr * grads[a])
        out.append(torch.stack([spec.flatten(m) for m in models]))
    return out


@pytest.mark.parametrize("kind,momentum", [("l2sq", 0.0), ("l2norm", 0.0), ("l2sq", 0.9), ("l2norm", 0.9)])
@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
def test_training_applies_the_chosen_penalty(small_cfg, algo, kind, momentum, data):
    n = 4
    # ring of 4, written out: each learner averages itself and its two neighbours with weight 1/3
    t = 1 / 3
    ring4 = [[t, t, 0, t], [t, t, t, 0], [0, t, t, t], [t, 0, t, t]]
    mixing = ring4 if algo == "dpsgd" else [[1 / n] * n] * n  # SSGD: all start from the average
    cfg = small_cfg(algo=algo, learners=n, batch_size=10, lr=0.2, weight_decay=0.05, weight_decay_kind=kind,
                    momentum=momentum, dtype="float64")
    tr = Trainer(cfg, data=data)
    ws = []
    for step in range(4):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, cfg.lr, cfg.weight_decay)
        ws.append(tr.state.W.clone())
    ref = oracle(cfg, 4, mixing, data)
    for step, (x, y) in enumerate(zip(ws, ref)):
        assert (x - y).abs().max() <= 1e-12, step
    # the two penalties really differ at these weights
    other = "l2norm" if kind == "l2sq" else "l2sq"
    cfg2 = small_cfg(algo=algo, learners=n, batch_size=10, lr=0.2, weight_decay=0.05, weight_decay_kind=other,
                     momentum=momentum, dtype="float64", name="other")
    assert (oracle(cfg2, 1, mixing, data)[0] - ref[0]).abs().max() > 1e-4


def test_weight_decay_kind_flag_recorded(tmp_path):
    import json

    from ddl.commands.cli import main

    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--train-per-class", "20", "--test-per-class", "5", "--weight-decay",
                 "0.01", "--weight-decay-kind", "l2norm", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["weight_decay_kind"] == "l2norm"
