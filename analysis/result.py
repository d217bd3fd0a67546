"""The result of a decomposition, and its ``.npz`` + ``.json`` files."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.io import atomic_write, write_json
from analysis.stats import DEFAULT_SPLIT, SPLIT_DEFAULTS, sharp_mask

FORMAT_VERSION = 1

# per-direction arrays, all in eigenvalue order (largest first)
#: a direction with |λ| ≤ this × |λ_max| is in the Hessian's null space ("λ ≈ 0").  Measured on the demo's and
#: the sweeps' analyses (MLP fc2 and fc3): the null directions sit at ≤ 1e-16 relative (round-off; exactly 0 for
#: dead ReLU units), the smallest curved ones at ≥ 1e-8; 1e-12 lies in that gap with four decades each side
NULL_EIGENVALUE_RTOL = 1e-12
DIRECTION_FIELDS = ("eigenvalues", "sigma_g", "sigma_w", "rho", "mean_g", "mean_w", "contributions",
                    "mean_terms")  # fmt: skip
# optional per-pair / per-parameter arrays
EXTRA_ARRAY_FIELDS = ("delta_loss", "test_index", "train_index", "eigenvectors")


@dataclass
class DualityResult:
    """The activity-weight duality decomposition of the generalization gap for one layer.

    Per-direction arrays (length K, ordered by Hessian eigenvalue, **largest first**):
    ``eigenvalues`` λ_k, ``sigma_g`` σ_g,k, ``sigma_w`` σ_w,k, ``rho`` ρ_k, ``mean_g`` μ_g,k, ``mean_w`` μ_w,k,
    ``contributions`` ΔL_k = ρ_k σ_g,k σ_w,k and ``mean_terms`` μ_g,k μ_w,k.

    Gaps: ``pairwise_gap`` = mean_n Δℓ_n; ``true_gap`` = L_test − L_train; ``sharp_gap`` = Σ_{k<n_sharp} ΔL_k;
    ``flat_gap`` = Σ_{k≥n_sharp} ΔL_k over all P directions; ``mean_gap`` = Σ_k μ_g,k μ_w,k over all P
    directions.  With K < P analysed directions the directions beyond K enter through two exact remainders:
    ``residual_gap`` = mean_n g_n·(I − VVᵀ)δW_n (everything outside the K directions, 0 for a full
    eigenbasis) of which ``residual_mean_gap`` = ḡ·(I − VVᵀ)w̄ is the mean terms' part; so
    ``flat_gap`` = Σ_{n_sharp≤k<K} ΔL_k + ``residual_gap`` − ``residual_mean_gap`` and ``mean_gap`` =
    Σ_{k<K} μ_g,k μ_w,k + ``residual_mean_gap``: the same totals as a full eigendecomposition.  Exactly:
    ``pairwise_gap = sharp_gap + flat_gap + mean_gap`` (``decomposition_error`` is the measured deviation).
    ``sigma_w_sq_total`` = Σ_k σ_w,k² and ``sigma_g_sq_total`` = Σ_k σ_g,k² over all P directions (basis-free
    traces, exact for any K); :attr:`size` sums σ_w over the K analysed directions only.

    Signs of eigenvectors are fixed so that each one's largest-magnitude component is positive (this fixes the
    signs of ``mean_g``/``mean_w``; all other quantities do not depend on it).
    """

    eigenvalues: np.ndarray
    sigma_g: np.ndarray
    sigma_w: np.ndarray
    rho: np.ndarray
    mean_g: np.ndarray
    mean_w: np.ndarray
    contributions: np.ndarray
    mean_terms: np.ndarray
    pairwise_gap: float
    true_gap: float
    sharp_gap: float
    flat_gap: float
    n_sharp: int
    mean_gap: float = 0.0
    residual_gap: float = 0.0
    residual_mean_gap: float = 0.0
    sigma_w_sq_total: float = float("nan")
    sigma_g_sq_total: float = float("nan")
    train_loss: float = float("nan")
    test_loss: float = float("nan")
    decomposition_error: float = float("nan")
    duality_check_error: float = float("nan")
    duality_loss_error: float = float("nan")
    layer: str = ""
    layer_shape: tuple[int, int] = (0, 0)
    has_bias: bool = False
    bias_in_hessian: bool = False
    n_params: int = 0
    weight_norm: float = float("nan")
    n_train: int = 0
    n_test: int = 0
    n_pairs: int = 0
    k_neighbors: int = 1
    pair_space: str = "input"
    hessian: str = ""
    eigensolver: str = ""
    upper: str = ""
    split_rule: str = DEFAULT_SPLIT
    split_by: str = "sigma_g"
    split_value: float | None = None
    dtype: str = "float64"
    lanczos_iterations: int | None = None
    lanczos_residual: float | None = None
    timings: dict = field(default_factory=dict)  # seconds per stage, and "total"
    meta: dict = field(default_factory=dict)  # provenance, e.g. the run directory and its config
    delta_loss: np.ndarray | None = None  # [n_pairs] Δℓ_n
    test_index: np.ndarray | None = None  # [n_pairs] the pair's test sample
    train_index: np.ndarray | None = None  # [n_pairs] its training partner (index into the training set given)
    eigenvectors: np.ndarray | None = None  # [n_params, K], columns in eigenvalue order (kept on request)

    # ---- derived -------------------------------------------------------------------------------------------
    @property
    def n_directions(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def size(self) -> float:
        """The size of the solution, ``Σ_k σ_w,k`` over the analysed directions (docs/theory.md): the sum of the
        size determinants.  The one definition of "size" used by every figure and table (per run and across
        runs); ``0`` for a result without directions."""
        return float(np.sum(self.sigma_w))

    @property
    def null_mask(self) -> np.ndarray:
        """The directions with λ ≈ 0: |λ_k| ≤ ``NULL_EIGENVALUE_RTOL`` × |λ_1|.  Within that (near-)degenerate
        eigenspace the eigensolver's basis is arbitrary, so each σ_w,k there — and their sum — depends on it."""
        lam = np.asarray(self.eigenvalues, dtype=np.float64)
        if lam.size == 0:
            return np.zeros(0, dtype=bool)
        return np.abs(lam) <= NULL_EIGENVALUE_RTOL * np.abs(lam).max()

    @property
    def size_curved(self) -> float:
        """The part of :attr:`size` over the directions with λ > 0 (basis-independent up to round-off)."""
        return float(np.sum(np.asarray(self.sigma_w)[~self.null_mask]))

    @property
    def size_null(self) -> float:
        """The part of :attr:`size` over the directions with λ ≈ 0 (:attr:`null_mask`; basis-dependent)."""
        return float(np.sum(np.asarray(self.sigma_w)[self.null_mask]))

    def scalars(self) -> dict:
        """Every non-array field (JSON-ready), plus ``n_directions`` and ``size``."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in DIRECTION_FIELDS or f.name in EXTRA_ARRAY_FIELDS:
                continue
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out["n_directions"] = self.n_directions
        out["size"] = self.size
        return out

    def sharp_mask(self) -> np.ndarray:
        """Which directions (eigenvalue order) are the sharp ones under this result's split rule."""
        return sharp_mask(self.eigenvalues, self.sigma_g, self.split_rule, self.split_value, self.split_by)

    def with_split(self, rule: str = DEFAULT_SPLIT, value: float | None = None, by: str = "sigma_g") -> DualityResult:
        """A copy with the sharp/flat split recomputed by another rule."""
        mask = sharp_mask(self.eigenvalues, self.sigma_g, rule, value, by)
        c = self.contributions
        return dataclasses.replace(
            self, n_sharp=int(mask.sum()), sharp_gap=float(c[mask].sum()),
            flat_gap=float(c[~mask].sum()) + self.residual_gap - self.residual_mean_gap,
            split_rule=rule, split_by=by, split_value=SPLIT_DEFAULTS[rule] if value is None else value,
        )  # fmt: skip

    def summary(self, top: int = 10) -> str:
        """A few human-readable lines."""
        bias = ""
        if self.has_bias:
            bias = " + bias (in the Hessian)" if self.bias_in_hessian else " + bias (Hessian: weights only)"
        lines = [
            f"layer {self.layer} {self.layer_shape[0]}x{self.layer_shape[1]}{bias}: "
            f"{self.n_directions} of {self.n_params} directions "
            f"({self.hessian} Hessian, {self.eigensolver} eigensolver), {self.n_pairs} pairs",
            f"true gap {self.true_gap:.6g} (L_test {self.test_loss:.6g} - L_train {self.train_loss:.6g}), "
            f"pairwise gap {self.pairwise_gap:.6g}",
            f"sharp ({self.n_sharp} dirs, {self.split_rule} on {self.split_by}) {self.sharp_gap:.6g}, "
            f"flat {self.flat_gap:.6g}"
            + (f" (incl. residual {self.residual_gap:.6g})" if self.residual_gap else "")
            + f", mean terms {self.mean_gap:.6g}",
            f"checks: decomposition error {self.decomposition_error:.3g}, duality pre-activation error "
            f"{self.duality_check_error:.3g}, duality loss error {self.duality_loss_error:.3g}",
        ]
        n = min(top, self.n_directions)
        if n:
            lines.append(" k   lambda        sigma_g       sigma_w       rho       dL_k")
            for k in range(n):
                lines.append(
                    f"{k:2d}  {self.eigenvalues[k]:.5e}  {self.sigma_g[k]:.5e}  {self.sigma_w[k]:.5e}  "
                    f"{self.rho[k]:+.4f}  {self.contributions[k]:+.4e}"
                )
        return "\n".join(lines)

    # ---- files ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, stem: str = "duality") -> tuple[Path, Path]:
        """Write ``DIR/<stem>.npz`` (arrays) and ``DIR/<stem>.json`` (scalars + top directions), atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(getattr(self, k)) for k in DIRECTION_FIELDS}
        arrays.update({k: np.asarray(getattr(self, k)) for k in EXTRA_ARRAY_FIELDS if getattr(self, k) is not None})
        npz, js = d / f"{stem}.npz", d / f"{stem}.json"
        atomic_write(npz, lambda f: np.savez_compressed(f, **arrays))
        n = min(10, self.n_directions)
        doc = {
            "format_version": FORMAT_VERSION,
            **self.scalars(),
            "top_directions": {k: np.asarray(getattr(self, k))[:n].tolist() for k in DIRECTION_FIELDS},
            "arrays": f"{stem}.npz",
        }
        write_json(js, doc)
        return npz, js

    @classmethod
    def load(cls, path: str | Path) -> DualityResult:
        """Read a result written by :meth:`save`: a directory (``duality.*``) or either file's path."""
        p = Path(path)
        if p.is_dir():
            p = p / "duality.json"
        js, npz = p.with_suffix(".json"), p.with_suffix(".npz")
        if not js.is_file() or not npz.is_file():
            raise FileNotFoundError(f"no duality result at {p} (need {js.name} and {npz.name})")
        doc = json.loads(js.read_text())
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in doc.items() if k in fields}
        for k, v in kw.items():  # JSON has no NaN: non-finite floats were written as null
            if v is None and isinstance(fields[k].default, float):
                kw[k] = float("nan")
        if "layer_shape" in kw:
            kw["layer_shape"] = tuple(kw["layer_shape"])
        with np.load(npz) as z:
            kw.update({k: z[k] for k in z.files if k in fields})
        return cls(**kw)
