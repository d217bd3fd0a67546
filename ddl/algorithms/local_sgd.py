"""Local SGD (Stich 2019, "Local SGD converges fast and communicates little"; Lin et al. 2020, "Don't use large
mini-batches, use local SGD"): every learner takes H = ``--period`` SGD steps on its own weights, then all
learners' weights are replaced by their average (docs/theory.md §7.1):

    u_a ← μ u_a + ∇L_{μ_a}(w_a) + β w_a;   w_a ← w_a − α u_a              (every step, per learner)
    w_a ← w̄,  u_a ← ū                                                      (after steps t with (t+1) mod H = 0)

The momentum buffers are averaged with the weights (Lin et al.'s choice), so with H = 1 every step starts from a
common w̄ and ū and the average of the learners' steps is the SSGD step (tests check it to 1e-6).
"""

from __future__ import annotations

import dataclasses

import torch

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.communication import Communication, Identity


def with_period(communication: Communication, period: int) -> Communication:
    """``communication`` with a global average every ``period`` steps (which it checks: ≥ 1)."""
    return dataclasses.replace(communication, global_average_every=int(period))


class LocalSGD(Algorithm):
    name = "local_sgd"
    communication = Communication(global_average_every=1)
    identity = Identity(label="local SGD", color="C2", experiment_fields=("period",))
    options = ("period",)

    @classmethod
    def communication_for(cls, cfg=None) -> Communication:
        return cls.communication if cfg is None else with_period(cls.communication, cfg.period)

    def __init__(self, gradients, comm, momentum: float = 0.0, weight_decay_kind: str = "l2sq", period: int = 1):
        super().__init__(gradients, comm, momentum, weight_decay_kind)
        self.period = with_period(self.communication, period).global_average_every

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        losses = self.local_step(state, xs, ys, lr, weight_decay)
        state.step += 1
        if state.step % self.period == 0:
            self.global_average(state)
        return losses
