"""ResNet-18 and DenseNet-121 with the CIFAR stem (3×3 first conv, stride 1, no max-pool), at any width.

``width`` scales the channels and nothing else: depth, blocks, BatchNorm layers, layer names and the final fully
connected layer stay the paper's.  ResNet-18: ``width`` is the base channel count (stages of w, 2w, 4w, 8w; the
paper's 64).  DenseNet-121: ``width`` is the growth rate k (stem of 2k channels, bottlenecks of 4k; the paper's 32).

Small grayscale images (MNIST, Fashion-MNIST: 1 × 28 × 28) are handled by the stem, not by padding: the first
convolution takes the data set's channel count, and with no stride and no max-pool in the stem a 28 × 28 image
reaches the last stage at 4 × 4 (ResNet) or 3 × 3 (DenseNet) before global average pooling.

Each model names its final layer in ``final_layer_name`` (``fc`` / ``classifier``): the layer ``ddl analyze``
decomposes by default.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock

RESNET18_WIDTH = 64  # the paper's (and torchvision's) base channels
DENSENET121_WIDTH = 32  # the paper's (and torchvision's) growth rate
PAPER_WIDTHS = {"resnet18": RESNET18_WIDTH, "densenet121": DENSENET121_WIDTH}


class ResNet18(nn.Module):
    """torchvision's ResNet-18 (same module names, blocks and init) with base channels ``width`` and the CIFAR stem.

    Modules are created and initialised in torchvision's order, so that with ``width=64`` a seed gives exactly the
    weights of ``torchvision.models.resnet18`` with its stem replaced by the 3×3 one.
    """

    final_layer_name = "fc"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10, width: int = RESNET18_WIDTH):
        super().__init__()
        self.width = width
        # torchvision's ImageNet stem first: its default init consumes the random stream as torchvision's does
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self._inplanes = width
        self.layer1 = self._make_layer(width, 1)
        self.layer2 = self._make_layer(2 * width, 2)
        self.layer3 = self._make_layer(4 * width, 2)
        self.layer4 = self._make_layer(8 * width, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # the CIFAR stem replaces it (PyTorch's default init, as when it is swapped into torchvision's model)
        self.conv1 = nn.Conv2d(input_shape[0], width, kernel_size=3, stride=1, padding=1, bias=False)

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        blocks = [BasicBlock(self._inplanes, planes, stride, downsample), BasicBlock(planes, planes)]
        self._inplanes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(input_shape: tuple[int, ...], num_classes: int = 10, width: int = RESNET18_WIDTH) -> nn.Module:
    """ResNet-18 whose final layer ``fc`` is 8·width → ``num_classes`` (512 at the paper's width 64)."""
    return ResNet18(input_shape, num_classes, width)


def densenet121(input_shape: tuple[int, ...], num_classes: int = 10, width: int = DENSENET121_WIDTH) -> nn.Module:
    """DenseNet-121 (blocks 6-12-24-16, bottleneck 4k, compression ½) with growth rate k = ``width`` and a 2k-channel
    stem; its final layer ``classifier`` is 32·width → ``num_classes`` (1024 at the paper's k = 32)."""
    m = tvm.DenseNet(growth_rate=width, block_config=(6, 12, 24, 16), num_init_features=2 * width, bn_size=4,
                     num_classes=num_classes)  # fmt: skip
    m.features.conv0 = nn.Conv2d(input_shape[0], 2 * width, kernel_size=3, stride=1, padding=1, bias=False)
    m.features.pool0 = nn.Identity()
    m.final_layer_name = "classifier"
    m.width = width
    return m
