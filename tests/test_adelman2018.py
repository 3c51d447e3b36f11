"""Adelman & Silberstein (CRS): the technique's surgery, FLOP accounting, metrics and recipe."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import reproductions.adelman2018_approximate_tensor_ops as crs_paper
from harness.measure import Budget, BudgetStop
from harness.models import mlp, small_cnn
from harness.runner import Runner


def test_surgery_keeps_parameters_and_evaluation_is_exact():
    torch.manual_seed(0)
    model = small_cnn((4, 8), 16)((1, 28, 28), 10)
    x = torch.randn(3, 1, 28, 28)
    before = {n: p for n, p in model.named_parameters()}
    exact = model.eval()(x)
    swapped = crs_paper.apply_crs(model, 0.5, 1, "all")
    assert set(swapped) == {"features.0", "features.4", "classifier.1", "classifier.3"}
    assert all(p is before[n] for n, p in model.named_parameters())  # the optimizer sees the same tensors
    assert torch.equal(model.eval()(x), exact)
    model.train()
    assert not torch.equal(model(x), exact)  # training forward samples


def test_layers_knob_limits_the_surgery():
    model = small_cnn((4, 8), 16)((1, 28, 28), 10)
    assert set(crs_paper.apply_crs(model, 0.5, 1, "conv")) == {"features.0", "features.4"}
    model = mlp((32,))((1, 28, 28), 10)
    assert set(crs_paper.apply_crs(model, 0.5, 1, "conv")) == set()


def _setup(technique, model, flatten):
    stop = BudgetStop(Budget(epochs=1), None, None, 1, technique.flop_fraction)  # as the Runner builds it
    module = SimpleNamespace(model=model, context=SimpleNamespace(data=SimpleNamespace(input_shape=(1, 28, 28))),
                             recipe=SimpleNamespace(flatten=flatten), step_metrics={})
    technique.setup(SimpleNamespace(callbacks=[stop]), module, "fit")
    stop.on_train_start(None, module)  # the Runner's trainer calls this after the techniques' setup()
    return module, stop


def test_flop_fraction_weights_layers_by_their_work():
    technique = crs_paper.CRS(**crs_paper.CNN_CRS)
    model = small_cnn((32, 64), 1024)((1, 28, 28), 10)
    _, stop = _setup(technique, model, flatten=False)
    # multiply-adds per example (official CNN): conv1 (1 channel: stays exact), conv2 (k = 16 of 32), FC1, FC2
    conv1, conv2, fc1, fc2 = 28 * 28 * 32 * 25, 14 * 14 * 64 * 32 * 25, 3136 * 1024, 1024 * 10
    dense = 2 * conv1 + 3 * (conv2 + fc1 + fc2)  # conv1's input is data: no input gradient
    expected = (2 * conv1 + 3 * (conv2 / 2 + fc1 + fc2)) / dense
    assert technique.flop_fraction() == pytest.approx(expected)
    assert stop.flop_fraction == pytest.approx(expected)  # the budget's copy follows


def test_step_metrics_log_the_realised_sampling():
    technique = crs_paper.CRS(**crs_paper.MLP_CRS)
    module, _ = _setup(technique, mlp((500, 500), dropout=0.1)((1, 28, 28), 10), flatten=True)
    module.model.train()(torch.randn(50, 784))
    technique.on_train_batch_end(None, module, None, None, 0)
    metrics = module.step_metrics
    assert metrics["crs/k/1"] == 705 and metrics["crs/k/4"] == 450 and metrics["crs/k/7"] == 450
    assert metrics["crs/sampled_fraction"] == pytest.approx((705 + 450 + 450) / (784 + 500 + 500))
    assert 0.3 < metrics["crs/distinct_fraction"] < metrics["crs/sampled_fraction"]  # repeats are merged


@pytest.mark.parametrize("kwargs", [{"sample_ratio": 0.0}, {"minimal_k": 0}, {"layers": "attention"}])
def test_bad_knobs_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        crs_paper.CRS(**kwargs)


def test_recipe_is_valid_at_every_scale():
    for scale in ("smoke", "cpu", "paper"):
        recipe = crs_paper.recipe(scale)
        recipe.validate()
        for arm in recipe.arms:
            recipe.for_arm(arm).validate()
    paper = crs_paper.recipe("paper")
    assert paper.for_arm(paper.arm("cnn_crs")).optim == {"name": "sgd", "lr": 0.01, "momentum": 0.5}
    assert paper.for_arm(paper.arm("cnn_crs")).budget.epochs == 20 and paper.budget.epochs == 20
    arms = {a.name for a in paper.arms}
    assert all(c.arm in arms and (c.minus_arm is None or c.minus_arm in arms) for c in crs_paper.CARD.claims)


def test_technique_trains_through_the_runner():
    recipe = crs_paper.recipe("smoke")
    arms = tuple(replace(a, overrides={**a.overrides, "budget": {"steps": 3}}) for a in recipe.arms)
    recipe = replace(recipe, budget=Budget(steps=3), arms=arms)
    runner = Runner(progress=False)
    for name in ("mlp_crs", "cnn_crs"):
        result, model = runner.run_one(recipe, recipe.arm(name), seed=0)
        assert result.steps == 3 and torch.isfinite(torch.tensor(result.final["test/loss"]))
        assert any(isinstance(m, (crs_paper.CRSLinear, crs_paper.CRSConv2d)) for m in model.modules())
        assert result.flops > 0
