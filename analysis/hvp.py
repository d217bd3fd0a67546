"""One Hessian operator: a symmetric ``[P, P]`` matrix known by its products with vectors.

Every Hessian in the project is one of these: the analysed layer's (:mod:`analysis.hessian` builds it in
closed form, as a Gauss-Newton product or by autograd) and the whole model's in the noise meter (a loss
closure over a flat parameter vector, :func:`loss_hessian`).  Consumers use three views:

* :meth:`HessianOperator.matvec` ``v ↦ H v`` (Lanczos);
* :meth:`HessianOperator.matmat` ``V ↦ H V`` for a block of columns;
* :meth:`HessianOperator.dense` the full matrix (a full eigendecomposition): a closed form where the
  builder has one, otherwise ``H`` applied to the identity a block of columns at a time.

The operator is also callable (``op(v)`` is ``op.matvec(v)``), so it can be handed to anything that takes a
matrix-vector function.  :func:`loss_hvp` is the same product as a pure function of ``(w, v, …)`` for
``torch.func`` transforms (the noise meter ``vmap``s it over learners, each with its own minibatch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


class HessianOperator:
    """A symmetric ``[n, n]`` operator given by ``matvec`` and optionally a batched ``matmat`` and a closed-form
    ``dense``; missing views are derived from ``matvec`` (exactly: column by column)."""

    def __init__(self, n: int, matvec: MatVec, *, dtype: torch.dtype, device: torch.device | str | None = None,
                 matmat: MatVec | None = None, dense: Callable[[], torch.Tensor] | None = None,
                 basis_chunk: int = 64):  # fmt: skip
        self.n, self.dtype, self.device = n, dtype, torch.device(device) if device is not None else None
        self._matvec, self._matmat, self._dense = matvec, matmat, dense
        self.basis_chunk = basis_chunk

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``[n]``."""
        return self._matvec(v)

    __call__ = matvec

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H V`` for ``V`` of shape ``[n, k]``."""
        if self._matmat is not None:
            return self._matmat(V)
        return torch.stack([self._matvec(V[:, j]) for j in range(V.shape[1])], 1)

    def dense(self) -> torch.Tensor:
        """The full ``[n, n]`` matrix."""
        if self._dense is not None:
            return self._dense()
        H = torch.empty(self.n, self.n, dtype=self.dtype, device=self.device)
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        for c in range(0, self.n, self.basis_chunk):
            H[:, c : c + self.basis_chunk] = self.matmat(eye[:, c : c + self.basis_chunk])
        return (H + H.T) / 2


def loss_hvp(grad_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``(w, v, *args) ↦ H(w) v`` where ``grad_fn(w, *args)`` is the gradient of a loss at flat weights ``w``.

    ``H v`` is the vector-Jacobian product of the gradient (``H`` is symmetric): reverse over reverse, a pure
    function of its arguments, so it composes with ``vmap`` (the noise meter's per-learner products).
    """
    from torch.func import vjp

    def hvp(w: torch.Tensor, v: torch.Tensor, *args) -> torch.Tensor:
        return vjp(lambda w_: grad_fn(w_, *args), w)[1](v)[0]

    return hvp


def loss_hessian(loss: Callable[..., torch.Tensor], w: torch.Tensor,
                 parts: Callable[[], Iterable[tuple[float, tuple]]]) -> HessianOperator:  # fmt: skip
    """The Hessian at ``w`` of ``Σ_c f_c · loss(w, *args_c)`` over the parts ``(f_c, args_c)`` that ``parts()``
    yields (e.g. a mean loss summed chunk by chunk with weights ``|c|/N``), by plain double backward per part."""

    def mv(v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(w)
        with torch.enable_grad():
            for frac, args in parts():
                w_ = w.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(loss(w_, *args), w_, create_graph=True)
                out += frac * torch.autograd.grad(g, w_, grad_outputs=v)[0]
        return out

    return HessianOperator(w.numel(), mv, dtype=w.dtype, device=w.device)
