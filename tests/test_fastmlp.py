"""The hand-written stacked-MLP backward pass against the per-learner autograd loop (the oracle)."""

import pytest
import torch

from ddl import fastmlp
from ddl.flat import FlatSpec
from ddl.learners import LearnerGradients
from ddl.models import build_model


@pytest.mark.parametrize("hidden,bias", [((30, 30), False), ((17,), True), ((12, 9, 7), True)])
def test_fast_mlp_equals_loop(hidden, bias):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), hidden=hidden, bias=bias, seed=0).double()
    spec = FlatSpec.of(model)
    W = spec.flatten(model) + 0.3 * torch.randn(5, spec.numel, dtype=torch.float64)
    xs = torch.rand(5, 7, 1, 28, 28, dtype=torch.float64)
    ys = torch.randint(0, 10, (5, 7))
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
