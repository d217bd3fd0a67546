"""Asynchronous decentralized parallel SGD (AD-PSGD; Lian, Zhang, Zhang & Liu 2018, Algorithm 1).

Every learner loops on its own clock, without a barrier:

1. read its weights x̂_i and draw a minibatch;
2. compute the stochastic gradient g_i = ∇L_μ(x̂_i) (+ the weight-decay gradient at x̂_i);
3. average its weights with one neighbour j, drawn uniformly from the topology: x_i, x_j ← (x_i + x_j)/2
   (atomically);
4. apply the gradient, now stale: x_i ← x_i − α g_i.

Between 1 and 4 other learners may have averaged into x_i, so g_i was taken at weights x_i no longer holds.  The
order of the events comes from the simulated clock (:class:`ddl.algorithms.asynchrony.EventSchedule`: compute
times with the run's jitter and stragglers), so the same seed gives the same asynchronous history.  A learner
reads its weights for its next computation right after its own update.

**What a step is.**  One step of a run (the unit of logging, epochs, the learning-rate schedule and
``sim_time_s``) is n gradient applications, by whichever learners finish first: n·b samples, as one step of
SSGD or DPSGD.  Learner i's k-th computation uses the minibatch of (step k, learner i) of the run's stream, so a
fast learner goes through its data faster.

**Staleness** of a gradient: the number of gradient applications by other learners between its read and its
application; every evaluation record carries its mean, maximum and histogram since the previous record.

**Noise.**  :meth:`gradient_points` gives the noise meter the in-flight gradients' read weights x̂_i and
minibatches, so its extra noise is (1/n) Σ_i [∇L_μi(x̂_i) − ∇L_μi(w̄)], the stale gradients against the SSGD
step at the average (docs/theory.md).

Simulator backend only; no momentum; no ``--resume`` (the in-flight gradients are not checkpointed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ddl.algorithms.asynchrony import EventSchedule
from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.communication import Communication, Identity
from ddl.algorithms.weight_decay import decay_gradient
from ddl.errors import ConfigError

# a fixed tag mixed into the run seed: the neighbour draws have a generator of their own
_PEER_KEY = 0xAD95


def peer_generator(seed: int) -> np.random.Generator:
    """The generator of the random-neighbour draws (one per event, in event order)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(_PEER_KEY,)))


class ADPSGD(Algorithm):
    name = "adpsgd"
    communication = Communication(neighbour_mixing=True, neighbours_per_step=1, synchronous=False)
    identity = Identity(label="AD-PSGD", color="C3", experiment_fields=("topology",))

    @classmethod
    def check_config(cls, cfg) -> None:
        """One line for what AD-PSGD does not do: distributed backends, a measured compute time (the event
        order would then differ between runs of one seed), resume, momentum."""
        super().check_config(cfg)
        if cfg.backend != "sim":
            raise ConfigError(f"--backend: {cls.name} runs on the simulator backend only: its events are ordered by "
                              "one process's simulated clock (use --backend sim)")
        if cfg.compute_ms is None:
            raise ConfigError(f"--compute-ms: {cls.name} orders its events by the simulated clock, which needs a "
                              "fixed compute time per step (a measured one would make the history differ between "
                              "runs of one seed)")
        if cfg.resume:
            raise ConfigError(f"--resume: {cls.name} cannot be resumed (its in-flight gradients are not "
                              "checkpointed); start the run again")
        if cfg.momentum:
            raise ConfigError(f"--momentum: {cls.name} runs without momentum, got {cfg.momentum}")

    def __init__(self, gradients, comm, momentum: float = 0.0, topology=None, weight_decay_kind: str = "l2sq",
                 events: EventSchedule | None = None,
                 minibatch: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]] | None = None, seed: int = 0):
        super().__init__(gradients, comm, momentum, weight_decay_kind)
        if momentum:
            raise ConfigError(f"--momentum: {self.name} runs without momentum, got {momentum}")
        if comm.world != 1:
            raise ConfigError(f"--backend: {self.name} runs on the simulator backend only (its events are ordered "
                              "by one process's simulated clock)")
        if topology is None or events is None or minibatch is None:
            raise ValueError("AD-PSGD needs a topology, an event schedule and a minibatch source")
        self.topology, self.events, self.minibatch = topology, events, minibatch
        self.peers = peer_generator(seed)
        self._G: torch.Tensor | None = None  # the gradient each learner is computing
        self._read_at = np.zeros(comm.n, dtype=np.int64)  # events applied when it read its weights
        self._loss: torch.Tensor | None = None  # each learner's latest minibatch loss
        self._staleness: list[int] = []  # since the last metrics() call
        self._X: torch.Tensor | None = None  # the weights each learner's in-flight gradient was read at
        self._k = np.zeros(comm.n, dtype=np.int64)  # and the index of its computation (its minibatch)

    def _compute(self, state: LearnerState, i: int, k: int, weight_decay: float) -> None:
        """Learner i reads its weights and computes its k-th gradient (the stale one it will apply)."""
        x, y = self.minibatch(k, i)
        w = state.W[i : i + 1]
        bufs = {name: v[i : i + 1] for name, v in state.buffers.items()}
        G, loss, new_bufs = self.gradients.grads(w, bufs, x.unsqueeze(0), y.unsqueeze(0))
        for name, v in new_bufs.items():
            state.buffers[name][i : i + 1] = v
        if weight_decay:
            G = G + decay_gradient(w, weight_decay, self.weight_decay_kind)
        self._G[i] = G[0]
        self._X[i] = w[0]
        self._k[i] = k
        self._loss[i] = loss[0].detach()
        self._read_at[i] = self.events.events

    def step(self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float,
             weight_decay: float) -> torch.Tensor:
        """n gradient applications in the order of the simulated clock (``xs``, ``ys`` are not used: each
        computation draws its own minibatch when it starts)."""
        n = self.comm.n
        state.W = state.W.clone()  # updated in place below; the caller may hold the previous weights
        if self._G is None:  # every learner starts its first computation at time 0, at the initial weights
            self._G = torch.empty_like(state.W)
            self._X = torch.empty_like(state.W)  # the weights each in-flight gradient was read at
            self._loss = torch.empty(n, dtype=torch.float64, device=state.W.device)
            for i in range(n):
                self._compute(state, i, 0, weight_decay)
        W = state.W
        for _ in range(n):
            i = self.events.pop()
            self._staleness.append(int(self.events.events - 1 - self._read_at[i]))
            peers = [j for j in self.topology.neighbours(i, state.step) if j != i]
            if peers:
                j = peers[int(self.peers.integers(len(peers)))]
                avg = (W[i] + W[j]) / 2
                W[i] = avg
                W[j] = avg
            W[i].add_(self._G[i], alpha=-lr)
            self._compute(state, i, int(self.events.started[i]) - 1, weight_decay)
        state.step += 1
        return self._loss.clone()

    def gradient_points(self, state: LearnerState, xs, ys) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The in-flight gradients' read weights and minibatches (one per learner: the gradients applied next);
        before the first step, the initial weights and every learner's first minibatch."""
        n = self.comm.n
        X, ks = (state.W, [0] * n) if self._X is None else (self._X, self._k.tolist())
        batches = [self.minibatch(int(k), i) for i, k in enumerate(ks)]
        return X, torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])

    def metrics(self) -> dict:
        """Staleness of the gradients applied since the last call: mean, maximum and histogram (counts of
        staleness 0, 1, …)."""
        s, self._staleness = np.asarray(self._staleness, dtype=np.int64), []
        if s.size == 0:
            return {}
        return {"staleness_mean": float(s.mean()), "staleness_max": int(s.max()),
                "staleness_hist": np.bincount(s).tolist()}
