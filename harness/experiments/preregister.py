"""Pre-registered targets and tuning (DESIGN.md, "Targets and tuning are pre-registered").

`effitrain calibrate PAPER` runs, before any reported run, the recipe's baseline arms on calibration
seeds (from CALIBRATION_SEED on, disjoint from the reported seeds 0..N-1) and, with `--tune`, a grid of
hyperparameters for named arms, each given the same number of trials. Only validation data decides:
a trial's score and the baselines' targets are read from the final validation metric, never the test
set. The outcome goes to `reports/preregistered/<paper>/<scale>.json`, committed before the reported
runs; `effitrain reproduce` reads it (`apply`), and the table names the rule it followed.

Target rule (written down before any technique arm runs): a baseline arm's target is its final validation
error, the median over the calibration seeds, plus 10%: for accuracy, 1 - 1.1 x (1 - median accuracy),
rounded down to 0.001; for a `min` metric (loss, errors), 1.1 x the median, rounded up. A target relative
to the error, not to the accuracy, stays near the end of training on saturated tasks (on MNIST, 0.99 x
98.2% = 97.2% is reached in the first sixth of the run; 1 - 1.1 x 1.8% = 98.0% near its end). Arms that
race against a baseline race to that baseline's target.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.recipes import Recipe, apply_overrides

__all__ = ["CALIBRATION_SEED", "MARGIN", "RULE", "apply", "calibrate", "check_seeds", "load", "parse_grid",
           "path_for", "target_from"]

CALIBRATION_SEED = 1000  # calibration seeds are 1000, 1001, ...; reported seeds must stay below
MARGIN = 0.1  # the target allows 10% more error than the baseline's final
RULE = ("target = the baseline's final validation error (median over the calibration seeds) plus 10%: accuracy "
        "1 - 1.1 x (1 - median), rounded down to 0.001; a loss or error count 1.1 x median, rounded up")
FORMAT = 1


def path_for(root: str | Path, paper: str, scale: str) -> Path:
    return Path(root) / paper / f"{scale}.json"


def check_seeds(seeds: list[int]) -> None:
    """Reported seeds never overlap the calibration seeds."""
    if any(s >= CALIBRATION_SEED for s in seeds):
        raise ValueError(f"reported seeds must be below {CALIBRATION_SEED}: seeds from {CALIBRATION_SEED} on are "
                         f"the calibration seeds that fixed targets and hyperparameters")


def target_from(values: list[float], mode: str) -> float:
    """The written rule applied to the baseline's final validation values over the calibration seeds."""
    med = float(np.median(values))
    if mode == "max":  # an accuracy in [0, 1]: its error 1 - med grows by MARGIN
        return math.floor(round((1 - (1 + MARGIN) * (1 - med)) * 1000, 6)) / 1000
    return math.ceil(round(med * (1 + MARGIN) * 1000, 6)) / 1000


def parse_grid(text: str) -> tuple[str, str, list[Any]]:
    """`ARM:KEY=v1,v2,...` -> (arm, key, values), values parsed as YAML (`sgd_large:optim.lr=1,2,4`)."""
    import yaml

    arm, sep, rest = text.partition(":")
    key, eq, values = rest.partition("=")
    if not sep or not eq or not arm or not key or not values:
        raise ValueError(f"--tune '{text}' is not of the form ARM:KEY=V1,V2,... (e.g. sgd_large:optim.lr=1,2,4)")
    return arm, key, [yaml.safe_load(v) for v in values.split(",")]


def _grids(recipe: Recipe, tune: list[str]) -> dict[str, list[list[str]]]:
    """arm -> the list of trials, each a list of `arm.key=value` overrides (the grid's product)."""
    by_arm: dict[str, dict[str, list[Any]]] = {}
    for text in tune:
        arm, key, values = parse_grid(text)
        recipe.arm(arm)  # an unknown arm raises, naming the known ones
        by_arm.setdefault(arm, {})[key] = values
    grids = {arm: [[f"{arm}.{k}={v}" for k, v in zip(spec, combo)] for combo in itertools.product(*spec.values())]
             for arm, spec in by_arm.items()}
    sizes = {arm: len(g) for arm, g in grids.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"--tune gives the arms unequal tuning budgets ({sizes}); the protocol gives every tuned "
                         f"arm the same number of trials")
    return grids


def calibrate(recipe: Recipe, seeds: int, tune: list[str], *, paper: str, out: Path, data_root: str = "datasets",
              executor: str = "inprocess", workers: int | None = None, tracking_uri: str | None = None,
              command: str = "", quiet: bool = True, made_for: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tune the named arms, then run every baseline arm at its chosen setting; write and return the record.

    `made_for` (the matrix's recipe name and overrides) is kept in the record, so a record is never applied
    to a recipe it was not calibrated on."""
    from harness.experiments.jobs import Job
    from harness.experiments.progress import Progress
    from harness.experiments.reproduce import run_phases
    from harness.runner import _instantiate, arm_order, baseline_of, validate

    cal_seeds = list(range(CALIBRATION_SEED, CALIBRATION_SEED + seeds))
    grids = _grids(recipe, tune)
    validate(recipe, cal_seeds)
    experiment = f"effitrain/{paper}/calibration"
    bases = [a for a in arm_order(recipe) if not a.reference and not a.replicate_of
             and a.name in {baseline_of(recipe, x) for x in recipe.arms}]

    def run(rec: Recipe, arms: list[str], fail_fast: bool = True) -> dict[tuple[str, int], Any]:
        """The arms on the calibration seeds, with the reference arms their techniques learn from."""
        needed = {ref for arm in arms for t in _instantiate(rec.arm(arm)) for ref in t.needs_arms}
        names = [a.name for a in rec.arms if a.name in needed and a.name not in arms] + arms
        jobs = [Job(rec, arm, s, experiment, data_root, tracking_uri, None, {"tag": "calibration"})
                for s in cal_seeds for arm in names]
        # Calibration decides on validation data only, so its progress lines show validation accuracy.
        return run_phases(jobs, executor, workers,
                          progress=Progress(len(jobs), f"{paper} calibration", quiet, split="val"), fail_fast=fail_fast)

    def final(outcomes: dict, arm: str, metric: str) -> list[float]:
        results = [outcomes[(arm, s)]["result"] for s in cal_seeds]
        capped = [s for s, r in zip(cal_seeds, results) if r.get("capped")]
        if capped:  # a guard-stopped run ends short of its budget: its accuracy would set a target too low
            raise ValueError(f"calibration run {arm} seed(s) {capped} hit the training-time guard before the end of "
                             "its budget (a busy machine?); rerun effitrain calibrate on a quiet machine")
        return [r["final"][metric] for r in results]

    tuning, chosen = {}, []
    for arm, trials in grids.items():
        metric, mode = recipe.for_arm(recipe.arm(arm)).target.metric, recipe.for_arm(recipe.arm(arm)).target.mode
        metric = metric.replace("test/", "val/")  # tuning never reads the test set
        rows = []
        for overrides in trials:  # a trial that diverges or fails is a result of the grid, not the end of it
            outcomes = run(apply_overrides(recipe, overrides), [arm], fail_fast=False)
            broken = [f"seed {s}: {outcomes[(arm, s)]['error']}" for s in cal_seeds if outcomes[(arm, s)]["error"]]
            if broken:
                rows.append({"overrides": overrides, "values": None, "median": None, "train_seconds": None,
                             "error": broken[0]})
                continue
            values = final(outcomes, arm, metric)
            rows.append({"overrides": overrides, "values": values, "median": float(np.median(values)),
                         "train_seconds": sum(outcomes[(arm, s)]["result"]["train_seconds"] for s in cal_seeds)})
        scored = [r for r in rows if r["median"] is not None]
        if not scored:
            raise ValueError(f"every trial of {arm}'s grid diverged or failed ({rows[0]['error']}); widen the grid")
        best = (max if mode == "max" else min)(scored, key=lambda r: r["median"])
        chosen += best["overrides"]
        runs = len(trials) * len(cal_seeds)
        tuning[arm] = {"metric": metric, "trials": rows, "chosen": best["overrides"],
                       "budget": f"{len(trials)} settings x {len(cal_seeds)} seeds = {runs} runs"}
    tuned = apply_overrides(recipe, chosen)
    outcomes = run(tuned, [a.name for a in bases])
    targets = {}
    for arm in bases:
        t = tuned.for_arm(arm).target
        metric = t.metric.replace("test/", "val/")
        values = final(outcomes, arm.name, metric)
        targets[arm.name] = {"metric": t.metric, "mode": t.mode, "value": target_from(values, t.mode),
                             "calibration_metric": metric, "values": values, "recipe_value": t.value}
    record = {"format": FORMAT, "paper": paper, "scale": recipe.scale, "rule": RULE, "seeds": cal_seeds,
              "command": command, "created": datetime.now(UTC).isoformat(timespec="seconds"),
              "targets": targets, "tuning": tuning, "overrides": chosen}
    if made_for is not None:
        record["recipe"] = made_for
    from harness.results.schema import write_json

    write_json(record, out)
    return record


def load(path: Path) -> dict[str, Any] | None:
    """The pre-registration record at `path`, or None when there is none."""
    import json

    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT or not isinstance(record.get("targets"), dict):
            raise ValueError("unknown format")
        return record
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable pre-registration record ({exc}); rerun effitrain calibrate") from None


def apply(recipe: Recipe, record: dict[str, Any] | None, path: Path | None = None,
          overrides: list[str] | None = None) -> tuple[Recipe, str]:
    """The recipe with its pre-registered hyperparameters and targets, and the sentence the table prints.

    `overrides` replaces the record's tuned settings as applied (the matrix spreads them over its arms);
    the sentence names the record's own."""
    from harness.runner import baseline_of

    if record is None:
        return recipe, "the recipe's own target (not calibrated: no pre-registration record)"
    if record["scale"] != recipe.scale:
        raise ValueError(f"{path}: pre-registered for scale {record['scale']}, not {recipe.scale}")
    recipe = apply_overrides(recipe, list(record.get("overrides", []) if overrides is None else overrides))
    targets = record["targets"]
    arms = []
    for arm in recipe.arms:
        base = arm.name if arm.name in targets else baseline_of(recipe, arm)  # a baseline keeps its own
        if base in targets and not arm.reference:
            own = dict(arm.overrides)
            own["target"] = {**(own.get("target") or {}), "value": targets[base]["value"]}
            arm = replace(arm, overrides=own)
        arms.append(arm)
    recipe = replace(recipe, arms=tuple(arms))
    if recipe.baseline_arm in targets:
        recipe = replace(recipe, target=replace(recipe.target, value=targets[recipe.baseline_arm]["value"]))
    seeds = record["seeds"]
    tuned = "; tuned on validation: " + ", ".join(record["overrides"]) if record.get("overrides") else ""
    where = f" ({path})" if path else ""
    return recipe, (f"pre-registered{where}: {record['rule']}; calibration seeds {seeds[0]}-{seeds[-1]}, "
                    f"created {record['created']}{tuned}")
