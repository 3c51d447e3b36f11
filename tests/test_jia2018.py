"""Jia et al. 2018: the LARS optimizer against a hand computation, its no-decay rule for 1-d
parameters, bad knobs, the recipe's arms, and the four arms training through the Runner."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import reproductions.jia2018_large_batch as jia
from harness.experiments.reproduce import run_recipe
from harness.recipes import apply_overrides

SPEC = {"name": "sgd", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.1, "no_decay_norm_bias": True}


def _tiny(weight, bias) -> torch.nn.Linear:
    layer = torch.nn.Linear(2, 1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight], dtype=torch.float64))
        layer.bias.copy_(torch.tensor([bias], dtype=torch.float64))
    return layer


def _set_grads(layer, weight_grad, bias_grad) -> None:
    layer.weight.grad = torch.tensor([weight_grad], dtype=torch.float64)
    layer.bias.grad = torch.tensor([bias_grad], dtype=torch.float64)


def test_two_lars_steps_match_a_hand_computation():
    """w = (3, 4), |w| = 5; g = (0.6, 0.8), |g| = 1; eta 0.01, wd 0.1, lr 0.5, momentum 0.9."""
    layer = _tiny([3.0, 4.0], 2.0)
    opt = jia.lars_optimizer(layer, SPEC, eta=0.01)
    _set_grads(layer, [0.6, 0.8], 0.3)
    opt.step()
    # ratio = 0.01 * 5 / (1 + 0.1 * 5) = 1/30; v = 0.5 * (1/30) * (g + 0.1 w) = (1/60) * (0.9, 1.2)
    v_w = [0.9 / 60, 1.2 / 60]
    assert layer.weight.squeeze().tolist() == pytest.approx([3 - v_w[0], 4 - v_w[1]], rel=1e-12)
    v_b = 0.5 * 0.3  # the bias: plain momentum SGD, no trust ratio, no decay
    assert layer.bias.item() == pytest.approx(2.0 - v_b, rel=1e-12)
    # Second step, with the same gradient: momentum carries v, the ratio uses the new |w|.
    w1 = [3 - v_w[0], 4 - v_w[1]]
    norm = math.hypot(*w1)
    ratio = 0.01 * norm / (1.0 + 0.1 * norm)
    v2 = [0.9 * v + 0.5 * ratio * (g + 0.1 * w) for v, g, w in zip(v_w, (0.6, 0.8), w1)]
    _set_grads(layer, [0.6, 0.8], 0.3)
    opt.step()
    assert layer.weight.squeeze().tolist() == pytest.approx([w - v for w, v in zip(w1, v2)], rel=1e-12)
    assert layer.bias.item() == pytest.approx(2.0 - v_b - (0.9 * v_b + 0.5 * 0.3), rel=1e-12)


def test_one_dimensional_params_get_no_decay_and_no_trust_ratio():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)  # BatchNorm's scale is 1 by default; make it visibly decayable
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = jia.lars_optimizer(model, SPEC, eta=0.01)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        if p.ndim == 1:  # biases, BatchNorm weight and bias: zero gradient, no decay -> unchanged
            assert torch.equal(p, before[name]), name
        else:  # g = 0: ratio = eta / wd, so w <- w - lr * eta * w
            torch.testing.assert_close(p, before[name] * (1 - 0.5 * 0.01))
    assert [g["lars"] for g in opt.param_groups] == [True, False]
    assert opt.param_groups[1]["weight_decay"] == 0.0


def test_trust_ratio_falls_back_to_one_for_a_zero_weight():
    ratio = jia.trust_ratio(torch.zeros(3, 3), torch.ones(3, 3), eta=0.001, weight_decay=0.0)
    assert ratio.item() == 1.0
    assert jia.trust_ratio(torch.ones(2, 2), torch.ones(2, 2), 0.001, 0.0).item() == pytest.approx(0.001)


@pytest.mark.parametrize("eta", [0.0, -0.001, float("nan"), float("inf"), "0.001"])
def test_bad_eta_is_refused(eta):
    with pytest.raises(ValueError, match="eta="):
        jia.Lars(eta=eta)


@pytest.mark.parametrize("spec, match", [
    ({"lr": -1.0}, "lr="), ({}, "lr=None"), ({"lr": 0.1, "momentum": 1.0}, "momentum="),
    ({"lr": 0.1, "weight_decay": -1e-4}, "weight_decay="), ({"lr": 0.1, "betas": (0.9, 0.99)}, "betas"),
])
def test_bad_optimizer_spec_is_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        jia.lars_optimizer(torch.nn.Linear(2, 2), spec, eta=0.001)


def test_technique_reports_trust_ratio_stats():
    technique = jia.Lars(eta=0.01)
    layer = _tiny([3.0, 4.0], 2.0)
    technique.configure_optimizer(layer, SPEC)
    _set_grads(layer, [0.6, 0.8], 0.3)
    technique.optimizer.step()
    module = SimpleNamespace(step_metrics={})
    technique.on_train_batch_end(None, module, None, None, 0)
    assert module.step_metrics["lars/trust_ratio_median"] == pytest.approx(1 / 30)


def test_recipe_arms_share_epochs_and_evaluate_at_similar_sample_counts():
    for scale in ("smoke", "cpu", "paper"):
        r = jia.recipe(scale)
        r.validate()
        arms = {a.name: r.for_arm(a) for a in r.arms}
        small, large = arms["sgd_small"], arms["lars_large"]
        assert all(a.budget == small.budget for n, a in arms.items() if not n.startswith("alexnet"))
        assert large.batch_size > small.batch_size and large.schedule.startswith("warmup:")
        assert arms["sgd_large"].optim["lr"] == pytest.approx(small.optim["lr"] * large.batch_size / small.batch_size)
        ratio = (large.eval_every_n_steps * large.batch_size) / (small.eval_every_n_steps * small.batch_size)
        assert 0.5 < ratio < 2.0, (scale, ratio)
    with pytest.raises(ValueError, match="scale 'huge'"):
        jia.recipe("huge")


def test_four_arms_train_through_the_runner_on_the_smoke_recipe():
    recipe = apply_overrides(jia.recipe("smoke"), ["budget.steps=2"])
    table = run_recipe(recipe=recipe, seeds=[0], card=jia.CARD, aa_control=False)
    runs = {name: arm["runs"][0] for name, arm in table["arms"].items()}
    assert set(runs) == {"sgd_small", "sgd_large", "lars_large", "lars_large_bf16"}
    for run in runs.values():
        assert run["steps"] == 2 and math.isfinite(run["final"]["test/loss"])
    assert runs["lars_large"]["samples"] == 2 * 64  # large batch, run as 4 micro-batches of 16
    assert runs["lars_large"]["final"]["test/loss"] != runs["sgd_large"]["final"]["test/loss"]
    assert all(c["verdict"] == "not run at this scale" for c in table["claims"])  # synthetic data
