"""Hand-written batched backward pass for stacked plain MLPs (Linear/ReLU/Flatten, no dropout).

For the paper's small MLP, per-learner work is a handful of tiny matrix products, and the generic
``vmap(grad(functional_call))`` path spends most of its time in dispatch.  Here the forward and backward pass
of all m learners are written as ``torch.bmm`` calls on the [m, P] weight matrix directly, and the gradient is
written straight into an [m, P] buffer.  ``tests/test_fastmlp.py`` checks it against the per-learner autograd
loop (the oracle).
"""

from __future__ import annotations

import torch
from torch import nn

from ddl.compute.flat import FlatSpec


def supports(model: nn.Module) -> bool:
    """True for an ``nn.Sequential`` of Flatten / Linear / ReLU (and Dropout with p = 0)."""
    if not isinstance(model, nn.Sequential):
        return False
    linears = 0
    for m in model:
        if isinstance(m, nn.Linear):
            linears += 1
        elif isinstance(m, nn.Dropout):
            if m.p > 0:
                return False
        elif not isinstance(m, (nn.Flatten, nn.ReLU)):
            return False
    # the pattern must be Flatten? (Linear ReLU)* Linear
    kinds = [type(m) for m in model if not isinstance(m, (nn.Flatten, nn.Dropout))]
    expect = [nn.Linear if i % 2 == 0 else nn.ReLU for i in range(2 * linears - 1)]
    return linears > 0 and kinds == expect


_SCRATCH_BYTES = 1 << 20  # per-chunk gradient scratch: small enough to be reused by the allocator, in cache


class StackedMLP:
    """Losses and gradients of m MLP learners at their own weights, by explicit batched backprop."""

    def __init__(self, model: nn.Module, spec: FlatSpec):
        self.layers: list[tuple[int, int, int, int | None]] = []  # (w offset, out, in, bias offset)
        offsets = {}
        o = 0
        for name, size in zip(spec.names, spec.sizes):
            offsets[name] = o
            o += size
        names = dict((mod, n) for n, mod in model.named_modules())
        for mod in model:
            if isinstance(mod, nn.Linear):
                prefix = names[mod]
                b = offsets.get(f"{prefix}.bias") if mod.bias is not None else None
                self.layers.append((offsets[f"{prefix}.weight"], mod.out_features, mod.in_features, b))

    def _w(self, W, layer):
        off, out, inp, _ = layer
        return W[:, off : off + out * inp].view(W.shape[0], out, inp)

    def grads(self, W: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G [m, P], per-sample losses [m, b])`` of the mean loss of each learner's batch."""
        G = torch.empty_like(W)
        return G, self.grads_into(W, xs, ys, G, alpha=1.0, beta=0.0)

    def grads_into(self, W: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, target: torch.Tensor, alpha: float,
                   beta: float) -> torch.Tensor:
        """``target ← β·target + α·G`` in place (β = 0 ignores what target held); returns per-sample losses."""
        losses, parts = self.backprop(W, xs, ys)
        self.write(parts, target, 0, W.shape[0], alpha, beta)
        return losses

    def backprop(self, W: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, list]:
        """Per-sample losses [m, b] and, per layer, the (output gradient δ, input activation) pair whose
        product is that layer's weight gradient (small: [m, b, width]); :meth:`write` forms the products."""
        m, b = xs.shape[0], xs.shape[1]
        acts = [xs.reshape(m, b, -1)]
        h = acts[0]
        for i, layer in enumerate(self.layers):
            # W_l h (weights in their stored row-major layout, transposed result) is ~2× faster on CPU than
            # h W_lᵀ for small per-learner batches, and no slower for large ones
            z = torch.bmm(self._w(W, layer), h.transpose(1, 2)).transpose(1, 2)
            if layer[3] is not None:
                z = z + W[:, layer[3] : layer[3] + layer[1]].unsqueeze(1)
            if i < len(self.layers) - 1:
                h = z.clamp_(min=0)
                acts.append(h)
        logp = torch.log_softmax(z, -1)
        losses = -logp.gather(2, ys.unsqueeze(-1)).squeeze(-1)
        delta = logp.exp_()  # ∂(mean CE)/∂z = (softmax − onehot) / b
        delta.scatter_add_(2, ys.unsqueeze(-1), torch.full((m, b, 1), -1.0, dtype=delta.dtype, device=delta.device))
        delta.div_(b)
        parts = []
        for i in range(len(self.layers) - 1, -1, -1):
            parts.append((self.layers[i], delta, acts[i]))
            if i > 0:
                # ReLU backward in one kernel (no boolean mask to materialise and convert)
                delta = torch.ops.aten.threshold_backward(torch.bmm(delta, self._w(W, self.layers[i])), acts[i], 0)
        return losses, parts

    def write(self, parts: list, rows: torch.Tensor, lo: int, hi: int, alpha: float, beta: float) -> None:
        """``rows ← β·rows + α·G[lo:hi]`` in place for a [hi − lo, P] tensor ``rows``, from :meth:`backprop`'s parts.

        Each weight block is written through its [learners, out, in] view of ``rows``: no [m, P] temporary
        (which would cost more than the products for many learners with small batches).
        """
        for layer, delta, act in parts:
            d, a = delta[lo:hi], act[lo:hi]
            block = self._w(rows, layer)
            if a.shape[1] == 1:
                # one sample: the gradient is an outer product; one broadcast kernel over the strided block
                # (baddbmm_ on a block of a wider matrix loops over the learners one small product at a time)
                if beta == 0:
                    torch.mul(d.transpose(1, 2) if alpha == 1 else d.transpose(1, 2) * alpha, a, out=block)
                else:
                    if beta != 1:
                        block.mul_(beta)
                    block.addcmul_(d.transpose(1, 2), a, value=alpha)
            else:
                # a few learners at a time into a small contiguous scratch (one batched product), then one pass over
                # the strided block: baddbmm_ straight into the block would loop over learners one small product
                # each, and a full-size scratch would cost page faults
                chunk = max(1, _SCRATCH_BYTES // (block.shape[1] * block.shape[2] * block.element_size()))
                for c0 in range(0, block.shape[0], chunk):
                    c1 = min(block.shape[0], c0 + chunk)
                    prod = torch.bmm(d[c0:c1].transpose(1, 2), a[c0:c1])
                    part = block[c0:c1]
                    if beta == 0:
                        torch.mul(prod, alpha, out=part)
                    else:
                        if beta != 1:
                            part.mul_(beta)
                        part.add_(prod, alpha=alpha)
            if layer[3] is not None:
                bias = rows[:, layer[3] : layer[3] + layer[1]]
                if beta == 0:
                    torch.mul(d.sum(1), alpha, out=bias)
                else:
                    bias.mul_(beta).add_(d.sum(1), alpha=alpha)
