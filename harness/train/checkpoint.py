"""Checkpoint and resume: a killed run continues where it stopped and ends with the same final metrics.

Every `every_n_steps` optimizer steps the whole training state goes to one file, written atomically
(a kill during the write leaves the previous checkpoint): Lightning's checkpoint (model, optimizer,
schedule, precision plugin and loop progress, and every callback's `state_dict`: the training clock,
the evaluation curve, the budget counters), plus what Lightning does not keep: the random number
generators of torch, NumPy and Python, and the training loader's position (epoch, batches consumed).
The position is the loader's epoch and the batches the saved step has consumed, not what the loader
has yielded: Lightning fetches one batch ahead.

Writing a checkpoint is off the training clock; its cost is recorded as `checkpoint_seconds`.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

__all__ = ["Checkpoint", "capture_rng", "restore_rng"]


def capture_rng() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoint(pl.Callback):
    """Save the training state every `every_n_steps` steps to `path`; restore the RNGs on resume.

    Put it last among the callbacks, so the evaluation and budget bookkeeping of the step it saves
    are already done.
    """

    def __init__(self, path: str | Path, every_n_steps: int, clock: Any) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"checkpoint every_n_steps={every_n_steps!r} must be a positive integer")
        self.path, self.every_n_steps, self.clock = Path(path), every_n_steps, clock
        self.checkpoint_seconds = 0.0
        self.saved_steps = 0
        self._loader_state: dict[str, int] | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        self.resumed_from_step: int | None = None  # the step a resumed run continued from
        self._due = False

    # -- saving
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._due = True
        # Never at the last batch of an epoch: Lightning 2.6 restores such a checkpoint with its epoch count
        # one short, so a checkpoint written after that resume would replay part of an epoch (measured: 116
        # steps instead of 112). The save moves to the next step, the first of the next epoch.
        if self._due and batch_idx + 1 < trainer.num_training_batches and not trainer.should_stop:
            self._due = False
            loader = trainer.train_dataloader
            epoch = getattr(loader, "current_epoch", None)  # the loader's own count (see EpochCursor)
            self.save(trainer, {"epoch": trainer.current_epoch if epoch is None else epoch, "batch": batch_idx + 1})

    def save(self, trainer: pl.Trainer, loader_state: dict[str, int]) -> None:
        was_running = self.clock._started is not None
        self.clock.pause()
        t0 = time.perf_counter()
        self._loader_state = loader_state
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            trainer.save_checkpoint(tmp)  # every rank calls it (it holds a barrier); rank 0 writes the file
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
        finally:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
            self._loader_state = None
        self.checkpoint_seconds += time.perf_counter() - t0
        self.saved_steps = trainer.global_step
        if was_running:
            self.clock.resume()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self._loader_state is not None:  # the position of the step being saved, not the prefetched one
            fit_state = checkpoint["loops"]["fit_loop"]["state_dict"]
            if "combined_loader" in fit_state:
                fit_state["combined_loader"] = [self._loader_state]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng(), "checkpoint_seconds": self.checkpoint_seconds}

    # -- resuming
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng_to_restore = state["rng"]
        self.checkpoint_seconds = state.get("checkpoint_seconds", 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        # The latest point before the first resumed step: model set-up and other callbacks' starts are done.
        if self._rng_to_restore is not None:
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None
            self.resumed_from_step = trainer.global_step
