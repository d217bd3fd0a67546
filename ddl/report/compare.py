"""``ddl compare RUN_A RUN_B [...] --out DIR``: the SSGD-vs-DPSGD comparison report of any number of runs.

Hook into the CLI with::

    cmp = sub.add_parser("compare", help="compare runs (SSGD vs DPSGD) in an HTML/Markdown report")
    add_compare_arguments(cmp)
    cmp.set_defaults(func=run_compare)

Only argparse is imported at module level, so the CLI stays cheap to import; bad input raises ``ValueError``
(``RunDirError``) with one line naming the argument, for the caller to print.  A directory that is not a run
but holds runs one level down (e.g. the output of a sweep) stands for those runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = "runs/compare"


def compare_runs(run_dirs: list, out: str | Path, title: str | None = None) -> Path:
    """Write the comparison report of ``run_dirs`` to ``out`` and return the HTML file's path.

    Runs equal in configuration apart from the seed are aggregated (mean ± std over seeds).  Runs without a
    duality analysis (``ddl analyze RUN``) or noise measurements (``ddl train --measure-noise K``) contribute
    what they have; the report lists what is missing.  See :mod:`ddl.report.comparison` for the files written.
    """
    from ddl.report.comparison import build_report

    return build_report(list(run_dirs), out, title).html


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``RUN [RUN ...]``, ``--out`` and ``--title`` to ``parser``."""
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run directories written by `ddl train`, or directories holding runs (a "
                             "sweep's output); several seeds of one configuration are aggregated; analyse them "
                             "first with `ddl analyze RUN` for the duality figures")  # fmt: skip
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help="directory for report.html, report.md, the PNGs and numbers.json "
                             f"(default: {DEFAULT_OUT})")  # fmt: skip
    parser.add_argument("--title", default=None, help="report title (default: 'SSGD vs DPSGD' or the algorithms)")
    return parser


def run_compare(args: argparse.Namespace) -> int:
    """Build the report for parsed ``args``, print where it is and return 0."""
    from ddl.report.comparison import build_report

    rep = build_report(list(args.runs), args.out, args.title)
    n_runs = sum(len(g.runs) for g in rep.groups)
    print(f"compared {n_runs} run{'s' if n_runs != 1 else ''} in {len(rep.groups)} "
          f"configuration{'s' if len(rep.groups) != 1 else ''}; report {rep.html}")  # fmt: skip
    return 0

