"""Model zoo: the paper's MLP and LeNet-style CNN, ResNet-18 / DenseNet-121 with CIFAR stems."""

from ddl.models.factory import MODELS, ModelError, build_model, last_linear_name

__all__ = ["MODELS", "ModelError", "build_model", "last_linear_name"]
