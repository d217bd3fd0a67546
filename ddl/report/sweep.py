"""The sweep report (``ddl sweep`` writes it to ``DIR/report``): how the generalization gap, its activity-weight
estimate and its sharp/flat parts, the spectra, the size and the test error move with each swept parameter,
and, for a grid over learning rate × batch size × algorithm, the SSGD-vs-DPSGD regime map.

Reads only files: ``DIR/sweep.json`` (the grid and the planned runs, written by :mod:`ddl.sweep`) and the run
directories.  Runs of one grid point are its seeds (mean ± std over them).  Files written, as for ``ddl compare``
(:func:`ddl.report.render.write_report`): ``report.html`` (self-contained), ``report.md``, one PNG per figure and
``numbers.json``.

Assembled here from :mod:`ddl.report.sweep_data` (grid points, regime maps), :mod:`ddl.report.sweep_figures`
and :mod:`ddl.report.sweep_findings` (findings text and the table).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure

from analysis.figures import png_bytes
from ddl.algorithms import label_of
from ddl.report.checks import check_lines, split_line
from ddl.report.deep_case import case_blocks
from ddl.report.figures import FIGURES
from ddl.report.formatting import format_stat
from ddl.report.groups import make_groups
from ddl.report.outcome import CHANCE_ERROR_FRACTION, COLLAPSED_LOSS_FRACTION, FAILURE_WORDS
from ddl.report.render import Block, Box, Heading, Image, Paragraph, Prose, write_report
from ddl.report.sweep_data import (
    CELL_COLUMNS,
    RegimeMap,
    read_sweep,
    regime_maps,
    value_text,
    values_label,
    with_measurement_run,
)
from ddl.report.sweep_figures import fig_gap, fig_regime, fig_spectra, fig_trends
from ddl.report.sweep_findings import cell_table, findings
from ddl.report.verdict import noise_direction_lines

FOOTER = ("Definitions (docs/theory.md): true gap = L_test − L_train of the analysed model; A-W estimate ΔL_p = "
          "mean over (test, nearest training partner) pairs of the loss difference = sharp + flat + mean terms; "
          f"size = Σ_k σ_w,k. Failed run: diverged, no final evaluation, or collapsed (final training loss ≥ "
          f"{COLLAPSED_LOSS_FRACTION:g} ln C or test error ≥ {CHANCE_ERROR_FRACTION:g} × chance error). Written by "
          "`ddl sweep`.")


def build_sweep_report(sweep_dir: str | Path, out: str | Path | None = None, title: str | None = None,
                       baseline: str | None = None) -> Path:
    """Write the report of the sweep in ``sweep_dir`` to ``out`` (default ``sweep_dir/report``); the HTML path.
    ``baseline``: the algorithm the regime map compares the others with (default: the one that declares itself
    the baseline, :data:`ddl.algorithms.BASELINE`)."""
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir / "report"
    spec, grid, cells = read_sweep(sweep_dir)
    title = title or spec.get("title") or ("Sweep over " + " × ".join(grid) if grid else "Sweep")
    maps = regime_maps(grid, cells, baseline)
    lines, nums = findings(grid, cells, maps)
    figures: list[tuple[str, bytes | None]] = []
    blocks: list[Block] = [Box("verdict", [Heading("Findings"), Prose(lines)])]
    all_runs = [r for c in cells for r in c.runs]
    checks, split = check_lines(all_runs), split_line(all_runs)
    if checks:  # how the numbers were measured, above the numbers it qualifies (as in `ddl compare`)
        blocks.append(Box("checks", [Prose(["**Checks that failed** (thresholds: docs/measurements.md):",
                                            *(f"- {c}" for c in checks)])]))  # fmt: skip
    n_runs = len(all_runs)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"{len(cells)} grid points × seeds {', '.join(map(str, spec.get('seeds', [])))}, {n_runs} finished "
                f"runs · grid "
                + "; ".join(f"{k} ∈ {{{', '.join(value_text(v) for v in vs)}}}" for k, vs in grid.items())
                + f" · generated {stamp}")  # fmt: skip

    def add(name: str, heading: str, intro: str, fig: Figure | None) -> None:
        if fig is None:
            return
        png = png_bytes(fig)
        figures.append((name, png))
        blocks.extend([Heading(heading, 3, anchor=name), *([Paragraph(intro, "intro")] if intro else []),
                       Image(name, heading, png)])

    if maps:
        base = label_of(maps[0].baseline)
        names = ", ".join(label_of(a) for a in maps[0].others)
        blocks.append(Heading(f"Regime map: {names} against {base}", 2, anchor="regime"))
        blocks.append(Paragraph("Test error of the averaged model over learning rate × learners n × batch b (rows "
                                "by total batch B = n·b; mean over the seeds that trained), every algorithm on one "
                                f"colour scale, and each one's difference to {base} where both trained. ✕: a seed "
                                f"diverged; ○: a seed collapsed (failed: {FAILURE_WORDS}; definition in the "
                                "footer); –: no seed trained.", "intro"))  # fmt: skip
        for i, m in enumerate(maps):
            add(f"regime_map{i or ''}", "Regime map" + (f" ({values_label(m.fixed)})" if m.fixed else ""), "",
                fig_regime(m))
        _most_different(sweep_dir, maps[0], blocks, figures)
    blocks.append(Heading("Grid points", 2))
    blocks.append(Paragraph("Mean ± standard deviation over seeds of each grid point's finished runs."
                            + (f" {split}" if split else ""), "intro"))
    blocks.append(cell_table(grid, cells))
    case, case_figures, case_numbers = case_blocks(all_runs)  # ResNet/DenseNet runs: the Fig. 7 section
    blocks += case
    figures += case_figures
    for param in grid:
        if len(grid[param]) < 2 or param == "algo":
            continue
        blocks.append(Heading(f"Against {param}", 2, anchor=f"param-{param}"))
        add(f"gap_{param}", f"Generalization gap against {param}",
            "True gap L_test − L_train, the activity-weight estimate and its sharp and flat parts (mean ± std over "
            "seeds); one panel per value of the other grid parameters.", fig_gap(param, grid, cells))
        add(f"spectra_{param}", f"Spectra per {param}",
            "σ_g,k (how much the per-sample gradients vary along Hessian direction k: sharpness as the data sees "
            "it) and the cumulative σ_w,k (the dual weights' spread: size) per value.", fig_spectra(param, grid, cells))
        add(f"trends_{param}", f"Test error and size against {param}",
            "Test error of the averaged model and the size Σ_k σ_w,k, per combination of the other grid "
            "parameters (algorithm included).", fig_trends(param, grid, cells))
    numbers = {
        "title": title, "generated": stamp, "grid": grid, "findings": lines, **nums, "checks": checks,
        "split": split, "case_study": case_numbers,
        "cells": [{"values": c.values, "runs": [str(r.path) for r in c.runs], "planned": c.planned,
                   "diverged": c.diverged, "collapsed": c.collapsed,
                   "numbers": {k: c.stat(k) for k, _, _ in CELL_COLUMNS}} for c in cells],
        "regime_maps": [{"fixed": m.fixed, "lr": m.lrs, "total_batch": m.batches, "rows": m.rows,
                         "baseline": m.baseline, "failed": {a: m.failed[a].tolist() for a in m.failed},
                         "trained": {a: m.trained[a].tolist() for a in m.trained},
                         "test_error": {a: m.error[a].tolist() for a in m.error},
                         "diverged": {a: m.diverged[a].tolist() for a in m.diverged},
                         "collapsed": {a: m.collapsed[a].tolist() for a in m.collapsed},
                         "most_different": m.most_different()} for m in maps],
    }  # fmt: skip
    files = write_report(out, title, subtitle, blocks, figures, numbers, FOOTER)
    return files.html


def _most_different(sweep_dir: Path, m: RegimeMap, blocks: list[Block], figures: list) -> None:
    """The comparison report's duality and noise figures at the cell where an algorithm and the baseline differ
    most among the cells where both trained (their runs that trained only)."""
    found = m.most_different()
    if found is None:
        blocks.append(Paragraph("No cell where the baseline and another algorithm both trained: no "
                                "\"where they differ most\".", "intro"))
        return
    algo, i, j = found
    pair = [m.cells[a][i][j] for a in (m.baseline, algo)]
    own = [r for c in pair for r in c.trained_runs]
    runs = [with_measurement_run(sweep_dir, r) for r in own]
    groups = make_groups(runs)
    blocks.append(Heading(f"Where they differ most: {m.row_label(i)}, lr={value_text(m.lrs[j])}", 2, anchor="most"))
    e = [c.trained_stat("test_err") for c in pair]
    base, other = label_of(m.baseline), label_of(algo)
    n_meas = [sum(x.get("step", 0) > 0 for x in r.noise) for r in runs]
    noise = f"; noise measured {min(n_meas)}–{max(n_meas)} times per run after step 0" if any(n_meas) else ""
    if any(r.noise is not o.noise for r, o in zip(runs, own)):
        noise += (" (dedicated measurement runs: the same runs trained again with the noise measured more often; "
                  "their final evaluations equal the sweep's, the meter never changes training)")
    blocks.append(Paragraph(f"{base} {format_stat(e[0], 'err')} vs {other} {format_stat(e[1], 'err')} test error "
                            "(seeds that trained). The duality comparison and the noise measurements of the two (as "
                            f"in `ddl compare`){noise}.", "intro"))  # fmt: skip
    for line in noise_direction_lines(groups):
        blocks.append(Paragraph(line, "intro"))
    for spec in FIGURES:
        if spec.name == "curves" or spec.name == "final":
            continue
        fig = spec.draw(groups)
        if fig is None:
            continue
        png = png_bytes(fig)
        name = f"most_different_{spec.name}"
        figures.append((name, png))
        blocks.extend([Heading(spec.title, 3), Paragraph(spec.intro, "intro"), Image(name, spec.title, png)])
