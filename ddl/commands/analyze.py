"""``ddl analyze RUN_DIR``: the duality decomposition (the :mod:`analysis` library) of a run's averaged model."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from analysis.checks import failed_checks
from analysis.decompose import STAGES, DecomposeOptions, decompose
from analysis.errors import AnalysisError
from analysis.figures import save_figures
from analysis.progress import Stages
from analysis.result import DualityResult
from ddl.commands.flags import add_dataclass_flags, given
from ddl.data import stratified_subset
from ddl.models import analysis_layer_name
from ddl.rundir.layout import load_run


def analysis_test_set(x: torch.Tensor, y: torch.Tensor, n: int | None,
                      stratify: str = "proportional") -> tuple[torch.Tensor, torch.Tensor]:
    """The test samples ``ddl analyze --test-samples N`` decomposes: a seeded, class-stratified sample of N
    (shared between classes as the run's ``--stratify`` says), the same for every run of a data set (so runs
    compare on the same samples); all of them for None."""
    pick = stratified_subset(y, n, 0, "analysis-test", stratify)
    return x[pick], y[pick]


def analyze_run(
    run_dir: str | Path,
    layer: str | None = None,
    test_samples: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    verbose: bool | None = None,
    options: DecomposeOptions | None = None,
    **overrides,
) -> DualityResult:
    """Decompose the averaged model of a run and write ``duality.npz``, ``duality.json`` and the PNG figures
    to ``out`` (default ``RUN_DIR/analysis``).

    The training set is the run's correctly labelled training samples; the test set its test split, or a
    seeded, class-stratified sample of ``test_samples`` of it (:func:`analysis_test_set`; all of it if there
    are fewer).  ``options`` (a :class:`DecomposeOptions`) and
    keyword ``overrides`` of its fields go to :func:`decompose`.  With ``progress`` a progress bar runs over the
    stages (stderr); with ``verbose`` (default: ``progress``) the summary and the files written are printed.
    """
    if test_samples is not None and test_samples < 1:
        raise AnalysisError(f"--test-samples: must be ≥ 1, got {test_samples}")
    stages = Stages(len(STAGES) + 3, progress, desc="ddl analyze")
    try:
        with stages.stage("load"):
            run = load_run(run_dir)
            data = run.dataset()
            model = run.model(num_classes=data.num_classes)
            x_tr, y_tr = data.clean_train()
            x_te, y_te = analysis_test_set(data.x_test, data.y_test, test_samples, run.config.stratify)
        if layer is None:
            layer = analysis_layer_name(model)
        res = decompose(model, layer, train=(x_tr, y_tr), test=(x_te, y_te), options=options, progress=stages,
                        **overrides)
        out_dir = Path(out) if out is not None else run.path / "analysis"
        with stages.stage("figures"):
            figures = save_figures(res, out_dir)
        c = run.config
        res.meta = {
            "run_dir": str(run.path),
            "config": {k: getattr(c, k) for k in ("model", "dataset", "algo", "learners", "batch_size", "lr",
                                                   "seed", "label_noise", "dtype") if hasattr(c, k)},
            "summary": {k: v for k, v in run.summary.items() if isinstance(v, (str, int, float, bool))},
            "figures": [p.name for p in figures],
        }  # fmt: skip
        failures = failed_checks(res)
        res.meta["failed_checks"] = [{"name": f.name, "value": f.value, "threshold": f.threshold} for f in failures]
        res.timings.update({s: stages.timings[s] for s in ("load", "figures")})
        with stages.stage("save"):
            npz, js = res.save(out_dir)
    finally:
        stages.close()
    if progress if verbose is None else verbose:
        print(res.summary())
        print(f"wrote {js}, {npz.name} and {len(figures)} figures to {out_dir}")
    for f in failures:  # always, also without --progress: a failed exactness check must not go unnoticed
        print(f"ddl analyze: warning: {res.layer}: {f.message()} (see docs/measurements.md)", file=sys.stderr)
    return res


#: what to analyse in a run (beside the :class:`DecomposeOptions`): option name → its default
TARGET_DEFAULTS = {"layer": None, "test_samples": None}


def add_target_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                         default=None) -> argparse.ArgumentParser | argparse._ArgumentGroup:
    """``--layer`` and ``--test-samples`` (``ddl analyze`` and ``ddl sweep``; ``default`` for both: None, or
    ``argparse.SUPPRESS`` to see only the flags given)."""
    parser.add_argument("--layer", default=default, metavar="NAME",
                        help="qualified name of the nn.Linear to analyse (default: the layer the model names: the "
                             "MLP's last hidden-to-hidden layer, fc2 of 784-30-30-10 as in the paper; else the final "
                             "layer: the CNN's last, fc of ResNet-18, classifier of DenseNet-121)")  # fmt: skip
    parser.add_argument("--test-samples", type=int, default=default, metavar="N",
                        help="analyse a seeded, class-stratified sample of N test samples (default: all)")
    return parser


def cli_option(f: dataclasses.Field) -> bool:
    """Whether a :class:`DecomposeOptions` field is a command-line option (the others are Python-API only)."""
    return f.metadata.get("cli", True)


def add_analyze_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``RUN_DIR``, what to analyse, and one flag per :class:`DecomposeOptions` field to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `ddl train`")
    add_target_arguments(parser)
    parser.add_argument("--out", default=None, metavar="DIR", help="output directory (default: RUN_DIR/analysis)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bar over the stages (default: on)")
    add_dataclass_flags(parser.add_argument_group("decomposition options"), DecomposeOptions, include=cli_option)
    return parser


def decompose_options(values: dict) -> DecomposeOptions:
    """:class:`DecomposeOptions` from option values by field name (a count split's whole-number value as an
    integer: it counts directions)."""
    values = dict(values)
    if values.get("split") in ("count", "top") and values.get("split_value") is not None:
        if float(values["split_value"]).is_integer():  # a direction count
            values["split_value"] = int(values["split_value"])
    return DecomposeOptions(**values)


def options_from_args(args: argparse.Namespace) -> DecomposeOptions:
    """The :class:`DecomposeOptions` of parsed flags (defaults for the flags not given)."""
    return decompose_options(given(args, (f.name for f in dataclasses.fields(DecomposeOptions))))


def run_analyze(args: argparse.Namespace) -> int:
    """Run the analysis for parsed ``args``; returns the exit status (bad input raises AnalysisError/DDLError)."""
    analyze_run(args.run_dir, layer=args.layer, test_samples=args.test_samples, out=args.out, progress=args.progress,
                verbose=True, options=options_from_args(args))
    return 0
