"""Landscape-dependent noise of multi-learner SGD at the average weight w̄ (docs/theory.md, "Noise").

Measured during training (``ddl train --measure-noise K``, every K steps, on every backend):

* SSGD noise ``ξ = ∇L_B(w̄) − ∇L(w̄)``: the all-learner minibatch gradient at w̄ minus the gradient of the
  training loss L over the whole training set (the set the minibatches are drawn from, labels as trained, so
  that ξ has mean zero), computed exactly in chunks.  ``--noise-samples N`` replaces the whole set by a seeded,
  class-stratified sample of N: an explicit approximation, recorded in every record (``reference_samples``,
  ``reference_exact``);
* DPSGD's extra noise ``η_DP = (1/n) Σ_a [∇L_{μ_a}(w_a) − ∇L_{μ_a}(w̄)]`` and its linearisation
  ``(1/n) Σ_a H_{μ_a}(w̄) δw_a`` (Hessian-vector products), with their relative difference;
* the landscape's sharpness: the top Hessian eigenvalues of L at w̄ (over the same samples as the full
  gradient), by Lanczos on Hessian-vector products of the whole model, iterated until every returned pair has
  a residual ``‖H v − λ v‖ ≤ tol · |λ_1|`` (or the iteration cap), warm-started from the previous
  measurement's eigenvectors; iterations, residual and convergence are in every record;
* the consensus distance mean_a ‖δw_a‖², and the share of ‖η_DP‖², of Σ_a‖δw_a‖² and of ‖ξ‖² in the span of the
  top-k eigenvectors (a random direction would put k/P there).

**The measured network is the deterministic one** (eval mode): dropout is off and BatchNorm normalises with
the running statistics of the averaged model (the mean of the learners' running statistics, what w̄ is
evaluated with) at w̄ *and* at every learner's weights.  L is then a function of the weights alone: every
gradient, the Hessian Lanczos iterates on, and η_DP (exactly 0 when the learners agree) are well defined,
where in train mode each evaluation would draw its own dropout mask and normalise with its own batch.  For
models without dropout and BatchNorm (the paper's MLP) eval and train mode are the same function.

**Measuring never changes training**: the meter works in float64 on copies, draws no random numbers from the
training streams (vmap runs with ``randomness="error"``, Lanczos has its own generator), and the random state
is forked around each measurement besides, so a run is bit-identical with and without ``--measure-noise``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.func import grad, vmap

from analysis.hvp import HessianOperator, loss_hessian, loss_hvp
from analysis.lanczos import lanczos_topk
from ddl.comm import Collective

# torch's own forward-AD decompositions call the deprecated torch.jit.script on first use of jvp; the warning
# is about torch internals, not about this code, and would otherwise interrupt every training's progress bar
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


LossFn = Callable[..., tuple[torch.Tensor, Any]]  # (w [P], buffers, x, y) -> (loss, aux)

MEASURE_DTYPE = torch.float64


class NoiseMeter:
    """Measures the noise terms for one worker's learners; all workers call :meth:`measure` together.

    Explicit inputs only:

    * ``loss_fn(w, buffers, x, y) -> (loss, aux)``: the *deterministic* (eval-mode) mean loss of one minibatch
      at flat weights ``w`` with BatchNorm running statistics ``buffers``; its gradients and Hessian-vector
      products are taken with torch.func (the trainer passes :meth:`ddl.compute.learners.LearnerGradients.eval_loss`);
    * ``comm``: the transport (sums over all learners, broadcast from the main worker);
    * ``x_ref``, ``y_ref``: the training samples that define the "full" gradient and Hessian (all of them, or
      an approximating sample, then ``exact=False``);
    * at each :meth:`measure`: the step, this worker's learner weights ``W`` [m, P], the average ``w_bar`` and
      its buffers, and the minibatches ``xs``, ``ys`` of the step about to be taken.

    ``tol`` and ``max_iter`` bound Lanczos; ``chunk`` is the number of reference samples per forward pass.
    """

    def __init__(self, loss_fn: LossFn, comm: Collective, x_ref: torch.Tensor, y_ref: torch.Tensor, *,
                 exact: bool = True, top_k: int = 5, tol: float = 1e-6, max_iter: int = 300, chunk: int = 2048,
                 seed: int = 0, steps_per_epoch: int = 1):  # fmt: skip
        self.comm = comm
        self.x, self.y = x_ref, y_ref
        self.exact = exact
        self.top_k = top_k
        self.tol = tol
        self.max_iter = max_iter
        self.chunk = max(1, chunk)
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self._V0: torch.Tensor | None = None
        self.loss_fn = loss_fn
        self._grad = grad(loss_fn, has_aux=True)

        # H v reverse over reverse (analysis.hvp), several times faster than forward-over-reverse for these models
        hvp = loss_hvp(lambda w, buffers, x, y: self._grad(w, buffers, x, y)[0])
        # per learner: its own weights (or w̄), the shared buffers, its own minibatch; random ops are an error
        self._grads_own = vmap(self._grad, in_dims=(0, None, 0, 0), randomness="error")
        self._hvp_learners = vmap(hvp, in_dims=(None, 0, None, 0, 0), randomness="error")

    # ---- the reference ("full") loss, exactly, in chunks ----------------------------------------------------
    def _chunks(self):
        N = self.x.shape[0]
        for i in range(0, N, self.chunk):
            x = self.x[i : i + self.chunk]
            yield x.shape[0] / N, x.to(MEASURE_DTYPE), self.y[i : i + self.chunk]

    def full_grad(self, w: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        """∇L(w) over the reference samples (the mean loss, summed chunk by chunk with weights |c|/N)."""
        g = torch.zeros_like(w)
        for frac, x, y in self._chunks():
            g += frac * self._grad(w, buffers, x, y)[0]
        return g

    def full_hessian(self, w: torch.Tensor, buffers: dict[str, torch.Tensor]) -> HessianOperator:
        """H(w) of L over the reference samples (plain double backward, chunk by chunk)."""
        return loss_hessian(lambda w_, x, y: self.loss_fn(w_, buffers, x, y)[0], w,
                            lambda: ((frac, (x, y)) for frac, x, y in self._chunks()))

    def full_hvp(self, w: torch.Tensor, v: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        """H(w) v of L over the reference samples."""
        return self.full_hessian(w, buffers).matvec(v)

    # ---- one measurement ------------------------------------------------------------------------------------
    @property
    def warm_start(self) -> torch.Tensor | None:
        """The previous measurement's top eigenvectors (the next Lanczos start); saved in checkpoints so a resumed
        run measures exactly as an uninterrupted one."""
        return self._V0

    @warm_start.setter
    def warm_start(self, V: torch.Tensor | None) -> None:
        self._V0 = V

    def measure(self, step: int, W: torch.Tensor, w_bar: torch.Tensor, bufs_bar: dict[str, torch.Tensor],
                xs: torch.Tensor, ys: torch.Tensor) -> dict:  # fmt: skip
        """The record of one measurement (identical on every worker)."""
        devices = [w_bar.device] if w_bar.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._measure(step, W, w_bar, bufs_bar, xs, ys)

    def _measure(self, step, W, w_bar, bufs_bar, xs, ys) -> dict:
        comm = self.comm
        n = comm.n
        dt = MEASURE_DTYPE
        W, w_bar, xs = W.to(dt), w_bar.to(dt), xs.to(dt)
        bufs = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in bufs_bar.items()}
        delta = W - w_bar
        # w̄ through the same batched kernel as the learners' weights: equal weights give bit-equal gradients
        W_bar = w_bar.expand_as(W).contiguous()
        G_bar = self._grads_own(W_bar, bufs, xs, ys)[0]
        if torch.equal(W, W_bar):
            # this worker's learners all sit at w̄ (SSGD, or DPSGD before learners part): their own gradients
            # are G_bar bit for bit and H·0 = 0, so the two costliest passes are skipped with the same record
            G_own, HD = G_bar, torch.zeros_like(W)
        else:
            G_own = self._grads_own(W, bufs, xs, ys)[0]
            HD = self._hvp_learners(w_bar, delta, bufs, xs, ys)
        sums = comm.allreduce_sum(torch.stack([(G_own - G_bar).sum(0), G_bar.sum(0), HD.sum(0)]))
        eta, g_mb, eta_lin = sums[0] / n, sums[1] / n, sums[2] / n
        # curvature at w̄ is computed on the main worker and broadcast, so every worker projects the same way
        P = w_bar.numel()
        k = min(self.top_k, P)
        packed = torch.zeros(P * (k + 1) + k + 3, dtype=dt, device=w_bar.device)
        if comm.is_main:
            g_full = self.full_grad(w_bar, bufs)
            v0 = None if self._V0 is None else self._V0.sum(1)  # warm start rich in all previous top directions
            evals, V, info = lanczos_topk(self.full_hessian(w_bar, bufs), P, k, dtype=dt,
                                          device=w_bar.device, tol=self.tol, max_iter=self.max_iter,
                                          seed=self.seed + step, v0=v0, warn=False)  # fmt: skip
            packed[:P] = g_full
            packed[P : P * (k + 1)] = V.T.reshape(-1)
            packed[P * (k + 1) : P * (k + 1) + k] = evals
            packed[-3:] = torch.tensor([info.iterations, info.max_residual, float(info.converged)], dtype=dt)
        packed = comm.broadcast(packed, 0)
        g_full = packed[:P]
        V = packed[P : P * (k + 1)].view(k, P).T
        evals = packed[P * (k + 1) : P * (k + 1) + k]
        iterations, residual, converged = packed[-3:].tolist()
        self._V0 = V.clone()
        xi = g_mb - g_full
        dw_sq = float(comm.allreduce_sum((delta**2).sum().reshape(1))[0])
        dw_top = comm.allreduce_sum(((delta @ V) ** 2).sum(0))  # [k]
        eta_sq = float(eta @ eta)
        xi_sq = float(xi @ xi)
        top = abs(float(evals[0])) if k else 0.0
        return {
            "step": step,
            "epoch": step / self.steps_per_epoch,
            "ssgd_noise_sq": xi_sq,
            "dpsgd_noise_sq": eta_sq,
            "dpsgd_noise_lin_sq": float(eta_lin @ eta_lin),
            "dpsgd_lin_rel_err": float((eta - eta_lin).norm() / eta.norm()) if eta_sq > 0 else 0.0,
            "total_noise_sq": float((xi + eta) @ (xi + eta)),
            "grad_full_sq": float(g_full @ g_full),
            "consensus": dw_sq / n,
            "top_eigenvalues": evals.tolist(),
            "sharpness": float(evals[0]),
            "eta_top_share": ((eta @ V) ** 2 / eta_sq).tolist() if eta_sq > 0 else [0.0] * k,
            "dw_top_share": (dw_top / dw_sq).tolist() if dw_sq > 0 else [0.0] * k,
            "ssgd_top_share": ((xi @ V) ** 2 / xi_sq).tolist() if xi_sq > 0 else [0.0] * k,
            "random_share": 1.0 / P,
            "lanczos_iterations": int(iterations),
            "lanczos_residual": residual,
            "lanczos_rel_residual": residual / top if top > 0 else residual,
            "lanczos_converged": bool(converged),
            "lanczos_tol": self.tol,
            "reference_samples": int(self.x.shape[0]),
            "reference_exact": self.exact,
            "network": "eval",
        }
