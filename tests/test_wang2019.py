"""Wang et al. (2019) gradient approximation: exact input gradients, sampled weight gradients against their
definition and in expectation, the technique's surgery, and its runs through the Runner."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.grad import conv2d_weight

import reproductions.wang2019_gradient_approximation as wg
from harness.experiments.reproduce import run_recipe
from harness.measure import Budget
from harness.models import mlp, resnet_cifar
from harness.recipes import Arm
from tests.tiny import tiny_recipe

# (in, out, kernel, stride, padding, dilation, bias, input side): ResNet 3x3 and 1x1 shortcut, odd sizes
GEOMETRIES = [(3, 5, 3, 1, 1, 1, False, 8), (4, 6, 1, 2, 0, 1, False, 9), (2, 4, 3, 2, 2, 2, True, 11),
              (3, 3, 5, 3, 1, 1, True, 10)]
METHOD_KNOBS = [("batch", 0.5, 2), ("channel", 0.4, 2), ("spatial", 0.5, 2), ("spatial", 0.5, 3)]


def _conv(cin, cout, k, s, p, d, bias, seed=0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, s, p, d, bias=bias).double()


def _grads(conv: nn.Module, x: torch.Tensor, g: torch.Tensor):
    x = x.clone().requires_grad_(True)
    conv.zero_grad(set_to_none=True)
    conv(x).backward(g)
    return x.grad, conv.weight.grad, None if conv.bias is None else conv.bias.grad


@pytest.mark.parametrize("geom", GEOMETRIES)
@pytest.mark.parametrize("method,keep,stride", METHOD_KNOBS)
def test_input_and_bias_gradients_exact_weight_gradient_matches_definition(geom, method, keep, stride):
    *shape, side = geom
    exact = _conv(*shape)
    approx = wg.ApproxConv2d.from_conv(_conv(*shape), method, keep, stride)
    x = torch.randn(6, shape[0], side, side, dtype=torch.double)
    g = torch.randn_like(exact(x))
    gx, gw, gb = _grads(exact, x, g)
    torch.manual_seed(7)
    ax, aw, ab = _grads(approx, x, g)
    torch.manual_seed(7)  # the same draw the forward made, rebuilt as the dense definition
    sample = wg.draw_sample(method, g.shape, keep, stride)
    definition = conv2d_weight(x, exact.weight.shape, g * wg.sample_mask(method, sample, g.shape, stride).double(),
                               exact.stride, exact.padding, exact.dilation)
    torch.testing.assert_close(ax, gx)
    torch.testing.assert_close(aw, definition)
    assert not torch.allclose(aw, gw)  # it is an approximation, not the exact gradient
    if gb is not None:
        torch.testing.assert_close(ab, gb)


@pytest.mark.parametrize("method,keep,stride", [("batch", 1.0, 2), ("channel", 1.0, 2), ("spatial", 0.5, 1)])
def test_keeping_everything_is_exact(method, keep, stride):
    exact = _conv(3, 4, 3, 2, 1, 1, True)
    approx = wg.ApproxConv2d.from_conv(_conv(3, 4, 3, 2, 1, 1, True), method, keep, stride)
    x = torch.randn(5, 3, 9, 9, dtype=torch.double)
    g = torch.randn_like(exact(x))
    for a, e in zip(_grads(approx, x, g), _grads(exact, x, g)):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("method,keep,stride", METHOD_KNOBS)
def test_weight_gradient_is_unbiased(method, keep, stride):
    torch.manual_seed(1)
    x, w_shape = torch.randn(8, 2, 7, 7, dtype=torch.double), torch.Size((5, 2, 3, 3))
    g = torch.randn(8, 5, 4, 4, dtype=torch.double)  # stride 2, padding 1 output of a 7x7 input
    args = ((2, 2), (1, 1), (1, 1))
    exact = conv2d_weight(x, w_shape, g, *args)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([wg.approx_weight_grad(x, g, w_shape, *args, method,
                                               wg.draw_sample(method, g.shape, keep, stride, gen), stride)
                         for _ in range(600)])
    se = draws.std(0) / len(draws) ** 0.5
    z = (draws.mean(0) - exact).abs() / (se + 1e-12)
    assert z.max() < 5.0, f"largest deviation {z.max():.1f} standard errors"
    assert (draws.std(0) > 0).any()  # really random


def test_spatial_phases_average_to_the_exact_gradient():
    torch.manual_seed(2)
    x, w_shape, args = torch.randn(3, 2, 9, 9, dtype=torch.double), torch.Size((4, 2, 3, 3)), ((2, 2), (1, 1), (1, 1))
    g = torch.randn(3, 4, 5, 5, dtype=torch.double)
    phases = [torch.tensor([a, b]) for a in range(3) for b in range(3)]
    mean = sum(wg.approx_weight_grad(x, g, w_shape, *args, "spatial", p, 3) for p in phases) / len(phases)
    torch.testing.assert_close(mean, conv2d_weight(x, w_shape, g, *args))


def test_draws_are_repeatable_under_a_seed_and_eval_draws_nothing():
    conv = wg.ApproxConv2d.from_conv(_conv(3, 4, 3, 1, 1, 1, False), "channel", 0.5, 2)
    x, g = torch.randn(4, 3, 6, 6, dtype=torch.double), torch.randn(4, 4, 6, 6, dtype=torch.double)
    torch.manual_seed(3)
    first = _grads(conv, x, g)[1]
    torch.manual_seed(3)
    torch.testing.assert_close(_grads(conv, x, g)[1], first)
    state = torch.get_rng_state()
    with torch.no_grad():
        torch.testing.assert_close(conv(x), nn.functional.conv2d(x, conv.weight, None, 1, 1))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("method", wg.METHODS)
def test_composes_with_bf16_autocast(method):
    model = resnet_cifar(8, 4)((3, 12, 12), 10)
    wg.approximate_convs(model, method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 3, 12, 12))
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == p.dtype for p in model.parameters())


def test_surgery_keeps_parameters_and_skips_models_without_convs():
    model = resnet_cifar(8, 4)((3, 32, 32), 10)
    before = [id(p) for p in model.parameters()]
    names = list(model.state_dict())
    assert wg.approximate_convs(model, "spatial") == 9  # stem, 6 block convs, 2 projection shortcuts
    assert [id(p) for p in model.parameters()] == before and list(model.state_dict()) == names
    assert sum(isinstance(m, wg.ApproxConv2d) for m in model.modules()) == 9
    assert wg.approximate_convs(model, "batch") == 0  # already swapped: left alone

    class Module:  # what setup() and on_train_batch_end() read from the LightningModule
        step_metrics: dict = {}

    module = Module()
    module.model = mlp((16,))((1, 8, 8), 10)
    tech = wg.GradientApproximation("batch", 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tech.setup(None, module, "fit")
        tech.on_train_batch_end(None, module, None, None, 0)
    assert module.step_metrics == {"gradient_approximation/approximated_convs": 0.0,
                                   "gradient_approximation/weight_grad_keep": 1.0}
    assert tech.flop_fraction() == 1.0


@pytest.mark.parametrize("kwargs", [{"method": "topk"}, {"keep_fraction": 0.0}, {"keep_fraction": 1.5},
                                    {"spatial_stride": 0}, {"spatial_stride": 2.0}, {"spatial_stride": True}])
def test_bad_knobs_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        wg.GradientApproximation(**kwargs)
    with pytest.raises(ValueError):
        wg.approximate_convs(nn.Conv2d(1, 1, 1), **{"method": "spatial", **kwargs})


def test_recipes_are_valid_and_bad_scale_raises():
    for scale in ("smoke", "cpu", "paper"):
        wg.recipe(scale).validate()
    assert {a.name for a in wg.recipe("paper").arms} >= {"vgg_exact", "vgg_spatial"}
    assert wg.vgg19_cifar((3, 32, 32), 10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="scale"):
        wg.recipe("huge")


def test_does_nothing_on_an_mlp_through_the_runner():
    arms = (Arm("baseline"), Arm("with", techniques=("gradient_approximation",)))
    table = run_recipe(recipe=tiny_recipe(arms=arms, budget=Budget(steps=2)), seeds=[0])
    run = table["arms"]["with"]["runs"][0]
    assert run["steps"] == 2 and run["flops"] == table["arms"]["baseline"]["runs"][0]["flops"]


def test_every_arm_trains_through_the_runner_on_the_smoke_recipe():
    table = run_recipe(recipe=wg.recipe("smoke"), seeds=[0], card=wg.CARD, aa_control=False)
    assert set(table["arms"]) == {"exact", "batch", "spatial", "channel"}
    for arm in table["arms"].values():
        run = arm["runs"][0]
        assert run["steps"] == 4 and torch.isfinite(torch.tensor(run["final"]["test/loss"]))
    flops = {name: arm["runs"][0]["flops"] for name, arm in table["arms"].items()}
    assert flops["spatial"] < flops["batch"] < flops["exact"]  # the counter sees the smaller convolutions
    assert {c["id"]: c["verdict"] for c in table["claims"]}["speedup"] == "not run at this scale"


def test_it_declares_its_surgery_and_refuses_crs_which_would_leave_it_nothing_to_swap():
    from harness.techniques import conflict_reason, get_technique

    cls = get_technique("gradient_approximation")
    assert "architecture" in cls.touches
    assert "same convolutions" in conflict_reason(cls, get_technique("crs"))
    from reproductions.adelman2018_approximate_tensor_ops import apply_crs

    model = resnet_cifar(8, 4)((3, 32, 32), 10)
    assert any(wg.swappable(m) for m in model.modules())
    apply_crs(model, 0.5, 1, "conv")  # CRS runs first in the composition order (30 < 45)
    assert not any(wg.swappable(m) for m in model.modules())  # the reason for the declared conflict
