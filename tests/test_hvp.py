"""analysis.hvp: the one Hessian operator, every builder against torch.autograd.functional.hessian on a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian
from torch.func import grad, vmap

from analysis.hessian import LayerLoss, curvature_blocks, ggn_hessian, kron_hessian
from analysis.hvp import HessianOperator, loss_hessian, loss_hvp
from analysis.layer import build_upper, capture

DT = torch.float64


def tiny(bias: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4, bias=bias), nn.ReLU(), nn.Linear(4, 3, bias=bias)).to(DT).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT))
    x = torch.randn(40, 5, generator=g, dtype=DT)
    y = torch.randint(0, 3, (40,), generator=g)
    return model, x, y


def check_views(op: HessianOperator, H: torch.Tensor, rtol=1e-11, atol=1e-13):
    """matvec, matmat and dense of ``op`` all equal the reference matrix ``H``."""
    g = torch.Generator().manual_seed(1)
    V = torch.randn(H.shape[0], 3, generator=g, dtype=DT)
    assert op.n == H.shape[0]
    torch.testing.assert_close(op.matvec(V[:, 0]), H @ V[:, 0], rtol=rtol, atol=atol)
    torch.testing.assert_close(op(V[:, 1]), H @ V[:, 1], rtol=rtol, atol=atol)
    torch.testing.assert_close(op.matmat(V), H @ V, rtol=rtol, atol=atol)
    torch.testing.assert_close(op.dense(), H, rtol=rtol, atol=atol)


@pytest.mark.parametrize("bias", [False, True])
def test_layer_operators_equal_the_autograd_hessian(bias):
    """Final layer: the Kronecker closed form; hidden layer under ReLU: Gauss-Newton blocks, Gauss-Newton products
    and forward-over-reverse autograd — each as matvec, matmat and dense — equal the textbook Hessian."""
    model, x, y = tiny(bias)
    for name, idx in (("2", 2), ("0", 0)):
        lin = model[idx]
        W, b = lin.weight.detach(), None if lin.bias is None else lin.bias.detach()
        d, m = W.shape

        def loss(theta, idx=idx, d=d, m=m):
            Wt = theta[: d * m].reshape(d, m)
            bt = theta[d * m :] if bias else None
            h = x
            for j, mod in enumerate(model):
                h = F.linear(h, Wt, bt) if j == idx else mod(h)
            return F.cross_entropy(h, y)

        theta = torch.cat([W.reshape(-1)] + ([b] if bias else []))
        H = hessian(loss, theta)
        cap = capture(model, name, lin, x, 64)
        up = build_upper(model, name, lin, cap, DT, 64)
        z = F.linear(cap.a, W, b)
        jac = None if idx == 2 else up.jacobians(z)
        check_views(kron_hessian(curvature_blocks(up(z), jac), cap.a, bias), H)
        check_views(ggn_hessian(up, z, None, cap.a, bias), H)
        check_views(LayerLoss(up, cap.a, y, None, W, b, bias).operator(), H)


def test_loss_closure_operators_equal_the_autograd_hessian():
    """The noise meter's two forms over a whole model's flat weights: the chunked double-backward operator, and
    the vmappable reverse-over-reverse product with its own minibatch per row."""
    model, x, y = tiny(True)
    params = {k: v.detach() for k, v in model.named_parameters()}
    shapes = [(k, v.shape, v.numel()) for k, v in params.items()]
    w = torch.cat([v.reshape(-1) for v in params.values()])

    def loss(w, x, y):
        out, i = {}, 0
        for k, s, n in shapes:
            out[k] = w[i : i + n].reshape(s)
            i += n
        return F.cross_entropy(torch.func.functional_call(model, out, (x,)), y)

    H = hessian(lambda w: loss(w, x, y), w)
    parts = lambda: ((xc.shape[0] / x.shape[0], (xc, yc)) for xc, yc in zip(x.split(15), y.split(15)))  # noqa: E731
    check_views(loss_hessian(loss, w, parts), H)

    hvp = vmap(loss_hvp(grad(loss)), in_dims=(None, 0, 0, 0))
    g = torch.Generator().manual_seed(2)
    V = torch.randn(2, w.numel(), generator=g, dtype=DT)
    xs, ys = x.reshape(2, 20, 5), y.reshape(2, 20)
    out = hvp(w, V, xs, ys)
    for r in range(2):
        torch.testing.assert_close(out[r], hessian(lambda w, r=r: loss(w, xs[r], ys[r]), w) @ V[r], rtol=1e-11,
                                   atol=1e-13)  # fmt: skip


def test_dense_from_products_alone_is_the_symmetrised_matrix():
    A = torch.randn(7, 7, generator=torch.Generator().manual_seed(3), dtype=DT)
    H = A + A.T
    op = HessianOperator(7, lambda v: H @ v, dtype=DT, basis_chunk=3)
    torch.testing.assert_close(op.dense(), H, rtol=0, atol=1e-14)
    torch.testing.assert_close(op.matmat(torch.eye(7, dtype=DT)[:, :2]), H[:, :2], rtol=0, atol=0)
