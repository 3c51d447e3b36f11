"""The combinability matrix: do two registered techniques stack, and by how much?

`effitrain matrix` runs, on one shared recipe, the baseline, every technique
alone and every pair that composes, over the same seeds, then reports for each
pair (DESIGN.md, "Combinability"):

- a static verdict first, from what the techniques declare (`conflict_reason`:
  explicit conflicts with their notes, two owners of the number format, two
  owners of the optimizer). Such pairs are not run; two techniques whose layer
  surgeries clash must declare it (e.g. crs with activation_grad_pruning);
- for pairs that compose: speedups S_A, S_B, S_AB of the median time to target
  against the shared baseline with bootstrap intervals over seeds, the
  interaction S_AB / (S_A * S_B) (about 1: stacks, above: synergy, below:
  overlap) and the accuracy change of the pair against the sum of the singles'.

Which recipe: every surveyed paper trained its own dataset and model, so the
pairs run on one recipe chosen in params.yaml (`combine.recipe`, MNIST's small
CNN by default) and every S is measured against one baseline, which is what
makes the interaction a ratio of like with like.

Composition order within a pair is `harness.techniques.compose`'s: ascending
`Technique.order`, then name.

Every (arm, seed) is one job of the shared pipeline (harness/experiments/jobs.py): a job whose
key matches a recorded run is read back, not rerun; jobs go to an executor (in-process, local
processes or Ray); reference arms (distillation's teacher) run first and their trained weights
travel to the jobs that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from harness.data.registry import spec_of
from harness.experiments.executors import EXECUTORS, threads_per_job
from harness.experiments.jobs import Job, Outcome, code_files
from harness.experiments.progress import Progress
from harness.experiments.reproduce import interleaved, run_phases
from harness.recipes import Arm, Recipe, apply_overrides, get_recipe
from harness.runner import validate
from harness.techniques import conflict_reason, get_technique, techniques
from harness.train.strategy import check_batch, check_devices, launch

__all__ = ["EXECUTORS", "EXPERIMENT", "Plan", "arm_name", "make_plan", "plan_code_files", "recipe_rule", "run_matrix"]

EXPERIMENT = "effitrain/matrix"
TEACHER = "teacher"


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Plan:
    """What a matrix runs: the recipe with its arms, the technique names and the pairs' static verdicts."""

    recipe_name: str
    scale: str
    overrides: tuple[str, ...]
    names: tuple[str, ...]
    pairs: tuple[tuple[str, str, str | None], ...]  # (a, b, reason it cannot compose or None)
    recipe: Recipe = field(repr=False)
    target_rule: str | None = None  # how the target was fixed (harness.experiments.preregister.apply)
    left_out: tuple[tuple[str, str], ...] = ()  # (technique, why it cannot run on the recipe's model)

    @property
    def aa_arm(self) -> str | None:
        """The baseline's A/A control arm, when the plan has one."""
        return next((a.name for a in self.recipe.arms if a.replicate_of), None)

    @property
    def arms(self) -> tuple[Arm, ...]:
        return self.recipe.arms

    # What harness.results.combinability says about the techniques, so that it needs no technique registry.
    @property
    def papers(self) -> dict[str, str | None]:
        """Technique -> the paper id of its card (None without a card)."""
        return {n: _paper_of(n) for n in self.names}

    @property
    def origins(self) -> dict[str, str]:
        """Technique -> where it comes from: "crs from adelman2018_... (cifar10)"."""
        return {n: _origin(n) for n in self.names}

    @property
    def composition_order(self) -> tuple[str, ...]:
        return tuple(c.name for c in sorted(map(get_technique, self.names), key=lambda c: (c.order, c.name)))

    @property
    def rule(self) -> str:
        return recipe_rule(self)

    def arm_name(self, a: str, b: str) -> str:
        return arm_name((a, b))


def arm_name(names: tuple[str, ...] | list[str]) -> str:
    """The arm of a combination: its techniques in composition order (`compose`'s), joined by '+'."""
    return "+".join(c.name for c in sorted(map(get_technique, names), key=lambda c: (c.order, c.name)))


def make_plan(recipe_name: str, scale: str, overrides: list[str] | tuple[str, ...] = (),
              names: list[str] | None = None, settings: dict[str, dict[str, Any]] | None = None, *,
              aa_control: bool = True, preregistered: dict[str, Any] | None = None,
              preregistered_path: Any = None) -> Plan:
    """Build the matrix recipe; raises ValueError on an unknown technique, recipe, override or setting.

    `settings` maps a technique to the keyword arguments it runs with in every arm it is part of
    (params.yaml's combine.settings); a technique without one runs with its constructor's defaults.
    With `aa_control` the baseline runs twice per seed (`baseline_aa`, the timing noise floor). A
    `preregistered` record (`effitrain calibrate matrix`) sets the target; it must have been made for
    the same recipe, scale and overrides. Its tuned settings spread (`spread_tuning`): the baseline's hold
    for every arm, a technique's for every arm that runs it; a pair whose techniques were tuned to different
    values of one setting is not run (it would need its own tuning).
    """
    known = list(techniques())
    chosen = list(dict.fromkeys(names)) if names else known
    for n in chosen:
        get_technique(n)  # unknown name -> ValueError listing the known ones
    chosen = [c.name for c in sorted((get_technique(n) for n in chosen), key=lambda c: c.name)]
    base = apply_overrides(get_recipe(recipe_name, scale), list(overrides))
    left_out = _unsupported(base, chosen)
    if names and left_out:
        raise ValueError(f"technique '{left_out[0][0]}' cannot run on recipe '{recipe_name}': {left_out[0][1]}")
    chosen = [n for n in chosen if n not in dict(left_out)]
    tuned = tuned_settings(preregistered.get("overrides", []) if preregistered else [], chosen)
    pairs = tuple((a, b, conflict_reason(get_technique(a), get_technique(b)) or tuning_conflict(tuned, a, b))
                  for i, a in enumerate(chosen) for b in chosen[i + 1:])
    arms = [Arm("baseline", description=f"{base.description}, no technique")]
    if any(TEACHER in get_technique(n).needs_arms for n in chosen):
        arms.insert(0, Arm(TEACHER, reference=True, description="the baseline configuration trained first on "
                           "each seed, as distillation's teacher; its time is not counted"))
    settings = dict(settings or {})
    for n in settings:
        get_technique(n)  # a setting for a technique not chosen is kept for later, a misspelt one refused

    def kw(*ns: str) -> dict[str, dict[str, Any]]:
        return {n: dict(settings[n]) for n in ns if settings.get(n)}

    arms += [Arm(n, techniques=(n,), description=f"{n} alone", technique_kwargs=kw(n)) for n in chosen]
    arms += [Arm(arm_name((a, b)), techniques=(a, b), description=f"{a} with {b}", technique_kwargs=kw(a, b))
             for a, b, why in pairs if not why]
    recipe = replace(base, arms=tuple(arms), baseline_arm="baseline", paper=None)
    recipe = recipe.with_aa_control() if aa_control else recipe
    rule = None
    if preregistered is not None:
        from harness.experiments import preregister

        made_for = preregistered.get("recipe")
        if made_for != {"name": recipe_name, "overrides": list(overrides)}:
            raise ValueError(f"{preregistered_path}: pre-registered for {made_for}, not recipe '{recipe_name}' with "
                             f"{list(overrides)}; rerun effitrain calibrate matrix")
        recipe, rule = preregister.apply(recipe, preregistered, preregistered_path,
                                         overrides=spread_tuning(tuned, recipe.arms))
    validate(recipe, [0])  # checks every arm's technique kwargs against the constructors
    return Plan(recipe_name, scale, tuple(overrides), tuple(chosen), pairs, recipe, rule, tuple(left_out))


def _unsupported(recipe: Recipe, names: list[str]) -> list[tuple[str, str]]:
    """The techniques that say they cannot run on the recipe's model (an `unsupported(model)` that returns why,
    as Early-Bird's without BatchNorm scales), with the reason."""
    checks = [(n, check) for n in names if (check := getattr(get_technique(n), "unsupported", None)) is not None]
    if not checks:
        return []
    spec = spec_of(recipe.dataset)
    model = recipe.model(spec.input_shape, spec.num_classes)
    return [(n, why) for n, check in checks if (why := check(model))]


def tuned_settings(overrides: list[str], names: list[str]) -> dict[str, dict[str, str]]:
    """`ARM.KEY=VALUE` overrides of a matrix pre-registration, by the arm they were tuned on ("baseline" or a
    technique's single arm): {arm: {KEY: VALUE}}. Other arms cannot have been tuned."""
    out: dict[str, dict[str, str]] = {}
    for text in overrides:
        key, _, value = text.partition("=")
        arm, _, rest = key.partition(".")
        if arm != "baseline" and arm not in names:
            raise ValueError(f"pre-registered setting '{text}' was tuned on arm '{arm}', which is neither the "
                             f"baseline nor a single technique of this matrix")
        out.setdefault(arm, {})[rest] = value
    return out


def tuning_conflict(tuned: dict[str, dict[str, str]], a: str, b: str) -> str | None:
    """Why a pair cannot run at its techniques' tuned settings: both were tuned on one setting to different values."""
    clash = [f"{k}: {a} {tuned[a][k]}, {b} {tuned[b][k]}" for k in sorted(set(tuned.get(a, {})) & set(tuned.get(b, {})))
             if tuned[a][k] != tuned[b][k]]
    return (f"'{a}' and '{b}' were tuned to different values of one setting ({'; '.join(clash)}); the pair would "
            "need tuning of its own") if clash else None


def spread_tuning(tuned: dict[str, dict[str, str]], arms: tuple[Arm, ...]) -> list[str]:
    """Recipe overrides from the tuned settings: the baseline's for the whole recipe (every arm shares the
    baseline's setting), then each technique's for every arm that runs it."""
    out = [f"{k}={v}" for k, v in tuned.get("baseline", {}).items()]
    for arm in arms:
        for t in arm.techniques:
            out += [f"{arm.name}.{k}={v}" for k, v in tuned.get(t, {}).items()]
    return out


def recipe_rule(plan: Plan) -> str:
    """Which recipe the pairs ran on and why, in words."""
    papers = sorted({_paper_of(n) for n in plan.names} - {None})
    return (f"Every arm ran on the recipe '{plan.recipe_name}' ({plan.recipe.description}) at {plan.scale} scale"
            + (f" with {', '.join(plan.overrides)}" if plan.overrides else "")
            + f". The techniques come from {len(papers)} papers that each trained their own dataset and model, "
              "so a pair rarely has a recipe of its own to share; one recipe for all gives S_A, S_B and S_AB "
              "the same baseline, which the interaction S_AB / (S_A * S_B) needs. It is set by "
              "combine.recipe in params.yaml (or --recipe)."
            + "".join(f" Left out: {n}, which cannot run on this recipe's model ({why})." for n, why in plan.left_out))


def _paper_of(name: str) -> str | None:
    """The paper id of a technique's card, or None."""
    card = get_technique(name).card
    return card.id if card else None


def _origin(name: str) -> str:
    """A technique and the paper and datasets it comes from, for the pairs' recipe notes."""
    card = get_technique(name).card
    return f"{name} from {card.id} ({', '.join(card.datasets)})" if card else f"{name} (no paper card)"


# ---------------------------------------------------------------- running

def plan_code_files(plan: Plan) -> dict[str, str]:
    """The source the plan's runs execute (`jobs.code_files` merged over its arms), as the matrix's provenance
    records it: the report checks these files to mark the matrix stale, as it does a paper's table."""
    files: dict[str, str] = {}
    for arm in plan.arms:
        files.update(code_files(Job(plan.recipe, arm.name, 0, EXPERIMENT)))
    return dict(sorted(files.items()))


def run_matrix(plan: Plan, seeds: list[int], executor: str = "inprocess", workers: int | None = None,
               data_root: str = "datasets", tracking_uri: str | None = None, ray_address: str | None = None,
               progress: bool | None = None, parent_run_id: str | None = None, rerun: bool = False,
               resume: bool = False, devices: int = 1) -> dict[tuple[str, int], Outcome]:
    """Every arm of the plan over the seeds, through the job pipeline; outcomes by (arm, seed).

    A run that fails or diverges is an outcome (and later a verdict), not the end of the matrix. With
    `devices` > 1 each job trains data-parallel (harness.train.strategy); only rank 0 logs and reports progress.
    """
    check_devices(devices, executor)
    for arm in plan.arms:
        check_batch(plan.recipe.for_arm(arm).batch_size, devices, f"recipe {plan.recipe_name}, arm {arm.name}")
    lead = launch(devices) == 0
    tracking_uri = tracking_uri if lead else None
    if tracking_uri:  # create the store and experiment once, before workers open it concurrently
        from harness.tracking import Tracker

        Tracker(tracking_uri)._experiment(EXPERIMENT)
    jobs = [Job(plan.recipe, arm.name, seed, EXPERIMENT, data_root, tracking_uri, parent_run_id,
                {"matrix.recipe": plan.recipe_name}, threads=threads_per_job(executor, workers), rerun=rerun,
                resume=resume, devices=devices) for seed in seeds for arm in interleaved(plan.recipe, seed)]
    bar = Progress(len(jobs), "matrix", quiet=progress is False or not lead)
    return run_phases(jobs, executor, workers, ray_address, bar, fail_fast=False)
