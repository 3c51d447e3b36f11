"""Every (paper, arm, seed) is an MLflow run holding params, metrics, provenance, the module source and the
trained weights, the child of one parent run per command that holds the results table."""

from __future__ import annotations

import mlflow
import torch

from harness.experiments.reproduce import run_recipe
from harness.tracking import Tracker, tracking_uri
from reproductions import hinton2015_distillation as hinton


def test_mlflow_run_holds_params_metrics_provenance_and_source(project):
    assert tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
    recipe = hinton.recipe("smoke")
    table = run_recipe(tracking_uri=tracking_uri(), recipe=recipe, seeds=[0], card=hinton.CARD,
                       out_path=project / "table.json")
    client = mlflow.MlflowClient(tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("effitrain/hinton2015_distillation").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    assert {a.path for a in client.list_artifacts(parent, "results")} == {
        "results/table.json", "results/table.metrics.json", "results/table.curves"}
    assert [a.path for a in client.list_artifacts(parent, "figures")] == ["figures/tta.png"]
    assert sorted(a.path for a in client.list_artifacts(parent, "results/table.curves")) == [
        f"results/table.curves/{arm}.csv" for arm in ("distilled", "hard_student", "hard_student_aa", "teacher")]
    assert sorted(r.data.tags["arm"] for r in children) == ["distilled", "hard_student", "hard_student_aa", "teacher"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent}
    run = client.get_run(table["arms"]["distilled"]["runs"][0]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["provenance.git_commit"]
    weights = client.download_artifacts(run.info.run_id, "model/state_dict.pt", str(project))
    assert set(torch.load(weights, weights_only=True)) == set(hinton.recipe("smoke").model((1, 28, 28), 10)
                                                              .state_dict())
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["arm"] == "distilled" and params["seed"] == "0" and params["distillation.temperature"] == "20.0"
    assert params["optim.lr"] == "0.05" and "budget" in params
    for key in ("git_commit", "git_dirty", "torch", "lightning", "device", "cpu_count", "dataset_md5"):
        assert f"provenance.{key}" in tags
    assert {"val/acc", "test/acc", "test/errors", "time/train_seconds_total", "cost/flops"} <= set(metrics)
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == len(table["arms"]["distilled"]["runs"][0]["curve"]) >= 2  # per-step curve
    assert [a.path for a in client.list_artifacts(run.info.run_id, "source")] == ["source/hinton2015_distillation.py"]


def test_tracking_uri_env_overrides_default(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'other.db'}")
    assert Tracker().uri.endswith("other.db")


def test_a_techniques_step_stats_are_logged(project):
    from harness.measure import Budget
    from harness.recipes import Arm
    from tests.tiny import tiny_recipe

    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("fp16", techniques=("fp16_loss_scaling",))],
                         budget=Budget(steps=10))
    table = run_recipe(tracking_uri=tracking_uri(), recipe=recipe, seeds=[0])
    client = mlflow.MlflowClient(tracking_uri())
    history = client.get_metric_history(table["arms"]["fp16"]["runs"][0]["run_id"], "fp16_loss_scaling/loss_scale")
    assert [m.step for m in history] == [10] and history[0].value == 2.0**16  # no overflow in 10 steps


def test_dirty_means_code_or_configuration_not_generated_outputs(tmp_path, monkeypatch):
    """A pipeline rewrites reports/ and dvc.lock while it runs at a clean commit: that is not a dirty tree."""
    import subprocess

    from harness import tracking

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("harness/x.py", "reports/t.json", "dvc.lock", "params.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(tracking, "_CODE_ROOT", tmp_path)
    assert tracking.provenance()["git_dirty"] is False
    for generated in ("reports/t.json", "dvc.lock"):
        (tmp_path / generated).write_text("1\n")
    assert tracking.provenance()["git_dirty"] is False
    (tmp_path / "params.yaml").write_text("1\n")
    assert tracking.provenance()["git_dirty"] is True
