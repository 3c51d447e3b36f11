"""Adelman & Silberstein (CRS): the samplers (ours and the official code's), the technique's surgery, FLOP
accounting, metrics and recipe."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import reproductions.adelman2018_approximate_tensor_ops as crs_paper
from harness.measure import Budget, Ledger
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


@pytest.mark.parametrize("sampler", ["iid", "official"])
def test_surgery_swaps_in_the_chosen_sampler(sampler):
    model = small_cnn((4, 8), 16)((1, 28, 28), 10)
    swapped = crs_paper.apply_crs(model, 0.5, 1, "all", sampler)
    linear_cls, conv_cls = crs_paper.SAMPLERS[sampler]
    assert [type(swapped[n]) for n in ("features.0", "features.4", "classifier.1")] == [conv_cls, conv_cls, linear_cls]


def test_layers_knob_limits_the_surgery():
    model = small_cnn((4, 8), 16)((1, 28, 28), 10)
    assert set(crs_paper.apply_crs(model, 0.5, 1, "conv")) == {"features.0", "features.4"}
    model = mlp((32,))((1, 28, 28), 10)
    assert set(crs_paper.apply_crs(model, 0.5, 1, "conv")) == set()


def _setup(technique, model, flatten, batch_size=64):
    stop = Ledger(None, technique.flop_fraction)  # as the Runner builds it
    module = SimpleNamespace(model=model, context=SimpleNamespace(data=SimpleNamespace(input_shape=(1, 28, 28))),
                             recipe=SimpleNamespace(flatten=flatten, batch_size=batch_size, micro_batch_size=None),
                             step_metrics={})
    technique.setup(SimpleNamespace(callbacks=[stop]), module, "fit")
    stop.on_train_start(None, module)  # the Runner's trainer calls this after the techniques' setup()
    return module, stop


@pytest.mark.parametrize("kwargs", [crs_paper.CNN_CRS, crs_paper.CNN_CRS_IID])
def test_flop_fraction_weights_layers_by_their_work(kwargs):
    technique = crs_paper.CRS(**kwargs)  # top-k (official) and iid both sample forward: all three matmuls at k/K
    model = small_cnn((32, 64), 1024)((1, 28, 28), 10)
    _, stop = _setup(technique, model, flatten=False)
    # multiply-adds per example (official CNN): conv1 (1 channel: stays exact), conv2 (k = 16 of 32), FC1, FC2
    conv1, conv2, fc1, fc2 = 28 * 28 * 32 * 25, 14 * 14 * 64 * 32 * 25, 3136 * 1024, 1024 * 10
    dense = 2 * conv1 + 3 * (conv2 + fc1 + fc2)  # conv1's input is data: no input gradient
    expected = (2 * conv1 + 3 * (conv2 / 2 + fc1 + fc2)) / dense
    assert technique.flop_fraction() == pytest.approx(expected)
    assert stop.flop_fraction == pytest.approx(expected)  # the ledger's copy follows


def test_official_mlp_flop_fraction_counts_the_sampled_backward_only():
    technique = crs_paper.CRS(**crs_paper.MLP_CRS)
    _setup(technique, mlp((500, 500), dropout=0.1)((1, 28, 28), 10), flatten=True, batch_size=50)
    m1, m2, m3 = 784 * 500, 500 * 500, 500 * 10
    weight_grad = (0.9 * 45 + 0.1) / 50  # k = 45 of the 50 examples, Bernoulli: (0.9 k + 0.1) / K expected
    input_grad = (0.9 * 450 + 0.1) / 500  # k = 450 of 500 output features; the last layer's 10 stay exact
    spent = m1 * (1 + weight_grad) + m2 * (1 + weight_grad + input_grad) + m3 * (1 + weight_grad + 1)
    assert technique.flop_fraction() == pytest.approx(spent / (2 * m1 + 3 * m2 + 3 * m3))


def test_step_metrics_log_the_realised_sampling():
    technique = crs_paper.CRS(**crs_paper.MLP_CRS_IID)
    module, _ = _setup(technique, mlp((500, 500), dropout=0.1)((1, 28, 28), 10), flatten=True)
    module.model.train()(torch.randn(50, 784))
    technique.on_train_batch_end(None, module, None, None, 0)
    metrics = module.step_metrics
    assert metrics["crs/k/1"] == 705 and metrics["crs/k/4"] == 450 and metrics["crs/k/7"] == 450
    assert metrics["crs/sampled_fraction"] == pytest.approx((705 + 450 + 450) / (784 + 500 + 500))
    assert 0.3 < metrics["crs/distinct_fraction"] < metrics["crs/sampled_fraction"]  # repeats are merged


def test_step_metrics_log_the_official_backward_sampling():
    technique = crs_paper.CRS(**crs_paper.MLP_CRS)
    module, _ = _setup(technique, mlp((500, 500), dropout=0.1)((1, 28, 28), 10), flatten=True, batch_size=50)
    torch.manual_seed(0)
    module.model.train()(torch.randn(50, 784)).square().sum().backward()
    technique.on_train_batch_end(None, module, None, None, 0)
    metrics = module.step_metrics
    # layer 1: weight gradient only (its input is data); layer 7: input gradient exact (10 of 10) + weight gradient
    assert {n: metrics[f"crs/distinct/{n}"] == metrics[f"crs/k/{n}"] for n in "147"} == dict.fromkeys("147", True)
    assert 5 <= metrics["crs/k/1"] <= 50 and 10 < metrics["crs/k/7"] <= 60
    assert 0.5 < metrics["crs/sampled_fraction"] < 0.95  # about 0.81 expected
    module.step_metrics.clear()
    technique.on_train_batch_end(None, module, None, None, 1)  # counts are per step: no backward, no metrics
    assert module.step_metrics == {}


@pytest.mark.parametrize("kwargs", [{"sample_ratio": 0.0}, {"minimal_k": 0}, {"layers": "attention"},
                                    {"sampler": "topk"}])
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
    for name in ("cnn_crs", "cnn_crs_iid"):
        assert paper.for_arm(paper.arm(name)).optim == {"name": "sgd", "lr": 0.01, "momentum": 0.5}
    assert paper.for_arm(paper.arm("cnn_crs")).optim == {"name": "sgd", "lr": 0.01, "momentum": 0.5}
    assert paper.for_arm(paper.arm("cnn_crs")).budget.epochs == 20 and paper.budget.epochs == 20
    arms = {a.name for a in paper.arms}
    assert all(c.arm in arms and (c.minus_arm is None or c.minus_arm in arms) for c in crs_paper.CARD.claims)


def test_technique_trains_through_the_runner():
    recipe = crs_paper.recipe("smoke")
    arms = tuple(replace(a, overrides={**a.overrides, "budget": {"steps": 3}}) for a in recipe.arms)
    recipe = replace(recipe, budget=Budget(steps=3), arms=arms)
    runner = Runner(progress=False)
    kinds = {"mlp_crs": crs_paper.BernoulliBackwardLinear, "mlp_crs_iid": crs_paper.CRSLinear,
             "cnn_crs": crs_paper.TopKConv2d, "cnn_crs_iid": crs_paper.CRSConv2d}
    for name, cls in kinds.items():
        result, model = runner.run_one(recipe, recipe.arm(name), seed=0)
        assert result.steps == 3 and torch.isfinite(torch.tensor(result.final["test/loss"]))
        assert any(isinstance(m, cls) for m in model.modules())
        assert result.flops > 0


def test_arms_official_samplers_are_faithful_ours_are_variants():
    recipe = crs_paper.recipe("cpu")
    expected = {"mlp_crs": ("official", "faithful", "mlp"), "mlp_crs_iid": ("iid", "variant", "mlp"),
                "cnn_crs": ("official", "faithful", "cnn"), "cnn_crs_iid": ("iid", "variant", "cnn")}
    for name, (sampler, fidelity, baseline) in expected.items():
        arm = recipe.arm(name)
        assert (arm.technique_kwargs["crs"]["sampler"], arm.fidelity, arm.baseline) == (sampler, fidelity, baseline)
        assert (fidelity == "variant") == bool(arm.fidelity_note)
    assert recipe.arm("mlp_crs").technique_kwargs["crs"]["layers"] == "all"
    assert recipe.arm("cnn_crs").technique_kwargs["crs"]["layers"] == "conv"
    assert {c.arm for c in crs_paper.CARD.claims} == {"mlp_crs", "cnn_crs"}  # claims judged on the faithful arms
    assert crs_paper.CRS().sampler == "iid"  # the technique's default (used by shared recipes) is unchanged


# ---------------------------------------------------------------- the official code's samplers

def test_bernoulli_keep_probabilities_follow_the_official_rule():
    norms = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 50.0, 2.0, 0.5])  # K = 8, 6 nonzero
    p = crs_paper.bernoulli_keep_probs(norms, 3)
    K, share = 8, (3 * norms.double() / norms.sum()).clamp(max=1.0)
    assert torch.allclose(p, 0.9 * share + 0.1 / K)
    assert bool((p >= 0.1 / K - 1e-12).all()) and bool((p <= 1).all())  # every pair keeps at least 10% / K
    assert p[0] == p[1] == pytest.approx(0.1 / K)  # zero products keep only the uniform part
    assert p[5] == pytest.approx(0.9 + 0.1 / K)  # a dominant pair is clipped at 1 before mixing
    p = crs_paper.bernoulli_keep_probs(torch.tensor([0.0, 0.0, 0.0, 4.0]), 3)  # k falls to the nonzero count
    assert torch.allclose(p, torch.tensor([0.025, 0.025, 0.025, 0.925], dtype=torch.float64))
    assert crs_paper.bernoulli_share(500, 450) == pytest.approx((0.9 * 450 + 0.1) / 500)
    assert crs_paper.bernoulli_share(10, 10) == 1.0


def test_bernoulli_matmul_is_unbiased_and_keeps_pairs_at_their_probabilities():
    torch.manual_seed(0)
    a = torch.randn(6, 16, dtype=torch.float64) * torch.linspace(0.1, 2.0, 16, dtype=torch.float64)
    b = torch.randn(16, 5, dtype=torch.float64)
    gen, n = torch.Generator().manual_seed(0), 4000
    draws, kept = [], torch.zeros(16)
    for _ in range(n):
        estimate, idx = crs_paper.bernoulli_matmul(a, b, 6, generator=gen)
        draws.append(estimate)
        kept[idx] += 1
    draws, exact = torch.stack(draws), a @ b
    z = (draws.mean(0) - exact) / (draws.std(0) / n**0.5)
    assert z.abs().max() < 4.5  # mean of the draws within a few standard errors of the exact product
    assert (draws[0] - exact).abs().max() > 0.05 * exact.abs().max()  # a single draw is an approximation
    p = crs_paper.bernoulli_keep_probs(torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=1), 6)
    freq = kept.double() / n
    assert ((freq - p).abs() <= 4.5 * (p * (1 - p) / n).sqrt() + 1e-3).all()
    assert torch.equal(crs_paper.bernoulli_matmul(a, b, 16)[0], exact)  # k = K: exact


def _official_linear(sample_ratio):
    torch.manual_seed(0)
    linear, x, g = nn.Linear(20, 30), torch.randn(8, 20, requires_grad=True), torch.randn(8, 30)
    (linear(x) * g).sum().backward()
    exact = linear(x).detach(), linear.weight.grad.clone(), linear.bias.grad.clone(), x.grad.clone()
    linear.zero_grad()
    x.grad = None
    layer = crs_paper.apply_crs(nn.Sequential(linear), sample_ratio, 1, "linear", "official")["0"]
    torch.manual_seed(1)
    out = layer.train()(x)
    (out * g).sum().backward()
    return exact, (out.detach(), layer.weight.grad, layer.bias.grad, x.grad), layer


def test_official_mlp_layer_forward_is_exact_and_only_the_backward_is_sampled():
    (out, gw, gb, gx), (out_s, gw_s, gb_s, gx_s), layer = _official_linear(0.5)
    assert isinstance(layer, crs_paper.BernoulliBackwardLinear)
    assert torch.equal(out_s, out)  # the forward is the exact linear layer, bit for bit
    assert not torch.allclose(gw_s, gw, atol=1e-3) and not torch.allclose(gx_s, gx, atol=1e-3)
    assert torch.equal(gb_s, gb)  # the bias gradient is exact
    kept, _, total = layer.realised()
    assert total == 30 + 8 and 2 <= kept < total  # input gradient over 30 outputs, weight gradient over 8 examples
    (out, gw, gb, gx), (out_s, gw_s, gb_s, gx_s), _ = _official_linear(1.0)
    assert torch.equal(out_s, out) and torch.allclose(gw_s, gw, rtol=1e-6, atol=1e-7)  # k = K: exact
    assert torch.allclose(gx_s, gx, rtol=1e-6, atol=1e-7) and torch.equal(gb_s, gb)


def test_official_cnn_sampler_keeps_the_top_k_channels_unscaled():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1)
    x = (torch.randn(4, 6, 8, 8) * torch.tensor([0.5, 3.0, 1.0, 0.2, 2.0, 1.5]).view(1, 6, 1, 1)).requires_grad_()
    layer = crs_paper.TopKConv2d(conv, 0.5, 1).train()
    out = layer(x)
    norms = x.detach().square().sum((0, 2, 3)).sqrt() * conv.weight.detach().square().sum((0, 2, 3)).sqrt()
    top = set(norms.argsort(descending=True)[:3].tolist())  # official topk_indices: argsort, first k
    idx = layer.last_idx
    assert set(idx.tolist()) == top and len(idx) == 3
    kept = sorted(top)
    expected = nn.functional.conv2d(x[:, kept], conv.weight[:, kept], conv.bias, padding=1)
    assert torch.allclose(out, expected, atol=1e-5)  # unscaled: no 1/(k p) factor
    assert not torch.allclose(out, conv(x), atol=1e-3)
    assert torch.equal(layer(x), out) and torch.equal(layer.last_idx, idx)  # deterministic
    out.square().sum().backward()  # gradients flow through the kept channels only
    dropped = sorted(set(range(6)) - top)
    assert torch.count_nonzero(x.grad[:, dropped]) == 0 and torch.count_nonzero(conv.weight.grad[:, dropped]) == 0
    assert torch.count_nonzero(x.grad[:, kept]) > 0 and torch.count_nonzero(conv.weight.grad[:, kept]) > 0
    one = crs_paper.TopKConv2d(nn.Conv2d(1, 4, 3), 0.5, 1).train()  # conv1 of the MNIST CNN: 1 channel, exact
    y = torch.randn(2, 1, 6, 6)
    assert torch.equal(one(y), nn.functional.conv2d(y, one.weight, one.bias))
