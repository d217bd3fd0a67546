"""State and the shared update rule of the multi-learner algorithms."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ddl.algorithms.communication import Communication, Identity
from ddl.algorithms.mixing import Mixer
from ddl.algorithms.weight_decay import decay_gradient
from ddl.comm.base import Collective
from ddl.compute.learners import LearnerGradients


@dataclass
class LearnerState:
    """Everything that evolves during training for this worker's m learners (explicit, checkpointable).

    ``W`` [m, P] flat weights; ``buffers`` BatchNorm statistics {name: [m, ...]}; ``momentum`` [m, P] or None;
    ``rows``: an algorithm's own per-learner state {name: [m, ...]} (gradient tracking's tracker y, CHOCO's
    public copies x̂), checkpointed and restored row by row like the momentum.  The data-stream position is
    ``step`` itself (streams are pure functions of it; so is every algorithm's own randomness).
    """

    W: torch.Tensor
    buffers: dict[str, torch.Tensor]
    momentum: torch.Tensor | None = None
    step: int = 0
    rows: dict[str, torch.Tensor] = field(default_factory=dict)


def _sole_owner(t: torch.Tensor) -> bool:
    """True when ``t`` (held in one Python variable by the caller) and its storage are referenced nowhere else."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:  # a torch without the probe: never recycle
        return False
    # getrefcount: the caller's variable, this argument and getrefcount's own; storage: t + the storage object
    return sys.getrefcount(t) <= 3 and use_count(t.untyped_storage()._cdata) <= 2


class Algorithm(ABC):
    """An update: where the gradient is taken and what is averaged.  Subclasses define :meth:`step` and declare
    ``name`` (the ``--algo`` value), ``communication`` (what a step sends and when) and ``identity`` (how its
    runs are shown and grouped); see :mod:`ddl.algorithms.communication`."""

    name: ClassVar[str] = ""
    communication: ClassVar[Communication]
    identity: ClassVar[Identity]
    #: config fields the constructor takes as keyword arguments (a period, a compressor, the seed of its own
    #: random stream); :func:`ddl.algorithms.build_algorithm` passes them from the run's config
    options: ClassVar[tuple[str, ...]] = ()
    #: the average weight w̄ moves as heavy-ball SGD on ḡ = (1/n) Σ_a [∇L_{μ_a}(w_a) + decay at w_a], each
    #: learner's gradient at its own weights: then the algorithm's extra noise relative to the SSGD step at w̄ is
    #: η = (1/n) Σ_a [∇L_{μ_a}(w_a) − ∇L_{μ_a}(w̄)], what the noise meter measures (docs/theory.md §8); an
    #: algorithm for which it does not hold (stale gradients) says False and the meter refuses it
    mean_follows_own_gradients: ClassVar[bool] = True

    @classmethod
    def communication_for(cls, cfg: Any = None) -> Communication:
        """What this algorithm sends in a run configured by ``cfg``: the class's ``communication``; an algorithm
        with a config-dependent fact (a period, a compression ratio) fills it in here."""
        return cls.communication

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """A :class:`~ddl.errors.ConfigError` naming the flag when ``cfg`` asks this algorithm for something it
        does not do (called by ``TrainConfig.validate``, before anything is written)."""
        cls.communication_for(cfg)

    def __init__(self, gradients: LearnerGradients, comm: Collective, momentum: float = 0.0,
                 weight_decay_kind: str = "l2sq"):
        self.gradients = gradients
        self.comm = comm
        self.momentum = momentum
        self.weight_decay_kind = weight_decay_kind

    def direction(self, state: LearnerState, G: torch.Tensor, W: torch.Tensor, weight_decay: float) -> torch.Tensor:
        """Heavy-ball direction from gradients ``G`` at weights ``W`` (same shape), updating the buffers; weight
        decay (:mod:`ddl.algorithms.weight_decay`) adds the penalty's gradient at ``W``."""
        if weight_decay:
            G = G + decay_gradient(W, weight_decay, self.weight_decay_kind)
        if self.momentum:
            if state.momentum is None:
                state.momentum = torch.zeros_like(G)
            state.momentum.mul_(self.momentum).add_(G)
            return state.momentum
        return G

    def message_bytes(self, numel: int, value_bytes: int) -> int | None:
        """Bytes of one message a learner sends one neighbour (one row; None when the algorithm mixes no
        neighbours): a dense row here, CHOCO-SGD's compressed row there."""
        return numel * value_bytes if type(self).communication.neighbour_mixing else None

    def global_average(self, state: LearnerState) -> None:
        """Every learner's weights, and momentum buffers, replaced by their average over all n learners (one
        all-reduce each).  Averaging the buffers too makes a step that ends with an average from a common
        point the SSGD step (docs/theory.md §7.1); BatchNorm statistics stay per learner."""
        n = self.comm.n
        w_bar = self.comm.allreduce_sum(state.W.sum(0)) / n
        state.W.copy_(w_bar.expand_as(state.W))
        if state.momentum is not None:
            u_bar = self.comm.allreduce_sum(state.momentum.sum(0)) / n
            state.momentum.copy_(u_bar.expand_as(state.momentum))

    def local_step(self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float,
                   weight_decay: float) -> torch.Tensor:
        """Every learner's own (heavy-ball) SGD step at its own weights, nothing sent; returns the losses [m]."""
        G, losses, state.buffers = self.gradients.grads(state.W, state.buffers, xs, ys)
        d = self.direction(state, G, state.W, weight_decay)
        new = self._output_buffer(state.W)
        torch.add(state.W, d, alpha=-lr, out=new)
        self._replace_weights(state, new)
        return losses

    # ---- the [m, P] output of a step, without a fresh allocation --------------------------------------
    _previous: torch.Tensor | None = None  # the weights before the last step: the next step's output buffer

    def _neighbour_mixer(self, topology) -> Mixer:
        """The mixer of an algorithm that averages with its neighbours, which needs a topology to do so."""
        if topology is None:
            raise ValueError(f"{self.identity.label} needs a topology")
        return Mixer(topology, self.comm)

    def _output_buffer(self, W: torch.Tensor) -> torch.Tensor:
        """A tensor like ``W`` to write the new weights into: the previous step's weights when nobody else holds
        them (a fresh [m, P] tensor costs page faults comparable to a whole step at n = 1 024), else a new one.
        Code that keeps ``state.W`` across steps must keep a clone, and then gets one."""
        prev, self._previous = self._previous, None
        if prev is not None and prev.shape == W.shape and prev.dtype == W.dtype and prev.device == W.device \
                and prev.data_ptr() != W.data_ptr() and _sole_owner(prev):
            return prev
        return torch.empty_like(W)

    def _replace_weights(self, state: LearnerState, new: torch.Tensor) -> None:
        self._previous, state.W = state.W, new

    def gradient_points(self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The weights [m, P] and minibatches at which the gradients the next step applies are taken (what the
        noise meter compares with the gradients at w̄): the learners' own weights and this step's minibatches;
        an algorithm with stale gradients answers with the weights they were read at."""
        return state.W, xs, ys

    def metrics(self) -> dict[str, Any]:
        """Facts of the algorithm's own to add to the next metrics record (e.g. an asynchronous algorithm's
        staleness since the last record); none by default."""
        return {}

    @abstractmethod
    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        """One iteration for this worker's learners; returns their minibatch losses [m]."""
