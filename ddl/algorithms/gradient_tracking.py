"""Gradient tracking (DIGing: Nedić, Olshevsky & Shi 2017, "Achieving geometric convergence for distributed
optimization over time-varying graphs"; its stochastic form: Pu & Nedić 2021, "Distributed stochastic gradient
tracking methods"): every learner mixes its weights *and* a tracker y_a of the average gradient, so a learner
moves along an estimate of the network's mean gradient rather than its own (exact under non-IID data;
docs/theory.md §7.1).  With g_a(t) = ∇L_{μ_a}(w_a(t)) + β w_a(t) at step t's minibatch:

    y_a(t) = Σ_j M(t)_aj y_j(t−1) + g_a(t) − g_a(t−1)        (y_a(0) = g_a(0))
    w_a(t+1) = Σ_j M(t)_aj w_j(t) − α y_a(t)

Two neighbour exchanges per step (w and y).  The average of the trackers is the average gradient at every step
(M doubly stochastic), so the mean weight moves exactly as in DPSGD.  No momentum (the method's papers have none;
``--momentum`` is refused).  The tracker y and the last gradient g are per-learner state, checkpointed.
"""

from __future__ import annotations

import torch

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.communication import Communication, Identity
from ddl.algorithms.weight_decay import decay_gradient
from ddl.errors import ConfigError


class GradientTracking(Algorithm):
    name = "gradient_tracking"
    communication = Communication(neighbour_mixing=True, exchanges_per_step=2)
    identity = Identity(label="gradient tracking", color="C5", experiment_fields=("topology",))

    @staticmethod
    def _refuse_momentum(momentum: float) -> None:
        if momentum:
            raise ConfigError("--momentum: gradient_tracking takes no momentum (its update has none)")

    @classmethod
    def check_config(cls, cfg) -> None:
        cls._refuse_momentum(cfg.momentum)

    def __init__(self, gradients, comm, momentum: float = 0.0, topology=None, weight_decay_kind: str = "l2sq"):
        super().__init__(gradients, comm, momentum, weight_decay_kind)
        self._refuse_momentum(momentum)  # also for direct construction, which skips check_config
        self.mixer = self._neighbour_mixer(topology)

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        W, t = state.W, state.step
        pending = self.mixer.start(W, t)
        G, losses, state.buffers = self.gradients.grads(W, state.buffers, xs, ys)
        if weight_decay:
            G = G + decay_gradient(W, weight_decay, self.weight_decay_kind)
        out = self._output_buffer(W)
        self.mixer.finish(W, pending, t, out=out)  # M(t) w(t)
        if "tracker" not in state.rows:
            y = G.clone()
        else:
            y_prev = state.rows["tracker"]
            y = self.mixer.finish(y_prev, self.mixer.start(y_prev, t), t)
            y.add_(G).sub_(state.rows["last_grad"])
        out.add_(y, alpha=-lr)
        state.rows["tracker"], state.rows["last_grad"] = y, G
        self._replace_weights(state, out)
        del W
        state.step += 1
        return losses
