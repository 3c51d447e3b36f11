"""A synthetic 28x28 recipe that trains in well under a second, for tests of the training path."""

from __future__ import annotations

from harness.measure import Budget, Target
from harness.models import mlp
from harness.recipes import Arm, Recipe

BASELINE_ONLY = (Arm("baseline"),)


def tiny_recipe(arms=BASELINE_ONLY, baseline="baseline", **kw) -> Recipe:
    fields = dict(name="tiny", scale="smoke", dataset="synthetic", model=mlp((32,)), budget=Budget(steps=2),
                  target=Target("val/acc", 0.5), optim={"name": "sgd", "lr": 0.05, "momentum": 0.9},
                  batch_size=32, eval_every_n_steps=1, n_val=64, flatten=True, arms=tuple(arms),
                  baseline_arm=baseline)
    fields.update(kw)
    return Recipe(**fields)
