"""The SSGD-vs-DPSGD comparison report of ``ddl compare``: one self-contained HTML page, a Markdown twin and the
PNG figures.

``build_report(run_dirs, out)`` reads the run directories (training metrics, ``noise.jsonl``, the duality
analysis in ``RUN/analysis``; a directory of runs, such as a sweep's, stands for its runs), groups the runs by
configuration, aggregates over seeds and writes to ``out``:

* ``report.html`` - figures embedded as base64 PNG, inline CSS, no script and no external resource;
* ``report.md`` - the same text and tables, figures linked as ``NAME.png`` beside it;
* ``NAME.png`` - one file per figure of :data:`ddl.report.figures.FIGURES` (those without data are left out and
  the report says why);
* ``numbers.json`` - every number of the tables (per group: mean, std, n; per run: the values) and the verdict.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from analysis.figures import png_bytes
from ddl.algorithms import BASELINE, label_of
from ddl.report.checks import check_lines, split_line
from ddl.report.figures import FIGURES
from ddl.report.formatting import format_stat, format_value
from ddl.report.groups import Group, common_settings, make_groups
from ddl.report.render import Block, Box, Cell, Heading, Image, Paragraph, Prose, Row, Table, write_report
from ddl.report.runs import missing_lines, read_runs
from ddl.report.stats import TOP_DIRECTIONS, run_numbers
from ddl.report.verdict import verdict

# (key, label, kind): kind "err" is shown in %, "int" as a whole number, "num" with 4 significant digits
GROUP_ROWS = (
    ("test_err", "final test error", "err"),
    ("train_err", "final training error", "err"),
    ("test_loss", "final test loss", "num"),
    ("train_loss", "final training loss", "num"),
    ("true_gap", "true gap L_test − L_train (analysis)", "num"),
    ("pairwise_gap", "A-W pairwise gap ΔL_p", "num"),
    ("sharp_gap", "… sharp part", "num"),
    ("flat_gap", "… flat part (+ residual)", "num"),
    ("mean_gap", "… mean terms Σ μ_g μ_w", "num"),
    ("n_sharp", "sharp directions n_sharp", "num"),
    ("sigma_g_top", f"mean σ_g over the top {TOP_DIRECTIONS} directions", "num"),
    ("sigma_w_sum", "size Σ_k σ_w,k", "num"),
    ("lambda_max", "largest eigenvalue of the layer Hessian", "num"),
    ("ssgd_noise_sq", "mean minibatch noise ‖ξ‖²", "num"),
    ("dpsgd_noise_sq", "mean DPSGD extra noise ‖η_DP‖²", "num"),
    ("total_noise_sq", "mean total noise ‖ξ + η_DP‖²", "num"),
    ("sharpness", "mean λ_max (whole model) during training", "num"),
    ("sharpness_final", "λ_max at the last measurement", "num"),
    ("noise_sharpness_corr", "corr over time (log noise, log λ_max) (SSGD: ‖ξ‖², DPSGD: ‖η_DP‖²)", "num"),
    ("xi_sharpness_corr", "corr over time (log ‖ξ‖², log λ_max)", "num"),
    ("eta_top_share", "share of ‖η_DP‖² in the top-k Hessian directions", "num"),
    ("xi_top_share", "share of ‖ξ‖² in the top-k Hessian directions", "num"),
    ("eta_minus_xi_top_share", "… η − ξ, paired per measurement", "num"),
    ("random_top_share", "… a random direction's share k/P", "num"),
    ("noise_measurements", "noise measurements per run (after step 0)", "num"),
    ("steps", "steps", "num"),
    ("wall_time_s", "training wall time (s)", "num"),
    ("sim_time_s", "simulated wall clock (s)", "num"),
)
RUN_COLUMNS = (
    ("steps", "steps", "int"),
    ("train_loss", "train loss", "num"),
    ("test_loss", "test loss", "num"),
    ("train_err", "train error", "err"),
    ("test_err", "test error", "err"),
    ("true_gap", "true gap", "num"),
    ("pairwise_gap", "A-W gap", "num"),
    ("sharp_gap", "sharp", "num"),
    ("flat_gap", "flat", "num"),
    ("n_sharp", "n_sharp", "int"),
    ("sharpness_final", "final λ_max", "num"),
)
NUMBERS_INTRO = ("Per configuration, mean ± standard deviation over seeds (n − 1 in the denominator). Gaps and "
                 "spectra come from the duality analysis of each run's averaged model; noise numbers are averages "
                 "over the measurements after step 0.")  # fmt: skip
FOOTER = ("Definitions (docs/theory.md): Δℓ_n = ℓ(test_n) − ℓ(partner_n); ΔL_p = mean_n Δℓ_n = Σ_k [μ_g,k μ_w,k + "
          "ρ_k σ_g,k σ_w,k]; the sharp part sums ΔL_k over the n_sharp sharp directions chosen by the split rule "
          "named above the tables; the size is Σ_k σ_w,k. Noise at the average weight w̄: ξ = ∇L_B(w̄) − ∇L(w̄), "
          "η_DP = (1/n) Σ_a [∇L_μa(w_a) − ∇L_μa(w̄)]. Written by `ddl compare`.")  # fmt: skip


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    numbers: Path
    groups: list[Group]


def default_title(groups: list[Group]) -> str:
    algos = {g.algo for g in groups}
    if len(algos) == 2 and BASELINE in algos:
        (other,) = algos - {BASELINE}
        return f"{label_of(BASELINE)} vs {label_of(other)}"
    return " / ".join(sorted(label_of(a) for a in algos)) + " runs"


def build_report(run_dirs: list, out: str | Path, title: str | None = None) -> Report:
    """Read ``run_dirs``, write the report to ``out`` and return the paths (see the module docstring)."""
    runs = read_runs(run_dirs)
    groups = make_groups(runs)
    title = default_title(groups) if title is None else title
    figures = []
    for spec in FIGURES:
        fig = spec.draw(groups)
        figures.append((spec.name, png_bytes(fig) if fig is not None else None))
    findings, missing = verdict(groups), missing_lines(runs)
    group_stats = {g.label: g.numbers() for g in groups}
    per_run = {r.path: run_numbers(r) for r in runs}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    shared = common_settings(groups)
    subtitle = (f"{_count(len(groups), 'configuration')}, {_count(len(runs), 'run')}"
                + (f" · {shared}" if shared else "") + f" · generated {stamp}")  # fmt: skip
    blocks: list[Block] = [Box("verdict", [Heading("Verdict"), Prose(findings)])]
    checks, split = check_lines(runs), split_line(runs)
    if checks:
        blocks.append(Box("checks", [Prose(["**Checks that failed** (thresholds: docs/measurements.md):",
                                            *(f"- {c}" for c in checks)])]))  # fmt: skip
    if missing:
        blocks.append(Box("missing", [Prose(["**Missing data** (the report shows what the runs have):",
                                             *(f"- {m}" for m in missing)])]))  # fmt: skip
    blocks += [Heading("Numbers"), Paragraph(NUMBERS_INTRO + (f" {split}" if split else ""), "intro"),
               group_table(groups, group_stats),
               Heading("Per run", 3), run_table(groups, per_run)]  # fmt: skip
    for spec, (_, png) in zip(FIGURES, figures):
        blocks.append(Heading(spec.title, 2, anchor=spec.name))
        if png is None:
            blocks.append(Paragraph(f"Not available: {spec.needs}.", "note"))
            continue
        blocks.append(Paragraph(spec.intro, "intro"))
        lacking = spec.lacking(groups)
        if lacking:
            blocks.append(Paragraph("Not shown: " + "; ".join(lacking) + ".", "note"))
        blocks.append(Image(spec.name, spec.title, png))

    numbers = {
        "title": title,
        "generated": stamp,
        "groups": [{"label": g.label, "algo": g.algo, "seeds": g.seeds, "runs": [str(r.path) for r in g.runs],
                    "numbers": group_stats[g.label]} for g in groups],  # fmt: skip
        "runs": [{"path": str(r.path), "group": g.label, "seed": r.seed, "status": r.status,
                  "numbers": per_run[r.path]} for g in groups for r in g.runs],  # fmt: skip
        "verdict": findings,
        "missing": missing,
        "checks": checks,
        "split": split,
    }
    files = write_report(out, title, subtitle, blocks, figures, numbers, FOOTER)
    return Report(files.html, files.markdown, files.figures, files.numbers, groups)


# ---------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------
def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _status(g: Group) -> str:
    return ", ".join(f"{n} {s}" for s, n in Counter(r.status for r in g.runs).items())


def _analysed_layers(g: Group) -> str:
    """The analysed layer(s) of a group's duality results, with their shape."""
    names = []
    for d in g.dualities():
        shape = d.layer_shape
        s = (d.layer or "?") + (f" ({shape[0]}×{shape[1]})" if shape and len(shape) == 2 else "")
        if s not in names:
            names.append(s)
    return ", ".join(names) if names else "—"


def group_table(groups: list[Group], group_stats: dict[str, dict]) -> Table:
    """One column per group: seeds, status, analysed layer, then every number of :data:`GROUP_ROWS` that at
    least one group has, as mean ± std."""
    header = [Cell("quantity (mean ± std over seeds)", left=True), *(Cell(g.label, swatch=g.color) for g in groups)]
    rows = [Row([Cell("seeds", left=True), *(Cell(", ".join(map(str, g.seeds))) for g in groups)]),
            Row([Cell("status", left=True), *(Cell(_status(g)) for g in groups)]),
            Row([Cell("analysed layer", left=True), *(Cell(_analysed_layers(g)) for g in groups)])]  # fmt: skip
    for key, label, kind in GROUP_ROWS:
        if all(group_stats[g.label][key]["n"] == 0 for g in groups):
            continue
        cells = [Cell(format_stat(group_stats[g.label][key], kind), key=key) for g in groups]
        rows.append(Row([Cell(label, left=True), *cells], {"data-row": key}))
    return Table(header, rows, "groups")


def run_table(groups: list[Group], per_run: dict[Path, dict]) -> Table:
    """One row per run (grouped): the numbers of :data:`RUN_COLUMNS`."""
    header = [Cell("run", left=True), Cell("group", left=True), Cell("seed"), Cell("status", left=True),
              *(Cell(label) for _, label, _ in RUN_COLUMNS)]  # fmt: skip
    rows = []
    for g in groups:
        for r in g.runs:
            n = per_run[r.path]
            rows.append(Row([Cell(r.path.name, left=True, title=str(r.path)), Cell(g.label, left=True),
                             Cell(str(r.seed)), Cell(r.status, left=True),
                             *(Cell(format_value(n[k], kind), key=k) for k, _, kind in RUN_COLUMNS)],
                            {"data-run": str(r.path)}))  # fmt: skip
    return Table(header, rows, "runs")


__all__ = ["Report", "build_report", "group_table", "run_table"]
