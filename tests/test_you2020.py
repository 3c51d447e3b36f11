"""Early-Bird tickets: the mask and distance against the official definitions, the slimming subgradient,
pruning to a ticket that keeps the function and the momentum, the ticket drawn in a run with the ledger
following it, resume across the draw, and models it cannot slim."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import reproductions.you2020_early_bird as eb
from harness.experiments.reproduce import _value_claim
from harness.measure import Budget
from harness.models import small_cnn
from harness.recipes import Arm
from harness.runner import Runner
from harness.train.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = str(ROOT / "datasets")


def _vgg(width: float = 0.125) -> eb.SlimVGG:
    torch.manual_seed(0)
    return eb.slim_vgg(width)((3, 32, 32), 10)


def test_global_mask_keeps_the_scores_above_the_value_at_index_floor_p_n():
    scores = [torch.tensor([0.5, 0.1, 0.9]), torch.tensor([0.3, 0.7]), torch.tensor([0.2, 0.8, 0.6, 0.4, 0.05])]
    # 10 scores sorted: 0.05 0.1 0.2 0.3 0.4 0.5 ...; p = 0.3 -> index 3 -> threshold 0.3, kept strictly above it
    mask = eb.global_mask(scores, 0.3)
    assert mask.tolist() == [True, False, True, False, True, False, True, True, True, False]
    assert not eb.global_mask([torch.full((4,), 0.5)], 0.3).any()  # the initial scales (all 0.5) keep nothing


def test_distance_and_emergence_follow_the_last_keep_masks():
    a, b = torch.tensor([1, 1, 0, 0, 1, 0, 1, 0, 1, 1], dtype=torch.bool), torch.zeros(10, dtype=torch.bool)
    assert eb.mask_distance(a, b) == pytest.approx(0.6) and eb.mask_distance(a, a) == 0.0
    c = a.clone()
    c[0] = False  # one channel of ten differs: distance 0.1, which counts as settled (the official test is > 0.1)
    assert eb.emerged([a, a, a, a], keep=5, distance=0.1) == (False, [])  # fewer than five masks
    found, dists = eb.emerged([b, a, a, a, a, c], keep=5, distance=0.1)
    assert found and dists == pytest.approx([0.1, 0.1, 0.1, 0.1])  # b has left the window
    assert not eb.emerged([b, a, a, a, c], keep=5, distance=0.1)[0]


def test_slimming_adds_s_sign_gamma_to_the_batchnorm_scales_only():
    model = _vgg()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bns[0].weight.data[:2] = torch.tensor([-0.3, 0.0])
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    eb.slimming_subgradient(model, 1e-2)
    for name, p in model.named_parameters():
        expected = before[name]
        if any(p is bn.weight for bn in bns):
            expected = expected + 1e-2 * torch.sign(p.detach())
        torch.testing.assert_close(p.grad, expected)
    assert bns[0].weight.grad[1] == before["features.1.weight"][1]  # sign(0) = 0


def test_pruning_to_the_ticket_keeps_the_function_and_cuts_the_momentum():
    """Channels whose scale and shift are zero output nothing after ReLU: removing them changes no output."""
    model = _vgg()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8)).backward()
    opt.step()
    groups = eb.vgg_groups(model)
    g = torch.Generator().manual_seed(1)
    masks = []
    for group in groups:
        keep = torch.rand(group.width, generator=g) > 0.4
        keep[0] = True  # every layer keeps a channel, so every layer still shapes the output
        bn = group.others[0].module
        bn.weight.data[~keep], bn.bias.data[~keep] = 0.0, 0.0
        masks.append(keep)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    conv = groups[1].weights[0].module
    old_buffer, kept1 = opt.state[conv.weight]["momentum_buffer"].clone(), torch.nonzero(masks[1]).flatten()
    kept0 = torch.nonzero(masks[0]).flatten()
    before = model(x)
    assert before.std() > 0
    widths = eb.prune_to_mask(groups, torch.cat(masks), opt)
    assert [after for _, after in widths.values()] == [int(m.sum()) for m in masks]
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    buffer = opt.state[conv.weight]["momentum_buffer"]
    assert torch.equal(buffer, old_buffer[kept1][:, kept0])
    opt.step()  # the cut optimizer steps the cut model


def test_a_layer_the_mask_empties_keeps_its_best_scored_channel():
    model = _vgg()
    groups = eb.vgg_groups(model)
    bn = groups[3].others[0].module
    scales = torch.linspace(0.1, 0.2, bn.num_features)
    scales[5] = -0.9  # the best |gamma| is neither the first nor the largest signed value
    bn.weight.data.copy_(scales)
    masks = [torch.ones(gr.width, dtype=torch.bool) for gr in groups]
    masks[3][:] = False
    widths = eb.prune_to_mask(groups, torch.cat(masks))
    assert widths[groups[3].name] == (scales.numel(), 1) and bn.weight.item() == pytest.approx(-0.9)


def _smoke():
    recipe = eb.recipe("smoke")
    return replace(recipe, arms=(recipe.arm("baseline"), recipe.arm("early_bird")))


def test_a_run_draws_the_ticket_and_the_ledger_follows_it():
    recipe = _smoke()
    runner = Runner(None, DATA, progress=False)
    base, _ = runner.run_one(recipe, recipe.arm("baseline"), 0)
    ticket, model = runner.run_one(recipe, recipe.arm("early_bird"), 0)
    params = [e["params"] for e in ticket.epochs]
    drawn = next(i for i, p in enumerate(params) if p < params[0])  # the epoch whose start drew the ticket
    assert 1 <= drawn < len(params) and params[0] == base.epochs[0]["params"]
    assert ticket.epochs[drawn]["flops"] < base.epochs[drawn]["flops"] and ticket.flops < base.flops
    assert params[-1] == sum(p.numel() for p in model.parameters())
    assert 0 < ticket.stats["early_bird/searching"] < 1  # sampled at steps 1, 10: searching, then the ticket
    claim = next(c for c in eb.CARD.claims if c.id == "ticket_early")  # a claim reads a technique's statistic
    judged = _value_claim(claim, {"early_bird": [ticket]})
    assert judged["measured"] == ticket.stats["early_bird/searching"] and judged["n_seeds"] == 1


@pytest.mark.parametrize("offset", [2, -2], ids=["after_the_ticket", "while_searching"])
def test_a_run_killed_resumes_with_the_same_metrics(tmp_path, monkeypatch, offset):
    """Killed two steps into the epoch that drew the ticket (the pruned shapes must come back), or two steps
    before it (the masks so far and the last epoch checked must come back, or the ticket moves)."""
    recipe = _smoke()
    arm = recipe.arm("early_bird")
    runner = Runner(None, DATA, progress=False)
    whole, model = runner.run_one(recipe, arm, 0)
    drawn = next(i for i, e in enumerate(whole.epochs) if e["params"] < whole.epochs[0]["params"])
    kill_at = 4 * drawn + offset  # 4 steps per epoch
    save = Checkpoint.on_train_batch_end

    class Killed(Exception):
        pass

    def kill(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == kill_at:
            raise Killed

    path = tmp_path / "eb.ckpt"
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill)
    with pytest.raises(Killed):
        runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1)
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
    resumed, again = runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1, resume=True)
    assert resumed.resumed_from_step == kill_at
    assert (resumed.steps, resumed.final, resumed.flops) == (whole.steps, whole.final, whole.flops)
    assert [e["params"] for e in resumed.epochs] == [e["params"] for e in whole.epochs]
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]


def test_a_model_without_batchnorm_is_refused_and_one_with_it_is_not():
    no_bn = small_cnn((6, 8), 12)((1, 28, 28), 10)
    assert eb.EarlyBird.unsupported(no_bn) == "early_bird needs BatchNorm scales to slim; SmallCNN has none"
    assert eb.EarlyBird.unsupported(small_cnn((6, 8), 12, norm=True)((1, 28, 28), 10)) is None
    from tests.tiny import tiny_recipe

    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("e", techniques=("early_bird",))])
    with pytest.raises(ValueError, match="channel groups are defined for ResNetCifar and SmallCNN, not MLP"):
        Runner(None, DATA, progress=False).run_one(recipe, recipe.arm("e"), 0)


def test_bad_knobs_are_refused():
    for kwargs, text in [({"ratio": 1.0}, "ratio"), ({"s": -1.0}, "s="), ({"distance": 1.0}, "distance"),
                         ({"keep": 1}, "keep")]:
        with pytest.raises(ValueError, match=text):
            eb.EarlyBird(**kwargs)


def test_recipes_build_and_count_budgets():
    cpu = eb.recipe("cpu")
    assert [a.name for a in cpu.arms] == ["baseline", "early_bird"] and cpu.budget == Budget(epochs=16)
    paper = eb.recipe("paper")
    assert {a.name for a in paper.arms} == {"baseline", "early_bird", "early_bird_p50", "early_bird_p10"}
    assert paper.arm("early_bird_p10").technique_kwargs["early_bird"]["ratio"] == 0.1
