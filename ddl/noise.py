"""Landscape-dependent noise of multi-learner SGD at the average weight w̄ (docs/theory.md, "Noise").

Measured during training (``ddl train --measure-noise K``, every K steps, on every backend):

* SSGD noise ``ξ = ∇L_B(w̄) − ∇L(w̄)``: the all-learner minibatch gradient at w̄ minus the gradient of the
  training loss over a fixed sample of the training set (``--noise-samples``);
* DPSGD's extra noise ``η_DP = (1/n) Σ_a [∇L_{μ_a}(w_a) − ∇L_{μ_a}(w̄)]`` and its linearisation
  ``(1/n) Σ_a H_{μ_a}(w̄) δw_a`` (Hessian-vector products), with their relative difference;
* the landscape's sharpness: the top Hessian eigenvalues of the training loss at w̄ (Lanczos on HVPs, whole
  model, warm-started from the previous measurement), and the consensus distance mean_a ‖δw_a‖²;
* the share of ‖η_DP‖², of Σ_a‖δw_a‖² and of ‖ξ‖² that lies in the span of the top-k eigenvectors (a random
  direction would put k/P there).

Everything is computed from the learners' own minibatches of the step about to be taken; BatchNorm running
statistics are left untouched (the measurement works on copies).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.func import grad, jvp, vmap

from analysis.lanczos import lanczos_topk
from ddl.comm import Collective

# torch's own forward-AD decompositions call the deprecated torch.jit.script on first use of jvp; the warning
# is about torch internals, not about this code, and would otherwise interrupt every training's progress bar
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


LossFn = Callable[..., tuple[torch.Tensor, Any]]  # (w [P], buffers, x, y) -> (loss, aux)
LearnerGrads = Callable[..., tuple[torch.Tensor, torch.Tensor, dict]]  # (W [m,P], buffers, xs, ys) -> (G, losses, bufs)


class NoiseMeter:
    """Measures the noise terms for one worker's learners; all workers call :meth:`measure` together.

    Explicit inputs only:

    * ``loss_fn(w, buffers, x, y) -> (loss, aux)``: one learner's minibatch loss at flat weights ``w`` (its
      gradient and Hessian-vector products are taken with torch.func);
    * ``learner_grads(W, buffers, xs, ys) -> (G, losses, buffers)``: the trainer's own per-learner gradients, so
      the measured gradients are bit for bit those the algorithm uses;
    * ``comm``: the transport (sums over all learners, broadcast from the main worker);
    * ``x_ref``, ``y_ref``: the training samples that define the "full" gradient and Hessian;
    * at each :meth:`measure`: the step, this worker's learner weights ``W`` [m, P] and buffers, the average
      ``w_bar`` and its buffers, and the minibatches ``xs``, ``ys`` of the step about to be taken.
    """

    def __init__(self, loss_fn: LossFn, learner_grads: LearnerGrads, comm: Collective, x_ref: torch.Tensor,
                 y_ref: torch.Tensor, *, top_k: int = 5, iters: int = 20, seed: int = 0,
                 steps_per_epoch: int = 1):
        self.comm = comm
        self.learner_grads = learner_grads
        self.x, self.y = x_ref, y_ref
        self.top_k = top_k
        self.iters = iters
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self._v0: torch.Tensor | None = None
        self._grad = grad(loss_fn, has_aux=True)

        def hvp(w, v, buffers, x, y):
            return jvp(lambda w_: self._grad(w_, buffers, x, y)[0], (w,), (v,))[1]

        self._hvp = hvp
        self._hvp_learners = vmap(hvp, in_dims=(None, 0, 0, 0, 0), randomness="different")

    def _full_grad_and_hvp(self, w_bar, buffers):
        g = self._grad(w_bar, buffers, self.x, self.y)[0]
        return g, (lambda v: self._hvp(w_bar, v.to(w_bar.dtype), buffers, self.x, self.y).double())

    def measure(self, step: int, W: torch.Tensor, buffers: dict[str, torch.Tensor], w_bar: torch.Tensor,
                bufs_bar: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> dict:
        comm = self.comm
        n, m = comm.n, comm.m
        delta = W - w_bar
        bufs = {k: v.clone() for k, v in buffers.items()}  # the learners' running statistics stay untouched
        G_own, _, _ = self.learner_grads(W, bufs, xs, ys)
        G_bar, _, _ = self.learner_grads(w_bar.expand(m, -1).contiguous(), bufs, xs, ys)
        HD = self._hvp_learners(w_bar, delta, bufs, xs, ys)
        sums = comm.allreduce_sum(torch.stack([(G_own - G_bar).sum(0), G_bar.sum(0), HD.sum(0)]))
        eta, g_mb, eta_lin = sums[0] / n, sums[1] / n, sums[2] / n
        # curvature at w̄ is computed on the main worker and broadcast, so every worker projects the same way
        P = w_bar.numel()
        k = min(self.top_k, P)
        packed = torch.zeros(P * (k + 1) + k, dtype=w_bar.dtype, device=w_bar.device)
        if comm.is_main:
            g_full, matvec = self._full_grad_and_hvp(w_bar, bufs_bar)
            # a fixed iteration budget per measurement, warm-started: the landscape moves little between them
            evals, V, _ = lanczos_topk(matvec, P, k, device=w_bar.device, tol=1e-8, max_iter=self.iters,
                                       seed=self.seed + step, v0=self._v0, warn=False)
            packed[:P] = g_full
            packed[P : P * (k + 1)] = V.T.reshape(-1).to(w_bar.dtype)
            packed[P * (k + 1) :] = evals.to(w_bar.dtype)
        packed = comm.broadcast(packed, 0)
        g_full = packed[:P]
        V = packed[P : P * (k + 1)].view(k, P).T.double()
        evals = packed[P * (k + 1) :].double()
        self._v0 = V[:, 0].clone()
        xi = g_mb - g_full
        d64 = delta.double()
        dw_sq = float(comm.allreduce_sum((d64**2).sum().reshape(1))[0])
        dw_top = comm.allreduce_sum(((d64 @ V) ** 2).sum(0))  # [k]
        eta64, lin64, xi64 = eta.double(), eta_lin.double(), xi.double()
        eta_sq = float(eta64 @ eta64)
        rec = {
            "step": step,
            "epoch": step / self.steps_per_epoch,
            "ssgd_noise_sq": float(xi64 @ xi64),
            "dpsgd_noise_sq": eta_sq,
            "dpsgd_noise_lin_sq": float(lin64 @ lin64),
            "dpsgd_lin_rel_err": float((eta64 - lin64).norm() / eta64.norm()) if eta_sq > 0 else 0.0,
            "total_noise_sq": float((xi64 + eta64) @ (xi64 + eta64)),
            "grad_full_sq": float(g_full.double() @ g_full.double()),
            "consensus": dw_sq / n,
            "top_eigenvalues": evals.tolist(),
            "sharpness": float(evals[0]),
            "eta_top_share": ((eta64 @ V) ** 2 / eta_sq).tolist() if eta_sq > 0 else [0.0] * k,
            "dw_top_share": (dw_top / dw_sq).tolist() if dw_sq > 0 else [0.0] * k,
            "ssgd_top_share": ((xi64 @ V) ** 2 / (xi64 @ xi64)).tolist(),
            "random_share": 1.0 / P,
        }
        return rec
