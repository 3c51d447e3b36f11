"""Shared base recipes: the models and training setups more than one paper or the matrix start from.

A paper's `recipe(scale)` takes one of these and adds its arms; `effitrain run --recipe NAME` and
the combinability matrix (params.yaml `combine.recipe`) use them as they are. Registered through
the entry point `zoo = "harness.zoo"` of the group `effitrain.plugins`, like any plug-in.
"""

from __future__ import annotations

from harness.measure import Budget, Target
from harness.models import mlp, small_cnn
from harness.recipes import Recipe, register_recipe

__all__ = ["mnist_cnn", "mnist_mlp"]

# Epochs per scale. mnist_cnn: 4 at cpu scale reach 98.5% validation accuracy on the 2-core machine in
# about a minute (micikevicius2018_mixed_precision's recipe); mnist_mlp: the student's epochs of
# hinton2015_distillation's recipe, about 5 s an epoch on hard labels.
_CNN_EPOCHS = {"smoke": 1, "cpu": 4, "paper": 90}
_MLP_EPOCHS = {"smoke": 1, "cpu": 12, "paper": 60}


@register_recipe("mnist_cnn")
def mnist_cnn(scale: str) -> Recipe:
    """A small MNIST CNN (conv16-conv32, 5x5, FC 128): SGD momentum 0.9, cosine, batch 128."""
    smoke = scale == "smoke"
    return Recipe(
        name="mnist_cnn", scale=scale, dataset="synthetic" if smoke else "mnist",
        model=small_cnn((8, 16), 32) if smoke else small_cnn((16, 32), 128),
        budget=Budget(epochs=_CNN_EPOCHS[scale]), target=Target("val/acc", 0.5 if smoke else 0.985),
        optim={"name": "sgd", "lr": 0.05, "momentum": 0.9}, schedule="cosine",
        batch_size=32 if smoke else 128, eval_every_n_steps=4 if smoke else 100, n_val=64 if smoke else 5000,
        description="synthetic 28x28, CNN 8-16" if smoke else "MNIST 55k/5k, CNN conv16-conv32-FC128",
    )


@register_recipe("mnist_mlp")
def mnist_mlp(scale: str) -> Recipe:
    """The 784-800-800-10 student on MNIST: SGD momentum 0.9, cosine, batch 128."""
    smoke = scale == "smoke"
    return Recipe(
        name="mnist_mlp", scale=scale, dataset="synthetic" if smoke else "mnist",
        model=mlp((64, 64)) if smoke else mlp((800, 800)),
        budget=Budget(epochs=_MLP_EPOCHS[scale]), target=Target("val/acc", 0.5 if smoke else 0.98),
        optim={"name": "sgd", "lr": 0.05, "momentum": 0.9}, schedule="cosine",
        batch_size=32 if smoke else 128, eval_every_n_steps=4 if smoke else 100,
        n_val=64 if smoke else 5000, flatten=True,
        description="synthetic 28x28, MLP 64-64" if smoke else "MNIST 55k/5k, MLP 800-800",
    )
