"""Correctness of the activity-weight duality analysis against slow textbook implementations."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import analysis
from analysis import AnalysisError, DualityResult, decompose
from analysis.dual import dual_weights, gradient_scale
from analysis.hessian import LayerLoss, curvature_blocks, kron_sum
from analysis.layer import build_upper, capture
from analysis.pairs import nearest_same_label
from analysis.stats import split_sharp_flat

DT = torch.float64
# torch.func's forward-mode AD scripts its decompositions on first use and warns that torch.jit is deprecated
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def tiny_mlp(seed=0, bias=True, act=nn.ReLU):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 7, bias=bias), act(), nn.Linear(7, 5, bias=bias), act(), nn.Linear(5, 3, bias=bias)
    ).to(DT).eval()


def tiny_data(seed=0, n_train_per_class=12, n_test=12, classes=3, shape=(2, 3)):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, *shape, generator=g, dtype=DT) * 1.5
    ytr = torch.arange(classes).repeat_interleave(n_train_per_class)
    yte = torch.randint(0, classes, (n_test,), generator=g)
    xtr = centers[ytr] + torch.randn(len(ytr), *shape, generator=g, dtype=DT)
    xte = centers[yte] + torch.randn(n_test, *shape, generator=g, dtype=DT)
    return (xtr, ytr), (xte, yte)


# ---------------------------------------------------------------------------------------------------------------
# the textbook implementation: per-sample loops, double-backward Hessian, finite-difference effective gradients
# ---------------------------------------------------------------------------------------------------------------
def textbook(model, name, train, test, include_bias=False):
    (xtr, ytr), (xte, yte) = train, test
    lin = dict(model.named_modules())[name]
    W = lin.weight.detach().clone()
    b = None if lin.bias is None else lin.bias.detach().clone()
    d, m = W.shape

    def act(x1):
        box = {}

        def keep(mod, inp, out):
            box["a"] = inp[0][0].detach().clone()

        h = lin.register_forward_hook(keep)
        with torch.no_grad():
            model(x1[None])
        h.remove()
        return box["a"]

    def loss(mdl, x1, y1):
        with torch.no_grad():
            return float(F.cross_entropy(mdl(x1[None]), y1[None]))

    l_tr = [loss(model, xtr[i], ytr[i]) for i in range(len(ytr))]
    l_te = [loss(model, xte[i], yte[i]) for i in range(len(yte))]
    partners = []
    for n in range(len(yte)):
        best, best_j = None, None
        for j in range(len(ytr)):
            if ytr[j] != yte[n]:
                continue
            dist = float(torch.norm(xte[n] - xtr[j]))
            if best is None or dist < best:
                best, best_j = dist, j
        partners.append(best_j)

    dW, g, dl = [], [], []
    for n, j in enumerate(partners):
        a, a_te = act(xtr[j]), act(xte[n])
        da = a_te - a
        Z = float(sum(a[q] ** 2 for q in range(m)))
        D = torch.zeros(d, m, dtype=DT)
        for i in range(d):
            s = sum(W[i, q] * da[q] for q in range(m))
            for q in range(m):
                D[i, q] = s * a[q] / Z
        # finite difference along δW with step ‖δW‖ (the reference code's effective gradient)
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            dict(shifted.named_modules())[name].weight += D
        h = float(D.norm())
        direction = D / h
        deriv = (loss(shifted, xtr[j], ytr[j]) - l_tr[j]) / h
        dW.append(D.reshape(-1))
        g.append(deriv * direction.reshape(-1))
        dl.append(l_te[n] - l_tr[j])

    # Hessian of the mean training loss w.r.t. θ = [W.flat, b] by double backward
    # θ = W.flat (the paper's weights-only Hessian) or [W.flat, b]; a bias left out stays a constant
    with_b = b is not None and include_bias
    theta = torch.cat([W.reshape(-1)] + ([b] if with_b else [])).requires_grad_(True)

    def mean_loss(th):
        params = {f"{name}.weight": th[: d * m].reshape(d, m)}
        if with_b:
            params[f"{name}.bias"] = th[d * m :]
        out = torch.func.functional_call(model, params, (xtr,))
        return F.cross_entropy(out, ytr)

    grad = torch.autograd.grad(mean_loss(theta), theta, create_graph=True)[0]
    H = torch.stack([torch.autograd.grad(grad[i], theta, retain_graph=True)[0] for i in range(theta.numel())])
    H = H.detach().numpy()
    evals, evecs = np.linalg.eigh((H + H.T) / 2)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    for k in range(evecs.shape[1]):  # sign convention: largest-magnitude component positive
        i = np.argmax(np.abs(evecs[:, k]))
        if evecs[i, k] < 0:
            evecs[:, k] *= -1
    pad = theta.numel() - d * m
    dW = np.stack([np.concatenate([v.numpy(), np.zeros(pad)]) for v in dW])
    g = np.stack([np.concatenate([v.numpy(), np.zeros(pad)]) for v in g])
    w_proj = np.array([[dW[n] @ evecs[:, k] for k in range(evecs.shape[1])] for n in range(len(dW))])
    g_proj = np.array([[g[n] @ evecs[:, k] for k in range(evecs.shape[1])] for n in range(len(g))])
    mw, mg = w_proj.mean(0), g_proj.mean(0)
    sw, sg = w_proj.std(0), g_proj.std(0)
    cov = ((w_proj - mw) * (g_proj - mg)).mean(0)
    rho = np.where(sw * sg > 0, cov / np.where(sw * sg > 0, sw * sg, 1), 0.0)
    return dict(
        eigenvalues=evals, sigma_g=sg, sigma_w=sw, rho=rho, mean_g=mg, mean_w=mw, contributions=rho * sg * sw,
        pairwise_gap=float(np.mean(dl)), true_gap=float(np.mean(l_te) - np.mean(l_tr)), delta_loss=np.array(dl),
        partners=np.array(partners), dW=dW[:, : d * m], g=g[:, : d * m], H=H,
    )  # fmt: skip


def clusters(evals, rel=1e-9):
    """Groups of (numerically) equal eigenvalues: index lists, in order."""
    scale = max(abs(evals).max(), 1e-300)
    groups, cur = [], [0]
    for i in range(1, len(evals)):
        if abs(evals[i] - evals[i - 1]) <= rel * scale:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    return groups


def assert_directions_match(res, ref, rtol=1e-7, atol=1e-10, scale_g=1.0, scale_w=1.0):
    """Per direction for simple eigenvalues; within degenerate eigenspaces (where the basis is arbitrary) the
    basis-invariant sums Σσ_g², Σσ_w², Σ contributions and Σ μ_g μ_w."""
    ev = np.asarray(ref["eigenvalues"])
    np.testing.assert_allclose(res.eigenvalues, ev, rtol=rtol, atol=atol * max(1, abs(ev).max()))
    n_simple = 0
    for grp in clusters(ev):
        if len(grp) == 1:
            k = grp[0]
            n_simple += 1
            for f, s in (("sigma_g", scale_g), ("sigma_w", scale_w), ("mean_g", scale_g), ("mean_w", scale_w)):
                np.testing.assert_allclose(getattr(res, f)[k], ref[f][k] * s, rtol=rtol, atol=atol, err_msg=f"{f}[{k}]")
            for f in ("rho", "contributions"):
                np.testing.assert_allclose(getattr(res, f)[k], ref[f][k], rtol=rtol, atol=atol, err_msg=f"{f}[{k}]")
        else:
            g = np.array(grp)
            np.testing.assert_allclose((res.sigma_g[g] ** 2).sum(), (ref["sigma_g"][g] ** 2).sum() * scale_g**2,
                                       rtol=rtol, atol=atol)  # fmt: skip
            np.testing.assert_allclose((res.sigma_w[g] ** 2).sum(), (ref["sigma_w"][g] ** 2).sum() * scale_w**2,
                                       rtol=rtol, atol=atol)  # fmt: skip
            np.testing.assert_allclose(res.contributions[g].sum(), ref["contributions"][g].sum(), rtol=rtol, atol=atol)
            np.testing.assert_allclose((res.mean_g * res.mean_w)[g].sum(),
                                       (ref["mean_g"] * ref["mean_w"])[g].sum(), rtol=rtol, atol=atol)  # fmt: skip
    assert n_simple >= len(ev) // 2, "test setting too degenerate to compare directions"


@pytest.fixture(scope="module")
def tiny():
    return tiny_mlp(), *tiny_data()


@pytest.mark.parametrize("include_bias", [False, True])
@pytest.mark.parametrize("name", ["1", "3", "5"])
def test_matches_textbook(tiny, name, include_bias):
    model, train, test = tiny
    ref = textbook(model, name, train, test, include_bias)
    opts = {"include_bias": True} if include_bias else {}  # default: the paper's weights-only Hessian
    res = decompose(model, name, train=train, test=test, **opts)
    d, m = dict(model.named_modules())[name].weight.shape
    assert res.bias_in_hessian == include_bias and res.has_bias
    assert res.n_params == d * m + (d if include_bias else 0) == len(ref["eigenvalues"])
    assert res.eigensolver == "dense" and res.hessian == ("kron" if name == "5" else "ggn")
    np.testing.assert_array_equal(res.train_index, ref["partners"])
    np.testing.assert_allclose(res.delta_loss, ref["delta_loss"], rtol=1e-10, atol=1e-12)
    assert res.pairwise_gap == pytest.approx(ref["pairwise_gap"], rel=1e-10, abs=1e-12)
    assert res.true_gap == pytest.approx(ref["true_gap"], rel=1e-10, abs=1e-12)
    assert_directions_match(res, ref)
    assert res.decomposition_error < 1e-12
    assert res.duality_check_error < 1e-12 and res.duality_loss_error < 1e-12

    # the pair-level arrays: dual weights by the Lagrange formula, effective gradients by finite differences
    lin = dict(model.named_modules())[name]
    cap_tr = capture(model, name, lin, train[0], 64)
    cap_te = capture(model, name, lin, test[0], 64)
    dual = dual_weights(lin.weight.detach(), cap_te.a, cap_tr.a[torch.as_tensor(ref["partners"])])
    np.testing.assert_allclose(dual.dense().numpy(), ref["dW"], rtol=1e-10, atol=1e-13)
    s = gradient_scale(torch.as_tensor(res.delta_loss), dual.sq_norm)
    np.testing.assert_allclose((s[:, None] * dual.dense()).numpy(), ref["g"], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_kron_closed_form_equals_torch_func_hessian(bias):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 4, bias=bias), nn.ReLU(), nn.Linear(4, 3, bias=bias)).to(DT).eval()
    x, y = torch.randn(40, 5, dtype=DT), torch.randint(0, 3, (40,))
    lin = model[2]
    a = model[1](model[0](x)).detach()
    W = lin.weight.detach()
    b = None if lin.bias is None else lin.bias.detach()
    H = kron_sum(curvature_blocks(F.linear(a, W, b)), a, with_bias=bias)
    for method in ("packed", "blocks"):
        torch.testing.assert_close(kron_sum(curvature_blocks(F.linear(a, W, b)), a, bias, method=method), H)

    def L(theta):
        bb = theta[12:] if bias else None
        return F.cross_entropy(F.linear(a, theta[:12].reshape(3, 4), bb), y)

    theta = torch.cat([W.reshape(-1)] + ([b] if bias else []))
    ref = torch.func.hessian(L)(theta)
    assert H.shape == (15 if bias else 12,) * 2
    torch.testing.assert_close(H, ref, rtol=1e-12, atol=1e-14)


def test_confident_predictions_give_no_subnormals_in_float32():
    """Subnormal probabilities (and their products) would slow float32 arithmetic by orders of magnitude."""
    g = torch.Generator().manual_seed(4)
    a = torch.rand(300, 6, generator=g, dtype=DT)
    logits = torch.randn(300, 4, generator=g, dtype=DT) * 40  # logit gaps far above float32's ~45 limit
    tiny = torch.finfo(torch.float32).tiny
    B32 = curvature_blocks(logits.float())
    assert not ((B32 != 0) & (B32.abs() < tiny)).any()
    assert ((torch.softmax(logits.float(), 1) > 0) & (torch.softmax(logits.float(), 1) < tiny)).any()
    H32 = kron_sum(B32, a.float(), with_bias=True)
    H64 = kron_sum(curvature_blocks(logits), a, with_bias=True)
    torch.testing.assert_close(H32.double(), H64, rtol=0, atol=1e-6 * float(H64.abs().max()))


@pytest.mark.parametrize("bias", [True, False])
def test_ggn_equals_torch_func_hessian_for_relu_but_not_tanh(bias):
    for act, exact in ((nn.ReLU, True), (nn.Tanh, False)):
        model = tiny_mlp(seed=2, bias=bias, act=act)
        (x, y), _ = tiny_data(seed=2)
        lin = model[3]
        cap = capture(model, "3", lin, x, 64)
        up = build_upper(model, "3", lin, cap, DT)
        assert up.kind == "chain" and up.piecewise_linear == exact
        W = lin.weight.detach()
        b = None if lin.bias is None else lin.bias.detach()
        z = F.linear(cap.a, W, b)
        H = kron_sum(curvature_blocks(up(z), up.jacobians(z)), cap.a, with_bias=bias)
        loss = LayerLoss(up, cap.a, y, None, W, b, bias)

        def mean_loss(t, loss=loss):
            return sum(loss.chunk_loss(t, s) for s in loss.starts()) / loss.a.shape[0]

        ref = torch.func.hessian(mean_loss)(loss.theta)
        torch.testing.assert_close(loss.dense(basis_chunk=7), ref, rtol=1e-10, atol=1e-13)
        if exact:
            torch.testing.assert_close(H, ref, rtol=1e-10, atol=1e-13)
        else:
            assert (H - ref).abs().max() > 1e-4  # Gauss-Newton misses tanh's curvature
            assert decompose(model, "3", train=(x, y), test=(x[:5], y[:5])).hessian == "autograd"


@pytest.mark.parametrize("c", [3.0, 0.25])
def test_dinh_rescaling(tiny, c):
    model, train, test = tiny
    scaled = copy.deepcopy(model)
    with torch.no_grad():  # ReLU is positively homogeneous: relu(c z) = c relu(z)
        scaled[3].weight *= c
        scaled[3].bias *= c
        scaled[5].weight /= c
    base = decompose(model, "3", train=train, test=test)
    res = decompose(scaled, "3", train=train, test=test)
    ref = {f: getattr(base, f) for f in ("sigma_g", "sigma_w", "rho", "mean_g", "mean_w", "contributions")}
    ref["eigenvalues"] = base.eigenvalues / c**2
    assert_directions_match(res, ref, rtol=1e-7, atol=1e-11, scale_g=1 / c, scale_w=c)
    assert res.pairwise_gap == pytest.approx(base.pairwise_gap, rel=1e-10)
    assert res.true_gap == pytest.approx(base.true_gap, rel=1e-9)
    assert res.n_sharp == base.n_sharp
    assert res.sharp_gap == pytest.approx(base.sharp_gap, rel=1e-7, abs=1e-12)
    assert res.flat_gap == pytest.approx(base.flat_gap, rel=1e-7, abs=1e-12)
    # and the determinants do change
    assert res.sigma_w[:3] == pytest.approx(c * base.sigma_w[:3], rel=1e-7)
    assert not np.allclose(res.sigma_w, base.sigma_w)


class HeadNet(nn.Module):
    """A custom forward (not nn.Sequential): the upper map is the re-run model, or the identity for ``head``."""

    def __init__(self, act=torch.relu):
        super().__init__()
        torch.manual_seed(5)
        self.body = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)
        self.act = act

    def forward(self, x):
        return self.head(self.act(self.body(x.flatten(1))))


@pytest.mark.parametrize("case", ["hidden-ggn", "hidden-ggn-matvec", "final-kron", "custom-autograd", "custom-final"])
def test_lanczos_top_k_equals_dense(tiny, case):
    model, train, test = tiny
    name = {"hidden-ggn": "3", "hidden-ggn-matvec": "3", "final-kron": "5", "custom-autograd": "body",
            "custom-final": "head"}[case]  # fmt: skip
    if case.startswith("custom"):
        model = HeadNet(torch.tanh).to(DT).eval()
    dense = decompose(model, name, train=train, test=test, eigensolver="dense")
    K = 8
    # a tiny memory budget: Gauss-Newton products through jvp/vjp instead of stored B_n, chunked projections
    small = {"max_elements": 64} if case == "hidden-ggn-matvec" else {}
    lz = decompose(model, name, train=train, test=test, eigensolver="lanczos", top_k=K, **small)
    assert lz.eigensolver == "lanczos" and lz.n_directions == K and lz.lanczos_residual < 1e-8
    assert lz.hessian == dense.hessian
    ref = {f: getattr(dense, f)[:K] for f in ("eigenvalues", "sigma_g", "sigma_w", "rho", "mean_g", "mean_w",
                                               "contributions")}  # fmt: skip
    assert clusters(dense.eigenvalues)[K - 1][-1] == K - 1, "top-k boundary inside a degenerate eigenspace"
    assert_directions_match(lz, ref, rtol=1e-6, atol=1e-10)
    topk_sum = (lz.mean_g * lz.mean_w).sum() + lz.contributions.sum()
    assert topk_sum + lz.residual_gap == pytest.approx(lz.pairwise_gap, rel=1e-10, abs=1e-13)
    rest = (dense.mean_g * dense.mean_w)[K:].sum() + dense.contributions[K:].sum()
    assert lz.residual_gap == pytest.approx(rest, rel=1e-7, abs=1e-12)
    assert lz.decomposition_error < 1e-12
    assert lz.sharp_gap + lz.flat_gap + lz.mean_gap == pytest.approx(lz.pairwise_gap, abs=1e-12)
    # the dense solver truncated to the same top-k gives the same residual
    cut = decompose(model, name, train=train, test=test, eigensolver="dense", top_k=K)
    assert cut.n_directions == K and cut.residual_gap == pytest.approx(lz.residual_gap, rel=1e-7, abs=1e-12)


def test_decomposition_and_duality_checks_k_neighbours_and_layer_space(tiny):
    model, train, test = tiny
    k = 3
    res = decompose(model, "3", train=train, test=test, k=k, split="count", split_value=4)
    assert res.n_pairs == k * len(test[1]) and res.k_neighbors == k
    # each test sample appears k times, with its k nearest same-label partners, closest first
    (xtr, ytr), (xte, yte) = train, test
    for n in range(len(yte)):
        rows = res.test_index == n
        same = torch.nonzero(ytr == yte[n]).squeeze(1)
        dist = (xtr[same] - xte[n]).flatten(1).norm(dim=1)
        expect = same[dist.argsort(stable=True)[:k]].numpy()
        np.testing.assert_array_equal(res.train_index[rows], expect)
    # pair-wise gap = mean over test samples of the average Δℓ over their k partners
    per_test = np.array([res.delta_loss[res.test_index == n].mean() for n in range(len(yte))])
    assert res.pairwise_gap == pytest.approx(per_test.mean(), rel=1e-12)
    total = res.mean_terms.sum() + res.contributions.sum()
    assert total == pytest.approx(res.pairwise_gap, rel=1e-12, abs=1e-14)
    assert res.decomposition_error < 1e-12 and res.duality_check_error < 1e-12 and res.duality_loss_error < 1e-12
    assert res.n_sharp == 4 and res.sharp_gap == pytest.approx(res.contributions[:4].sum())
    assert res.sharp_gap + res.flat_gap + res.mean_gap == pytest.approx(res.pairwise_gap, abs=1e-13)
    assert np.isfinite(res.true_gap) and res.true_gap == pytest.approx(res.test_loss - res.train_loss)

    # partners in the layer's input space
    lay = decompose(model, "3", train=train, test=test, pair_space="layer")
    lin = model[3]
    a_tr, a_te = capture(model, "3", lin, xtr, 64).a, capture(model, "3", lin, xte, 64).a
    for n in range(len(yte)):
        same = torch.nonzero(ytr == yte[n]).squeeze(1)
        assert lay.train_index[n] == same[(a_tr[same] - a_te[n]).norm(dim=1).argmin()]
    assert lay.decomposition_error < 1e-12


def test_float32_compute_dtype(tiny):
    model, train, test = tiny
    r64 = decompose(model, "3", train=train, test=test)
    r32 = decompose(model, "3", train=train, test=test, dtype="float32")
    assert r32.dtype == "float32"
    assert r32.decomposition_error < 1e-5 * max(1.0, abs(r32.pairwise_gap))
    assert r32.duality_check_error < 1e-5
    np.testing.assert_allclose(r32.eigenvalues[:5], r64.eigenvalues[:5], rtol=1e-4)
    assert r32.pairwise_gap == pytest.approx(r64.pairwise_gap, rel=1e-5)


def test_float32_model_runs_upper_layers_in_float64():
    model = tiny_mlp().float()
    (xtr, ytr), (xte, yte) = tiny_data()
    res = decompose(model, train=(xtr.float(), ytr), test=(xte.float(), yte))
    assert res.layer == "5" and res.dtype == "float64" and res.hessian == "kron"
    assert res.decomposition_error < 1e-12 and res.duality_loss_error < 1e-12


def test_custom_module_paths():
    (xtr, ytr), (xte, yte) = tiny_data()
    net = HeadNet().to(DT).eval()
    seq = nn.Sequential(nn.Flatten(), net.body, nn.ReLU(), net.head).eval()
    final = decompose(net, train=(xtr, ytr), test=(xte, yte))  # default: the last nn.Linear, "head"
    assert final.layer == "head" and final.upper == "identity" and final.hessian == "kron"
    hidden = decompose(net, net.body, train=(xtr, ytr), test=(xte, yte))  # module given, not a name
    assert hidden.layer == "body" and hidden.upper == "model" and hidden.hessian == "autograd"
    ref = decompose(seq, "1", train=(xtr, ytr), test=(xte, yte))
    assert ref.upper == "chain" and ref.hessian == "ggn"
    np.testing.assert_allclose(hidden.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-13)
    assert hidden.pairwise_gap == pytest.approx(ref.pairwise_gap, rel=1e-12)
    assert hidden.duality_loss_error < 1e-12
    # Gauss-Newton on request through the re-run model (exact here: ReLU above)
    ggn = decompose(net, "body", train=(xtr, ytr), test=(xte, yte), hessian="ggn")
    assert ggn.upper == "model" and ggn.hessian == "ggn"
    np.testing.assert_allclose(ggn.eigenvalues, ref.eigenvalues, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ggn.contributions.sum(), ref.contributions.sum(), rtol=1e-9)


def test_nearest_pairs_chunked_with_ties():
    g = torch.Generator().manual_seed(3)
    xtr = torch.randn(300, 17, generator=g)
    ytr = torch.randint(0, 4, (300,), generator=g)
    xtr[200] = xtr[10]  # duplicate: ties go to the lower index
    ytr[200] = ytr[10]
    xte = torch.cat([torch.randn(49, 17, generator=g), xtr[10:11] + 1e-3])
    yte = torch.cat([torch.randint(0, 4, (49,), generator=g), ytr[10:11]])
    for k, budget in ((1, 97), (2, 97), (1, 1 << 24), (3, 1 << 24)):  # per-label chunks; all labels batched
        idx = nearest_same_label(xte, yte, xtr, ytr, k, max_elements=budget)
        for n in range(len(yte)):
            same = torch.nonzero(ytr == yte[n]).squeeze(1)
            d = (xtr[same].double() - xte[n].double()).norm(dim=1)
            np.testing.assert_array_equal(idx[n].numpy(), same[d.argsort(stable=True)[:k]].numpy())
    assert nearest_same_label(xte, yte, xtr, ytr, 1)[-1] == 10


def test_bad_input_raises_one_line_value_error(tiny):
    model, train, test = tiny
    cases = [
        (dict(layer="fc9"), "--layer: the model has no module named 'fc9'"),
        (dict(layer="2"), "--layer: '2' is a ReLU, not an nn.Linear"),
        (dict(layer=nn.Linear(2, 2)), "--layer"),
        (dict(layer="3", hessian="kron"), "--hessian: kron"),
        (dict(hessian="exact"), "--hessian"),
        (dict(split="median"), "--split"),
        (dict(split="count", split_value=2.5), "--split-value"),
        (dict(k=0), "--k"),
        (dict(k=50), "--k"),
        (dict(dtype="float16"), "--dtype"),
        (dict(pair_space="output"), "--pair-space"),
    ]
    for kw, msg in cases:
        with pytest.raises(AnalysisError) as e:
            decompose(model, kw.pop("layer", None), train=train, test=test, **kw)
        assert isinstance(e.value, ValueError) and str(e.value).startswith(msg) and "\n" not in str(e.value)
    x, y = test
    with pytest.raises(AnalysisError, match="test: labels must lie in 0..2"):
        decompose(model, train=train, test=(x, torch.full_like(y, 7)))
    keep = train[1] != 2
    with pytest.raises(AnalysisError, match="test: label 2 has no training sample"):
        decompose(model, train=(train[0][keep], train[1][keep]), test=(x, torch.full_like(y, 2)))
    with pytest.raises(AnalysisError, match="test: expected"):
        decompose(model, train=train, test=(x, y[:3]))


def test_split_rules():
    rng = np.random.default_rng(0)
    lam = np.sort(np.concatenate([[50, 40, 30, 20], rng.uniform(0.01, 1, 60)]))[::-1]
    sg = np.concatenate([[1.0, 0.8, 0.9, 0.85], 0.05 * rng.uniform(0.5, 2, 60)])  # noisy, cliff after 4
    sg[30] = 0.09
    sg[31] = 0.002  # a bigger single-step drop later on, under the envelope
    assert split_sharp_flat(lam, sg, "steepest") == 4
    assert split_sharp_flat(lam, sg, "steepest", by="eigenvalue") == 4
    assert split_sharp_flat(lam, sg) == 10  # the default rule: the 10 leading directions
    assert split_sharp_flat(lam, sg, "count", 7) == 7
    assert split_sharp_flat(lam, sg, "count") == 10
    mass = sg**2
    n = split_sharp_flat(lam, sg, "fraction", 0.5)
    assert mass[: n - 1].sum() < 0.5 * mass.sum() <= mass[:n].sum()
    assert split_sharp_flat(lam, sg, "fraction", 1.0) == len(sg) - (np.cumsum(mass[::-1]) == 0).sum()
    assert split_sharp_flat(lam[:1], sg[:1], "steepest") == 1 and split_sharp_flat(lam[:0], sg[:0], "steepest") == 0


def test_result_save_load_split_and_figures(tiny, tmp_path):
    model, train, test = tiny
    res = decompose(model, "3", train=train, test=test, keep_eigenvectors=True)
    npz, js = res.save(tmp_path)
    assert npz.name == "duality.npz" and js.name == "duality.json"
    back = DualityResult.load(tmp_path)
    for f in ("eigenvalues", "sigma_g", "sigma_w", "rho", "mean_g", "mean_w", "contributions", "delta_loss",
              "train_index", "eigenvectors"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, f), getattr(res, f))
    for f in ("pairwise_gap", "true_gap", "sharp_gap", "flat_gap", "n_sharp", "layer", "layer_shape", "hessian",
              "weight_norm", "timings"):  # fmt: skip
        assert getattr(back, f) == getattr(res, f)
    alt = res.with_split("count", 3)
    assert alt.n_sharp == 3 and alt.sharp_gap + alt.flat_gap + alt.mean_gap == pytest.approx(res.pairwise_gap)

    from analysis.figures import plot_sigma_w_vs_weight_norm, save_figures

    paths = save_figures(res, tmp_path / "fig")
    assert [p.name for p in paths] == ["sigma_g_vs_lambda.png", "sigma_w.png", "contributions.png"]
    big = copy.deepcopy(model)
    with torch.no_grad():
        big[3].weight *= 2
    res2 = decompose(big, "3", train=train, test=test)
    p = tmp_path / "norm.png"
    plot_sigma_w_vs_weight_norm([res, res2], ["c=1", "c=2"], p)
    for q in [*paths, p]:
        assert q.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and q.stat().st_size > 5000
    assert "pairwise gap" in res.summary()


def test_public_api():
    assert set(analysis.__all__) >= {"decompose", "DualityResult", "AnalysisError"}
