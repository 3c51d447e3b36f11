"""The combinability matrix: static verdicts, the interaction arithmetic, executors and reuse."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from harness import techniques as tech
from harness.cli import main
from harness.experiments import matrix
from harness.experiments.jobs import code_hash
from harness.results import combinability as comb
from harness.techniques import Technique

SMOKE = ["target.value=0.15"]  # synthetic smoke data: a target one epoch reaches on most seeds


# ---------------------------------------------------------------- the plan and its static verdicts

def test_every_registered_pair_gets_a_static_verdict_and_only_composing_pairs_get_an_arm():
    plan = matrix.make_plan("mnist_cnn", "smoke")
    # a technique that says it cannot run on the recipe's model is left out, and the rule says why
    assert plan.left_out == (("early_bird", "early_bird needs BatchNorm scales to slim; SmallCNN has none"),
                             ("finetune_classes", "finetune_classes continues a network trained first on the first "
                              "classes (the 'initial' arm of a class-incremental recipe such as roy2018_tree_cnn's)"),
                             ("kernel_rescaling", "kernel_rescaling needs a global pool before the classifier; "
                              "SmallCNN has none (a flattened map of fixed size cannot take downscaled images)"),
                             ("tree_cnn", "tree_cnn needs a TreeCNN (a root over children: "
                              "reproductions.roy2018_tree_cnn.tree_cnn); SmallCNN is one network"))
    assert "Left out: early_bird, which cannot run on this recipe's model" in plan.rule
    names = [n for n in tech.techniques() if n not in dict(plan.left_out)]
    assert plan.names == tuple(sorted(names))
    assert len(plan.pairs) == len(names) * (len(names) - 1) // 2
    arms = {a.name for a in plan.arms}
    for a, b, why in plan.pairs:
        assert (why is None) == (matrix.arm_name((a, b)) in arms)
        assert why is None or ("cannot be combined" in why or "both" in why)
    assert ("bf16_autocast", "fp16_loss_scaling") in {(a, b) for a, b, w in plan.pairs if w}
    assert "teacher" in arms  # distillation needs its reference arm, trained first
    assert matrix.arm_name(("distillation", "bf16_autocast")) == "bf16_autocast+distillation"  # order 10 < 40


def test_bad_plans_are_refused_before_anything_runs():
    with pytest.raises(ValueError, match="technique 'early_bird' cannot run on recipe 'mnist_cnn': early_bird needs "
                                         "BatchNorm scales to slim; SmallCNN has none"):
        matrix.make_plan("mnist_cnn", "smoke", names=["early_bird", "dsd"])
    with pytest.raises(ValueError, match="unknown technique"):
        matrix.make_plan("mnist_cnn", "smoke", names=["no_such_trick"])
    with pytest.raises(ValueError, match="unknown recipe"):
        matrix.make_plan("no_such_recipe", "smoke")
    with pytest.raises(ValueError, match="unknown technique"):
        matrix.make_plan("mnist_cnn", "smoke", names=["lars"], settings={"crsx": {"sample_ratio": 0.5}})
    with pytest.raises(ValueError, match="bad parameters"):
        matrix.make_plan("mnist_cnn", "smoke", names=["crs"], settings={"crs": {"ratio": 0.5}})


# ---------------------------------------------------------------- arithmetic against hand-made outcomes

def _outcomes(times: dict[str, list[float | None]], accs: dict[str, list[float]] | None = None,
              errors: dict[str, str] | None = None, flags: dict[tuple[str, int], str] | None = None):
    """Outcomes whose costs to target (FLOPs and seconds alike) are `times`; `flags` marks runs capped or collapsed."""
    out = {}
    for arm, ts in times.items():
        for seed, t in enumerate(ts):
            err = (errors or {}).get(arm)
            acc = (accs or {}).get(arm, [0.9] * 9)[seed]
            flag = (flags or {}).get((arm, seed))
            result = None if err else {"time_to_target_s": t, "flops_to_target": t, "final": {"test/acc": acc},
                                       "train_seconds": 10.0, "steps": 100, "capped": flag == "capped",
                                       "collapsed": flag == "collapsed"}
            out[(arm, seed)] = {"arm": arm, "seed": seed, "result": result, "error": err,
                                "diverged": bool(err and "nan" in err), "reused": False, "state": None}
    return out


def _plan():
    return matrix.make_plan("mnist_cnn", "smoke", names=["activation_grad_pruning", "gradient_approximation"])


def test_interaction_is_paired_by_seed_and_its_interval_holds_the_point():
    base, a, b = [10.0, 11, 9, 12, 10], [5.0, 5.5, 4.5, 6.0, 5.0], [8.0, 8.8, 7.2, 9.6, 8.0]
    ab = [3.0, 3.3, 2.7, 3.6, 3.0]
    point, low, high = comb.interaction(base, a, b, ab)
    assert point == pytest.approx((5 * 8) / (3 * 10))  # S_AB/(S_A*S_B) = (10/3)/((10/5)*(10/8)) on every seed
    assert low == pytest.approx(point) == pytest.approx(high)  # paired: seed-to-seed scale cancels
    one = comb.interaction([10.0], [5.0], [8.0], [4.0])
    assert one == (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))  # one seed: its range
    assert comb.interaction([10.0, 10], [None, None], [8.0, 8], [4.0, 4])[0] is None  # a single never arrives


@pytest.mark.parametrize(("ab_times", "verdict"), [
    ([2.0, 2.1, 1.9, 2.05, 2.0], "synergy"),   # S_AB 5 against S_A*S_B = 2*1.25 = 2.5
    ([4.0, 4.2, 3.8, 4.1, 4.0], "stacks"),     # S_AB 2.5: the product
    ([8.0, 8.4, 7.6, 8.2, 8.0], "overlap"),    # S_AB 1.25: no better than B alone
    ([None, None, 3.0, None, None], "missed target"),
])
def test_measured_verdicts_follow_the_interaction_interval(ab_times, verdict):
    plan = _plan()
    a, b = plan.names
    times = {"baseline": [10.0, 10.5, 9.5, 10.2, 10.0], a: [5.0, 5.25, 4.75, 5.1, 5.0],
             b: [8.0, 8.4, 7.6, 8.16, 8.0], matrix.arm_name((a, b)): ab_times}
    accs = {"baseline": [0.90, 0.91, 0.89, 0.90, 0.90], a: [0.89, 0.90, 0.88, 0.89, 0.89],
            b: [0.90, 0.91, 0.89, 0.90, 0.90], matrix.arm_name((a, b)): [0.87, 0.88, 0.86, 0.87, 0.87]}
    outcomes = _outcomes(times, accs)
    singles = comb.single_rows(plan, outcomes, list(range(5)), "flops")
    row = comb.pair_row(plan, outcomes, list(range(5)), a, b, None, singles, "flops")
    assert row["verdict"] == verdict, row["reason"]
    assert row["dacc_a"] == pytest.approx(-0.01) and row["dacc_b"] == pytest.approx(0.0)
    assert row["dacc_ab"] == pytest.approx(-0.03) and row["dacc_excess"] == pytest.approx(-0.02)


def test_failures_become_verdicts_with_reasons():
    plan = _plan()
    a, b = plan.names
    ab = matrix.arm_name((a, b))
    seeds = [0, 1]
    base = {"baseline": [10.0, 10.0], a: [5.0, 5.0], b: [8.0, 8.0]}
    diverged = _outcomes({**base, ab: [1.0, 1.0]}, errors={ab: "validation loss is nan at step 3"})
    row = comb.pair_row(plan, diverged, seeds, a, b, None, comb.single_rows(plan, diverged, seeds))
    assert row["verdict"] == "diverged" and "nan" in row["reason"]
    single_missing = _outcomes({**base, a: [None, None], ab: [4.0, 4.0]})
    row = comb.pair_row(plan, single_missing, seeds, a, b, None, comb.single_rows(plan, single_missing, seeds))
    assert row["verdict"] == "not measurable" and f"{a} alone missed the target" in row["reason"]
    row = comb.pair_row(plan, single_missing, seeds, a, b, "'x' and 'y' cannot be combined: z", {})
    assert row["verdict"] == "incompatible" and row["s_ab"] is None and "not run" in row["reason"]


def test_wall_clock_verdicts_stand_only_beyond_the_timing_noise_floor():
    plan = _plan()
    a, b = plan.names
    seeds = list(range(5))
    times = {"baseline": [10.0, 10.5, 9.5, 10.2, 10.0], a: [5.0, 5.25, 4.75, 5.1, 5.0],
             b: [8.0, 8.4, 7.6, 8.16, 8.0], matrix.arm_name((a, b)): [2.0, 2.1, 1.9, 2.05, 2.0]}  # interaction 2
    outcomes = _outcomes(times)

    def verdicts(floor):
        singles = comb.single_rows(plan, outcomes, seeds, "seconds", floor)
        return singles[a]["verdict"], comb.pair_row(plan, outcomes, seeds, a, b, None, singles, "seconds", floor)

    single, pair = verdicts(1.1)  # S_A = 2 > 1.1; interaction 2 > 1.1^2
    assert single == "faster" and pair["verdict"] == "synergy" and "noise floor squared (1.21)" in pair["reason"]
    single, pair = verdicts(1.5)  # interaction 2 < 1.5^2: within what timing noise can make of four runs
    assert single == "faster" and pair["verdict"] == "stacks"
    single, pair = verdicts(None)  # no A/A control: the noise is unmeasured
    assert single == "inconclusive (timing noise)" and pair["verdict"] == "stacks"
    assert "no A/A control" in pair["reason"]
    singles = comb.single_rows(plan, outcomes, seeds, "flops", None)  # FLOPs are not timed: no floor needed
    assert singles[a]["verdict"] == "faster"
    assert comb.pair_row(plan, outcomes, seeds, a, b, None, singles, "flops")["verdict"] == "synergy"


def test_capped_and_collapsed_runs_are_verdicts_and_capped_accuracy_is_left_out():
    plan = _plan()
    a, b = plan.names
    ab, seeds = matrix.arm_name((a, b)), list(range(5))
    times = {"baseline": [10.0] * 5, a: [5.0] * 5, b: [None] * 5, ab: [None, 4.0, 4.0, 4.0, 4.0]}
    accs = {"baseline": [0.9] * 5, a: [0.9] * 5, b: [0.5, 0.88, 0.88, 0.88, 0.88], ab: [0.2, 0.9, 0.9, 0.9, 0.9]}
    flags = {(b, 0): "capped", (ab, 0): "capped"}
    outcomes = _outcomes(times, accs, flags=flags)
    singles = comb.single_rows(plan, outcomes, seeds, "flops")
    assert singles[b]["verdict"] == "capped"
    assert singles[b]["dacc"] == pytest.approx(-0.02)  # seed 0's capped 0.5 is not an accuracy loss
    row = comb.pair_row(plan, outcomes, seeds, a, b, None, singles, "flops")
    assert row["verdict"] == "capped" and "seed(s) 0" in row["reason"]
    collapsed = _outcomes(times, accs, flags={(ab, 0): "collapsed"})
    row = comb.pair_row(plan, collapsed, seeds, a, b, None, comb.single_rows(plan, collapsed, seeds, "flops"), "flops")
    assert row["verdict"] == "collapsed"


def test_the_summary_leads_with_flops_keeps_wall_clock_beside_and_states_its_protocol():
    plan = _plan()
    a, b = plan.names
    seeds = list(range(5))
    times = {"baseline": [10.0, 10.5, 9.5, 10.2, 10.0], "baseline_aa": [10.0] * 5, a: [5.0] * 5, b: [8.0] * 5,
             matrix.arm_name((a, b)): [4.0] * 5}
    outcomes = _outcomes(times)
    for seed, factor in enumerate([1.0, 1.02, 0.97, 1.05, 1.0]):  # the A/A replicate's clock per step
        outcomes[("baseline_aa", seed)]["result"]["train_seconds"] = 10.0 * factor
    assert plan.aa_arm == "baseline_aa"
    summary = comb.summarise(plan, outcomes, seeds, {"protocol": {"target_rule": "a rule"}}, aa_arm=plan.aa_arm)
    assert summary["cost"] == "flops" and summary["secondary"]["cost"] == "seconds"
    assert summary["protocol"]["noise_floor"] == pytest.approx(1.05)
    assert summary["protocol"]["target_rule"] == "a rule" and "93.8%" in summary["protocol"]["interval_method"]
    with pytest.raises(ValueError, match="cost 'joules'"):
        comb.summarise(plan, outcomes, seeds, {}, cost="joules")


# ---------------------------------------------------------------- real runs

def _matrix(args: list[str]) -> int:
    return main(["matrix", "--scale", "smoke", "--seeds", "2", *sum((["--set", s] for s in SMOKE), []), *args])


@pytest.mark.slow
def test_matrix_runs_writes_its_outputs_and_reuses_mlflow_runs(project, capsys):
    names = ["activation_grad_pruning", "distillation", "lars"]
    assert _matrix(["--techniques", *names]) == 0
    rows = list(csv.DictReader(Path("reports/combinability.csv").read_text().splitlines()))
    assert [(r["a"], r["b"]) for r in rows] == [(names[0], names[1]), (names[0], names[2]), (names[1], names[2])]
    # 14 smoke steps on synthetic data: pairs may end at chance ("collapsed"), which is a verdict, not a crash
    assert all(r["verdict"] in ("range only (under 5 seeds)", "missed target", "not measurable", "collapsed")
               for r in rows)
    summary = json.loads(Path("reports/combinability.json").read_text())
    code = summary["provenance"]["code_files"]  # what the report re-hashes to mark the matrix stale
    assert {"harness/models.py", "reproductions/hinton2015_distillation.py"} <= set(code)
    assert summary["provenance"]["code_hash"] == code_hash(code)
    total = (1 + 2 + 3 + 3) * 2  # teacher, baseline and its A/A control, three singles, three pairs; two seeds
    assert summary["runs"] == {"run": total, "reused": 0, "failed": 0}
    assert Path("reports/combinability.png").read_bytes()[:4] == b"\x89PNG"
    first = {(p["a"], p["b"]): p["s_ab"] for p in summary["pairs"]}
    assert _matrix(["--techniques", *names]) == 0
    again = json.loads(Path("reports/combinability.json").read_text())
    assert again["runs"] == {"run": 0, "reused": total, "failed": 0}
    assert {(p["a"], p["b"]): p["s_ab"] for p in again["pairs"]} == first
    assert ": reused, " in capsys.readouterr().err


@pytest.mark.slow
def test_local_processes_give_the_in_process_results(project):
    names = ["fixed_point", "gradient_approximation"]
    plan = matrix.make_plan("mnist_cnn", "smoke", SMOKE, names)
    inproc = matrix.run_matrix(plan, [0], "inprocess", progress=False)
    procs = matrix.run_matrix(plan, [0], "processes", workers=2, progress=False)
    assert inproc.keys() == procs.keys()
    for key in inproc:
        # In-process jobs use both cores, each of two workers one: on some CPUs (an AMD EPYC, 2026-12-02) oneDNN's
        # reductions then differ in the last bits (test loss 2.2072775 against 2.2072778), so equal up to float
        # rounding; on the Xeon of earlier sessions they were bit-identical.
        assert inproc[key]["result"]["final"] == pytest.approx(procs[key]["result"]["final"], rel=1e-5), key
        assert inproc[key]["result"]["steps"] == procs[key]["result"]["steps"]


def _finals(table: dict) -> dict:
    return {arm: [(r["steps"], r["final"]) for r in a["runs"]] for arm, a in table["arms"].items()}


def _one_thread_main(args: list[str]) -> int:
    """The CLI in this process with one torch thread, as each pool or Ray worker runs on 2 cores: equal
    thread counts give equal reduction orders, so the final metrics can be compared bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_reproduce_through_local_processes_gives_the_in_process_table(project):
    args = ["reproduce", "hinton2015_distillation", "--scale", "smoke", "--no-track", "--seeds", "2"]
    assert main([*args, "--executor", "processes", "--workers", "2", "--tag", "procs"]) == 0
    assert _one_thread_main([*args, "--tag", "local"]) == 0
    tables = {t: json.loads(Path(f"reports/runs/hinton2015_distillation/smoke-{t}.json").read_text())
              for t in ("procs", "local")}
    assert _finals(tables["procs"]) == _finals(tables["local"])  # the teacher's weights reached the workers too


class _NaNLoss(Technique):
    """Test-only: a loss that turns NaN, as a diverging technique's would."""

    name = "nan_loss"
    touches = frozenset({"loss"})

    def loss(self, pl_module, logits, x, y, base_loss):
        return base_loss * float("nan")


def test_a_diverging_technique_is_a_verdict_not_a_crash(project, monkeypatch):
    monkeypatch.setattr(tech.TECHNIQUES, "_items", dict(tech.TECHNIQUES._items))
    tech.register_technique(_NaNLoss)
    plan = matrix.make_plan("mnist_cnn", "smoke", SMOKE, ["nan_loss", "lars"])
    outcomes = matrix.run_matrix(plan, [0], progress=False)
    summary = comb.summarise(plan, outcomes, [0], {})
    assert summary["singles"]["nan_loss"]["verdict"] == "diverged"
    assert summary["pairs"][0]["verdict"] == "diverged" and "nan" in summary["pairs"][0]["reason"]


@pytest.mark.slow
def test_ray_executor_on_a_local_cluster(project):
    """A Ray cluster started on 127.0.0.1 runs the jobs and gives the in-process results."""
    ray_bin = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    port = "6391"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 108 characters
    start = [str(ray_bin), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    done = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        plan = matrix.make_plan("mnist_cnn", "smoke", SMOKE, ["lars"])
        ray_out = matrix.run_matrix(plan, [0], "ray", ray_address=f"127.0.0.1:{port}", progress=False)
        local = matrix.run_matrix(plan, [0], "inprocess", progress=False)
        finals = {k: v["result"]["final"] for k, v in local.items()}
        assert {k: v["result"]["final"] for k, v in ray_out.items()} == finals
        # `reproduce` goes through the same executors: a paper's table from the cluster equals the in-process one.
        args = ["reproduce", "micikevicius2018_mixed_precision", "--scale", "smoke", "--no-track", "--rerun"]
        assert main([*args, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--tag", "ray"]) == 0
        assert _one_thread_main([*args, "--tag", "local"]) == 0
        tables = {t: json.loads(Path(f"reports/runs/micikevicius2018_mixed_precision/smoke-{t}.json").read_text())
                  for t in ("ray", "local")}
        assert _finals(tables["ray"]) == _finals(tables["local"])
    finally:
        import ray

        ray.shutdown()
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_cli_errors_are_one_line(project, capsys):
    assert main(["matrix", "--scale", "smoke", "--executor", "slurm"]) == 2
    assert main(["matrix", "--scale", "smoke", "--techniques", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "invalid choice: 'slurm'" in err[0] and "unknown technique 'nope'" in err[1]
    assert not Path("reports/combinability.csv").exists()


def test_params_drive_the_matrix_and_explicit_flags_win(project):
    shutil.copy(Path(__file__).parent.parent / "params.yaml", "params.yaml")  # the project's own, unedited
    assert main(["matrix", "--params", "params.yaml", "--no-track", "--scale", "smoke", "--seeds", "1",
                 "--techniques", "fixed_point", "lars"]) == 0
    summary = json.loads(Path("reports/combinability.json").read_text())
    assert summary["techniques"] == ["fixed_point", "lars"] and summary["seeds"] == [0]
    assert summary["pairs"][0]["verdict"] != "failed"  # fixed_point ran with params.yaml's setting
    assert "'mnist_cnn'" in summary["recipe_rule"]
    assert math.isfinite(summary["baseline"]["test_acc"][0])


def test_calibrate_matrix_preregisters_the_target_the_matrix_then_uses(project, capsys):
    sets = sum((["--set", s] for s in SMOKE), [])
    args = ["calibrate", "matrix", "--scale", "smoke", "--seeds", "1", "--no-track", *sets,
            "--tune", "baseline:optim.lr=0.05,0.1", "--tune", "lars:optim.lr=0.5,1"]
    assert main(args) == 0
    record = json.loads(Path("reports/preregistered/matrix/smoke.json").read_text())
    assert record["recipe"] == {"name": "mnist_cnn", "overrides": SMOKE} and record["seeds"] == [1000]
    assert list(record["targets"]) == ["baseline"]  # the target is the baseline's
    assert set(record["tuning"]) == {"baseline", "lars"} and len(record["overrides"]) == 2
    assert _matrix(["--techniques", "lars", "--seeds", "1", "--no-track"]) == 0
    summary = json.loads(Path("reports/combinability.json").read_text())
    assert summary["target"]["value"] == record["targets"]["baseline"]["value"]
    assert summary["protocol"]["target_rule"].startswith("pre-registered")
    assert "tuned on validation: baseline.optim.lr=" in summary["protocol"]["target_rule"]
    capsys.readouterr()
    # Made for other overrides: refused in one line, nothing written over.
    before = Path("reports/combinability.json").read_bytes()
    assert main(["matrix", "--scale", "smoke", "--seeds", "1", "--no-track", "--techniques", "lars",
                 "--set", "target.value=0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rerun effitrain calibrate matrix" in err[0]
    assert Path("reports/combinability.json").read_bytes() == before


def test_tuned_settings_spread_to_every_arm_that_runs_the_technique_and_clashing_pairs_are_not_run():
    names = ["distillation", "fixed_point", "lars"]
    record = {"format": 1, "paper": "matrix", "scale": "smoke", "rule": "a rule", "seeds": [1000], "created": "now",
              "recipe": {"name": "mnist_cnn", "overrides": []},
              "targets": {"baseline": {"metric": "val/acc", "mode": "max", "value": 0.2}},
              "overrides": ["baseline.optim.lr=0.1", "distillation.optim.lr=0.01", "lars.optim.lr=2"]}
    plan = matrix.make_plan("mnist_cnn", "smoke", names=names, preregistered=record, preregistered_path="rec.json")
    lr = {a.name: plan.recipe.for_arm(a).optim["lr"] for a in plan.recipe.arms}
    assert lr["baseline"] == lr["baseline_aa"] == lr["teacher"] == lr["fixed_point"] == 0.1  # the shared setting
    assert lr["distillation"] == lr["fixed_point+distillation"] == 0.01
    assert lr["lars"] == lr["fixed_point+lars"] == 2
    why = {(a, b): w for a, b, w in plan.pairs}
    assert "tuned to different values of one setting (optim.lr: distillation 0.01, lars 2)" in why[("distillation",
                                                                                                     "lars")]
    assert not any("lars" in a.techniques and "distillation" in a.techniques for a in plan.recipe.arms)
    assert plan.recipe.target.value == 0.2 and "tuned on validation: baseline.optim.lr=0.1" in plan.target_rule
    with pytest.raises(ValueError, match="tuned on arm 'fixed_point\\+lars'"):
        matrix.make_plan("mnist_cnn", "smoke", names=names, preregistered={**record, "overrides": [
            "fixed_point+lars.optim.lr=1"]})


def test_a_capped_run_is_run_again_not_reused(project):
    """A run the time guard stopped measured the machine's load, not the recipe: the next command reruns it."""
    from harness.experiments import jobs

    plan = _plan()
    job = jobs.Job(plan.recipe, "baseline", 0, matrix.EXPERIMENT, "datasets", None, None, {})
    folder = jobs.run_store() / "k1"
    folder.mkdir(parents=True)
    outcome = {"result": {"capped": False, "final": {}}, "error": None, "diverged": False}
    (folder / "outcome.json").write_text(json.dumps(outcome))
    assert jobs._reused(None, job, "k1")["reused"]
    outcome["result"]["capped"] = True
    (folder / "outcome.json").write_text(json.dumps(outcome))
    assert jobs._reused(None, job, "k1") is None
