"""BatchNorm running statistics recalibrated for the averaged model w̄.

The learners' running statistics were gathered with *their* weights; averaging them does not give the statistics
of w̄'s own activations, so the network evaluated and analysed would not be the one whose weights are reported.
As :func:`torch.optim.swa_utils.update_bn` does, every BatchNorm layer's statistics are reset and recomputed with
``momentum=None`` (a cumulative average over batches) by forward passes of w̄ in train mode over a seeded,
class-stratified sample of the training set, in batches of the learners' minibatch size.  The sample has its own
generator (``stratified_subset(..., "bn-recalibrate")``) and the forward passes run under a forked RNG, so no
training random stream is consumed.
"""

from __future__ import annotations

import torch
from torch import nn

BN_MODES = ("on", "off")
_BN = nn.modules.batchnorm._BatchNorm


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> int:
    """Reset every BatchNorm layer of ``model`` and set its running mean/variance to the cumulative average of
    the per-batch mean and (unbiased) variance over ``x`` split into consecutive batches of ``batch_size``
    (complete batches only, so every batch weighs the same; one batch of all of ``x`` when it holds fewer than
    ``batch_size`` rows).  Returns the number of batches; ``model`` is left in eval mode.

    A model without BatchNorm is not touched (0 batches)."""
    layers = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: equal weight per batch
    was_training = model.training
    model.train()
    batches = 0
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            n_batches = max(1, x.shape[0] // batch_size)
            for i in range(n_batches):
                model(x[i * batch_size : (i + 1) * batch_size])
                batches += 1
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        model.train(was_training)
    model.eval()
    return batches


class Recalibration:
    """``--bn-recalibrate`` for one run: the training images w̄'s BatchNorm statistics are recomputed on (``x``;
    None: the model has no BatchNorm or the option is off, and the learners' averaged statistics are kept)."""

    def __init__(self, model: nn.Module, x: torch.Tensor | None, batch_size: int):
        self.has_batchnorm = has_batchnorm(model)
        self.x = x if self.has_batchnorm else None
        self.batch_size = batch_size

    @property
    def active(self) -> bool:
        return self.x is not None

    def __call__(self, model: nn.Module) -> nn.Module:
        """``model`` with recalibrated statistics when active (in place), else unchanged."""
        if self.x is not None:
            recalibrate_bn(model, self.x, self.batch_size)
        return model

    def info(self) -> dict | None:
        """How w̄'s BatchNorm statistics were made, for summary.json (None: the model has none)."""
        if not self.has_batchnorm:
            return None
        if self.x is None:
            return {"statistics": "averaged"}
        n = int(self.x.shape[0])
        return {"statistics": "recalibrated", "samples": n, "batch_size": self.batch_size,
                "batches": max(1, n // self.batch_size)}
