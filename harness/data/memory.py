"""The memory kind: datasets held as uint8 tensors, and a batch loader that augments whole batches.

Why: on two CPU cores a torch DataLoader with workers spends the cores decoding and copying, not
training. Small image sets fit in memory as uint8 `[N, C, H, W]` (CIFAR-10 train: 150 MiB), so
each batch is one gather plus a few tensor ops (crop, flip, normalise), as in airbench's loader
(github.com/KellerJordan/cifar10-airbench).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from harness.data.augment import apply_crop, apply_flip, draw_crop, draw_flip
from harness.data.order import EpochCursor, check_rank, epoch_generator, holdout_indices, shard_order, stream_seed

__all__ = ["BatchLoader", "ImageData", "channel_stats", "make_image_data", "normaliser", "split_validation", "subset"]


@dataclass
class ImageData:
    """One image classification dataset held in memory as uint8 tensors."""

    name: str
    train_x: Tensor = field(repr=False)  # uint8 [N, C, H, W]
    train_y: Tensor = field(repr=False)  # int64 [N]
    test_x: Tensor = field(repr=False)
    test_y: Tensor = field(repr=False)
    classes: list[str]
    mean: tuple[float, ...]  # per channel, 0..1 scale, from train_x
    std: tuple[float, ...]
    md5: dict[str, str] = field(default_factory=dict)  # file name -> md5 of the file read

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return (c, h, w)


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images on the 0..1 scale.

    Exact, from a 256-bin histogram per channel: 0.6 s for CIFAR-10 where float64 sums take 3 s.
    """
    if x.dtype != torch.uint8 or x.shape[0] == 0:
        raise ValueError(f"channel_stats needs a non-empty uint8 batch, got {x.dtype} {list(x.shape)}")
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = [], []
    for c in range(x.shape[1]):
        p = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        p /= p.sum()
        m = float(p @ levels)
        mean.append(m)
        std.append(max(float(p @ levels.square()) - m * m, 0.0) ** 0.5)
    return tuple(mean), tuple(std)


def make_image_data(name: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                    classes: list[str], md5: dict[str, str]) -> ImageData:
    """An ImageData with channel statistics taken from the training images."""
    for split, (x, y) in (("train", train), ("test", test)):
        if x.dtype != torch.uint8 or x.dim() != 4 or len(x) != len(y):
            raise ValueError(f"{name} {split}: expected uint8 [N, C, H, W] images and N labels, got {x.dtype} "
                             f"{list(x.shape)} and {len(y)} labels")
    mean, std = channel_stats(train[0])
    return ImageData(name, train[0], train[1], test[0], test[1], classes, mean, std, md5)


def split_validation(data: ImageData, n_val: int, seed: int
                     ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Hold out `n_val` random training examples, fixed by `seed`: ((x, y) train, (x, y) val).

    Both parts keep the original order; the loader shuffles.
    """
    tr, va = holdout_indices(len(data.train_y), n_val, seed, data.name)
    return (data.train_x[tr], data.train_y[tr]), (data.train_x[va], data.train_y[va])


def subset(x: Tensor, y: Tensor, n: int, seed: int, *, stratified: bool = True) -> tuple[Tensor, Tensor]:
    """A fixed random subset of `n` examples; stratified takes classes round-robin.

    Stratified: each class gets floor or ceil of n / classes (fewer only if a class runs out),
    which keeps small cpu-scale subsets balanced. `x` may be images or example indices.
    """
    if not 1 <= n <= len(y) or len(x) != len(y):
        raise ValueError(f"subset needs 1 <= n <= {len(y)} and len(x) == len(y), got n={n}, len(x)={len(x)}")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    if stratified:
        yp = y[perm]
        order = torch.argsort(yp, stable=True)
        counts = torch.bincount(yp)
        starts = counts.cumsum(0) - counts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(y)) - starts[yp[order]]  # position within its class
        perm = perm[torch.argsort(rank * len(y) + torch.arange(len(y)))]
    idx = perm[:n].sort().values
    return x[idx], y[idx]


def normaliser(mean: tuple[float, ...], std: tuple[float, ...], channels: int) -> tuple[Tensor, Tensor]:
    """(scale, shift) with x_norm = x_uint8 * scale + shift, i.e. (x/255 - mean)/std in one multiply-add."""
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(f"mean and std need {channels} values with std > 0, got {mean}, {std}")
    std_t = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
    shift = -torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1) / std_t
    return 1.0 / (255.0 * std_t), shift


def _check_batching(batch_size: int, crop_pad: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if crop_pad < 0:
        raise ValueError(f"crop_pad must be >= 0, got {crop_pad}")


class BatchLoader(EpochCursor):
    """Iterate normalised (and optionally augmented) batches of in-memory uint8 images.

    Replaces torch DataLoader: no worker processes, one gather per batch. Epoch `e` (the e-th
    call of `__iter__`, from 0) draws its shuffle and augmentation from
    `torch.Generator().manual_seed(seed * 1_000_003 + e)`, so equal seeds give equal streams.
    With `world_size > 1` each rank takes its share of that shuffle (see `harness.data.order`) and
    draws its augmentation from its own generator, seeded from (seed, epoch, rank).
    Resumable: `state_dict()` / `load_state_dict()` (see `EpochCursor`).
    """

    def __init__(self, x_uint8: Tensor, y: Tensor, batch_size: int, *, mean: tuple[float, ...],
                 std: tuple[float, ...], shuffle: bool, seed: int, drop_last: bool = False,
                 crop_pad: int = 0, flip: bool = False, flatten: bool = False, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
            raise ValueError(f"x must be uint8 [N, C, H, W], got {x_uint8.dtype} {list(x_uint8.shape)}")
        if len(x_uint8) != len(y):
            raise ValueError(f"x and y lengths differ: {len(x_uint8)} != {len(y)}")
        _check_batching(batch_size, crop_pad)
        check_rank(rank, world_size)
        self._scale, self._shift = normaliser(mean, std, x_uint8.shape[1])
        self.x, self.y = x_uint8, y.long()
        self.batch_size, self.num_samples = batch_size, len(y) // world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.crop_pad, self.flip, self.flatten = crop_pad, flip, flatten
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, start = self._begin()
        g = epoch_generator(self.seed, epoch)
        order = shard_order(len(self.y), self.shuffle, g, self.rank, self.world_size)
        aug = g if self.world_size == 1 else torch.Generator().manual_seed(stream_seed(self.seed, epoch, self.rank))
        return self._batches(order, aug, start, self._active)

    def _batches(self, order: Tensor, g: torch.Generator, start: int, active: list[int]
                 ) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            crop = draw_crop(len(idx), self.crop_pad, g) if self.crop_pad else None
            flip = draw_flip(len(idx), g) if self.flip else None
            if i < start:  # resuming: replay the draws of batches already yielded, skip the pixels
                continue
            x = self.x.index_select(0, idx)
            if crop is not None:  # on uint8: zero padding is black, as torchvision's RandomCrop
                x = apply_crop(x, self.crop_pad, crop)
            if flip is not None:
                x = apply_flip(x, flip)
            x = x.float().mul_(self._scale).add_(self._shift)
            self._yielded(active, i + 1)
            yield (x.flatten(1) if self.flatten else x), self.y[idx]
