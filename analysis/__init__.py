"""Activity-weight duality analysis: decompose a layer's generalization gap into Hessian directions.

``decompose(model, layer, train=(x, y), test=(x, y))`` works on any ``nn.Module``; ``analyze_run(RUN_DIR)``
on a ``ddl`` run directory (what ``ddl analyze`` calls).  The mathematics is MATH.md §1-6.
"""

from analysis.decompose import decompose
from analysis.errors import AnalysisError
from analysis.result import DualityResult


def analyze_run(run_dir, layer=None, test_samples=None, out=None, progress=True, **options):
    """Decompose a ``ddl`` run directory's averaged model and write ``RUN_DIR/analysis`` (or ``out``); see
    :func:`analysis.run.analyze_run` (imported lazily: it needs the ``ddl`` package)."""
    from analysis.run import analyze_run as _analyze_run

    return _analyze_run(run_dir, layer=layer, test_samples=test_samples, out=out, progress=progress, **options)


__all__ = ["AnalysisError", "DualityResult", "analyze_run", "decompose"]
