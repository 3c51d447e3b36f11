"""Net2Net: Net2WiderNet and Net2DeeperNet keep the function exactly (without noise), random padding does
not, the narrowed network is the half-width one, and a run grows, is charged for its small phase and resumes
across the growth."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import reproductions.chen2015_net2net as n2n
from harness.models import resnet_cifar, small_cnn
from harness.recipes import Arm, Budget
from harness.runner import Runner
from harness.surgery import channel_groups
from harness.train.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = str(ROOT / "datasets")


def _trained(build, steps: int = 3) -> torch.nn.Module:
    """A model whose BatchNorm statistics and weights are not their defaults."""
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 16, 16)), torch.randint(0, 10, (8,))).backward()
        opt.step()
    return model


def _widen_all(model: torch.nn.Module, factor: int = 2, **kwargs) -> None:
    generator = torch.Generator().manual_seed(3)
    for group in channel_groups(model):
        n2n.widen(group, factor * group.width, generator, **kwargs)


@pytest.mark.parametrize("build", [lambda: resnet_cifar(14, 4)((3, 16, 16), 10),
                                   lambda: small_cnn((4, 6), 12, norm=True)((3, 16, 16), 10)],
                         ids=["resnet14", "cnn_bn"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_net2wider_keeps_the_function_exactly(build, mode):
    model = _trained(build)
    params = sum(p.numel() for p in model.parameters())
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    width = first.out_channels
    x = torch.randn(6, 3, 16, 16)
    getattr(model, mode)()
    with torch.no_grad():
        before = model(x)
        _widen_all(model)
        after = model(x)
    assert sum(p.numel() for p in model.parameters()) > 3 * params
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert first.out_channels == first.weight.shape[0] == 2 * width


def test_noise_and_random_padding_change_the_function_by_small_and_large_amounts():
    x = torch.randn(6, 3, 16, 16)
    outputs = {}
    for name, kwargs in [("exact", {}), ("noise", {"noise": 0.01}), ("random", {"random_pad": True})]:
        model = _trained(lambda: resnet_cifar(8, 4)((3, 16, 16), 10)).eval()
        with torch.no_grad():
            before = model(x)
            _widen_all(model, **kwargs)
            outputs[name] = (model(x) - before).abs().max().item() / before.abs().max().item()
    assert outputs["exact"] < 1e-5 < outputs["noise"] < 0.05 < outputs["random"]


def test_widening_copies_the_statistics_and_divides_the_readers():
    model = _trained(lambda: resnet_cifar(8, 4)((3, 16, 16), 10))
    group = next(g for g in channel_groups(model) if g.name == "block1")
    conv1, bn1, conv2 = model.blocks[0].conv1, model.blocks[0].bn1, model.blocks[0].conv2
    w1, mean, w2 = conv1.weight.detach().clone(), bn1.running_mean.clone(), conv2.weight.detach().clone()
    mapping = n2n.widen(group, 7, torch.Generator().manual_seed(0))
    counts = torch.bincount(mapping, minlength=4)
    assert mapping[:4].tolist() == [0, 1, 2, 3] and conv1.out_channels == bn1.num_features == 7
    torch.testing.assert_close(conv1.weight.detach(), w1[mapping])
    torch.testing.assert_close(bn1.running_mean, mean[mapping])
    torch.testing.assert_close(conv2.weight.detach(), w2[:, mapping] / counts[mapping].view(1, -1, 1, 1).float())
    with pytest.raises(ValueError, match="below the group's"):
        n2n.widen(group, 3, torch.Generator())


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_net2deeper_identity_block_keeps_the_function_exactly(mode):
    model = _trained(lambda: resnet_cifar(8, 4)((3, 16, 16), 10))
    x = torch.randn(6, 3, 16, 16)
    getattr(model, mode)()
    with torch.no_grad():
        before = model(x)
        n2n.identity_block(model, 1)
        after = model(x)
    assert len(model.blocks) == 4
    torch.testing.assert_close(after, before)


def test_narrowing_gives_the_half_width_network():
    model = resnet_cifar(8, 16)((3, 32, 32), 10)
    full = n2n.narrow_(model, 0.5)
    assert full["stage1"] == 16 and full["stage3"] == 64
    half = resnet_cifar(8, 8)((3, 32, 32), 10)
    assert [p.shape for p in model.parameters()] == [p.shape for p in half.parameters()]


def _smoke():
    recipe = n2n.recipe("smoke")
    return replace(recipe, arms=(recipe.arm("baseline"), recipe.arm("net2wider")))


def test_a_run_grows_and_is_charged_for_its_small_phase():
    recipe = _smoke()
    recipe = replace(recipe, budget=Budget(epochs=3))  # 12 steps: the stat is sampled at steps 1 and 10
    runner = Runner(None, DATA, progress=False)
    base, base_model = runner.run_one(recipe, recipe.arm("baseline"), 0)
    grown, model = runner.run_one(recipe, recipe.arm("net2wider"), 0)
    assert [p.shape for p in model.parameters()] == [p.shape for p in base_model.parameters()]
    # growth before step round(0.3 * 12) = 4, the first of epoch 1: that epoch's parameters were counted at its
    # start (small), its FLOPs over its steps (large)
    small, grows, large = grown.epochs
    assert small["params"] == grows["params"] < large["params"] == base.epochs[0]["params"]
    assert small["flops"] < grows["flops"] == large["flops"] == base.epochs[0]["flops"]
    assert grown.flops < base.flops
    assert grown.stats["net2wider/small"] == 0.5  # small at step 1, grown at step 10


@pytest.mark.parametrize("kill_at", [1, 5], ids=["before_growing", "after_growing"])
def test_a_killed_run_resumes_with_the_same_metrics(tmp_path, monkeypatch, kill_at):
    """Growth comes before step round(0.3 * 8) = 2: killed after step 5 the checkpoint holds the wide model;
    after step 1 the narrow one, and the resumed run must widen with the same noise (the growth seed)."""
    recipe = _smoke()
    arm = recipe.arm("net2wider")
    runner = Runner(None, DATA, progress=False)
    whole, model = runner.run_one(recipe, arm, 0)
    save = Checkpoint.on_train_batch_end

    class Killed(Exception):
        pass

    def kill(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == kill_at:
            raise Killed

    path = tmp_path / "n2n.ckpt"
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill)
    with pytest.raises(Killed):
        runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1)
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
    resumed, again = runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1, resume=True)
    assert resumed.resumed_from_step == kill_at
    assert (resumed.steps, resumed.final, resumed.flops) == (whole.steps, whole.final, whole.flops)
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


def test_a_model_without_channel_groups_and_bad_knobs_are_refused():
    from tests.tiny import tiny_recipe

    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("w", techniques=("net2wider",))])
    with pytest.raises(ValueError, match="channel groups are defined for ResNetCifar and SmallCNN, not MLP"):
        Runner(None, DATA, progress=False).run_one(recipe, recipe.arm("w"), 0)
    for kwargs, text in [({"share": 1.0}, "share"), ({"grow_at": 0.0}, "grow_at"), ({"noise": -1.0}, "noise")]:
        with pytest.raises(ValueError, match=text):
            n2n.Net2Wider(**kwargs)
