"""m ResNet-18 / DenseNet-121 learners as ONE network with learner-stacked channels (the fast DPSGD path).

Learner a's activations are channel block a of one tensor [b, m·C, H, W] (its b images in the batch dimension,
every learner holding the same number b), so that the m networks become one network of m-fold width in which
no channel ever mixes with another learner's:

* ``Conv2d(C_in, C_out)`` → one grouped convolution ``(m·C_in → m·C_out, groups = m)`` whose weight stacks the m
  learners' kernels (group a = learner a);
* ``BatchNorm2d(C)`` → ``batch_norm`` over m·C channels: channel a·C + c is normalised over learner a's b images
  only, with learner a's affine parameters and running statistics — exactly the per-learner statistics;
* ReLU, pooling, residual additions act channel by channel and need nothing; DenseNet's concatenation joins the
  learners' blocks per learner (view [b, m, C, H, W], concatenate on dim 2);
* at the classifier the pooled features move to [m, b, F] and ``Linear`` is a batched matrix product.

Autograd differentiates the stacked network once; since learner a's loss depends only on its own block, the
gradient of the sum of the learners' mean losses with respect to the stacked weights is, block by block, each
learner's own gradient.  The stacked weights are copied from the [m, P] rows once per step (one leaf tensor per
parameter) and the gradients written back into [m, P] rows.  ``tests/test_fastdeep.py`` checks losses, gradients
and BatchNorm running statistics against the per-learner loop (the oracle), and a few DPSGD steps end to end.

Supported: :class:`ddl.models.cifar.ResNet18` and torchvision's ``DenseNet`` (no dropout, not memory-efficient),
every BatchNorm affine with running statistics and a fixed momentum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import DenseNet
from torchvision.models.densenet import _DenseBlock, _DenseLayer, _Transition
from torchvision.models.resnet import BasicBlock

from ddl.compute.flat import FlatSpec
from ddl.models.cifar import ResNet18


def _bn_ok(m: nn.Module) -> bool:
    return m.affine and m.track_running_stats and m.momentum is not None


def supports(model: nn.Module) -> bool:
    """True for the project's ResNet-18 and for a torchvision DenseNet without dropout or checkpointing, whose
    BatchNorm layers all keep running statistics with a fixed momentum."""
    if type(model) is ResNet18:
        ok = isinstance(model.maxpool, nn.Identity)
    elif type(model) is DenseNet:
        ok = all(not layer.memory_efficient and layer.drop_rate == 0
                 for layer in model.modules() if isinstance(layer, _DenseLayer))  # fmt: skip
    else:
        return False
    return ok and all(_bn_ok(m) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


class StackedDeep:
    """Losses, gradients and new BatchNorm buffers of m learners at their own weights, in one stacked pass."""

    def __init__(self, model: nn.Module, spec: FlatSpec):
        self.model = model
        self.spec = spec
        offsets, o = {}, 0
        for name, shape in zip(spec.names, spec.shapes):
            offsets[name] = (o, shape)
            o += shape.numel()
        self.offsets = offsets
        self.module_name = {id(mod): n for n, mod in model.named_modules()}
        # Activations and conv weights in channels_last memory format for ResNet-18: on the CPU its grouped
        # convolutions' backward is much faster so (benchmarks/results/cnn_cpu_deep.json).  Not for DenseNet-121:
        # there torch's CPU batch_norm in channels_last lost float32 precision (gradients 1e-3 off the per-learner
        # loop in tests/test_fastdeep.py's small case, 3e-6 in NCHW; float64 exact in both), traced to batch_norm.
        self.channels_last = isinstance(model, ResNet18)

    # ---- the stacked weights ---------------------------------------------------------------------------------------
    def _leaves(self, W: torch.Tensor) -> dict[str, torch.Tensor]:
        """One leaf per parameter: conv weights [m·O, C, kh, kw], BatchNorm vectors [m·C], linear weights
        [m, O, I] and biases [m, O] (copies of the rows' slices; gradients flow to them)."""
        m = W.shape[0]
        leaves = {}
        for name, (o, shape) in self.offsets.items():
            rows = W[:, o : o + shape.numel()]
            if len(shape) == 4:
                t = rows.reshape(m * shape[0], *shape[1:])
                if self.channels_last:
                    t = t.contiguous(memory_format=torch.channels_last)
            elif len(shape) == 1 and not self._is_linear(name):
                t = rows.reshape(m * shape[0])
            else:
                t = rows.reshape(m, *shape).contiguous()
            if t.untyped_storage().data_ptr() == W.untyped_storage().data_ptr():
                # a view into W (one learner): its own storage, so no kernel sees a pointer at an odd offset of W
                t = t.clone()
            leaves[name] = t.detach().requires_grad_(True)
        return leaves

    def _is_linear(self, param_name: str) -> bool:
        return isinstance(self.model.get_submodule(param_name.rpartition(".")[0]), nn.Linear)

    # ---- layers on the grouped layout ------------------------------------------------------------------------------
    def _p(self, mod: nn.Module, what: str) -> torch.Tensor | None:
        return self._params.get(f"{self.module_name[id(mod)]}.{what}")

    def _conv(self, mod: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self._p(mod, "weight"), self._p(mod, "bias"), mod.stride, mod.padding, mod.dilation,
                        groups=self._m * mod.groups)  # fmt: skip

    def _bn(self, mod: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        name = self.module_name[id(mod)]
        mean, var = self._bufs[f"{name}.running_mean"], self._bufs[f"{name}.running_var"]
        self._bufs[f"{name}.num_batches_tracked"].add_(1)
        return F.batch_norm(x, mean, var, self._p(mod, "weight"), self._p(mod, "bias"), True, mod.momentum, mod.eps)

    def _linear(self, mod: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        """``h`` [m, b, I] → [m, b, O]."""
        w, bias = self._p(mod, "weight"), self._p(mod, "bias")
        out = torch.bmm(h, w.transpose(1, 2))
        return out if bias is None else out + bias.unsqueeze(1)

    def _pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling of [b, m·C, H, W] → [m, b, C]."""
        b = x.shape[0]
        return x.mean((2, 3)).view(b, self._m, -1).transpose(0, 1)

    def _cat(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Concatenate grouped tensors channel-wise per learner: learner a's block is its blocks in order."""
        b, _, h, w = feats[0].shape
        m = self._m
        out = torch.cat([f.view(b, m, -1, h, w) for f in feats], dim=2).view(b, -1, h, w)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    # ---- the two architectures -------------------------------------------------------------------------------------
    def _basic_block(self, blk: BasicBlock, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self._bn(blk.bn1, self._conv(blk.conv1, x)))
        out = self._bn(blk.bn2, self._conv(blk.conv2, out))
        identity = x if blk.downsample is None else self._bn(blk.downsample[1], self._conv(blk.downsample[0], x))
        return F.relu(out + identity)

    def _resnet(self, net: ResNet18, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self._bn(net.bn1, self._conv(net.conv1, x)))
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for blk in stage:
                x = self._basic_block(blk, x)
        return self._linear(net.fc, self._pool_features(x))

    def _dense_layer(self, layer: _DenseLayer, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self._cat(feats) if len(feats) > 1 else feats[0]
        x = self._conv(layer.conv1, F.relu(self._bn(layer.norm1, x)))
        return self._conv(layer.conv2, F.relu(self._bn(layer.norm2, x)))

    def _densenet(self, net: DenseNet, x: torch.Tensor) -> torch.Tensor:
        for mod in net.features:
            if isinstance(mod, nn.Conv2d):
                x = self._conv(mod, x)
            elif isinstance(mod, nn.BatchNorm2d):
                x = self._bn(mod, x)
            elif isinstance(mod, nn.ReLU):
                x = F.relu(x)
            elif isinstance(mod, _DenseBlock):
                feats = [x]
                for layer in mod.values():
                    feats.append(self._dense_layer(layer, feats))
                x = self._cat(feats)
            elif isinstance(mod, _Transition):
                x = self._conv(mod.conv, F.relu(self._bn(mod.norm, x)))
                x = F.avg_pool2d(x, mod.pool.kernel_size, mod.pool.stride)
            elif isinstance(mod, (nn.Identity, nn.MaxPool2d)):
                x = mod(x)
            else:
                raise TypeError(f"stacked DenseNet: unexpected module {type(mod).__name__} in features")
        return self._linear(net.classifier, self._pool_features(F.relu(x)))

    # ---- one step ----------------------------------------------------------------------------------------------------
    def grads(
        self, W: torch.Tensor, buffers: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``(G [m, P], losses [m], new_buffers)`` for weights ``W`` [m, P] and inputs ``xs`` [m, b, C, H, W]."""
        m, b = xs.shape[0], xs.shape[1]
        self._m = m
        self._params = self._leaves(W)
        # running statistics as [m·C] copies (batch_norm updates them in place); counters [m]
        self._bufs = {k: (v.reshape(-1).clone() if v.is_floating_point() else v.clone()) for k, v in buffers.items()}
        x = xs.transpose(0, 1).reshape(b, m * xs.shape[2], *xs.shape[3:])  # grouped layout [b, m·C, H, W]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self._resnet(self.model, x) if isinstance(self.model, ResNet18) else self._densenet(self.model, x)
        losses = F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="none").view(m, b).mean(1)
        names = list(self._params)
        grads = torch.autograd.grad(losses.sum(), [self._params[n] for n in names])
        G = torch.empty_like(W)
        for n, g in zip(names, grads):
            o, shape = self.offsets[n]
            G[:, o : o + shape.numel()] = g.reshape(m, -1)
        new_buffers = {k: v.view(buffers[k].shape) for k, v in self._bufs.items()}
        self._params = self._bufs = None
        return G, losses.detach(), new_buffers
