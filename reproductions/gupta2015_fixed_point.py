"""Gupta, Agrawal, Gopalakrishnan & Narayanan (2015), Deep Learning with Limited Numerical Precision.

Claim header (arXiv:1502.02551): networks train in 16-bit fixed point <IL, FL> for weights,
activations, gradients and updates about as accurately as in fp32 when rounding is stochastic
(round up with probability equal to the remainder, so E[round(x)] = x); with round-to-nearest
and few fractional bits training stalls, because updates smaller than half a step round to zero.
Dot products accumulate wide and are rounded once; values outside the range saturate.

Arms: `fp32` (baseline) and `fl{8,10,14}_{nearest,stochastic}` with a 16-bit word (IL = 16 - FL).
Simulation: tensors stay fp32 and every value is put on the fixed-point grid by the custom ops of
`kernels/rounding.py`; nothing runs faster, the question is accuracy. The technique does not own
the number format in Lightning's sense (no precision plugin): it touches `params` (weights kept on
the grid after every update), `gradients` (weight gradients rounded before the update) and
`architecture` (layers wrapped so activations and back-propagated errors are rounded).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.cards import Claim, PaperCard
from harness.measure import Budget, Target
from harness.models import mlp, small_cnn
from harness.recipes import Arm, Recipe
from harness.techniques import Technique, register_technique
from kernels.rounding import ROUNDINGS, round_fixed

CARD = PaperCard(
    id="gupta2015_fixed_point",
    title="Deep Learning with Limited Numerical Precision",
    authors="Suyog Gupta, Ankur Agrawal, Kailash Gopalakrishnan, Pritish Narayanan",
    venue="ICML 2015",
    year=2015,
    arxiv="1502.02551",
    family="arithmetic",
    summary="Train with 16-bit fixed point <IL,FL> for weights, activations, gradients and updates; "
            "stochastic rounding keeps small updates alive in expectation, round-to-nearest loses them.",
    datasets=("mnist", "cifar10"),
    models=("fully connected MNIST network", "small CIFAR-10 CNN"),
    claims=(
        Claim("sr16_matches_fp32", "16-bit <2,14> with stochastic rounding is about as accurate as fp32 "
              "(test accuracy, stochastic minus fp32)", "test/acc", "fl14_stochastic", 0.0,
              "Abstract; Section 4 (MNIST and CIFAR-10 curves)", tolerance=0.01, minus_arm="fp32"),
        Claim("sr16_fl10_matches_fp32", "16-bit <6,10> with stochastic rounding is about as accurate as fp32",
              "test/acc", "fl10_stochastic", 0.0, "Section 4 (MNIST curves)", tolerance=0.01, minus_arm="fp32"),
        Claim("nearest_stalls_low_fl", "round-to-nearest at low FL stalls: at <8,8> its test accuracy is below "
              "stochastic rounding's (the paper gives curves only, no number)", "test/acc", "fl8_nearest", None,
              "Section 4 (MNIST curves)", kind="ordering", arms=("fl8_nearest", "fl8_stochastic")),
    ),
    notes="Tolerances (1 point of test accuracy) are ours: the paper says 'little to no degradation'. The "
          "exact errors are not given in the text (curves only), so the stall claim has no number; its "
          "measured value (nearest minus stochastic at FL=8) should be clearly negative. Rounding points "
          "(ours, from the paper's description): each wrapped layer's output (after wide fp32 accumulation) "
          "and the network input are rounded in forward, except the logits, which reach the loss unrounded "
          "(rounded to <2,14> they saturate at +-2 and training collapses: measured 24.8% test accuracy); "
          "the errors flowing back into them are rounded in "
          "backward; weight gradients are rounded before the update and weights after it, with no fp32 "
          "master copy. Round-to-nearest breaks ties toward -inf (the paper's Eq. 1). The paper text was "
          "not readable from this environment, so its hyperparameters are not quoted: the paper-scale "
          "recipes use the architecture in PAPERS.md and our choices for the rest (plain SGD, lr 0.01 for "
          "MNIST, batch 100, epochs), with the learning rate cosine-decayed to zero at the budget in every arm "
          "(the protocol's baselines decay). cpu scale: MNIST, a smaller 784-256-256-10 network (the paper's size "
          "kept 7 arms x 3 seeds within minutes), 3 epochs on the 55k training images, plain SGD lr 0.1; "
          "one seed of all 7 arms takes about 1.5 minutes on the idle 2-core machine.",
    bibtex="@inproceedings{gupta2015deep,\n  title={Deep Learning with Limited Numerical Precision},\n  author={"
           "Gupta, Suyog and Agrawal, Ankur and Gopalakrishnan, Kailash and Narayanan, Pritish},\n  "
           "booktitle={ICML},\n  year={2015}\n}",
)

WORD_BITS = 16  # the paper's word length, Section 4
FRACTION_BITS = (8, 10, 14)  # FL sweep, Section 4 (MNIST)


# ---------------------------------------------------------------- functional form

def round_value_and_gradient(x: torch.Tensor, il: int, fl: int, rounding: str) -> torch.Tensor:
    """Round `x` to <il, fl> in forward and the gradient arriving at it in backward."""
    y = round_fixed(x, il, fl, rounding)  # straight-through op
    if y.requires_grad:
        y.register_hook(lambda grad: round_fixed(grad.contiguous().float(), il, fl, rounding))
    return y


class FixedPointLayer(nn.Module):
    """A Linear/Conv layer whose output (accumulated in fp32, rounded once) and, for the first
    layer, input live on the fixed-point grid; so do the errors flowing back through them."""

    def __init__(self, layer: nn.Module, il: int, fl: int, rounding: str, round_input: bool,
                 round_output: bool = True) -> None:
        super().__init__()
        self.layer, self.il, self.fl, self.rounding, self.round_input = layer, il, fl, rounding, round_input
        self.round_output = round_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.round_input:
            x = round_value_and_gradient(x, self.il, self.fl, self.rounding)
        y = self.layer(x)
        if self.round_output:
            return round_value_and_gradient(y, self.il, self.fl, self.rounding)
        if y.requires_grad:  # the logits feed the loss from the wide accumulator; their error is rounded
            y.register_hook(lambda grad: round_fixed(grad.contiguous().float(), self.il, self.fl, self.rounding))
        return y


def wrap_layers(model: nn.Module, il: int, fl: int, rounding: str) -> int:
    """Replace every Linear and Conv2d in `model` by a FixedPointLayer, in place; returns how many.

    The last layer's output (the logits) is not rounded: it goes to the softmax and loss from the wide
    accumulator. Rounded to <2,14> the logits saturate at +-2 and, with straight-through gradients,
    drive the network into saturation (cpu recipe, FL=14 stochastic, seed 0: 24.8% test accuracy and
    99.6% of first-layer outputs saturated; with wide logits 93.2%, fp32 93.9%).
    """
    wrapped: list[FixedPointLayer] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                wrapped.append(FixedPointLayer(child, il, fl, rounding, round_input=not wrapped))
                setattr(parent, name, wrapped[-1])
    if wrapped:
        wrapped[-1].round_output = False
    return len(wrapped)


@torch.no_grad()
def round_tensors_(tensors, il: int, fl: int, rounding: str) -> None:
    """Put each tensor on the grid in place (weights after an update, weight gradients before)."""
    for t in tensors:
        round_fixed(t, il, fl, rounding, out=t)


# ---------------------------------------------------------------- technique

@register_technique
class FixedPointTraining(Technique):
    """Simulated 16-bit fixed-point training (Gupta et al. 2015) with nearest or stochastic rounding."""

    name = "fixed_point"
    conflicts = frozenset({"bf16_autocast", "fp16_loss_scaling"})
    conflict_notes = {
        "bf16_autocast": "fixed_point simulates its own 16-bit number format on fp32 tensors; under bf16 "
                         "autocast its rounding ops would receive bf16 tensors (two number formats at once)",
        "fp16_loss_scaling": "fixed_point simulates its own 16-bit number format on fp32 tensors; under fp16 "
                             "autocast its rounding ops would receive fp16 tensors (two number formats at once)",
    }
    card = CARD
    touches = frozenset({"params", "gradients", "architecture"})
    order = 20
    description = "fixed point <il,fl> for weights, activations, gradients and updates"

    def __init__(self, il: int = 2, fl: int = 14, rounding: str = "stochastic", stats_every_n_steps: int = 10) -> None:
        if rounding not in ROUNDINGS:
            raise ValueError(f"fixed_point: rounding '{rounding}' is not one of {', '.join(ROUNDINGS)}")
        if not (isinstance(il, int) and isinstance(fl, int) and il >= 1 and fl >= 0 and il + fl <= 24):
            raise ValueError(f"fixed_point: il={il!r}, fl={fl!r}; expected il >= 1, fl >= 0, il + fl <= 24")
        self.il, self.fl, self.rounding, self.stats_every_n_steps = il, fl, rounding, stats_every_n_steps
        self._before: list[torch.Tensor] | None = None

    def params(self) -> dict:
        return {"il": self.il, "fl": self.fl, "rounding": self.rounding}

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not any(isinstance(m, FixedPointLayer) for m in pl_module.model.modules()):
            if wrap_layers(pl_module.model, self.il, self.fl, self.rounding) == 0:
                raise ValueError("fixed_point: the model has no Linear or Conv2d layer to wrap")
        round_tensors_(pl_module.model.parameters(), self.il, self.fl, self.rounding)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for p in pl_module.model.parameters() if p.grad is not None]
        round_tensors_(grads, self.il, self.fl, self.rounding)
        if trainer.global_step % self.stats_every_n_steps == 0:
            self._before = [p.detach().clone() for p in pl_module.model.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        params = list(pl_module.model.parameters())
        round_tensors_(params, self.il, self.fl, self.rounding)
        if self._before is not None:  # share of weights with a nonzero gradient whose update rounded away
            moved = [((p != b) | (p.grad == 0)).sum() for p, b in zip(params, self._before) if p.grad is not None]
            total = sum(p.numel() for p in params if p.grad is not None)
            pl_module.step_metrics[f"{self.name}/stalled_frac"] = 1.0 - float(sum(moved)) / max(total, 1)
            self._before = None


# ---------------------------------------------------------------- recipes

def _arms(scale: str) -> tuple[Arm, ...]:
    fls = (8,) if scale == "smoke" else FRACTION_BITS
    arms = [Arm("fp32", description="fp32 throughout")]
    for fl in fls:
        for rounding in ROUNDINGS:
            arms.append(Arm(f"fl{fl}_{rounding}", techniques=("fixed_point",),
                            technique_kwargs={"fixed_point": {"il": WORD_BITS - fl, "fl": fl, "rounding": rounding}},
                            description=f"16-bit fixed point <{WORD_BITS - fl},{fl}>, round to {rounding}"))
    return tuple(arms)


def recipe(scale: str) -> Recipe:
    """MNIST fully connected network; smoke: synthetic, 3 arms; cpu: smaller net, 7 arms in ~2-3 minutes."""
    smoke, paper = scale == "smoke", scale == "paper"
    common = dict(name="gupta2015_mnist_fc", scale=scale, flatten=True, schedule="cosine", arms=_arms(scale),
                  baseline_arm="fp32", paper=CARD.id,
                  target=Target("val/acc", {"smoke": 0.5, "cpu": 0.93, "paper": 0.95}[scale]))
    if smoke:
        return Recipe(dataset="synthetic", model=mlp((32,)), budget=Budget(steps=4), batch_size=32,
                      optim={"name": "sgd", "lr": 0.1}, eval_every_n_steps=2, n_val=64,
                      description="synthetic 28x28, MLP 784-32-10, 4 steps", **common)
    if paper:  # 784-1000-1000-10 (PAPERS.md: fully connected); lr, batch and epochs are our choice
        return Recipe(dataset="mnist", model=mlp((1000, 1000)), budget=Budget(epochs=100), batch_size=100,
                      optim={"name": "sgd", "lr": 0.01}, eval_every_n_steps=550,
                      description="MNIST 55k/5k, MLP 784-1000-1000-10, SGD lr 0.01, batch 100, 100 epochs", **common)
    return Recipe(dataset="mnist", model=mlp((256, 256)), budget=Budget(epochs=3), batch_size=100,
                  optim={"name": "sgd", "lr": 0.1}, eval_every_n_steps=100,
                  description="MNIST 55k/5k, MLP 784-256-256-10, SGD lr 0.1, batch 100, 3 epochs", **common)


def recipe_cifar10(scale: str = "paper") -> Recipe:
    """The CIFAR-10 setting (paper scale only): a small CNN with the same 7 arms, on the JPEG copy."""
    if scale != "paper":
        raise ValueError(f"recipe_cifar10: scale '{scale}' is not 'paper' (CIFAR-10 does not fit the cpu budget)")
    return Recipe(name="gupta2015_cifar10_cnn", scale=scale, dataset="cifar10-jpeg75", model=small_cnn((64, 64), 64),
                  budget=Budget(epochs=100), target=Target("val/acc", 0.7), optim={"name": "sgd", "lr": 0.01,
                  "momentum": 0.9}, batch_size=100, eval_every_n_steps=450, crop_pad=0, arms=_arms(scale),
                  schedule="cosine",
                  baseline_arm="fp32", paper=CARD.id,
                  description="CIFAR-10 (JPEG q75) 45k/5k, CNN conv64-conv64-FC64, SGD momentum 0.9, batch 100")
