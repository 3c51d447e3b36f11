"""Jobs: one (arm, seed) of a recipe, the unit every executor runs and MLflow reuse is keyed on.

A job carries its recipe (picklable: model factories are dataclasses), so it can go to a worker
process or a Ray worker as it is. Its key hashes what decides the run's outcome: the training code it
executes (shared harness and kernels, and the modules of its paper, techniques and model), the
recipe with the arm's overrides, the arm's techniques and their arguments, the seed, the dataset's
md5s, the keys of the reference arms it learns from, the library versions and the device. A key already recorded
in MLflow is read back, not rerun (`rerun=True` runs it anyway). With MLflow off, finished runs
are kept in the local run store and read back only when resuming. With `resume=True` an unfinished
run continues from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import sys
import traceback
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from harness.recipes import Recipe

__all__ = ["KEY_TAG", "Job", "Outcome", "RunFailedError", "code_files", "code_hash", "code_version", "run_job",
           "run_key", "run_store"]

KEY_TAG = "effitrain.run_key"
Outcome = dict[str, Any]  # arm, seed, key, reused, resumed, result (RunResult.row()), error, diverged, state
class RunFailedError(RuntimeError):
    """A run raised (not bad input, not divergence); the command exits 1, its traceback already logged."""


_PACKAGES = ("harness", "kernels")  # paper and plug-in modules are added per job (code_version)
# Code that only reads results, drives commands or moves jobs around does not change what a run measures.
_NOT_RUN_CODE = ("harness/report/", "harness/results/", "harness/experiments/", "harness/cli.py", "harness/bench.py",
                 "harness/tracking.py", "harness/papers.py", "harness/registry.py", "kernels/benchmarks/")


@dataclass(frozen=True)
class Job:
    """One (arm, seed) of a recipe, with where to log it and what it may reuse."""

    recipe: Recipe
    arm: str
    seed: int
    experiment: str  # MLflow experiment, e.g. "effitrain/hinton2015_distillation"
    data_root: str = "datasets"
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    references: dict[str, bytes] = field(default_factory=dict)  # reference arm -> torch.save'd state dict
    reference_keys: dict[str, str] = field(default_factory=dict)  # reference arm -> its run key
    threads: int | None = None
    rerun: bool = False
    resume: bool = False
    checkpoint_every_n_steps: int | None = None  # None: the recipe's evaluation cadence
    log_evals: bool = False  # print a line per evaluation (in-process, not quiet): progress within a run
    devices: int = 1  # > 1: trained data-parallel over that many processes (harness.train.strategy)


_FILE_HASHES: dict[Path, str] = {}


def _file_hash(path: Path) -> str:
    if path not in _FILE_HASHES:
        _FILE_HASHES[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _FILE_HASHES[path]


def _shared_training_files() -> list[Path]:
    """The harness and kernel sources every run executes (not the commands, reports or job plumbing)."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for pkg in _PACKAGES:
        for path in sorted((root / pkg).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.suffix in (".py", ".cpp", ".h") and path.is_file() and not rel.startswith(_NOT_RUN_CODE):
                found.append(path)
    return found


def _module_file(obj: Any) -> Path | None:
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def code_files(job: Job | None = None) -> dict[str, str]:
    """The source a run executes, as {path relative to the project: sha256 prefix}: the shared harness and
    kernel code and, for a job, the modules that define its paper, its techniques and its model (a plug-in's
    included), nothing else, so editing another paper or the report code keeps recorded runs reusable."""
    from harness.papers import PAPERS
    from harness.techniques import get_technique

    files = set(_shared_training_files())
    if job is not None:
        own = job.recipe.for_arm(job.recipe.arm(job.arm))
        owners: list[Any] = [own.model, *(get_technique(t) for t in job.recipe.arm(job.arm).techniques)]
        if job.recipe.paper and job.recipe.paper in PAPERS:
            owners.append(PAPERS.get(job.recipe.paper).recipe)
        files |= {f for f in map(_module_file, owners) if f is not None}
    root = Path(__file__).resolve().parents[2]
    return {(path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name): _file_hash(path)[:16]
            for path in sorted(files)}


def code_hash(files: dict[str, str]) -> str:
    """One hash of `code_files` output (or of several merged): what a table records and a report re-checks."""
    h = hashlib.sha256()
    for rel, digest in sorted(files.items()):
        h.update(rel.encode() + b"\0" + digest.encode() + b"\0")
    return h.hexdigest()[:16]


def code_version(job: Job | None = None) -> str:
    """The hash of the source a run executes (`code_files`), part of its key."""
    return code_hash(code_files(job))


def _describe(value: Any) -> str:
    """A description of a recipe value that is the same in every process (no memory addresses)."""
    if callable(value) and not is_dataclass(value):  # a plain function or class: where it is defined
        return f"{value.__module__}.{value.__qualname__}"
    text = repr(value)
    if " at 0x" in text:
        raise ValueError(f"recipe value {text} has no stable description; use a dataclass factory "
                         f"(as harness/models.py does) so that runs can be keyed and reused")
    return text


def _recipe_spec(recipe: Recipe, arm: str) -> dict[str, Any]:
    """The fields of the arm's effective recipe that decide training (not its name, arms or prose)."""
    own = recipe.for_arm(recipe.arm(arm))
    skip = {"arms", "baseline_arm", "description", "name", "paper"}
    return {f.name: _describe(getattr(own, f.name)) for f in fields(own) if f.name not in skip}


def run_key(job: Job) -> str:
    """What makes two runs the same; see the module docstring."""
    import lightning
    import numpy
    import torch

    from harness import data as datamod

    arm = job.recipe.arm(job.arm)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data_md5 = datamod.load_dataset(job.recipe.dataset, job.data_root).md5  # memoised; the run loads it anyway
    spec = {"code": code_version(job), "recipe": _recipe_spec(job.recipe, job.arm),
            "arm": [list(arm.techniques), arm.technique_kwargs], "seed": job.seed, "data": data_md5,
            "references": dict(sorted(job.reference_keys.items())),
            "versions": [torch.__version__, lightning.__version__, numpy.__version__], "device": device}
    if arm.replicate_of:  # an A/A control repeats its arm's computation: a run of its own, never a reuse of it
        spec["replicate"] = 1
    if job.devices > 1:  # sharded augmentation and gradient reduction change the run (one device: keys unchanged)
        spec["devices"] = job.devices
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=repr).encode()).hexdigest()[:24]


def run_store() -> Path:
    """Where unfinished runs keep their checkpoints and finished untracked runs their outcomes."""
    from harness.tracking import project_dir

    return project_dir() / ".effitrain" / "runs"


# ---------------------------------------------------------------- running one job

def run_job(job: Job) -> Outcome:
    """Run one job, or read it back; never raises for a run that fails or diverges (the outcome says so).

    Data-parallel, every rank runs the job; rank 0 alone looks up and records it, and hands its
    decision to reuse (with the reused outcome) to the other ranks, so that they all train or none does.
    """
    import torch

    from harness.tracking import Tracker
    from harness.train.strategy import agree, is_rank_zero

    if job.threads:
        torch.set_num_threads(job.threads)
    lead = is_rank_zero(job.devices)
    tracker = Tracker(job.tracking_uri) if job.tracking_uri and lead else None
    key = run_key(job)
    found = None
    if lead and not job.rerun and (tracker is not None or job.resume):  # untracked runs: read back only to resume
        found = _reused(tracker, job, key)
    if job.devices > 1:
        found = agree(found)
    if found is not None:
        return found
    out: Outcome = {"arm": job.arm, "seed": job.seed, "key": key, "reused": False, "resumed": False,
                    "result": None, "error": None, "diverged": False, "state": None}
    _train(job, tracker, key, out)
    if lead:
        _record(tracker, job, key, out)
    if not job.recipe.arm(job.arm).reference:
        out["state"] = None  # recorded as an artifact; only reference arms' weights travel on
    return out


def _train(job: Job, tracker: Any, key: str, out: Outcome) -> None:
    from harness.runner import Runner

    runner = Runner(tracker, job.data_root, progress=False, devices=job.devices, log_evals=job.log_evals)
    folder = run_store() / key
    checkpoint = folder / "last.ckpt"  # every rank saves through Lightning; rank 0 writes the file
    try:
        context = _context(runner, job)
        result, model = runner.run_one(
            job.recipe, job.recipe.arm(job.arm), job.seed, context, experiment=job.experiment,
            extra_tags={**job.tags, KEY_TAG + ".pending": key}, parent_run_id=job.parent_run_id,
            checkpoint=checkpoint, checkpoint_every_n_steps=job.checkpoint_every_n_steps,
            resume=job.resume)
        out["result"], out["resumed"] = result.row(), result.resumed_from_step is not None
        out["state"] = _state_bytes(model)
    except FloatingPointError as exc:  # the Evaluator's word for a non-finite loss
        out.update(error=str(exc).splitlines()[0], diverged=True)
    except Exception as exc:  # a technique that breaks on this recipe is an outcome, not a crash of the command
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        # The one-line error becomes a verdict; the whole traceback goes to the log, so a bug is not hidden.
        logging.getLogger("effitrain").error("%s seed %s failed:\n%s", job.arm, job.seed, traceback.format_exc())


def _state_bytes(model: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def _context(runner: Any, job: Job) -> Any:
    """The seed's run context, with the reference arms' trained models rebuilt from their weights."""
    import torch

    from harness import data as datamod
    from harness.runner import RunContext

    data = datamod.load_dataset(job.recipe.dataset, runner.data_root)
    context = RunContext(job.seed, data)
    for name, blob in job.references.items():
        model = job.recipe.for_arm(job.recipe.arm(name)).model(data.input_shape, data.num_classes)
        model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
        context.models[name] = model
    return context


# ---------------------------------------------------------------- recording and reuse

def _record(tracker: Any, job: Job, key: str, out: Outcome) -> None:
    """Store the outcome (MLflow when tracking, else the local run store); only then mark the key done.

    A run that raised for another reason than divergence is not recorded: the next command runs it again.
    """
    if out["result"] is None and not out["diverged"]:
        return
    body = json.dumps({k: out[k] for k in ("result", "error", "diverged")}, default=float).encode()
    if tracker is None:
        from harness.results.atomic import atomic_write

        folder = run_store() / key
        if out["state"] is not None:
            atomic_write(folder / "model.pt", out["state"])
        atomic_write(folder / "outcome.json", body)
        (folder / "last.ckpt").unlink(missing_ok=True)
        return
    run_id = out["result"]["run_id"] if out["result"] else tracker.find_tagged(
        job.experiment, KEY_TAG + ".pending", key, None)
    if run_id:
        tracker.log_bytes(run_id, body, "outcome.json")
        if out["state"] is not None:
            tracker.log_bytes(run_id, out["state"], "model/state_dict.pt")
        tracker.client.set_tag(run_id, KEY_TAG, key)
    shutil.rmtree(run_store() / key, ignore_errors=True)  # the checkpoint is no longer needed


def _reused(tracker: Any, job: Job, key: str) -> Outcome | None:
    """The outcome of an earlier run with this key, or None (also when its files are gone or unreadable, and
    when the run was capped by the training-time guard)."""
    needs_state = job.recipe.arm(job.arm).reference
    try:
        if tracker is None:
            folder = run_store() / key
            if not (folder / "outcome.json").is_file():
                return None
            body = json.loads((folder / "outcome.json").read_text())
            state = (folder / "model.pt").read_bytes() if needs_state else None
        else:
            run_id = tracker.find_tagged(job.experiment, KEY_TAG, key, None)  # a diverged run is reusable too
            if run_id is None:
                return None
            body = json.loads(tracker.read_bytes(run_id, "outcome.json"))
            state = tracker.read_bytes(run_id, "model/state_dict.pt") if needs_state else None
    except Exception:  # deleted or unreadable artifacts (MlflowException, OSError, bad JSON): run it again
        return None
    if (body.get("result") or {}).get("capped"):  # stopped by the time guard: it measured the machine's load that
        return None                               # day, not the recipe, so it is run again rather than reused
    return {"arm": job.arm, "seed": job.seed, "key": key, "reused": True, "resumed": False, **body, "state": state}


def with_references(job: Job, outcomes: dict[tuple[str, int], Outcome]) -> Job:
    """The job with the trained weights and keys of the reference arms of its seed."""
    refs = [a.name for a in job.recipe.arms if a.reference]
    done = {r: outcomes[(r, job.seed)] for r in refs if (r, job.seed) in outcomes}
    return replace(job, references={r: o["state"] for r, o in done.items() if o.get("state") is not None},
                   reference_keys={r: o["key"] for r, o in done.items()})
