"""``decompose``: the activity-weight duality decomposition of the generalization gap for one layer.

Stages: capture the layer's inputs (forward hooks) → losses → test-train pairs → dual weights, Δℓ and the
duality check → Hessian (or its products) → eigenpairs → projections → per-direction statistics.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

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
    ggn_hessian,
    kron_hessian,
)
from analysis.hvp import HessianOperator
from analysis.lanczos import block_lanczos_topk, lanczos_topk
from analysis.layer import build_upper, capture, resolve_layer
from analysis.pairs import nearest_same_label
from analysis.progress import Stages
from analysis.result import DualityResult
from analysis.stats import DEFAULT_SPLIT, SPLIT_BY, SPLIT_RULES, check_split, direction_stats, sharp_mask

PAIR_SPACES = ("input", "layer")
HESSIANS = ("auto", "kron", "ggn", "autograd")
EIGENSOLVERS = ("auto", "dense", "lanczos", "block")
DTYPES = {"float64": torch.float64, "float32": torch.float32, "double": torch.float64, "float": torch.float32}
STAGES = ("capture", "losses", "pairs", "dual", "hessian", "eigen", "project", "stats")
DEFAULT_TOP_K = 100
# above this many parameters eigensolver=auto keeps the top-k: ResNet-18's 512×10 final layer (5 120) is still
# diagonalised fully (28 s on the 2-core CPU), DenseNet-121's 1024×10 (10 240) is not (docs/theory.md, "Top-k")
DEFAULT_DENSE_MAX = 8192


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


def _opt(default, help: str, choices=None, cli: bool = True):
    meta = {"help": help, "cli": cli}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class DecomposeOptions:
    """How :func:`decompose` pairs samples, builds and diagonalises the Hessian and splits sharp from flat.

    ``ddl analyze`` generates its flags from these fields (``--pair-space`` for ``pair_space``); the ``help``
    metadata is the flag's help.  Fields with ``cli=False`` are for the Python API only.
    """

    k: int = _opt(1, "training partners per test sample (each (test, partner) pair weighs 1/(N·k))")
    pair_space: str = _opt("input", "where nearest partners are searched: model inputs or the layer's inputs",
                           PAIR_SPACES)
    hessian: str = _opt("auto", "Hessian source: auto = kron for a final layer, ggn if piecewise linear above, "
                        "else autograd", HESSIANS)
    eigensolver: str = _opt("auto", "full eigendecomposition (dense), top-k Lanczos, or top-k block Lanczos (block: "
                            "for Hessians with a batched product, e.g. a final layer); auto: dense up to --dense-max "
                            "parameters, else block where the Hessian has per-sample blocks, else lanczos",
                            EIGENSOLVERS)
    top_k: int | None = _opt(None, f"directions kept (Lanczos default {DEFAULT_TOP_K}); the rest of the gap is "
                             "reported as the exact residual")
    dense_max: int = _opt(DEFAULT_DENSE_MAX, "largest layer (parameters) diagonalised densely by eigensolver=auto")
    include_bias: bool = _opt(False, "put the layer's bias in the Hessian, after the weights (default: the paper's "
                              "weights-only Hessian; the bias still acts as a constant)")
    split: str = _opt(DEFAULT_SPLIT, "sharp/flat rule: count = the leading n directions in eigenvalue order, top = "
                      "the n with the largest σ_g (the reference code's), steepest = at the steepest drop, fraction "
                      "= holding a fraction of the mass (docs/theory.md)", SPLIT_RULES)
    split_value: float | None = _opt(None, "steepest: search window fraction (0.5); count and top: n_sharp (10); "
                                     "fraction: mass (0.9)")
    split_by: str = _opt("sigma_g", "spectrum the split rule reads", SPLIT_BY)
    dtype: str = _opt("float64", "compute dtype from the layer upward", ("float64", "float32"))
    batch_size: int = _opt(1024, "samples per forward pass")
    max_elements: int = _opt(1 << 25, "largest dense temporary (entries) in pairs, Hessian and projections",
                             cli=False)
    lanczos_tol: float = _opt(1e-10, "Lanczos residual tolerance", cli=False)
    lanczos_max_iter: int | None = _opt(None, "Lanczos iteration cap (block: vectors in the Krylov space)", cli=False)
    lanczos_block: int = _opt(8, "block Lanczos: vectors per block (one batched Hessian product each)", cli=False)
    seed: int = _opt(0, "seed of the Lanczos start vector", cli=False)
    keep_pairs: bool = _opt(True, "store per-pair Δℓ and indices in the result", cli=False)
    keep_eigenvectors: bool = _opt(False, "store the eigenvectors in the result", cli=False)

    def checked(self) -> DecomposeOptions:
        """These options with ``split_value`` resolved, or an :class:`AnalysisError` naming the bad one."""
        check_choice("pair-space", self.pair_space, PAIR_SPACES)
        check_choice("hessian", self.hessian, HESSIANS)
        check_choice("eigensolver", self.eigensolver, EIGENSOLVERS)
        split_value = check_split(self.split, self.split_value, self.split_by)
        for name in ("k", "batch_size", "dense_max", "max_elements", "lanczos_block"):
            if getattr(self, name) < 1:
                raise AnalysisError(f"--{name.replace('_', '-')}: must be ≥ 1, got {getattr(self, name)}")
        if self.top_k is not None and self.top_k < 1:
            raise AnalysisError(f"--top-k: must be ≥ 1, got {self.top_k}")
        _dtype(self.dtype)
        return dataclasses.replace(self, split_value=split_value)


def decompose(
    model: nn.Module,
    layer: str | nn.Module | None = None,
    *,
    train,
    test,
    options: DecomposeOptions | None = None,
    progress: bool | Stages = False,
    **overrides: Any,
) -> DualityResult:
    """Decompose the pair-wise generalization gap of ``model`` in the Hessian eigenbasis of one linear layer.

    Args:
        model: any ``nn.Module`` returning logits ``[N, C]``; evaluated in eval mode (restored afterwards).
        layer: the analysed ``nn.Linear`` (module or qualified name); default: the last ``nn.Linear`` in
            ``model.named_modules()`` order.
        train: ``(x, y)`` - the correctly labelled training samples (L_train, the Hessian, the partners).
        test: ``(x, y)`` - the test samples; each is paired with its nearest same-label training samples.
        options: a :class:`DecomposeOptions`; keyword ``overrides`` replace single fields
            (``decompose(model, train=…, test=…, k=3)``).  In short: ``k`` partners per test sample, each
            (test sample, partner) a pair of its own; ``pair_space`` ``input`` (Euclidean distance of the model
            inputs, as in the paper) or ``layer``; ``hessian`` ``kron`` (closed form for a final layer),
            ``ggn`` (exact where every module above is piecewise linear), ``autograd`` or ``auto``;
            ``eigensolver`` ``dense``/``lanczos``/``block``/``auto`` — with fewer directions than parameters
            the rest of the gap is carried exactly (``residual_gap``, of it ``residual_mean_gap`` in the mean
            terms; every total equals the full eigendecomposition's, docs/theory.md "Top-k"); ``include_bias``
            puts the bias in the Hessian after the weights, θ = [W.flat, b]; the default is the paper's
            weights-only Hessian, θ = W.flat (the dual bias change is zero either way, so only the eigenbasis
            differs); ``split*`` the sharp/flat rule
            (:mod:`analysis.stats`); ``dtype`` the compute dtype from the layer upward (float64 default; float32
            about twice as fast, identities then hold to float32 precision).
        progress: show a progress bar over the stages (or a :class:`analysis.progress.Stages` to report to).
    """
    names = {f.name for f in dataclasses.fields(DecomposeOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"decompose() got unexpected options {', '.join(unknown)}")
    opts = dataclasses.replace(options or DecomposeOptions(), **overrides).checked()
    compute_dtype = _dtype(opts.dtype)
    x_tr, y_tr = _samples("train", train)
    x_te, y_te = _samples("test", test)
    name, lin = resolve_layer(model, layer)
    stages = progress if isinstance(progress, Stages) else Stages(len(STAGES), bool(progress))
    t_start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            res = _decompose(model, name, lin, x_tr, y_tr, x_te, y_te, compute_dtype, stages, opts)
    finally:
        model.train(was_training)
        if not isinstance(progress, Stages):
            stages.close()
    res.timings = {s: stages.timings[s] for s in STAGES if s in stages.timings}
    res.timings["total"] = time.perf_counter() - t_start
    return res


@dataclass
class _Layer:
    """The analysed layer's activities and everything above it, in the compute dtype."""

    name: str
    W: torch.Tensor  # [d, m]
    b: torch.Tensor | None
    a_train: torch.Tensor  # layer inputs [N_train, m]
    a_test: torch.Tensor
    upper: Any  # logits from pre-activations (analysis.layer.Upper)
    x_train: torch.Tensor | None  # model inputs, only when the upper map re-runs the model
    x_test: torch.Tensor | None
    y_train: torch.Tensor  # labels on the activities' device
    y_test: torch.Tensor
    with_bias: bool  # the bias is part of the Hessian's parameter vector

    @property
    def n_params(self) -> int:
        d, m = self.W.shape
        return d * m + (d if self.with_bias else 0)


def _capture_layer(model, name, lin, x_tr, y_tr, x_te, y_te, dtype, opts: DecomposeOptions) -> _Layer:
    cap_tr = capture(model, name, lin, x_tr, opts.batch_size)
    cap_te = capture(model, name, lin, x_te, opts.batch_size)
    upper = build_upper(model, name, lin, cap_tr, dtype, opts.batch_size)
    a_tr = cap_tr.a.to(dtype)
    dev = a_tr.device
    return _Layer(
        name=name, W=lin.weight.detach().to(dtype), b=None if lin.bias is None else lin.bias.detach().to(dtype),
        a_train=a_tr, a_test=cap_te.a.to(dtype), upper=upper,
        x_train=x_tr if upper.needs_inputs else None, x_test=x_te if upper.needs_inputs else None,
        y_train=y_tr.to(dev), y_test=y_te.to(dev), with_bias=lin.bias is not None and opts.include_bias,
    )  # fmt: skip


def _choose_methods(layer: _Layer, opts: DecomposeOptions) -> tuple[str, str, int | None]:
    """(Hessian method, eigensolver, number of directions or None for all) after resolving ``auto``."""
    method = opts.hessian
    if method == "auto":
        method = "kron" if layer.upper.kind == "identity" else ("ggn" if layer.upper.piecewise_linear else "autograd")
    if method == "kron" and layer.upper.kind != "identity":
        raise AnalysisError(
            f"--hessian: kron is the closed form for a final layer, but {layer.name!r} has layers above it; use "
            "ggn (exact for piecewise-linear layers above) or autograd"
        )
    top_k, solver, n = opts.top_k, opts.eigensolver, layer.n_params
    if solver == "auto":
        if n <= opts.dense_max and (top_k is None or top_k >= n):
            solver = "dense"
        else:
            solver = "block" if _has_blocks(layer, method, solver, opts) else "lanczos"
    if solver in ("lanczos", "block"):
        top_k = min(n, top_k if top_k is not None else DEFAULT_TOP_K)
    return method, solver, top_k


def _has_blocks(layer: _Layer, method: str, solver: str, opts: DecomposeOptions) -> bool:
    """Whether the Hessian is built from per-sample curvature blocks B_n (fast batched products)."""
    d = layer.W.shape[0]
    return method in ("kron", "ggn") and (solver == "dense" or layer.a_train.shape[0] * d * d <= opts.max_elements)


def _losses(layer: _Layer, y_tr, y_te):
    """Per-sample losses and the training logits (the Hessian needs them)."""
    z_tr, z_te = F.linear(layer.a_train, layer.W, layer.b), F.linear(layer.a_test, layer.W, layer.b)
    logits_tr, logits_te = layer.upper(z_tr, layer.x_train), layer.upper(z_te, layer.x_test)
    for option, y in (("train", y_tr), ("test", y_te)):
        if int(y.min()) < 0 or int(y.max()) >= logits_tr.shape[1]:
            raise AnalysisError(f"{option}: labels must lie in 0..{logits_tr.shape[1] - 1} (the model's classes)")
    loss_tr = F.cross_entropy(logits_tr, layer.y_train, reduction="none")
    loss_te = F.cross_entropy(logits_te, layer.y_test, reduction="none")
    return loss_tr, loss_te, logits_tr, z_tr, z_te


def _pairs(layer: _Layer, x_tr, y_tr, x_te, y_te, opts: DecomposeOptions):
    """(test index, partner index) of every pair, flattened, and the partner table [N_test, k]."""
    budget = min(opts.max_elements, 1 << 24)
    if opts.pair_space == "input":
        idx = nearest_same_label(x_te, y_te, x_tr, y_tr, opts.k, budget)
    else:
        idx = nearest_same_label(layer.a_test, layer.y_test, layer.a_train, layer.y_train, opts.k, budget)
    idx = idx.to(layer.a_train.device)
    test_idx = torch.arange(x_te.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
    return test_idx, idx.reshape(-1), idx


def _dual(layer: _Layer, test_idx, partner_idx, loss_tr, loss_te, z_te):
    """Dual weights of every pair, Δℓ, the gradient scale and the two duality checks."""
    a_p = layer.a_train[partner_idx]
    dual = dual_weights(layer.W, layer.a_test[test_idx], a_p)
    delta_loss = loss_te[test_idx] - loss_tr[partner_idx]
    scale = gradient_scale(delta_loss, dual.sq_norm)
    z_dual = dual_preactivations(layer.W, layer.b, dual, a_p)
    logits_error = float((z_dual - z_te[test_idx]).abs().max())
    x_p = None if layer.x_train is None else layer.x_train[partner_idx.to(layer.x_train.device)]
    loss_dual = F.cross_entropy(layer.upper(z_dual, x_p), layer.y_test[test_idx], reduction="none")
    loss_error = float((loss_dual - loss_te[test_idx]).abs().max())
    return dual, delta_loss, scale, logits_error, loss_error


def _hessian(layer: _Layer, method: str, solver: str, logits_tr, z_tr, opts: DecomposeOptions) -> HessianOperator:
    """The layer Hessian as an operator (its dense form for solver ``dense``, its products for ``lanczos``)."""
    a_tr, with_bias = layer.a_train, layer.with_bias
    if _has_blocks(layer, method, solver, opts):
        jac = None if method == "kron" else layer.upper.jacobians(z_tr, layer.x_train)
        return kron_hessian(curvature_blocks(logits_tr, jac), a_tr, with_bias,
                            max_elements=min(opts.max_elements, 1 << 24))
    if method in ("kron", "ggn"):
        return ggn_hessian(layer.upper, z_tr, layer.x_train, a_tr, with_bias)
    return LayerLoss(layer.upper, a_tr, layer.y_train, layer.x_train, layer.W, layer.b, with_bias).operator()


def _eigen(hessian: HessianOperator, dense: torch.Tensor | None, solver: str, top_k: int | None, n_params: int,
           dtype, device, opts: DecomposeOptions):
    """Eigenvalues (descending), eigenvectors [P, K] and the Lanczos report (None for dense, which diagonalises
    ``dense``, the operator's dense form)."""
    if solver == "dense":
        evals, V = eigh_descending(dense)
        if top_k is not None and top_k < n_params:
            evals, V = evals[:top_k], V[:, :top_k]
        return evals, V, None
    if solver == "block":
        evals, V, info = block_lanczos_topk(hessian.matmat, n_params, top_k, block=opts.lanczos_block, dtype=dtype,
                                            device=device, tol=opts.lanczos_tol, max_iter=opts.lanczos_max_iter,
                                            seed=opts.seed)  # fmt: skip
        return evals, fix_signs(V), info
    evals, V, info = lanczos_topk(hessian, n_params, top_k, dtype=dtype, device=device, tol=opts.lanczos_tol,
                                  max_iter=opts.lanczos_max_iter, seed=opts.seed)
    return evals, fix_signs(V), info


def _basis_free_totals(dual, scale: torch.Tensor, V_W: torch.Tensor, mean_w: torch.Tensor | None) -> dict:
    """Sums over all P directions that need no eigenvectors (docs/theory.md, "Top-k"): with the pair means
    ``w̄ = mean_n δW_n`` and ``ḡ = mean_n g_n``, ``Σ_k σ_w,k² = mean_n ‖δW_n‖² − ‖w̄‖²`` and likewise for g (the
    trace of a covariance is the same in every orthonormal basis), and, for ``mean_w`` of K < P directions,
    the mean terms outside them, ``Σ_{k≥K} μ_g,k μ_w,k = ḡ · (I − V Vᵀ) w̄`` (evaluated from the explicit
    remainder vector)."""
    n = dual.u.shape[0]
    w_bar = (dual.u.T @ dual.a_hat / n).reshape(-1)
    g_bar = ((scale[:, None] * dual.u).T @ dual.a_hat / n).reshape(-1)
    out = {
        "var_w": float(dual.sq_norm.mean() - w_bar @ w_bar),
        "var_g": float((scale.pow(2) * dual.sq_norm).mean() - g_bar @ g_bar),
        "residual_mean": 0.0,
    }
    if mean_w is not None:
        out["residual_mean"] = float(g_bar @ (w_bar - V_W @ mean_w))
    return out


def _decompose(model, name, lin, x_tr, y_tr, x_te, y_te, dtype, stages: Stages,
               opts: DecomposeOptions) -> DualityResult:
    with stages.stage("capture"):
        layer = _capture_layer(model, name, lin, x_tr, y_tr, x_te, y_te, dtype, opts)
    method, solver, top_k = _choose_methods(layer, opts)
    d, m = layer.W.shape
    n_params = layer.n_params
    with stages.stage("losses"):
        loss_tr, loss_te, logits_tr, z_tr, z_te = _losses(layer, y_tr, y_te)
    with stages.stage("pairs"):
        test_idx, partner_idx, partners = _pairs(layer, x_tr, y_tr, x_te, y_te, opts)
    with stages.stage("dual"):
        dual, delta_loss, scale, logits_error, loss_error = _dual(layer, test_idx, partner_idx, loss_tr, loss_te,
                                                                  z_te)
    with stages.stage("hessian"):
        hessian = _hessian(layer, method, solver, logits_tr, z_tr, opts)
        dense = hessian.dense() if solver == "dense" else None  # formed here: the stage timings say where time goes
    with stages.stage("eigen"):
        evals, V, lanczos_info = _eigen(hessian, dense, solver, top_k, n_params, dtype, layer.a_train.device, opts)
        del hessian, dense
    partial = V.shape[1] < n_params
    with stages.stage("project"):
        wproj, residual = project(dual, V[: d * m], scale if partial else None, opts.max_elements)
        residual = residual if partial else 0.0
    with stages.stage("stats"):
        st = direction_stats(wproj, scale, min(opts.max_elements, 1 << 24))
        del wproj
        sharp = torch.as_tensor(sharp_mask(evals.cpu().double().numpy(), st.sigma_g.cpu().double().numpy(),
                                           opts.split, opts.split_value, opts.split_by), device=st.sigma_g.device)
        contrib = st.contributions
        pairwise = float(delta_loss.mean())
        total = float(st.mean_terms.sum()) + float(contrib.sum()) + residual
        totals = _basis_free_totals(dual, scale, V[: d * m], st.mean_w if partial else None)
        mean_gap = float(st.mean_terms.sum()) + totals["residual_mean"]

    def np64(t):
        return t.detach().to(torch.float64).cpu().numpy()

    return DualityResult(
        eigenvalues=np64(evals), sigma_g=np64(st.sigma_g), sigma_w=np64(st.sigma_w), rho=np64(st.rho),
        mean_g=np64(st.mean_g), mean_w=np64(st.mean_w), contributions=np64(contrib),
        mean_terms=np64(st.mean_terms),
        pairwise_gap=pairwise, true_gap=float(loss_te.mean() - loss_tr.mean()),
        sharp_gap=float(contrib[sharp].sum()),
        flat_gap=float(contrib[~sharp].sum()) + residual - totals["residual_mean"],
        n_sharp=int(sharp.sum()), mean_gap=mean_gap, residual_gap=residual, residual_mean_gap=totals["residual_mean"],
        sigma_w_sq_total=totals["var_w"], sigma_g_sq_total=totals["var_g"],
        train_loss=float(loss_tr.mean()), test_loss=float(loss_te.mean()),
        decomposition_error=abs(total - pairwise), duality_check_error=logits_error, duality_loss_error=loss_error,
        layer=name, layer_shape=(d, m), has_bias=lin.bias is not None, bias_in_hessian=layer.with_bias,
        n_params=n_params, weight_norm=float(lin.weight.detach().double().norm()),
        n_train=int(x_tr.shape[0]), n_test=int(x_te.shape[0]), n_pairs=int(partner_idx.shape[0]),
        k_neighbors=int(partners.shape[1]), pair_space=opts.pair_space, hessian=method, eigensolver=solver,
        upper=layer.upper.kind, split_rule=opts.split, split_by=opts.split_by, split_value=opts.split_value,
        dtype=str(dtype).replace("torch.", ""),
        lanczos_iterations=None if lanczos_info is None else lanczos_info.iterations,
        lanczos_residual=None if lanczos_info is None else lanczos_info.max_residual,
        delta_loss=np64(delta_loss) if opts.keep_pairs else None,
        test_index=test_idx.cpu().numpy() if opts.keep_pairs else None,
        train_index=partner_idx.cpu().numpy() if opts.keep_pairs else None,
        eigenvectors=np64(V) if opts.keep_eigenvectors else None,
    )  # fmt: skip
