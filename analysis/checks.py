"""Checks that speak up: thresholds on the exactness checks a decomposition computes about itself.

Three quantities are exact identities up to rounding, so a large value means a bug, an unconverged solver or
a model the duality does not hold for (something below the layer changes, or skips over it):

============================  =======================================================  =========  =========
check                         value compared                                            float64    float32
============================  =======================================================  =========  =========
``decomposition_error``       |Σ_k (μ_g μ_w + ΔL_k) + residual − ΔL_p| / max(|ΔL_p|,   1e-8       1e-3
                              1e-3)  (relative to the pair-wise gap; absolute near 0)
``duality_check_error``       max |W̃ a − W a'| over pairs: the dual weights' pre-        1e-8       1e-3
                              activation of a training sample minus its test partner's
``duality_loss_error``        max |ℓ(x; W̃) − ℓ(x'; W)| over pairs (the logits above      1e-8       1e-3
                              the layer, through the loss)
``lanczos_residual``          max_i ‖H v_i − λ_i v_i‖ / |λ_1| of the returned pairs      1e-6       1e-6
                              (Lanczos eigensolver only)
============================  =======================================================  =========  =========

The float64 limits sit a few orders of magnitude above what the identities reach in practice (≈1e-13 on the
demo), the float32 ones likewise above float32 rounding; the Lanczos limit is far looser than the solver's
default tolerance (1e-10) and flags only an unconverged run.  :func:`failed_checks` is what ``ddl analyze``
prints as warning lines and what the comparison report flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THRESHOLDS = {
    "float64": {"decomposition_error": 1e-8, "duality_check_error": 1e-8, "duality_loss_error": 1e-8,
                "lanczos_residual": 1e-6},
    "float32": {"decomposition_error": 1e-3, "duality_check_error": 1e-3, "duality_loss_error": 1e-3,
                "lanczos_residual": 1e-6},
}  # fmt: skip
DESCRIPTIONS = {
    "decomposition_error": "decomposition error (relative to the pair-wise gap)",
    "duality_check_error": "duality error (pre-activation of dual weights vs test partner)",
    "duality_loss_error": "duality loss error (loss at the dual weights vs the test loss)",
    "lanczos_residual": "Lanczos residual (relative to the top eigenvalue)",
}


@dataclass(frozen=True)
class CheckFailure:
    name: str
    value: float  # the compared value (relative where the table says so; NaN if it could not be computed)
    threshold: float

    def message(self) -> str:
        if not math.isfinite(self.value):
            return f"{DESCRIPTIONS[self.name]} is {self.value} (not computed or not finite)"
        return f"{DESCRIPTIONS[self.name]} {self.value:.3g} exceeds its threshold {self.threshold:.0e}"


def check_values(res) -> dict[str, float]:
    """The compared value of every check that applies to the result ``res`` (a :class:`DualityResult`)."""
    out = {
        "decomposition_error": float(res.decomposition_error) / max(abs(float(res.pairwise_gap)), 1e-3),
        "duality_check_error": float(res.duality_check_error),
        "duality_loss_error": float(res.duality_loss_error),
    }
    if getattr(res, "lanczos_residual", None) is not None:
        top = float(abs(res.eigenvalues[0])) if len(res.eigenvalues) else 0.0
        out["lanczos_residual"] = float(res.lanczos_residual) / top if top > 0 else float(res.lanczos_residual)
    return out


def failed_checks(res) -> list[CheckFailure]:
    """The checks whose value exceeds its threshold (or is not finite), in the table's order."""
    limits = THRESHOLDS["float32" if str(getattr(res, "dtype", "float64")) == "float32" else "float64"]
    fails = []
    for name, value in check_values(res).items():
        if not math.isfinite(value) or value > limits[name]:
            fails.append(CheckFailure(name, value, limits[name]))
    return fails
