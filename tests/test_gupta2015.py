"""gupta2015_fixed_point: the technique trains through the Runner; rounding points; recipes and card."""

from __future__ import annotations

import pytest
import torch

import reproductions.gupta2015_fixed_point as m
from harness.runner import Runner
from harness.techniques import get_technique


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_weights_stay_on_grid_and_layers_are_wrapped(rounding):
    recipe = m.recipe("smoke")
    arm = recipe.arm(f"fl8_{rounding}")
    _, model = Runner(progress=False).run_one(recipe, arm, seed=0)
    layers = [mod for mod in model.modules() if isinstance(mod, m.FixedPointLayer)]
    assert len(layers) == 2 and layers[0].round_input and not layers[1].round_input
    for p in model.parameters():
        units = p.detach() * 2**8
        assert torch.equal(units, units.round()) and p.abs().max() <= 2**7


def test_nearest_loses_small_updates_stochastic_keeps_them_in_expectation():
    """The mechanism behind the stall claim: an update of 1/4 step vanishes under nearest rounding."""
    w = torch.zeros(1 << 16)
    update = torch.full_like(w, 0.25 * 2**-8)
    assert torch.equal(m.round_fixed(w + update, 8, 8, "nearest"), w)
    moved = m.round_fixed(w + update, 8, 8, "stochastic").mean() * 2**8
    assert abs(float(moved) - 0.25) < 0.02


def test_gradients_are_rounded_in_backward():
    torch.manual_seed(0)
    layer = m.FixedPointLayer(torch.nn.Linear(5, 3), il=8, fl=4, rounding="nearest", round_input=True)
    x = torch.randn(7, 5, requires_grad=True)
    (layer(x) * torch.randn(7, 3)).sum().backward()
    units = x.grad * 2**4
    assert torch.equal(units, units.round())


def test_card_arms_and_claims():
    recipe = m.recipe("cpu")
    assert [a.name for a in recipe.arms] == ["fp32"] + [f"fl{fl}_{r}" for fl in (8, 10, 14)
                                                       for r in ("nearest", "stochastic")]
    for arm in recipe.arms[1:]:
        kw = arm.technique_kwargs["fixed_point"]
        assert kw["il"] + kw["fl"] == 16
    names = {a.name for a in recipe.arms}
    for claim in m.CARD.claims:
        assert claim.arm in names and {claim.minus_arm, *claim.arms} - {None} <= names
    assert m.recipe("paper").dataset == "mnist" and m.recipe_cifar10().dataset == "cifar10-jpeg75"
    cls = get_technique("fixed_point")
    assert cls.touches == {"params", "gradients", "architecture"} and "precision" not in cls.touches


@pytest.mark.parametrize("kwargs", [{"rounding": "up"}, {"il": 0}, {"il": 16, "fl": 16}])
def test_bad_knobs(kwargs):
    with pytest.raises(ValueError):
        m.FixedPointTraining(**kwargs)


def test_recipe_cifar10_refuses_cpu_scale():
    with pytest.raises(ValueError):
        m.recipe_cifar10("cpu")
