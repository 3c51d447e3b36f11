"""The measurement definitions: clock, time to target, budgets, statistics, verdicts."""

from __future__ import annotations

import time

import pytest

from harness.measure import Budget, Target, TrainClock, time_to_target
from harness.recipes import Arm
from harness.runner import Runner
from tests.tiny import tiny_recipe


def test_clock_excludes_evaluation():
    clock = TrainClock()
    clock.resume()
    time.sleep(0.05)
    with clock.paused():
        time.sleep(0.3)
    time.sleep(0.05)
    clock.pause()
    assert clock.eval_seconds >= 0.3
    assert 0.1 <= clock.train_seconds < 0.3  # the 0.3 s of evaluation is not on the clock


def test_clock_in_a_run_splits_train_and_eval():
    result, _ = Runner(progress=False).run_one(tiny_recipe(budget=Budget(steps=6)), Arm("baseline"), seed=0)
    assert result.train_seconds > 0 and result.eval_seconds > 0 and result.warmup_seconds > 0
    assert 0 < result.eval_share < 1
    # one evaluation per step (every_n_steps=1); the curve's clock never goes back
    assert [p["step"] for p in result.curve] == [1, 2, 3, 4, 5, 6]
    clocks = [p["train_seconds"] for p in result.curve]
    assert clocks == sorted(clocks) and clocks[0] < result.warmup_seconds  # step 1 is warm-up, off the clock


def test_time_to_target_on_a_hand_made_curve():
    curve = [{"train_seconds": 1.0, "val/acc": 0.5}, {"train_seconds": 2.0, "val/acc": 0.91},
             {"train_seconds": 3.0, "val/acc": 0.89}, {"train_seconds": 4.0, "val/acc": 0.95}]
    assert time_to_target(curve, Target("val/acc", 0.9)) == 2.0
    assert time_to_target(curve, Target("val/acc", 0.96)) is None
    loss_curve = [{"train_seconds": 1.0, "val/loss": 2.0}, {"train_seconds": 5.0, "val/loss": 0.4}]
    assert time_to_target(loss_curve, Target("val/loss", 0.5, mode="min")) == 5.0


@pytest.mark.parametrize("budget, steps, stopped_by", [
    (Budget(epochs=1), 2, "epochs"),            # 64 samples / batch 32 -> 2 steps an epoch
    (Budget(steps=3), 3, "steps"),
    (Budget(samples=70), 3, "samples"),         # 32, 64, 96 >= 70
    (Budget(train_seconds=1e-9), 1, "train_seconds"),  # spent as soon as the clock starts after warm-up
    (Budget(flops=1.0), 1, "flops"),
])
def test_each_budget_kind_stops_the_run(budget, steps, stopped_by):
    recipe = tiny_recipe(budget=budget, n_train=64)
    result, _ = Runner(progress=False).run_one(recipe, Arm("baseline"), seed=0)
    assert result.steps == steps
    assert result.stopped_by == stopped_by
    if stopped_by == "flops":
        assert result.flops > 0


@pytest.mark.parametrize("budget", [Budget(), Budget(epochs=0), Budget(steps=-1), Budget(train_seconds=float("nan")),
                                    Budget(epochs=1.5)])
def test_nonsense_budgets_are_refused(budget):
    with pytest.raises(ValueError, match="budget"):
        budget.validate()


def test_same_seed_gives_identical_metrics():
    recipe = tiny_recipe(budget=Budget(steps=5))
    a, _ = Runner(progress=False).run_one(recipe, Arm("baseline"), seed=3)
    b, _ = Runner(progress=False).run_one(recipe, Arm("baseline"), seed=3)
    c, _ = Runner(progress=False).run_one(recipe, Arm("baseline"), seed=4)
    strip = lambda r: [{k: v for k, v in p.items() if k != "train_seconds"} for p in r.curve]  # noqa: E731
    assert strip(a) == strip(b) and a.final == b.final
    assert strip(a) != strip(c)




def test_the_cost_on_a_curve_point_includes_that_step_and_the_budget_sees_it():
    """Each evaluation at step k records k full batches and k steps' FLOPs (before the Ledger, the point at step k
    recorded k - 1 batches); a sample budget stops at the step that reaches it; one epoch row covers the run."""
    recipe = tiny_recipe(budget=Budget(samples=32 * 5), eval_every_n_steps=1)
    result, _ = Runner(progress=False).run_one(recipe, Arm("baseline"), seed=0)
    assert result.steps == 5 and result.stopped_by == "samples"
    per_step = result.flops / 5
    assert per_step > 0
    for point in result.curve:
        assert point["samples"] == 32 * point["step"] and point["flops"] == pytest.approx(per_step * point["step"])
    assert [(e["epoch"], e["samples"]) for e in result.epochs] == [(1, 160)]
    assert result.epochs[0]["params"] == sum(p.numel() for p in recipe.model((1, 28, 28), 10).parameters())
