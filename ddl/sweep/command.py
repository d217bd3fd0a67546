"""``ddl sweep``: its flags (the sweep's own, the train flags that set the base of every run, and the ``ddl
analyze`` options) and the command: spec file < flags."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from analysis.decompose import DecomposeOptions
from ddl.algorithms import ALGORITHMS, BASELINE
from ddl.commands.analyze import TARGET_DEFAULTS, add_target_arguments, cli_option
from ddl.commands.flags import add_dataclass_flags
from ddl.config import TrainConfig
from ddl.errors import ConfigError
from ddl.sweep.grid import parse_grid_item, unique_values
from ddl.sweep.plan import EXECUTION_KEYS, SWEEP_OWNED, SweepSpec, load_spec
from ddl.sweep.run import EXECUTORS, run_sweep

#: the prefix of an analysis option whose name a train flag has already (``--analysis-dtype``)
ANALYSIS_PREFIX = "analysis"
#: the dests of the sweep's own flags (added below)
SWEEP_DESTS = ("spec", "out", "grid", "seeds", "jobs", "threads", "executor", "address", "cpus_per_run",
               "gpus_per_run", "analyze", "report", "title")


def analysis_dests(train_flags: set[str]) -> dict[str, str]:
    """Each decomposition option's dest: its name, or ``analysis_<name>`` where a train flag or one of the
    sweep's own flags has that name already."""
    taken = set(train_flags) | set(SWEEP_DESTS) | set(TARGET_DEFAULTS)
    return {f.name: f"{ANALYSIS_PREFIX}_{f.name}" if f.name in taken else f.name
            for f in dataclasses.fields(DecomposeOptions) if cli_option(f)}


def add_sweep_arguments(parser: argparse.ArgumentParser, train_flags: set[str]) -> argparse.ArgumentParser:
    """The sweep's own flags and the `ddl analyze` options (``train_flags``: dests already taken by train flags;
    a clashing analyze option gets an ``--analysis-`` prefix)."""
    parser.add_argument("spec", nargs="?", metavar="SPEC", help="spec file (YAML/JSON/TOML): base, grid, seeds, "
                        "analysis, jobs, executor; flags given here override it")
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory (its runs, results.csv, report/)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a train flag (underscore name) and its values; repeat for a product; list flags take "
                             "':'-separated elements (hidden=30:30,100:100)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S", help="seeds (default: 0)")
    parser.add_argument("--jobs", type=int, default=None, metavar="K",
                        help="local executor: runs at a time (default: one per core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: cores // jobs, at least 1)")
    parser.add_argument("--executor", choices=EXECUTORS, default=None, help="local processes or Ray tasks "
                        "(default: local)")
    parser.add_argument("--address", default=None, metavar="ADDR",
                        help="ray: HOST:PORT, ray://HOST:PORT or auto of an existing cluster (default: a local one)")
    parser.add_argument("--cpus-per-run", type=float, default=None, help="ray: CPUs per run (default: --threads)")
    parser.add_argument("--gpus-per-run", type=float, default=None, help="ray: GPUs per run (default: 0)")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=None,
                        help="analyse every run (`ddl analyze`; default: on)")
    parser.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                        help="write DIR/report (default: on)")
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--baseline", default=None, choices=tuple(ALGORITHMS), metavar="ALGO",
                        help="the algorithm the report's regime map compares the others with (default: the one that "
                             f"declares itself the baseline, {BASELINE})")
    g = parser.add_argument_group("analysis options (as for `ddl analyze`)")
    add_target_arguments(g, default=argparse.SUPPRESS)
    dests = add_dataclass_flags(g, DecomposeOptions, include=cli_option, taken=set(train_flags) | set(SWEEP_DESTS),
                                prefix=ANALYSIS_PREFIX)
    assert dests == analysis_dests(train_flags)
    return parser


def analysis_given(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ddl analyze`` options given as flags, by option name (``--analysis-dtype`` → ``dtype``)."""
    ns = vars(args)
    out = {k: ns[k] for k in TARGET_DEFAULTS if k in ns}
    out.update({name: ns[dest] for name, dest in analysis_dests(_train_names()).items() if dest in ns})
    return out


def _train_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def run_sweep_command(args: argparse.Namespace) -> int:
    """``ddl sweep``: spec file < flags."""
    spec, execution = (load_spec(args.spec) if args.spec else (SweepSpec(), {}))
    names = _train_names()
    spec.base.update({k: v for k, v in vars(args).items() if k in names and k not in SWEEP_OWNED})
    for item in args.grid:
        k, vs = parse_grid_item(item)
        spec.grid[k] = vs
    if args.seeds is not None:
        spec.seeds = unique_values("seeds", list(args.seeds))
    if args.analyze is not None:
        spec.analyze = args.analyze
    if args.title is not None:
        spec.title = args.title
    spec.analysis.update(analysis_given(args))
    execution.update({k: getattr(args, k) for k in EXECUTION_KEYS if getattr(args, k) is not None})
    if not spec.grid and len(spec.seeds) < 2 and not args.spec:
        raise ConfigError("--grid: nothing to sweep (give --grid KEY=V1,V2 or several --seeds)")
    res = run_sweep(spec, args.out, jobs=execution.get("jobs"), executor=execution.get("executor", "local"),
                    address=args.address, threads=execution.get("threads"),
                    cpus_per_run=execution.get("cpus_per_run"), gpus_per_run=execution.get("gpus_per_run") or 0.0,
                    report=args.report, baseline=args.baseline)  # fmt: skip
    print(f"{len(res.plans)} runs ({res.ran} run now, {res.skipped} skipped, {len(res.failed)} failed); "
          f"results {res.results}" + (f"; report {res.report}" if res.report else ""))
    return 0
