"""The JSON record of one ``benchmarks/fig7_gpu.sh`` run: the machine, the sweep's settings, each run's status,
wall time and numbers (its ``results.csv`` row) and the case study's per-model numbers and verdict lines.

    python -m benchmarks.fig7_summary SWEEP_DIR --wall-s S --sweep-status RC --smoke 0|1 --out FILE.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from benchmarks.common import machine


def summary(sweep_dir: Path, wall_s: float, sweep_status: int, smoke: bool) -> dict:
    from ddl.report.deep_case import _numbers, _plain, model_cases
    from ddl.report.runs import read_runs

    spec = json.loads((sweep_dir / "sweep.json").read_text()) if (sweep_dir / "sweep.json").is_file() else {}
    rows = []
    if (sweep_dir / "results.csv").is_file():
        with open(sweep_dir / "results.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    cases = []
    try:
        cases = model_cases(read_runs([sweep_dir]))
    except (OSError, ValueError) as e:  # no run directory at all: the sweep failed before any run started
        print(f"fig7_summary: no runs to summarise ({e})")
    return _plain({
        "benchmark": "fig7_gpu", "smoke": smoke, "machine": machine(), "wall_s": wall_s,
        "sweep_status": sweep_status, "sweep_dir": str(sweep_dir), "spec": spec.get("spec", spec),
        "runs": rows, "case_study": {c.model: {**_numbers(c), "verdict": c.verdict()} for c in cases},
    })  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--wall-s", type=float, required=True)
    p.add_argument("--sweep-status", type=int, required=True)
    p.add_argument("--smoke", type=int, choices=(0, 1), default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    doc = summary(a.sweep_dir, a.wall_s, a.sweep_status, bool(a.smoke))
    a.out.write_text(json.dumps(doc, indent=2))
    print(f"fig7_summary: {a.out} ({len(doc['runs'])} runs, sweep status {a.sweep_status}, {a.wall_s:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
