"""The large-model case study (the paper's Fig. 7) as a report section: for each deep model among the runs, the
σ_g spectrum (sharpest direction first), the cumulative σ_w, the gap contributions split sharp/flat, the size
Σ_k σ_w,k, the test error, noise against sharpness over training, the BatchNorm recalibration's effect, and a
verdict against the paper's claim "DPSGD is flatter in the sharp directions at about the same size, hence a
smaller gap".

Which runs belong here is asked of the data: a run whose configuration has a ``width`` (the models built with a
base width: ResNet-18, DenseNet-121) is a deep-model run; they are split by the ``model`` field.  Runs that did
not train (diverged, or collapsed to chance level) are named and left out of every number and figure.

Used by the sweep report (:func:`ddl.report.sweep.build_sweep_report`) when deep-model runs are present, and on
its own by :func:`write_case_study` (``python -m ddl.report.deep_case SWEEP_DIR --out DIR``), which writes the
section as ``case_study.md`` with its PNGs and ``case_study.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.figures import png_bytes
from ddl.algorithms import is_baseline
from ddl.errors import RunDirError
from ddl.report.figures import (
    fig_contributions,
    fig_final,
    fig_noise_sharpness,
    fig_noise_time,
    fig_sigma_g,
    fig_sigma_w,
)
from ddl.report.formatting import format_stat
from ddl.report.groups import Group, make_groups, matching_baseline
from ddl.report.outcome import failure as outcome_failure
from ddl.report.render import Block, Box, Cell, Heading, Image, Paragraph, Prose, Row, Table, block_markdown
from ddl.report.runs import RunData, read_runs
from ddl.report.stats import TOP_DIRECTIONS, seed_stat
from ddl.report.verdict import FLATTER, SAME_SIZE

CLAIM = "DPSGD is flatter in the sharp directions at about the same size, hence a smaller gap"
FIGURE_SET = (("final", fig_final, "Test error and the gap, sharp/flat"),
              ("sigma_g", fig_sigma_g, "σ_g per direction, sharpest first"),
              ("sigma_w", fig_sigma_w, "Cumulative σ_w (size)"),
              ("contributions", fig_contributions, "Gap contributions per direction"),
              ("noise_time", fig_noise_time, "Noise and sharpness over training"),
              ("noise_sharpness", fig_noise_sharpness, "Noise against sharpness"))  # fmt: skip


def is_deep_run(run: RunData) -> bool:
    """Whether the run's model has a base width (the deep models of the paper's Fig. 7)."""
    return getattr(run.config, "width", None) is not None


def failure(run: RunData) -> str | None:
    """Why a run does not count: ``unfinished`` (no summary yet), else :func:`ddl.report.outcome.failure`'s word
    (diverged, collapsed, no final evaluation); None when it trained."""
    if run.status == "unfinished":
        return "unfinished"
    return outcome_failure(run)


@dataclass
class Comparison:
    """DPSGD against SSGD at one learning rate of one model (trained runs only)."""

    lr: float
    dp: Group | None
    ss: Group | None

    def stat(self, g: Group | None, key: str) -> dict:
        return g.numbers()[key] if g is not None else seed_stat([])

    def ratio(self, key: str) -> float:
        a, b = self.stat(self.dp, key)["mean"], self.stat(self.ss, key)["mean"]
        return a / b if math.isfinite(a) and math.isfinite(b) and b != 0 else float("nan")

    def lines(self) -> list[str]:
        """The comparison as report lines and its agreement with the claim."""
        head = f"lr = {self.lr:g}:"
        if self.dp is None or self.ss is None:
            which = " and ".join(n for n, g in (("SSGD", self.ss), ("DPSGD", self.dp)) if g is None)
            return [f"- {head} no trained {which} run, so no comparison here."]
        e_dp, e_ss = self.stat(self.dp, "test_err"), self.stat(self.ss, "test_err")
        g_dp, g_ss = self.stat(self.dp, "true_gap"), self.stat(self.ss, "true_gap")
        sg, size = self.ratio("sigma_g_top"), self.ratio("sigma_w_sum")
        sh_dp, sh_ss = self.stat(self.dp, "sharp_gap")["mean"], self.stat(self.ss, "sharp_gap")["mean"]
        flatter = sg < FLATTER
        same_size = SAME_SIZE[0] <= size <= SAME_SIZE[1]
        smaller_gap = g_dp["mean"] < g_ss["mean"]
        spread = max(g_dp["std"], g_ss["std"]) if g_dp["n"] > 1 and g_ss["n"] > 1 else float("nan")
        beyond = math.isfinite(spread) and abs(g_dp["mean"] - g_ss["mean"]) > spread
        parts = [f"σ_g over the {TOP_DIRECTIONS} sharpest directions DPSGD/SSGD = {sg:.2f} "
                 f"({'flatter' if flatter else 'not flatter'})",
                 f"size Σσ_w ratio {size:.2f} ({'about the same' if same_size else 'different'})",
                 f"true gap {format_stat(g_dp)} vs {format_stat(g_ss)} ({'smaller' if smaller_gap else 'not smaller'}"
                 + (f"{', beyond' if beyond else ', within'} the seed spread)" if math.isfinite(spread) else
                    ", one seed in at least one: spread unknown)"),
                 f"sharp part {sh_dp:.4g} vs {sh_ss:.4g}",
                 f"test error {format_stat(e_dp, 'err')} vs {format_stat(e_ss, 'err')}"]  # fmt: skip
        agree = [n for n, ok in (("flatter", flatter), ("same size", same_size), ("smaller gap", smaller_gap)) if ok]
        verdict = "agrees" if len(agree) == 3 else ("partly agrees (" + ", ".join(agree) + ")" if agree else
                                                     "does not agree")
        line = f"- {head} " + "; ".join(parts) + f" → **{verdict}** with the claim."
        if smaller_gap and self.dpsgd_better_error is False:
            # a gap is test minus training loss: a solution that fits the training set worse can have a smaller
            # gap and still generalise worse, which is not the paper's "DPSGD generalises better"
            line += (" But DPSGD's test error is not lower: its smaller gap comes with a worse fit of the "
                     "training set, not a solution that generalises better.")
        return [line]

    @property
    def dpsgd_better_error(self) -> bool | None:
        """Whether DPSGD's mean test error is below SSGD's (None without both)."""
        if self.dp is None or self.ss is None:
            return None
        return bool(self.stat(self.dp, "test_err")["mean"] < self.stat(self.ss, "test_err")["mean"])

    @property
    def agrees(self) -> bool | None:
        if self.dp is None or self.ss is None:
            return None
        return bool(self.ratio("sigma_g_top") < FLATTER and SAME_SIZE[0] <= self.ratio("sigma_w_sum") <= SAME_SIZE[1]
                    and self.stat(self.dp, "true_gap")["mean"] < self.stat(self.ss, "true_gap")["mean"])


@dataclass
class ModelCase:
    """One deep model's runs: the trained ones grouped by configuration, the failed ones named."""

    model: str
    width: int | None
    groups: list[Group]
    failed: list[tuple[RunData, str]]

    def comparisons(self) -> list[Comparison]:
        out = []
        for lr in sorted({g.config.lr for g in self.groups}):
            at = [g for g in self.groups if g.config.lr == lr]
            dp = next((g for g in at if not is_baseline(g.algo)), None)
            ss = matching_baseline(dp, self.groups) if dp is not None else next(
                (g for g in at if is_baseline(g.algo)), None)
            out.append(Comparison(lr, dp, ss))
        return out

    def verdict(self) -> list[str]:
        comps = self.comparisons()
        lines = [f"**{self.model}** (width {self.width}) against the claim “{CLAIM}”:"]
        if self.failed:
            lines.append("- Left out (did not train, or not finished): "
                         + ", ".join(f"{r.path.name} ({why})" for r, why in self.failed))
        lines += [line for c in comps for line in c.lines()]
        decided = [c for c in comps if c.agrees is not None]
        yes = [f"{c.lr:g}" for c in decided if c.agrees]
        no = [f"{c.lr:g}" for c in decided if not c.agrees]
        if not decided:
            lines.append("- Verdict: no learning rate has trained runs of both algorithms: not tested on this "
                         "machine.")
        else:
            lines.append("- Verdict: " + (f"the claim holds at lr {', '.join(yes)}" if yes else "the claim holds at "
                                          "no learning rate tested")
                         + (f"; it does not at lr {', '.join(no)}" if no else "") + ".")
            better = [f"{c.lr:g}" for c in decided if c.dpsgd_better_error]
            worse = [f"{c.lr:g}" for c in decided if not c.dpsgd_better_error]
            lines.append("- Test error (which algorithm generalises better here): DPSGD lower at lr "
                         + (", ".join(better) if better else "none") + "; SSGD lower or equal at lr "
                         + (", ".join(worse) if worse else "none") + ".")
        return lines


def model_cases(runs: list[RunData]) -> list[ModelCase]:
    """The deep-model runs, per model (in the order first seen)."""
    deep = [r for r in runs if is_deep_run(r)]
    out = []
    for model in dict.fromkeys(r.config.model for r in deep):
        mine = [r for r in deep if r.config.model == model]
        failed = [(r, why) for r in mine if (why := failure(r)) is not None]
        trained = [r for r in mine if failure(r) is None]
        out.append(ModelCase(model, mine[0].config.width, make_groups(trained) if trained else [], failed))
    return out


def bn_table(case: ModelCase) -> Table | None:
    """Per configuration: final test error and gap with recalibrated and with averaged BatchNorm statistics."""
    rows = []
    for g in case.groups:
        fin = [r.final for r in g.runs if "test_acc_avg_bn" in r.final]
        if not fin:
            continue

        def stat(f: Callable[[dict], float], fin: list[dict] = fin) -> dict:
            return seed_stat([f(x) for x in fin])

        rows.append(Row([Cell(g.label, left=True, swatch=g.color),
                         Cell(format_stat(stat(lambda x: 1 - x["test_acc"]), "err")),
                         Cell(format_stat(stat(lambda x: 1 - x["test_acc_avg_bn"]), "err")),
                         Cell(format_stat(stat(lambda x: x["test_loss"] - x["train_loss"]))),
                         Cell(format_stat(stat(lambda x: x["test_loss_avg_bn"] - x["train_loss_avg_bn"])))]))
    if not rows:
        return None
    return Table([Cell("configuration", left=True), Cell("test error, recalibrated BN"),
                  Cell("test error, averaged BN"), Cell("gap L_test − L_train, recalibrated"),
                  Cell("gap, averaged BN")], rows, "bn")  # fmt: skip


def case_blocks(runs: list[RunData], prefix: str = "case_") -> tuple[list[Block], list[tuple[str, bytes | None]],
                                                                        dict]:
    """The section's blocks, its figures (name, PNG) and its numbers; empty when no run is a deep-model run."""
    cases = model_cases(runs)
    if not cases:
        return [], [], {}
    blocks: list[Block] = [Heading("Large-model case study (paper Fig. 7)", 2, anchor="case-study"),
                           Paragraph("ResNet-18 / DenseNet-121 runs, per model: SSGD against DPSGD at each learning "
                                     "rate, the duality decomposition of the final fully connected layer and the "
                                     "noise measured during training. Runs that diverged or collapsed are named and "
                                     "left out.", "intro")]  # fmt: skip
    figures: list[tuple[str, bytes | None]] = []
    numbers: dict = {}
    for case in cases:
        blocks.append(Heading(f"{case.model} (width {case.width})", 3, anchor=f"case-{case.model}"))
        blocks.append(Box("verdict", [Prose(case.verdict())]))
        numbers[case.model] = _numbers(case)
        table = bn_table(case)
        if table is not None:
            blocks += [Paragraph("BatchNorm statistics of the averaged model: recalibrated on training data "
                                 "(what is reported and analysed) against the learners' averaged running "
                                 "statistics.", "intro"), table]  # fmt: skip
        if not case.groups:
            continue
        for name, draw, title in FIGURE_SET:
            fig: Figure | None = draw(case.groups)
            if fig is None:
                continue
            png = png_bytes(fig)
            fname = f"{prefix}{case.model}_{name}"
            figures.append((fname, png))
            blocks += [Heading(f"{case.model}: {title}", 4), Image(fname, f"{case.model}: {title}", png)]
    return blocks, figures, numbers


def _numbers(case: ModelCase) -> dict:
    keys = ("test_err", "true_gap", "pairwise_gap", "sharp_gap", "flat_gap", "sigma_g_top", "sigma_w_sum",
            "lambda_max", "noise_sharpness_corr")
    return {"width": case.width, "failed": {r.path.name: why for r, why in case.failed},
            "groups": {g.label: {k: g.numbers()[k] for k in keys} for g in case.groups},
            "comparisons": [{"lr": c.lr, "agrees": c.agrees, "sigma_g_ratio": c.ratio("sigma_g_top"),
                             "size_ratio": c.ratio("sigma_w_sum")} for c in case.comparisons()]}  # fmt: skip


def write_case_study(run_paths: list, out: str | Path, title: str = "Large-model case study") -> Path:
    """Write ``case_study.md``, its PNGs and ``case_study.json`` for the runs in ``run_paths`` (run directories
    or directories of runs) to ``out``; the Markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = read_runs(run_paths)
    blocks, figures, numbers = case_blocks(runs)
    if not blocks:
        raise RunDirError(f"RUN: no deep-model run (a run with a model width) in {', '.join(map(str, run_paths))}")
    for name, png in figures:
        (out / f"{name}.png").write_bytes(png)
    lines = [f"# {title}", ""] + [line for b in blocks for line in block_markdown(b)]
    md = out / "case_study.md"
    md.write_text("\n".join(lines))
    (out / "case_study.json").write_text(json.dumps(_plain(numbers), indent=2))
    return md


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddl.report.deep_case", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories or directories of runs (a sweep's output)")
    p.add_argument("--out", required=True, help="directory for case_study.md, its PNGs and case_study.json")
    args = p.parse_args(argv)
    print(write_case_study(args.runs, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
