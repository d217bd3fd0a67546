"""Decentralized parallel SGD: each learner takes its gradient at its own weights and starts from the
average of its neighbour set (docs/theory.md §7, Lian et al. 2017):

    w_a(t+1) = Σ_j M(t)_aj w_j(t) − α (∇L_{μ_a}(w_a(t)) + β w_a(t))         (no momentum)
    u_a(t+1) = μ u_a(t) + ∇L_{μ_a}(w_a(t)) + β w_a(t);  w_a(t+1) = Σ_j M(t)_aj w_j(t) − α u_a(t+1)

The neighbour exchange is started before the backward pass and awaited after it, so a backend with
asynchronous transport overlaps communication with computation.  Weight decay and momentum are per learner.

Memory traffic, not arithmetic, bounds this step for many small learners, so it is written to touch the
[m, P] matrices as few times as possible: the gradient is written straight into the new weights, band by band
just before the mixing adds the neighbours there (or accumulated into the momentum buffer), the weight-decay
term rides on the mixing's own-row weight, and the
new weights are written into the storage of the previous step's weights when nobody else holds it (a fresh
[m, P] tensor per step costs page faults comparable to the whole step at n = 1 024).
"""

from __future__ import annotations

import torch

from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.communication import Communication, Identity
from ddl.algorithms.weight_decay import decay_gradient


class DPSGD(Algorithm):
    name = "dpsgd"
    communication = Communication(neighbour_mixing=True)
    identity = Identity(label="DPSGD", color="C1", experiment_fields=("topology",))

    def __init__(self, gradients, comm, momentum: float = 0.0, topology=None, weight_decay_kind: str = "l2sq"):
        super().__init__(gradients, comm, momentum, weight_decay_kind)
        self.mixer = self._neighbour_mixer(topology)

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        W = state.W
        t = state.step
        pending = self.mixer.start(W, t)
        out = self._output_buffer(W)
        # l2sq's decay β w is a multiple of the own row and joins the fused paths below; any other penalty's
        # gradient (l2norm: β w/‖w‖ per learner) is computed here, at the weights before the step, and added
        decay_sq = weight_decay if self.weight_decay_kind == "l2sq" else 0.0
        extra = decay_gradient(W, weight_decay, self.weight_decay_kind) if weight_decay and not decay_sq else None
        if self.momentum:
            if state.momentum is None:
                state.momentum = torch.zeros_like(W)
            u = state.momentum
            # u ← μ u + ∇L + ∇penalty, then w ← M w − α u
            losses, state.buffers = self.gradients.grads_into(W, state.buffers, xs, ys, u, alpha=1.0,
                                                              beta=self.momentum)
            if decay_sq:
                u.add_(W, alpha=decay_sq)
            if extra is not None:
                u.add_(extra)
            self.mixer.finish(W, pending, t, out=out)
            out.add_(u, alpha=-lr)
        else:
            # out ← −α ∇L + M w − α β w (the decay term joins the own-row weight), the gradient rows written
            # band by band by the mixing, just before it adds the neighbours into them
            losses, state.buffers, write = self.gradients.grads_deferred(W, state.buffers, xs, ys, alpha=-lr)
            self.mixer.finish(W, pending, t, out=out, fill=write, self_extra=-lr * decay_sq)
            if extra is not None:
                out.add_(extra, alpha=-lr)
        self._replace_weights(state, out)
        del W
        state.step += 1
        return losses
