"""Recipes: everything one experiment needs, at smoke, cpu or paper scale.

A `Recipe` names the dataset and its subset, the model, optimizer and schedule,
the budget, the target, the evaluation cadence and the arms. An `Arm` is one
configuration raced over the same seeds: the baseline arm, each technique arm,
and reference arms a technique needs (a distillation teacher). An arm may
override recipe fields (the teacher's model and budget).

`--set key=value` overrides reach recipe fields by dotted path:
`budget.epochs=2`, `optim.lr=0.05`, `n_train=10000`, or an arm's override with
the arm name first: `teacher.budget.epochs=3`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import yaml

from harness.measure import Budget, Target
from harness.registry import Registry

SCALES = ("smoke", "cpu", "paper")
FIDELITIES = ("faithful", "variant", "substitute")
DECAYING = ("cosine", "poly:")  # schedules that reach zero at the budget's last step

ModelFactory = Callable[[tuple[int, ...], int], torch.nn.Module]


@dataclass(frozen=True)
class Arm:
    """One configuration raced over the seeds."""

    name: str
    techniques: tuple[str, ...] = ()
    description: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)  # recipe field -> value
    technique_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: bool = False  # a helper arm (e.g. teacher): no speedup is computed for it
    baseline: str | None = None  # the arm its speedup is measured against; None: the recipe's baseline arm
    # Fidelity to the paper's method (DESIGN.md, "Claims"): "faithful"; "variant" (the note says what
    # differs); "substitute" (the paper's method is unknown; the note says what stands in for it).
    fidelity: str = "faithful"
    fidelity_note: str = ""
    replicate_of: str | None = None  # an A/A control: the named arm run again (added by the pipeline)


@dataclass(frozen=True)
class Recipe:
    """Dataset, model, optimisation, budget, target and arms of one experiment."""

    name: str
    scale: str
    dataset: str
    model: ModelFactory
    budget: Budget
    target: Target
    optim: dict[str, Any]  # {"name": "sgd", "lr": 0.1, "momentum": 0.9, ...}
    batch_size: int
    eval_every_n_steps: int
    n_val: int = 5000  # held out of the training set, fixed by `split_seed`
    n_train: int | None = None  # training subset after the split; None: all
    split_seed: int = 0
    crop_pad: int = 0  # batch random-translation, pixels
    flip: bool = False
    flatten: bool = False
    micro_batch_size: int | None = None  # accumulate gradients over micro-batches of this size; None: one pass
    # cosine | poly:<p> (both reach zero at the budget, as the protocol requires) | step:<e1>,<e2>:<gamma> | None
    # (constant; both refused by validate), optionally "warmup:<epochs>+" first.
    schedule: str | None = "cosine"
    arms: tuple[Arm, ...] = (Arm("baseline", description="the recipe as is"),)
    baseline_arm: str = "baseline"
    description: str = ""
    paper: str | None = None

    def validate(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale '{self.scale}' is not one of {', '.join(SCALES)}")
        self.budget.validate()
        if not (self.budget.epochs or self.budget.steps or self.budget.samples):
            raise ValueError(f"recipe {self.name}: the budget needs epochs, steps or samples; a time limit is "
                             f"only a guard (a run it stops is 'capped'), and the learning rate decays to zero at the "
                             f"budget")
        if self.schedule is None or not self.schedule.split("+")[-1].startswith(DECAYING):
            raise ValueError(f"recipe {self.name}: schedule {self.schedule!r} does not decay the learning rate to "
                             f"zero at the budget; use cosine or poly:<p>, after an optional warmup:<epochs>+ (the "
                             f"protocol's baselines are decayed: DESIGN.md, 'Targets and tuning')")
        self.target.validate()
        for name in ("batch_size", "eval_every_n_steps", "n_val"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"recipe {self.name}: {name}={value!r} must be a positive integer")
        if self.micro_batch_size is not None and (not isinstance(self.micro_batch_size, int)
                                                  or not 1 <= self.micro_batch_size <= self.batch_size):
            raise ValueError(f"recipe {self.name}: micro_batch_size={self.micro_batch_size!r} must be an integer "
                             f"in [1, batch_size={self.batch_size}]")
        if self.n_train is not None and (not isinstance(self.n_train, int) or self.n_train < self.batch_size):
            raise ValueError(f"recipe {self.name}: n_train={self.n_train!r} must be an integer >= batch_size")
        if not isinstance(self.optim.get("lr"), (int, float)) or self.optim["lr"] <= 0:
            raise ValueError(f"recipe {self.name}: optim.lr={self.optim.get('lr')!r} must be positive")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names) or self.baseline_arm not in names:
            raise ValueError(f"recipe {self.name}: arms {names} must be unique and include '{self.baseline_arm}'")
        for arm in self.arms:
            if arm.fidelity not in FIDELITIES or (arm.fidelity != "faithful" and not arm.fidelity_note):
                raise ValueError(f"recipe {self.name}: arm '{arm.name}' fidelity '{arm.fidelity}' must be one of "
                                 f"{', '.join(FIDELITIES)}, and a variant or substitute must say why (fidelity_note)")
            if arm.baseline is not None and (arm.baseline not in names or arm.baseline == arm.name):
                raise ValueError(f"recipe {self.name}: arm '{arm.name}' has baseline '{arm.baseline}', "
                                 f"expected another of {names}")

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(f"recipe {self.name} has no arm '{name}'; arms: {', '.join(a.name for a in self.arms)}")

    def with_aa_control(self) -> Recipe:
        """This recipe with an A/A control: the baseline arm again, as `<baseline>_aa` (DESIGN.md, "Timing")."""
        base = self.arm(self.baseline_arm)
        if any(a.replicate_of for a in self.arms):
            return self
        aa = replace(base, name=f"{base.name}_aa", description=f"A/A control: {base.name} run again",
                     replicate_of=base.name, baseline=None)
        return replace(self, arms=(*self.arms, aa))

    def for_arm(self, arm: Arm) -> Recipe:
        """This recipe with the arm's overrides applied."""
        return _apply(self, arm.overrides) if arm.overrides else self


def _apply(recipe: Recipe, overrides: dict[str, Any]) -> Recipe:
    """Replace fields; dict-valued budget/target/optim entries merge into the existing value."""
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        current = getattr(recipe, key)
        if isinstance(value, dict) and key in ("budget", "target"):
            value = replace(current, **value)
        elif isinstance(value, dict) and key == "optim":
            value = {**current, **value}
        changes[key] = value
    return replace(recipe, **changes)


_RECIPE_FIELDS = {f.name for f in fields(Recipe)}
_NESTED = {"budget": {f.name for f in fields(Budget)}, "target": {f.name for f in fields(Target)}}


def apply_overrides(recipe: Recipe, assignments: list[str]) -> Recipe:
    """Apply `key=value` strings (values parsed as YAML) to a recipe or its arms."""
    for text in assignments:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise ValueError(f"override '{text}' is not of the form key=value")
        value = yaml.safe_load(raw)
        path = key.split(".")
        arm_names = {a.name for a in recipe.arms}
        if path[0] in arm_names and path[0] not in _RECIPE_FIELDS:
            arm = recipe.arm(path[0])
            merged = _merge(dict(arm.overrides), path[1:], value, text)
            arms = tuple(replace(a, overrides=merged) if a.name == arm.name else a for a in recipe.arms)
            recipe = replace(recipe, arms=arms)
        else:
            recipe = _apply(recipe, _merge({}, path, value, text))
    return recipe


def _merge(overrides: dict[str, Any], path: list[str], value: Any, text: str) -> dict[str, Any]:
    if not path or path[0] not in _RECIPE_FIELDS or path[0] in ("arms", "model", "name", "scale"):
        raise ValueError(f"override '{text}': unknown or fixed recipe field '{'.'.join(path)}'")
    head, rest = path[0], path[1:]
    if head in _NESTED or head == "optim":
        if len(rest) != 1 or (head in _NESTED and rest[0] not in _NESTED[head]):
            raise ValueError(f"override '{text}': expected {head}.<field>")
        sub = dict(overrides.get(head, {}) if isinstance(overrides.get(head), dict) else {})
        sub[rest[0]] = value
        overrides[head] = sub
    elif rest:
        raise ValueError(f"override '{text}': '{head}' has no sub-fields")
    else:
        overrides[head] = value
    return overrides


# ---------------------------------------------------------------- registry

RECIPES: Registry[Callable[[str], Recipe]] = Registry("recipe")


def register_recipe(name: str) -> Callable[[Callable[[str], Recipe]], Callable[[str], Recipe]]:
    """Decorator for a base recipe factory `(scale) -> Recipe`; refuses duplicates."""
    return RECIPES.register(name)


def recipes() -> dict[str, Callable[[str], Recipe]]:
    """Every registered base recipe: the shared ones in harness/zoo.py and those of plug-ins."""
    return RECIPES.all()


def get_recipe(name: str, scale: str) -> Recipe:
    factory = RECIPES.get(name)  # an unknown name raises, listing the known ones
    if scale not in SCALES:
        raise ValueError(f"scale '{scale}' is not one of {', '.join(SCALES)}")
    return factory(scale)
