"""CHOCO-SGD (Koloskova, Stich & Jaggi 2019, "Decentralized stochastic optimization and gossip algorithms with
compressed communication", Algorithm 1): learners exchange *compressed differences* q_a = Q(w_a − ŵ_a) to
public copies ŵ, which every neighbour updates identically (error feedback: what compression left out stays in
w_a − ŵ_a and is sent later); a consensus step of size γ (``--consensus-step``) moves each learner towards its
neighbours' public copies (docs/theory.md §7.1):

    q_a(t) = Q(w_a(t) − ŵ_a(t));   ŵ_j(t+1) = ŵ_j(t) + q_j(t)    (every j: sent to j's neighbours)
    u_a(t+1) = μ u_a(t) + ∇L_{μ_a}(w_a(t)) + β w_a(t)
    w_a(t+1) = w_a(t) + γ Σ_j M_aj (ŵ_j(t+1) − ŵ_a(t+1)) − α u_a(t+1)

(ŵ(0) = 0).  The paper takes the gradient step first and gossips the result; here the consensus step acts on
w(t), in the order of this project's DPSGD (w ← M w − α u, Lian et al. 2017), so the exchange overlaps the
gradient exactly as DPSGD's does and, with ``--compressor none`` and γ = 1 (ŵ(t+1) = w(t)), CHOCO *is* DPSGD
(tested to 1e-6).  A learner keeps ŵ_a and s_a = Σ_j M_aj ŵ_j (updated by the mixed q's), both checkpointed;
the graph must be static (s would not follow a changing M).
"""

from __future__ import annotations

import torch

from ddl.algorithms import compression
from ddl.algorithms.base import Algorithm, LearnerState
from ddl.algorithms.communication import Communication, Identity
from ddl.errors import ConfigError

_VALUE_BYTES = {"float32": 4, "float64": 8}


class Choco(Algorithm):
    name = "choco"
    communication = Communication(neighbour_mixing=True)
    identity = Identity(label="CHOCO-SGD", color="C6",
                        experiment_fields=("topology", "compressor", "compress_ratio", "consensus_step"))
    options = ("compressor", "compress_ratio", "consensus_step", "seed", "dtype")

    @classmethod
    def communication_for(cls, cfg=None) -> Communication:
        if cfg is None:
            return cls.communication
        vb = _VALUE_BYTES[cfg.dtype]
        compression.check(cfg.compressor, cfg.compress_ratio, vb)
        return Communication(neighbour_mixing=True,
                             message_fraction=compression.message_fraction(cfg.compressor, cfg.compress_ratio, vb))

    @classmethod
    def check_config(cls, cfg) -> None:
        from ddl.algorithms.topology import make_topology

        cls.communication_for(cfg)
        if make_topology(cfg.topology, cfg.learners).time_varying:
            raise ConfigError(f"--topology: choco needs a static graph, {cfg.topology} changes every step")

    def __init__(self, gradients, comm, momentum: float = 0.0, topology=None, weight_decay_kind: str = "l2sq",
                 compressor: str = "none", compress_ratio: float = 1.0, consensus_step: float = 1.0, seed: int = 0,
                 dtype: str = "float32"):
        super().__init__(gradients, comm, momentum, weight_decay_kind)
        self.mixer = self._neighbour_mixer(topology)
        if topology.time_varying:
            raise ConfigError(f"--topology: choco needs a static graph, {topology.name} changes every step")
        self.value_bytes = _VALUE_BYTES[dtype]
        self.compressor = compression.Compressor(compressor, compress_ratio, seed, self.value_bytes)
        self.gamma = consensus_step

    def message_bytes(self, numel: int, value_bytes: int) -> int:
        """Bytes of one learner's compressed message to one neighbour (top-k: values + indices; qsgd: norm +
        bits)."""
        return compression.message_bytes(self.compressor.kind, self.compressor.ratio, numel, value_bytes)

    def step(
        self, state: LearnerState, xs: torch.Tensor, ys: torch.Tensor, lr: float, weight_decay: float
    ) -> torch.Tensor:
        W, t = state.W, state.step
        if "public" not in state.rows:
            state.rows["public"], state.rows["public_mix"] = torch.zeros_like(W), torch.zeros_like(W)
        hat, s = state.rows["public"], state.rows["public_mix"]
        q = self.compressor.compress(W - hat, t, self.comm.learners).contiguous()
        pending = self.mixer.start(q, t)
        G, losses, state.buffers = self.gradients.grads(W, state.buffers, xs, ys)
        u = self.direction(state, G, W, weight_decay)
        self.mixer.finish(q, pending, t, out=s, accumulate=True)  # s ← s + M q = M ŵ(t+1)
        hat.add_(q)
        out = self._output_buffer(W)
        torch.sub(s, hat, out=out)
        out.mul_(self.gamma).add_(W).add_(u, alpha=-lr)
        self._replace_weights(state, out)
        del W
        state.step += 1
        return losses
