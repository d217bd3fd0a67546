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


def block_lanczos_topk(
    matmat: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    k: int,
    *,
    block: int = 8,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    seed: int = 0,
    warn: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, LanczosInfo]:
    """The ``k`` algebraically largest eigenpairs from products with blocks of vectors (block Krylov).

    The same answer as :func:`lanczos_topk` for operators whose product with ``b`` vectors costs far less than
    ``b`` products with one (one pass over the data for the whole block).  The Krylov space
    ``span[X, HX, H²X, …]`` of a random ``[n, block]`` start grows a block at a time, each new block
    orthogonalised twice against all previous ones; ``H Q`` is kept, so the Rayleigh-Ritz pairs ``(θ, Q s)`` of
    ``T = Qᵀ H Q`` have explicit residuals ``‖H Q s − θ Q s‖`` (not estimates).  Stops when the ``k`` largest
    are all below ``tol · max|θ|`` or the space holds ``max_iter`` vectors (default ``max(6k, 2k + 10·block)``).
    Columns that fall into the space already spanned (an invariant subspace, e.g. a null space) are replaced
    by fresh random directions, so degenerate eigenvalues are found too.  ``iterations`` counts vectors.
    """
    k = max(1, min(k, n))
    b = max(1, min(block, n))
    cap = min(n, max_iter if max_iter is not None else max(6 * k, 2 * k + 10 * b))
    gen = torch.Generator().manual_seed(seed)
    Q = torch.zeros(n, cap, dtype=dtype, device=device)
    HQ = torch.zeros(n, cap, dtype=dtype, device=device)
    T = torch.zeros(cap, cap, dtype=dtype, device=device)

    def orthonormal_block(X: torch.Tensor, j: int) -> torch.Tensor:
        """Columns of X orthonormalised against Q[:, :j] and each other (block Gram-Schmidt and QR, then once
        more for working-precision orthogonality); columns (nearly) in the span already are replaced by random
        ones, or dropped after a few tries."""
        X = X[:, : n - j]
        Qj = Q[:, :j]
        for _ in range(4):
            norm0 = X.norm(dim=0).clamp_min(1e-300)
            Y = X - Qj @ (Qj.T @ X)
            Y = Y - Qj @ (Qj.T @ Y)
            Y, R = torch.linalg.qr(Y)
            weak = torch.diagonal(R).abs() <= 1e-8 * norm0  # what is new in each column, relative to its size
            if not bool(weak.any()):
                break
            X = X.clone()
            X[:, weak] = torch.randn(n, int(weak.sum()), generator=gen, dtype=dtype).to(Q.device)
        Y = Y[:, ~weak]
        Y = Y - Qj @ (Qj.T @ Y)
        return torch.linalg.qr(Y)[0]

    X = orthonormal_block(torch.randn(n, b, generator=gen, dtype=dtype).to(Q.device), 0)
    j = 0
    theta = S = None
    max_res, converged = float("inf"), False
    while X.shape[1] > 0:
        w = X.shape[1]
        Q[:, j : j + w] = X
        HQ[:, j : j + w] = matmat(X)
        T[: j + w, j : j + w] = Q[:, : j + w].T @ HQ[:, j : j + w]
        T[j : j + w, :j] = T[:j, j : j + w].T
        j += w
        Tj = (T[:j, :j] + T[:j, :j].T) / 2
        evals, evecs = torch.linalg.eigh(Tj)
        kk = min(k, j)
        theta, S = evals[-kk:].flip(0), evecs[:, -kk:].flip(1)
        R = HQ[:, :j] @ S - Q[:, :j] @ (S * theta)
        max_res = float(R.norm(dim=0).max())
        top = max(float(theta.abs().max()), 1e-300)
        if kk == k and max_res <= tol * top:
            converged = True
            break
        if j >= cap:
            break
        X = orthonormal_block(HQ[:, j - w : j].clone(), j)[:, : cap - j]
    V = Q[:, :j] @ S
    if not converged and warn:
        warnings.warn(
            f"block Lanczos: top-{k} eigenpairs not converged with {j} vectors (max residual {max_res:.3g}); raise "
            "lanczos_max_iter", stacklevel=2
        )
    return theta, V, LanczosInfo(j, max_res, converged)
