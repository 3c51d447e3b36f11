"""Epoch order, rank sharding and the resumable batch cursor both loader kinds share.

Epoch `e` of a loader with seed `s` shuffles with `torch.Generator().manual_seed(s * 1_000_003 + e)`
(the stream the harness has always used). With `world_size > 1` every rank draws the same
permutation, keeps the first `world_size * (n // world_size)` entries and takes every
`world_size`-th from position `rank`: disjoint, equal-length shares, as `DistributedSampler`
with `drop_last=True` (at most `world_size - 1` examples sit out an epoch, different ones each
epoch when shuffled). `world_size=1` is exactly the single-process order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["EpochCursor", "check_rank", "epoch_generator", "holdout_indices", "shard_order", "stream_seed"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that draws epoch `epoch`'s shuffle (and, on one rank, its augmentation)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def stream_seed(*parts: int) -> int:
    """A 63-bit seed mixed from small integers (seed, epoch, rank, index), for independent streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def check_rank(rank: int, world_size: int) -> None:
    if not (isinstance(world_size, int) and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"rank {rank!r} and world_size {world_size!r}: expected integers with 0 <= rank < world_size")


def shard_order(n: int, shuffle: bool, g: torch.Generator, rank: int, world_size: int) -> Tensor:
    """This rank's examples of the epoch, in order (draws the permutation from `g` when shuffling)."""
    order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    if world_size == 1:
        return order
    return order[:world_size * (n // world_size)][rank::world_size]


def holdout_indices(n: int, n_val: int, seed: int, what: str) -> tuple[Tensor, Tensor]:
    """(train, val) indices: `n_val` random examples held out, fixed by `seed`, both sorted."""
    if not 1 <= n_val < n:
        raise ValueError(f"n_val must be in [1, {n - 1}] for {what}, got {n_val}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


class EpochCursor:
    """Which epoch a loader is in and how many batches of it were yielded: the resume contract.

    `state_dict()` is `{"epoch": e, "batch": b}`: `b` batches of epoch `e` were already yielded
    (a finished epoch reads as the next one at batch 0). After `load_state_dict(d)` the next
    `iter()` continues epoch `d["epoch"]` at batch `d["batch"]`, with the batches, shuffle and
    augmentation an uninterrupted loader would have produced.
    """

    def __init__(self) -> None:
        self.epoch = 0  # the epoch the next `iter()` starts
        self._resume_batch = 0
        self._active: list[int] | None = None  # [epoch, batches yielded] of the last started iteration

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def current_epoch(self) -> int | None:
        """The epoch of the last started iteration (None before the first): the epoch the batch a training
        step holds came from. Lightning calls `iter()` once more than it trains (to check the loader is
        iterable), so this is not the Trainer's epoch number."""
        return None if self._active is None else self._active[0]

    def _begin(self) -> tuple[int, int]:
        """Start an iteration: (epoch, first batch); counted at the call, so a half-consumed epoch moves on."""
        epoch, start = self.epoch, self._resume_batch
        self.epoch, self._resume_batch = epoch + 1, 0
        self._active = [epoch, start]
        return epoch, start

    def _yielded(self, active: list[int], batches: int) -> None:
        active[1] = batches

    def state_dict(self) -> dict[str, int]:
        active = self._active
        if active is not None and active[0] == self.epoch - 1 and active[1] < len(self):
            return {"epoch": active[0], "batch": active[1]}
        return {"epoch": self.epoch, "batch": self._resume_batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batch = state.get("epoch"), state.get("batch")
        if not (isinstance(epoch, int) and isinstance(batch, int) and epoch >= 0 and 0 <= batch <= len(self)):
            raise ValueError(f"loader state {state!r}: expected {{'epoch': int >= 0, "
                             f"'batch': int in [0, {len(self)}]}}")
        if batch == len(self):  # the epoch was finished: the next one starts
            epoch, batch = epoch + 1, 0
        self.epoch, self._resume_batch, self._active = epoch, batch, None
