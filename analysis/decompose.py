"""``decompose``: the activity-weight duality decomposition of the generalization gap for one layer.

Stages: capture the layer's inputs (forward hooks) → losses → test-train pairs → dual weights, Δℓ and the
duality check → Hessian (or its products) → eigenpairs → projections → per-direction statistics.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from analysis.dual import dual_preactivations, dual_weights, gradient_scale, project
from analysis.errors import AnalysisError, check_choice
from analysis.hessian import (
    LayerLoss,
    curvature_blocks,
    eigh_descending,
    fix_signs,
    ggn_matvec,
    kron_matvec,
    kron_sum,
)
from analysis.lanczos import lanczos_topk
from analysis.layer import build_upper, capture, resolve_layer
from analysis.pairs import nearest_same_label
from analysis.progress import Stages
from analysis.result import DualityResult
from analysis.stats import check_split, direction_stats, split_sharp_flat

PAIR_SPACES = ("input", "layer")
HESSIANS = ("auto", "kron", "ggn", "autograd")
EIGENSOLVERS = ("auto", "dense", "lanczos")
DTYPES = {"float64": torch.float64, "float32": torch.float32, "double": torch.float64, "float": torch.float32}
STAGES = ("capture", "losses", "pairs", "dual", "hessian", "eigen", "project", "stats")
DEFAULT_TOP_K = 100


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise AnalysisError(f"--dtype: {dtype!r} is not one of float64, float32")


def _samples(option: str, data) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x, y = data
    except (TypeError, ValueError):
        raise AnalysisError(f"{option}: expected a pair (x, y) of tensors") from None
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise AnalysisError(
            f"{option}: expected x [N, ...] and integer labels y [N] with N ≥ 1, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if y.is_floating_point():
        raise AnalysisError(f"{option}: labels y must be integers (class indices)")
    return x, y.long()


def decompose(
    model: nn.Module,
    layer: str | nn.Module | None = None,
    *,
    train,
    test,
    k: int = 1,
    pair_space: str = "input",
    hessian: str = "auto",
    eigensolver: str = "auto",
    top_k: int | None = None,
    dense_max: int = 12000,
    include_bias: bool = True,
    split: str = "steepest",
    split_value: float | None = None,
    split_by: str = "sigma_g",
    dtype: str | torch.dtype = "float64",
    batch_size: int = 1024,
    max_elements: int = 1 << 25,
    lanczos_tol: float = 1e-10,
    lanczos_max_iter: int | None = None,
    seed: int = 0,
    keep_pairs: bool = True,
    keep_eigenvectors: bool = False,
    progress: bool | Stages = False,
) -> DualityResult:
    """Decompose the pair-wise generalization gap of ``model`` in the Hessian eigenbasis of one linear layer.

    Args:
        model: any ``nn.Module`` returning logits ``[N, C]``; evaluated in eval mode (restored afterwards).
        layer: the analysed ``nn.Linear`` (module or qualified name); default: the last ``nn.Linear`` in
            ``model.named_modules()`` order.
        train: ``(x, y)`` - the correctly labelled training samples (L_train, the Hessian, the partners).
        test: ``(x, y)`` - the test samples; each is paired with its nearest same-label training samples.
        k: partners per test sample.  With k > 1 every (test sample, partner) is a pair of its own with weight
            1/(N k): all statistics run over the N·k pairs, so each test sample's Δℓ and each direction's
            contribution are the averages over its k partners, and every pair satisfies the duality exactly.
        pair_space: ``"input"`` (Euclidean distance of the flattened model inputs, as in the paper) or
            ``"layer"`` (of the analysed layer's inputs).
        hessian: ``"auto"`` | ``"kron"`` | ``"ggn"`` | ``"autograd"`` (see :mod:`analysis.hessian`).  ``auto``
            takes the Kronecker-sum closed form for a final layer, the Gauss-Newton form where every module
            above the layer is piecewise linear (where it is the exact Hessian), else torch.func autograd.
        eigensolver: ``"dense"`` (full ``eigh``; with ``top_k`` only the top directions are kept), ``"lanczos"``
            (top ``top_k`` directions, default 100) or ``"auto"`` (dense if the layer has at most ``dense_max``
            parameters and no ``top_k`` below that was asked for, else Lanczos).  With fewer directions than
            parameters the rest of the pair-wise gap is reported as the exact ``residual_gap``.
        include_bias: put the layer's bias (if any) in the Hessian, after the weights: θ = [W.flat, b].  The
            dual bias change is zero either way.
        split, split_value, split_by: the sharp/flat rule (see :mod:`analysis.stats`).
        dtype: compute dtype from the layer upward (``float64`` default; ``float32`` is about twice as fast and
            the exact identities then hold to float32 precision).  Layers below run in the model's dtype.
        batch_size: samples per forward pass when capturing layer inputs.
        max_elements: memory knob, the largest dense temporary (entries) in pairs, Hessian and projections.
        keep_pairs / keep_eigenvectors: store per-pair Δℓ and indices / the eigenvectors in the result.
        progress: show a progress bar over the stages (or a :class:`analysis.progress.Stages` to report to).
    """
    check_choice("pair-space", pair_space, PAIR_SPACES)
    check_choice("hessian", hessian, HESSIANS)
    check_choice("eigensolver", eigensolver, EIGENSOLVERS)
    split_value = check_split(split, split_value, split_by)
    if top_k is not None and top_k < 1:
        raise AnalysisError(f"--top-k: must be ≥ 1, got {top_k}")
    if batch_size < 1:
        raise AnalysisError(f"--batch-size: must be ≥ 1, got {batch_size}")
    cdt = _dtype(dtype)
    x_tr, y_tr = _samples("train", train)
    x_te, y_te = _samples("test", test)
    name, lin = resolve_layer(model, layer)
    stages = progress if isinstance(progress, Stages) else Stages(len(STAGES), bool(progress))
    t_start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            res = _run(model, name, lin, x_tr, y_tr, x_te, y_te, cdt, stages, opts=dict(
                k=k, pair_space=pair_space, hessian=hessian, eigensolver=eigensolver, top_k=top_k,
                dense_max=dense_max, include_bias=include_bias, split=split, split_value=split_value,
                split_by=split_by, batch_size=batch_size, max_elements=max_elements, lanczos_tol=lanczos_tol,
                lanczos_max_iter=lanczos_max_iter, seed=seed, keep_pairs=keep_pairs,
                keep_eigenvectors=keep_eigenvectors,
            ))  # fmt: skip
    finally:
        model.train(was_training)
        if not isinstance(progress, Stages):
            stages.close()
    res.timings = {s: stages.timings[s] for s in STAGES if s in stages.timings}
    res.timings["total"] = time.perf_counter() - t_start
    return res


def _run(model, name, lin, x_tr, y_tr, x_te, y_te, cdt, stages: Stages, opts: dict) -> DualityResult:
    o = opts
    d, m = lin.weight.shape
    has_bias = lin.bias is not None
    with_bias = has_bias and o["include_bias"]
    n_params = d * m + (d if with_bias else 0)

    with stages.stage("capture"):
        cap_tr = capture(model, name, lin, x_tr, o["batch_size"])
        cap_te = capture(model, name, lin, x_te, o["batch_size"])
        a_tr, a_te = cap_tr.a.to(cdt), cap_te.a.to(cdt)
        W = lin.weight.detach().to(cdt)
        b = lin.bias.detach().to(cdt) if has_bias else None
        upper = build_upper(model, name, lin, cap_tr, cdt, o["batch_size"])
        xin_tr = x_tr if upper.needs_inputs else None
        xin_te = x_te if upper.needs_inputs else None
        dev = a_tr.device
        yd_tr, yd_te = y_tr.to(dev), y_te.to(dev)

    method = o["hessian"]
    if method == "auto":
        method = "kron" if upper.kind == "identity" else ("ggn" if upper.piecewise_linear else "autograd")
    if method == "kron" and upper.kind != "identity":
        raise AnalysisError(
            f"--hessian: kron is the closed form for a final layer, but {name!r} has layers above it; use ggn "
            "(exact for piecewise-linear layers above) or autograd"
        )
    top_k = o["top_k"]
    solver = o["eigensolver"]
    if solver == "auto":
        solver = "dense" if n_params <= o["dense_max"] and (top_k is None or top_k >= n_params) else "lanczos"
    if solver == "lanczos":
        top_k = min(n_params, top_k if top_k is not None else DEFAULT_TOP_K)

    with stages.stage("losses"):
        z_tr, z_te = F.linear(a_tr, W, b), F.linear(a_te, W, b)
        logits_tr, logits_te = upper(z_tr, xin_tr), upper(z_te, xin_te)
        for opt, y in (("train", y_tr), ("test", y_te)):
            if int(y.min()) < 0 or int(y.max()) >= logits_tr.shape[1]:
                raise AnalysisError(f"{opt}: labels must lie in 0..{logits_tr.shape[1] - 1} (the model's classes)")
        loss_tr = F.cross_entropy(logits_tr, yd_tr, reduction="none")
        loss_te = F.cross_entropy(logits_te, yd_te, reduction="none")
        del logits_te

    with stages.stage("pairs"):
        if o["pair_space"] == "input":
            idx = nearest_same_label(x_te, y_te, x_tr, y_tr, o["k"], min(o["max_elements"], 1 << 24))
        else:
            idx = nearest_same_label(a_te, yd_te, a_tr, yd_tr, o["k"], min(o["max_elements"], 1 << 24))
        idx = idx.to(a_tr.device)
        ti = torch.arange(x_te.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
        pi = idx.reshape(-1)

    with stages.stage("dual"):
        a_p = a_tr[pi]
        dual = dual_weights(W, a_te[ti], a_p)
        delta_loss = loss_te[ti] - loss_tr[pi]
        scale = gradient_scale(delta_loss, dual.sq_norm)
        z_dual = dual_preactivations(W, b, dual, a_p)
        dual_err = float((z_dual - z_te[ti]).abs().max())
        x_p = None if xin_tr is None else xin_tr[pi.to(xin_tr.device)]
        loss_dual = F.cross_entropy(upper(z_dual, x_p), yd_te[ti], reduction="none")
        loss_err = float((loss_dual - loss_te[ti]).abs().max())
        del z_dual, loss_dual, a_p, x_p

    with stages.stage("hessian"):
        B = None
        if method in ("kron", "ggn") and (solver == "dense" or a_tr.shape[0] * d * d <= o["max_elements"]):
            A = None if method == "kron" else upper.jacobians(z_tr, xin_tr)
            B = curvature_blocks(logits_tr, A)
            del A
        if solver == "dense":
            if B is not None:
                H = kron_sum(B, a_tr, with_bias, max_elements=min(o["max_elements"], 1 << 24))
            else:
                with torch.enable_grad():
                    H = LayerLoss(upper, a_tr, yd_tr, xin_tr, W, b, with_bias).dense()
        elif B is not None:
            matvec = kron_matvec(B, a_tr, with_bias)
        elif method in ("kron", "ggn"):
            matvec = ggn_matvec(upper, z_tr, xin_tr, a_tr, with_bias)
        else:
            loss_fn = LayerLoss(upper, a_tr, yd_tr, xin_tr, W, b, with_bias)

            def matvec(v):
                with torch.enable_grad():
                    return loss_fn.hvp()(v)

    lanczos_info = None
    with stages.stage("eigen"):
        if solver == "dense":
            evals, V = eigh_descending(H)
            del H
            if top_k is not None and top_k < n_params:
                evals, V = evals[:top_k], V[:, :top_k]
        else:
            evals, V, lanczos_info = lanczos_topk(matvec, n_params, top_k, dtype=cdt, device=a_tr.device,
                                                  tol=o["lanczos_tol"], max_iter=o["lanczos_max_iter"],
                                                  seed=o["seed"])  # fmt: skip
            V = fix_signs(V)
    partial = V.shape[1] < n_params

    with stages.stage("project"):
        wproj, residual = project(dual, V[: d * m], scale if partial else None, o["max_elements"])
        residual = residual if partial else 0.0

    with stages.stage("stats"):
        st = direction_stats(wproj, scale, min(o["max_elements"], 1 << 24))
        del wproj
        n_sharp = split_sharp_flat(evals.cpu().double().numpy(), st.sigma_g.cpu().double().numpy(),
                                   o["split"], o["split_value"], o["split_by"])  # fmt: skip
        contrib = st.contributions
        pairwise = float(delta_loss.mean())
        mean_gap = float(st.mean_terms.sum())
        total = mean_gap + float(contrib.sum()) + residual

    def np64(t):
        return t.detach().to(torch.float64).cpu().numpy()

    return DualityResult(
        eigenvalues=np64(evals), sigma_g=np64(st.sigma_g), sigma_w=np64(st.sigma_w), rho=np64(st.rho),
        mean_g=np64(st.mean_g), mean_w=np64(st.mean_w), contributions=np64(contrib),
        mean_terms=np64(st.mean_terms),
        pairwise_gap=pairwise, true_gap=float(loss_te.mean() - loss_tr.mean()),
        sharp_gap=float(contrib[:n_sharp].sum()), flat_gap=float(contrib[n_sharp:].sum()) + residual,
        n_sharp=n_sharp, mean_gap=mean_gap, residual_gap=residual,
        train_loss=float(loss_tr.mean()), test_loss=float(loss_te.mean()),
        decomposition_error=abs(total - pairwise), duality_check_error=dual_err, duality_loss_error=loss_err,
        layer=name, layer_shape=(d, m), has_bias=has_bias, bias_in_hessian=with_bias, n_params=n_params,
        weight_norm=float(lin.weight.detach().double().norm()),
        n_train=int(x_tr.shape[0]), n_test=int(x_te.shape[0]), n_pairs=int(pi.shape[0]),
        k_neighbors=int(idx.shape[1]), pair_space=o["pair_space"], hessian=method, eigensolver=solver,
        upper=upper.kind, split_rule=o["split"], split_by=o["split_by"],
        split_value=o["split_value"],
        dtype=str(cdt).replace("torch.", ""),
        lanczos_iterations=None if lanczos_info is None else lanczos_info.iterations,
        lanczos_residual=None if lanczos_info is None else lanczos_info.max_residual,
        delta_loss=np64(delta_loss) if o["keep_pairs"] else None,
        test_index=ti.cpu().numpy() if o["keep_pairs"] else None,
        train_index=pi.cpu().numpy() if o["keep_pairs"] else None,
        eigenvectors=np64(V) if o["keep_eigenvectors"] else None,
    )  # fmt: skip
