"""``ddl analyze RUN_DIR``: the duality decomposition (the :mod:`analysis` library) of a run's averaged model."""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.decompose import STAGES, decompose
from analysis.errors import AnalysisError
from analysis.figures import save_figures
from analysis.progress import Stages
from analysis.result import DualityResult
from ddl.rundir import load_run


def analyze_run(
    run_dir: str | Path,
    layer: str | None = None,
    test_samples: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    verbose: bool | None = None,
    **options,
) -> DualityResult:
    """Decompose the averaged model of a run and write ``duality.npz``, ``duality.json`` and the PNG figures
    to ``out`` (default ``RUN_DIR/analysis``).

    The training set is the run's correctly labelled training samples; the test set its test split, or the
    first ``test_samples`` of it (all of it if there are fewer).  ``options`` go to :func:`decompose`.  With
    ``progress`` a progress bar runs over the stages (stderr); with ``verbose`` (default: ``progress``) the
    summary and the files written are printed.
    """
    if test_samples is not None and test_samples < 1:
        raise AnalysisError(f"--test-samples: must be ≥ 1, got {test_samples}")
    stages = Stages(len(STAGES) + 3, progress, desc="ddl analyze")
    try:
        with stages.stage("load"):
            run = load_run(run_dir)
            model = run.model()
            data = run.dataset()
            x_tr, y_tr = data.clean_train()
            x_te, y_te = data.x_test, data.y_test
            if test_samples is not None:
                x_te, y_te = x_te[:test_samples], y_te[:test_samples]
        res = decompose(model, layer, train=(x_tr, y_tr), test=(x_te, y_te), progress=stages, **options)
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
        res.timings.update({s: stages.timings[s] for s in ("load", "figures")})
        with stages.stage("save"):
            npz, js = res.save(out_dir)
    finally:
        stages.close()
    if progress if verbose is None else verbose:
        print(res.summary())
        print(f"wrote {js}, {npz.name} and {len(figures)} figures to {out_dir}")
    return res


def add_analyze_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``RUN_DIR`` and the analysis flags to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `ddl train`")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="qualified name of the nn.Linear to analyse (default: the last one; the paper's MNIST "
                             "layer is fc2)")  # fmt: skip
    parser.add_argument("--test-samples", type=int, default=None, metavar="N",
                        help="analyse the first N test samples (default: all)")  # fmt: skip
    parser.add_argument("--out", default=None, metavar="DIR", help="output directory (default: RUN_DIR/analysis)")
    g = parser.add_argument_group("decomposition options")
    g.add_argument("--k", type=int, default=1, help="training partners per test sample (default: 1)")
    g.add_argument("--pair-space", default="input", choices=("input", "layer"),
                   help="where nearest partners are searched: model inputs or the layer's inputs (default: input)")
    g.add_argument("--hessian", default="auto", choices=("auto", "kron", "ggn", "autograd"),
                   help="Hessian source (default: auto = kron for a final layer, ggn if piecewise linear above, "
                        "else autograd)")  # fmt: skip
    g.add_argument("--eigensolver", default="auto", choices=("auto", "dense", "lanczos"),
                   help="full eigendecomposition or top-k Lanczos (default: auto by size)")
    g.add_argument("--top-k", type=int, default=None, help="directions for Lanczos (default: 100)")
    g.add_argument("--split", default="steepest", choices=("steepest", "count", "fraction"),
                   help="sharp/flat rule (default: steepest drop)")
    g.add_argument("--split-value", type=float, default=None,
                   help="steepest: search window fraction (0.5); count: n_sharp (10); fraction: mass (0.9)")
    g.add_argument("--split-by", default="sigma_g", choices=("sigma_g", "eigenvalue"),
                   help="spectrum the split rule reads (default: sigma_g)")
    g.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                   help="compute dtype from the layer upward (default: float64)")
    g.add_argument("--no-bias-in-hessian", dest="include_bias", action="store_false",
                   help="leave the layer's bias out of the Hessian (default: include it after the weights)")
    g.add_argument("--batch-size", type=int, default=1024, help="samples per forward pass (default: 1024)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar over the stages (default: on)")
    return parser


def run_analyze(args: argparse.Namespace) -> int:
    """Run the analysis for parsed ``args``; returns the exit status (errors propagate as ValueError)."""
    split_value = args.split_value
    if split_value is not None and args.split == "count":
        split_value = int(split_value) if float(split_value).is_integer() else split_value
    analyze_run(
        args.run_dir, layer=args.layer, test_samples=args.test_samples, out=args.out, progress=args.progress,
        verbose=True,
        k=args.k, pair_space=args.pair_space, hessian=args.hessian, eigensolver=args.eigensolver,
        top_k=args.top_k, split=args.split, split_value=split_value, split_by=args.split_by, dtype=args.dtype,
        include_bias=args.include_bias, batch_size=args.batch_size,
    )  # fmt: skip
    return 0
