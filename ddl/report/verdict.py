"""The verdict: plain-language findings computed from the groups' numbers, one named check per finding.

Findings are Markdown paragraphs (``**bold**``, ```code```); an entry starting with ``"- "`` is an item of a
list under the paragraph before it.  A difference between groups counts only when it exceeds the seed-to-seed
standard deviation of both; with a single seed the report says that the ranking is not established.
"""

from __future__ import annotations

import math

from ddl.algorithms import BASELINE, is_baseline, label_of
from ddl.report.formatting import pct, pp
from ddl.report.groups import Group, matching_baseline
from ddl.report.stats import TOP_DIRECTIONS

Stats = dict[str, dict[str, float]]  # one group's numbers: {name: {"mean", "std", "n"}}

# "flatter in the sharp directions at the same size": σ_g ratio below FLATTER, size ratio within SAME_SIZE
FLATTER, SHARPER = 0.9, 1.1
SAME_SIZE = (0.9, 1.1)


def verdict(groups: list[Group]) -> list[str]:
    """The findings about ``groups`` (see the module docstring)."""
    stats = {g.label: g.numbers() for g in groups}
    finished = [g for g in groups if math.isfinite(stats[g.label]["test_err"]["mean"])]
    if not finished:
        return ["No run has a final evaluation, so there is nothing to compare yet."]
    out = [*diverged_runs(groups), *single_algorithm(groups), ranking(finished, stats)]
    for dp in [g for g in groups if not is_baseline(g.algo)]:
        ss, same_config = baseline_counterpart(dp, groups, finished, stats)
        if ss is None:
            continue
        sd, dd = stats[ss.label], stats[dp.label]
        if not (math.isfinite(sd["test_err"]["mean"]) and math.isfinite(dd["test_err"]["mean"])):
            continue
        out.append(dpsgd_against_ssgd(dp, ss, same_config, dd, sd))
        out += [f"- {f}" for f in (*gap_and_size_facts(dd, sd), *noise_facts(dd, sd))]
    return out


# ---------------------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------------------
def diverged_runs(groups: list[Group]) -> list[str]:
    """Which runs diverged (their last evaluation still counts)."""
    diverged = [r for g in groups for r in g.runs if r.status == "diverged"]
    if not diverged:
        return []
    pronoun = "its" if len(diverged) == 1 else "their"
    return [f"{len(diverged)} of {sum(len(g.runs) for g in groups)} runs diverged ("
            + ", ".join(f"{r.path.name}" for r in diverged)
            + f"); {pronoun} last evaluation is included in the averages."]  # fmt: skip


def single_algorithm(groups: list[Group]) -> list[str]:
    """Whether the runs compare an algorithm with the baseline at all."""
    algos = {g.algo for g in groups}
    if BASELINE in algos and len(algos) > 1:
        return []
    if len(algos) > 1:
        return ["No run is " + label_of(BASELINE) + ", so there is no comparison with the baseline here."]
    return ["The runs are all " + label_of(groups[0].algo) + ", so there is no comparison of algorithms here."]


def ranking(finished: list[Group], stats: dict[str, Stats]) -> str:
    """The configuration with the lowest final test error, against the next one."""
    ranked = sorted(finished, key=lambda g: stats[g.label]["test_err"]["mean"])
    best = ranked[0]
    if len(ranked) == 1:
        return f"Only one configuration: **{best.label}**, final test error {_test_error(stats[best.label])}."
    second = ranked[1]
    diff, spread, both = _error_difference(stats[second.label], stats[best.label])
    msg = (f"Lowest final test error: **{best.label}** with {_test_error(stats[best.label])}; next is "
           f"{second.label} with {_test_error(stats[second.label])} (difference {pp(diff)}). ")  # fmt: skip
    if not both:
        return msg + ("With a single seed in at least one of them the seed-to-seed spread is unknown, so this "
                      "ranking is not established; train more seeds (`--seed`).")  # fmt: skip
    if diff > spread:
        return msg + f"The difference exceeds the seed-to-seed standard deviation ({pp(spread)})."
    return msg + (f"The difference is within the seed-to-seed standard deviation ({pp(spread)}): the two are not "
                  "distinguishable with these seeds.")  # fmt: skip


def baseline_counterpart(dp: Group, groups: list[Group], finished: list[Group],
                         stats: dict[str, Stats]) -> tuple[Group | None, bool]:  # fmt: skip
    """The baseline group to compare ``dp`` with and whether its configuration matches apart from the algorithm:
    the matching one if there is one, else the finished baseline group with the lowest test error."""
    match = matching_baseline(dp, groups)
    if match is not None:
        return match, True
    ssgd = [g for g in finished if is_baseline(g.algo)]
    if not ssgd:
        return None, False
    return min(ssgd, key=lambda g: stats[g.label]["test_err"]["mean"]), False


def dpsgd_against_ssgd(dp: Group, ss: Group, same_config: bool, dd: Stats, sd: Stats) -> str:
    """Whether DPSGD's final test error beats SSGD's by more than the seed-to-seed spread."""
    diff, spread, both = _error_difference(sd, dd)  # > 0: DPSGD lower
    head = f"**{dp.label} vs {ss.label}**" + ("" if same_config else " (the configurations differ beyond the "
                                                                     "algorithm)")  # fmt: skip
    dp_err, ss_err = pct(dd["test_err"]["mean"]), pct(sd["test_err"]["mean"])
    if diff > 0 and both and diff > spread:
        return (f"{head}: DPSGD beats SSGD, test error {dp_err} vs {ss_err}, lower by {pp(diff)}, more than the "
                f"seed-to-seed standard deviation ({pp(spread)}).")  # fmt: skip
    if diff > 0:
        why = f"within the seed-to-seed standard deviation ({pp(spread)})" if both else "with a single seed"
        return (f"{head}: DPSGD's test error is lower by {pp(diff)} ({dp_err} vs {ss_err}), but {why}: on this "
                "evidence DPSGD does not clearly beat SSGD.")  # fmt: skip
    return (f"{head}: DPSGD does not beat SSGD here: its test error is {dp_err} vs SSGD's {ss_err} "
            f"({pp(-diff)} {'higher' if diff < 0 else 'equal'}).")  # fmt: skip


def gap_and_size_facts(dd: Stats, sd: Stats) -> list[str]:
    """The gap's sharp/flat split, the sharpness σ_g and the size Σ_k σ_w,k of DPSGD against SSGD, and
    whether they show the paper's picture."""
    if not (math.isfinite(sd["sharp_gap"]["mean"]) and math.isfinite(dd["sharp_gap"]["mean"])):
        return ["Not both groups have a duality analysis, so the gap's sharp/flat split cannot be compared "
                "(`ddl analyze RUN`)."]  # fmt: skip

    def m(stat: Stats, key: str) -> float:
        return stat[key]["mean"]

    sharp_word = "smaller" if m(dd, "sharp_gap") < m(sd, "sharp_gap") else "not smaller"
    facts = [f"Gap (DPSGD vs SSGD): A-W pairwise {m(dd, 'pairwise_gap'):.4g} vs {m(sd, 'pairwise_gap'):.4g}, "
             f"true {m(dd, 'true_gap'):.4g} vs {m(sd, 'true_gap'):.4g}; sharp part {m(dd, 'sharp_gap'):.4g} vs "
             f"{m(sd, 'sharp_gap'):.4g} ({sharp_word} for DPSGD), flat part {m(dd, 'flat_gap'):.4g} vs "
             f"{m(sd, 'flat_gap'):.4g}."]  # fmt: skip
    sharpness_ratio = m(dd, "sigma_g_top") / m(sd, "sigma_g_top")
    size_ratio = m(dd, "sigma_w_sum") / m(sd, "sigma_w_sum")
    flat = "flatter" if sharpness_ratio < FLATTER else ("sharper" if sharpness_ratio > SHARPER else "about as sharp")
    facts.append(f"Sharpness: DPSGD's mean σ_g over the {TOP_DIRECTIONS} sharpest directions is "
                 f"{sharpness_ratio:.2f}× SSGD's ({flat}). Size: its Σ_k σ_w,k is {size_ratio:.2f}× SSGD's "
                 f"({_ratio_word(size_ratio)}).")  # fmt: skip
    if sharpness_ratio < FLATTER and SAME_SIZE[0] <= size_ratio <= SAME_SIZE[1]:
        facts.append("This is the paper's picture: flatter in the sharp directions at the same size.")
    else:
        facts.append("This is not the paper's picture of “flatter in the sharp directions at the same size” "
                     f"(thresholds: σ_g ratio < {FLATTER:g}, size ratio within {SAME_SIZE[0]:g}–{SAME_SIZE[1]:g}).")
    return facts


def noise_facts(dd: Stats, sd: Stats) -> list[str]:
    """DPSGD's total and extra noise against SSGD's minibatch noise, the directional test of the extra noise
    (:func:`direction_verdict`), and the time correlations with sharpness of η_DP beside ξ's (no claim is drawn
    from them: ξ follows sharpness over training as well)."""
    if not (math.isfinite(sd["ssgd_noise_sq"]["mean"]) and math.isfinite(dd["total_noise_sq"]["mean"])):
        return ["Not both groups have noise measurements, so their noise cannot be compared (`--measure-noise K`)."]
    total_ratio = dd["total_noise_sq"]["mean"] / sd["ssgd_noise_sq"]["mean"]
    extra_ratio = dd["dpsgd_noise_sq"]["mean"] / dd["ssgd_noise_sq"]["mean"]
    facts = [f"Noise: averaged over training, DPSGD's total noise ‖ξ+η_DP‖² is {total_ratio:.2f}× SSGD's ‖ξ‖²; "
             f"its extra noise ‖η_DP‖² is {extra_ratio:.2f}× its own minibatch noise."]  # fmt: skip
    d = direction_verdict(dd)
    if d is not None:
        facts.append(d)
    c, cx = dd["noise_sharpness_corr"]["mean"], dd["xi_sharpness_corr"]["mean"]
    if math.isfinite(c):
        facts.append(f"Over training time, log ‖η_DP‖² and log λ_max correlate with r = {c:.2f}, and the same "
                     f"run's minibatch noise log ‖ξ‖² with r = {cx:.2f}: a time correlation alone does not single "
                     "out η_DP (both follow the training's course).")  # fmt: skip
    return facts


def direction_verdict(stats: Stats) -> str | None:
    """The paper's claim that the extra noise η_DP is larger along the sharp directions, tested the way it is
    stated: η_DP's share of energy in the top-k Hessian directions against ξ's (paired per measurement) and
    against a random direction's k/P, mean ± std over seeds.  *Supported here* when η's share exceeds ξ's by
    more than the seeds' spread of the difference (≥ 2 seeds) and exceeds k/P; *not supported here* when it
    does not exceed ξ's share or k/P; otherwise not established (one seed, or within the spread).  None without
    the measurements."""
    eta, xi, diff = stats["eta_top_share"], stats["xi_top_share"], stats["eta_minus_xi_top_share"]
    rnd = stats["random_top_share"]["mean"]
    if not (math.isfinite(eta["mean"]) and math.isfinite(xi["mean"])):
        return None
    n_meas = stats["noise_measurements"]["mean"]

    def ms(x: dict) -> str:
        return f"{x['mean']:.3f}" + (f" ± {x['std']:.3f}" if x["n"] > 1 else "")

    k = stats["noise_top_k"]["mean"]
    head = (f"Noise direction (top-{k:.0f} Hessian directions of the whole model): η_DP puts {ms(eta)} of its "
            f"energy there, ξ {ms(xi)}, a random direction {rnd:.2g} (k/P); paired difference η − ξ {ms(diff)} "
            f"(mean ± std over {eta['n']} seed{'s' if eta['n'] != 1 else ''}, {n_meas:.0f} measurements per "
            "run). ")  # fmt: skip
    return head + DIRECTION_WORDS[direction_outcome(stats)]


DIRECTION_WORDS = {
    "supported": "The landscape-dependent noise claim is **supported here**: η_DP is concentrated in the sharp "
                 "directions beyond the minibatch noise and beyond chance.",
    "not supported": "The landscape-dependent noise claim is **not supported here**: η_DP is not more "
                     "concentrated in the sharp directions than the minibatch noise ξ (or than chance).",
    "not established": "Whether the claim holds is **not established here**: the difference is within the "
                       "seeds' spread, or there is a single seed.",
}  # fmt: skip


def direction_outcome(stats: Stats) -> str:
    """``supported``, ``not supported`` or ``not established`` (:func:`direction_verdict`'s rule)."""
    eta, diff = stats["eta_top_share"], stats["eta_minus_xi_top_share"]
    rnd = stats["random_top_share"]["mean"]
    if diff["mean"] <= 0 or eta["mean"] <= rnd:
        return "not supported"
    if diff["n"] > 1 and math.isfinite(diff["std"]) and diff["mean"] > diff["std"]:
        return "supported"
    return "not established"


def noise_direction_lines(groups: list[Group]) -> list[str]:
    """The directional test per group whose learners disagree (those with an η_DP), labelled."""
    out = []
    for g in groups:
        line = direction_verdict(g.numbers())
        if line is not None:
            out.append(f"**{g.label}** — {line}")
    return out


# ---------------------------------------------------------------------------------------------------------
def _test_error(stat: Stats) -> str:
    """``12.34 % ± 0.56 pp over 3 seeds``."""
    e = stat["test_err"]
    s = pct(e["mean"])
    if e["n"] > 1:
        s += f" ± {pp(e['std'])}"
    return s + f" over {e['n']} seed{'s' if e['n'] != 1 else ''}"


def _error_difference(a: Stats, b: Stats) -> tuple[float, float, bool]:
    """(test error of a − test error of b, the larger seed-to-seed std, whether both have ≥ 2 seeds)."""
    ea, eb = a["test_err"], b["test_err"]
    both = ea["n"] > 1 and eb["n"] > 1
    return ea["mean"] - eb["mean"], max(ea["std"], eb["std"]) if both else float("nan"), both


def _ratio_word(r: float) -> str:
    if not math.isfinite(r):
        return "n/a"
    if r < SAME_SIZE[0]:
        return "smaller"
    if r > SAME_SIZE[1]:
        return "larger"
    return "about the same"
