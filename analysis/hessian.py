"""The Hessian of the mean training loss with respect to the analysed layer's parameters (docs/theory.md §4).

Parameters are flattened as ``θ = [W.reshape(-1), b]``: the weight row-major (out-major, like
``weight.reshape(-1)``), followed by the bias when it is included.  With ``z_n = W a_n + b`` and softmax
cross-entropy on ``logits = f(z_n)``, the Hessian is

    H = mean_n B_n ⊗ (ã_n ã_nᵀ) + (curvature of f),   B_n = A_nᵀ S_n A_n,   S_n = diag(p_n) − p_n p_nᵀ,

where ``A_n = ∂logits/∂z_n`` and ``ã_n = [a_n; 1]`` when the bias is included (its block is then moved to
the end, to match ``θ``).  Three exact ways to get H (or its products with vectors):

* ``kron``     - final layer (``f`` the identity, ``A_n = I``): the Kronecker-sum closed form above.
* ``ggn``      - ``f`` piecewise linear (ReLU/Linear/pooling/... chains): its curvature vanishes almost
  everywhere, so H is exactly the Gauss-Newton matrix above, with ``A_n`` from torch.func Jacobians.
  (On other ``f`` it is the Gauss-Newton approximation, available on request.)
* ``autograd`` - any ``f``: torch.func forward-over-reverse Hessian-vector products.

The Kronecker sum is formed with a few large matrix products: either over the packed upper triangles of
``B_n`` and ``ã_n ã_nᵀ`` (small ``m``) or block by block (large ``m``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from analysis.hvp import HessianOperator
from analysis.layer import Upper, quiet_forward_ad

# The packed form does half the multiply-adds of the block form but writes Tm = m(m+1)/2 packed products per
# sample; that traffic dominates unless m is small or each product is reused by many (Td ≥ 256) rows of B.
_PACKED_MAX_M = 96
_PACKED_MIN_TD = 256
_PACKED_CHUNK = 1 << 22  # entries of the packed ã ãᵀ per chunk in the packed form
_BLOCK_CHUNK = 1 << 18  # entries of ã per chunk in the block-by-block form (about L2-sized)


def softmax_flushed(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities with those below ``sqrt(tiny) / eps`` set to 0.

    Confident predictions make probabilities, and above all their products ``p_c p_c'``, subnormal (in
    float32 already for logit gaps above ~45), and x86 arithmetic on subnormal numbers is up to 100× slower.
    After the flush every product of two probabilities is a normal number; the dropped mass (< 1e-12 in
    float32, < 1e-138 in float64) is far below the dtype's resolution of the O(1) entries it is summed with.
    """
    fi = torch.finfo(logits.dtype)
    p = torch.softmax(logits, dim=1)
    return p.masked_fill_(p < fi.tiny**0.5 / fi.eps, 0.0)


def curvature_blocks(logits: torch.Tensor, A: torch.Tensor | None = None) -> torch.Tensor:
    """``B_n = A_nᵀ (diag(p_n) − p_n p_nᵀ) A_n`` per sample, ``[N, d, d]`` (``A = None``: ``A_n = I``)."""
    p = softmax_flushed(logits)
    if A is None:
        return torch.diag_embed(p).addcmul_(p[:, :, None], p[:, None, :], value=-1.0)
    PA = A * p[:, :, None]
    Ap = PA.sum(1)
    # in place: a broadcast outer product would allocate (and page-fault) another [N, d, d] tensor
    return torch.bmm(PA.transpose(1, 2), A).addcmul_(Ap[:, :, None], Ap[:, None, :], value=-1.0)


def _augment(a: torch.Tensor, with_bias: bool) -> torch.Tensor:
    return torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype, device=a.device)], 1) if with_bias else a


def _to_theta_order(H: torch.Tensor, d: int, m0: int, with_bias: bool) -> torch.Tensor:
    """Reorder a Hessian indexed by (i, j) over ``ã = [a; 1]`` into ``θ = [W.flat, b]`` order."""
    if not with_bias:
        return H
    m = m0 + 1
    rows = torch.arange(d, device=H.device)[:, None] * m
    inv = torch.cat([(rows + torch.arange(m0, device=H.device)[None, :]).reshape(-1), rows[:, 0] + m0])
    return H.index_select(0, inv).index_select(1, inv)


def _sym_index(n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper-triangle pairs (i ≤ j) and the ``[n, n]`` map from (i, j) to the pair's packed position."""
    iu = torch.triu_indices(n, n, device=device)
    pos = torch.empty(n, n, dtype=torch.long, device=device)
    pos[iu[0], iu[1]] = torch.arange(iu.shape[1], device=device)
    pos[iu[1], iu[0]] = torch.arange(iu.shape[1], device=device)
    return iu, pos


def _pack_sym(B: torch.Tensor) -> torch.Tensor:
    """Row-major upper triangles (i ≤ j) of ``[N, d, d]``, ``[N, d(d+1)/2]`` (slices: column gathers are slow)."""
    n, d, _ = B.shape
    out = torch.empty(n, d * (d + 1) // 2, dtype=B.dtype, device=B.device)
    off = 0
    for i in range(d):
        out[:, off : off + d - i] = B[:, i, i:]
        off += d - i
    return out


def _pack_outer(a: torch.Tensor) -> torch.Tensor:
    """Upper triangles of the outer products ``a_n a_nᵀ`` in the same order as :func:`_pack_sym`."""
    n, m = a.shape
    out = torch.empty(n, m * (m + 1) // 2, dtype=a.dtype, device=a.device)
    off = 0
    for i in range(m):
        torch.mul(a[:, i : i + 1], a[:, i:], out=out[:, off : off + m - i])
        off += m - i
    return out


def kron_sum(B: torch.Tensor, a: torch.Tensor, with_bias: bool = False, max_elements: int = 1 << 24,
             method: str | None = None) -> torch.Tensor:  # fmt: skip
    """``mean_n B_n ⊗ (ã_n ã_nᵀ)`` as a dense ``[P, P]`` matrix in θ order (see the module docstring).

    ``B`` must be symmetric per sample.  ``method``: ``"packed"`` (one product over the packed upper
    triangles of both factors), ``"blocks"`` (one ``ãᵀ diag(B[:, i, i']) ã`` product per pair i ≤ i') or
    None to choose by the sizes.
    """
    n, d, _ = B.shape
    m0 = a.shape[1]
    at = _augment(a, with_bias)
    m = at.shape[1]
    method = method or ("packed" if m <= _PACKED_MAX_M or d * (d + 1) // 2 >= _PACKED_MIN_TD else "blocks")
    if method == "packed":
        iu_d, pos_d = _sym_index(d, a.device)
        iu_m, pos_m = _sym_index(m, a.device)
        G = torch.zeros(iu_d.shape[1], iu_m.shape[1], dtype=a.dtype, device=a.device)
        rows = max(16, min(max_elements, _PACKED_CHUNK) // iu_m.shape[1])
        for s in range(0, n, rows):
            G.addmm_(_pack_sym(B[s : s + rows]).T, _pack_outer(at[s : s + rows]))
        H = G[pos_d][:, :, pos_m]  # [d, d, m, m]
        H = H.permute(0, 2, 1, 3).reshape(d * m, d * m)
    elif method == "blocks":
        iu_d, pos_d = _sym_index(d, a.device)
        Bp = B[:, iu_d[0], iu_d[1]].contiguous()
        blocks = torch.zeros(iu_d.shape[1], m, m, dtype=a.dtype, device=a.device)
        # a cache-sized chunk of samples is weighted once per block and reused from cache by the product
        rows = max(16, min(max_elements, _BLOCK_CHUNK) // m)
        for s in range(0, n, rows):
            ac, Bc = at[s : s + rows], Bp[s : s + rows]
            acT = ac.T.contiguous()
            for q in range(iu_d.shape[1]):
                blocks[q].addmm_(acT, ac * Bc[:, q, None])
        # every block Σ_n B_n[i, j] ã_n ã_nᵀ is symmetric, so block (j, i) = block (i, j)
        H = blocks[pos_d].permute(0, 2, 1, 3).reshape(d * m, d * m)
        del blocks
    else:
        raise ValueError(f"kron_sum: unknown method {method!r}")
    return _to_theta_order(H / n, d, m0, with_bias)


def _split_theta(v: torch.Tensor, d: int, m0: int, with_bias: bool):
    vw = v[: d * m0].reshape(d, m0)
    vb = v[d * m0 :] if with_bias else None
    return vw, vb


def kron_matvec(B: torch.Tensor, a: torch.Tensor, with_bias: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v ↦ H v`` for ``H = mean_n B_n ⊗ ã_n ã_nᵀ`` without forming H (O(N d m) per product)."""
    n, d, _ = B.shape
    m0 = a.shape[1]

    def mv(v: torch.Tensor) -> torch.Tensor:
        vw, vb = _split_theta(v, d, m0, with_bias)
        t = a @ vw.T
        if vb is not None:
            t = t + vb
        s = torch.bmm(B, t[:, :, None])[:, :, 0]
        out = (s.T @ a).reshape(-1) / n
        return torch.cat([out, s.sum(0) / n]) if with_bias else out

    return mv


def ggn_matvec(upper: Upper, z: torch.Tensor, x: torch.Tensor | None, a: torch.Tensor, with_bias: bool,
               chunk: int = 4096) -> Callable[[torch.Tensor], torch.Tensor]:  # fmt: skip
    """``v ↦ G v`` for the Gauss-Newton matrix, through one jvp and one vjp of the upper map per chunk
    (for layers whose per-sample ``B_n`` would not fit in memory)."""
    from torch.func import jvp, vjp

    n, d = z.shape
    m0 = a.shape[1]

    def mv(v: torch.Tensor) -> torch.Tensor:
        vw, vb = _split_theta(v, d, m0, with_bias)
        gw = torch.zeros(d, m0, dtype=a.dtype, device=a.device)
        gb = torch.zeros(d, dtype=a.dtype, device=a.device)
        for s in range(0, n, chunk):
            zc, ac = z[s : s + chunk], a[s : s + chunk]
            xc = None if x is None else x[s : s + chunk]
            t = ac @ vw.T
            if vb is not None:
                t = t + vb

            def f(zz, xc=xc):
                return upper.logits_chunk(zz, xc)

            with quiet_forward_ad():
                logits, jt = jvp(f, (zc,), (t,))
            p = softmax_flushed(logits)
            st = p * jt - p * (p * jt).sum(1, keepdim=True)
            _, back = vjp(f, zc)
            (sv,) = back(st)
            gw += sv.T @ ac
            gb += sv.sum(0)
        gw, gb = gw.reshape(-1) / n, gb / n
        return torch.cat([gw, gb]) if with_bias else gw

    return mv


def _n_params(d: int, m0: int, with_bias: bool) -> int:
    return d * m0 + (d if with_bias else 0)


def kron_hessian(B: torch.Tensor, a: torch.Tensor, with_bias: bool, max_elements: int = 1 << 24) -> HessianOperator:
    """``H = mean_n B_n ⊗ ã_n ã_nᵀ`` as an operator: products without forming H, the dense form by
    :func:`kron_sum`."""
    n, d, _ = B.shape
    m0 = a.shape[1]
    return HessianOperator(_n_params(d, m0, with_bias), kron_matvec(B, a, with_bias), dtype=a.dtype, device=a.device,
                           matmat=kron_matmat(B, a, with_bias),
                           dense=lambda: kron_sum(B, a, with_bias, max_elements=max_elements))  # fmt: skip


def kron_matmat(B: torch.Tensor, a: torch.Tensor, with_bias: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``V ↦ H V`` for a block of columns ``V`` [P, k], one pass over the samples for all k columns."""
    n, d, _ = B.shape
    m0 = a.shape[1]

    def mm(V: torch.Tensor) -> torch.Tensor:
        k = V.shape[1]
        Vw = V[: d * m0].T.reshape(k * d, m0)
        t = (a @ Vw.T).reshape(n, k, d)
        if with_bias:
            t = t + V[d * m0 :].T[None]
        s = torch.bmm(t, B)  # B_n symmetric: s_nk = B_n t_nk
        out = (s.reshape(n, k * d).T @ a).reshape(k, d * m0).T / n
        return torch.cat([out, s.sum(0).T / n]) if with_bias else out

    return mm


def ggn_hessian(upper: Upper, z: torch.Tensor, x: torch.Tensor | None, a: torch.Tensor,
                with_bias: bool) -> HessianOperator:  # fmt: skip
    """The Gauss-Newton matrix as an operator (products through the upper map, no per-sample blocks)."""
    return HessianOperator(_n_params(z.shape[1], a.shape[1], with_bias), ggn_matvec(upper, z, x, a, with_bias),
                           dtype=a.dtype, device=a.device)


class LayerLoss:
    """The mean training loss as a function of the layer's parameters θ (for torch.func)."""

    def __init__(self, upper: Upper, a: torch.Tensor, y: torch.Tensor, x: torch.Tensor | None,
                 W: torch.Tensor, b: torch.Tensor | None, with_bias: bool, chunk: int = 1024):  # fmt: skip
        self.upper, self.a, self.y, self.x = upper, a, y, x
        self.d, self.m0 = W.shape
        self.b_fixed = b
        self.with_bias = with_bias
        self.theta = torch.cat([W.reshape(-1), b]) if with_bias else W.reshape(-1).clone()
        self.chunk = chunk

    def chunk_loss(self, theta: torch.Tensor, s: int) -> torch.Tensor:
        """Sum (not mean) of the losses of samples ``s … s+chunk``."""
        W, b = _split_theta(theta, self.d, self.m0, self.with_bias)
        if not self.with_bias:
            b = self.b_fixed
        sl = slice(s, s + self.chunk)
        z = F.linear(self.a[sl], W, b)
        logits = self.upper.logits_chunk(z, None if self.x is None else self.x[sl])
        return F.cross_entropy(logits, self.y[sl], reduction="sum")

    def starts(self):
        return range(0, self.a.shape[0], self.chunk)

    def hvp(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Exact ``v ↦ H v`` by forward-over-reverse differentiation (one pass over the data)."""
        from torch.func import grad, jvp

        n = self.a.shape[0]

        def mv(v: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(self.theta)
            with quiet_forward_ad():
                for s in self.starts():
                    out += jvp(grad(lambda t, s=s: self.chunk_loss(t, s)), (self.theta,), (v,))[1]
            return out / n

        return mv

    def operator(self) -> HessianOperator:
        """The exact Hessian as an operator: forward-over-reverse products, :meth:`dense` as its dense form."""
        mv = self.hvp()

        def matvec(v: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                return mv(v)

        def dense() -> torch.Tensor:
            with torch.enable_grad():
                return self.dense()

        return HessianOperator(self.theta.numel(), matvec, dtype=self.theta.dtype, device=self.theta.device,
                               dense=dense)

    def dense(self, basis_chunk: int = 64) -> torch.Tensor:
        """The dense Hessian, ``vmap`` of Hessian-vector products over blocks of basis vectors."""
        from torch.func import grad, jvp, vmap

        n, p = self.a.shape[0], self.theta.numel()
        H = torch.zeros(p, p, dtype=self.theta.dtype, device=self.theta.device)
        eye = torch.eye(p, dtype=self.theta.dtype, device=self.theta.device)
        for s in self.starts():
            g = grad(lambda t, s=s: self.chunk_loss(t, s))
            hv = vmap(lambda v, g=g: jvp(g, (self.theta,), (v,))[1])
            with quiet_forward_ad():
                for c in range(0, p, basis_chunk):
                    H[c : c + basis_chunk] += hv(eye[c : c + basis_chunk])
        H /= n
        return (H + H.T) / 2


def eigh_descending(H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues in descending order and orthonormal eigenvectors (columns, same order), each
    eigenvector's sign fixed so that its largest-magnitude component is positive."""
    evals, evecs = torch.linalg.eigh(H)
    evals, evecs = evals.flip(0), evecs.flip(1)
    return evals, fix_signs(evecs)


def fix_signs(V: torch.Tensor) -> torch.Tensor:
    """Flip columns of ``V`` in place so that each one's largest-magnitude component is positive."""
    idx = V.abs().argmax(0)
    sign = torch.sign(V[idx, torch.arange(V.shape[1], device=V.device)])
    sign[sign == 0] = 1
    return V.mul_(sign)
