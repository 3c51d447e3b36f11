"""A small learnable dataset generated from a seed, for smoke tests (no files)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from harness.data.memory import ImageData, make_image_data
from harness.data.registry import DatasetSpec, register

__all__ = ["load_synthetic", "synthetic"]


def synthetic(n_train: int = 512, n_test: int = 256, shape: tuple[int, int, int] = (1, 28, 28),
              num_classes: int = 10, seed: int = 0) -> ImageData:
    """Each class is a random uint8 prototype image; samples add Gaussian noise (sd 40 of 255).

    Classes are far apart relative to the noise, so a few SGD steps visibly reduce the loss.
    """
    if min(n_train, n_test, num_classes - 1) < 1:
        raise ValueError(f"synthetic needs n_train, n_test >= 1 and num_classes >= 2, got "
                         f"{n_train}, {n_test}, {num_classes}")
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, 256, (num_classes, *shape), generator=g).float()

    def draw(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.randn((n, *shape), generator=g) * 40.0
        return (prototypes[y] + noise).round().clamp(0, 255).to(torch.uint8), y

    train, test = draw(n_train), draw(n_test)
    return make_image_data("synthetic", train, test, [f"class{i}" for i in range(num_classes)], {})


def load_synthetic(root: str | Path = "datasets", **kw: object) -> ImageData:
    """The registry's loader: `root` is unused (nothing is read), `kw` go to `synthetic`."""
    return synthetic(**kw)


register(DatasetSpec(
    name="synthetic", info="learnable random-prototype images generated from a seed, for smoke tests",
    input_shape=(1, 28, 28), num_classes=10, loader=load_synthetic, source="generation in memory from a seed"))
