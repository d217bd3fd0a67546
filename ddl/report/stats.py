"""The numbers of a report: the scalars of one run (:func:`run_numbers`) and their statistics over seeds.

Every statistic over seeds is the mean and the seed-to-seed standard deviation (``ddof=1``, NaN for a single
value) over the runs that have the number; curves and spectra are aggregated point by point into a
:class:`Band`.  Noise is aggregated in log space (geometric mean, ×/÷ the geometric standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddl.algorithms import communication_of
from ddl.report.runs import RunData, as_float, noise_series

# directions whose σ_g is compared between groups ("the sharp directions"; the reference code's split)
TOP_DIRECTIONS = 10
DUALITY_GAPS = ("true_gap", "pairwise_gap", "sharp_gap", "flat_gap", "mean_gap", "n_sharp")
NOISE_NUMBERS = ("ssgd_noise_sq", "dpsgd_noise_sq", "total_noise_sq", "sharpness")


def run_numbers(run: RunData) -> dict[str, float]:
    """Every scalar a report shows for one run (NaN where the data is missing)."""
    return {**_final_numbers(run), **_duality_numbers(run), **_noise_numbers(run)}


def _final_numbers(run: RunData) -> dict[str, float]:
    """Length of training and the final evaluation of the averaged model."""
    f = run.final
    nan = float("nan")
    out = {
        "steps": float(run.summary.get("steps", f.get("step", nan))),
        "epochs": float(run.summary.get("epochs", f.get("epoch", nan))),
        "wall_time_s": float(run.summary.get("wall_time_s", f.get("time", nan))),
        "sim_time_s": as_float(run.summary.get("sim_time_s", f.get("sim_time_s"))),
        "train_loss": as_float(f.get("train_loss")),
        "test_loss": as_float(f.get("test_loss")),
        "train_err": 1.0 - as_float(f.get("train_acc")),
        "test_err": 1.0 - as_float(f.get("test_acc")),
    }
    out["loss_gap"] = out["test_loss"] - out["train_loss"]
    return out


def _duality_numbers(run: RunData) -> dict[str, float]:
    """The gap and its split, the mean σ_g over the sharpest directions, the size and λ_max of the analysed
    layer (``ddl analyze``)."""
    d = run.duality
    nan = float("nan")
    out = {k: as_float(getattr(d, k)) if d is not None else nan for k in DUALITY_GAPS}
    if d is not None and d.n_directions:
        out["sigma_g_top"] = float(np.mean(d.sigma_g[: min(TOP_DIRECTIONS, d.n_directions)]))
        out["sigma_w_sum"] = d.size
        out["lambda_max"] = float(d.eigenvalues[0])
        out["size_curved"], out["size_null"] = d.size_curved, d.size_null
    else:
        out.update(sigma_g_top=nan, sigma_w_sum=nan, lambda_max=nan, size_curved=nan, size_null=nan)
    return out


DIRECTION_NUMBERS = ("eta_top_share", "xi_top_share", "eta_minus_xi_top_share", "random_top_share",
                     "noise_measurements", "noise_top_k", "xi_sharpness_corr")  # fmt: skip


def _noise_numbers(run: RunData) -> dict[str, float]:
    """Noise strengths and sharpness averaged over training (``--measure-noise``), the last sharpness, how the
    algorithm's own noise and ξ correlate with sharpness over time, and the directional shares
    (:func:`direction_numbers`)."""
    series = noise_series(run.noise)
    if not series:
        return dict.fromkeys((*NOISE_NUMBERS, "sharpness_final", "noise_sharpness_corr", *DIRECTION_NUMBERS),
                             float("nan"))
    out = {k: float(np.mean(series[k])) for k in NOISE_NUMBERS}
    agree = communication_of(run.config.algo, run.config).learners_agree
    if agree:
        out["dpsgd_noise_sq"] = float("nan")  # zero up to round-off: the learners all sit at w̄ (SSGD)
    out["sharpness_final"] = float(series["sharpness"][-1])
    own_noise = series["ssgd_noise_sq"] if agree else series["dpsgd_noise_sq"]
    out["noise_sharpness_corr"] = log_corr(own_noise, series["sharpness"])
    out["xi_sharpness_corr"] = log_corr(series["ssgd_noise_sq"], series["sharpness"])
    out.update(direction_numbers(run.noise, agree))
    return out


def direction_numbers(noise: list[dict], learners_agree: bool) -> dict[str, float]:
    """The directional test of the landscape-dependent noise, averaged over the measurements after step 0:
    the share of ‖η_DP‖² in the span of the top-k Hessian eigenvectors (``eta_top_share``; NaN when the
    learners agree, η_DP ≡ 0), the same share of ξ (``xi_top_share``), their paired difference per measurement
    (``eta_minus_xi_top_share``) and a random direction's share k/P (``random_top_share``)."""
    recs = [r for r in noise if r.get("step", 0) > 0 and "ssgd_top_share" in r]
    nan = float("nan")
    if not recs:
        return {k: nan for k in DIRECTION_NUMBERS if k != "xi_sharpness_corr"} | {"noise_measurements": 0.0}
    xi = np.array([sum(r["ssgd_top_share"]) for r in recs])
    k = len(recs[0]["ssgd_top_share"])
    out = {"xi_top_share": float(xi.mean()), "random_top_share": k * float(recs[0]["random_share"]),
           "noise_measurements": float(len(recs)), "noise_top_k": float(k),
           "eta_top_share": nan, "eta_minus_xi_top_share": nan}
    eta_recs = [r for r in recs if r.get("dpsgd_noise_sq", 0) > 0]
    if not learners_agree and eta_recs:
        eta = np.array([sum(r["eta_top_share"]) for r in eta_recs])
        xi_e = np.array([sum(r["ssgd_top_share"]) for r in eta_recs])
        out["eta_top_share"] = float(eta.mean())
        out["eta_minus_xi_top_share"] = float((eta - xi_e).mean())
    return out


def log_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of log a and log b over the entries where both are positive and finite (NaN for
    fewer than three such entries or a constant one)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if ok.sum() < 3:
        return float("nan")
    la, lb = np.log(a[ok]), np.log(b[ok])
    if la.std() == 0 or lb.std() == 0:
        return float("nan")
    return float(np.corrcoef(la, lb)[0, 1])


def seed_stat(values) -> dict[str, float]:
    """``{"mean", "std", "n"}`` of the finite ``values`` (``std`` with ``ddof=1``, NaN for fewer than two)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return {
        "mean": float(v.mean()) if v.size else float("nan"),
        "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
        "n": int(v.size),
    }


def group_stats(runs: list[RunData]) -> dict[str, dict[str, float]]:
    """``{name: seed_stat}`` for every number of :func:`run_numbers`, over ``runs`` (the seeds of one
    configuration)."""
    per_run = [run_numbers(r) for r in runs]
    return {k: seed_stat([p[k] for p in per_run]) for k in per_run[0]}


# ---------------------------------------------------------------------------------------------------------
# curves and spectra over seeds
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Band:
    """x, mean and std (NaN where fewer than two runs have the point) of a quantity over seeds, and the number
    of seeds at each point.  For log-space bands, ``mean`` and ``std`` are of the logarithms."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray

    def where(self, keep: np.ndarray) -> Band:
        """The points where ``keep`` is true."""
        return Band(self.x[keep], self.mean[keep], self.std[keep], self.n[keep])

    def scaled(self, factor: float) -> Band:
        return Band(self.x, factor * self.mean, factor * self.std, self.n)


def band(series: list[tuple[np.ndarray, np.ndarray]], log: bool = False) -> Band:
    """Aggregate (x, y) series point by point on the union of their x values (rounded to 1e-9); with ``log``,
    the logarithms of the positive values."""
    table: dict[float, list[float]] = {}
    for x, y in series:
        for xi, yi in zip(x, y):
            table.setdefault(round(float(xi), 9), []).append(float(yi))
    xs = np.array(sorted(table))
    mean, std, n = [], [], []
    for xi in xs:
        v = np.array(table[xi])
        v = np.log(v[np.isfinite(v) & (v > 0)]) if log else v[np.isfinite(v)]
        n.append(v.size)
        mean.append(v.mean() if v.size else np.nan)
        std.append(v.std(ddof=1) if v.size > 1 else np.nan)
    return Band(xs, np.array(mean), np.array(std), np.array(n))


def metric_band(runs: list[RunData], key: str) -> Band | None:
    """Training curve of ``key`` (``train_loss``, ``test_loss``, ``train_err``, ``test_err``) against epoch."""
    series = []
    for r in runs:
        if not r.metrics:
            continue
        x = np.array([as_float(m.get("epoch")) for m in r.metrics])
        if key.endswith("_err"):
            y = 1.0 - np.array([as_float(m.get(key.replace("_err", "_acc"))) for m in r.metrics])
        else:
            y = np.array([as_float(m.get(key)) for m in r.metrics])
        series.append((x, y))
    return band(series) if series else None


def noise_band(runs: list[RunData], key: str) -> Band | None:
    """A noise quantity against epoch, aggregated in log space (geometric mean, ×/÷ geometric std)."""
    series = []
    for r in runs:
        s = noise_series(r.noise)
        if s:
            series.append((s["epoch"], s[key]))
    return band(series, log=True) if series else None


def direction_band(runs: list[RunData], key: str, cumulative: bool = False) -> Band | None:
    """A per-direction array of the duality results (``sigma_g``, ``sigma_w``, ``contributions`` …) against
    the direction index k = 1, 2, … (eigenvalue order), over the seeds' common number of directions."""
    ds = [r.duality for r in runs if r.duality is not None]
    if not ds:
        return None
    K = min(len(getattr(d, key)) for d in ds)
    if K == 0:
        return None
    rows = np.array([np.asarray(getattr(d, key), dtype=np.float64)[:K] for d in ds])
    if cumulative:
        rows = np.cumsum(rows, axis=1)
    std = rows.std(0, ddof=1) if len(rows) > 1 else np.full(K, np.nan)
    return Band(np.arange(1, K + 1), rows.mean(0), std, np.full(K, len(rows)))
