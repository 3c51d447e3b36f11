"""The Runner: one path from a recipe to logged runs and a results table.

For each seed, every arm of the recipe runs (reference arms first, so a teacher
exists before its student), each as one Lightning Trainer whose callbacks are
the arm's techniques plus the training clock, the evaluator, the budget stop
and the metric buffer. Each (paper, arm, seed) is one MLflow run. The CLI, the
DVC stages, the benchmarks and the tests all come through here.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from harness import data as datamod
from harness.cards import PaperCard
from harness.measure import BudgetStop, Evaluator, TrainClock, bootstrap_interval, claim_verdict, speedup
from harness.recipes import Arm, Recipe
from harness.techniques import Technique, compose
from harness.tracking import MetricBuffer, Tracker, provenance


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

    def row(self) -> dict[str, Any]:
        return asdict(self)


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
    """Reference arms first, then baselines, then technique arms, each in declared order."""
    bases = {recipe.baseline_arm} | {a.baseline for a in recipe.arms if a.baseline}
    ref = [a for a in recipe.arms if a.reference]
    base = [a for a in recipe.arms if a.name in bases and not a.reference]
    rest = [a for a in recipe.arms if not a.reference and a.name not in bases]
    return ref + base + rest


def validate(recipe: Recipe, seeds: list[int]) -> None:
    """Everything that can be checked before a run starts or a file is written."""
    recipe.validate()
    if not seeds or any((not isinstance(s, int)) or s < 0 for s in seeds):
        raise ValueError(f"seeds {seeds!r} must be a non-empty list of non-negative integers")
    if recipe.dataset not in datamod.DATASETS:
        raise ValueError(f"recipe {recipe.name}: unknown dataset '{recipe.dataset}'")
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
                 progress: bool | None = None, accelerator: str = "auto") -> None:
        self.tracker = tracker
        self.data_root = Path(data_root)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.accelerator = accelerator

    # -- data
    def loaders(self, recipe: Recipe, seed: int):
        """(data, train, val, test): the recipe's split and subset as in-memory batch loaders."""
        data = datamod.load_dataset(recipe.dataset, self.data_root)
        (tx, ty), (vx, vy) = datamod.split_validation(data, recipe.n_val, recipe.split_seed)
        if recipe.n_train is not None and recipe.n_train < len(ty):
            tx, ty = datamod.subset(tx, ty, recipe.n_train, recipe.split_seed)
        norm = dict(mean=data.mean, std=data.std, flatten=recipe.flatten)
        train = datamod.BatchLoader(tx, ty, recipe.batch_size, shuffle=True, seed=seed, drop_last=True,
                                    crop_pad=recipe.crop_pad, flip=recipe.flip, **norm)
        val = datamod.BatchLoader(vx, vy, 1000, shuffle=False, seed=0, **norm)
        test = datamod.BatchLoader(data.test_x, data.test_y, 1000, shuffle=False, seed=0, **norm)
        return data, train, val, test

    # -- one run
    def run_one(self, recipe: Recipe, arm: Arm, seed: int, context: RunContext | None = None,
                experiment: str | None = None, extra_tags: dict[str, Any] | None = None) -> tuple[RunResult, torch.nn.Module]:
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
        run_id = self._start_run(recipe, arm, seed, techniques, data, experiment, extra_tags)
        buffer = MetricBuffer(self.tracker, run_id, clock)
        evaluator = Evaluator(clock, val, test, recipe.eval_every_n_steps, recipe.target, on_eval=buffer.add)
        stop = BudgetStop(recipe.budget, clock, evaluator, recipe.batch_size, lambda: flop_fraction(techniques))
        plugins = [p for p in (t.precision_plugin() for t in techniques) if p is not None]
        _quiet_lightning()
        trainer = pl.Trainer(
            accelerator=self.accelerator, devices=1, max_epochs=recipe.budget.epochs or -1,
            max_steps=recipe.budget.steps or -1, callbacks=[*techniques, clock, evaluator, stop, buffer],
            plugins=plugins or None, logger=False, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=self.progress, num_sanity_val_steps=0, limit_val_batches=0,
            use_distributed_sampler=False, default_root_dir=tempfile.gettempdir())
        status = "FAILED"
        try:
            with warnings.catch_warnings():
                _quiet_lightning()
                trainer.fit(module, train_dataloaders=train)
            status = "FINISHED"
        finally:
            buffer.flush()
            if self.tracker and run_id:
                self.tracker.end(run_id, status)
        result = _result(arm, seed, run_id, clock, evaluator, stop, trainer)
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
            source = Path(sys.modules[f"reproductions.{recipe.paper}"].__file__)
            self.tracker.log_artifact(run_id, source, "source")
        return run_id

    # -- a whole experiment
    def run(self, recipe: Recipe, seeds: list[int], card: PaperCard | None = None, command: str = "",
            tag: str = "full", budget_note: str = "", name: str | None = None) -> dict[str, Any]:
        """Run every arm over every seed; return the results table (schema in harness/report.py)."""
        validate(recipe, seeds)
        arms = arm_order(recipe)
        results: dict[str, list[RunResult]] = {a.name: [] for a in arms}
        bar = tqdm(total=len(arms) * len(seeds), desc=recipe.paper or recipe.name, unit="run",
                   disable=None, file=sys.stderr)
        data_md5: dict[str, str] = {}
        done = 0
        for seed in seeds:
            context: RunContext | None = None
            for arm in arms:
                bar.set_postfix_str(f"{arm.name} seed {seed}")
                if context is None:
                    context = RunContext(seed, datamod.load_dataset(recipe.dataset, self.data_root))
                    data_md5 = context.data.md5
                result, model = self.run_one(recipe, arm, seed, context, extra_tags={"tag": tag})
                context.models[arm.name] = model
                results[arm.name].append(result)
                bar.update(1)
                done += 1
                tqdm.write(_progress_line(done, len(arms) * len(seeds), result), file=sys.stderr)
        bar.close()
        return self._table(recipe, arms, seeds, results, card, command, tag, budget_note, data_md5, name)

    def _table(self, recipe, arms, seeds, results, card, command, tag, budget_note, data_md5, name) -> dict[str, Any]:
        def times(name: str) -> list[float | None]:
            return [r.time_to_target_s for r in results[name]]

        bases = {baseline_of(recipe, a) for a in arms}  # a baseline is not raced against another baseline
        speedups = {a.name: {**speedup(times(baseline_of(recipe, a)), times(a.name)), "baseline": baseline_of(recipe, a)}
                    for a in arms if not a.reference and a.name not in bases}
        budget = budget_note or describe_budget(recipe, tag)
        return {
            "paper": name or recipe.paper or recipe.name, "scale": recipe.scale, "tag": tag,
            "card": card.summary_dict() if card else {"title": recipe.name, "authors": "", "venue": "", "year": None,
                                                       "arxiv": None, "url": None, "summary": recipe.description},
            "budget": budget, "command": command, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seeds": list(seeds), "target": asdict(recipe.target), "baseline_arm": recipe.baseline_arm,
            "arms": {a.name: {"description": a.description, "techniques": list(a.techniques),
                              "baseline": baseline_of(recipe, a),
                              "flop_fraction": float(np.median([r.flop_fraction for r in results[a.name]])),
                              "budget": recipe.for_arm(a).budget.describe(),
                              "target": asdict(recipe.for_arm(a).target),
                              "runs": [r.row() for r in results[a.name]]} for a in arms},
            "speedups": speedups,
            "claims": judge_claims(card, recipe, results) if card else [],
            "provenance": provenance(data_md5),
        }


def _progress_line(done: int, total: int, r: RunResult) -> str:
    tta = "not reached" if r.time_to_target_s is None else f"{r.time_to_target_s:.1f} s"
    acc = r.final.get("test/acc")
    acc_text = f", test acc {100 * acc:.2f}%" if acc is not None else ""
    return (f"[{done}/{total}] {r.arm} seed {r.seed}: {r.steps} steps, {r.train_seconds:.1f} s training "
            f"(+{r.eval_seconds:.1f} s eval), time to target {tta}{acc_text}")


def _quiet_lightning() -> None:
    """Silence Lightning's start-up chatter and warnings that do not apply to our loop."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # The in-memory BatchLoader needs no worker processes.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning 2.6 still uses torch's LeafSpec, which torch 2.14 deprecates (harmless).
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*", category=FutureWarning)


def describe_budget(recipe: Recipe, tag: str) -> str:
    """The budget line of a results table, from the effective (overridden) per-arm budgets."""
    text = f"{recipe.scale} scale ({tag}): {recipe.description}; budget {recipe.budget.describe()}"
    own = [f"{a.name} {recipe.for_arm(a).budget.describe()}" for a in recipe.arms
           if recipe.for_arm(a).budget != recipe.budget]
    return text + (f" ({'; '.join(own)})" if own else "") + f"; batch {recipe.batch_size}"


def _total_steps(recipe: Recipe, steps_per_epoch: int) -> int:
    limits = [recipe.budget.steps] if recipe.budget.steps else []
    if recipe.budget.epochs:
        limits.append(recipe.budget.epochs * steps_per_epoch)
    if recipe.budget.samples:
        limits.append(math.ceil(recipe.budget.samples / recipe.batch_size))
    return min(limits) if limits else steps_per_epoch


def _result(arm, seed, run_id, clock, evaluator, stop, trainer) -> RunResult:
    wall = clock.train_seconds + clock.eval_seconds
    return RunResult(
        arm=arm.name, seed=seed, run_id=run_id, train_seconds=clock.train_seconds,
        eval_seconds=clock.eval_seconds, eval_share=clock.eval_seconds / wall if wall else 0.0,
        warmup_seconds=clock.warmup_seconds, steps=trainer.global_step, samples=stop.samples, flops=stop.flops,
        flop_fraction=stop.flop_fraction,
        time_to_target_s=evaluator.time_to_target, final=evaluator.final, curve=evaluator.curve,
        stopped_by=stop.stopped_by if trainer.should_stop else "epochs" if trainer.max_epochs != -1 else "steps")


def _summary_metrics(r: RunResult) -> list[tuple[str, float, int]]:
    rows = [("time/train_seconds_total", r.train_seconds, r.steps), ("time/eval_seconds", r.eval_seconds, r.steps),
            ("time/eval_share", r.eval_share, r.steps), ("time/warmup_seconds", r.warmup_seconds, r.steps),
            ("cost/flops", r.flops, r.steps), ("cost/samples", r.samples, r.steps)]
    if r.time_to_target_s is not None:
        rows.append(("time/time_to_target_s", r.time_to_target_s, r.steps))
    rows += [(k, v, r.steps) for k, v in r.final.items() if not k.startswith("val/")]  # val/ is on the curve
    return rows


def judge_claims(card: PaperCard, recipe: Recipe, results: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    """Measured value, bootstrap interval and verdict for each claim of the card."""
    out = []
    for claim in card.claims:
        row = asdict(claim)
        row.update(measured=None, low=None, high=None)
        arms_needed = [claim.arm] + ([claim.minus_arm] if claim.minus_arm else [])
        if recipe.scale not in claim.scales or any(a not in results for a in arms_needed):
            row["verdict"] = "not run at this scale"
            out.append(row)
            continue
        if claim.metric == "speedup":  # time to target against the arm's baseline, over seeds
            out.append({**row, **_speedup_claim(claim, recipe, results)})
            continue
        if any(claim.metric not in r.final for a in arms_needed for r in results[a]):
            row["verdict"] = "not measured"
            out.append(row)
            continue
        values = [r.final[claim.metric] for r in results[claim.arm]]
        if claim.minus_arm:
            others = {r.seed: r.final[claim.metric] for r in results[claim.minus_arm]}
            values = [v - others[r.seed] for v, r in zip(values, results[claim.arm])]
        measured = float(np.median(values))
        low, high = bootstrap_interval(values) if len(values) > 1 else (None, None)  # one seed: no interval
        row.update(measured=measured, low=low, high=high,
                   verdict=claim_verdict(claim.claimed, claim.tolerance, *((low, high) if low is not None
                                                                         else (measured, measured))))
        out.append(row)
    return out


def _speedup_claim(claim, recipe: Recipe, results: dict[str, list[RunResult]]) -> dict[str, Any]:
    base = baseline_of(recipe, recipe.arm(claim.arm))
    sp = speedup([r.time_to_target_s for r in results[base]], [r.time_to_target_s for r in results[claim.arm]])
    if sp["speedup"] is None:
        return {"measured": None, "low": None, "high": None, "verdict": sp["verdict"]}
    low, high = (sp["low"], sp["high"]) if sp["low"] is not None else (sp["speedup"], sp["speedup"])
    return {"measured": sp["speedup"], "low": sp["low"], "high": sp["high"],
            "verdict": claim_verdict(claim.claimed, claim.tolerance, low, high)}


def write_results(table: dict[str, Any], path: str | Path) -> Path:
    """Write a results table atomically (temp file, then rename): a crash leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(table, fh, indent=1, default=float, allow_nan=False)
    os.replace(tmp, path)
    return path
