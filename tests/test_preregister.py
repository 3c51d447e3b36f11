"""Pre-registered targets and tuning: `effitrain calibrate` on calibration seeds and validation data only,
then `effitrain reproduce` racing to those targets with those settings (harness/experiments/preregister.py)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.experiments import preregister
from harness.measure import Budget, Target
from harness.recipes import Arm
from tests.tiny import tiny_recipe


def test_the_written_rule():
    assert preregister.target_from([0.98, 0.99, 0.985], "max") == 0.983  # 1 - 1.1 x 0.015 = 0.9835, down to 0.001
    assert preregister.target_from([0.5, 0.6, 0.55], "max") == 0.505  # 1 - 1.1 x 0.45 = 0.505
    assert preregister.target_from([100.0, 120.0, 110.0], "min") == 121.0  # 1.1 x 110, up to 0.001


def test_grids_must_be_well_formed_and_give_every_tuned_arm_the_same_budget():
    with pytest.raises(ValueError, match="ARM:KEY=V1,V2"):
        preregister.parse_grid("optim.lr=1,2")
    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("t")])
    with pytest.raises(ValueError, match="unequal tuning budgets"):
        preregister._grids(recipe, ["baseline:optim.lr=0.1,0.2", "t:optim.lr=0.1,0.2,0.4"])
    grids = preregister._grids(recipe, ["baseline:optim.lr=0.1,0.2", "t:optim.lr=0.1", "t:optim.momentum=0,0.9"])
    assert grids["t"] == [["t.optim.lr=0.1", "t.optim.momentum=0"], ["t.optim.lr=0.1", "t.optim.momentum=0.9"]]
    with pytest.raises(ValueError, match="no arm 'nope'"):
        preregister._grids(recipe, ["nope:optim.lr=1"])


def test_reported_seeds_never_overlap_the_calibration_seeds():
    preregister.check_seeds([0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="calibration seeds"):
        preregister.check_seeds([999, 1000])


def test_calibration_tunes_on_validation_then_fixes_each_baselines_target(tmp_path):
    arms = [Arm("baseline"), Arm("other"), Arm("tech", baseline="other")]
    recipe = tiny_recipe(arms=arms, budget=Budget(steps=6), target=Target("val/acc", 0.5), scale="cpu")
    out = tmp_path / "p" / "cpu.json"
    record = preregister.calibrate(recipe, 2, ["tech:optim.lr=0.001,0.2", "other:optim.lr=0.001,0.2"], paper="p",
                                   out=out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert record["seeds"] == [1000, 1001] and set(record["targets"]) == {"baseline", "other"}
    for arm in ("tech", "other"):
        trials = record["tuning"][arm]["trials"]
        best = max(trials, key=lambda t: t["median"])
        assert record["tuning"][arm]["chosen"] == best["overrides"] and len(trials) == 2
        assert record["tuning"][arm]["metric"] == "val/acc"
    t = record["targets"]["other"]
    assert t["value"] == preregister.target_from(t["values"], "max")
    applied, rule = preregister.apply(recipe, preregister.load(out), out)
    assert applied.target.value == record["targets"]["baseline"]["value"]
    assert applied.for_arm(applied.arm("tech")).target.value == t["value"]  # races its own baseline's target
    assert applied.for_arm(applied.arm("other")).target.value == t["value"]
    chosen = record["tuning"]["tech"]["chosen"][0].split("=")[1]
    assert applied.for_arm(applied.arm("tech")).optim["lr"] == float(chosen)
    assert rule.startswith("pre-registered") and "1000-1001" in rule
    assert preregister.apply(recipe, None)[1].startswith("the recipe's own target")
    out.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable pre-registration record"):
        preregister.load(out)


def test_the_cli_calibrates_then_reproduces_to_the_preregistered_target(project, capsys):
    assert main(["calibrate", "micikevicius2018_mixed_precision", "--scale", "smoke", "--seeds", "1",
                 "--no-track", "--set", "budget.steps=4"]) == 0
    path = project / "reports/preregistered/micikevicius2018_mixed_precision/smoke.json"
    record = json.loads(path.read_text())
    assert "pre-registered:" in capsys.readouterr().out
    assert main(["reproduce", "micikevicius2018_mixed_precision", "--scale", "smoke", "--seeds", "1", "--no-track",
                 "--no-aa-control", "--set", "budget.steps=4"]) == 0
    table = json.loads((project / "reports/runs/micikevicius2018_mixed_precision/smoke-full.json").read_text())
    assert table["target"]["value"] == record["targets"]["fp32"]["value"]
    assert table["protocol"]["target_rule"].startswith("pre-registered")
    assert main(["reproduce", "micikevicius2018_mixed_precision", "--scale", "smoke", "--seeds", "1", "--no-track",
                 "--no-aa-control", "--set", "budget.steps=4", "--set", "target.value=0.3", "--tag", "x"]) == 0
    table = json.loads((project / "reports/runs/micikevicius2018_mixed_precision/smoke-x.json").read_text())
    assert "not pre-registered: target.value=0.3" in table["protocol"]["target_rule"]


def test_a_capped_calibration_run_fixes_no_target(tmp_path):
    """A run the time guard stopped ends short of its budget: the command refuses to set a target from it."""
    recipe = tiny_recipe(arms=[Arm("baseline")], budget=Budget(steps=50, train_seconds=1e-9),
                         target=Target("val/acc", 0.5), scale="cpu")
    out = tmp_path / "p" / "cpu.json"
    with pytest.raises(ValueError, match="hit the training-time guard"):
        preregister.calibrate(recipe, 1, [], paper="p", out=out)
    assert not out.exists()


def test_a_diverging_trial_is_a_result_of_the_grid_not_the_end_of_it(tmp_path):
    """An lr that blows up is recorded with its error and never chosen; the grid goes on."""
    recipe = tiny_recipe(arms=[Arm("baseline")], budget=Budget(steps=6), target=Target("val/acc", 0.5), scale="cpu")
    out = tmp_path / "p" / "cpu.json"
    record = preregister.calibrate(recipe, 1, ["baseline:optim.lr=0.01,1000000000.0"], paper="p", out=out)
    trials = {t["overrides"][0]: t for t in record["tuning"]["baseline"]["trials"]}
    blown = trials["baseline.optim.lr=1000000000.0"]
    assert blown["median"] is None and "nan" in blown["error"]
    assert record["tuning"]["baseline"]["chosen"] == ["baseline.optim.lr=0.01"]
    with pytest.raises(ValueError, match="every trial of baseline's grid diverged"):
        preregister.calibrate(recipe, 1, ["baseline:optim.lr=1000000000.0,2000000000.0"], paper="p",
                              out=tmp_path / "q.json")
