"""The technique registry, composition rules and every technique's 2-step smoke run."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import torch

from harness import techniques as tech
from harness.measure import Budget
from harness.recipes import Arm
from harness.runner import Runner
from reproductions.hinton2015_distillation import distillation_loss
from tests.conftest import tiny_recipe


def _arms_for(cls: type[tech.Technique]) -> list[Arm]:
    refs = [Arm(name, reference=True) for name in cls.needs_arms]
    return refs + [Arm("baseline"), Arm("with", techniques=(cls.name,))]


@pytest.mark.parametrize("name", list(tech.techniques()))
def test_every_technique_trains_two_steps_on_synthetic_data(name):
    cls = tech.get_technique(name)
    recipe = tiny_recipe(arms=_arms_for(cls), budget=Budget(steps=2))
    table = Runner(progress=False).run(recipe, seeds=[0])
    run = table["arms"]["with"]["runs"][0]
    assert run["steps"] == 2
    assert torch.isfinite(torch.tensor(run["final"]["test/loss"]))


def test_registry_refuses_duplicates_and_unknown_parts():
    class Dup(tech.Technique):
        name = "distillation"

    with pytest.raises(ValueError, match="already registered"):
        tech.register_technique(Dup)

    class Odd(tech.Technique):
        name = "odd_parts"
        touches = frozenset({"vibes"})

    with pytest.raises(ValueError, match="unknown parts"):
        tech.register_technique(Odd)


def test_composition_is_ordered_and_conflicts_are_refused():
    with pytest.raises(ValueError, match="both own the number format"):
        tech.compose(["bf16_autocast", "fp16_loss_scaling"])
    with pytest.raises(ValueError, match="unknown technique"):
        tech.compose(["no_such_trick"])
    order = [c.name for c in tech.compose(["distillation", "bf16_autocast"])]
    assert order == ["bf16_autocast", "distillation"]  # order 10 before 40


class PluginTechnique(tech.Technique):
    """Registered only through the entry point in the test below."""

    name = "plugin_noop"
    touches = frozenset({"eval"})


def test_entry_point_group_adds_techniques(monkeypatch):
    ep = EntryPoint(name="plugin_noop", value="tests.test_techniques:PluginTechnique", group=tech.ENTRY_POINT_GROUP)
    monkeypatch.setattr(tech, "entry_points", lambda group: [ep] if group == tech.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(tech, "_plugins_loaded", False)
    monkeypatch.setattr(tech, "_REGISTRY", dict(tech._REGISTRY))
    assert tech.get_technique("plugin_noop") is PluginTechnique


def test_distillation_loss_matches_its_definition():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 10, requires_grad=True), torch.randn(8, 10), torch.randint(0, 10, (8,))
    # hard_weight 1 is plain cross-entropy
    assert torch.allclose(distillation_loss(s, t, y, 20.0, 1.0), torch.nn.functional.cross_entropy(s, y))
    # soft part: T^2 * cross-entropy against the tempered teacher, minus the teacher's entropy (a constant)
    T = 4.0
    p = torch.softmax(t / T, 1)
    ce = -(p * torch.log_softmax(s / T, 1)).sum(1).mean() * T * T
    entropy = -(p * p.log()).sum(1).mean() * T * T
    assert torch.allclose(distillation_loss(s, t, y, T, 0.0), ce - entropy, atol=1e-5)
    # a student equal to its teacher has zero soft loss
    assert distillation_loss(t, t, y, T, 0.0).abs() < 1e-6


def test_distillation_without_a_teacher_arm_is_refused_before_running():
    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("d", techniques=("distillation",))])
    with pytest.raises(ValueError, match="needs arm"):
        Runner(progress=False).run(recipe, seeds=[0])


class LrProbe(tech.Technique):
    """Test-only: records the learning rate after every optimizer step."""

    name = "lr_probe"
    touches = frozenset({"eval"})
    seen: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        LrProbe.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_schedule_steps_once_per_batch(monkeypatch):
    monkeypatch.setattr(tech, "_REGISTRY", dict(tech._REGISTRY))
    tech.register_technique(LrProbe)
    LrProbe.seen = []
    recipe = tiny_recipe(arms=[Arm("baseline", techniques=("lr_probe",))], budget=Budget(steps=4), schedule="cosine")
    Runner(progress=False).run_one(recipe, recipe.arms[0], seed=0)
    lr0 = recipe.optim["lr"]
    expected = [lr0 * (1 + torch.cos(torch.tensor(torch.pi * k / 4))).item() / 2 for k in range(1, 5)]
    assert LrProbe.seen == pytest.approx(expected, abs=1e-7)  # cosine to 0 over the 4-step budget


def _pairs() -> list[tuple[str, str]]:
    names = list(tech.techniques())
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


@pytest.mark.parametrize(("a", "b"), _pairs())
def test_every_pair_composes_or_is_declared_incompatible_in_words(a, b):
    """The registry's static verdicts hold: a pair either trains 2 steps together or says why not."""
    ca, cb = tech.get_technique(a), tech.get_technique(b)
    reason = tech.conflict_reason(ca, cb)
    if reason is not None:
        assert "declare a conflict" not in reason, f"{a} + {b}: a declared conflict needs a note saying why"
        with pytest.raises(ValueError, match="cannot be combined"):
            tech.compose([a, b])
        return
    refs = [Arm(n, reference=True) for n in dict.fromkeys(ca.needs_arms + cb.needs_arms)]
    recipe = tiny_recipe(arms=[*refs, Arm("baseline"), Arm("pair", techniques=(a, b))], budget=Budget(steps=2))
    run = Runner(progress=False).run(recipe, seeds=[0])["arms"]["pair"]["runs"][0]
    assert run["steps"] == 2
    assert torch.isfinite(torch.tensor(run["final"]["test/loss"]))
