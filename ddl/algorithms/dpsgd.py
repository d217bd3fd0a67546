"""Decentralized parallel SGD: each learner takes its gradient at its own weights and starts from the
average of its neighbour set (docs/theory.md §7, Lian et al. 2017):

    w_a(t+1) = Σ_j M_aj w_j(t) − α ∇L_{μ_a}(w_a(t))

The neighbour exchange is started before the backward pass and awaited after it, so a backend with
asynchronous transport overlaps communication with computation.  Weight decay and momentum are per learner.
"""

from __future__ import annotations

import torch

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.mixing import Mixer


class DPSGD(Algorithm):
    name = "dpsgd"
    uses_topology = True

    def __init__(self, gradients, comm, momentum: float = 0.0, topology=None, weight_decay_kind: str = "l2sq"):
        super().__init__(gradients, comm, momentum, weight_decay_kind)
        if topology is None:
            raise ValueError("DPSGD needs a topology")
        self.mixer = Mixer(topology, comm)

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        W = state.W
        pending = self.mixer.start(W)
        G, losses, state.buffers = self.gradients.grads(W, state.buffers, xs, ys)
        d = self.direction(state, G, W, weight_decay)
        state.W = self.mixer.finish(W, pending).add_(d, alpha=-lr)
        state.step += 1
        return losses
