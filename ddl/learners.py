"""Per-learner losses and gradients for m learners held as rows of a [m, P] matrix.

Two implementations of the same function:

* ``vmap`` (fast path): ``torch.func.vmap(grad(loss))`` over the learners, one batched kernel per layer;
* ``loop`` (oracle): a plain Python loop calling ``functional_call`` + ``torch.autograd.grad`` per learner;
* ``auto`` (default): the hand-written batched MLP backward of :mod:`ddl.fastmlp` where the model allows it,
  otherwise ``vmap``.

BatchNorm: every learner keeps its own running statistics (stacked buffers [m, ...]); they are updated from
the learner's own minibatch exactly as on a separate device, and are never communicated during training.
Under vmap the buffers are cloned inside the per-learner function and returned as an auxiliary output,
because vmap cannot write batched values into unbatched tensors in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ddl import fastmlp
from ddl.fastmlp import StackedMLP
from ddl.flat import FlatSpec

MODES = ("auto", "vmap", "loop")


class LearnerGradients:
    """Gradients of each learner's minibatch loss at that learner's weights."""

    def __init__(self, model: nn.Module, spec: FlatSpec, mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"--sim-mode: unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        self.model = model
        self.spec = spec
        self.mode = mode
        self.has_buffers = bool(spec.buffer_names)
        self.fast = StackedMLP(model, spec) if mode == "auto" and fastmlp.supports(model) else None
        if mode == "auto":
            self.mode = "vmap"
        self._vgrad = vmap(grad(self.loss, has_aux=True), in_dims=(0, 0, 0, 0), randomness="different")

    def loss(self, w, buffers, x, y):
        """One learner's mean cross-entropy on (x, y) at flat weights ``w``; aux = (loss, updated buffers)."""
        buffers = {n: b.clone() for n, b in buffers.items()}  # updated in place by BatchNorm in train mode
        out = functional_call(self.model, (self.spec.unflatten(w), buffers), (x,))
        loss = F.cross_entropy(out, y)
        return loss, (loss.detach(), buffers)

    def grads(
        self, W: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(G [m, P], losses [m], new_buffers)`` for weights ``W`` [m, P], inputs ``xs`` [m, b, ...]."""
        self.model.train()
        if self.fast is not None:
            G, losses = self.fast.grads(W, xs, ys)
            return G, losses.mean(1), buffers
        if self.mode == "vmap":
            G, (losses, new_buffers) = self._vgrad(W, buffers, xs, ys)
            return G, losses, new_buffers
        return self._loop(W, buffers, xs, ys)

    def sum_grads_shared(
        self, w: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``Σ_a ∇L_{μ_a}(w)`` for one weight vector ``w`` [P] shared by all m learners (SSGD).

        Without BatchNorm the learners' mean losses are independent of how samples are grouped, so the sum
        is m × the gradient of the mean loss over all m·b samples: one pass over one large batch.  With
        BatchNorm each learner normalises over its own b samples, so per-learner gradients are taken.
        """
        m = xs.shape[0]
        if self.fast is not None:  # one learner holding all m·b samples: its mean gradient × m
            G, per_sample = self.fast.grads(w.unsqueeze(0), xs.flatten(0, 1).unsqueeze(0), ys.reshape(1, -1))
            return G[0].mul_(m), per_sample.view(m, -1).mean(1), buffers
        if self.mode == "vmap" and not self.has_buffers:
            self.model.train()
            w = w.detach().requires_grad_(True)
            out = functional_call(self.model, self.spec.unflatten(w), (xs.flatten(0, 1),))
            per_sample = F.cross_entropy(out, ys.flatten(), reduction="none").view(m, -1)
            losses = per_sample.mean(1)
            (g,) = torch.autograd.grad(losses.sum(), w)
            return g, losses.detach(), buffers
        G, losses, new_buffers = self.grads(w.expand(m, -1), buffers, xs, ys)
        return G.sum(0), losses, new_buffers

    def _loop(self, W, buffers, xs, ys):
        gs, losses, bufs = [], [], []
        for a in range(W.shape[0]):
            w = W[a].detach().requires_grad_(True)
            own = {n: b[a].clone() for n, b in buffers.items()}
            out = functional_call(self.model, (self.spec.unflatten(w), own), (xs[a],))
            loss = F.cross_entropy(out, ys[a])
            (g,) = torch.autograd.grad(loss, w)
            gs.append(g)
            losses.append(loss.detach())
            bufs.append(own)
        new_buffers = {n: torch.stack([b[n] for b in bufs]) for n in buffers}
        return torch.stack(gs), torch.stack(losses), new_buffers


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048, transform: Callable | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) on (x, y)."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            out = model(xb if transform is None else transform(xb))
            total += F.cross_entropy(out.float(), yb, reduction="sum").item()
            correct += (out.argmax(1) == yb).sum().item()
            n += yb.numel()
    return total / n, correct / n
