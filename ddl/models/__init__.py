"""Model zoo: the paper's MLP and LeNet-style CNN, ResNet-18 / DenseNet-121 with CIFAR stems."""

from ddl.models.cifar import PAPER_WIDTHS
from ddl.models.factory import (
    MODELS,
    ModelError,
    analysis_layer_name,
    build_model,
    final_layer_name,
    last_linear_name,
)

__all__ = ["MODELS", "PAPER_WIDTHS", "ModelError", "analysis_layer_name", "build_model", "final_layer_name",
           "last_linear_name"]
