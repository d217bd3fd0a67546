"""The learner-stacked ResNet-18 / DenseNet-121 (``ddl.fastdeep``) against the per-learner loop (the oracle)."""

from __future__ import annotations

import pytest
import torch

from ddl.compute import fastdeep
from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients
from ddl.models import build_model

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")

SHAPE = (1, 16, 16)  # small grayscale images: 16 → 8 → 4 → 2 through the stages


def _learners(name: str, m: int, b: int, seed: int = 0):
    """A width-4 model and m learners with different weights, BatchNorm statistics and data."""
    model = build_model(name, SHAPE, width=4, seed=seed)
    spec = FlatSpec.of(model)
    g = torch.Generator().manual_seed(seed + 1)
    w0 = spec.flatten(model)
    W = w0 + 0.05 * torch.randn(m, w0.numel(), generator=g)
    bufs = {}
    for k, v in spec.buffers(model).items():
        s = v.unsqueeze(0).repeat(m, *([1] * v.dim()))
        if k.endswith("running_mean"):
            s = s + 0.1 * torch.randn(s.shape, generator=g)
        elif k.endswith("running_var"):
            s = s * (1 + torch.rand(s.shape, generator=g))
        elif k.endswith("num_batches_tracked"):
            s = s + torch.arange(m)
        bufs[k] = s
    xs = torch.randn(m, b, *SHAPE, generator=g)
    ys = torch.randint(0, 10, (m, b), generator=g)
    return model, spec, W, bufs, xs, ys


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_stacked_equals_per_learner_loop(name, dtype, tol):
    """Losses, gradients and running statistics; float64 shows the identity is exact (not just close)."""
    model, spec, W, bufs, xs, ys = _learners(name, m=3, b=5)
    model, W, xs = model.to(dtype), W.to(dtype), xs.to(dtype)
    bufs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in bufs.items()}
    assert fastdeep.supports(model)
    fast = LearnerGradients(model, spec, "auto")
    assert fast.stacked is not None
    G1, l1, B1 = fast.grads(W, bufs, xs, ys)
    G2, l2, B2 = LearnerGradients(model, spec, "loop").grads(W, bufs, xs, ys)
    assert (l1 - l2).abs().max() <= tol
    assert (G1 - G2).abs().max() <= tol * max(1.0, float(G2.abs().max()))
    assert (G1[0] - G1[1]).abs().max() > 1e-3  # the learners' gradients differ: the check is not vacuous
    assert B1.keys() == B2.keys()
    for k in B1:
        assert B1[k].dtype == B2[k].dtype and B1[k].shape == B2[k].shape, k
        assert torch.allclose(B1[k], B2[k], rtol=0, atol=tol), k
    assert not torch.equal(B1[f"{'bn1' if name == 'resnet18' else 'features.norm0'}.running_mean"],
                           bufs[f"{'bn1' if name == 'resnet18' else 'features.norm0'}.running_mean"])  # fmt: skip


@pytest.mark.parametrize("name,m,channels_last", [("densenet121", 2, True), ("resnet18", 2, False),
                                                   ("resnet18", 1, True)])  # fmt: skip
def test_stacked_layouts_and_one_learner_equal_loop(name, m, channels_last):
    """Both memory formats (each model's default is checked in float32 above; float64 here: DenseNet's
    channels_last BatchNorm loses float32 precision on the CPU) and one learner (a worker holding one)."""
    model, spec, W, bufs, xs, ys = _learners(name, m=m, b=4, seed=3)
    model, W, xs = model.double(), W.double(), xs.double()
    bufs = {k: (v.double() if v.is_floating_point() else v) for k, v in bufs.items()}
    fast = LearnerGradients(model, spec, "auto")
    fast.stacked.channels_last = channels_last
    G1, l1, B1 = fast.grads(W, bufs, xs, ys)
    G2, l2, B2 = LearnerGradients(model, spec, "loop").grads(W, bufs, xs, ys)
    assert (G1 - G2).abs().max() <= 1e-12 * max(1.0, float(G2.abs().max()))
    assert (l1 - l2).abs().max() <= 1e-12
    for k in B1:
        assert torch.allclose(B1[k], B2[k], rtol=0, atol=1e-12), k


def test_unsupported_models_keep_their_paths():
    assert not fastdeep.supports(build_model("cnn", (1, 28, 28)))
    assert not fastdeep.supports(build_model("mlp", (1, 28, 28)))
    dn = build_model("densenet121", SHAPE, width=4)
    dn.features.denseblock1.denselayer1.drop_rate = 0.1
    assert not fastdeep.supports(dn)
    # bf16 autocast keeps the vmap path (the stacked network is float32/float64 only)
    model = build_model("resnet18", SHAPE, width=4)
    assert LearnerGradients(model, FlatSpec.of(model), "auto", amp="bf16").stacked is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_dpsgd_run_fast_equals_loop(trainers_after_steps, name):
    """A few DPSGD steps with momentum through the trainer: the stacked path's learners equal the loop's.

    In float64: with 4 images per learner BatchNorm is ill-conditioned enough that float32 rounding alone (1e-7
    after one step) grows to 1e-2 within three steps — for torch's own vmap path against the loop just the same."""
    trs = trainers_after_steps(SHAPE, ("auto", "loop"), 3, algo="dpsgd", learners=3, batch_size=4, lr=0.05,
                               model=name, width=4, dtype="float64", momentum=0.9)  # fmt: skip
    assert trs["auto"].gradients.stacked is not None and trs["loop"].gradients.stacked is None
    res = {mode: tr.state for mode, tr in trs.items()}
    a, b = res["auto"], res["loop"]
    assert (a.W - b.W).abs().max() <= 1e-12
    assert (a.W[0] - a.W[1]).abs().max() > 1e-3
    for k in a.buffers:
        assert torch.allclose(a.buffers[k].double(), b.buffers[k].double(), rtol=0, atol=1e-12), k


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_loop_hands_kernels_16_byte_aligned_parameters(name):
    """P ≡ 2 (mod 4) for both models, so row 1 of [m, P] starts 8 bytes off a 16-byte boundary; the per-learner
    loop copies the row first, so every parameter view it hands to a kernel is 16-byte aligned (the suspected
    cause of the GPU's "misaligned address", README Limitations)."""
    from ddl.compute.learners import aligned_row

    model, spec, W, *_ = _learners(name, 2, 1)
    assert spec.numel % 4 == 2 and W[1].data_ptr() % 16 == 8
    row = aligned_row(W, 1)
    assert torch.equal(row, W[1]) and not row.requires_grad
    assert all(v.data_ptr() % 16 == 0 for v in spec.unflatten(row).values())
