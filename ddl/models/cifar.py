"""torchvision ResNet-18 and DenseNet-121 with the CIFAR stem (3×3, 64-channel first conv, no max-pool)."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm


def resnet18(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """ResNet-18 whose final layer ``fc`` is 512 → ``num_classes``."""
    m = tvm.resnet18(weights=None, num_classes=num_classes)
    m.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


def densenet121(input_shape: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    """DenseNet-121 whose final layer ``classifier`` is 1024 → ``num_classes``."""
    m = tvm.densenet121(weights=None, num_classes=num_classes)
    m.features.conv0 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.features.pool0 = nn.Identity()
    return m
