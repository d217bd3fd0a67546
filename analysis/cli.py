"""Command-line glue for ``ddl analyze RUN_DIR``: hook these into an argparse subcommand.

Only argparse is imported here so that the trainer's CLI can import this module cheaply; errors are raised
as ``ValueError`` subclasses with one line naming the flag, for the caller to print.
"""

from __future__ import annotations

import argparse


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
    from analysis.run import analyze_run

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
