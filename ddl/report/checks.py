"""What a report must say about how its numbers were measured: the split rule of the duality analyses and
every exactness check that failed (thresholds: :mod:`analysis.checks`, docs/measurements.md).

A failed check is shown in a highlighted box above the numbers, so that a report never argues from a
decomposition that does not add up, a duality that does not hold, or eigenvalues that did not converge.
"""

from __future__ import annotations

from analysis.checks import DESCRIPTIONS, failed_checks
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
    """One line per *kind* of failed check, naming the runs it concerns (16 identical notices are one line): the
    duality result's exactness checks (per check and layer, with the worst value), the noise meter's Lanczos
    convergence, and noise measured against an approximate full gradient."""
    kinds: dict[tuple, dict] = {}  # kind -> {"text": str, "runs": [names], "worst": float}

    def note(key: tuple, text: str, name: str, value: float = float("nan"), worst_word: str = "") -> None:
        k = kinds.setdefault(key, {"text": text, "runs": [], "values": [], "word": worst_word})
        if name not in k["runs"]:
            k["runs"].append(name)
        k["values"].append(value)

    for r in runs:
        name = r.path.name
        if r.duality is not None:
            for f in failed_checks(r.duality):
                note(("duality", f.name, r.duality.layer), f"{r.duality.layer}: {DESCRIPTIONS[f.name]} exceeds its "
                     f"threshold {f.threshold:.0e} (or is not finite)", name, f.value, "worst value")
        recs = [x for x in r.noise if "lanczos_converged" in x]
        bad = [x for x in recs if not x["lanczos_converged"]]
        if bad:
            worst = max(float(x.get("lanczos_rel_residual", float("nan"))) for x in bad)
            note(("lanczos", bad[0].get("lanczos_tol")),
                 f"the noise meter's Lanczos did not converge in some measurements (tolerance "
                 f"{bad[0].get('lanczos_tol')}): their sharpness and top-k shares are approximate", name,
                 worst, "largest relative residual")
            runs_of = kinds[("lanczos", bad[0].get("lanczos_tol"))]["runs"]
            runs_of[-1] = f"{name} ({len(bad)} of {len(recs)})"  # fmt: skip
        approx = [x for x in r.noise if x.get("reference_exact") is False]
        if approx:
            n = approx[0].get("reference_samples")
            note(("approx", n), f"noise measured against an approximate full gradient and Hessian ({n} samples, "
                 "--noise-samples), not the whole training set", name)
    out = []
    for k in kinds.values():
        n = len(k["runs"])
        which = f"all {n} runs" if n == len(runs) > 1 else f"{n} run{'s' if n != 1 else ''}: {', '.join(k['runs'])}"
        line = f"⚠ {k['text']} — {which}"
        vals = [v for v in k["values"] if v == v]
        if k["word"] and vals:
            line += f" ({k['word']} {max(vals):.2g})"
        out.append(line)
    return out
