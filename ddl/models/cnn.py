"""LeNet-style CNN: two conv layers and a 400-120-25-10 fully connected head."""

from __future__ import annotations

from torch import nn


class LeNet(nn.Module):
    """conv(6, 5×5) → pool → conv(16, 5×5) → pool → 400 → 120 → 25 → classes (ReLU).

    28×28 inputs are padded by 2 in the first convolution so that MNIST and CIFAR both give 16×5×5 = 400
    features.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int = 10, bias: bool = True):
        super().__init__()
        c, h, _ = input_shape
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2 if h == 28 else 0, bias=bias)
        self.conv2 = nn.Conv2d(6, 16, 5, bias=bias)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(400, 120, bias=bias)
        self.fc2 = nn.Linear(120, 25, bias=bias)
        self.fc3 = nn.Linear(25, num_classes, bias=bias)

    def chain(self) -> list[nn.Module]:
        """The layers in forward order (the forward pass is exactly this chain; :mod:`ddl.compute.fastcnn` relies on
        it)."""
        return [self.conv1, self.act, self.pool, self.conv2, self.act, self.pool, self.flatten,
                self.fc1, self.act, self.fc2, self.act, self.fc3]

    def forward(self, x):
        for layer in self.chain():
            x = layer(x)
        return x
