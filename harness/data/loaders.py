"""From a loaded dataset to the (train, val, test) loaders of one run, for either kind of dataset.

The split is the same for both kinds: `n_val` training examples held out by `split_seed`, then an
optional stratified subset of `n_train`; the official test split stays whole.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.data.memory import BatchLoader, ImageData, split_validation, subset
from harness.data.order import holdout_indices
from harness.data.stream import StreamData, StreamLoader

__all__ = ["EVAL_BATCH_SIZE", "describe", "make_loaders"]

EVAL_BATCH_SIZE = 1000  # examples per validation/test batch; only memory and speed depend on it


def make_loaders(data: ImageData | StreamData, *, batch_size: int, seed: int, n_val: int, split_seed: int,
                 n_train: int | None = None, crop_pad: int = 0, flip: bool = False, flatten: bool = False,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1) -> tuple[Any, Any, Any]:
    """(train, val, test) loaders: shuffled and augmented training batches (drop_last), plain evaluation ones.

    `seed` fixes the training order and augmentation; `split_seed` the held-out and subset examples.
    `num_workers` only matters for stream datasets.
    """
    if isinstance(data, StreamData):
        return _stream_loaders(data, batch_size=batch_size, seed=seed, n_val=n_val, split_seed=split_seed,
                               n_train=n_train, crop_pad=crop_pad, flip=flip, flatten=flatten,
                               num_workers=num_workers, rank=rank, world_size=world_size)
    (tx, ty), (vx, vy) = split_validation(data, n_val, split_seed)
    if n_train is not None and n_train < len(ty):
        tx, ty = subset(tx, ty, n_train, split_seed)
    norm = dict(mean=data.mean, std=data.std, flatten=flatten, rank=rank, world_size=world_size)
    train = BatchLoader(tx, ty, batch_size, shuffle=True, seed=seed, drop_last=True, crop_pad=crop_pad, flip=flip,
                        **norm)
    val = BatchLoader(vx, vy, EVAL_BATCH_SIZE, shuffle=False, seed=0, **norm)
    test = BatchLoader(data.test_x, data.test_y, EVAL_BATCH_SIZE, shuffle=False, seed=0, **norm)
    return train, val, test


def _stream_loaders(data: StreamData, *, batch_size: int, seed: int, n_val: int, split_seed: int,
                    n_train: int | None, crop_pad: int, flip: bool, flatten: bool, num_workers: int, rank: int,
                    world_size: int) -> tuple[StreamLoader, StreamLoader, StreamLoader]:
    if crop_pad:
        raise ValueError(f"crop_pad={crop_pad} is for memory datasets; {data.name} streams random-resized crops "
                         f"(use crop_pad=0)")
    tr, va = holdout_indices(len(data.train), n_val, split_seed, data.name)
    if n_train is not None and n_train < len(tr):
        tr, _ = subset(tr, data.train_y[tr], n_train, split_seed)
    common = dict(mean=data.mean, std=data.std, image_size=data.image_size, flatten=flatten,
                  num_workers=num_workers, rank=rank, world_size=world_size)
    train = StreamLoader(data.train.take(tr), batch_size, shuffle=True, seed=seed, drop_last=True, augment=True,
                         flip=flip, **common)
    val = StreamLoader(data.train.take(va), EVAL_BATCH_SIZE, shuffle=False, seed=0, **common)
    test = StreamLoader(data.test, EVAL_BATCH_SIZE, shuffle=False, seed=0, **common)
    return train, val, test


def describe(data: ImageData | StreamData) -> dict[str, Any]:
    """Shapes, classes, channel statistics and md5s, as `effitrain data check` prints and writes them.

    For a stream dataset the first training and test examples are decoded, so a corrupt archive fails here.
    """
    if isinstance(data, StreamData):
        loaders = [StreamLoader(index.take(torch.arange(min(1, len(index)))), 1, mean=data.mean, std=data.std,
                                shuffle=False, seed=0, image_size=data.image_size) for index in (data.train, data.test)]
        for loader in loaders:
            next(iter(loader))
        shapes = [[len(index), *data.input_shape] for index in (data.train, data.test)]
    else:
        shapes = [list(data.train_x.shape), list(data.test_x.shape)]
    return {"name": data.name, "train": shapes[0], "test": shapes[1], "classes": data.classes,
            "mean": data.mean, "std": data.std, "md5": data.md5}
