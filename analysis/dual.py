"""Minimal dual weights, effective gradients and their projections (docs/theory.md §1, §3, §4).

For a pair (test n, training partner n) with layer inputs ``a'_n`` (test) and ``a_n`` (partner),
``Δa_n = a'_n − a_n`` and the minimal dual weight change is the rank-1 matrix

    δW_n = u_n â_nᵀ,   u_n = W Δa_n  (d),   â_n = a_n / ‖a_n‖²  (m),

so that ``(W + δW_n) a_n = W a'_n``.  The effective gradient is ``g_n = Δℓ_n δW_n / ‖δW_n‖² = s_n δW_n``
with ``s_n = Δℓ_n / ‖δW_n‖²`` and ``‖δW_n‖² = ‖u_n‖² / ‖a_n‖²``.  Only ``u``, ``â`` and ``s`` are stored;
dense ``[n, d·m]`` blocks exist only a chunk of pairs at a time, while projecting onto eigenvectors.  As
``g_n`` is a multiple of ``δW_n``, one projection gives both: ``g_{n,k} = s_n w_{n,k}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DualWeights:
    u: torch.Tensor  # [N, d]  W Δa_n
    a_hat: torch.Tensor  # [N, m]  a_n / ‖a_n‖²
    sq_norm: torch.Tensor  # [N]  ‖δW_n‖²_F

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape[1], self.a_hat.shape[1]

    def dense(self, rows: slice = slice(None)) -> torch.Tensor:
        """``δW_n`` flattened row-major (out-major, like ``weight.reshape(-1)``), ``[n, d·m]``."""
        u, a = self.u[rows], self.a_hat[rows]
        return (u[:, :, None] * a[:, None, :]).reshape(u.shape[0], -1)


def dual_weights(W: torch.Tensor, a_test: torch.Tensor, a_train: torch.Tensor) -> DualWeights:
    """All pairs' minimal dual weights at once (row n of ``a_test``/``a_train`` is pair n)."""
    u = (a_test - a_train) @ W.T
    nrm2 = a_train.pow(2).sum(1)
    # a zero partner activity admits no dual weight (W̃·0 = 0); δW = 0 there and the duality check shows it
    inv = torch.where(nrm2 > 0, 1.0 / torch.where(nrm2 > 0, nrm2, 1.0), 0.0)
    a_hat = a_train * inv[:, None]
    sq_norm = u.pow(2).sum(1) * inv
    return DualWeights(u, a_hat, sq_norm)


def gradient_scale(delta_loss: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """``s_n = Δℓ_n / ‖δW_n‖²`` (0 where δW_n = 0), so that ``g_n = s_n δW_n`` and ``g_n · δW_n = Δℓ_n``."""
    ok = sq_norm > 0
    return torch.where(ok, delta_loss / torch.where(ok, sq_norm, 1.0), 0.0)


def dual_preactivations(W: torch.Tensor, b: torch.Tensor | None, dual: DualWeights,
                        a_train: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """``(W + δW_n) a_n + b`` for every pair, evaluated as written (the duality check's left side)."""
    z = a_train @ W.T + dual.u * (dual.a_hat * a_train).sum(1, keepdim=True)
    return z if b is None else z + b


def project(dual: DualWeights, V_W: torch.Tensor, scale: torch.Tensor | None = None,
            max_elements: int = 1 << 25) -> tuple[torch.Tensor, float | None]:  # fmt: skip
    """Projections ``w_{n,k} = δW_n · v_k``, ``[N, K]``, onto orthonormal eigenvectors ``v_k`` whose weight
    rows are ``V_W`` (``V[:d·m]``; bias rows never matter because the dual bias change is zero).

    With ``scale`` (the ``s_n``) also returns the exact residual ``mean_n g_n · (I − V Vᵀ) δW_n``: the part of
    the pair-wise gap outside span(V), evaluated from the explicit residual vectors
    ``δW_n − V_W w_n`` rather than as the difference of two sums.  Pairs are processed a chunk at a time so at
    most about ``max_elements`` dense entries exist at once.
    """
    n = dual.u.shape[0]
    p, k = V_W.shape
    rows = max(1, max_elements // (p + k))
    out = torch.empty(n, k, dtype=V_W.dtype, device=V_W.device)
    res = torch.zeros((), dtype=V_W.dtype, device=V_W.device)
    for s in range(0, n, rows):
        sl = slice(s, min(n, s + rows))
        D = dual.dense(sl)
        w = torch.mm(D, V_W)
        out[sl] = w
        if scale is not None:
            res += (scale[sl] * (D * (D - w @ V_W.T)).sum(1)).sum()
    return out, (float(res / n) if scale is not None else None)
