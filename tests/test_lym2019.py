"""PruneTrain: the group lasso against its definition, channel removal that keeps the function and the
optimizer state, the ledger following the smaller model, and resume across a reconfiguration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import reproductions.lym2019_prunetrain as pt
from harness.experiments.reproduce import _value_claim
from harness.measure import Budget
from harness.models import resnet_cifar, small_cnn
from harness.recipes import Arm
from harness.runner import Runner
from harness.surgery import channel_groups, match_shapes
from harness.train.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = str(ROOT / "datasets")


def _model(depth: int = 14, width: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return resnet_cifar(depth, width)((3, 16, 16), 10)


def test_group_lasso_is_the_sum_of_channel_norms():
    model = _model(8)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = 0.0
    for i, conv in enumerate(convs):
        w = conv.weight.detach()
        expected += sum(float(torch.sqrt((w[k] ** 2).sum() + 1e-8)) for k in range(w.shape[0]))
        if i:  # the first conv reads the image: no input-channel groups
            expected += sum(float(torch.sqrt((w[:, c] ** 2).sum() + 1e-8)) for c in range(w.shape[1]))
    fc = model.head[-1].weight.detach()
    expected += sum(float(torch.sqrt((fc[:, c] ** 2).sum() + 1e-8)) for c in range(fc.shape[1]))
    assert float(pt.group_lasso(model).detach()) == pytest.approx(expected, rel=1e-5)


def test_coefficient_makes_the_penalty_its_share_of_the_loss():
    lam = pt.lasso_coefficient(2.3, 150.0, 0.2)
    assert lam * 150.0 / (2.3 + lam * 150.0) == pytest.approx(0.2)


def _kill_channels(model: torch.nn.Module, share: float = 0.5) -> dict[str, int]:
    """Zero a random share of each group's channels in every weight slot; returns the widths left."""
    g = torch.Generator().manual_seed(1)
    left = {}
    for group in channel_groups(model):
        dead = torch.randperm(group.width, generator=g)[: int(share * group.width)]
        for slot in group.weights:
            slot.tensor.data.index_fill_(slot.dim, slot.index(dead), 0.0)
        left[group.name] = group.width - len(dead)
    return left


@pytest.mark.parametrize("build", [lambda: _model(), lambda: small_cnn((6, 8), 12, norm=True)((3, 16, 16), 10),
                                   lambda: small_cnn((6, 8), 12)((3, 16, 16), 10)], ids=["resnet14", "cnn_bn", "cnn"])
def test_reconfiguration_removes_dead_channels_and_keeps_the_function(build):
    torch.manual_seed(0)
    model = build()
    model.train()
    for _ in range(3):  # give the BatchNorm running statistics something other than their defaults
        model(torch.randn(8, 3, 16, 16))
    left = _kill_channels(model)
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    before, params_before = model(x), sum(p.numel() for p in model.parameters())
    widths = pt.reconfigure(channel_groups(model), 1e-4)
    assert {name: after for name, (_, after) in widths.items()} == left
    assert sum(p.numel() for p in model.parameters()) < 0.5 * params_before
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == first.weight.shape[0] == next(iter(left.values()))


def test_reconfiguration_cuts_the_momentum_with_the_weights():
    model = _model(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    conv = model.blocks[0].conv1
    kept_out = None
    for group in channel_groups(model):
        if group.name == "block1":
            for slot in group.weights:
                slot.tensor.data.index_fill_(slot.dim, torch.tensor([0, 2]), 0.0)
            kept_out = torch.tensor([c for c in range(group.width) if c not in (0, 2)])
    old_buffer = opt.state[conv.weight]["momentum_buffer"].clone()
    pt.reconfigure(channel_groups(model), 1e-4, opt)
    buffer = opt.state[conv.weight]["momentum_buffer"]
    assert buffer.shape == conv.weight.shape
    assert torch.equal(buffer, old_buffer[kept_out])
    opt.step()  # the cut optimizer steps the cut model


def test_match_shapes_gives_a_fresh_model_a_pruned_checkpoints_shapes():
    pruned = _model()
    _kill_channels(pruned)
    pt.reconfigure(channel_groups(pruned), 1e-4)
    fresh = _model()
    resized = match_shapes(fresh, pruned.state_dict())
    assert resized and fresh.load_state_dict(pruned.state_dict()) is not None
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(fresh.eval()(x), pruned.eval()(x))


def _smoke(threshold: float):
    recipe = pt.recipe("smoke")
    arms = (recipe.arm("baseline"), replace(recipe.arm("prunetrain"), technique_kwargs={
        "prunetrain": {"penalty_ratio": 0.2, "interval_epochs": 1, "threshold": threshold}}))
    return replace(recipe, arms=arms, budget=Budget(epochs=3))


def test_the_ledger_charges_the_smaller_model_after_a_reconfiguration():
    """A threshold above every weight leaves one channel per group after epoch 1: parameters and FLOPs per
    epoch fall from epoch 2 on, and the run's FLOPs are below the dense baseline's."""
    recipe = _smoke(threshold=10.0)
    runner = Runner(None, DATA, progress=False)
    base, _ = runner.run_one(recipe, recipe.arm("baseline"), 0)
    pruned, model = runner.run_one(recipe, recipe.arm("prunetrain"), 0)
    assert [e["params"] for e in base.epochs] == [base.epochs[0]["params"]] * 3
    first, second, third = pruned.epochs
    assert first["params"] == base.epochs[0]["params"] and first["flops"] == pytest.approx(base.epochs[0]["flops"])
    assert second["params"] < first["params"] / 10 and second["flops"] < first["flops"] / 5
    assert third["params"] == second["params"] == sum(p.numel() for p in model.parameters())
    assert pruned.flops == pytest.approx(sum(e["flops"] for e in pruned.epochs)) and pruned.flops < base.flops / 2
    assert pruned.curve[-1]["flops"] == pruned.flops and pruned.curve[-1]["samples"] == pruned.samples
    claim = next(c for c in pt.CARD.claims if c.id == "flops_fall")  # the card's claim reads the run totals
    judged = _value_claim(claim, {"prunetrain": [pruned], "baseline": [base]})
    assert judged["measured"] == pytest.approx(1 - pruned.flops / base.flops)


def test_a_run_killed_after_a_reconfiguration_resumes_with_the_same_metrics(tmp_path, monkeypatch):
    recipe = _smoke(threshold=0.15)  # removes some channels of this width-4 network at the end of epoch 1
    arm = recipe.arm("prunetrain")
    runner = Runner(None, DATA, progress=False)
    whole, model = runner.run_one(recipe, arm, 0)
    assert whole.epochs[1]["params"] < whole.epochs[0]["params"]  # the reconfiguration happened
    save = Checkpoint.on_train_batch_end

    class Killed(Exception):
        pass

    def kill_after_step_6(self, trainer, *args):  # epoch 1 is steps 1-4; step 5's checkpoint holds the cut model
        save(self, trainer, *args)
        if trainer.global_step == 6:
            raise Killed

    path = tmp_path / "prunetrain.ckpt"
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill_after_step_6)
    with pytest.raises(Killed):
        runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1)
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
    resumed, again = runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1, resume=True)
    assert resumed.resumed_from_step == 6
    assert (resumed.steps, resumed.final, resumed.flops) == (whole.steps, whole.final, whole.flops)
    assert [e["params"] for e in resumed.epochs] == [e["params"] for e in whole.epochs]
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


def test_a_model_without_channel_groups_is_refused_before_training():
    from tests.tiny import tiny_recipe

    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("p", techniques=("prunetrain",))])
    with pytest.raises(ValueError, match="channel groups are defined for ResNetCifar and SmallCNN, not MLP"):
        Runner(None, DATA, progress=False).run_one(recipe, recipe.arm("p"), 0)
