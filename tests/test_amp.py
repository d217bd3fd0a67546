"""``--amp bf16``: autocast for the learners.  The default never enters autocast (float32 unchanged); bf16 runs,
agrees between the vmap path and the per-learner oracle, and stays close to float32.  The batch norm written in
plain operations (used under vmap with bf16) is checked against torch's in float64."""

import pytest
import torch
from torch import nn

from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients, PlainBatchNorm, with_plain_batchnorm
from ddl.config import TrainConfig
from ddl.errors import ConfigError
from ddl.loop.train import Trainer
from ddl.models import build_model


@pytest.mark.parametrize("momentum", [0.1, None])
def test_plain_batchnorm_equals_torch(momentum):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(5, momentum=momentum).double()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    plain = PlainBatchNorm(5, momentum=momentum).double()
    plain.load_state_dict(ref.state_dict())
    for _ in range(2):  # two steps: the running averages compound
        x = (3 * torch.randn(6, 5, 4, 3, dtype=torch.float64) + 1).requires_grad_(True)
        x2 = x.detach().clone().requires_grad_(True)
        y, y2 = ref(x), plain(x2)
        up = torch.randn_like(y)
        g = torch.autograd.grad((y * up).sum(), [x, ref.weight, ref.bias])
        g2 = torch.autograd.grad((y2 * up).sum(), [x2, plain.weight, plain.bias])
        assert (y - y2).abs().max() <= 1e-12
        for a, b in zip(g, g2):
            assert (a - b).abs().max() <= 1e-12
        for k, v in ref.state_dict().items():
            assert torch.allclose(v.double(), plain.state_dict()[k].double(), rtol=0, atol=1e-12), k
    ref.eval()
    plain.eval()
    x = torch.randn(3, 5, 2, 2, dtype=torch.float64)
    assert (ref(x) - plain(x)).abs().max() <= 1e-12  # eval mode: the built-in kernel on the running stats


def test_with_plain_batchnorm_keeps_names_and_values():
    model = build_model("resnet18", (3, 8, 8), seed=0)
    twin = with_plain_batchnorm(model)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert [n for n, _ in twin.named_buffers()] == [n for n, _ in model.named_buffers()]
    assert sum(isinstance(m, PlainBatchNorm) for m in twin.modules()) == 20
    assert not any(isinstance(m, PlainBatchNorm) for m in model.modules())  # the original is untouched


def _learners(name, shape, m=2, b=4, seed=0):
    model = build_model(name, shape, seed=seed)
    spec = FlatSpec.of(model)
    g = torch.Generator().manual_seed(seed)
    W = spec.flatten(model) + 0.01 * torch.randn(m, spec.numel, generator=g)
    bufs = {k: v.unsqueeze(0).repeat(m, *([1] * v.dim())) for k, v in spec.buffers(model).items()}
    xs = torch.randn(m, b, *shape, generator=g)
    ys = torch.randint(0, 10, (m, b), generator=g)
    return model, spec, W, bufs, xs, ys


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name,shape,b", [("cnn", (1, 28, 28), 4), ("resnet18", (3, 16, 16), 8)])
def test_bf16_vmap_agrees_with_loop_oracle_and_stays_close(name, shape, b):
    model, spec, W, bufs, xs, ys = _learners(name, shape, b=b)
    G32, l32, B32 = LearnerGradients(model, spec, "loop").grads(W, bufs, xs, ys)
    Gv, lv, Bv = LearnerGradients(model, spec, "vmap", amp="bf16").grads(W, bufs, xs, ys)
    Gl, ll, Bl = LearnerGradients(model, spec, "loop", amp="bf16").grads(W, bufs, xs, ys)
    assert Gv.dtype == torch.float32 and torch.isfinite(Gv).all()
    # bf16 rounding is amplified through depth (at initialisation, early-layer gradients of a deep ResNet are
    # small sums of cancelling terms), so the batched bf16 path is held to the oracle's own bf16 error
    err_v, err_l = _rel(Gv, G32), _rel(Gl, G32)
    assert err_v <= 1.5 * err_l + 0.02, (err_v, err_l)
    assert err_v < (0.1 if name == "cnn" else 0.6)
    last = spec.sizes[-2] + spec.sizes[-1]  # the output layer's weight and bias
    assert _rel(Gv[:, -last:], G32[:, -last:]) < 0.05
    assert (lv - l32).abs().max() < 2e-2 and (lv - ll).abs().max() < 2e-2
    for k in B32:  # BatchNorm statistics: each learner's own, kept in float32, near the float32 ones
        assert Bv[k].dtype == B32[k].dtype
        if B32[k].is_floating_point():
            assert torch.allclose(Bv[k], B32[k], rtol=0.05, atol=0.02), k
        else:
            assert torch.equal(Bv[k], B32[k]), k


def _cnn_cfg(tmp_path, name, **kw):
    return TrainConfig(model="cnn", algo="dpsgd", learners=4, batch_size=5, lr=0.05, epochs=1, eval_every=1,
                       train_per_class=5, test_per_class=2, progress=False, out=str(tmp_path / name),
                       overwrite=True, **kw)


def test_default_never_enters_autocast(tmp_path, monkeypatch):
    ref = Trainer(_cnn_cfg(tmp_path, "ref"))
    assert ref.gradients.amp == "off" and ref.gradients._vmodel is ref.gradients.model
    ref.run()

    def forbidden(*a, **k):
        raise AssertionError("autocast entered on the default (amp off) path")

    monkeypatch.setattr(torch, "autocast", forbidden)
    again = Trainer(_cnn_cfg(tmp_path, "again", amp="off"))
    again.run()
    assert torch.equal(again.state.W, ref.state.W)  # bit-identical float32 weights


def test_bf16_training_runs_and_stays_close(tmp_path):
    fp32 = Trainer(_cnn_cfg(tmp_path, "fp32"))
    fp32.run()
    bf16 = Trainer(_cnn_cfg(tmp_path, "bf16", amp="bf16"))
    bf16.run()
    assert bf16.state.W.dtype == torch.float32
    assert not torch.equal(bf16.state.W, fp32.state.W)  # it does change the numerics
    w0 = fp32.spec.flatten(build_model("cnn", (1, 28, 28), seed=0))
    moved = (fp32.state.W - w0).norm()
    assert (bf16.state.W - fp32.state.W).norm() < 0.1 * moved


def test_amp_config_checks():
    with pytest.raises(ConfigError, match="^--amp: bf16 needs --dtype float32"):
        TrainConfig(amp="bf16", dtype="float64").validate()
    with pytest.raises(ConfigError, match="^--amp: 'fp8' is not one of off, bf16"):
        TrainConfig(amp="fp8").validate()
    from ddl.config import fields_by_role

    assert "amp" in fields_by_role("model")  # a precision choice, like --dtype: part of the experiment
