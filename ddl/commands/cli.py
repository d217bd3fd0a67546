"""The ``ddl`` command: ``train``, ``analyze``, ``compare``, ``sweep``, ``clock``, ``demo``, ``data``.

Training flags are generated from :class:`ddl.config.TrainConfig` and analysis flags from
:class:`analysis.decompose.DecomposeOptions` (:mod:`ddl.commands.flags`), so the CLI, config files and the Python
API accept the same names.  Bad input (:class:`ddl.errors.DDLError`, :class:`analysis.AnalysisError`) ends with one line
``ddl: error: --flag: …`` and exit status 2; any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from analysis.errors import AnalysisError
from ddl.commands.flags import add_dataclass_flags, given
from ddl.config import TrainConfig, read_config_file
from ddl.errors import DDLError


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < ``--config`` file < explicit flags; with ``--resume``, the run's saved configuration < the
    ``--config`` file and flags, which may then change only stopping and execution settings."""
    values: dict = {}
    if getattr(args, "config", None):
        values.update({str(k).replace("-", "_"): v for k, v in read_config_file(args.config).items()})
    values.update(given(args, (f.name for f in dataclasses.fields(TrainConfig))))
    if values.get("resume"):
        from ddl.rundir.layout import resume_config

        return resume_config(values)
    return TrainConfig.from_dict(values).validate()


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line ``ddl: error: …`` (exit 2), like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"ddl: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ddl",
        description="Simulate and run multi-learner training (SSGD vs DPSGD) and explain generalization with "
        "the activity-weight duality.",
        epilog="examples:\n"
        "  ddl train --algo dpsgd --learners 16 --batch-size 25 --lr 0.5 --epochs 50 --out runs/dp\n"
        "  torchrun --nproc-per-node 2 -m ddl train --backend torchrun --algo ssgd --learners 16\n"
        "  ddl analyze runs/dp --layer fc2\n"
        "  ddl compare runs/ssgd runs/dp --out runs/report\n"
        "  ddl sweep --learners 16 --grid algo=ssgd,dpsgd --grid lr=0.1,0.5 --seeds 0 1 --out runs/sweep\n"
        "  ddl clock --model resnet18 --learners 16 --out runs/clock\n"
        "  ddl demo --out runs/demo\n"
        "  ddl data pack --dataset fashion-mnist --to data/fashion-mnist",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{train,analyze,compare,sweep,clock,demo,data}", parser_class=_Parser)
    tr = sub.add_parser("train", help="train n learners with SSGD or DPSGD and write a run directory")
    tr.add_argument("--config", help="JSON/YAML/TOML file of flag values (flags given here override it)")
    add_dataclass_flags(tr, TrainConfig)
    tr.set_defaults(func=_cmd_train)

    from ddl.commands.analyze import add_analyze_arguments, run_analyze
    from ddl.report.compare import add_compare_arguments, run_compare

    an = sub.add_parser("analyze", help="activity-weight duality decomposition of a run's averaged model")
    add_analyze_arguments(an)
    an.set_defaults(func=run_analyze)

    cmp_ = sub.add_parser("compare", help="SSGD-vs-DPSGD report (HTML, Markdown, PNG) over several runs")
    add_compare_arguments(cmp_)
    cmp_.set_defaults(func=run_compare)

    from ddl.sweep.command import add_sweep_arguments, run_sweep_command
    from ddl.sweep.plan import SWEEP_OWNED

    sw = sub.add_parser("sweep", help="a grid of runs (grid values × seeds) in parallel, analysed, with a report",
                        description="Run the product of --grid values × --seeds (any train flag sets the base of "
                        "every run), skip runs already done, write DIR/results.csv and DIR/report.")
    add_dataclass_flags(sw, TrainConfig, include=lambda f: f.name not in SWEEP_OWNED)
    add_sweep_arguments(sw, {f.name for f in dataclasses.fields(TrainConfig)})
    sw.set_defaults(func=run_sweep_command)

    from ddl.commands.clock import add_clock_arguments, run_clock

    clk = sub.add_parser("clock", help="simulated wall clock: DPSGD's speed-up over SSGD against latency, "
                         "stragglers and n (no training)")
    add_clock_arguments(clk)
    clk.set_defaults(func=run_clock)

    demo = sub.add_parser("demo", help="where does DPSGD beat SSGD? a small regime map (n=16, MNIST-5k): sweep, "
                          "analysis, report")
    demo.add_argument("--out", default="runs/demo", help="directory for the runs and the report (runs already "
                      "done there are kept)")
    demo.add_argument("--epochs", type=int, default=None, help="override the demo's epoch budget (300)")
    demo.add_argument("--seeds", type=int, nargs="*", default=None, help="seeds to run (default: 0 1)")
    demo.add_argument("--jobs", type=int, default=None, help="runs at a time (default: one per core)")
    demo.set_defaults(func=_cmd_demo)

    from ddl.data.pack import add_data_arguments

    add_data_arguments(sub.add_parser("data", help="data set files: pack them into a folder that travels with the "
                                      "checkout (for a machine without network)"))
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if cfg.backend == "sim":
        from ddl.loop.train import train

        res = train(cfg)
    else:
        from ddl.drivers import train_distributed

        res = train_distributed(cfg)
    if res is not None and res.out is not None:
        f = res.final
        msg = f"{res.status} after {res.steps} steps"
        if res.diverged_step is not None:
            msg = f"diverged at step {res.diverged_step}"
            if res.diverged_learner is not None:
                msg += f" (learner {res.diverged_learner}, minibatch loss {res.diverged_loss})"
        if f:
            msg += f": train loss {f['train_loss']:.4g}, test acc {f['test_acc']:.4f}"
        print(f"{msg}; run directory {res.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ddl.commands.demo import run_demo

    run_demo(args.out, epochs=args.epochs, seeds=args.seeds, jobs=args.jobs)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DDLError, AnalysisError) as e:  # bad input: one line; anything else is a bug and keeps its traceback
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        parser.exit(2, f"ddl: error: {msg}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
