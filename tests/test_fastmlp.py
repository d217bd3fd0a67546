"""The hand-written stacked-MLP backward pass against the per-learner autograd loop (the oracle)."""

import pytest
import torch

from ddl.compute import fastmlp
from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients
from ddl.models import build_model


@pytest.mark.parametrize("b", [7, 1])  # b = 1 takes the outer-product path
@pytest.mark.parametrize("hidden,bias", [((30, 30), False), ((17,), True), ((12, 9, 7), True)])
def test_fast_mlp_equals_loop(hidden, bias, b):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), hidden=hidden, bias=bias, seed=0).double()
    spec = FlatSpec.of(model)
    W = spec.flatten(model) + 0.3 * torch.randn(5, spec.numel, dtype=torch.float64)
    xs = torch.rand(5, b, 1, 28, 28, dtype=torch.float64)
    ys = torch.randint(0, 10, (5, b))
    fast = LearnerGradients(model, spec, "auto")
    assert fast.fast is not None
    G1, l1, _ = fast.grads(W, {}, xs, ys)
    G2, l2, _ = LearnerGradients(model, spec, "loop").grads(W, {}, xs, ys)
    assert (G1 - G2).abs().max() <= 1e-12
    assert (l1 - l2).abs().max() <= 1e-12


def test_supports_only_plain_mlps():
    assert fastmlp.supports(build_model("mlp", (1, 28, 28)))
    assert not fastmlp.supports(build_model("mlp", (1, 28, 28), dropout=0.1))
    assert not fastmlp.supports(build_model("cnn", (1, 28, 28)))


@pytest.mark.parametrize("b", [7, 1])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.9])
def test_grads_into_accumulates_in_place(b, beta):
    """``target ← β·target + α·G`` in place, for the fast path and the generic path alike (β = 0 ignores NaN)."""
    torch.manual_seed(1)
    model = build_model("mlp", (1, 28, 28), hidden=(12, 9), bias=True, seed=0).double()
    spec = FlatSpec.of(model)
    W = spec.flatten(model) + 0.3 * torch.randn(4, spec.numel, dtype=torch.float64)
    xs, ys = torch.rand(4, b, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (4, b))
    G, losses, _ = LearnerGradients(model, spec, "loop").grads(W, {}, xs, ys)
    start = torch.randn_like(W) if beta else torch.full_like(W, float("nan"))
    for mode in ("auto", "vmap"):
        target = start.clone()
        ptr = target.data_ptr()
        got_losses, _ = LearnerGradients(model, spec, mode).grads_into(W, {}, xs, ys, target, alpha=-0.3, beta=beta)
        expect = -0.3 * G + (beta * start if beta else 0)
        assert target.data_ptr() == ptr and (target - expect).abs().max() <= 1e-12, mode
        assert (got_losses - losses).abs().max() <= 1e-12


@pytest.mark.parametrize("b", [7, 1])
def test_grads_deferred_writes_any_rows(b):
    """``write(lo, hi, rows)`` sets rows to α·G[lo:hi], whatever they held, for any band of learners."""
    torch.manual_seed(2)
    model = build_model("mlp", (1, 28, 28), hidden=(12, 9), bias=True, seed=0).double()
    spec = FlatSpec.of(model)
    W = spec.flatten(model) + 0.3 * torch.randn(5, spec.numel, dtype=torch.float64)
    xs, ys = torch.rand(5, b, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (5, b))
    G, losses, _ = LearnerGradients(model, spec, "loop").grads(W, {}, xs, ys)
    for mode in ("auto", "vmap"):
        got_losses, _, write = LearnerGradients(model, spec, mode).grads_deferred(W, {}, xs, ys, alpha=-0.5)
        out = torch.full_like(W, float("nan"))
        for lo, hi in ((0, 2), (2, 3), (3, 5)):
            write(lo, hi, out[lo:hi])
        assert (out + 0.5 * G).abs().max() <= 1e-12, mode
        assert (got_losses - losses).abs().max() <= 1e-12
