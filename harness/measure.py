"""Measurement definitions: the product of effitrain, kept in one module.

- Training clock: seconds spent training (data loading, forward, backward,
  optimizer, a technique's own work). Evaluation pauses it. The first training
  step is the warm-up: it is timed separately (`warmup_seconds`) and not on the
  clock, so one-off costs (allocator warm-up, compilation) do not decide a race.
  On CUDA the clock reads time at synchronised boundaries.
- Evaluation cadence: every `eval_every_n_steps` optimizer steps, plus once at
  the end; its share of wall time is reported as `eval_share`. The validation
  split is scored each time; the test set at the end, and also each time when
  the target is a `test/` metric.
- Time to target: training-clock seconds at the first evaluation whose metric
  reaches the target; None (infinite) when never reached.
- Cost to target: steps, samples and counted FLOPs at that evaluation
  (machine-independent, deterministic per seed), recorded on every curve point
  with the machine's load average.
- Statistics and claim verdicts: harness/results/stats.py (paired by seed,
  exact intervals, claim kinds).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.flop_counter import FlopCounterMode

# The protocol's statistics (paired speedups, exact intervals, claim verdicts) are defined torch-free
# in harness/results/stats.py, so the report computes them without importing training code.
from harness.results.stats import claim_verdict, speedup  # noqa: F401

COLLAPSE = 1.5  # a run whose final test accuracy is at or below 1.5x chance has collapsed (DESIGN.md, "Claims")


def machine_load() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): what else was running."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class Budget:
    """What a run may spend; it stops at the first limit reached.

    Units: `epochs` passes over the training subset, `steps` optimizer steps,
    `samples` training examples seen, `train_seconds` training-clock seconds,
    `flops` counted training FLOPs (dense count times the techniques' declared
    fraction).
    """

    epochs: int | None = None
    steps: int | None = None
    samples: int | None = None
    train_seconds: float | None = None
    flops: float | None = None

    def validate(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if all(v is None for v in values.values()):
            raise ValueError("budget sets no limit; give at least one of " + ", ".join(values))
        for name, value in values.items():
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"budget {name}={value!r} is not a positive finite number")
        if self.epochs is not None and int(self.epochs) != self.epochs:
            raise ValueError(f"budget epochs={self.epochs!r} must be a whole number")

    def describe(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name) is not None]
        return ", ".join(parts)


# What a target can race: metric -> (lowest value, highest value, the mode that means "better").
_TARGET_METRICS = {"acc": (0.0, 1.0, "max"), "loss": (0.0, math.inf, "min"), "errors": (0.0, math.inf, "min")}


@dataclass(frozen=True)
class Target:
    """The metric a run races to: `metric` reaches `value` (mode max or min)."""

    metric: str = "val/acc"
    value: float = 0.9
    mode: str = "max"

    def validate(self) -> None:
        """Refuse a metric nothing emits, a value outside the metric's range, or a mode against its direction."""
        split, _, name = self.metric.partition("/")
        known = [f"{s}/{m}" for s in ("val", "test") for m in _TARGET_METRICS]
        if split not in ("val", "test") or name not in _TARGET_METRICS:
            raise ValueError(f"target metric '{self.metric}' is not one of {', '.join(known)}")
        low, high, mode = _TARGET_METRICS[name]
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) or not low <= self.value <= high:
            raise ValueError(f"target {self.metric}={self.value!r} is outside the metric's range [{low:g}, {high:g}]")
        if self.mode != mode:
            raise ValueError(f"target mode '{self.mode}' for {self.metric}: expected '{mode}' "
                             f"({'higher' if mode == 'max' else 'lower'} is better)")

    def reached(self, measured: float) -> bool:
        return measured >= self.value if self.mode == "max" else measured <= self.value


class TrainClock(pl.Callback):
    """Training-clock seconds: runs while training, paused during evaluation."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.warmup_seconds = 0.0
        self._started: float | None = None
        self._cuda = False
        self._warming = False

    def state_dict(self) -> dict[str, float]:
        return {"train_seconds": self.seconds, "eval_seconds": self.eval_seconds,
                "warmup_seconds": self.warmup_seconds}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue a checkpointed run's clock (the first step after a resume is a warm-up again)."""
        self.train_seconds, self.eval_seconds = state["train_seconds"], state["eval_seconds"]
        self.warmup_seconds = state["warmup_seconds"]

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._cuda = pl_module.device.type == "cuda"
        self._warmup_from = self._now()
        self._warming = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._warming:  # the first step of a run, or of a resumed run, is off the clock
            self._warming = False
            self.warmup_seconds += self._now() - self._warmup_from
            self.resume()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pause()

    def resume(self) -> None:
        if self._started is None:
            self._started = self._now()

    def pause(self) -> None:
        if self._started is not None:
            self.train_seconds += self._now() - self._started
            self._started = None

    @property
    def seconds(self) -> float:
        running = self._now() - self._started if self._started is not None else 0.0
        return self.train_seconds + running

    def paused(self) -> _Paused:
        return _Paused(self)


class _Paused:
    """Context manager: stop the clock, time the block as evaluation, restart."""

    def __init__(self, clock: TrainClock) -> None:
        self.clock = clock

    def __enter__(self) -> None:
        self.was_running = self.clock._started is not None
        self.clock.pause()
        self.t0 = self.clock._now()

    def __exit__(self, *exc: Any) -> None:
        self.clock.eval_seconds += self.clock._now() - self.t0
        if self.was_running:
            self.clock.resume()


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
    """Mean cross-entropy loss, accuracy and error count of `model` on `loader`."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    return {"loss": loss_sum / n, "acc": correct / n, "errors": float(n - correct)}


class Evaluator(pl.Callback):
    """Evaluate on the validation loader every k steps and at the end, off the clock.

    Also records the training curve (with the Ledger's costs so far), the time to target and the test
    metrics at the end.
    """

    def __init__(self, clock: TrainClock, val_loader: Any, test_loader: Any, every_n_steps: int,
                 target: Target, on_eval: Callable[[int, dict[str, float]], None] | None = None) -> None:
        self.clock, self.val_loader, self.test_loader = clock, val_loader, test_loader
        self.every_n_steps, self.target, self.on_eval = every_n_steps, target, on_eval
        self.curve: list[dict[str, float]] = []
        self.time_to_target: float | None = None
        self.final: dict[str, float] = {}
        # Costs spent so far (samples, FLOPs: the Ledger's, which runs first), recorded on each curve point; the
        # machine's load at each evaluation beside the curve (it describes the machine, not the run, so resumed
        # curves stay identical).
        self.cost: Callable[[], dict[str, float]] | None = None
        self.loads: list[float] = []

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve, "time_to_target": self.time_to_target, "loads": self.loads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curve, self.time_to_target = list(state["curve"]), state["time_to_target"]
        self.loads = list(state.get("loads", []))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.curve or self.curve[-1]["step"] != trainer.global_step:
            self._evaluate(trainer, pl_module)
        with self.clock.paused():
            test = evaluate(pl_module.model, self.test_loader, pl_module.device)
        self.final = {f"test/{k}": v for k, v in test.items()}
        self.final = {**{k: v for k, v in self.curve[-1].items() if k.startswith("val/")}, **self.final}

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self.clock.paused():
            val = {f"val/{k}": v for k, v in evaluate(pl_module.model, self.val_loader, pl_module.device).items()}
            if self.target.metric.startswith("test/"):  # a test-accuracy race (DAWNBench style)
                val.update({f"test/{k}": v for k, v in evaluate(pl_module.model, self.test_loader,
                                                                pl_module.device).items()})
        point = {"step": trainer.global_step, "train_seconds": self.clock.train_seconds, **val}
        if self.cost is not None:
            point.update(self.cost())
        load = machine_load()
        if load is not None:
            self.loads.append(load)
        self.curve.append(point)
        self.time_to_target = time_to_target(self.curve, self.target)
        if self.on_eval:
            self.on_eval(trainer.global_step, point)
        if not math.isfinite(val["val/loss"]):
            raise FloatingPointError(f"validation loss is {val['val/loss']} at step {trainer.global_step}")


def structure_signature(model: torch.nn.Module, x: torch.Tensor) -> tuple:
    """What a step's counted FLOPs depend on besides the batch size: every parameter's shape and one
    example's input shape. A technique that removes channels, grows layers, rescales kernels or changes
    the resolution changes it; masking weights in place does not (dense kernels skip no zeros)."""
    return (tuple(x.shape[1:]), *(tuple(p.shape) for p in model.parameters()))


class Ledger(pl.Callback):
    """The cost a run has spent: samples seen and counted training FLOPs, following structural change.

    A step's FLOPs are counted with torch's FlopCounterMode on the run's first step (the warm-up, off the
    clock) and again on the first step after the structure changes (`structure_signature`: a pruned,
    grown or rescaled model), so a run is charged what its model costs at each step, not the dense
    model's cost throughout. A recount step stays on the training clock (the counter's own overhead is a
    few milliseconds, once per change). Each step adds its counted FLOPs times the techniques' declared
    fraction (`flop_fraction`, asked at train start after their setup), scaled by the step's share of
    the counted batch (a short last batch costs less).

    Data-parallel runs count GLOBAL samples and FLOPs: each rank trains its share of the global batch
    and counts its own step, so both are scaled by the world size.

    Put it before the Evaluator and BudgetStop: a curve point at step k then includes step k, and the
    budget sees it. One row per epoch (`epochs`): the parameters the model trained with (at the epoch's
    start), the FLOPs and samples the epoch spent and its training-clock seconds.
    """

    def __init__(self, clock: TrainClock | None = None, flop_fraction: float | Callable[[], float] = 1.0) -> None:
        self.clock = clock
        self._fraction = flop_fraction
        self.flop_fraction = 1.0 if callable(flop_fraction) else float(flop_fraction)
        self.samples = 0
        self.flops = 0.0
        self.flops_per_step = 0.0  # one rank's counted step at `counted_batch` examples
        self.counted_batch = 0
        self.signature: tuple | None = None
        self.epochs: list[dict[str, float]] = []
        self._epoch_start: dict[str, float] | None = None
        self._counter: FlopCounterMode | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "flops": self.flops, "flops_per_step": self.flops_per_step,
                "counted_batch": self.counted_batch, "signature": self.signature, "epochs": self.epochs,
                "epoch_start": self._epoch_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.samples, self.flops, self.flops_per_step = state["samples"], state["flops"], state["flops_per_step"]
        self.counted_batch, self.signature = state["counted_batch"], state["signature"]
        self.epochs, self._epoch_start = list(state["epochs"]), state["epoch_start"]

    def cost(self) -> dict[str, float]:
        return {"samples": self.samples, "flops": self.flops}

    def on_train_start(self, trainer, pl_module) -> None:
        if callable(self._fraction):
            self.flop_fraction = float(self._fraction())

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._epoch_start is None:  # not when a run resumes inside an epoch
            self._epoch_start = {"epoch": trainer.current_epoch + 1, "params": _n_params(pl_module.model),
                                 "flops": self.flops, "samples": self.samples, "train_seconds": self._seconds()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        signature = structure_signature(pl_module.model, batch[0])
        if signature != self.signature:
            self.signature = signature
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = len(batch[1])
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_step, self.counted_batch = float(self._counter.get_total_flops()), n
            self._counter = None
        world = trainer.world_size
        self.samples += n * world
        self.flops += self.flops_per_step * world * self.flop_fraction * n / self.counted_batch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        start = self._epoch_start
        if start is None:
            return
        self.epochs.append({"epoch": start["epoch"], "params": start["params"],
                            "flops": self.flops - start["flops"], "samples": self.samples - start["samples"],
                            "train_seconds": self._seconds() - start["train_seconds"]})
        self._epoch_start = None

    def on_train_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None and self.samples > self._epoch_start["samples"]:  # a budget ended mid-epoch
            self.on_train_epoch_end(trainer, pl_module)

    def _seconds(self) -> float:
        return self.clock.seconds if self.clock is not None else 0.0


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class BudgetStop(pl.Callback):
    """Stop training at the first exhausted budget limit; record which one.

    Samples and FLOPs are the Ledger's (global over data-parallel ranks). The training-clock limit is
    decided by every rank together (any rank over it stops all), as a rank that stops alone would leave
    the others waiting on its gradients.
    """

    def __init__(self, budget: Budget, clock: TrainClock, ledger: Ledger) -> None:
        self.budget, self.clock, self.ledger = budget, clock, ledger
        self.stopped_by = "epochs"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        b = self.budget
        checks = [("steps", b.steps, trainer.global_step), ("samples", b.samples, self.ledger.samples),
                  ("train_seconds", b.train_seconds, self.clock.seconds), ("flops", b.flops, self.ledger.flops)]
        for name, limit, used in checks:
            over = limit is not None and used >= limit
            if name == "train_seconds" and limit is not None and trainer.world_size > 1:
                over = trainer.strategy.reduce_boolean_decision(over, all=False)  # each rank has its own clock
            if over:
                self.stopped_by = name
                trainer.should_stop = True
                return


class TechniqueStats(pl.Callback):
    """The run's mean of every statistic techniques report per step (`<technique>/<stat>` in the module's
    `step_metrics`), sampled at the first step and every `every_n_steps` steps: what a technique achieved
    (a pruning rate's share of zeros, a sampler's distinct fraction), for the results table beside what it
    was asked for."""

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every_n_steps = every_n_steps
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums, "counts": self.counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps and trainer.global_step != 1:  # the first step, then every n
            return
        for key, value in pl_module.step_metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    @property
    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}


# ---------------------------------------------------------------- statistics

def time_to_target(curve: list[dict[str, float]], target: Target) -> float | None:
    """Training seconds at the first curve point reaching the target, else None."""
    for point in curve:
        if target.reached(point[target.metric]):
            return point["train_seconds"]
    return None


