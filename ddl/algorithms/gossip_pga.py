"""Gossip-PGA (Chen et al. 2021, "Accelerating gossip SGD with periodic global averaging"): DPSGD's neighbour
mixing every step, and every H = ``--period`` steps a global average in its place (docs/theory.md §7.1):

    w_a(t+1) = Σ_j M(t)_aj w_j(t) − α u_a(t+1)          when (t+1) mod H ≠ 0  (the DPSGD step of this project)
    w_a(t+1) = (1/n) Σ_b (w_b(t) − α u_b(t+1)),  u_a ← ū   when (t+1) mod H = 0

with u_a(t+1) = μ u_a(t) + ∇L_{μ_a}(w_a(t)) + β w_a(t) (u = the gradient without momentum).  The momentum
buffers are averaged with the weights, so with H = 1 it is SSGD (tested to 1e-6).
"""

from __future__ import annotations

import torch

from ddl.algorithms.base import LearnerState
from ddl.algorithms.communication import Communication, Identity
from ddl.algorithms.dpsgd import DPSGD
from ddl.algorithms.local_sgd import with_period


class GossipPGA(DPSGD):
    name = "gossip_pga"
    communication = Communication(neighbour_mixing=True, global_average_every=1)
    identity = Identity(label="Gossip-PGA", color="C4", experiment_fields=("topology", "period"))
    options = ("period",)

    @classmethod
    def communication_for(cls, cfg=None) -> Communication:
        return cls.communication if cfg is None else with_period(cls.communication, cfg.period)

    def __init__(self, gradients, comm, momentum: float = 0.0, topology=None, weight_decay_kind: str = "l2sq",
                 period: int = 1):
        super().__init__(gradients, comm, momentum, topology, weight_decay_kind)
        self.period = with_period(self.communication, period).global_average_every

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        if (state.step + 1) % self.period:
            return super().step(state, xs, ys, lr, weight_decay)
        losses = self.local_step(state, xs, ys, lr, weight_decay)
        state.step += 1
        self.global_average(state)
        return losses
