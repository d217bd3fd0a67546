"""The SSGD-vs-DPSGD comparison report: one self-contained HTML page, a Markdown twin and the PNG figures.

``build_report(run_dirs, out)`` reads the run directories (training metrics, ``noise.jsonl``, the duality
analysis in ``RUN/analysis``), groups the runs by configuration, aggregates over seeds and writes to ``out``:

* ``report.html`` - figures embedded as base64 PNG, inline CSS, no script and no external resource;
* ``report.md`` - the same text and tables, figures linked as ``NAME.png`` beside it;
* ``NAME.png`` - one file per figure (``curves``, ``final``, ``sigma_g``, ``sigma_w``, ``size_vs_norm``,
  ``contributions``, ``noise_time``, ``noise_sharpness``; those without data are left out and the report says why);
* ``numbers.json`` - every number of the tables (per group: mean, std, n; per run: the values) and the verdict.

``ddl compare`` (:mod:`ddl.report.compare`) is the command-line front end.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from analysis.io import atomic_write
from ddl.report.data import (
    TOP_DIRECTIONS,
    Group,
    RunData,
    common_settings,
    make_groups,
    missing_lines,
    pct,
    pp,
    read_run,
    verdict,
)
from ddl.report.figures import FIGURES, png_bytes
from ddl.rundir import RunDirError

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
    ("noise_sharpness_corr", "corr(log noise, log λ_max) (SSGD: ‖ξ‖², DPSGD: ‖η_DP‖²)", "num"),
    ("steps", "steps", "num"),
    ("wall_time_s", "training wall time (s)", "num"),
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


@dataclass
class FigureText:
    title: str
    intro: str
    needs: str  # what to do when no run has the data


FIGURE_TEXT = {
    "curves": FigureText(
        "Training curves",
        "Loss and error of the averaged model w̄ at every evaluation; lines are means over seeds, bands ±1 std. "
        "Look for which configuration ends lower on the test panels and whether the bands overlap.",
        "no run has metrics.jsonl",
    ),
    "final": FigureText(
        "Final test error and the generalization gap",
        "Left: final test error per configuration. Right: the true gap L_test − L_train of the analysed model, "
        "the activity-weight estimate ΔL_p = mean_n Δℓ_n and its split into the sharp directions "
        "Σ_{k<n_sharp} ΔL_k and the flat rest. Look for whether a lower test error comes with a smaller sharp "
        "part.",
        "no run has a final evaluation",
    ),
    "sigma_g": FigureText(
        "Sharpness determinant σ_g (“flatter in the sharp directions”)",
        "σ_g,k, the spread of the effective gradients along Hessian direction k (sharpest first), tracks the "
        "curvature λ_k (right). Look for DPSGD's curve below SSGD's in the first, sharp directions and the two "
        "meeting in the flat ones.",
        "no run has a duality analysis: run `ddl analyze RUN` on each run",
    ),
    "sigma_w": FigureText(
        "Size determinant σ_w (“same size”)",
        "σ_w,k, the spread of the dual weights along direction k, accumulated over the directions as in the "
        "paper (the running sum smooths the per-direction noise). Look for the cumulative curves lying on top of "
        "each other: the solutions have the same size.",
        "no run has a duality analysis: run `ddl analyze RUN` on each run",
    ),
    "size_vs_norm": FigureText(
        "Size against the weight norm",
        "Σ_k σ_w,k of each run against ‖W‖_F of the analysed layer: σ_w is an activity-weighted norm of the "
        "solution (MATH.md §5). Look for whether a larger size comes with larger weights or with a different "
        "activity weighting.",
        "no run has a duality analysis: run `ddl analyze RUN` on each run",
    ),
    "contributions": FigureText(
        "Gap contributions ΔL_k",
        "ΔL_k = ρ_k σ_g,k σ_w,k per direction and summed up to k (the right panel ends at the A-W gap minus the "
        "small mean terms). Look for where the configurations' gaps part: in the first, sharp directions or in "
        "the many flat ones.",
        "no run has a duality analysis: run `ddl analyze RUN` on each run",
    ),
    "noise_time": FigureText(
        "SSGD and DPSGD noise during training",
        "Left: the minibatch noise ξ = ∇L_B(w̄) − ∇L(w̄) of SSGD, and for DPSGD the total ξ + η_DP (solid) and "
        "its extra, landscape-dependent part η_DP = (1/n) Σ_a [∇L_μa(w_a) − ∇L_μa(w̄)] (dashed). Right: the top "
        "Hessian eigenvalue of the whole model at w̄. Geometric means over seeds, bands ×/÷ the geometric std; "
        "step 0 (identical learners, η_DP = 0) is left out. Look for DPSGD's total noise above SSGD's, most of "
        "all early, while the landscape is sharp.",
        "no run has noise measurements: train with `--measure-noise K` (e.g. K = 20)",
    ),
    "noise_sharpness": FigureText(
        "Noise against sharpness (paper Fig. 6A)",
        "Every measurement of every seed: noise strength against λ_max at that moment. Look for DPSGD's extra "
        "noise ‖η_DP‖² rising with λ_max: the noise is larger where the landscape is sharper.",
        "no run has noise measurements: train with `--measure-noise K` (e.g. K = 20)",
    ),
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1240px;margin:0 auto;
padding:18px 24px 60px;color:#1d2329;line-height:1.45;background:#fff}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.22em;margin:1.6em 0 .35em;border-bottom:1px solid #dde2e7;
padding-bottom:.2em}.sub{color:#5a6570;margin:0 0 1em}
.verdict{background:#f4f8fc;border-left:4px solid #2d6cb5;padding:.6em 1em;margin:1em 0}
.verdict p{margin:.45em 0}.missing{background:#fff8ec;border-left:4px solid #d48a00;padding:.5em 1em;margin:1em 0}
.missing ul{margin:.3em 0;padding-left:1.2em}.missing li{font-size:.9em}
.tablewrap{overflow-x:auto}table{border-collapse:collapse;font-size:.84em;margin:.4em 0 1em}
th,td{border:1px solid #d5dbe1;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eef2f6}td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafbfc}
figure{margin:.4em 0 1.2em}figure img{max-width:100%;height:auto;border:1px solid #eceff2}
p.intro{margin:.2em 0 .5em;color:#2e3842}.na{color:#8a5a00;font-style:italic}
code{background:#f1f3f5;padding:0 3px;border-radius:3px;font-size:.92em}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-.05em}
footer{margin-top:2em;font-size:.85em;color:#5a6570}
"""

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]  # fmt: skip  matplotlib's tab10, for the legend swatches


# ---------------------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------------------
def fmt(v: float, kind: str = "num") -> str:
    """A table cell: ``err`` as a percentage (2 decimals), ``int`` whole, ``num`` 4 significant digits."""
    if v is None or not math.isfinite(v):
        return "—"
    if kind == "err":
        return pct(v)
    if kind == "int":
        return f"{int(round(v))}"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def fmt_pm(stat: dict, kind: str) -> str:
    """``mean ± std`` (std only with two or more seeds)."""
    if stat["n"] == 0:
        return "—"
    m = fmt(stat["mean"], kind)
    if stat["n"] > 1 and math.isfinite(stat["std"]):
        sd = stat["std"]
        if kind == "err":
            s = pp(sd)
        elif sd != 0 and (abs(sd) >= 1e5 or abs(sd) < 1e-3):
            s = f"{sd:.1e}"
        else:
            s = f"{sd:.2g}"
        return f"{m} ± {s}"
    return m


def _md_inline(text: str) -> str:
    """The verdict's Markdown (``**bold**``, ```code```) as escaped HTML."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _color_hex(c: str) -> str:
    m = re.fullmatch(r"C(\d+)", c)
    return _COLORS[int(m.group(1)) % 10] if m else c


def _plain(o):
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    return o


# ---------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    numbers: Path
    groups: list[Group]


def _status_str(g: Group) -> str:
    c = Counter(r.status for r in g.runs)
    return ", ".join(f"{n} {s}" for s, n in c.items())


def _layer_str(g: Group) -> str:
    """The analysed layer(s) of a group's duality results, with their shape."""
    names = []
    for d in g.dualities():
        shape = getattr(d, "layer_shape", None)
        s = str(getattr(d, "layer", "") or "?") + (f" ({shape[0]}×{shape[1]})" if shape and len(shape) == 2 else "")
        if s not in names:
            names.append(s)
    return ", ".join(names) if names else "—"


def _not_shown(groups: list[Group], name: str) -> list[str]:
    """Groups that lack the data of figure ``name`` while others have it."""
    if name in ("sigma_g", "sigma_w", "size_vs_norm", "contributions") or (name == "final"):
        key = "duality"
        lacking = [g.label for g in groups if not g.dualities()]
    elif name.startswith("noise"):
        key = "noise"
        lacking = [g.label for g in groups if not any(r.noise for r in g.runs)]
    else:
        return []
    if not lacking:
        return []
    what = "no duality analysis (`ddl analyze RUN`)" if key == "duality" else "no noise data (`--measure-noise K`)"
    if name == "final":
        what = "no duality analysis, so no gap bars (`ddl analyze RUN`)"
    return [f"{lab}: {what}" for lab in lacking]


def build_report(run_dirs: list, out: str | Path, title: str | None = None) -> Report:
    """Read ``run_dirs``, write the report to ``out`` and return the paths (see the module docstring)."""
    if not run_dirs:
        raise RunDirError("RUN: give at least one run directory")
    seen, runs = set(), []
    for d in run_dirs:
        p = Path(d).resolve()
        if p in seen:
            continue
        seen.add(p)
        runs.append(read_run(d))
    groups = make_groups(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if title is None:
        algos = {g.algo for g in groups}
        names = " / ".join(sorted(a.upper() for a in algos))
        title = "SSGD vs DPSGD" if algos == {"ssgd", "dpsgd"} else f"{names} runs"

    figures: list[tuple[str, bytes | None]] = []
    for name, fn in FIGURES:
        fig = fn(groups)
        figures.append((name, png_bytes(fig) if fig is not None else None))
    written = []
    for name, data in figures:
        p = out / f"{name}.png"
        if data is None:
            p.unlink(missing_ok=True)  # a stale figure of an earlier report would contradict this one
        else:
            atomic_write(p, lambda f, d=data: f.write(d))
            written.append(p)

    findings = verdict(groups)
    missing = missing_lines(runs)
    group_nums = {g.label: g.numbers() for g in groups}
    run_nums = {r.path: r.numbers() for r in runs}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = common_settings(groups)

    ctx = dict(title=title, groups=groups, findings=findings, missing=missing, group_nums=group_nums,
               run_nums=run_nums, figures=figures, stamp=stamp, sub=sub)  # fmt: skip
    html_path, md_path, js_path = out / "report.html", out / "report.md", out / "numbers.json"
    atomic_write(html_path, lambda f: f.write(_render_html(**ctx).encode()))
    atomic_write(md_path, lambda f: f.write(_render_md(**ctx).encode()))
    doc = {
        "title": title,
        "generated": stamp,
        "groups": [{"label": g.label, "algo": g.algo, "seeds": g.seeds, "runs": [str(r.path) for r in g.runs],
                    "numbers": group_nums[g.label]} for g in groups],  # fmt: skip
        "runs": [{"path": str(r.path), "group": g.label, "seed": r.seed, "status": r.status,
                  "numbers": run_nums[r.path]} for g in groups for r in g.runs],  # fmt: skip
        "verdict": findings,
        "missing": missing,
        "figures": [p.name for p in written],
    }
    atomic_write(js_path, lambda f: f.write(json.dumps(_plain(doc), indent=2).encode()))
    return Report(html_path, md_path, written, js_path, groups)


# ---------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------
def _h(s) -> str:
    return html.escape(str(s))


def _group_table_html(groups: list[Group], group_nums: dict) -> str:
    head = "".join(
        f'<th class="l"><span class="swatch" style="background:{_color_hex(g.color)}"></span>{_h(g.label)}</th>'
        for g in groups
    )
    rows = [f'<tr><th class="l">quantity (mean ± std over seeds)</th>{head}</tr>',
            '<tr><td class="l">seeds</td>' + "".join(f"<td>{_h(', '.join(map(str, g.seeds)))}</td>" for g in groups)
            + "</tr>",
            '<tr><td class="l">status</td>' + "".join(f"<td>{_h(_status_str(g))}</td>" for g in groups)
            + "</tr>",
            '<tr><td class="l">analysed layer</td>' + "".join(f"<td>{_h(_layer_str(g))}</td>" for g in groups)
            + "</tr>"]  # fmt: skip
    for key, label, kind in GROUP_ROWS:
        if all(group_nums[g.label][key]["n"] == 0 for g in groups):
            continue
        cells = "".join(f'<td data-key="{key}">{_h(fmt_pm(group_nums[g.label][key], kind))}</td>' for g in groups)
        rows.append(f'<tr data-row="{key}"><td class="l">{_h(label)}</td>{cells}</tr>')
    return '<div class="tablewrap"><table class="groups">' + "\n".join(rows) + "</table></div>"


def _run_table_html(groups: list[Group], run_nums: dict) -> str:
    head = ('<tr><th class="l">run</th><th class="l">group</th><th>seed</th><th class="l">status</th>'
            + "".join(f"<th>{_h(lab)}</th>" for _, lab, _ in RUN_COLUMNS) + "</tr>")  # fmt: skip
    rows = [head]
    for g in groups:
        for r in g.runs:
            n = run_nums[r.path]
            cells = "".join(f'<td data-key="{k}">{_h(fmt(n[k], kind))}</td>' for k, _, kind in RUN_COLUMNS)
            rows.append(f'<tr data-run="{_h(r.path)}"><td class="l" title="{_h(r.path)}">{_h(r.path.name)}</td>'
                        f'<td class="l">{_h(g.label)}</td><td>{r.seed}</td><td class="l">{_h(r.status)}</td>'
                        f"{cells}</tr>")  # fmt: skip
    return '<div class="tablewrap"><table class="runs">' + "\n".join(rows) + "</table></div>"


def _findings_html(findings: list[str]) -> str:
    out, items = [], []
    for f in [*findings, ""]:
        if f.startswith("- "):
            items.append(f"<li>{_md_inline(f[2:])}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if f:
            out.append(f"<p>{_md_inline(f)}</p>")
    return "".join(out)


def _render_html(title, groups, findings, missing, group_nums, run_nums, figures, stamp, sub) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_h(title)}</h1>",
        f'<p class="sub">{_h(len(groups))} configuration{"s" if len(groups) != 1 else ""}, '
        f"{sum(len(g.runs) for g in groups)} run{'s' if sum(len(g.runs) for g in groups) != 1 else ''}"
        + (f" · {_h(sub)}" if sub else "") + f" · generated {_h(stamp)}</p>",
        '<section class="verdict"><h2 style="margin-top:.2em;border:0">Verdict</h2>' + _findings_html(findings)
        + "</section>",
    ]  # fmt: skip
    if missing:
        parts.append('<section class="missing"><strong>Missing data</strong> (the report shows what the runs have):'
                     "<ul>" + "".join(f"<li>{_md_inline(m)}</li>" for m in missing) + "</ul></section>")  # fmt: skip
    parts += ["<h2>Numbers</h2>", '<p class="intro">Per configuration, mean ± standard deviation over seeds '
              "(n − 1 in the denominator). Gaps and spectra come from the duality analysis of each run's averaged "
              "model; noise numbers are averages over the measurements after step 0.</p>",
              _group_table_html(groups, group_nums), "<h3>Per run</h3>", _run_table_html(groups, run_nums)]  # fmt: skip
    for name, data in figures:
        t = FIGURE_TEXT[name]
        parts.append(f'<h2 id="{name}">{_h(t.title)}</h2>')
        if data is None:
            parts.append(f'<p class="na">Not available: {_md_inline(t.needs)}.</p>')
            continue
        parts.append(f'<p class="intro">{_md_inline(t.intro)}</p>')
        lacking = _not_shown(groups, name)
        if lacking:
            parts.append('<p class="na">Not shown: ' + "; ".join(_md_inline(s) for s in lacking) + ".</p>")
        b64 = base64.b64encode(data).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{_h(t.title)}"></figure>')
    parts.append("<footer>Definitions (shared/paper/MATH.md): Δℓ_n = ℓ(test_n) − ℓ(partner_n); "
                 "ΔL_p = mean_n Δℓ_n = Σ_k [μ_g,k μ_w,k + ρ_k σ_g,k σ_w,k]; the sharp part sums ΔL_k over the first "
                 "n_sharp Hessian directions (the split rule of <code>ddl analyze</code>). Noise at the average "
                 "weight w̄: ξ = ∇L_B(w̄) − ∇L(w̄), η_DP = (1/n) Σ_a [∇L_μa(w_a) − ∇L_μa(w̄)]. Written by <code>ddl compare"
                 "</code>.</footer></body></html>")  # fmt: skip
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------
def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|")


def _render_md(title, groups, findings, missing, group_nums, run_nums, figures, stamp, sub) -> str:
    n_runs = sum(len(g.runs) for g in groups)
    lines = [f"# {title}", "",
             f"{len(groups)} configuration{'s' if len(groups) != 1 else ''}, {n_runs} run{'s' if n_runs != 1 else ''}"
             + (f" · {sub}" if sub else "") + f" · generated {stamp}", "", "## Verdict", ""]  # fmt: skip
    for i, f in enumerate(findings):
        list_goes_on = f.startswith("- ") and i + 1 < len(findings) and findings[i + 1].startswith("- ")
        lines += [f] if list_goes_on else [f, ""]
    if missing:
        lines += ["**Missing data** (the report shows what the runs have):", ""]
        lines += [f"- {m}" for m in missing] + [""]
    lines += ["## Numbers", "", "Per configuration, mean ± standard deviation over seeds (n − 1 in the denominator).",
              "", "| quantity | " + " | ".join(_md_cell(g.label) for g in groups) + " |",
              "|---|" + "---:|" * len(groups),
              "| seeds | " + " | ".join(", ".join(map(str, g.seeds)) for g in groups) + " |",
              "| status | " + " | ".join(_status_str(g) for g in groups) + " |",
              "| analysed layer | " + " | ".join(_layer_str(g) for g in groups) + " |"]  # fmt: skip
    for key, label, kind in GROUP_ROWS:
        if all(group_nums[g.label][key]["n"] == 0 for g in groups):
            continue
        lines.append(f"| {_md_cell(label)} | " + " | ".join(fmt_pm(group_nums[g.label][key], kind) for g in groups)
                     + " |")  # fmt: skip
    lines += ["", "### Per run", "",
              "| run | group | seed | status | " + " | ".join(lab for _, lab, _ in RUN_COLUMNS) + " |",
              "|---|---|---:|---|" + "---:|" * len(RUN_COLUMNS)]  # fmt: skip
    for g in groups:
        for r in g.runs:
            n = run_nums[r.path]
            lines.append(f"| {_md_cell(r.path.name)} | {_md_cell(g.label)} | {r.seed} | {r.status} | "
                         + " | ".join(fmt(n[k], kind) for k, _, kind in RUN_COLUMNS) + " |")  # fmt: skip
    lines.append("")
    for name, data in figures:
        t = FIGURE_TEXT[name]
        lines += [f"## {t.title}", ""]
        if data is None:
            lines += [f"*Not available: {t.needs}.*", ""]
            continue
        lines += [t.intro, ""]
        lacking = _not_shown(groups, name)
        if lacking:
            lines += ["*Not shown: " + "; ".join(lacking) + ".*", ""]
        lines += [f"![{t.title}]({name}.png)", ""]
    return "\n".join(lines)


__all__ = ["Report", "RunData", "build_report", "fmt", "fmt_pm"]
