"""Killed and stopped commands: SIGKILL at random points, then --resume, ends with exactly the final
metrics of an uninterrupted run; SIGTERM and Ctrl-C stop within seconds, with runs marked KILLED and
exit codes 143 and 130; no MLflow run is left RUNNING."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from harness.papers import papers
from harness.runner import RunContext, Runner, arm_order
from harness.train.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = str(ROOT / "datasets")
# Hinton's smoke recipe: a reference arm (the teacher) whose weights the distilled student needs, so a
# resumed command must also read back finished runs and hand their weights on. 30 epochs: 420 steps per
# arm (about half a second each on 2 cores), a checkpoint at every evaluation (every 4 steps).
CMD = ["reproduce", "hinton2015_distillation", "--scale", "smoke", "--set", "budget.epochs=30",
       "--set", "teacher.budget.epochs=30"]


def _start(home: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "EFFITRAIN_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "--data-root", DATA, *CMD, "--out",
                             str(home / "out"), *extra], cwd=home, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _table(home: Path) -> dict:
    return json.loads((home / "out/hinton2015_distillation/smoke-full.json").read_text())


def _measured(table: dict) -> dict:
    """What must not change on resume: steps, final metrics and the curve (clock readings aside)."""
    return {arm: [(r["steps"], r["final"], [{k: v for k, v in p.items() if k != "train_seconds"} for p in r["curve"]])
                  for r in a["runs"]] for arm, a in table["arms"].items()}


def _checkpoints(home: Path) -> dict[Path, int]:
    found = {}
    for path in (home / ".effitrain/runs").glob("*/last.ckpt"):
        try:
            found[path] = path.stat().st_mtime_ns
        except FileNotFoundError:  # a finished run removed it just now
            pass
    return found


def _wait_for_checkpoint(home: Path, proc: subprocess.Popen, timeout_s: float = 120) -> bool:
    """Block until this process has written a checkpoint (True), or the command ended first (False)."""
    before = _checkpoints(home)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if any(before.get(path) != mtime for path, mtime in _checkpoints(home).items()):
            return True
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    home = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(home, "--no-track")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return _measured(_table(home))


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_metrics(tmp_path, uninterrupted):
    rng = random.Random(20261201)
    kills = 0
    proc = _start(tmp_path, "--no-track")
    while kills < 4:
        if not _wait_for_checkpoint(tmp_path, proc):
            break
        time.sleep(rng.uniform(0.0, 0.05))  # a few steps on: between two checkpoints, or during a write
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # reap it and close its pipes
        kills += 1
        proc = _start(tmp_path, "--no-track", "--resume")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 2, "the command finished before it could be killed twice: make the recipe longer"
    table = _table(tmp_path)
    resumed_steps = [r["resumed_from_step"] for a in table["arms"].values() for r in a["runs"]]
    assert any(s is not None for s in resumed_steps), resumed_steps
    assert _measured(table) == uninterrupted
    assert not list((tmp_path / ".effitrain/runs").glob("*/last.ckpt"))  # finished runs drop their checkpoint


def _runs(home: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("effitrain/hinton2015_distillation")
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_a_killed_tracked_command_leaves_no_run_running_and_resumes_exactly(tmp_path, uninterrupted):
    proc = _start(tmp_path)
    assert _wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert any(r.info.status == "RUNNING" for r in _runs(tmp_path))  # what SIGKILL leaves behind
    proc = _start(tmp_path, "--resume")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    statuses = [r.info.status for r in _runs(tmp_path)]
    assert "RUNNING" not in statuses and "KILLED" in statuses
    assert _measured(_table(tmp_path)) == uninterrupted


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "executor"), [(signal.SIGTERM, 143, []), (signal.SIGINT, 130, []),
                                                          (signal.SIGTERM, 143, ["--executor", "processes"])])
def test_sigterm_and_ctrl_c_stop_within_seconds_with_runs_killed(tmp_path, signum, code, executor):
    """Also with a pool of worker processes: the command stops its workers, whose runs end KILLED too."""
    proc = _start(tmp_path, *executor)
    assert _wait_for_checkpoint(tmp_path, proc)
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode == code, err
    assert "continue with --resume" in err.strip().splitlines()[-1]
    runs = _runs(tmp_path)
    children = [r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parents == ["KILLED"]
    assert "RUNNING" not in children and "KILLED" in children  # the run that was training, in whatever process
    assert not (tmp_path / "out/hinton2015_distillation/smoke-full.json").exists()  # no half table


class _Killed(Exception):
    """Test-only: stands for SIGKILL right after a checkpoint was written."""


@pytest.mark.slow
@pytest.mark.parametrize("paper", list(papers()))
def test_every_papers_smoke_arms_resume_exactly(paper, tmp_path, monkeypatch):
    """Every arm of every paper, killed after the checkpoint of step 2 and resumed, ends as if never stopped:
    techniques with their own generators (activation-gradient pruning) must checkpoint them too."""
    recipe = papers()[paper].recipe("smoke")
    runner = Runner(None, DATA, progress=False)
    save = Checkpoint.on_train_batch_end

    def kill_after_step_2(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == 2 and self.saved_steps == 2:
            raise _Killed

    context, models = None, {}
    for arm in arm_order(recipe):
        if context is None:
            context = RunContext(0, runner.loaders(recipe, 0)[0])
        context.models = dict(models)
        whole, model = runner.run_one(recipe, arm, 0, context)
        models[arm.name] = model
        path = tmp_path / f"{arm.name}.ckpt"
        monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill_after_step_2)
        try:
            runner.run_one(recipe, arm, 0, context, checkpoint=path, checkpoint_every_n_steps=1)
        except _Killed:
            pass
        monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
        resumed, _ = runner.run_one(recipe, arm, 0, context, checkpoint=path, checkpoint_every_n_steps=1, resume=True)
        assert resumed.resumed_from_step == 2, arm.name
        assert (resumed.steps, resumed.final) == (whole.steps, whole.final), arm.name
        assert [{k: v for k, v in p.items() if k != "train_seconds"} for p in resumed.curve] == \
            [{k: v for k, v in p.items() if k != "train_seconds"} for p in whole.curve], arm.name


def test_a_stop_inside_a_shielded_block_waits_for_its_end():
    """A SIGTERM that lands in an MLflow call is held until the call is done, then stops the command."""
    from harness.experiments.session import Stopped, handle_signals, shielded

    done = []
    with pytest.raises(Stopped) as stopped, handle_signals():
        with shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("the shielded block finished")
        done.append("not reached")
    assert done == ["the shielded block finished"] and stopped.value.exit_code == 143
