"""``results.csv``: one row per planned run, read from its run directory with the reports' numbers."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from analysis.io import atomic_write
from ddl.loop.progress import fmt_duration
from ddl.report.runs import read_run
from ddl.report.stats import run_numbers
from ddl.sweep.grid import fmt_value
from ddl.sweep.plan import RunPlan

RESULT_COLUMNS = ("seed", "status", "steps", "epochs", "train_loss", "test_loss", "test_error", "eval_gap", "layer",
                  "true_gap", "aw_gap", "sharp_gap", "flat_gap", "n_sharp", "size", "size_curved", "size_null",
                  "sigma_g_top10", "layer_lambda_max", "wall_s")  # fmt: skip


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def result_row(plan: RunPlan) -> dict[str, Any]:
    """One ``results.csv`` row from the run directory (grid values, then RESULT_COLUMNS).

    The numbers are the reports' (:func:`ddl.report.stats.run_numbers`); each column means one thing and is
    empty where that thing was not measured (never filled with another quantity):

    * ``eval_gap``: the final evaluation's test − train loss (the evaluation subsets, labels as trained);
    * ``layer``, ``true_gap`` …: the duality analysis of ``layer`` — ``true_gap`` its L_test − L_train (the clean
      training set, the analysis test set), ``size`` = Σ_k σ_w,k, split into ``size_curved`` (λ > 0) and
      ``size_null`` (λ ≈ 0: |λ| ≤ ``analysis.result.NULL_EIGENVALUE_RTOL`` × λ_max, whose σ_w depend on the
      eigensolver's basis), ``sigma_g_top10`` the mean σ_g over the 10 directions of largest eigenvalue,
      ``layer_lambda_max`` the analysed layer's largest Hessian eigenvalue (not the whole model's sharpness of
      ``noise.jsonl``);
    * ``wall_s``: training plus analysis.  ``status``: the training status
    (converged, max_epochs, diverged), ``failed`` (training raised), ``analysis_failed``, or ``pending`` (not
    run yet, or interrupted).
    """
    row: dict[str, Any] = {k: fmt_value(v) for k, v in plan.values.items()}
    row.update({c: None for c in RESULT_COLUMNS})
    row["seed"] = plan.seed
    p = plan.path
    if not (p / "summary.json").is_file():
        row["status"] = "failed" if (p / "error.txt").is_file() else "pending"
        return row
    run = read_run(p)
    n = run_numbers(run)
    row.update(status=run.status, steps=int(n["steps"]), epochs=n["epochs"], train_loss=n["train_loss"],
               test_loss=n["test_loss"], test_error=n["test_err"], eval_gap=n["loss_gap"])
    wall = n["wall_time_s"]
    if run.duality is not None:
        d = run.duality
        row.update(layer=d.layer, true_gap=n["true_gap"], aw_gap=n["pairwise_gap"], sharp_gap=n["sharp_gap"],
                   flat_gap=n["flat_gap"], n_sharp=int(d.n_sharp), size=n["sigma_w_sum"],
                   size_curved=n["size_curved"], size_null=n["size_null"], sigma_g_top10=n["sigma_g_top"],
                   layer_lambda_max=n["lambda_max"])
        wall += sum(_num(d.timings.get(k)) for k in ("total", "load", "figures") if k in d.timings)
    elif (p / "analysis-error.txt").is_file():
        row["status"] = "analysis_failed"
    row["wall_s"] = wall if math.isfinite(wall) else None
    return row


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def write_results(out: Path, plans: list[RunPlan], grid_keys: list[str]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = list(grid_keys) + list(RESULT_COLUMNS)
    w.writerow(cols)
    for plan in plans:
        row = result_row(plan)
        w.writerow([_csv_cell(row.get(c)) for c in cols])
    path = out / "results.csv"
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))
    return path


def run_line(plan: RunPlan, outcome: dict, done: int, total: int, eta: float) -> str:
    """The progress line of a finished run: its status and main numbers, and the sweep's ETA."""
    row = result_row(plan)
    parts = [f"[{done}/{total}] {plan.name}: {row['status']}"]
    if not outcome["ok"]:
        parts[0] = f"[{done}/{total}] {plan.name}: FAILED ({outcome['error']})"
    if row["steps"] is not None:
        parts.append(f"{row['steps']} steps")
    if row["test_error"] is not None:
        parts.append(f"test error {_num(row['test_error']):.4f}")
    if row["aw_gap"] is not None:
        parts.append(f"true gap {_num(row['true_gap']):.4g} (A-W {_num(row['aw_gap']):.4g})")
    if row["wall_s"] is not None:
        parts.append(f"{row['wall_s']:.1f} s")
    return ", ".join(parts) + (f"; ETA {fmt_duration(eta)}" if done < total else "")
