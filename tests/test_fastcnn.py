"""The hand-written stacked-CNN forward/backward against the per-learner autograd loop (the oracle), float64."""

import pytest
import torch
from torch import nn

from ddl.compute import fastcnn
from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients
from ddl.models import build_model


def odd_chain() -> nn.Module:
    """Strides, padding, dilation, biasless layers, pooling with stride ≠ kernel, two ReLUs in a row, RGB input."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(4, 5, 3, stride=2, bias=False), nn.ReLU(), nn.Conv2d(5, 6, 2, dilation=2, padding=1),
        nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(6 * 2 * 2, 7, bias=False), nn.ReLU(),
        nn.Linear(7, 4),
    ).double()  # fmt: skip


CASES = [
    ("lenet_mnist", lambda: build_model("cnn", (1, 28, 28), seed=0).double(), (1, 28, 28), 10),
    ("lenet_cifar", lambda: build_model("cnn", (3, 32, 32), seed=0).double(), (3, 32, 32), 10),
    ("odd_chain", odd_chain, (3, 19, 19), 4),
]


@pytest.mark.parametrize("name,make,shape,classes", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("m", [1, 5])
def test_fast_cnn_equals_loop(name, make, shape, classes, m):
    model = make()
    assert fastcnn.supports(model)
    spec = FlatSpec.of(model)
    g = torch.Generator().manual_seed(0)
    W = spec.flatten(model) + 0.05 * torch.randn(m, spec.numel, generator=g, dtype=torch.float64)
    xs = torch.randn(m, 6, *shape, generator=g, dtype=torch.float64)
    ys = torch.randint(0, classes, (m, 6), generator=g)
    fast = LearnerGradients(model, spec, "auto")
    assert isinstance(fast.fast, fastcnn.StackedCNN)
    G1, l1, _ = fast.grads(W, {}, xs, ys)
    G2, l2, _ = LearnerGradients(model, spec, "loop").grads(W, {}, xs, ys)
    assert (G1 - G2).abs().max() <= 1e-10 * max(1.0, float(G2.abs().max()))
    assert (l1 - l2).abs().max() <= 1e-12
    # SSGD: one learner holding all m·b samples, gradient summed over learners
    g1, s1, _ = fast.sum_grads_shared(W[0], {}, xs, ys)
    g2, s2, _ = LearnerGradients(model, spec, "loop").sum_grads_shared(W[0], {}, xs, ys)
    assert (g1 - g2).abs().max() <= 1e-10 * max(1.0, float(g2.abs().max()))
    assert (s1 - s2).abs().max() <= 1e-12


def test_lenet_forward_is_its_chain():
    model = build_model("cnn", (1, 28, 28), seed=0)
    x = torch.randn(3, 1, 28, 28)
    h = x
    for layer in model.chain():
        h = layer(h)
    assert torch.equal(model(x), h)


def test_supports_only_plain_chains():
    assert not fastcnn.supports(build_model("mlp", (1, 28, 28)))  # no convolution: the MLP path's job
    assert not fastcnn.supports(build_model("resnet18", (3, 8, 8)))  # batch norm, residual connections
    assert not fastcnn.supports(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2)))
    assert not fastcnn.supports(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(2, 2)))
    assert not fastcnn.supports(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Dropout(0.1), nn.Linear(2, 2)))
    assert not fastcnn.supports(nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.Flatten(), nn.Linear(2, 2)))


@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
def test_training_with_fast_cnn_equals_loop(tmp_path, algo):
    """A whole (short) run: the default path and the per-learner loop end with the same learner weights."""
    from ddl.config import TrainConfig
    from ddl.loop.train import Trainer

    def run(mode):
        cfg = TrainConfig(model="cnn", algo=algo, learners=4, batch_size=5, lr=0.05, momentum=0.5, epochs=1,
                          train_per_class=5, test_per_class=2, dtype="float64", sim_mode=mode, progress=False,
                          out=str(tmp_path / mode), overwrite=True)
        tr = Trainer(cfg)
        tr.run()
        return tr

    fast, slow = run("auto"), run("loop")
    assert isinstance(fast.gradients.fast, fastcnn.StackedCNN)
    assert (fast.state.W - slow.state.W).abs().max() <= 1e-10
