"""A recipe's arms over seeds -> jobs -> one results table. `effitrain reproduce` and `run` come here.

Jobs run in two phases: the reference arms (a distillation teacher) of every seed first, then every
other arm, each job given its seed's trained references. The table is built from the outcomes,
whichever executor produced them, and is logged with the command's parent MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness import data as datamod
from harness.cards import PaperCard
from harness.experiments.executors import execute, threads_per_job
from harness.experiments.jobs import Job, Outcome, RunFailedError, with_references
from harness.experiments.progress import Progress
from harness.experiments.session import parent_run
from harness.measure import bootstrap_interval, claim_verdict, speedup
from harness.recipes import Recipe
from harness.runner import RunResult, arm_order, baseline_of, validate
from harness.tracking import Tracker, provenance
from harness.train.strategy import check_batch, check_devices, launch

__all__ = ["describe_budget", "judge_claims", "run_phases", "run_recipe"]


def run_phases(jobs: list[Job], executor: str = "inprocess", workers: int | None = None,
               ray_address: str | None = None, progress: Progress | None = None,
               fail_fast: bool = True) -> dict[tuple[str, int], Outcome]:
    """Run reference-arm jobs first, then the rest with their seed's references; outcomes by (arm, seed).

    With `fail_fast` the first failed or diverged job stops the command (the executors stop the others):
    a paper's table needs every run. The matrix passes False and turns failures into verdicts.
    """
    outcomes: dict[tuple[str, int], Outcome] = {}
    refs = [j for j in jobs if j.recipe.arm(j.arm).reference]
    rest = [j for j in jobs if not j.recipe.arm(j.arm).reference]
    for phase in (refs, rest):
        phase = [with_references(j, outcomes) for j in phase] if phase is rest and refs else phase
        for out in execute(phase, executor, workers, ray_address):
            outcomes[(out["arm"], out["seed"])] = out
            if progress:
                progress.update(out)
            if fail_fast and out["error"]:
                raise (FloatingPointError if out["diverged"] else RunFailedError)(
                    f"{out['arm']} seed {out['seed']}: {out['error']}")
    return outcomes


def run_recipe(recipe: Recipe, seeds: list[int], card: PaperCard | None = None, *, command: str = "",
               tag: str = "full", name: str | None = None, tracking_uri: str | None = None,
               data_root: str = "datasets", executor: str = "inprocess", workers: int | None = None,
               ray_address: str | None = None, rerun: bool = False, resume: bool = False, quiet: bool = True,
               out_path: str | Path | None = None, devices: int = 1) -> dict[str, Any]:
    """Run every arm over every seed; return the results table (and write it to `out_path` if given).

    With `devices` > 1 each job trains data-parallel over that many processes (started here, see
    harness.train.strategy); every rank returns the table, only rank 0 logs, reports progress and writes it.
    """
    validate(recipe, seeds)
    check_devices(devices, executor)
    for arm in recipe.arms:
        check_batch(recipe.for_arm(arm).batch_size, devices, f"recipe {recipe.name}, arm {arm.name}")
    lead = launch(devices) == 0
    label = name or recipe.paper or recipe.name
    experiment = f"effitrain/{label}"
    tracking_uri = tracking_uri if lead else None
    tracker = Tracker(tracking_uri) if tracking_uri else None
    params = {"recipe": recipe.name, "scale": recipe.scale, "seeds": len(seeds), "tag": tag, "executor": executor}
    with parent_run(tracker, experiment, f"{label} {recipe.scale}-{tag}", params,
                    {"command": command, "paper": recipe.paper or "", "tag": tag}) as parent:
        jobs = [Job(recipe, arm.name, seed, experiment, data_root, tracking_uri, parent, {"tag": tag},
                    threads=threads_per_job(executor, workers), rerun=rerun, resume=resume, devices=devices,
                    log_evals=not quiet and executor == "inprocess")  # in-run progress, where lines do not mix
                for seed in seeds for arm in arm_order(recipe)]
        outcomes = run_phases(jobs, executor, workers, ray_address, Progress(len(jobs), label, quiet or not lead))
        results = {a.name: [RunResult.from_row(outcomes[(a.name, s)]["result"]) for s in seeds]
                   for a in arm_order(recipe)}
        # As the file will hold it (tuples as lists), so what is returned and what is written agree.
        table = json.loads(json.dumps(_table(recipe, seeds, results, card, command, tag, name, data_root),
                                      default=float))
        if out_path is not None and lead:
            _write(table, Path(out_path), tracker, parent)
    return table


def _write(table: dict[str, Any], out_path: Path, tracker: Tracker | None, parent: str | None) -> None:
    """The table, its DVC metrics and curves beside it; with MLflow, all of them and the time-to-accuracy
    figure as artifacts of the command's parent run."""
    from harness.report.figures import tta_png
    from harness.results.exports import write_exports
    from harness.results.schema import ResultsTable, write_table

    write_table(table, out_path)
    exports = write_exports(table, out_path)
    if tracker and parent:
        tracker.log_artifact(parent, out_path, "results")
        for path in exports:
            tracker.log_artifact(parent, path, "results" if path.suffix == ".json" else f"results/{path.parent.name}")
        tracker.log_bytes(parent, tta_png(ResultsTable.from_dict(table)), "figures/tta.png")


def _table(recipe: Recipe, seeds: list[int], results: dict[str, list[RunResult]], card: PaperCard | None,
           command: str, tag: str, name: str | None, data_root: str) -> dict[str, Any]:
    arms = arm_order(recipe)

    def times(arm: str) -> list[float | None]:
        return [r.time_to_target_s for r in results[arm]]

    bases = {baseline_of(recipe, a) for a in arms}  # a baseline is not raced against another baseline
    speedups = {a.name: {**speedup(times(baseline_of(recipe, a)), times(a.name)), "baseline": baseline_of(recipe, a)}
                for a in arms if not a.reference and a.name not in bases}
    data_md5 = datamod.load_dataset(recipe.dataset, data_root).md5  # memoised: the jobs loaded it already
    return {
        "paper": name or recipe.paper or recipe.name, "scale": recipe.scale, "tag": tag,
        "card": card.summary_dict() if card else {"title": recipe.name, "authors": "", "venue": "", "year": None,
                                                   "arxiv": None, "url": None, "summary": recipe.description},
        "budget": describe_budget(recipe, tag), "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
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


def describe_budget(recipe: Recipe, tag: str) -> str:
    """The budget line of a results table, from the effective (overridden) per-arm budgets."""
    text = f"{recipe.scale} scale ({tag}): {recipe.description}; budget {recipe.budget.describe()}"
    own = [f"{a.name} {recipe.for_arm(a).budget.describe()}" for a in recipe.arms
           if recipe.for_arm(a).budget != recipe.budget]
    return text + (f" ({'; '.join(own)})" if own else "") + f"; batch {recipe.batch_size}"


def judge_claims(card: PaperCard, recipe: Recipe, results: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    """Measured value, bootstrap interval and verdict for each claim of the card."""
    out = []
    for claim in card.claims:
        row = asdict(claim)
        row.update(measured=None, low=None, high=None)
        arms_needed = [claim.arm] + ([claim.minus_arm] if claim.minus_arm else [])
        if recipe.scale not in claim.scales or any(a not in results for a in arms_needed):
            out.append({**row, "verdict": "not run at this scale"})
        elif claim.metric == "speedup":  # time to target against the arm's baseline, over seeds
            out.append({**row, **_speedup_claim(claim, recipe, results)})
        elif any(claim.metric not in r.final for a in arms_needed for r in results[a]):
            out.append({**row, "verdict": "not measured"})
        else:
            out.append({**row, **_value_claim(claim, results)})
    return out


def _value_claim(claim: Any, results: dict[str, list[RunResult]]) -> dict[str, Any]:
    values = [r.final[claim.metric] for r in results[claim.arm]]
    if claim.minus_arm:
        others = {r.seed: r.final[claim.metric] for r in results[claim.minus_arm]}
        values = [v - others[r.seed] for v, r in zip(values, results[claim.arm])]
    measured = float(np.median(values))
    low, high = bootstrap_interval(values) if len(values) > 1 else (None, None)  # one seed: no interval
    bounds = (low, high) if low is not None else (measured, measured)
    return {"measured": measured, "low": low, "high": high,
            "verdict": claim_verdict(claim.claimed, claim.tolerance, *bounds)}


def _speedup_claim(claim: Any, recipe: Recipe, results: dict[str, list[RunResult]]) -> dict[str, Any]:
    base = baseline_of(recipe, recipe.arm(claim.arm))
    sp = speedup([r.time_to_target_s for r in results[base]], [r.time_to_target_s for r in results[claim.arm]])
    if sp["speedup"] is None:
        return {"measured": None, "low": None, "high": None, "verdict": sp["verdict"]}
    low, high = (sp["low"], sp["high"]) if sp["low"] is not None else (sp["speedup"], sp["speedup"])
    return {"measured": sp["speedup"], "low": sp["low"], "high": sp["high"],
            "verdict": claim_verdict(claim.claimed, claim.tolerance, low, high)}
