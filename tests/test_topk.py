"""The top-k routes (block Lanczos, Lanczos) of ``decompose`` against the full eigendecomposition: per-direction
values of the top k, and every total (gap, its sharp/flat/mean split, Σσ_w², Σσ_g²) exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis import decompose
from analysis.lanczos import block_lanczos_topk

DT = torch.float64
PER_DIRECTION = ("eigenvalues", "sigma_g", "sigma_w", "rho", "mean_g", "mean_w", "contributions")
TOTALS = ("pairwise_gap", "true_gap", "sharp_gap", "flat_gap", "mean_gap", "sigma_w_sq_total", "sigma_g_sq_total")


def features(n, dim, classes, g):
    """Class-structured, non-negative features (post-ReLU-like), as a DenseNet's pooled features."""
    centers = torch.randn(classes, dim, generator=g, dtype=DT)
    y = torch.arange(n) % classes
    return torch.relu(centers[y] + 1.2 * torch.randn(n, dim, generator=g, dtype=DT)), y


@pytest.fixture(scope="module")
def head():
    """A fitted final layer 24 → 6 (144 weights + bias) on 360 / 120 samples."""
    g = torch.Generator().manual_seed(0)
    (x, y), (xt, yt) = features(360, 24, 6, g), features(120, 24, 6, g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 6)).to(DT)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), (x, y), (xt, yt)


def simple(evals, k, rel=1e-8):
    """Indices < k whose eigenvalue is separated from its neighbours (per-direction values are defined)."""
    gaps = np.abs(np.diff(evals[: k + 1]))
    scale = abs(evals).max()
    return [i for i in range(k) if gaps[i] > rel * scale and (i == 0 or gaps[i - 1] > rel * scale)]


@pytest.mark.parametrize("solver", ["block", "lanczos"])
@pytest.mark.parametrize("include_bias", [False, True])
def test_top_k_equals_full_eigh(head, solver, include_bias):
    model, train, test = head
    full = decompose(model, train=train, test=test, eigensolver="dense", include_bias=include_bias)
    K = 20
    top = decompose(model, train=train, test=test, eigensolver=solver, top_k=K, include_bias=include_bias,
                    lanczos_block=4)  # fmt: skip
    assert full.eigensolver == "dense" and full.n_directions == full.n_params
    assert top.eigensolver == solver and top.n_directions == K and top.lanczos_residual < 1e-9 * top.eigenvalues[0]
    idx = simple(full.eigenvalues, K)
    assert len(idx) >= K - 2
    for f in PER_DIRECTION:
        np.testing.assert_allclose(getattr(top, f)[idx], getattr(full, f)[idx], rtol=1e-7, atol=1e-11, err_msg=f)
    for f in TOTALS:
        assert getattr(top, f) == pytest.approx(getattr(full, f), rel=1e-9, abs=1e-13), f
    assert top.n_sharp == full.n_sharp == 10
    # the basis-free totals are the full spectrum's sums; the remainders are what lies beyond the top K
    assert full.sigma_w_sq_total == pytest.approx((full.sigma_w**2).sum(), rel=1e-10)
    assert full.sigma_g_sq_total == pytest.approx((full.sigma_g**2).sum(), rel=1e-10)
    assert full.residual_gap == full.residual_mean_gap == 0.0
    rest_mean = (full.mean_g * full.mean_w)[K:].sum()
    assert top.residual_mean_gap == pytest.approx(rest_mean, rel=1e-7, abs=1e-13)
    assert top.residual_gap == pytest.approx(rest_mean + full.contributions[K:].sum(), rel=1e-7, abs=1e-13)
    assert top.decomposition_error < 1e-13
    # a different split keeps the totals exact
    a, b = top.with_split("top", 5), full.with_split("top", 5)
    assert a.flat_gap == pytest.approx(b.flat_gap, rel=1e-9, abs=1e-13)


def test_auto_keeps_full_eigh_for_small_layers_and_top_k_for_large(head):
    model, train, test = head
    assert decompose(model, train=train, test=test).eigensolver == "dense"
    res = decompose(model, train=train, test=test, dense_max=100, top_k=12, lanczos_max_iter=144)
    assert res.eigensolver == "block" and res.hessian == "kron" and res.n_directions == 12


def test_block_lanczos_through_the_null_space(head):
    """All P directions of a final layer by block Lanczos: the m-dimensional null space (softmax is blind to
    a shift shared by every class) makes the Krylov space invariant; fresh directions still find every λ ≈ 0."""
    model, train, test = head
    full = decompose(model, train=train, test=test, eigensolver="dense")
    allk = decompose(model, train=train, test=test, eigensolver="block", top_k=full.n_params, lanczos_block=16)
    np.testing.assert_allclose(allk.eigenvalues, full.eigenvalues, rtol=0, atol=1e-12 * full.eigenvalues[0])
    assert np.sum(np.abs(full.eigenvalues) < 1e-12 * full.eigenvalues[0]) >= 24
    assert abs(allk.residual_gap) < 1e-14
    for f in TOTALS:
        assert getattr(allk, f) == pytest.approx(getattr(full, f), rel=1e-9, abs=1e-13), f


def test_block_lanczos_on_a_known_spectrum():
    """A Krylov space holds at most ``block`` vectors of one eigenspace before it turns invariant, so the
    degenerate eigenvalue here has multiplicity 4 ≤ block 5 (the analysed Hessians' only large multiplicity is
    their null space, at the bottom of the spectrum)."""
    g = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(120, 120, generator=g, dtype=DT))
    ev = torch.cat([torch.linspace(10, 1, 20, dtype=DT), torch.full((4,), 0.5, dtype=DT),
                    torch.linspace(0.4, 0.1, 36, dtype=DT), torch.zeros(60, dtype=DT)])  # fmt: skip
    H = (U * ev) @ U.T
    theta, V, info = block_lanczos_topk(lambda X: H @ X, 120, 30, block=5)
    assert info.converged and info.max_residual < 1e-9
    np.testing.assert_allclose(theta.numpy(), ev[:30].numpy(), rtol=0, atol=1e-10)
    torch.testing.assert_close(V.T @ V, torch.eye(30, dtype=DT), rtol=0, atol=1e-12)
    torch.testing.assert_close(H @ V, V * theta, rtol=0, atol=1e-9)
