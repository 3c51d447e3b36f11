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
from harness.experiments.jobs import Job, Outcome, RunFailedError, code_files, code_hash, with_references
from harness.experiments.progress import Progress
from harness.experiments.session import parent_run
from harness.measure import COLLAPSE
from harness.recipes import Arm, Recipe
from harness.results.stats import (
    MIN_SEEDS,
    claim_verdict,
    for_fidelity,
    interval_method,
    median_interval,
    noise_floor,
    ordering_verdict,
    paired_differences,
    seconds_per_step,
    speedup,
    summarise_values,
)
from harness.runner import RunResult, arm_order, baseline_of, validate
from harness.tracking import Tracker, provenance
from harness.train.strategy import check_batch, check_devices, launch

__all__ = ["arm_speedup", "describe_budget", "interleaved", "judge_claims", "run_phases", "run_recipe"]


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
               out_path: str | Path | None = None, devices: int = 1, aa_control: bool = True,
               target_rule: str | None = None) -> dict[str, Any]:
    """Run every arm over every seed; return the results table (and write it to `out_path` if given).

    With `aa_control` the baseline arm runs twice per seed (its A/A control, `<baseline>_aa`), which
    gives the table its timing noise floor. Within each seed the arms run in an order drawn from the
    seed (`interleaved`), so a burst of machine load does not fall on one arm. With `devices` > 1 each
    job trains data-parallel over that many processes (started here, see harness.train.strategy); every
    rank returns the table, only rank 0 logs, reports progress and writes it.
    """
    recipe = recipe.with_aa_control() if aa_control else recipe
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
                for seed in seeds for arm in interleaved(recipe, seed)]
        outcomes = run_phases(jobs, executor, workers, ray_address, Progress(len(jobs), label, quiet or not lead))
        results = {a.name: [RunResult.from_row(outcomes[(a.name, s)]["result"]) for s in seeds]
                   for a in arm_order(recipe)}
        files: dict[str, str] = {}
        for job in jobs:
            files.update(code_files(job))
        # As the file will hold it (tuples as lists), so what is returned and what is written agree.
        table = json.loads(json.dumps(_table(recipe, seeds, results, card, command, tag, name, data_root, files,
                                             target_rule), default=float))
        if out_path is not None and lead:
            _write(table, Path(out_path), tracker, parent)
    return table


def interleaved(recipe: Recipe, seed: int) -> list[Arm]:
    """The seed's arms in the order they run: reference arms first (others learn from them), then the rest
    in an order drawn from the seed, so arms share the machine's good and bad moments alike."""
    arms = arm_order(recipe)
    refs, rest = [a for a in arms if a.reference], [a for a in arms if not a.reference]
    order = np.random.default_rng([seed, 0xA4]).permutation(len(rest))
    return refs + [rest[i] for i in order]


def _write(table: dict[str, Any], out_path: Path, tracker: Tracker | None, parent: str | None) -> None:
    """The table, its DVC metrics and curves beside it; with MLflow, all of them and the time-to-accuracy
    figure as artifacts of the command's parent run."""
    from harness.report.figures import tta_plot
    from harness.results.exports import write_exports
    from harness.results.schema import ResultsTable, write_table

    write_table(table, out_path)
    exports = write_exports(table, out_path)
    if tracker and parent:
        tracker.log_artifact(parent, out_path, "results")
        for path in exports:
            tracker.log_artifact(parent, path, "results" if path.suffix == ".json" else f"results/{path.parent.name}")
        tracker.log_bytes(parent, tta_plot(ResultsTable.from_dict(table)), "figures/tta.png")


def _table(recipe: Recipe, seeds: list[int], results: dict[str, list[RunResult]], card: PaperCard | None,
           command: str, tag: str, name: str | None, data_root: str, files: dict[str, str],
           target_rule: str | None) -> dict[str, Any]:
    arms = arm_order(recipe)
    data = datamod.load_dataset(recipe.dataset, data_root)  # memoised: the jobs loaded it already
    aa = next((a for a in arms if a.replicate_of), None)
    floor = None
    if aa is not None:
        def clock(arm: str) -> list[float]:
            return [seconds_per_step(r.train_seconds, r.steps) for r in results[arm]]
        floor = noise_floor(clock(aa.replicate_of), clock(aa.name))
    bases = {baseline_of(recipe, a) for a in arms}  # a baseline is not raced against another baseline
    speedups = {a.name: {**arm_speedup(results[baseline_of(recipe, a)], results[a.name], floor),
                         "baseline": baseline_of(recipe, a)}
                for a in arms if not a.reference and not a.replicate_of and a.name not in bases}
    flagged = {kind: [f"{r.arm} seed {r.seed}" for a in arms for r in results[a.name] if getattr(r, kind)]
               for kind in ("capped", "collapsed")}
    prov = provenance(data.md5)
    prov.update(code_hash=code_hash(files), code_files=dict(sorted(files.items())))
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
                          "fidelity": a.fidelity, "fidelity_note": a.fidelity_note, "replicate_of": a.replicate_of,
                          "runs": [r.row() for r in results[a.name]]} for a in arms},
        "speedups": speedups,
        "claims": judge_claims(card, recipe, results, floor) if card else [],
        "provenance": prov,
        "protocol": {"min_seeds": MIN_SEEDS, "interval_method": interval_method(len(seeds)),
                     "coverage": median_interval(list(range(len(seeds))))[2] if len(seeds) >= MIN_SEEDS else None,
                     "noise_floor": floor, "aa_arm": aa.name if aa else None,
                     "arm_order": "reference arms first, then the arms of each seed in an order drawn from the seed",
                     "classes": data.num_classes, "collapse_accuracy": COLLAPSE / data.num_classes,
                     "capped_runs": flagged["capped"], "collapsed_runs": flagged["collapsed"],
                     "target_rule": target_rule},
    }


_COSTS = {"steps": "steps_to_target", "samples": "samples_to_target", "flops": "flops_to_target"}


def arm_speedup(base: list[RunResult], arm: list[RunResult], floor: float | None) -> dict[str, Any]:
    """Paired speedups of an arm over its baseline: wall-clock (with the timing noise floor; without an A/A
    control no wall-clock verdict) and in each machine-independent cost to target. A collapsed run makes the
    verdicts "collapsed"."""
    sp = speedup([r.time_to_target_s for r in base], [r.time_to_target_s for r in arm], floor)
    if floor is None and sp["verdict"] in ("faster", "slower"):  # no A/A control ran: timing noise is unmeasured
        sp["verdict"] = "inconclusive (timing noise)"
    costs = {}
    for cost, attr in _COSTS.items():
        c = speedup([getattr(r, attr) for r in base], [getattr(r, attr) for r in arm])
        costs[cost] = {k: c[k] for k in ("speedup", "low", "high", "verdict")}
    if any(r.collapsed for r in base + arm):
        sp["verdict"] = "collapsed"
        for c in costs.values():
            c["verdict"] = "collapsed"
    return {**sp, "costs": costs}


def describe_budget(recipe: Recipe, tag: str) -> str:
    """The budget line of a results table, from the effective (overridden) per-arm budgets."""
    text = f"{recipe.scale} scale ({tag}): {recipe.description}; budget {recipe.budget.describe()}"
    own = [f"{a.name} {recipe.for_arm(a).budget.describe()}" for a in recipe.arms
           if recipe.for_arm(a).budget != recipe.budget]
    return text + (f" ({'; '.join(own)})" if own else "") + f"; batch {recipe.batch_size}"


def judge_claims(card: PaperCard, recipe: Recipe, results: dict[str, list[RunResult]],
                 floor: float | None = None) -> list[dict[str, Any]]:
    """Measured value, interval and verdict for each claim of the card, by its kind and its arm's fidelity.

    Under MIN_SEEDS seeds the range is shown and no verdict given. An accuracy claim on an arm with a capped
    run is "capped" (left out of accuracy comparisons); one whose arms collapsed is "collapsed".
    """
    out = []
    for claim in card.claims:
        row = asdict(claim)
        row["arms"] = list(claim.arms) or None
        needed = list(claim.arms) or [claim.arm] + ([claim.minus_arm] if claim.minus_arm else [])
        arm = recipe.arm(claim.arm) if claim.arm in results else None
        row.update(measured=None, low=None, high=None, n_seeds=None, coverage=None,
                   fidelity=arm.fidelity if arm else None, fidelity_note=arm.fidelity_note if arm else None)
        runs = [r for a in needed if a in results for r in results[a]]
        if recipe.scale not in claim.scales or any(a not in results for a in needed):
            verdict = "not run at this scale"
        elif any(r.collapsed for r in runs):
            verdict = "collapsed"
        elif claim.metric == "speedup":  # cost to target against the arm's baseline, paired by seed
            row.update(_speedup_claim(claim, recipe, results, floor))
            verdict = row.pop("verdict")
        elif any(not _has_value(r, claim.metric) for r in runs):
            verdict = "not measured"
        elif any(r.capped for r in runs):
            verdict = "capped"
        else:
            row.update(_value_claim(claim, results))
            verdict = row.pop("verdict")
        out.append({**row, "verdict": for_fidelity(verdict, row["fidelity"] or "faithful")})
    return out


# A claim's metric is a key of a run's final metrics, one of its totals as `cost/steps`, `cost/samples`,
# `cost/flops`, or a technique's statistic (`<technique>/<stat>`, its run mean: an Early-Bird arm's share of
# steps spent searching); `cost/<total>_saved` with a minus_arm is the share of that total the arm saves
# against it, paired by seed (1 - arm / minus_arm: PruneTrain's "53% of the training FLOPs removed").
def _cost_name(metric: str) -> str | None:
    name = metric.removeprefix("cost/").removesuffix("_saved")
    return name if metric.startswith("cost/") and name in _COSTS else None  # the run totals _COSTS names


def _has_value(run: RunResult, metric: str) -> bool:
    return metric in run.final or _cost_name(metric) is not None or metric in (run.stats or {})


def _run_value(run: RunResult, metric: str) -> float:
    cost = _cost_name(metric)
    if cost:
        return float(getattr(run, cost))
    return float(run.final[metric]) if metric in run.final else float(run.stats[metric])


def _value_claim(claim: Any, results: dict[str, list[RunResult]]) -> dict[str, Any]:
    cost = _cost_name(claim.metric)

    def values(arm: str) -> list[float]:
        return [_run_value(r, claim.metric) for r in results[arm]]

    if claim.kind == "ordering":  # gaps between consecutive arms, paired by seed; the measured value is the smallest
        gaps = [paired_differences(values(hi), values(lo)) for lo, hi in zip(claim.arms, claim.arms[1:])]
        summaries = [summarise_values(g) for g in gaps]
        low = min((s[1] for s in summaries), default=None) if all(s[1] is not None for s in summaries) else None
        smallest = min(summaries, key=lambda s: s[0])
        out = {"measured": smallest[0], "low": low, "high": smallest[2], "n_seeds": len(gaps[0]),
               "coverage": smallest[3]}
        if out["coverage"] is None:
            return {**out, "verdict": "range only (under 5 seeds)"}
        return {**out, "verdict": ordering_verdict([(s[1], s[2]) for s in summaries])}
    vals = values(claim.arm)
    if claim.metric.endswith("_saved") and cost:
        if not claim.minus_arm:
            raise ValueError(f"claim {claim.id}: '{claim.metric}' needs a minus_arm to save against")
        vals = [1.0 - v / b for v, b in zip(vals, values(claim.minus_arm), strict=True)]
    elif claim.minus_arm:
        vals = paired_differences(vals, values(claim.minus_arm))
    point, low, high, cov = summarise_values(vals)
    out = {"measured": point, "low": low, "high": high, "n_seeds": len(vals), "coverage": cov}
    if cov is None:
        return {**out, "verdict": "range only (under 5 seeds)" if claim.claimed is not None else "no number to compare"}
    return {**out, "verdict": claim_verdict(claim.kind, claim.claimed, claim.tolerance, low, high, claim.claimed_high)}


def _speedup_claim(claim: Any, recipe: Recipe, results: dict[str, list[RunResult]],
                   floor: float | None) -> dict[str, Any]:
    base = results[baseline_of(recipe, recipe.arm(claim.arm))]
    sp = arm_speedup(base, results[claim.arm], floor)
    if claim.cost != "seconds":
        sp = {**sp, **sp["costs"][claim.cost]}
    out = {"measured": sp["speedup"], "low": sp["low"], "high": sp["high"], "n_seeds": sp["n_seeds"],
           "coverage": sp["coverage"]}
    if sp["speedup"] is None or sp["verdict"] in ("range only (under 5 seeds)", "collapsed", "target not reached"):
        return {**out, "verdict": sp["verdict"]}
    low, high = sp["low"], sp["high"]
    if claim.cost == "seconds" and floor:  # wall-clock is judged only beyond the timing noise: widen by the floor
        low, high = low / floor, high * floor
    return {**out, "verdict": claim_verdict(claim.kind, claim.claimed, claim.tolerance, low, high, claim.claimed_high)}
