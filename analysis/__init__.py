"""Activity-weight duality analysis: decompose a layer's generalization gap into Hessian directions.

``decompose(model, layer, train=(x, y), test=(x, y))`` works on any ``nn.Module`` and data tensors; this package
never imports the trainer.  (``ddl analyze RUN_DIR`` applies it to a training run.)  The mathematics is in the
project's ``docs/theory.md``.
"""

from analysis.decompose import decompose
from analysis.errors import AnalysisError
from analysis.result import DualityResult

__all__ = ["AnalysisError", "DualityResult", "decompose"]
