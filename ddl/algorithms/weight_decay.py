"""Weight decay: the gradient of a penalty on each learner's whole flat weight vector.

Two penalties (``--weight-decay-kind``):

* ``l2sq`` (default, PyTorch's ``weight_decay``): penalty (β/2)‖w‖², gradient β·w;
* ``l2norm`` (the authors' reference code, which adds β‖w‖₂ to the loss): penalty β‖w‖₂, gradient β·w/‖w‖₂
  (0 at w = 0, where the norm has no gradient; PyTorch's autograd also gives 0 there).

The norm is over *all* of a learner's parameters (every layer, biases and BatchNorm affine parameters
included), as the reference adds β‖w‖₂ of the whole weight vector; a per-layer or per-tensor norm would be a
different penalty.  The reference's β values (0, 5e-3, 1e-2, 2e-2) are meant with ``l2norm``.  Every backend
runs the same :class:`ddl.algorithms.Algorithm`, so the penalty acts identically everywhere: per learner in
DPSGD (at its own weights), once on the averaged gradient at w̄ in SSGD.
"""

from __future__ import annotations

import torch

WEIGHT_DECAY_KINDS = ("l2sq", "l2norm")


def penalty(w: torch.Tensor, beta: float, kind: str) -> torch.Tensor:
    """The penalty added to the loss, per row of ``w`` [m, P] (used by the tests as the autograd oracle)."""
    if kind == "l2sq":
        return 0.5 * beta * (w * w).sum(-1)
    if kind == "l2norm":
        return beta * torch.linalg.vector_norm(w, dim=-1)
    raise ValueError(f"unknown weight decay kind {kind!r}")


def decay_gradient(W: torch.Tensor, beta: float, kind: str) -> torch.Tensor:
    """∂penalty/∂w for every row of ``W`` [m, P] (each row one learner's flat weights)."""
    if kind == "l2sq":
        return beta * W
    if kind == "l2norm":
        norm = torch.linalg.vector_norm(W, dim=-1, keepdim=True)
        return beta * W / torch.where(norm > 0, norm, torch.ones_like(norm))
    raise ValueError(f"unknown weight decay kind {kind!r}")
