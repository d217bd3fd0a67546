"""Per-learner losses and gradients for m learners held as rows of a [m, P] matrix.

Two implementations of the same function:

* ``vmap`` (fast path): ``torch.func.vmap(grad(loss))`` over the learners, one batched kernel per layer;
* ``loop`` (oracle): a plain Python loop calling ``functional_call`` + ``torch.autograd.grad`` per learner;
* ``auto`` (default): the hand-written batched backward of :mod:`ddl.compute.fastmlp` (MLP) or
  :mod:`ddl.compute.fastcnn` (chains of conv / pool / ReLU / linear layers, e.g. the LeNet-style CNN) where the
  model allows it; for ResNet-18 / DenseNet-121 the per-learner gradients (DPSGD) come from one learner-stacked
  network (:mod:`ddl.compute.fastdeep`) while SSGD's shared-weight sum stays on ``vmap``; otherwise ``vmap``.

BatchNorm: every learner keeps its own running statistics (stacked buffers [m, ...]); they are updated from
the learner's own minibatch exactly as on a separate device, and are never communicated during training.
Under vmap the buffers are cloned inside the per-learner function and returned as an auxiliary output,
because vmap cannot write batched values into unbatched tensors in place.

Mixed precision (``amp="bf16"``): the forward pass runs under ``torch.autocast(bfloat16)`` (convolutions and
matrix products in bfloat16, reductions and the loss in float32); weights, gradients and the update stay in
float32.  This changes the numerics (the gradients differ from float32 ones at bfloat16 rounding, ~1e-2
relative), so it is an explicit choice; ``amp="off"`` (the default) never enters autocast.  The hand-written
MLP and CNN paths have no bfloat16 variant: with bf16 those models take the generic path.  torch's vmap rule for
batch norm rejects bfloat16 activations with float32 running statistics, so under vmap with bf16 the model's
BatchNorm layers are swapped for :class:`PlainBatchNorm` (the same statistics in plain tensor operations).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ddl.compute import fastcnn, fastdeep, fastmlp
from ddl.compute.fastcnn import StackedCNN
from ddl.compute.fastmlp import StackedMLP
from ddl.compute.flat import FlatSpec

MODES = ("auto", "vmap", "loop")
AMP_MODES = ("off", "bf16")


def autocast(amp: str, device: torch.device):
    """The autocast context of ``amp`` on ``device`` (a no-op context when ``amp == "off"``)."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ValueError(f"--amp: unknown mode {amp!r}; accepted: {', '.join(AMP_MODES)}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


class PlainBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm in training mode written with plain tensor operations, identical in what it computes.

    Statistics in (at least) float32 over (batch, spatial) dims; running mean and unbiased running variance updated in
    place with the module's momentum (or the cumulative average when momentum is None).  Used under vmap with
    bfloat16 autocast, where the built-in kernel's vmap rule fails; evaluation mode defers to the built-in.
    """

    def _check_input_dim(self, x):  # any N, C, ... input like the module it replaces
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.track_running_stats:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        count = x.numel() // x.shape[1]
        acc = x if x.dtype in (torch.float32, torch.float64) else x.float()  # statistics in at least float32
        var, mean = torch.var_mean(acc, dim=dims, correction=0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            f = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
            self.running_mean.mul_(1 - f).add_(f * mean)
            self.running_var.mul_(1 - f).add_(f * var * (count / max(count - 1, 1)))
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale = scale * self.weight
            shift = shift * self.weight + self.bias
        shape = [1, -1] + [1] * (x.dim() - 2)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)


def with_plain_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm layers are :class:`PlainBatchNorm` (same names, params, buffers)."""
    import copy

    twin = copy.deepcopy(model)
    for name, mod in list(twin.named_modules()):
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and not isinstance(mod, PlainBatchNorm):
            plain = PlainBatchNorm(mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
            plain.load_state_dict(mod.state_dict())
            parent, _, attr = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, attr, plain)
    return twin


class LearnerGradients:
    """Gradients of each learner's minibatch loss at that learner's weights."""

    def __init__(self, model: nn.Module, spec: FlatSpec, mode: str = "auto", amp: str = "off"):
        if mode not in MODES:
            raise ValueError(f"--sim-mode: unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        if amp not in AMP_MODES:
            raise ValueError(f"--amp: unknown mode {amp!r}; accepted: {', '.join(AMP_MODES)}")
        self.model = model
        self.spec = spec
        self.mode = mode
        self.amp = amp
        self.has_buffers = bool(spec.buffer_names)
        self.fast = None
        # per-learner weights only (grads); SSGD's shared weights keep the dense vmap path (sum_grads_shared)
        self.stacked = None
        if mode == "auto" and amp == "off":
            if fastmlp.supports(model):
                self.fast = StackedMLP(model, spec)
            elif fastcnn.supports(model):
                self.fast = StackedCNN(model, spec)
            elif fastdeep.supports(model):
                self.stacked = fastdeep.StackedDeep(model, spec)
        if mode == "auto":
            self.mode = "vmap"
        # the model as seen under vmap (batch norm in plain operations when autocast is on, see the module doc)
        self._vmodel = with_plain_batchnorm(model) if amp != "off" and self.has_buffers else model
        self._vgrad = vmap(grad(self.loss, has_aux=True), in_dims=(0, 0, 0, 0), randomness="different")
        # SSGD with BatchNorm: the weights are not batched, so convolutions and matrix products run once over all
        # m·b samples (dense kernels); only the normalisation statistics are per learner.  Ordinary autograd
        # runs backward through the vmapped forward and sums the learners' gradients in the weight gradient.
        self._vshared = vmap(self._shared_loss, in_dims=(None, 0, 0, 0), randomness="different")

    def _forward(self, params, buffers, x, model=None):
        with autocast(self.amp, x.device):
            out = functional_call(self.model if model is None else model, (params, buffers), (x,))
        return out.to(x.dtype)  # the loss in the parameters' dtype (a no-op without autocast)

    def loss(self, w, buffers, x, y):
        """One learner's mean cross-entropy on (x, y) at flat weights ``w``; aux = (loss, updated buffers)."""
        buffers = {n: b.clone() for n, b in buffers.items()}  # updated in place by BatchNorm in train mode
        out = self._forward(self.spec.unflatten(w), buffers, x, self._vmodel)
        loss = F.cross_entropy(out, y)
        return loss, (loss.detach(), buffers)

    def eval_loss(self, w, buffers, x, y):
        """The deterministic network's mean cross-entropy on (x, y) at flat weights ``w``: eval mode (no dropout;
        BatchNorm normalises with the given running statistics ``buffers`` and does not update them).  Used by
        the noise meter; aux = the loss."""
        was_training = self.model.training
        self.model.eval()
        try:
            out = functional_call(self.model, (self.spec.unflatten(w), buffers), (x,))
        finally:
            self.model.train(was_training)
        loss = F.cross_entropy(out, y)
        return loss, loss.detach()

    def grads(
        self, W: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(G [m, P], losses [m], new_buffers)`` for weights ``W`` [m, P], inputs ``xs`` [m, b, ...]."""
        self.model.train()
        self._vmodel.train()
        if self.fast is not None:
            G, losses = self.fast.grads(W, xs, ys)
            return G, losses.mean(1), buffers
        if self.stacked is not None:
            return self.stacked.grads(W, buffers, xs, ys)
        if self.mode == "vmap":
            G, (losses, new_buffers) = self._vgrad(W, buffers, xs, ys)
            return G, losses, new_buffers
        return self._loop(W, buffers, xs, ys)

    def grads_into(
        self, W: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor,
        target: torch.Tensor, alpha: float, beta: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``target ← β·target + α·G`` in place for G = :meth:`grads` (β = 0 ignores what target held);
        returns ``(losses [m], new_buffers)``.  The fast MLP path writes each block in place, with no [m, P]
        temporary."""
        if isinstance(self.fast, StackedMLP):
            self.model.train()
            losses = self.fast.grads_into(W, xs, ys, target, alpha, beta)
            return losses.mean(1), buffers
        G, losses, new_buffers = self.grads(W, buffers, xs, ys)
        if beta == 0:
            torch.mul(G, alpha, out=target)
        else:
            target.mul_(beta).add_(G, alpha=alpha)
        return losses, new_buffers

    def grads_deferred(
        self, W: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, alpha: float,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Callable[[int, int, torch.Tensor], None]]:
        """``(losses [m], new_buffers, write)`` where ``write(lo, hi, rows)`` sets ``rows ← α·G[lo:hi]``.

        The fast MLP path keeps only the small per-layer factors and forms the [learners, P] gradient rows when
        ``write`` is called, so a caller can write them band by band into rows it is about to update (DPSGD's
        mixing), while they are in cache.
        """
        if isinstance(self.fast, StackedMLP):  # the CNN path forms whole gradient rows (below)
            self.model.train()
            per_sample, parts = self.fast.backprop(W, xs, ys)
            parts = [(layer, delta * alpha, act) for layer, delta, act in parts]  # α applied once, not per band
            return per_sample.mean(1), buffers, lambda lo, hi, rows: self.fast.write(parts, rows, lo, hi, 1.0, 0.0)
        G, losses, new_buffers = self.grads(W, buffers, xs, ys)
        return losses, new_buffers, lambda lo, hi, rows: torch.mul(G[lo:hi], alpha, out=rows)

    def sum_grads_shared(
        self, w: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``Σ_a ∇L_{μ_a}(w)`` for one weight vector ``w`` [P] shared by all m learners (SSGD).

        Without BatchNorm the learners' mean losses are independent of how samples are grouped, so the sum
        is m × the gradient of the mean loss over all m·b samples: one pass over one large batch.  With
        BatchNorm each learner normalises over its own b samples: the forward pass is vmapped over the learners'
        data and statistics with the weights shared, and one backward pass gives the summed gradient.
        """
        m = xs.shape[0]
        if self.fast is not None:  # one learner holding all m·b samples: its mean gradient × m
            G, per_sample = self.fast.grads(w.unsqueeze(0), xs.flatten(0, 1).unsqueeze(0), ys.reshape(1, -1))
            return G[0].mul_(m), per_sample.view(m, -1).mean(1), buffers
        if self.mode == "vmap" and not self.has_buffers:
            self.model.train()
            w = w.detach().requires_grad_(True)
            out = self._forward(self.spec.unflatten(w), {}, xs.flatten(0, 1))
            per_sample = F.cross_entropy(out, ys.flatten(), reduction="none").view(m, -1)
            losses = per_sample.mean(1)
            (g,) = torch.autograd.grad(losses.sum(), w)
            return g, losses.detach(), buffers
        if self.mode == "vmap":  # BatchNorm: shared weights, per-learner statistics, one backward pass
            self.model.train()
            self._vmodel.train()
            w = w.detach().requires_grad_(True)
            # vmap's batch-norm rule cannot ask a batched tensor whether it is channels_last (NYI in torch)
            losses, new_buffers = self._vshared(self.spec.unflatten(w), buffers, xs.contiguous(), ys)
            (g,) = torch.autograd.grad(losses.sum(), w)
            return g, losses.detach(), {k: v.detach() for k, v in new_buffers.items()}
        G, losses, new_buffers = self.grads(w.expand(m, -1), buffers, xs, ys)
        return G.sum(0), losses, new_buffers

    def _shared_loss(self, params, buffers, x, y):
        """One learner's loss at weights shared by all learners (vmapped over buffers and data only)."""
        buffers = {n: b.clone() for n, b in buffers.items()}
        out = self._forward(params, buffers, x, self._vmodel)
        return F.cross_entropy(out, y), buffers

    def _loop(self, W, buffers, xs, ys):
        gs, losses, bufs = [], [], []
        for a in range(W.shape[0]):
            w = aligned_row(W, a).requires_grad_(True)
            own = {n: b[a].clone() for n, b in buffers.items()}
            out = self._forward(self.spec.unflatten(w), own, xs[a])
            loss = F.cross_entropy(out, ys[a])
            (g,) = torch.autograd.grad(loss, w)
            gs.append(g)
            losses.append(loss.detach())
            bufs.append(own)
        new_buffers = {n: torch.stack([b[n] for b in bufs]) for n in buffers}
        return torch.stack(gs), torch.stack(losses), new_buffers


def aligned_row(W: torch.Tensor, a: int) -> torch.Tensor:
    """Row ``a`` of the learners' [m, P] weight matrix as a fresh copy, detached.

    Why a copy: a row view starts at byte offset a·P·itemsize, and for ResNet-18 and DenseNet-121 P ≡ 2 (mod 4),
    so every odd learner's parameter views are 8- but not 16-byte aligned.  Kernels that take such a view as it is
    (under channels_last the 1×1 convolution weights count as already contiguous) may issue 16-byte vector loads
    at it — the suspected cause of the CUDA "misaligned address" of the per-learner loop at b = 512 (README,
    Limitations; not reproduced, no GPU since).  A fresh allocation is aligned; the copy is P numbers per learner
    per step, small beside its forward and backward pass.
    """
    return W[a].detach().clone()


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
