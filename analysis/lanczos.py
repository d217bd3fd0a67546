"""Top-k eigenpairs of a symmetric operator known only through matrix-vector products (Lanczos).

Plain Lanczos with full re-orthogonalisation (classical Gram-Schmidt, applied twice) against every previous
Lanczos vector, so the Ritz vectors stay orthonormal to working precision; that orthonormality is what makes
the decomposition and its residual exact.  The Krylov space grows until the ``k`` largest Ritz values have
residual norms ``β_j |s_{j,i}| ≤ tol · max|θ|`` (the standard a-posteriori bound ``‖H y − θ y‖``), or until
``max_iter``.  If the Krylov space becomes invariant before that, it continues from a fresh random vector
orthogonal to all previous ones, so degenerate eigenvalues are found too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class LanczosInfo:
    iterations: int
    max_residual: float  # max over the returned pairs of ‖H y − θ y‖ (a-posteriori estimate)
    converged: bool


def lanczos_topk(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    k: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    check_every: int = 5,
    seed: int = 0,
    v0: torch.Tensor | None = None,
    warn: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, LanczosInfo]:
    """The ``k`` algebraically largest eigenvalues (descending) and orthonormal eigenvectors ``[n, k]``.

    ``v0`` warm-starts the Krylov space (e.g. the previous top eigenvector when the operator changes slowly);
    ``warn=False`` silences the non-convergence warning for callers that run on a fixed iteration budget.
    """
    k = max(1, min(k, n))
    max_iter = min(n, max_iter if max_iter is not None else max(2 * k + 40, 3 * k))
    gen = torch.Generator().manual_seed(seed)
    Q = torch.zeros(max_iter + 1, n, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []

    def fresh(j: int) -> torch.Tensor | None:
        for _ in range(3):
            q = torch.randn(n, generator=gen, dtype=dtype).to(Q.device)
            for _ in range(2):
                q -= Q[:j].T @ (Q[:j] @ q)
            nq = q.norm()
            if nq > 1e-8:
                return q / nq
        return None

    Q[0] = fresh(0) if v0 is None or float(v0.norm()) == 0 else (v0 / v0.norm()).to(device=Q.device, dtype=dtype)
    j = 0
    converged = False
    scale = 0.0
    last_beta = 0.0
    while j < max_iter:
        w = matvec(Q[j])
        alpha = float(Q[j] @ w)
        for _ in range(2):
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta = float(w.norm())
        alphas.append(alpha)
        scale = max(scale, abs(alpha) + beta)
        j += 1
        invariant = beta <= 1e-12 * max(scale, 1e-300)
        last_beta = 0.0 if invariant else beta
        if j >= k and not invariant and ((j - k) % check_every == 0 or j == max_iter):
            theta, S = _ritz(alphas, betas, k)
            if theta.numel() >= k and _max_residual(theta, S, beta) <= tol * _top(theta):
                converged = True
                break
        if j == max_iter:
            break
        if invariant:
            q = fresh(j)
            if q is None:
                break
            betas.append(0.0)
            Q[j] = q
        else:
            betas.append(beta)
            Q[j] = w / beta
    theta, S = _ritz(alphas, betas, k)
    V = Q[:j].T @ S.to(device=Q.device, dtype=dtype)
    max_res = _max_residual(theta, S, last_beta)
    converged = converged or max_res <= tol * _top(theta)
    if not converged and warn:
        warnings.warn(
            f"Lanczos: top-{k} eigenpairs not converged after {j} iterations "
            f"(max residual {max_res:.3g}); raise lanczos_max_iter", stacklevel=2
        )
    return theta.to(device=Q.device, dtype=dtype), V, LanczosInfo(j, max_res, converged)


def _max_residual(theta: torch.Tensor, S: torch.Tensor, beta: float) -> float:
    return float((beta * S[-1].abs()).max()) if theta.numel() else 0.0


def _top(theta: torch.Tensor) -> float:
    return max(float(theta.abs().max()) if theta.numel() else 0.0, 1e-300)


def _ritz(alphas: list[float], betas: list[float], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of the tridiagonal matrix, eigenvalues descending."""
    J = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if J > 1:
        off = torch.tensor(betas[: J - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    theta, S = torch.linalg.eigh(T)
    kk = min(k, J)
    return theta[-kk:].flip(0), S[:, -kk:].flip(1)
