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

from ddl.flat import FlatSpec


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
        m, b = xs.shape[0], xs.shape[1]
        acts = [xs.reshape(m, b, -1)]
        h = acts[0]
        for i, layer in enumerate(self.layers):
            z = torch.bmm(h, self._w(W, layer).transpose(1, 2))
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
        G = torch.empty_like(W)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            self._w(G, layer).copy_(torch.bmm(delta.transpose(1, 2), acts[i]))
            if layer[3] is not None:
                G[:, layer[3] : layer[3] + layer[1]] = delta.sum(1)
            if i > 0:
                # ReLU backward in one kernel (no boolean mask to materialise and convert)
                delta = torch.ops.aten.threshold_backward(torch.bmm(delta, self._w(W, layer)), acts[i], 0)
        return G, losses
