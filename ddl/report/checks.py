"""What a report must say about how its numbers were measured: the split rule of the duality analyses and
every exactness check that failed (thresholds: :mod:`analysis.checks`, docs/measurements.md).

A failed check is shown in a highlighted box above the numbers, so that a report never argues from a
decomposition that does not add up, a duality that does not hold, or eigenvalues that did not converge.
"""

from __future__ import annotations

from analysis.checks import failed_checks
from analysis.stats import SPLIT_DEFAULTS
from ddl.report.runs import RunData

SPLIT_WORDS = {
    "count": "the {v} leading Hessian directions (eigenvalue order)",
    "top": "the {v} directions with the largest {by} (the reference code's rule)",
    "steepest": "the leading directions up to the steepest drop of {by} (search window {v})",
    "fraction": "the fewest leading directions holding a fraction {v} of the {by} mass",
}
BY_WORDS = {"sigma_g": "σ_g", "eigenvalue": "λ"}


def split_description(rule: str, value, by: str) -> str:
    """One phrase naming a split rule and what it selects, e.g. ``count 10 on σ_g: the 10 leading …``."""
    v = SPLIT_DEFAULTS.get(rule) if value is None else value
    v = int(v) if isinstance(v, float) and v.is_integer() else v
    b = BY_WORDS.get(by, by)
    return f"{rule} {v} on {b}: " + SPLIT_WORDS.get(rule, rule).format(v=v, by=b)


def split_line(runs: list[RunData]) -> str | None:
    """Which sharp/flat split rule(s) the runs' duality results used (None without any analysis)."""
    rules = []
    for r in runs:
        d = r.duality
        if d is not None:
            s = split_description(d.split_rule, d.split_value, d.split_by)
            if s not in rules:
                rules.append(s)
    if not rules:
        return None
    if len(rules) == 1:
        return f"Sharp/flat split of every duality analysis: {rules[0]}."
    return "Sharp/flat split rules differ between the runs, so their sharp parts are not comparable: " + \
        "; ".join(rules) + "."


def check_lines(runs: list[RunData]) -> list[str]:
    """One line per failed check: the duality result's exactness checks and the noise meter's Lanczos
    convergence; plus a note where noise was measured against an approximate full gradient."""
    out = []
    for r in runs:
        name = r.path.name
        if r.duality is not None:
            for f in failed_checks(r.duality):
                out.append(f"⚠ {name} ({r.duality.layer}): {f.message()}")
        recs = [x for x in r.noise if "lanczos_converged" in x]
        bad = [x for x in recs if not x["lanczos_converged"]]
        if bad:
            worst = max(float(x.get("lanczos_rel_residual", float("nan"))) for x in bad)
            out.append(f"⚠ {name}: the noise meter's Lanczos did not converge in {len(bad)} of {len(recs)} "
                       f"measurements (largest relative residual {worst:.2g}, tolerance {bad[0].get('lanczos_tol')}): "
                       "their sharpness and top-k shares are approximate")
        approx = [x for x in r.noise if x.get("reference_exact") is False]
        if approx:
            out.append(f"⚠ {name}: noise measured against an approximate full gradient and Hessian "
                       f"({approx[0].get('reference_samples')} samples, --noise-samples), not the whole training set")
    return out
