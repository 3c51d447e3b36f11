"""The technique registry, composition rules, and every technique and pair on its canonical setting."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest
import torch

from harness import registry
from harness import techniques as tech
from harness.experiments.reproduce import run_recipe
from harness.measure import Budget
from harness.models import mlp, small_cnn
from harness.recipes import Arm
from harness.runner import RunContext, Runner, arm_order
from reproductions.degusmao2016_kernel_rescaling import wide_kernel_cnn
from reproductions.hinton2015_distillation import distillation_loss
from reproductions.roy2018_tree_cnn import tree_cnn
from tests.tiny import tiny_recipe

# One canonical setting per technique (Composer's tests/algorithms/algorithm_settings.py habit): a model on
# which the technique has something to act on, and its arguments. A technique missing here fails the
# contract test, so a new one must say where it acts.
CONV = small_cnn((4, 8), 16)  # conv-only techniques need convolutions to act on
CONV_BN = small_cnn((4, 8), 16, norm=True)  # network slimming needs BatchNorm scales
MLP = mlp((32,))
WIDE = wide_kernel_cnn((4, "M", 8))  # kernel rescaling needs kernels above 3x3 and a global pool
TREE = tree_cnn(root=CONV, branch=CONV)  # Tree-CNN grows a tree: a root with a leaf per first-stage class
CANONICAL: dict[str, tuple[object, dict]] = {
    "activation_grad_pruning": (CONV, {"rate": 0.9}),
    "bf16_autocast": (CONV, {}),
    "crs": (CONV, {"sample_ratio": 0.5, "minimal_k": 1, "layers": "conv"}),
    "distillation": (MLP, {}),
    "dsd": (CONV, {"sparse_from": 0.0, "dense_from": 1.0}),  # masked from the first of the test's 2 steps
    "early_bird": (CONV_BN, {"s": 1e-2}),  # slimming acts from the first step (the ticket: tests/test_you2020.py)
    "finetune_classes": (CONV, {}),  # starts from its 'initial' reference arm's weights
    "fixed_point": (MLP, {"il": 4, "fl": 8, "rounding": "stochastic"}),
    "fp16_loss_scaling": (CONV, {}),
    "gradient_approximation": (CONV, {"method": "spatial", "spatial_stride": 2}),
    "kernel_rescaling": (WIDE, {}),  # 5x5 kernels at 3x3 on 17 px images for the first step, then rescaled
    "lars": (CONV, {}),
    "max_norm": (MLP, {"c": 0.3}),  # below the initial row norms (about 0.58), so the constraint binds
    "net2wider": (CONV, {"grow_at": 0.5}),  # half width for the first of the test's 2 steps, then widened
    "prunetrain": (CONV, {}),  # the group lasso acts from the first step (channel removal: tests/test_lym2019.py)
    "tree_cnn": (TREE, {}),  # classes 6-9 join leaves of the 'initial_tree' arm's root, which grow branches
}


# Techniques that act by replacing layers, and the layer type their surgery leaves in the model.
SURGERY = {"crs": "CRSConv2d", "fixed_point": "FixedPointLayer", "gradient_approximation": "ApproxConv2d"}


def _canonical_recipe(names: tuple[str, ...], steps: int = 2):
    classes = [tech.get_technique(n) for n in names]
    models = {CANONICAL[n][0] for n in names}
    model = next(m for m in (TREE, WIDE, CONV_BN, CONV, MLP) if m in models)
    refs = [Arm(r, reference=True) for r in dict.fromkeys(r for c in classes for r in c.needs_arms)]
    kwargs = {n: CANONICAL[n][1] for n in names if CANONICAL[n][1]}
    arms = [*refs, Arm("baseline"), Arm("with", techniques=names, technique_kwargs=kwargs)]
    return tiny_recipe(arms=arms, budget=Budget(steps=steps), model=model, flatten=model is MLP)


def _train_arms(recipe) -> dict[str, tuple[dict, torch.nn.Module]]:
    """Every arm of one seed, reference arms first, as (result row, trained model)."""
    runner, context, out = Runner(progress=False), None, {}
    for arm in arm_order(recipe):
        result, model = runner.run_one(recipe, arm, 0, context)
        if context is None:
            context = RunContext(0, runner.loaders(recipe, 0)[0])
        context.models[arm.name] = model
        out[arm.name] = (result.row(), model)
    return out


def test_every_technique_has_a_canonical_setting():
    assert set(CANONICAL) >= set(tech.techniques()), "add the new technique to CANONICAL with a model it acts on"


@pytest.mark.parametrize("name", list(tech.techniques()))
def test_every_technique_trains_and_acts_on_its_canonical_setting(name):
    """Two steps on a model it can act on, and the weights end up different from the baseline's."""
    runs = _train_arms(_canonical_recipe((name,)))
    (row, model), (_, base) = runs["with"], runs["baseline"]
    assert row["steps"] == 2
    assert torch.isfinite(torch.tensor(row["final"]["test/loss"]))
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), base.parameters()))
    assert moved > 0, f"{name} left every weight exactly where the baseline put it: it did not act"
    surgery = SURGERY.get(name)
    if surgery is not None:  # a technique that replaces layers must have replaced some on this model
        assert any(type(m).__name__ == surgery for m in model.modules()), f"{name} swapped no layer for {surgery}"


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


def _register_plugin() -> None:
    tech.register_technique(PluginTechnique)


@pytest.mark.parametrize("value", ["tests.test_techniques:_register_plugin", "tests.plugin_module"])
def test_entry_point_group_adds_techniques(monkeypatch, value):
    """A plug-in's entry point, a callable or a module whose import registers, reaches the registry."""
    ep = EntryPoint(name="plugin", value=value, group="effitrain.plugins")
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == "effitrain.plugins" else [])
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(tech.TECHNIQUES, "_items", dict(tech.TECHNIQUES._items))
    monkeypatch.delitem(sys.modules, "tests.plugin_module", raising=False)
    assert tech.get_technique("plugin_noop").name == "plugin_noop"


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
        run_recipe(recipe=recipe, seeds=[0])


class LrProbe(tech.Technique):
    """Test-only: records the learning rate after every optimizer step."""

    name = "lr_probe"
    touches = frozenset({"eval"})
    seen: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        LrProbe.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_schedule_steps_once_per_batch(monkeypatch):
    monkeypatch.setattr(tech.TECHNIQUES, "_items", dict(tech.TECHNIQUES._items))
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
    run = run_recipe(recipe=_canonical_recipe((a, b)), seeds=[0])["arms"]["with"]["runs"][0]
    assert run["steps"] == 2
    assert torch.isfinite(torch.tensor(run["final"]["test/loss"]))


def test_a_broken_plugin_fails_every_look_up_not_just_the_first(monkeypatch):
    ep = EntryPoint(name="broken", value="tests.no_such_module", group="effitrain.plugins")
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == "effitrain.plugins" else [])
    monkeypatch.setattr(registry, "_loaded", False)
    for _ in range(2):
        with pytest.raises(ValueError, match="plug-in 'broken'.*failed to load"):
            tech.get_technique("bf16_autocast")
