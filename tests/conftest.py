"""Shared fixtures: a tiny synthetic recipe and an MLflow store in a temp dir."""

from __future__ import annotations

import os

import torch

# Without a GPU the Triton fast paths run under Triton's interpreter on CPU tensors, so their
# correctness is tested here too. Triton reads the variable when it is first imported (its own
# @jit helpers such as tl.rand are decorated then), and Lightning imports it through harness,
# so it is set before anything else is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from harness.measure import Budget, Target  # noqa: E402
from harness.models import mlp  # noqa: E402
from harness.recipes import Arm, Recipe  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def tiny_recipe(arms=(Arm("baseline"),), baseline="baseline", **kw) -> Recipe:
    """A synthetic 28x28 recipe that trains in well under a second."""
    fields = dict(name="tiny", scale="smoke", dataset="synthetic", model=mlp((32,)), budget=Budget(steps=2),
                  target=Target("val/acc", 0.5), optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                  batch_size=32, eval_every_n_steps=1, n_val=64, flatten=True, arms=tuple(arms),
                  baseline_arm=baseline)
    fields.update(kw)
    return Recipe(**fields)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Run in a temp project dir with its own MLflow SQLite store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EFFITRAIN_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Decoded-dataset caches go to the test's temp dir, never the user's ~/.cache."""
    monkeypatch.setenv("EFFITRAIN_CACHE", str(tmp_path / ".cache"))
