"""DSD: the magnitude masks against their definition, the three phases on a training loop (masked weights stay
exactly zero under momentum and weight decay, then restart from zero), and resume inside the sparse phase."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import reproductions.han2017_dsd as dsd
from harness.models import resnet_cifar
from harness.runner import Runner
from harness.train.checkpoint import Checkpoint

DATA = str(Path(__file__).resolve().parent.parent / "datasets")


def test_masks_remove_the_smallest_magnitudes_of_each_layer():
    torch.manual_seed(0)
    weights = {"a": torch.randn(10, 7), "b": torch.randn(3, 4, 3, 3)}
    masks = dsd.magnitude_masks(weights, 0.3)
    for name, w in weights.items():
        k = int(0.3 * w.numel())
        assert int((~masks[name]).sum()) == k
        threshold = w.abs().flatten().sort().values[k]  # the smallest surviving magnitude
        assert bool((w.abs()[~masks[name]] < threshold).all()) and bool((w.abs()[masks[name]] >= threshold).all())


def test_the_three_phases_on_a_training_loop():
    torch.manual_seed(0)
    model = resnet_cifar(8, 4)((3, 16, 16), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    technique = dsd.DSD(sparsity=0.3, sparse_from=1 / 3, dense_from=2 / 3)
    module = SimpleNamespace(model=model, total_steps=9, step_metrics={})
    weights = dsd.prunable(model)
    zeros_seen, masks = [], None
    for step in range(9):
        trainer = SimpleNamespace(global_step=step, optimizers=[opt])
        technique.on_train_batch_start(trainer, module, None, step)
        if step == 3:
            masks = {n: m.clone() for n, m in technique.masks.items()}
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 16, 16)), torch.randint(0, 10, (8,))).backward()
        technique.on_before_optimizer_step(trainer, module, opt)
        opt.step()
        technique.on_train_batch_end(trainer, module, None, None, step)
        zeros_seen.append(float(module.step_metrics["dsd/sparsity"]))
        if 3 <= step < 6:  # the sparse phase: masked weights exactly zero after every step
            assert all(bool((weights[n][~m] == 0).all()) for n, m in masks.items()), step
    expected = sum(int(0.3 * w.numel()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    assert zeros_seen[:3] == [0.0] * 3 and zeros_seen[3:6] == [pytest.approx(expected)] * 3
    assert zeros_seen[-1] < 0.01  # dense again: the pruned weights restarted from zero and moved
    assert not technique.masks


def test_a_run_killed_inside_the_sparse_phase_resumes_with_the_same_metrics(tmp_path, monkeypatch):
    recipe = dsd.recipe("smoke")  # 6 steps: sparse from step 2 to step 4
    arm = recipe.arm("dsd")
    runner = Runner(None, DATA, progress=False)
    whole, _ = runner.run_one(recipe, arm, 0)
    save = Checkpoint.on_train_batch_end

    class Killed(Exception):
        pass

    def kill_after_step_3(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == 3:
            raise Killed

    path = tmp_path / "dsd.ckpt"
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", kill_after_step_3)
    with pytest.raises(Killed):
        runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1)
    monkeypatch.setattr(Checkpoint, "on_train_batch_end", save)
    resumed, _ = runner.run_one(recipe, arm, 0, checkpoint=path, checkpoint_every_n_steps=1, resume=True)
    assert resumed.resumed_from_step == 3
    assert (resumed.steps, resumed.final) == (whole.steps, whole.final)


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="sparsity"):
        dsd.DSD(sparsity=1.0)
    with pytest.raises(ValueError, match="sparse_from < dense_from"):
        dsd.DSD(sparse_from=0.7, dense_from=0.5)
