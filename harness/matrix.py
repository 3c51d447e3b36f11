"""The combinability matrix: do two registered techniques stack, and by how much?

`effitrain matrix` runs, on one shared recipe, the baseline, every technique
alone and every pair that composes, over the same seeds, then reports for each
pair (DESIGN.md, "Combinability"):

- a static verdict first, from what the techniques declare (`conflict_reason`:
  explicit conflicts with their notes, two owners of the number format, two
  owners of the optimizer, surgeries that cannot both apply). Such pairs are
  not run;
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

Every (arm, seed) is one job. A job whose key (code version, recipe, overrides,
arm, seed, torch and device) matches a finished MLflow run is read back from
that run, not rerun. Jobs go to an executor: in-process, local processes
(`concurrent.futures`), or a Ray cluster. Reference arms (distillation's
teacher) run first; their trained weights travel to the jobs that need them.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.measure import speedup
from harness.recipes import Arm, Recipe, apply_overrides, get_recipe
from harness.techniques import conflict_reason, get_technique, techniques

EXPERIMENT = "effitrain/matrix"
EXECUTORS = ("inprocess", "processes", "ray")
ACC = "test/acc"
KEY_TAG = "effitrain.run_key"
_PACKAGES = ("harness", "reproductions", "kernels")
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

    @property
    def arms(self) -> tuple[Arm, ...]:
        return self.recipe.arms


def arm_name(names: tuple[str, ...] | list[str]) -> str:
    """The arm of a combination: its techniques in composition order (`compose`'s), joined by '+'."""
    return "+".join(c.name for c in sorted(map(get_technique, names), key=lambda c: (c.order, c.name)))


def make_plan(recipe_name: str, scale: str, overrides: list[str] | tuple[str, ...] = (),
              names: list[str] | None = None, settings: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Build the matrix recipe; raises ValueError on an unknown technique, recipe, override or setting.

    `settings` maps a technique to the keyword arguments it runs with in every arm it is part of
    (params.yaml's combine.settings); a technique without one runs with its constructor's defaults.
    """
    known = list(techniques())
    chosen = list(dict.fromkeys(names)) if names else known
    for n in chosen:
        get_technique(n)  # unknown name -> ValueError listing the known ones
    chosen = [c.name for c in sorted((get_technique(n) for n in chosen), key=lambda c: c.name)]
    pairs = tuple((a, b, conflict_reason(get_technique(a), get_technique(b)))
                  for i, a in enumerate(chosen) for b in chosen[i + 1:])
    base = apply_overrides(get_recipe(recipe_name, scale), list(overrides))
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
    from harness.runner import validate  # checks every arm's technique kwargs against the constructors

    validate(recipe, [0])
    return Plan(recipe_name, scale, tuple(overrides), tuple(chosen), pairs, recipe)


def recipe_rule(plan: Plan) -> str:
    """Which recipe the pairs ran on and why, in words."""
    papers = sorted({_paper_of(n) for n in plan.names} - {None})
    return (f"Every arm ran on the recipe '{plan.recipe_name}' ({plan.recipe.description}) at {plan.scale} scale"
            + (f" with {', '.join(plan.overrides)}" if plan.overrides else "")
            + f". The techniques come from {len(papers)} papers that each trained their own dataset and model, "
              "so a pair rarely has a recipe of its own to share; one recipe for all gives S_A, S_B and S_AB "
              "the same baseline, which the interaction S_AB / (S_A * S_B) needs. It is set by "
              "combine.recipe in params.yaml (or --recipe).")


def _paper_of(name: str) -> str | None:
    card = get_technique(name).card
    return card.id if card else None


def _recipe_note(plan: Plan, a: str, b: str) -> str:
    def origin(n: str) -> str:
        card = get_technique(n).card
        return f"{n} from {card.id} ({', '.join(card.datasets)})" if card else f"{n} (no paper card)"

    same = _paper_of(a) is not None and _paper_of(a) == _paper_of(b)
    head = f"both from {_paper_of(a)}" if same else f"{origin(a)}; {origin(b)}"
    return f"{head}; run on the shared recipe '{plan.recipe_name}' at {plan.scale} scale"


# ---------------------------------------------------------------- jobs

@dataclass(frozen=True)
class Job:
    """One (arm, seed) of a matrix, picklable so that any executor can run it."""

    recipe_name: str
    scale: str
    overrides: tuple[str, ...]
    arms: tuple[Arm, ...]
    arm: Arm
    seed: int
    data_root: str
    tracking_uri: str | None
    references: dict[str, bytes] = field(default_factory=dict)  # arm -> torch.save'd state dict
    threads: int | None = None


_CODE_VERSION: str | None = None
# Modules that only read results (reports, figures, the CLI's printing) do not change what a run measures.
_NOT_RUN_CODE = {"harness/report.py", "harness/thesis.py", "harness/tta.py", "harness/combinability.py",
                 "harness/bench.py", "harness/cli.py"}


def code_version() -> str:
    """A hash of the source that runs training (harness, reproductions, kernels): equal code, equal hash."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for pkg in _PACKAGES:
            for path in sorted((root / pkg).rglob("*")):
                rel = path.relative_to(root).as_posix()
                if (path.suffix in (".py", ".cpp") and path.is_file() and rel not in _NOT_RUN_CODE
                        and not rel.startswith("kernels/benchmarks/")):
                    h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


def run_key(job: Job) -> str:
    """What makes two runs the same: code, recipe and overrides, the arm, the seed, torch and device."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = {"code": code_version(), "recipe": job.recipe_name, "scale": job.scale, "set": list(job.overrides),
            "arm": [job.arm.name, list(job.arm.techniques), job.arm.technique_kwargs, job.arm.overrides],
            "seed": job.seed, "torch": torch.__version__, "device": device}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_job(job: Job) -> dict[str, Any]:
    """Run one job (or read it back from MLflow); never raises for a run that fails or diverges."""
    import torch

    from harness.runner import Runner
    from harness.tracking import Tracker

    if job.threads:
        torch.set_num_threads(job.threads)
    tracker = Tracker(job.tracking_uri) if job.tracking_uri else None
    key = run_key(job)
    if tracker:
        found = _reused(tracker, key, job.arm.reference)
        if found is not None:
            return {**found, "arm": job.arm.name, "seed": job.seed, "reused": True}
    recipe = replace(apply_overrides(get_recipe(job.recipe_name, job.scale), list(job.overrides)),
                     arms=job.arms, baseline_arm="baseline", paper=None)
    runner = Runner(tracker, job.data_root, progress=False)
    out: dict[str, Any] = {"arm": job.arm.name, "seed": job.seed, "reused": False, "result": None,
                           "state": None, "error": None, "diverged": False}
    try:
        context = _context(runner, recipe, job)
        result, model = runner.run_one(recipe, job.arm, job.seed, context, experiment=EXPERIMENT,
                                       extra_tags={"matrix.code_version": code_version(), "matrix.key": key})
        out["result"] = result.row()
        if job.arm.reference:
            buf = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
            out["state"] = buf.getvalue()
    except FloatingPointError as exc:  # the Evaluator's word for a non-finite loss
        out.update(error=str(exc).splitlines()[0], diverged=True)
    except Exception as exc:  # a technique that breaks on this recipe is a verdict, not a crash of the matrix
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if tracker and (out["result"] is not None or out["diverged"]):
        _record(tracker, key, out)
    return out


def _context(runner: Any, recipe: Recipe, job: Job) -> Any:
    """The seed's run context, with the reference arms' trained models loaded from their weights."""
    import torch

    from harness import data as datamod
    from harness.runner import RunContext

    data = datamod.load_dataset(recipe.dataset, runner.data_root)
    context = RunContext(job.seed, data)
    for name, blob in job.references.items():
        model = recipe.for_arm(recipe.arm(name)).model(data.input_shape, data.num_classes)
        model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
        context.models[name] = model
    return context


def _record(tracker: Any, key: str, out: dict[str, Any]) -> None:
    """Store the outcome on its MLflow run and only then tag it with the key (so a tagged run is complete)."""
    run_id = out["result"]["run_id"] if out["result"] else tracker.find_tagged(EXPERIMENT, "matrix.key", key, None)
    if not run_id:
        return
    body = {k: out[k] for k in ("result", "error", "diverged")}
    tracker.client.log_text(run_id, json.dumps(body, default=float), "matrix/outcome.json")
    if out["state"] is not None:
        tracker.client.log_text(run_id, out["state"].hex(), "matrix/state.hex")
    tracker.client.set_tag(run_id, KEY_TAG, key)


def _reused(tracker: Any, key: str, needs_state: bool) -> dict[str, Any] | None:
    """The outcome of an earlier run with this key, or None (also when its artifacts are gone)."""
    run_id = tracker.find_tagged(EXPERIMENT, KEY_TAG, key, None)  # a diverged run is FAILED, and reusable
    if run_id is None:
        return None
    try:
        body = json.loads(tracker.read_text(run_id, "matrix/outcome.json"))
        state = bytes.fromhex(tracker.read_text(run_id, "matrix/state.hex")) if needs_state else None
    except Exception:  # artifacts deleted or unreadable (MlflowException, OSError, bad JSON): run it again
        return None
    return {**body, "state": state}


# ---------------------------------------------------------------- executors

def _ray_init(address: str | None) -> Any:
    if address is None or address.split(":")[0] in ("127.0.0.1", "localhost"):
        # A one-machine cluster: Ray's single-node mode keeps every address on the loopback interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if not ray.is_initialized():
        # Workers inherit the cluster's environment, not ours: pass on the switch for Triton's CPU interpreter.
        env = {k: os.environ[k] for k in ("TRITON_INTERPRET",) if k in os.environ}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env} if env else None)
    return ray


def execute(jobs: list[Job], executor: str = "inprocess", workers: int | None = None,
            ray_address: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield each job's outcome as it finishes, from the chosen executor."""
    if not jobs:
        return
    if executor == "inprocess":
        for job in jobs:
            yield run_job(job)
    elif executor == "processes":
        n = workers or min(len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(run_job, j) for j in jobs]):
                yield fut.result()
    elif executor == "ray":
        ray = _ray_init(ray_address)
        remote = ray.remote(num_cpus=1)(run_job)
        pending = [remote.remote(j) for j in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    else:
        raise ValueError(f"executor '{executor}' is not one of {', '.join(EXECUTORS)}")


def run_matrix(plan: Plan, seeds: list[int], executor: str = "inprocess", workers: int | None = None,
               data_root: str = "datasets", tracking_uri: str | None = None, ray_address: str | None = None,
               progress: bool | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Run every arm of the plan over the seeds: reference arms first, then the rest; outcomes by (arm, seed)."""
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ValueError(f"executor '{executor}' is not one of {', '.join(EXECUTORS)}")
    if tracking_uri:  # create the store and experiment once, before workers open it concurrently
        from harness.tracking import Tracker

        Tracker(tracking_uri)._experiment(EXPERIMENT)
    threads = None if executor == "inprocess" else max(1, (os.cpu_count() or 1) // (workers or os.cpu_count() or 1))
    common = dict(recipe_name=plan.recipe_name, scale=plan.scale, overrides=plan.overrides, arms=plan.arms,
                  data_root=data_root, tracking_uri=tracking_uri, threads=threads)
    refs = [a for a in plan.arms if a.reference]
    rest = [a for a in plan.arms if not a.reference]
    outcomes: dict[tuple[str, int], dict[str, Any]] = {}
    bar = tqdm(total=len(plan.arms) * len(seeds), desc="matrix", unit="run", disable=progress is False or None,
               file=sys.stderr)
    for phase in ("references", "rest"):  # the second phase reads the first one's trained weights
        if phase == "references":
            jobs = [Job(arm=a, seed=s, **common) for s in seeds for a in refs]
        else:
            jobs = [Job(arm=a, seed=s, references={r.name: outcomes[(r.name, s)]["state"] for r in refs
                                                   if outcomes[(r.name, s)]["state"] is not None}, **common)
                    for s in seeds for a in rest]
        for out in execute(jobs, executor, workers, ray_address):
            outcomes[(out["arm"], out["seed"])] = out
            bar.update(1)
            bar.set_postfix_str(f"{out['arm']} seed {out['seed']}")
            tqdm.write(_line(out, len(outcomes), bar.total), file=sys.stderr)
    bar.close()
    return outcomes


def _line(out: dict[str, Any], done: int, total: int) -> str:
    head = f"[{done}/{total}] {out['arm']} seed {out['seed']}"
    if out["error"]:
        return f"{head}: {'diverged' if out['diverged'] else 'failed'}: {out['error']}"
    r = out["result"]
    tta = "not reached" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.1f} s"
    acc = r["final"].get(ACC)
    return (f"{head}: {'reused from MLflow, ' if out['reused'] else ''}{r['train_seconds']:.1f} s training, "
            f"time to target {tta}" + (f", test acc {100 * acc:.2f}%" if acc is not None else ""))
