"""Augmentation of whole uint8 batches as tensor ops: random translation (crop) and mirror (flip).

Each op is split into drawing its random parameters and applying them, so a resumed loader can
replay the draws of the batches it skips (same generator state, no pixel work).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["apply_crop", "apply_flip", "batch_crop", "batch_flip", "draw_crop", "draw_flip"]


def draw_crop(batch_size: int, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample (dy, dx) offsets into the padded image, each in [0, 2 * pad]: int64 [B, 2]."""
    return torch.randint(0, 2 * pad + 1, (batch_size, 2), generator=generator)


def apply_crop(x: Tensor, pad: int, shift: Tensor) -> Tensor:
    """Translate each image by its `shift - pad` pixels, filling with zeros.

    One gather for the whole batch over the flattened padded image (offset dy * W + dx per
    sample); on 2 cores it beat advanced indexing 5x and grouping by shift 15x (512 CIFAR images).
    """
    b, c, h, w = x.shape
    width = w + 2 * pad  # row length of the padded image
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)).reshape(b, c, -1)
    window = (torch.arange(h)[:, None] * width + torch.arange(w)).reshape(1, -1)  # [1, H*W]
    index = (shift[:, :1] * width + shift[:, 1:] + window).unsqueeze(1).expand(b, c, h * w)
    return padded.gather(2, index).reshape(b, c, h, w)


def batch_crop(x: Tensor, pad: int, generator: torch.Generator | None = None) -> Tensor:
    """Translate each image by a random (dy, dx) in [-pad, pad], filling with zeros."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return x
    return apply_crop(x, pad, draw_crop(len(x), pad, generator))


def draw_flip(batch_size: int, generator: torch.Generator | None = None) -> Tensor:
    """Which samples to mirror: bool [B], each True with p = 0.5."""
    return torch.rand(batch_size, generator=generator) < 0.5


def apply_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the samples where `flip` is True."""
    b, c, h, w = x.shape
    cols = torch.arange(w)
    index = torch.where(flip[:, None], cols.flip(0), cols)  # [B, W] source column per sample
    return x.gather(3, index.view(b, 1, 1, w).expand(b, c, h, w))


def batch_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror a random half of the batch left-right (each sample independently, p = 0.5)."""
    return apply_flip(x, draw_flip(len(x), generator))
