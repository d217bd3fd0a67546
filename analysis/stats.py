"""Per-direction statistics of the projections and the sharp/flat split (docs/theory.md §4, §6).

For direction k, over the pairs n: ``μ_w, μ_g`` (means), ``σ_w, σ_g`` (population standard deviations),
``cov = mean((g − μ_g)(w − μ_w))``, ``ρ = cov / (σ_g σ_w)`` (0 where a σ is 0) and the contribution
``ΔL_k = ρ σ_g σ_w`` (= cov).  ``Σ_k (μ_g μ_w + ΔL_k) = mean_n g_n · δW_n = mean_n Δℓ_n`` in any orthonormal
basis.

Sharp/flat split (directions ordered by eigenvalue, largest first; ``n_sharp`` = number of sharp ones).  Every
rule but ``top`` makes the leading ``n_sharp`` directions in eigenvalue order the sharp ones; :func:`sharp_mask`
says which directions are sharp for any rule:

* ``steepest`` - the largest drop of the log spectrum between consecutive directions,
  ``n_sharp = 1 + argmax_{0 ≤ k < K_s} (log e_k − log e_{k+1})``, where ``q`` is σ_g (default) or λ in
  eigenvalue order, ``e_k = max_{j ≥ k} q_j`` its upper envelope (non-increasing; λ is its own), values
  ≤ 0 are clipped to the smallest positive float64, and the search window is the first
  ``K_s = max(1, ⌊value · K⌋)`` directions (``value`` default 0.5: the first half; always ``k + 1 < K``).
  The envelope matters for σ_g, which is not monotone in eigenvalue order: a drop of ``e`` at k means every
  later direction is less sharp than direction k, so sample noise between neighbouring directions cannot
  produce a split, only a cliff below which no direction rises again.
* ``count`` (default) - the leading ``n_sharp = value`` directions in eigenvalue order (default 10).  Chosen as
  the default because the steepest-drop rule is unstable on real spectra (docs/measurements.md: n_sharp 7 … 88
  across the demo's seeds), while a fixed count is stable by construction and on those spectra shares 7 to 9
  of its 10 directions with the reference rule ``top``, giving sharp parts within 0.01 of it.
* ``top`` - the ``value`` directions (default 10) with the largest ``q`` (σ_g by default, or λ), wherever
  they are in eigenvalue order: the reference code's rule (it sorts directions by σ_g, descending, and its
  plotting script takes the first 10).  Ties are broken towards the larger eigenvalue.  With ``by=eigenvalue``
  it equals ``count``.
* ``fraction`` - the fewest leading directions holding a fraction ``value`` (default 0.9) of the spectrum's
  mass over the analysed directions: Σ σ_g² for σ_g (the total variance of the effective gradients) or
  Σ max(λ, 0) for λ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.errors import AnalysisError, check_choice

SPLIT_RULES = ("steepest", "count", "fraction", "top")
SPLIT_BY = ("sigma_g", "eigenvalue")
SPLIT_DEFAULTS = {"steepest": 0.5, "count": 10, "fraction": 0.9, "top": 10}
# the default rule: n_sharp = 10 leading directions, stable across seeds by construction, and on the demo's spectra
# within 0.01 of the reference rule's sharp share (docs/measurements.md, benchmarks/split_stability.py)
DEFAULT_SPLIT = "count"


@dataclass
class DirectionStats:
    mean_w: torch.Tensor
    mean_g: torch.Tensor
    sigma_w: torch.Tensor
    sigma_g: torch.Tensor
    contributions: torch.Tensor  # ρ σ_g σ_w (the covariance)
    rho: torch.Tensor

    @property
    def mean_terms(self) -> torch.Tensor:
        return self.mean_g * self.mean_w


def direction_stats(w: torch.Tensor, scale: torch.Tensor, max_elements: int = 1 << 24) -> DirectionStats:
    """Statistics of ``w_{n,k}`` and ``g_{n,k} = s_n w_{n,k}`` over the rows n (two-pass, centred), a block of
    directions at a time so that temporaries stay below ``max_elements`` entries."""
    n, K = w.shape
    mean_w, mean_g, var_w, var_g, cov = (torch.empty(K, dtype=w.dtype, device=w.device) for _ in range(5))
    cols = max(1, max_elements // max(n, 1))
    s = scale[:, None]
    for c in range(0, K, cols):
        wc = w[:, c : c + cols]
        g = wc * s
        mean_w[c : c + cols] = wc.mean(0)
        mean_g[c : c + cols] = g.mean(0)
        g -= mean_g[c : c + cols]
        wc = wc - mean_w[c : c + cols]
        var_g[c : c + cols] = g.pow(2).mean(0)
        var_w[c : c + cols] = wc.pow(2).mean(0)
        cov[c : c + cols] = g.mul_(wc).mean(0)
    sigma_g, sigma_w = var_g.sqrt(), var_w.sqrt()
    denom = sigma_g * sigma_w
    rho = torch.where(denom > 0, cov / torch.where(denom > 0, denom, 1.0), 0.0)
    return DirectionStats(mean_w, mean_g, sigma_w, sigma_g, cov, rho)


def check_split(rule: str, value: float | None, by: str) -> float:
    """Validate a split rule; returns its value (the rule's default for None)."""
    check_choice("split", rule, SPLIT_RULES)
    check_choice("split-by", by, SPLIT_BY)
    value = SPLIT_DEFAULTS[rule] if value is None else value
    if rule in ("count", "top") and (value < 0 or float(value) != int(value)):
        raise AnalysisError(f"--split-value: the {rule} rule needs a whole number ≥ 0, got {value}")
    if rule == "fraction" and not 0 < value <= 1:
        raise AnalysisError(f"--split-value: the fraction rule needs a value in (0, 1], got {value}")
    if rule == "steepest" and not 0 < value <= 1:
        raise AnalysisError(f"--split-value: the steepest rule's search window must be in (0, 1], got {value}")
    return value


def sharp_mask(eigenvalues, sigma_g, rule: str = DEFAULT_SPLIT, value: float | None = None,
               by: str = "sigma_g") -> np.ndarray:  # fmt: skip
    """Boolean mask [K] of the sharp directions (in eigenvalue order); see the module docstring."""
    value = check_split(rule, value, by)
    q = np.asarray(sigma_g if by == "sigma_g" else eigenvalues, dtype=np.float64)
    mask = np.zeros(q.shape[0], dtype=bool)
    if rule == "top":
        # stable sort of -q: among equal q the earlier (larger-eigenvalue) direction comes first
        mask[np.argsort(-q, kind="stable")[: int(value)]] = True
    else:
        mask[: _leading(q, rule, value, by)] = True
    return mask


def split_sharp_flat(eigenvalues, sigma_g, rule: str = DEFAULT_SPLIT, value: float | None = None,
                     by: str = "sigma_g") -> int:  # fmt: skip
    """Number of sharp directions (for every rule but ``top`` the leading ones in eigenvalue order)."""
    return int(sharp_mask(eigenvalues, sigma_g, rule, value, by).sum())


def _leading(q: np.ndarray, rule: str, value: float, by: str) -> int:
    K = q.shape[0]
    if K == 0:
        return 0
    if rule == "count":
        return min(int(value), K)
    if rule == "fraction":
        mass = q**2 if by == "sigma_g" else np.clip(q, 0, None)
        total = mass.sum()
        if total <= 0:
            return 0
        # tolerance: cumulative sums of the full spectrum may fall an ulp short of the total
        return int(min(K, np.searchsorted(np.cumsum(mass), value * total * (1 - 1e-12)) + 1))
    if K == 1:
        return 1
    env = np.maximum.accumulate(q[::-1])[::-1]
    logq = np.log(np.clip(env, np.finfo(np.float64).tiny, None))
    window = min(K - 1, max(1, int(value * K)))
    drops = logq[:window] - logq[1 : window + 1]
    return int(np.argmax(drops)) + 1
