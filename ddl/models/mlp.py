"""The paper's fully connected network: 784-H-…-H-10 with ReLU."""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn


class MLP(nn.Sequential):
    """``in_features → hidden[0] → … → hidden[-1] → num_classes`` with ReLU; dropout after hidden layer 1.

    Layers are named ``fc1 … fcK`` so the analysed layer can be given by name (``fc2`` is the paper's middle
    30×30 layer, ``fc3`` the output layer of the default 784-30-30-10).  ``analysis_layer`` (the default of
    ``ddl analyze`` and ``ddl sweep``): the last hidden-to-hidden layer ``fc{K-1}`` — the paper analyses the
    30×30 middle layer of 784-30-30-10, whose inputs and outputs are both learned features — or the only hidden
    layer's output layer when there is a single hidden layer.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int = 10,
        hidden: tuple[int, ...] = (30, 30),
        bias: bool = False,
        dropout: float = 0.0,
    ):
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        widths = [math.prod(input_shape), *hidden, num_classes]
        for i in range(len(widths) - 1):
            layers.append((f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1], bias=bias)))
            if i < len(widths) - 2:
                layers.append((f"relu{i + 1}", nn.ReLU()))
                if i == 0 and dropout > 0:
                    layers.append(("dropout1", nn.Dropout(dropout)))
        super().__init__(OrderedDict(layers))
        n_linear = len(widths) - 1
        self.analysis_layer = f"fc{n_linear - 1}" if n_linear >= 3 else f"fc{n_linear}"
