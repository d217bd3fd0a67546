"""Synchronous SGD: every learner takes its gradient at the average w̄ and all gradients are averaged.

    w_a(t+1) = w̄(t) − α · (1/n) Σ_b ∇L_{μ_b}(w̄(t))

All learners therefore hold w̄ after every step (one model, batch B = n·b).  Weight decay and momentum act on
the averaged gradient (the momentum buffer is the same on every learner, as in data-parallel SGD).
"""

from __future__ import annotations

import torch

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.communication import Communication, Identity


class SSGD(Algorithm):
    name = "ssgd"
    communication = Communication(gradient_allreduce=True)
    identity = Identity(label="SSGD", color="C0", baseline=True)

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        w_bar = state.W[0]
        g_sum, losses, state.buffers = self.gradients.sum_grads_shared(w_bar, state.buffers, xs, ys)
        g = self.comm.allreduce_sum(g_sum) / self.comm.n
        d = self.direction(state, g.unsqueeze(0), w_bar.unsqueeze(0), weight_decay)
        out = self._output_buffer(state.W)
        out.copy_(torch.add(w_bar, d[0], alpha=-lr).expand_as(state.W))
        del w_bar  # a view of the old weights: would keep their storage from being recycled
        self._replace_weights(state, out)
        state.step += 1
        return losses
