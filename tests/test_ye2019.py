"""Ye et al. (2019): activation-gradient pruning as a technique, its stats, and its recipe."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch

import reproductions.ye2019_sparse_activation_gradients as ye
from harness.experiments.reproduce import run_recipe
from harness.measure import Budget
from harness.tracking import tracking_uri


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
                               torch.nn.Conv2d(6, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))


def _weight_grads(model, x, y) -> torch.Tensor:
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return torch.cat([model[0].weight.grad.flatten(), model[3].weight.grad.flatten()])


def test_pruned_weight_gradients_are_unbiased_and_sparse():
    """Averaged over many seeds, the pruned step's weight gradients approach the dense ones."""
    model, x, y = _tiny_model(), torch.randn(16, 2, 8, 8), torch.randint(0, 3, (16,))
    dense = _weight_grads(model, x, y)
    record: dict = {}
    handles = ye.attach_gradient_pruning(model, 0.9, torch.Generator().manual_seed(0), record)
    draws = torch.stack([_weight_grads(model, x, y) for _ in range(200)])
    for h in handles:
        h.remove()
    one_error = (draws[0] - dense).norm() / dense.norm()
    mean_error = (draws.mean(0) - dense).norm() / dense.norm()
    assert one_error > 0.05  # one draw is visibly noisy, so the check below has something to average out
    assert mean_error < one_error / 6  # unbiased: about 1/sqrt(200) = 1/14 of one draw's error
    assert set(record) == {"0", "3"}
    assert all(0.3 < float(zeros) < 0.8 for zeros, _ in record.values())
    assert torch.equal(_weight_grads(model, x, y), dense)  # hooks removed: dense again


def test_eval_and_no_grad_forwards_are_left_alone():
    model = _tiny_model().eval()
    record: dict = {}
    ye.attach_gradient_pruning(model, 0.9, torch.Generator(), record)
    model(torch.randn(2, 2, 8, 8, requires_grad=True)).sum().backward()
    assert record == {}


def test_technique_logs_per_layer_sparsity_and_keeps_flop_fraction():
    technique = ye.ActivationGradientPruning(rate=0.99)
    module = SimpleNamespace(model=_tiny_model(), context=SimpleNamespace(seed=0), step_metrics={})
    technique.setup(None, module, "fit")
    _weight_grads(module.model, torch.randn(8, 2, 8, 8), torch.randint(0, 3, (8,)))
    technique.on_train_batch_end(None, module, None, None, 0)
    metrics = {k: float(v) for k, v in module.step_metrics.items()}
    name = "activation_grad_pruning"
    assert {f"{name}/sparsity/0", f"{name}/sparsity/3", f"{name}/sparsity/mean",
            f"{name}/theoretical_conv_flop_fraction"} == set(metrics)
    assert 1 / 3 < metrics[f"{name}/theoretical_conv_flop_fraction"] < 1.0
    assert technique.flop_fraction() == 1.0 and technique.params() == {"rate": 0.99}
    technique.teardown(None, module, "fit")
    assert technique.handles == []


def test_bad_input():
    with pytest.raises(ValueError, match="rate"):
        ye.ActivationGradientPruning(rate=1.5)
    with pytest.raises(ValueError, match="Conv2d"):
        ye.attach_gradient_pruning(torch.nn.Linear(3, 2), 0.9, torch.Generator())


def test_a_model_without_convolutions_prunes_its_linear_outputs():
    """The registry-wide smoke test trains every technique on an MLP: the rule then applies to linear outputs."""
    from harness.recipes import Arm
    from tests.tiny import tiny_recipe

    technique = ye.ActivationGradientPruning(rate=0.9)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    module = SimpleNamespace(model=model, context=SimpleNamespace(seed=0), step_metrics={})
    technique.setup(None, module, "fit")
    model(torch.randn(4, 12)).square().sum().backward()
    assert set(technique.record) == {"1", "3"}
    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("with", techniques=(ye.ActivationGradientPruning.name,))],
                         budget=Budget(steps=2))
    table = run_recipe(recipe=recipe, seeds=[0], aa_control=False)
    run = table["arms"]["with"]["runs"][0]
    assert run["steps"] == 2
    # What the technique achieved reaches the table: the run's mean share of zeroed gradients.
    assert 0.0 < run["stats"]["activation_grad_pruning/sparsity/mean"] < 1.0
    assert table["arms"]["baseline"]["runs"][0]["stats"] == {}


def test_recipes_validate_at_every_scale():
    for scale in ("smoke", "cpu", "paper"):
        recipe = ye.recipe(scale)
        recipe.validate()
        assert recipe.paper == ye.CARD.id and [a.name for a in recipe.arms] == ["baseline", "sparse71", "sparse77"]
    claims = {c.id: c for c in ye.CARD.claims}
    assert claims["bp_speedup"].claimed == 5.92 and claims["per_model_accuracy"].claimed is None


def test_smoke_recipe_trains_and_logs_sparsity(project):
    recipe = ye.recipe("smoke")
    recipe = recipe.__class__(**{**recipe.__dict__, "budget": Budget(steps=10),
                                 "arms": tuple(a for a in recipe.arms if a.name != "sparse77")})
    table = run_recipe(tracking_uri=tracking_uri(), recipe=recipe, seeds=[0], card=ye.CARD)
    run = table["arms"]["sparse71"]["runs"][0]
    assert run["steps"] == 10 and torch.isfinite(torch.tensor(run["final"]["test/loss"]))
    client = mlflow.MlflowClient(tracking_uri())
    history = client.get_metric_history(run["run_id"], "activation_grad_pruning/sparsity/mean")
    assert [m.step for m in history] == [10] and 0.3 < history[0].value < 0.8
    assert client.get_metric_history(run["run_id"], "activation_grad_pruning/sparsity/blocks.0.conv1")


def test_committed_table_measures_the_zeros_its_arms_are_named_by():
    """The arms are named by the share of zeros measured at cpu scale; the committed table must bear the names out
    (each arm's median share over its seeds within one point of its name)."""
    path = Path(__file__).resolve().parents[1] / "reports" / "runs" / ye.CARD.id / "cpu-full.json"
    table = json.loads(path.read_text())
    named = {ye.arm_name(p): p for p in ye.MEASURED_ZEROS}
    assert set(named) <= set(table["arms"])
    for arm in named:
        shares = [r["stats"]["activation_grad_pruning/sparsity/mean"] for r in table["arms"][arm]["runs"]]
        assert len(shares) >= 5 and abs(statistics.median(shares) - int(arm.removeprefix("sparse")) / 100) <= 0.01, \
            (arm, shares)
