"""Message compressors of CHOCO-SGD (``--compressor``, ``--compress-ratio r``), applied to each learner's row:

``none``
    the row itself (r must be 1).
``topk``
    the k = ⌈r·P⌉ entries of largest magnitude, the rest zero (Stich et al. 2018); the message is k values and
    k 32-bit indices, or the dense row when that is smaller.
``qsgd``
    random quantisation of Alistarh et al. (2017) with s levels: ‖v‖ · sign(v_i) · ξ_i / s, where
    ξ_i = ⌊s |v_i|/‖v‖⌋ + Bernoulli(frac(s |v_i|/‖v‖)), unbiased, divided by τ = 1 + min(P/s², √P/s) as in
    Koloskova et al. (2019, §5) so that it is a contraction.  r sets the bits per coordinate,
    b = round(r · 8 · bytes per value) (≥ 2: a sign and at least one level bit), s = 2^(b−1) − 1; the message is
    one norm value plus P·b bits (fixed-width coding; the paper's Elias coding is smaller at low s).

The quantiser's randomness is a pure function of (run seed, step, learner) through its own generator, never the
training streams: a resumed run draws the same numbers, and so does any split of the learners over workers.
"""

from __future__ import annotations

import math

import torch

from ddl.compute.stream import _mix
from ddl.errors import ConfigError

COMPRESSORS = ("none", "topk", "qsgd")
_QSGD_STREAM_KEY = 0xC40C0  # mixed into the seed: the quantiser's stream differs from every training stream
_INDEX_BYTES = 4


def qsgd_bits(ratio: float, value_bytes: int) -> int:
    """Bits per coordinate of ``qsgd`` at compression ratio ``ratio``."""
    return int(round(ratio * 8 * value_bytes))


def check(compressor: str, ratio: float, value_bytes: int = 4) -> None:
    """A :class:`ConfigError` for a compressor/ratio pair that does not define a compressor."""
    if compressor not in COMPRESSORS:
        raise ConfigError(f"--compressor: {compressor!r} is not one of {', '.join(COMPRESSORS)}")
    if not 0 < ratio <= 1:
        raise ConfigError(f"--compress-ratio: must be in (0, 1], got {ratio}")
    if compressor == "none" and ratio != 1:
        raise ConfigError(f"--compress-ratio: --compressor none sends whole rows (ratio 1), got {ratio}")
    if compressor == "qsgd" and qsgd_bits(ratio, value_bytes) < 2:
        raise ConfigError(f"--compress-ratio: qsgd needs ≥ 2 bits per value, ratio {ratio} gives "
                          f"{qsgd_bits(ratio, value_bytes)}")


def message_bytes(compressor: str, ratio: float, numel: int, value_bytes: int) -> int:
    """Bytes of one compressed row of ``numel`` values of ``value_bytes`` bytes each."""
    dense = numel * value_bytes
    if compressor == "topk":
        return min(dense, topk_count(ratio, numel) * (value_bytes + _INDEX_BYTES))
    if compressor == "qsgd":
        return value_bytes + math.ceil(numel * qsgd_bits(ratio, value_bytes) / 8)
    return dense


def message_fraction(compressor: str, ratio: float, value_bytes: int) -> float:
    """A message's size relative to a dense row, for a large model (what the clock is told)."""
    if compressor == "topk":
        return min(1.0, ratio * (value_bytes + _INDEX_BYTES) / value_bytes)
    if compressor == "qsgd":
        return qsgd_bits(ratio, value_bytes) / (8 * value_bytes)
    return 1.0


def topk_count(ratio: float, numel: int) -> int:
    return max(1, min(numel, math.ceil(ratio * numel)))


class Compressor:
    """``compress(V, step, learners)``: the compressed rows of ``V`` [m, P] (learner ids ``learners``)."""

    def __init__(self, kind: str, ratio: float, seed: int, value_bytes: int = 4):
        check(kind, ratio, value_bytes)
        self.kind, self.ratio, self.seed = kind, ratio, seed
        self.levels = 2 ** (qsgd_bits(ratio, value_bytes) - 1) - 1 if kind == "qsgd" else None

    def generator(self, step: int, learner: int, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(_mix(self.seed, _QSGD_STREAM_KEY, step, learner))
        return g

    def compress(self, V: torch.Tensor, step: int, learners) -> torch.Tensor:
        if self.kind == "none":
            return V
        P = V.shape[1]
        if self.kind == "topk":
            k = topk_count(self.ratio, P)
            if k == P:
                return V
            idx = V.abs().topk(k, dim=1, sorted=False).indices
            return torch.zeros_like(V).scatter_(1, idx, V.gather(1, idx))
        s = self.levels
        tau = 1.0 + min(P / s**2, math.sqrt(P) / s)
        norm = torch.linalg.vector_norm(V, dim=1, keepdim=True)
        scaled = V.abs() / torch.where(norm > 0, norm, torch.ones_like(norm)) * s
        low = scaled.floor()
        u = torch.stack([torch.rand(P, generator=self.generator(step, a, V.device), device=V.device, dtype=V.dtype)
                         for a in learners])
        xi = low + (u < scaled - low).to(V.dtype)
        return norm * V.sign() * xi / (s * tau)
