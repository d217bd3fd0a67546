"""Hand-written batched forward and backward pass for stacked small CNNs (Conv2d / ReLU / MaxPool2d / Flatten /
Linear), e.g. the LeNet-style ``cnn``.

``vmap(grad(functional_call))`` turns a convolution with per-learner weights into a grouped convolution, whose
weight gradient PyTorch's CPU kernels compute slowly when each group has few input channels (the first layer of
a grayscale network: one channel per learner) — on a 2-core CPU that one kernel cost more than the whole
single-model step.  Here the m learners' activations are kept in the *grouped layout* [b, m·C, H, W] from the
input on, so that:

* every convolution of all learners is one grouped convolution (``groups = m``), forward and input gradient;
* the weight gradient is the grouped kernel's, except for layers with few input channels, where it is computed
  as a convolution of the inputs with the output gradients as filters (the roles of batch and channel swapped:
  one grouped convolution with m·C_out large filters over m·b channels), many times faster there;
* pooling and ReLU act on the grouped layout directly; at ``Flatten`` the activations move to [m, b, F] and the
  fully connected layers run as ``torch.bmm`` as in :mod:`ddl.compute.fastmlp`.

With one learner (SSGD holding all m·b samples) every kernel is the ordinary dense one.  ``tests/test_fastcnn.py``
checks gradients and losses against the per-learner autograd loop (the oracle) in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddl.compute.flat import FlatSpec

# Weight gradients of grouped convolutions with at most this many input channels per group use the swapped form.
SWAP_MAX_IN_CHANNELS = 3


def chain_of(model: nn.Module) -> list[nn.Module] | None:
    """The model's layers in forward order when its forward pass is a plain chain, else None.

    An ``nn.Sequential`` is a chain; another model declares itself one with a ``chain()`` method (its forward
    pass must then apply exactly these layers in this order, as :class:`ddl.models.cnn.LeNet` does).
    """
    if isinstance(model, nn.Sequential):
        return list(model)
    chain = getattr(model, "chain", None)
    return list(chain()) if callable(chain) else None


def _plain_conv(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))  # fmt: skip


def supports(model: nn.Module) -> bool:
    """True for a chain ``(Conv2d | ReLU | MaxPool2d)+ Flatten (Linear | ReLU)* Linear`` with ≥ 1 convolution,
    no batch norm, dropout or buffers, and every parameter inside those layers."""
    chain = chain_of(model)
    if not chain or list(model.buffers()):
        return False
    try:
        cut = next(i for i, m in enumerate(chain) if isinstance(m, nn.Flatten))
    except StopIteration:
        return False
    conv, flat, dense = chain[:cut], chain[cut], chain[cut + 1 :]
    if flat.start_dim != 1 or flat.end_dim != -1:
        return False
    if not any(isinstance(m, nn.Conv2d) for m in conv):
        return False
    if not all(_plain_conv(m) or isinstance(m, (nn.ReLU, nn.MaxPool2d)) for m in conv):
        return False
    if not dense or not isinstance(dense[-1], nn.Linear) or not all(isinstance(m, (nn.Linear, nn.ReLU)) for m in dense):
        return False
    in_chain = {id(p) for m in chain for p in m.parameters()}
    return all(id(p) in in_chain for p in model.parameters())


class StackedCNN:
    """Losses and gradients of m CNN learners at their own weights, by explicit batched backprop."""

    def __init__(self, model: nn.Module, spec: FlatSpec):
        offsets, o = {}, 0
        for name, size in zip(spec.names, spec.sizes):
            offsets[name] = o
            o += size
        names = {id(mod): n for n, mod in model.named_modules()}

        def off(mod, p):
            return offsets[f"{names[id(mod)]}.{p}"] if getattr(mod, p, None) is not None else None

        self.chain = chain_of(model)
        # (module, weight offset, bias offset) per layer; weights are read from / written to the [m, P] matrices
        self.layers = [(mod, off(mod, "weight"), off(mod, "bias")) for mod in self.chain]

    # ---- weights of all learners in the shapes the grouped kernels want ------------------------------------------
    @staticmethod
    def _slice(W: torch.Tensor, offset: int, numel: int) -> torch.Tensor:
        return W[:, offset : offset + numel]

    def _conv_weight(self, W, conv: nn.Conv2d, offset: int) -> torch.Tensor:
        m = W.shape[0]
        shape = conv.weight.shape
        return self._slice(W, offset, shape.numel()).reshape(m * shape[0], *shape[1:])

    def grads(self, W: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G [m, P], per-sample losses [m, b])`` of the mean loss of each learner's batch."""
        m, b = xs.shape[0], xs.shape[1]
        h = xs.transpose(0, 1).reshape(b, m * xs.shape[2], *xs.shape[3:])  # grouped layout [b, m·C, H, W]
        saved: list = []
        flat_shape = None
        for mod, wo, bo in self.layers:
            if isinstance(mod, nn.Conv2d):
                w = self._conv_weight(W, mod, wo)
                bias = self._slice(W, bo, mod.out_channels).reshape(-1) if bo is not None else None
                saved.append((h, w))
                h = F.conv2d(h, w, bias, mod.stride, mod.padding, mod.dilation, groups=m)
            elif isinstance(mod, nn.MaxPool2d):
                k, s, p, d = (torch.nn.modules.utils._pair(v) for v in
                              (mod.kernel_size, mod.stride or mod.kernel_size, mod.padding, mod.dilation))
                out, idx = torch.ops.aten.max_pool2d_with_indices(h, k, s, p, d, mod.ceil_mode)
                saved.append((h, idx, k, s, p, d))
                h = out
            elif isinstance(mod, nn.ReLU):
                # in place: layers save their inputs, not their outputs (a ReLU's own saved output stays valid
                # under a second ReLU, which leaves it unchanged)
                h = h.clamp_(min=0)
                saved.append(h)
            elif isinstance(mod, nn.Flatten):
                flat_shape = h.shape
                h = h.reshape(b, m, -1).transpose(0, 1).contiguous()  # [m, b, F]
                saved.append(None)
            else:  # Linear on [m, b, F]
                out_f, in_f = mod.weight.shape
                w = self._slice(W, wo, out_f * in_f).view(m, out_f, in_f)
                saved.append(h)
                h = torch.bmm(h, w.transpose(1, 2))
                if bo is not None:
                    h = h + self._slice(W, bo, out_f).unsqueeze(1)
        logp = torch.log_softmax(h, -1)
        losses = -logp.gather(2, ys.unsqueeze(-1)).squeeze(-1)
        delta = logp.exp_()  # ∂(mean CE)/∂z = (softmax − onehot) / b
        delta.scatter_add_(2, ys.unsqueeze(-1), torch.full((m, b, 1), -1.0, dtype=delta.dtype, device=delta.device))
        delta.div_(b)
        G = torch.empty_like(W)
        first_conv = next(i for i, (mod, _, _) in enumerate(self.layers) if isinstance(mod, nn.Conv2d))
        for i in range(len(self.layers) - 1, -1, -1):
            mod, wo, bo = self.layers[i]
            s = saved[i]
            if isinstance(mod, nn.Linear):
                out_f, in_f = mod.weight.shape
                self._slice(G, wo, out_f * in_f).view(m, out_f, in_f).copy_(torch.bmm(delta.transpose(1, 2), s))
                if bo is not None:
                    self._slice(G, bo, out_f).copy_(delta.sum(1))
                w = self._slice(W, wo, out_f * in_f).view(m, out_f, in_f)
                delta = torch.bmm(delta, w)
            elif isinstance(mod, nn.ReLU):
                delta = torch.ops.aten.threshold_backward(delta, s, 0)
            elif isinstance(mod, nn.Flatten):
                delta = delta.transpose(0, 1).reshape(flat_shape)  # back to the grouped layout
            elif isinstance(mod, nn.MaxPool2d):
                inp, idx, k, st, p, d = s
                delta = torch.ops.aten.max_pool2d_with_indices_backward(delta, inp, k, st, p, d, mod.ceil_mode, idx)
            else:  # Conv2d
                inp, w = s
                need_input = i > first_conv
                swap = m > 1 and mod.in_channels <= SWAP_MAX_IN_CHANNELS and mod.stride == (1, 1) \
                    and mod.dilation == (1, 1)
                gi = gw = None
                if need_input or not swap:  # (asked for the bias gradient alone, the grouped kernel is slow too)
                    gi, gw, _ = torch.ops.aten.convolution_backward(
                        delta, inp, w, None, mod.stride, mod.padding, mod.dilation, False, [0, 0], m,
                        [need_input, not swap, False])  # fmt: skip
                if swap:
                    gw = _swapped_weight_grad(delta, inp, m, mod)
                self._slice(G, wo, mod.weight.numel()).copy_(gw.reshape(m, -1))
                if bo is not None:
                    self._slice(G, bo, mod.out_channels).copy_(delta.sum((0, 2, 3)).view(m, -1))
                delta = gi
        return G, losses


def _swapped_weight_grad(delta: torch.Tensor, inp: torch.Tensor, m: int, conv: nn.Conv2d) -> torch.Tensor:
    """Weight gradient of a grouped, stride-1 convolution, [m·O, C, kh, kw], as one convolution of the inputs
    (channels: learner × sample) with the output gradients as filters: dW[a, o, c] = Σ_n x[n, a, c] ⋆ δ[n, a, o]."""
    b, mc, H, Wd = inp.shape
    c = mc // m
    o = delta.shape[1] // m
    ph, pw = conv.padding
    x = F.pad(inp, (pw, pw, ph, ph)) if ph or pw else inp
    x = x.view(b, m, c, *x.shape[2:]).permute(2, 1, 0, 3, 4).reshape(c, m * b, *x.shape[2:])
    filt = delta.view(b, m, o, *delta.shape[2:]).permute(1, 2, 0, 3, 4).reshape(m * o, b, *delta.shape[2:])
    gw = F.conv2d(x, filt, groups=m)  # [c, m·o, kh, kw]
    return gw.transpose(0, 1)
