"""Kernel rescaling: the rescaled kernel keeps the filter (its sum exactly, its response to a smooth image
nearly), a run trains at low resolution first and is charged the cheaper steps, it resumes across the
switch, and models it cannot act on are refused in words."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import reproductions.degusmao2016_kernel_rescaling as kr
from harness.models import resnet_cifar, small_cnn
from harness.recipes import Arm, Budget
from harness.runner import Runner
from harness.train.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = str(ROOT / "datasets")


@pytest.mark.parametrize(("k", "size"), [(3, 5), (3, 7), (5, 7), (3, 3)])
def test_the_resampling_keeps_each_tap_s_mass_and_is_the_identity_at_equal_size(k, size):
    a = kr.resampling_matrix(k, size)
    assert a.shape == (size, k) and (a >= 0).all()
    torch.testing.assert_close(a.sum(0), torch.ones(k, dtype=torch.float64))
    if k == size:
        torch.testing.assert_close(a, torch.eye(k, dtype=torch.float64))
    w = torch.randn(4, 2, k, k, dtype=torch.float64)
    big = kr.rescale_kernel(w, size)
    assert big.shape == (4, 2, size, size)
    torch.testing.assert_close(big.sum((-1, -2)), w.sum((-1, -2)))  # the (k/K)^2 factor, exactly
    # symmetric in space: flipping the small kernel flips the big one
    torch.testing.assert_close(kr.rescale_kernel(w.flip(-1), size), big.flip(-1))


def _smooth_images(side: int, channels: int = 2) -> torch.Tensor:
    """Sums of low-frequency sinusoids (along each axis, periods of 20 px or more), so downscaling loses little."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                            indexing="ij")
    images = torch.zeros(3, channels, side, side, dtype=torch.float64)
    for _ in range(4):
        fy, fx = (torch.rand(2, generator=g) * 2 - 1) * (2 * math.pi / 20)
        phase = torch.rand(3, channels, 1, 1, generator=g, dtype=torch.float64) * 2 * math.pi
        images += torch.cos(fy * yy + fx * xx + phase)
    return images


def test_the_spatial_scaling_property_a_smooth_image_gives_the_same_response_at_both_resolutions():
    """conv(downscale(x), w) ~ downscale(conv(x, rescale(w))): the low-resolution network's filters act at full
    resolution as they did on the small images. Padding a 3x3 kernel with zeros to 5x5 (the same taps, no
    rescaling) misses by far more: the test tells the property from a resize that ignores it."""
    x = _smooth_images(60)  # 60 * 3/5 = 36 px: the scale is exact
    w = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    low = F.conv2d(kr.downscale(x, 0.6), w, padding=1)
    full = kr.downscale(F.conv2d(x, kr.rescale_kernel(w, 5), padding=2), 0.6)
    padded = kr.downscale(F.conv2d(x, F.pad(w, (1, 1, 1, 1)), padding=2), 0.6)
    inner = (..., slice(3, -3), slice(3, -3))  # away from the zero padding at the borders

    def error(y):
        return ((y - low)[inner].norm() / low[inner].norm()).item()

    assert low.shape == full.shape == (3, 3, 36, 36)
    assert error(full) < 0.03
    assert error(padded) > 3 * error(full)


def test_the_largest_square_kernels_are_the_ones_rescaled_and_the_images_shrink_by_k_over_k():
    model = kr.wide_kernel_cnn((4, "M", 8))((3, 32, 32), 10)
    model.features.append(torch.nn.Conv2d(8, 8, 1))  # a 1x1 conv stays as it is
    size, convs = kr.rescalable_convs(model, 3)
    assert size == 5 and convs == [model.features[0], model.features[4]]
    assert kr.downscale(torch.zeros(2, 3, 32, 32), 3 / 5).shape == (2, 3, 19, 19)


def _smoke():
    recipe = kr.recipe("smoke")
    return replace(recipe, arms=(recipe.arm("baseline"), recipe.arm("kernel_rescaling")))


def test_a_run_trains_small_first_is_charged_the_cheaper_steps_and_ends_with_full_kernels():
    recipe = replace(_smoke(), budget=Budget(epochs=3))  # 12 steps, the switch before the 7th (epoch 1's third)
    runner = Runner(None, DATA, progress=False)
    base, base_model = runner.run_one(recipe, recipe.arm("baseline"), 0)
    run, model = runner.run_one(recipe, recipe.arm("kernel_rescaling"), 0)
    assert [p.shape for p in model.parameters()] == [p.shape for p in base_model.parameters()]
    assert all(m.kernel_size == (5, 5) and m.padding == (2, 2) for m in model.modules()
               if isinstance(m, torch.nn.Conv2d))
    low, switch, full = run.epochs
    assert low["params"] == switch["params"] < full["params"] == base.epochs[0]["params"]
    assert low["flops"] < switch["flops"] < full["flops"] == base.epochs[0]["flops"]
    # 17 x 17 images and 3x3 kernels: the conv FLOPs of a low step are about (17/28)^2 * 9/25 = 13% of a full one's
    assert low["flops"] < 0.3 * full["flops"]
    assert run.flops < 0.75 * base.flops
    assert run.stats["kernel_rescaling/low"] == 0.5  # low at step 1, rescaled at step 10
    # the control spends the same, and ends elsewhere
    pad, _ = runner.run_one(recipe, kr.recipe("smoke").arm("zero_pad"), 0)
    assert [e["flops"] for e in pad.epochs] == [e["flops"] for e in run.epochs]
    assert pad.final["test/loss"] != run.final["test/loss"]


@pytest.mark.parametrize("kill_at", [1, 6, 9], ids=["before_the_switch", "at_the_switch", "after_the_switch"])
@pytest.mark.parametrize("arm_name", ["kernel_rescaling", "zero_pad"])
def test_a_killed_run_resumes_with_the_same_metrics(tmp_path, monkeypatch, kill_at, arm_name):
    """The switch comes before the 7th of 12 steps (global step round(0.5 * 12) = 6, inside epoch 1, as a
    checkpoint is never written at an epoch's last step): a checkpoint after 9 steps holds 5x5 kernels, which
    the resumed run (built with 3x3 ones) must take with their padding; one after 6 steps holds the small ones,
    switched on the first step after the resume."""
    recipe = replace(kr.recipe("smoke"), budget=Budget(epochs=3))
    arm = recipe.arm(arm_name)
    runner = Runner(None, DATA, progress=False)
    whole, model = runner.run_one(recipe, arm, 0)
    save = Checkpoint.on_train_batch_end

    class Killed(Exception):
        pass

    def kill(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == kill_at:
            raise Killed

    path = tmp_path / "kr.ckpt"
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill)
    with pytest.raises(Killed):
        runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1)
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
    resumed, again = runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1, resume=True)
    assert resumed.resumed_from_step == kill_at
    assert (resumed.steps, resumed.final, resumed.flops) == (whole.steps, whole.final, whole.flops)
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    convs = [m for m in again.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.kernel_size == (5, 5) and m.padding == (2, 2) and len(m._forward_pre_hooks) == 1 for m in convs)
    assert len(again._forward_pre_hooks) == 1  # one downscaling hook, idle after the switch


def test_models_it_cannot_act_on_and_bad_knobs_are_refused():
    from tests.tiny import tiny_recipe

    no_pool = small_cnn((4, 8), 16)((1, 28, 28), 10)
    assert kr.KernelRescaling.unsupported(no_pool) == ("kernel_rescaling needs a global pool before the classifier; "
                                                       "SmallCNN has none (a flattened map of fixed size cannot take "
                                                       "downscaled images)")
    assert "largest is 3x3" in kr.KernelRescaling.unsupported(resnet_cifar(8, 4)((3, 32, 32), 10))
    assert kr.KernelRescaling.unsupported(kr.wide_kernel_cnn()((3, 32, 32), 10)) is None
    pooled_7x7 = kr.wide_kernel_cnn()((3, 32, 32), 10)
    pooled_7x7.pool = torch.nn.AdaptiveAvgPool2d(7)  # torchvision VGG/AlexNet style: a fixed 7x7 map, not global
    assert "needs a global pool" in kr.KernelRescaling.unsupported(pooled_7x7)
    valid = kr.wide_kernel_cnn()((3, 32, 32), 10)
    valid.features[0].padding = (0, 0)
    assert "'same' zero padding (2)" in kr.KernelRescaling.unsupported(valid)
    recipe = tiny_recipe(arms=[Arm("baseline"), Arm("k", techniques=("kernel_rescaling",))], model=small_cnn((4, 8)),
                         flatten=False)
    with pytest.raises(ValueError, match="needs a global pool"):
        Runner(None, DATA, progress=False).run_one(recipe, recipe.arm("k"), 0)
    for kwargs, text in [({"low": 2}, "odd kernel size"), ({"low": 0}, "odd kernel size"),
                         ({"switch_at": 1.0}, "switch_at"), ({"switch_at": 0}, "switch_at"),
                         ({"transform": "bilinear"}, "rescale, zero_pad")]:
        with pytest.raises(ValueError, match=text):
            kr.KernelRescaling(**kwargs)


def test_a_budget_without_steps_is_refused():
    recipe = replace(_smoke(), budget=Budget(train_seconds=5.0))
    with pytest.raises(ValueError, match="give the budget in steps, epochs or samples"):
        Runner(None, DATA, progress=False).run_one(recipe, recipe.arm("kernel_rescaling"), 0)


def test_the_control_pads_the_same_taps_with_zeros():
    w = torch.randn(2, 3, 3, 3)
    padded = kr.zero_pad_kernel(w, 5)
    assert padded.shape == (2, 3, 5, 5) and torch.equal(padded[..., 1:4, 1:4], w)
    assert padded[..., 0, :].abs().sum() == padded[..., :, 4].abs().sum() == 0
    # unlike the rescaled kernel, it keeps the taps' spacing: a filter 3/5 as wide at full resolution
    assert not torch.allclose(padded, kr.rescale_kernel(w, 5))


def test_the_recipes_compare_equal_epochs():
    cpu, paper = kr.recipe("cpu"), kr.recipe("paper")
    assert [a.name for a in cpu.arms] == ["baseline", "kernel_rescaling", "zero_pad"]
    assert cpu.dataset == "cifar10-jpeg75"
    assert cpu.arm("zero_pad").technique_kwargs["kernel_rescaling"]["transform"] == "zero_pad"
    assert not cpu.arm("kernel_rescaling").overrides and cpu.arm("kernel_rescaling").fidelity == "variant"
    assert paper.dataset == "imagenet" and paper.arm("kernel_rescaling").technique_kwargs == {
        "kernel_rescaling": {"low": 5}}
    model = paper.model((3, 224, 224), 1000)
    assert kr.rescalable_convs(model, 5)[0] == 7
