"""Models shared by the recipes. Each factory takes (input_shape, num_classes).

Factories are frozen dataclasses, not closures, so a recipe pickles as it is and can go to a
worker process or a Ray worker; equal arguments give equal factories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


class MLP(nn.Sequential):
    """Fully connected ReLU network on flattened inputs, with optional dropout.

    `input_dropout` and `dropout` follow Hinton et al.'s MNIST teacher (dropout on
    the input and on every hidden layer).
    """

    def __init__(self, input_dim: int, hidden: tuple[int, ...], num_classes: int,
                 dropout: float = 0.0, input_dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


@dataclass(frozen=True)
class mlp:  # noqa: N801  (a factory, named like the function it replaces)
    """Factory for `MLP` with the given hidden widths."""

    hidden: tuple[int, ...]
    dropout: float = 0.0
    input_dropout: float = 0.0

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return MLP(math.prod(input_shape), tuple(self.hidden), num_classes, self.dropout, self.input_dropout)


class SmallCNN(nn.Module):
    """Two 5x5 conv + max-pool stages and two linear layers (the classic MNIST CNN:
    conv32-conv64-FC-FC, as in Adelman & Silberstein's MNIST CNN)."""

    def __init__(self, in_channels: int, side: int, num_classes: int, widths=(32, 64), hidden: int = 1024,
                 norm: bool = False) -> None:
        super().__init__()
        c1, c2 = widths
        norm_layer = nn.BatchNorm2d if norm else (lambda c: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), norm_layer(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), norm_layer(c2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class small_cnn:  # noqa: N801
    """Factory for `SmallCNN`: conv widths, hidden FC width, BatchNorm after each conv or not."""

    widths: tuple[int, int] = (32, 64)
    hidden: int = 1024
    norm: bool = False

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return SmallCNN(input_shape[0], input_shape[-1], num_classes, self.widths, self.hidden, self.norm)


class _Block(nn.Module):
    """Basic residual block (two 3x3 convs) with a 1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNetCifar(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2): three stages of n blocks, widths w, 2w, 4w."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"ResNet depth {depth} is not 6n+2")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            for j in range(n):
                blocks.append(_Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


@dataclass(frozen=True)
class resnet_cifar:  # noqa: N801
    """Factory for `ResNetCifar` of the given depth (6n+2) and first-stage width."""

    depth: int = 20
    width: int = 16

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return ResNetCifar(self.depth, num_classes, input_shape[0], self.width)


@dataclass(frozen=True)
class torchvision_model:  # noqa: N801
    """Factory for a torchvision ImageNet architecture by name (resnet50, alexnet, ...), imported when built."""

    arch: str

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, self.arch)(num_classes=num_classes)

