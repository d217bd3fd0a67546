"""Analysis of a ``ddl`` run directory: the entry point behind ``ddl analyze``."""

from __future__ import annotations

from pathlib import Path

from analysis.decompose import STAGES, decompose
from analysis.errors import AnalysisError
from analysis.figures import save_figures
from analysis.progress import Stages
from analysis.result import DualityResult


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
    from ddl.rundir import load_run

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
