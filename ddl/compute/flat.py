"""A model's parameters as one flat vector, and learners as rows of a [m, P] matrix.

Communication (all-reduce, neighbour exchange) moves one contiguous tensor per step; the forward pass sees
per-parameter views of the same storage through :meth:`FlatSpec.unflatten`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FlatSpec:
    """Names, shapes and sizes of a model's parameters (in ``named_parameters`` order) and float buffers."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    buffer_names: tuple[str, ...]

    @classmethod
    def of(cls, model: nn.Module) -> FlatSpec:
        names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()])
        return cls(tuple(names), tuple(shapes), tuple(n for n, _ in model.named_buffers()))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(s.numel() for s in self.shapes)

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def flatten(self, model: nn.Module) -> torch.Tensor:
        """The model's parameters as a detached flat vector (a copy)."""
        params = dict(model.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-parameter views of the flat vector ``w`` (works under vmap and autograd)."""
        return {n: t.view(s) for n, t, s in zip(self.names, w.split(self.sizes), self.shapes)}

    def buffers(self, model: nn.Module) -> dict[str, torch.Tensor]:
        b = dict(model.named_buffers())
        return {n: b[n].detach().clone() for n in self.buffer_names}

    def load(self, model: nn.Module, w: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """Copy the flat vector (and buffers) into ``model`` in place; returns it."""
        with torch.no_grad():
            params = dict(model.named_parameters())
            for n, t in self.unflatten(w).items():
                params[n].copy_(t)
            if buffers:
                own = dict(model.named_buffers())
                for n, t in buffers.items():
                    own[n].copy_(t)
        return model

