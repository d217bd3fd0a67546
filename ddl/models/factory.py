"""Build a model by name, with the init options the paper sweeps (PyTorch default or Xavier, times s)."""

from __future__ import annotations

import torch
from torch import nn

from ddl.errors import ConfigError
from ddl.models.cifar import PAPER_WIDTHS, densenet121, resnet18
from ddl.models.cnn import LeNet
from ddl.models.mlp import MLP

MODELS = ("mlp", "cnn", "resnet18", "densenet121")
INITS = ("default", "xavier")


class ModelError(ConfigError):
    """Bad model request: one line naming the flag and what it accepts."""


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int = 10,
    *,
    hidden: tuple[int, ...] = (30, 30),
    bias: bool = False,
    dropout: float = 0.0,
    init: str = "default",
    init_scale: float = 1.0,
    seed: int | None = None,
    width: int | None = None,
) -> nn.Module:
    """A freshly initialised model; with ``seed`` the initial weights depend on it alone.

    ``bias`` and ``dropout`` apply to the MLP (the paper's default is no bias, no dropout); the CNN always has
    biases, the torchvision models keep theirs.  ``init='xavier'`` re-initialises every conv/linear weight
    Xavier-uniform (biases zero); any init is then multiplied by ``init_scale`` (the paper's ``s``).
    ``width`` is ResNet-18's base channel count / DenseNet-121's growth rate (default: the paper's, 64 / 32);
    the other models have none.
    """
    if name not in MODELS:
        raise ModelError(f"--model: unknown model {name!r}; accepted: {', '.join(MODELS)}")
    if init not in INITS:
        raise ModelError(f"--init: unknown init {init!r}; accepted: {', '.join(INITS)}")
    check_width(name, width)
    if seed is not None:
        torch.manual_seed(seed)
    if name == "mlp":
        model = MLP(input_shape, num_classes, tuple(hidden), bias=bias, dropout=dropout)
    elif name == "cnn":
        model = LeNet(input_shape, num_classes)
    elif name == "resnet18":
        model = resnet18(input_shape, num_classes, width or PAPER_WIDTHS[name])
    else:
        model = densenet121(input_shape, num_classes, width or PAPER_WIDTHS[name])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                if init == "xavier":
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        m.bias.zero_()
                if init_scale != 1.0:
                    m.weight.mul_(init_scale)
                    if m.bias is not None:
                        m.bias.mul_(init_scale)
    return model


def check_width(model: str, width: int | None) -> None:
    """A one-line error unless ``width`` is None or a positive width of a model that has one."""
    if width is None:
        return
    if model not in PAPER_WIDTHS:
        raise ModelError(f"--width: only {' and '.join(PAPER_WIDTHS)} have a width (got --model {model})")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ModelError(f"--width: must be a positive integer, got {width!r}")


def final_layer_name(model: nn.Module) -> str:
    """The model's final fully connected layer: the name it declares in ``final_layer_name`` (ResNet-18 ``fc``,
    DenseNet-121 ``classifier``), else the last ``nn.Linear`` in module order (the MLP's and the CNN's last
    layer)."""
    return _declared_linear(model, "final_layer_name", "final layer", last_linear_name)


def analysis_layer_name(model: nn.Module) -> str:
    """The layer ``ddl analyze`` and ``ddl sweep`` decompose when no ``--layer`` is given (one default for both,
    recorded as ``layer`` in every result): the one the model names in ``analysis_layer`` (the MLP: the paper's
    middle layer), else its final fully connected layer (:func:`final_layer_name`)."""
    return _declared_linear(model, "analysis_layer", "analysis layer", final_layer_name)


def _declared_linear(model: nn.Module, attr: str, what: str, fallback) -> str:
    """The ``nn.Linear`` the model names in ``attr`` (a :class:`ModelError` if it is not one), else ``fallback``."""
    name = getattr(model, attr, None)
    if name is None:
        return fallback(model)
    if not isinstance(model.get_submodule(name), nn.Linear):
        raise ModelError(f"model declares {what} {name!r}, which is not an nn.Linear")
    return name


def last_linear_name(model: nn.Module) -> str:
    """Qualified name of the last ``nn.Linear`` in module order (the default analysed layer)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ModelError("model has no nn.Linear layer to analyse")
    return names[-1]
