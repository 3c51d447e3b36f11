"""Runner features the reproductions rely on: schedules, accumulation, per-arm baselines, optimizer owners."""

from __future__ import annotations

import pytest
import torch

from harness import techniques as tech
from harness.experiments.reproduce import run_recipe
from harness.measure import Budget, Target
from harness.recipes import Arm
from harness.runner import Runner, build_schedule
from tests.tiny import tiny_recipe


def _lrs(spec: str, steps_per_epoch: int, total: int) -> list[float]:
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = build_schedule(spec, opt, steps_per_epoch, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return out


def test_warmup_then_poly_ramps_linearly_then_decays_to_zero():
    lrs = _lrs("warmup:1+poly:2", steps_per_epoch=4, total=12)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx((1 - 1 / 8) ** 2)  # 8 decay steps after 4 warm-up steps
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))


@pytest.mark.parametrize("spec", ["warmup:x+cosine", "warmup:1", "poly:two", "linear"])
def test_bad_schedules_are_refused(spec):
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    with pytest.raises(ValueError, match="schedule"):
        build_schedule(spec, opt, 4, 12)


def _one_step_params(**kw) -> list[torch.Tensor]:
    recipe = tiny_recipe(budget=Budget(steps=1), optim={"name": "sgd", "lr": 0.5}, **kw)
    _, model = Runner(progress=False).run_one(recipe, recipe.arms[0], seed=3)
    return [p.detach().clone() for p in model.parameters()]


def test_micro_batches_give_the_same_step_as_one_batch():
    whole = _one_step_params()
    accumulated = _one_step_params(micro_batch_size=8)  # batch 32 in four micro-batches
    for a, b in zip(whole, accumulated):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="micro_batch_size"):
        tiny_recipe(micro_batch_size=64).validate()


def test_each_arm_is_raced_against_its_own_baseline():
    arms = (Arm("a"), Arm("a_fast", baseline="a"), Arm("b"), Arm("b_fast", baseline="b"))
    table = run_recipe(recipe=tiny_recipe(arms=arms, baseline="a"), seeds=[0])
    assert set(table["speedups"]) == {"a_fast", "b_fast"}  # "b" is a baseline, raced against none
    assert table["speedups"]["b_fast"]["baseline"] == "b"
    assert table["arms"]["b"]["target"] == {"metric": "val/acc", "value": 0.5, "mode": "max"}
    assert table["arms"]["a_fast"]["flop_fraction"] == 1.0
    with pytest.raises(ValueError, match="has baseline 'c'"):
        tiny_recipe(arms=(Arm("a"), Arm("x", baseline="c")), baseline="a").validate()


class FrozenOptimizer(tech.Technique):
    """Replaces the optimizer by SGD with lr 0: the parameters must not move."""

    name = "test_frozen_optimizer"
    touches = frozenset({"optimizer"})

    def configure_optimizer(self, model, spec):
        assert spec["name"] == "sgd"
        return torch.optim.SGD(model.parameters(), lr=0.0)


def test_a_technique_can_own_the_optimizer_and_two_owners_conflict(monkeypatch):
    monkeypatch.setitem(tech.TECHNIQUES._items, FrozenOptimizer.name, FrozenOptimizer)
    recipe = tiny_recipe(arms=(Arm("baseline", techniques=(FrozenOptimizer.name,)),), budget=Budget(steps=2))
    _, model = Runner(progress=False).run_one(recipe, recipe.arms[0], seed=0)
    assert all(torch.equal(a, b) for a, b in zip(_fresh(recipe), model.parameters()))

    class Other(FrozenOptimizer):
        name = "test_other_optimizer"

    assert "both replace the optimizer" in tech.conflict_reason(FrozenOptimizer, Other)


def _fresh(recipe):
    """The model as seed 0 initialises it in the Runner (seed_everything before the model is built)."""
    import lightning.pytorch as pl

    pl.seed_everything(0, workers=False, verbose=False)
    return list(recipe.model((1, 28, 28), 10).parameters())


def test_a_speedup_claim_is_judged_on_time_to_target_against_the_arms_baseline():
    from harness.cards import Claim, PaperCard

    card = PaperCard(id="tiny_paper", title="t", authors="a", venue="v", year=2000, arxiv=None, family="arithmetic",
                     summary="s", datasets=("synthetic",), models=("mlp",),
                     claims=(Claim("fast", "b is 1000x faster than a", "speedup", "b_fast", 1000.0, "nowhere",
                                          scales=("smoke",)),))
    arms = (Arm("a"), Arm("b"), Arm("b_fast", baseline="b"))
    table = run_recipe(recipe=tiny_recipe(arms=arms, baseline="a", budget=Budget(steps=4),
                                                   target=Target("val/acc", 0.0)),
                                       seeds=list(range(5)), card=card, aa_control=False)
    claim = table["claims"][0]
    assert claim["measured"] == pytest.approx(table["speedups"]["b_fast"]["speedup"])
    assert claim["verdict"] == "not reproduced"  # two equal arms are nowhere near 1000x apart
