"""The Runner: one (arm, seed) of a recipe as one Lightning Trainer, logged as one MLflow run.

The Trainer's callbacks are the arm's techniques plus the training clock, the evaluator, the budget
stop, the metric buffer and, when the job pipeline asks for it, the checkpoint. Which runs happen,
where, and in what order is the job pipeline's business (harness/experiments/); every command, DVC
stage and test that trains comes through `Runner.run_one` from there.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from harness import data as datamod
from harness.experiments.session import Stopped, process_tags
from harness.measure import COLLAPSE, BudgetStop, Evaluator, Ledger, TechniqueStats, TrainClock
from harness.papers import paper_source
from harness.recipes import Arm, Recipe
from harness.surgery import match_shapes
from harness.techniques import Technique, compose
from harness.tracking import MetricBuffer, Tracker, provenance
from harness.train.checkpoint import Checkpoint
from harness.train.strategy import check_batch, check_devices, global_rank, is_rank_zero, per_rank_batch, trainer_args


@dataclass
class RunContext:
    """What a technique may read about the experiment it runs in."""

    seed: int
    data: Any  # harness.data.ImageData
    models: dict[str, torch.nn.Module] = field(default_factory=dict)  # trained arms of this seed


@dataclass
class RunResult:
    arm: str
    seed: int
    run_id: str | None
    train_seconds: float
    eval_seconds: float
    eval_share: float
    warmup_seconds: float
    steps: int
    samples: int
    flops: float
    flop_fraction: float  # share of the dense step's FLOPs the techniques declared (after their setup)
    time_to_target_s: float | None
    final: dict[str, float]
    curve: list[dict[str, float]]
    stopped_by: str
    resumed_from_step: int | None = None  # set when the run continued from a checkpoint
    checkpoint_seconds: float = 0.0  # writing checkpoints, off the training clock
    steps_to_target: int | None = None  # machine-independent cost at the first evaluation reaching the target
    samples_to_target: int | None = None
    flops_to_target: float | None = None
    load: dict[str, float] | None = None  # 1-minute load average of the machine: start, median, max
    capped: bool = False  # stopped by the training-time guard: never in an accuracy comparison
    collapsed: bool = False  # final test accuracy at or below COLLAPSE x chance
    stats: dict[str, float] = field(default_factory=dict)  # techniques' per-step statistics, run means
    # One row per epoch (measure.Ledger): parameters trained, FLOPs and samples spent, training seconds; where a
    # technique changes the model's size these change from epoch to epoch.
    epochs: list[dict[str, float]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunResult:
        """The inverse of `row()`; fields a row lacks (written by older code) take their defaults."""
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})


# ---------------------------------------------------------------- the LightningModule

def build_optimizer(spec: dict[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW from a dict; `no_decay_norm_bias` drops weight decay on 1-d params."""
    spec = dict(spec)
    name = spec.pop("name", "sgd")
    no_decay = spec.pop("no_decay_norm_bias", False)
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if no_decay and spec.get("weight_decay"):
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ValueError(f"optimizer '{name}' is not one of {', '.join(classes)}")
    return classes[name](params, **spec)


def build_schedule(spec: str | None, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int):
    """Per-step learning-rate schedule from a string; milestones and warm-up are in epochs.

    None | "cosine" (to 0 at the budget's end) | "poly:<power>" (lr (1 - t/T)^power, as LARS
    papers use) | "step:<e1>,<e2>:<gamma>", optionally after a linear warm-up from 0:
    "warmup:<epochs>+cosine", "warmup:<epochs>+poly:2".
    """
    if spec is None:
        return None
    warmup_steps = 0
    if spec.startswith("warmup:"):
        head, plus, rest = spec.partition("+")
        try:
            warmup_steps = max(1, int(float(head.removeprefix("warmup:")) * steps_per_epoch))
        except ValueError:
            raise ValueError(f"schedule '{spec}': warm-up must be 'warmup:<epochs>+<schedule>'") from None
        if not plus:
            raise ValueError(f"schedule '{spec}': warm-up must be followed by '+<schedule>'")
        spec = rest
    main = _main_schedule(spec, optimizer, steps_per_epoch, max(total_steps - warmup_steps, 1))
    if not warmup_steps:
        return main
    warm = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps))
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])


def _main_schedule(spec: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, steps: int):
    if spec == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    kind, _, rest = spec.partition(":")
    if kind == "poly":
        try:
            power = float(rest or 2)
        except ValueError:
            raise ValueError(f"schedule 'poly:{rest}': the power must be a number") from None
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps) ** power)
    if kind == "step":
        milestones, _, gamma = rest.partition(":")
        marks = [int(float(m) * steps_per_epoch) for m in milestones.split(",")]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, marks, float(gamma or 0.1))
    raise ValueError(f"schedule '{spec}' is not None, 'cosine', 'poly:<power>', 'step:<epochs>:<gamma>' "
                     f"or 'warmup:<epochs>+<one of those>'")


class Classifier(pl.LightningModule):
    """Cross-entropy classification; techniques may replace the loss through `Technique.loss`.

    Optimisation is manual (`manual_backward`, then the optimizer and schedule
    step once per batch): Lightning's automatic-optimization closure cost about
    5% of a 14 ms step in `effitrain bench overhead`, manual about half that.
    Precision plugins still scale the loss and step the GradScaler, and the
    backward and optimizer-step callback hooks still fire.
    """

    def __init__(self, model: torch.nn.Module, recipe: Recipe, techniques: list[Technique],
                 context: RunContext, steps_per_epoch: int, total_steps: int) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.recipe, self.techniques, self.context = recipe, techniques, context
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.last_loss: torch.Tensor | None = None
        self.step_metrics: dict[str, float] = {}  # techniques' per-step stats, logged with the loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        micro = self.recipe.micro_batch_size
        if not micro or micro >= len(y):
            loss = self._backward(x, y, None)
        else:  # gradient accumulation: each micro-batch's loss weighted by its share of the batch
            chunks = math.ceil(len(y) / micro)
            loss = sum(self._backward(xs, ys, len(ys) / len(y)) for xs, ys in zip(x.chunk(chunks), y.chunk(chunks)))
        optimizer.step()
        schedule = self.lr_schedulers()
        if schedule is not None:
            schedule.step()
        self.last_loss = loss
        return None  # manual optimization: nothing for Lightning to post-process

    def _backward(self, x: torch.Tensor, y: torch.Tensor, weight: float | None) -> torch.Tensor:
        """Forward, the techniques' loss hooks and backward of one (micro-)batch; returns the detached loss."""
        logits = self.model(x)
        loss = F.cross_entropy(logits.float(), y)
        for technique in self.techniques:
            loss = technique.loss(self, logits, x, y, loss)
        if weight is not None:
            loss = loss * weight
        self.manual_backward(loss)
        return loss.detach()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Before a resumed run's weights load: give every parameter and buffer the shape it had when saved.

        A technique that removed channels or grew layers in place left tensors of other shapes than the
        freshly built model's; Lightning calls this hook before it loads the state dict (and before the
        optimizer is built, so the optimizer is made over the resized parameters and takes their state).
        """
        match_shapes(self, checkpoint["state_dict"])

    def configure_optimizers(self) -> Any:
        chosen = [o for o in (t.configure_optimizer(self.model, dict(self.recipe.optim)) for t in self.techniques)
                  if o is not None]
        optimizer = chosen[0] if chosen else build_optimizer(self.recipe.optim, self.model)
        schedule = build_schedule(self.recipe.schedule, optimizer, self.steps_per_epoch, self.total_steps)
        if schedule is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": schedule}  # stepped per batch in training_step


# ---------------------------------------------------------------- the Runner

def _instantiate(arm: Arm) -> list[Technique]:
    """Technique instances in composition order; bad kwargs become a ValueError."""
    out = []
    for cls in compose(list(arm.techniques)):
        kwargs = arm.technique_kwargs.get(cls.name, {})
        try:
            inspect.signature(cls).bind(**kwargs)
        except TypeError as exc:
            raise ValueError(f"technique '{cls.name}' in arm '{arm.name}': bad parameters {kwargs}: {exc}") from None
        out.append(cls(**kwargs))
    return out


def baseline_of(recipe: Recipe, arm: Arm) -> str:
    """The arm `arm`'s speedup is measured against."""
    return arm.baseline or recipe.baseline_arm


def flop_fraction(techniques: list[Technique]) -> float:
    """Share of the dense step's FLOPs the techniques declare they spend (their product)."""
    return float(np.prod([t.flop_fraction() for t in techniques])) if techniques else 1.0


def arm_order(recipe: Recipe) -> list[Arm]:
    """Reference arms first, then baselines (each followed by its A/A control), then technique arms, each in
    declared order."""
    bases = {recipe.baseline_arm} | {a.baseline for a in recipe.arms if a.baseline}
    ref = [a for a in recipe.arms if a.reference]
    base = [a for a in recipe.arms if a.name in bases and not a.reference and not a.replicate_of]
    base = [x for a in base for x in (a, *(r for r in recipe.arms if r.replicate_of == a.name))]
    rest = [a for a in recipe.arms if not a.reference and a.name not in bases and not a.replicate_of]
    return ref + base + rest


def validate(recipe: Recipe, seeds: list[int]) -> None:
    """Everything that can be checked before a run starts or a file is written."""
    recipe.validate()
    if not seeds or any((not isinstance(s, int)) or s < 0 for s in seeds):
        raise ValueError(f"seeds {seeds!r} must be a non-empty list of non-negative integers")
    if recipe.dataset not in datamod.DATASETS:
        raise ValueError(f"recipe {recipe.name}: unknown dataset '{recipe.dataset}'")
    if datamod.spec_of(recipe.dataset).kind == "stream" and recipe.crop_pad:
        raise ValueError(f"recipe {recipe.name}: crop_pad={recipe.crop_pad} needs an in-memory dataset; "
                         f"'{recipe.dataset}' streams random-resized crops (use crop_pad=0)")
    done: set[str] = set()
    for arm in arm_order(recipe):
        recipe.for_arm(arm).validate()
        for technique in _instantiate(arm):
            missing = [a for a in technique.needs_arms if a not in done]
            if missing:
                raise ValueError(f"technique '{technique.name}' in arm '{arm.name}' needs arm(s) {missing} "
                                 f"trained first; run it through a paper's recipe that defines them")
        done.add(arm.name)


class Runner:
    """Runs recipes; logs to MLflow; writes results tables."""

    def __init__(self, tracker: Tracker | None = None, data_root: str | Path = "datasets",
                 progress: bool | None = None, accelerator: str = "auto", devices: int = 1,
                 log_evals: bool = False) -> None:
        """`devices` > 1 trains each run data-parallel over that many processes (harness.train.strategy).
        `log_evals` prints a line at each evaluation (where the run is and about how long is left), for
        logs without a terminal; `progress` is Lightning's bar (default: on a terminal)."""
        check_devices(devices)
        # Only rank 0 logs: the other ranks of a data-parallel run train the same run and write nothing.
        self.tracker = tracker if is_rank_zero(devices) else None
        self.data_root = Path(data_root)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.accelerator = accelerator
        self.devices = devices
        self.log_evals = log_evals and is_rank_zero(devices)

    # -- data
    def loaders(self, recipe: Recipe, seed: int):
        """(data, train, val, test): the recipe's split and subset as batch loaders of the dataset's kind
        (in-memory `BatchLoader`s, or `StreamLoader`s with a worker per CPU core, at most 8, for stream datasets).

        Data-parallel: the training loader yields this rank's share of each global batch; validation and
        test stay whole on every rank, so every rank sees the same curve and the same time-to-target step.
        """
        data = datamod.load_dataset(recipe.dataset, self.data_root)
        workers = min(8, os.cpu_count() or 1) if isinstance(data, datamod.StreamData) else 0
        common = dict(seed=seed, n_val=recipe.n_val, split_seed=recipe.split_seed, n_train=recipe.n_train,
                      crop_pad=recipe.crop_pad, flip=recipe.flip, flatten=recipe.flatten, num_workers=workers)
        train, val, test = datamod.make_loaders(data, batch_size=recipe.batch_size, **common)
        if self.devices > 1:
            check_batch(recipe.batch_size, self.devices, f"recipe {recipe.name}")
            train, _, _ = datamod.make_loaders(
                data, batch_size=per_rank_batch(recipe.batch_size, self.devices), rank=global_rank(self.devices),
                world_size=self.devices, **common)
        return data, train, val, test

    # -- one run
    def run_one(self, recipe: Recipe, arm: Arm, seed: int, context: RunContext | None = None,
                experiment: str | None = None, extra_tags: dict[str, Any] | None = None,
                parent_run_id: str | None = None, checkpoint: str | Path | None = None,
                checkpoint_every_n_steps: int | None = None,
                resume: bool = False) -> tuple[RunResult, torch.nn.Module]:
        """Train one arm for one seed; log it to MLflow; return its result and trained model.

        With `checkpoint`, the training state is saved there every `checkpoint_every_n_steps` steps
        (default: the evaluation cadence); with `resume` and an existing checkpoint, the run continues
        from it. SIGTERM/SIGINT (`Stopped`) end the MLflow run KILLED, any other error FAILED.
        """
        recipe = recipe.for_arm(arm)
        techniques = _instantiate(arm)
        pl.seed_everything(seed, workers=False, verbose=False)
        data, train, val, test = self.loaders(recipe, seed)
        context = context or RunContext(seed, data)
        model = recipe.model(data.input_shape, data.num_classes)
        steps_per_epoch = len(train)
        total_steps = _total_steps(recipe, steps_per_epoch)
        module = Classifier(model, recipe, techniques, context, steps_per_epoch, total_steps)

        clock = TrainClock()
        resume_from = Path(checkpoint) if resume and checkpoint and Path(checkpoint).is_file() else None
        tags = {**(extra_tags or {}), **process_tags()}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        if resume_from:
            tags["effitrain.resumed"] = "true"
        run_id = self._start_run(recipe, arm, seed, techniques, data, experiment, tags)
        status, buffer, saver = "FAILED", None, None
        try:  # from here on, whatever happens ends the MLflow run: FINISHED, KILLED or FAILED
            buffer = MetricBuffer(self.tracker, run_id, clock)
            on_eval = buffer.add if not self.log_evals else _printing(buffer.add, arm.name, seed, total_steps,
                                                                      recipe.target.metric)
            evaluator = Evaluator(clock, val, test, recipe.eval_every_n_steps, recipe.target, on_eval=on_eval)
            ledger = Ledger(clock, lambda: flop_fraction(techniques))
            stop = BudgetStop(recipe.budget, clock, ledger)
            evaluator.cost = ledger.cost
            stats = TechniqueStats()
            saver = Checkpoint(checkpoint, checkpoint_every_n_steps or recipe.eval_every_n_steps, clock) \
                if checkpoint else None
            plugins = [p for p in (t.precision_plugin() for t in techniques) if p is not None]
            _quiet_lightning()
            trainer = pl.Trainer(
                **trainer_args(self.devices, self.accelerator), max_epochs=recipe.budget.epochs or -1,
                max_steps=recipe.budget.steps or -1,
                callbacks=[*techniques, clock, ledger, evaluator, stop, stats, buffer, *([saver] if saver else [])],
                plugins=plugins or None, logger=False, enable_checkpointing=False, enable_model_summary=False,
                enable_progress_bar=self.progress, num_sanity_val_steps=0, limit_val_batches=0,
                use_distributed_sampler=False, default_root_dir=tempfile.gettempdir())
            with warnings.catch_warnings():
                _quiet_lightning()
                trainer.fit(module, train_dataloaders=train, ckpt_path=resume_from, weights_only=False) \
                    if resume_from else trainer.fit(module, train_dataloaders=train)
            status = "FINISHED"
        except (Stopped, KeyboardInterrupt, SystemExit):  # stopped from outside (a signal, a Ray cancel)
            status = "KILLED"
            raise
        finally:
            if saver and saver.resumed_from_step is not None:  # the restored curve, into this run too
                buffer.rows[:0] = [(k, v, p["step"]) for p in evaluator.curve if p["step"] <= saver.resumed_from_step
                                   for k, v in p.items() if k != "step"]
            if buffer is not None:
                buffer.flush()
            if self.tracker and run_id:
                self.tracker.end(run_id, status)
        result = _result(arm, seed, run_id, clock, evaluator, ledger, stop, trainer, data.num_classes)
        result.stats = stats.means
        if saver:
            result.resumed_from_step, result.checkpoint_seconds = saver.resumed_from_step, saver.checkpoint_seconds
        if self.tracker and run_id:
            self.tracker.log_metrics(run_id, _summary_metrics(result))
        return result, model

    def _start_run(self, recipe, arm, seed, techniques, data, experiment, extra_tags) -> str | None:
        if not self.tracker:
            return None
        params = {"recipe": recipe.name, "scale": recipe.scale, "arm": arm.name, "seed": seed,
                  "dataset": recipe.dataset, "batch_size": recipe.batch_size, "n_train": recipe.n_train,
                  "n_val": recipe.n_val, "budget": recipe.budget.describe(), "target": f"{recipe.target}",
                  "eval_every_n_steps": recipe.eval_every_n_steps, "schedule": recipe.schedule,
                  "techniques": ",".join(t.name for t in techniques) or "none",
                  **{f"optim.{k}": v for k, v in recipe.optim.items()},
                  **{f"{t.name}.{k}": v for t in techniques for k, v in t.params().items()}}
        tags = {f"provenance.{k}": v for k, v in provenance(data.md5).items()}
        tags.update({"paper": recipe.paper or "", "arm": arm.name, **(extra_tags or {})})
        run_id = self.tracker.start(experiment or f"effitrain/{recipe.paper or recipe.name}",
                                    f"{arm.name}-seed{seed}", params, tags)
        if recipe.paper:
            try:
                self.tracker.log_artifact(run_id, paper_source(recipe.paper), "source")
            except BaseException:
                self.tracker.end(run_id, "FAILED")
                raise
        return run_id


def _printing(add: Any, arm: str, seed: int, total_steps: int, metric: str) -> Any:
    """`add`, then a line on stderr: the step of the planned total, the target metric, time left at this pace."""
    def on_eval(step: int, point: dict[str, float]) -> None:
        add(step, point)
        seconds = point["train_seconds"]
        left = seconds / step * (total_steps - step) if step else 0.0
        value = point.get(metric)
        print(f"    {arm} seed {seed}: step {step}/{total_steps}, {metric} "
              f"{'n/a' if value is None else f'{value:.4g}'}, {seconds:.1f} s training, about {left:.0f} s left",
              file=sys.stderr, flush=True)
    return on_eval


def _quiet_lightning() -> None:
    """Silence Lightning's start-up chatter and warnings that do not apply to our loop."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # The in-memory BatchLoader needs no worker processes.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning 2.6 still uses torch's LeafSpec, which torch 2.14 deprecates (harmless).
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*", category=FutureWarning)


def _total_steps(recipe: Recipe, steps_per_epoch: int) -> int:
    limits = [recipe.budget.steps] if recipe.budget.steps else []
    if recipe.budget.epochs:
        limits.append(recipe.budget.epochs * steps_per_epoch)
    if recipe.budget.samples:
        limits.append(math.ceil(recipe.budget.samples / recipe.batch_size))
    return min(limits) if limits else steps_per_epoch


def _result(arm, seed, run_id, clock, evaluator, ledger, stop, trainer, classes: int) -> RunResult:
    wall = clock.train_seconds + clock.eval_seconds
    hit = next((p for p in evaluator.curve if evaluator.target.reached(p[evaluator.target.metric])), None)
    loads = evaluator.loads
    stopped_by = stop.stopped_by if trainer.should_stop else "epochs" if trainer.max_epochs != -1 else "steps"
    return RunResult(
        steps_to_target=None if hit is None else int(hit["step"]),
        samples_to_target=None if hit is None or "samples" not in hit else int(hit["samples"]),
        flops_to_target=None if hit is None else hit.get("flops"),
        load={"start": loads[0], "median": float(np.median(loads)), "max": max(loads)} if loads else None,
        capped=stopped_by == "train_seconds",
        collapsed=evaluator.final.get("test/acc", 1.0) <= COLLAPSE / classes,
        arm=arm.name, seed=seed, run_id=run_id, train_seconds=clock.train_seconds,
        eval_seconds=clock.eval_seconds, eval_share=clock.eval_seconds / wall if wall else 0.0,
        warmup_seconds=clock.warmup_seconds, steps=trainer.global_step, samples=ledger.samples, flops=ledger.flops,
        flop_fraction=ledger.flop_fraction, epochs=ledger.epochs,
        time_to_target_s=evaluator.time_to_target, final=evaluator.final, curve=evaluator.curve,
        stopped_by=stopped_by)


def _summary_metrics(r: RunResult) -> list[tuple[str, float, int]]:
    rows = [("time/train_seconds_total", r.train_seconds, r.steps), ("time/eval_seconds", r.eval_seconds, r.steps),
            ("time/eval_share", r.eval_share, r.steps), ("time/warmup_seconds", r.warmup_seconds, r.steps),
            ("cost/flops", r.flops, r.steps), ("cost/samples", r.samples, r.steps)]
    if r.time_to_target_s is not None:
        rows.append(("time/time_to_target_s", r.time_to_target_s, r.steps))
    rows += [(k, v, r.steps) for k, v in r.final.items() if not k.startswith("val/")]  # val/ is on the curve
    return rows


def write_results(table: dict[str, Any], path: str | Path) -> Path:
    """Validate a results table and write it atomically, through the schema's writer.

    `effitrain data check --summary` writes its dataset summary here too: an object without arms is
    not a results table and is written as plain JSON by the same atomic writer.
    """
    from harness.results.schema import write_json, write_table

    return write_table(table, path) if "arms" in table else write_json(table, path)
