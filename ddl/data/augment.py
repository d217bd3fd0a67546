"""CIFAR augmentation (4-pixel-padded random crop + horizontal flip) on batched tensors.

The random draws come from an explicit generator so that each learner's augmented stream is a function of
(seed, step, learner) alone, independent of the backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment_cifar(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip, per sample. ``x``: [N, C, H, W]."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # [N, H]
    cols = (dx[:, None] + torch.arange(w)[None, :])  # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(x.device)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()
