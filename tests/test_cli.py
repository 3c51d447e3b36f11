"""The CLI: list, a smoke reproduction end to end, and every error path (one line, exit 2, no files)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main


def _files(path):
    return sorted(p.relative_to(path) for p in path.rglob("*"))


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("hinton2015_distillation", "micikevicius2018_mixed_precision", "distillation", "bf16_autocast",
                 "mnist_mlp", "cifar10-jpeg75", "synthetic"):
        assert name in out


def test_reproduce_smoke_writes_results_and_report(project, capsys):
    assert main(["reproduce", "micikevicius2018_mixed_precision", "--scale", "smoke", "--seeds", "2"]) == 0
    path = project / "reports/runs/micikevicius2018_mixed_precision/smoke-full.json"
    table = json.loads(path.read_text())
    assert table["seeds"] == [0, 1] and set(table["arms"]) >= {"fp32", "bf16"}
    assert all(c["verdict"] == "not run at this scale" for c in table["claims"])  # synthetic data
    assert "bf16" in table["speedups"]
    assert (project / "mlflow.db").exists()
    assert main(["report", "--allow-dirty"]) == 0
    assert "micikevicius2018_mixed_precision.html" in (project / "reports/index.html").read_text()


def test_run_composes_techniques_ad_hoc(project):
    assert main(["run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "bf16_autocast",
                 "--set", "budget.steps=3", "--no-track"]) == 0
    table = json.loads((project / "reports/runs/run-mnist_cnn/smoke-bf16_autocast-full.json").read_text())
    assert list(table["arms"]) == ["baseline", "baseline_aa", "bf16_autocast"]
    assert table["arms"]["bf16_autocast"]["runs"][0]["steps"] == 3
    assert main(["report", "--allow-dirty"]) == 0  # ad-hoc tables get their own report page
    assert (project / "reports/run-mnist_cnn.html").exists()


def test_a_test_accuracy_target_scores_the_test_set_at_each_evaluation(project):
    assert main(["run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "bf16_autocast", "--no-track",
                 "--set", "budget.steps=8", "--set", "target.metric=test/acc", "--set", "target.value=0.0"]) == 0
    table = json.loads((project / "reports/runs/run-mnist_cnn/smoke-bf16_autocast-full.json").read_text())
    run = table["arms"]["baseline"]["runs"][0]
    assert all("test/acc" in p for p in run["curve"]) and run["time_to_target_s"] is not None
    assert run["final"]["test/acc"] == run["curve"][-1]["test/acc"]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "no_such_paper", "--scale", "smoke"], "unknown paper"),
    (["reproduce", "hinton2015_distillation", "--scale", "huge"], "invalid choice: 'huge'"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--tag", "../../x"], "--tag '../../x'"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--tag", "a/b"], "--tag 'a/b'"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--set", "target.value=1.5"],
     "outside the metric's range"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--set", "target.metric=val/vibes"],
     "target metric 'val/vibes'"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--rerun", "--resume"], "not allowed with"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--executor", "slurm"], "invalid choice"),
    (["-q", "-v", "list"], "not allowed with"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--seeds", "0"], "--seeds 0"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--set", "budget.epochs=-1"], "budget epochs=-1"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--set", "budget.bogus=1"], "budget.<field>"),
    (["reproduce", "hinton2015_distillation", "--scale", "smoke", "--set", "nonsense"], "key=value"),
    (["reproduce", "hinton2015_distillation", "--scale", "cpu"], "dvc pull"),
    (["run", "--recipe", "no_such_recipe", "--technique", "bf16_autocast"], "unknown recipe"),
    (["run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "no_such_trick"], "unknown technique"),
    (["run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "bf16_autocast",
      "--technique", "fp16_loss_scaling"], "both own the number format"),
    (["run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "distillation"], "needs arm"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(project, capsys, argv, message):
    assert main(["--data-root", str(project / "nowhere"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("effitrain: error:") and message in err, err
    assert _files(project) == []  # no results, no MLflow store, nothing


def test_reproduce_reads_scale_seeds_tag_and_overrides_from_params(project):
    (project / "params.yaml").write_text(
        "reproduce: {scale: smoke, seeds: 1, tag: quick}\n"
        "budgets:\n  quick:\n    hinton2015_distillation: [budget.steps=2, teacher.budget.steps=3]\n")
    assert main(["reproduce", "hinton2015_distillation", "--params", "params.yaml", "--no-track"]) == 0
    table = json.loads((project / "reports/runs/hinton2015_distillation/smoke-quick.json").read_text())
    steps = {arm: a["runs"][0]["steps"] for arm, a in table["arms"].items()}
    assert steps == {"teacher": 3, "hard_student": 2, "hard_student_aa": 2, "distilled": 2}
    assert table["tag"] == "quick" and table["seeds"] == [0]


def test_params_with_an_unknown_tag_is_refused(project, capsys):
    (project / "params.yaml").write_text("reproduce: {scale: smoke, seeds: 1, tag: nope}\nbudgets: {}\n")
    assert main(["reproduce", "hinton2015_distillation", "--params", "params.yaml"]) == 2
    assert "no budgets.nope" in capsys.readouterr().err


def test_explicit_flags_beat_params(project):
    (project / "params.yaml").write_text(
        "reproduce: {scale: smoke, seeds: 1, tag: quick}\n"
        "budgets:\n  quick:\n    micikevicius2018_mixed_precision: [budget.steps=2]\n"
        "  other:\n    micikevicius2018_mixed_precision: [budget.steps=3]\n")
    assert main(["-q", "reproduce", "micikevicius2018_mixed_precision", "--params", "params.yaml", "--no-track",
                 "--seeds", "2", "--tag", "other", "--set", "budget.steps=4"]) == 0
    table = json.loads((project / "reports/runs/micikevicius2018_mixed_precision/smoke-other.json").read_text())
    assert table["seeds"] == [0, 1]  # --seeds 2 beat the file's 1
    assert {a["runs"][0]["steps"] for a in table["arms"].values()} == {4}  # --set after budgets.other


def test_version_and_help_show_what_there_is(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("effitrain 0.")
    assert main(["reproduce", "--help"]) == 0
    out = capsys.readouterr().out
    assert "{smoke,cpu,paper}" in out and "{inprocess,processes,ray}" in out


def test_quiet_prints_only_what_was_written(project, capsys):
    assert main(["-q", "run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "bf16_autocast",
                 "--set", "budget.steps=2", "--no-track"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.strip().startswith("results: ")


def test_progress_says_where_it_is_and_how_long_is_left(project, capsys):
    assert main(["run", "--recipe", "mnist_cnn", "--scale", "smoke", "--technique", "bf16_autocast", "--seeds", "2",
                 "--set", "budget.steps=2", "--no-track"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[run-mnist_cnn ")]
    assert [ln.split("]")[0] for ln in lines] == [f"[run-mnist_cnn {i}/6" for i in range(1, 7)]  # 3 arms, 2 seeds
    assert "left" in lines[0] and "done in" in lines[-1]
