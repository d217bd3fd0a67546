"""Fast paths of the simulated learners (CNN / BatchNorm models) against the per-learner autograd loop oracle,
in float64 on small inputs: gradients, losses and BatchNorm statistics."""

import pytest
import torch
from torch import nn

from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients
from ddl.models import build_model


def tiny_bn_net() -> nn.Module:
    """Conv → BatchNorm → ReLU → Linear: the smallest model with per-learner BatchNorm statistics."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 3)).double()


def stacked(model: nn.Module, m: int, b: int, shape, classes: int, spread: float = 0.1, seed: int = 0):
    spec = FlatSpec.of(model)
    g = torch.Generator().manual_seed(seed)
    W = spec.flatten(model) + spread * torch.randn(m, spec.numel, generator=g, dtype=torch.float64)
    bufs = {k: v.unsqueeze(0).repeat(m, *([1] * v.dim())) for k, v in spec.buffers(model).items()}
    for v in bufs.values():  # learners with different statistics already
        if v.is_floating_point():
            v.add_(0.1 * torch.rand(v.shape, generator=g, dtype=v.dtype))
    xs = torch.randn(m, b, *shape, generator=g, dtype=torch.float64)
    ys = torch.randint(0, classes, (m, b), generator=g)
    return spec, W, bufs, xs, ys


def assert_same(a, b, tol=1e-10):
    (G1, l1, B1), (G2, l2, B2) = a, b
    assert (G1 - G2).abs().max() <= tol * max(1.0, float(G2.abs().max()))
    assert (l1 - l2).abs().max() <= tol
    assert B1.keys() == B2.keys()
    for k in B1:
        assert torch.allclose(B1[k].double(), B2[k].double(), rtol=0, atol=tol), k


CASES = [
    ("tiny_bn", tiny_bn_net, (2, 5, 5), 3),
    ("cnn", lambda: build_model("cnn", (1, 28, 28), seed=0).double(), (1, 28, 28), 10),
    ("resnet18", lambda: build_model("resnet18", (3, 8, 8), seed=0).double(), (3, 8, 8), 10),
]


@pytest.mark.parametrize("name,make,shape,classes", CASES, ids=[c[0] for c in CASES])
def test_ssgd_shared_weights_equals_loop(name, make, shape, classes):
    """SSGD: Σ_a ∇L_a(w) at one shared w, each learner normalising over its own batch (BatchNorm)."""
    model = make()
    spec, W, bufs, xs, ys = stacked(model, 3, 4, shape, classes)
    w = W[0]
    fast = LearnerGradients(model, spec, "auto").sum_grads_shared(w, bufs, xs, ys)
    slow = LearnerGradients(model, spec, "loop").sum_grads_shared(w, bufs, xs, ys)
    assert_same(fast, slow)


@pytest.mark.parametrize("name,make,shape,classes", CASES, ids=[c[0] for c in CASES])
def test_dpsgd_per_learner_weights_equals_loop(name, make, shape, classes):
    """DPSGD: each learner's gradient at its own weights, with its own BatchNorm statistics."""
    model = make()
    spec, W, bufs, xs, ys = stacked(model, 3, 4, shape, classes)
    fast = LearnerGradients(model, spec, "auto").grads(W, bufs, xs, ys)
    slow = LearnerGradients(model, spec, "loop").grads(W, bufs, xs, ys)
    assert_same(fast, slow)


def test_ssgd_shared_weights_bf16_close_to_loop():
    model = tiny_bn_net().float()
    spec, W, bufs, xs, ys = stacked(model.double(), 3, 6, (2, 5, 5), 3)
    model = model.float()
    W, xs = W.float(), xs.float()
    bufs = {k: (v.float() if v.is_floating_point() else v) for k, v in bufs.items()}
    g1, l1, b1 = LearnerGradients(model, spec, "vmap", amp="bf16").sum_grads_shared(W[0], bufs, xs, ys)
    g2, l2, b2 = LearnerGradients(model, spec, "loop", amp="bf16").sum_grads_shared(W[0], bufs, xs, ys)
    assert float((g1 - g2).norm() / g2.norm()) < 0.05
    assert (l1 - l2).abs().max() < 2e-2
    for k in b1:
        assert torch.allclose(b1[k].float(), b2[k].float(), rtol=0.02, atol=0.02), k


def test_ssgd_shared_weights_accepts_channels_last_inputs():
    """Per-learner slices in channels_last memory format (as the GPU benchmark passes them) give the same result."""
    model = tiny_bn_net()
    spec, W, bufs, xs, ys = stacked(model, 3, 4, (2, 5, 5), 3)
    cl = xs.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    assert cl[0].is_contiguous(memory_format=torch.channels_last)
    fast = LearnerGradients(model, spec, "vmap")
    assert_same(fast.sum_grads_shared(W[0], bufs, cl, ys), fast.sum_grads_shared(W[0], bufs, xs, ys), tol=1e-12)
