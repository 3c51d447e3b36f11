"""Adelman & Silberstein (2018; NeurIPS 2021 with Levy and Hakimi), Faster Neural Network
Training with Approximate Tensor Operations.

Claim header (arXiv:1805.08079): replacing the matrix products and convolutions of training by
column-row sampling (CRS) -- k of the K column-row pairs (input channels for a convolution),
drawn with probability proportional to the product of their norms and scaled to stay unbiased --
cuts 30-80% of the computation with little or no impact on accuracy (v1); the 2021 version
reports up to 66% less compute and communication and up to 1.37x faster training.

Arms on one recipe, two models raced each against its own baseline: `mlp` (the recipe baseline,
MNIST MLP 784-500-500-10, Adam, batch 50) and `mlp_crs` (all linear layers sampled, ratio 0.9,
minimal_k 10); `cnn` (conv32-conv64-FC1024-FC10, SGD 0.01 momentum 0.5, batch 64) and `cnn_crs`
(the convolutions sampled over input channels at ratio 0.5). These are the official code's
MNIST defaults (github.com/acsl-technion/approx: mnist_mlp_pytorch, mnist_cnn_pytorch). Sampling
runs in training only; evaluation is exact, as in the official modules. The kernels (reference,
custom ops, C++ and Triton fast paths) live in kernels/crs.py.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.cards import Claim, PaperCard
from harness.measure import Budget, Target
from harness.models import mlp, small_cnn
from harness.recipes import Arm, Recipe
from harness.techniques import Technique, register_technique
from kernels.crs import crs_conv2d, crs_k, crs_matmul

CARD = PaperCard(
    id="adelman2018_approximate_tensor_ops",
    title="Faster Neural Network Training with Approximate Tensor Operations",
    authors="Menachem Adelman, Mark Silberstein (NeurIPS 2021 version: Menachem Adelman, Kfir Y. Levy, "
            "Ido Hakimi, Mark Silberstein)",
    venue="arXiv 2018; NeurIPS 2021",
    year=2018,
    arxiv="1805.08079",
    family="arithmetic",
    summary="Column-row sampling: approximate each training matmul by k sampled column-row pairs (probability "
            "proportional to the product of their norms, scaled to stay unbiased), and each convolution by "
            "sampled input channels; knobs sample_ratio and minimal_k.",
    datasets=("mnist", "cifar100 (v1)", "penn treebank (v1)", "cifar10 (2021)", "imagenet (2021)"),
    models=("MLP 784-500-500-10", "CNN conv32-conv64-FC1024-FC10", "ResNets, language models (not reproduced)"),
    claims=(
        Claim("mlp_accuracy", "MLP: CRS (ratio 0.9) costs little or no test accuracy (difference mlp_crs - mlp)",
              "test/acc", "mlp_crs", 0.0, "v1 abstract ('little or no impact on model accuracy')",
              tolerance=0.005, minus_arm="mlp"),
        Claim("cnn_accuracy", "CNN: CRS on the convolutions (ratio 0.5) costs little or no test accuracy "
              "(difference cnn_crs - cnn)", "test/acc", "cnn_crs", 0.0, "v1 abstract", tolerance=0.005,
              minus_arm="cnn"),
        Claim("compute_v1", "30-80% less computation (a range over models)", "cost/saving",
              "cnn_crs", 0.30, "v1 abstract", kind="range", claimed_high=0.80, scales=("paper",)),
        Claim("compute_2021", "up to 66% less compute and communication", "cost/saving", "cnn_crs", 0.66,
              "2021 abstract", tolerance=0.05, kind="at_most", scales=("paper",)),
        Claim("speedup_2021", "up to 1.37x faster training (largest of the 2021 experiments)", "speedup", "cnn_crs",
              1.37, "2021 abstract", tolerance=0.1, kind="at_most", scales=("paper",)),
    ),
    notes="Accuracy tolerances (0.5 points of test accuracy) are ours: the paper says 'little or no impact'. "
          "Sampler: i.i.d. with replacement, p_i proportional to |A[:,i]| |B[i,:]|, scale 1/(k p_i) (the unbiased "
          "CRS the paper analyses; official code `linear_random_sampling`/`conv2d_random_sampling`), gradients "
          "through the sampled pairs ('forward sampling', which the official README says produced most results). "
          "The official MNIST defaults differ in detail: its MLP samples only the two backward matmuls with a "
          "Bernoulli sampler, its CNN keeps the top-k input channels unscaled, both mixing in 10% uniform "
          "probability. k = min(max(int(K ratio), minimal_k), K) as in the official code; conv1 (1 input "
          "channel) therefore stays exact. Our CNN has no dropout (official: Dropout2d after conv2, 0.5 after "
          "FC1); our MLP keeps the official dropout 0.1. cpu scale: 3 MLP epochs and 2 CNN epochs (official: "
          "20) so one seed of all four arms takes about 3 minutes on an idle 2-core machine; "
          "paper scale keeps the official 20 epochs on 55k/5k MNIST. flop_fraction counts the three matmuls "
          "of each layer (forward, input gradient unless the input is data, weight gradient) at k/K; repeated "
          "draws are merged by the C++ kernel, so the work done is lower still (logged as crs/distinct_fraction).",
    bibtex="@inproceedings{adelman2021faster,\n  title={Faster Neural Network Training with Approximate Tensor "
           "Operations},\n  author={Adelman, Menachem and Levy, Kfir Y. and Hakimi, Ido and Silberstein, Mark},\n"
           "  booktitle={NeurIPS},\n  year={2021}\n}",
)


# ---------------------------------------------------------------- functional form

class CRSLinear(nn.Module):
    """A Linear whose training forward is crs_matmul(x, W^T) + b; the same Parameters as `linear`."""

    def __init__(self, linear: nn.Linear, sample_ratio: float, minimal_k: int) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.sample_ratio, self.minimal_k = sample_ratio, minimal_k
        self.fan_in = linear.in_features
        self.last_idx: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # evaluation is exact (official approx_Linear)
            return nn.functional.linear(x, self.weight, self.bias)
        flat = x.reshape(-1, x.shape[-1])
        weight = self.weight.to(flat.dtype)  # custom ops see no autocast: follow the activations' dtype
        out, self.last_idx = crs_matmul(flat, weight.t(), self.sample_ratio, self.minimal_k, return_indices=True)
        out = out if self.bias is None else out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class CRSConv2d(nn.Module):
    """A Conv2d (groups 1, zero padding) whose training forward samples input channels."""

    def __init__(self, conv: nn.Conv2d, sample_ratio: float, minimal_k: int) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.sample_ratio, self.minimal_k = sample_ratio, minimal_k
        self.fan_in = conv.in_channels
        self.last_idx: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return nn.functional.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        out, self.last_idx = crs_conv2d(x, self.weight.to(x.dtype), bias, self.stride, self.padding, self.dilation,
                                        self.sample_ratio, self.minimal_k, return_indices=True)
        return out


def _replaceable(module: nn.Module, layers: str) -> bool:
    linear = type(module) is nn.Linear and layers in ("all", "linear")
    conv = (type(module) is nn.Conv2d and layers in ("all", "conv") and module.groups == 1
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))
    return linear or conv


def apply_crs(model: nn.Module, sample_ratio: float, minimal_k: int, layers: str = "all") -> dict[str, nn.Module]:
    """Swap Linear/Conv2d layers for their CRS versions in place; return {name: new module}."""
    swapped = {}
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if _replaceable(child, layers):
                cls = CRSLinear if isinstance(child, nn.Linear) else CRSConv2d
                swapped[f"{parent_name}.{name}".lstrip(".")] = new = cls(child, sample_ratio, minimal_k)
                setattr(parent, name, new)
    return swapped


def layer_macs(model: nn.Module, input_shape: tuple[int, ...], flatten: bool) -> dict[str, tuple[float, int]]:
    """{layer name: (multiply-adds per example, matmuls per step)} for every Linear/Conv2d.

    Matmuls per step: forward and weight gradient, plus the input gradient unless the input is data.
    """
    out: dict[str, tuple[float, int]] = {}

    def hook(name):
        def record(module, inputs, output):
            fan_in = module.in_features if isinstance(module, nn.Linear) else \
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            out[name] = (output[0].numel() * fan_in, 2 + int(inputs[0].requires_grad))
        return record

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    handles = [m.register_forward_hook(hook(n)) for n, m in layers]
    was_training = model.training
    try:
        x = torch.zeros(2, *input_shape, device=next(model.parameters()).device)
        model.eval()(x.flatten(1) if flatten else x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out


# ---------------------------------------------------------------- technique

@register_technique
class CRS(Technique):
    """Column-row sampling in the linear and/or convolution layers during training."""

    name = "crs"
    conflicts = frozenset({"bf16_autocast", "fp16_loss_scaling", "activation_grad_pruning"})
    conflict_notes = {
        "bf16_autocast": "the CRS kernels sample and multiply in fp32; under bf16 autocast the layers before "
                         "them hand over bf16 activations, which they do not take",
        "fp16_loss_scaling": "the CRS kernels sample and multiply in fp32; under fp16 autocast the layers "
                             "before them hand over fp16 activations, which they do not take",
        "activation_grad_pruning": "both rewrite the same layers: CRS replaces Linear/Conv2d by sampling "
                                   "layers, after which the pruning hooks find no Linear/Conv2d output to prune",
    }
    card = CARD
    touches = frozenset({"architecture", "gradients"})
    order = 30
    description = "column-row sampling: matmuls/convs from k norm-weighted sampled pairs, unbiased"

    def __init__(self, sample_ratio: float = 0.5, minimal_k: int = 1, layers: str = "all") -> None:
        crs_k(1, sample_ratio, minimal_k)  # validates both knobs
        if layers not in ("all", "linear", "conv"):
            raise ValueError(f"crs: layers='{layers}' must be 'all', 'linear' or 'conv'")
        self.sample_ratio, self.minimal_k, self.layers = sample_ratio, minimal_k, layers
        self.swapped: dict[str, nn.Module] = {}
        self._fraction: float | None = None

    def params(self) -> dict:
        return {"sample_ratio": self.sample_ratio, "minimal_k": self.minimal_k, "layers": self.layers}

    def flop_fraction(self) -> float:
        """Share of the dense matmul/conv FLOPs spent: exact once setup() has seen the model."""
        return self._fraction if self._fraction is not None else self.sample_ratio

    def setup(self, trainer, pl_module, stage: str) -> None:
        macs = layer_macs(pl_module.model, pl_module.context.data.input_shape, pl_module.recipe.flatten)
        self.swapped = apply_crs(pl_module.model, self.sample_ratio, self.minimal_k, self.layers)
        kept = {n: crs_k(m.fan_in, self.sample_ratio, self.minimal_k) / m.fan_in for n, m in self.swapped.items()}
        dense = sum(m * p for m, p in macs.values())
        self._fraction = sum(m * p * kept.get(n, 1.0) for n, (m, p) in macs.items()) / dense
        # The Runner's BudgetStop asks flop_fraction() at train start, after this setup().

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        drawn = distinct = total = 0
        for name, module in self.swapped.items():
            if module.last_idx is None:
                continue
            k, u = len(module.last_idx), len(torch.unique(module.last_idx))
            pl_module.step_metrics[f"{self.name}/k/{name}"] = float(k)
            pl_module.step_metrics[f"{self.name}/distinct/{name}"] = float(u)
            drawn, distinct, total = drawn + k, distinct + u, total + module.fan_in
        if total:
            pl_module.step_metrics[f"{self.name}/sampled_fraction"] = drawn / total
            pl_module.step_metrics[f"{self.name}/distinct_fraction"] = distinct / total


# ---------------------------------------------------------------- recipe

# Official defaults (mnist_mlp_pytorch/model.py, main.py, util.py; mnist_cnn_pytorch/main.py).
MLP_CRS = {"sample_ratio": 0.9, "minimal_k": 10, "layers": "all"}
CNN_CRS = {"sample_ratio": 0.5, "minimal_k": 1, "layers": "conv"}
# Per scale: MLP epochs and target; CNN epochs, training subset, validation size, evaluation
# cadence and target. cpu: one seed of all four arms in about 3 minutes on an idle 2-core machine
# (measured idle: MLP 4 ms/step, MLP with CRS 8 ms, CNN 35 ms, CNN with CRS 32 ms).
_SIZES = {"smoke": dict(mlp_epochs=1, mlp_target=0.5, cnn_epochs=1, cnn_train=None, cnn_val=64, cnn_every=4,
                        cnn_target=0.5),
          "cpu": dict(mlp_epochs=3, mlp_target=0.97, cnn_epochs=2, cnn_train=None, cnn_val=2000, cnn_every=100,
                      cnn_target=0.95),
          "paper": dict(mlp_epochs=20, mlp_target=0.98, cnn_epochs=20, cnn_train=None, cnn_val=5000, cnn_every=500,
                        cnn_target=0.99)}


def recipe(scale: str) -> Recipe:
    """MLP arms on the recipe fields; CNN arms override model, optimizer, batch, data and budget."""
    smoke, size = scale == "smoke", _SIZES[scale]
    cnn = {"model": small_cnn((8, 16), 32) if smoke else small_cnn((32, 64), 1024),
           "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.5}, "batch_size": 32 if smoke else 64,
           "flatten": False, "n_train": size["cnn_train"], "n_val": size["cnn_val"],
           "budget": {"epochs": size["cnn_epochs"]}, "eval_every_n_steps": size["cnn_every"],
           "target": {"value": size["cnn_target"]}}
    arms = (
        Arm("mlp", description="MLP 784-500-500-10, dropout 0.1, exact"),
        Arm("mlp_crs", ("crs",), "the MLP with every linear layer sampled (ratio 0.9, minimal_k 10)",
            technique_kwargs={"crs": MLP_CRS}, baseline="mlp", fidelity="variant",
            fidelity_note="forward and backward sampled, i.i.d. with replacement, no uniform mixing; the official "
                          "MLP samples only the backward matmuls (Bernoulli, 10% uniform mixing)"),
        Arm("cnn", description="CNN conv32-conv64-FC1024-FC10, exact", overrides=cnn),
        Arm("cnn_crs", ("crs",), "the CNN with both convolutions sampled over input channels (ratio 0.5)",
            overrides=cnn, technique_kwargs={"crs": CNN_CRS}, baseline="cnn", fidelity="variant",
            fidelity_note="i.i.d. sampling with 1/(k p) scaling, no uniform mixing; the official CNN keeps the "
                          "top-k input channels unscaled with 10% uniform mixing"),
    )
    subset = "" if size["cnn_train"] is None else f" on {size['cnn_train']} training images"
    return Recipe(
        name="adelman2018_mnist", scale=scale, dataset="synthetic" if smoke else "mnist",
        model=mlp((64, 64), dropout=0.1) if smoke else mlp((500, 500), dropout=0.1),
        budget=Budget(epochs=size["mlp_epochs"]), target=Target("val/acc", size["mlp_target"]),
        optim={"name": "adam", "lr": 1e-3}, batch_size=32 if smoke else 50, flatten=True,
        eval_every_n_steps=4 if smoke else 500, n_val=64 if smoke else 5000, arms=arms, baseline_arm="mlp",
        paper=CARD.id,
        description=("synthetic 28x28, tiny MLP and CNN" if smoke else
                     f"MNIST 55k/5k; MLP 784-500-500-10 {size['mlp_epochs']} epochs to val acc "
                     f"{size['mlp_target']}; CNN conv32-conv64-FC1024 {size['cnn_epochs']} epochs{subset} to val "
                     f"acc {size['cnn_target']} ({size['cnn_val']} held out)"),
    )
