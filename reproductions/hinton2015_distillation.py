"""Hinton, Vinyals & Dean (2015), Distilling the Knowledge in a Neural Network.

Claim header (MNIST, Section 3 of arXiv:1503.02531): a 784-1200-1200-10 teacher
with dropout and +-2 px jitter makes 67 test errors; a 784-800-800-10 student
trained on hard labels alone makes 146; the same student trained to match the
teacher's softmax at temperature 20 makes 74.

Arms: `teacher` (reference arm, trained first for each seed; at cpu scale a small CNN, see the
card notes), `hard_student` (the baseline) and `distilled` (the student with the `distillation`
technique, reading the same seed's teacher). The claims are test errors and their ordering; the
race (training-clock seconds, steps and FLOPs to the pre-registered validation target) is a side
result. The teacher's own training time is reported on its arm and is not on the distilled
student's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from harness.cards import Claim, PaperCard
from harness.measure import Budget
from harness.models import mlp, small_cnn
from harness.recipes import Arm, Recipe
from harness.techniques import Technique, register_technique
from harness.zoo import mnist_mlp

CARD = PaperCard(
    id="hinton2015_distillation",
    title="Distilling the Knowledge in a Neural Network",
    authors="Geoffrey Hinton, Oriol Vinyals, Jeff Dean",
    venue="NIPS 2014 Deep Learning Workshop (arXiv)",
    year=2015,
    arxiv="1503.02531",
    family="model",
    summary="Train a small student on a large teacher's softened softmax (temperature T, soft loss "
            "scaled by T^2), mixed with a low-weight hard-label loss.",
    datasets=("mnist",),
    models=("MLP 784-1200-1200-10 teacher (dropout, jitter)", "MLP 784-800-800-10 student"),
    claims=(
        Claim("teacher_errors", "teacher test errors", "test/errors", "teacher", 67, "Section 3", tolerance=15),
        Claim("hard_student_errors", "student trained on hard labels: test errors", "test/errors", "hard_student",
              146, "Section 3", tolerance=15),
        Claim("distilled_errors", "distilled student (T = 20): test errors", "test/errors", "distilled", 74,
              "Section 3", tolerance=15, paper_baseline=146),
        Claim("distillation_gain", "errors of the distilled student minus errors of the hard-label student",
              "test/errors", "distilled", 74 - 146, "Section 3 (74 - 146)", tolerance=20,
              minus_arm="hard_student"),
        Claim("ordering", "teacher < distilled student < hard-label student in test errors", "test/errors",
              "distilled", None, "Section 3 (67 < 74 < 146)", kind="ordering",
              arms=("teacher", "distilled", "hard_student")),
    ),
    notes="Tolerances (15 errors = 0.15 points; 20 for the difference) are ours. The teacher at cpu scale is a "
          "variant: a small CNN (conv16-conv32-FC128, +-2 px jitter, 6 epochs) instead of the paper's 784-1200-1200-10"
          " MLP with dropout (20% input, 50% hidden), jitter and the dropout paper's max-norm constraint. Measured on"
          " the 2-core machine (seed 1000, validation data): that MLP with max-norm 3.5 and jitter was at 1.38% "
          "validation error after 30 epochs (lr 0.02) and 1.20% after 60 (lr 0.05; 9 min), short of the < 0.9% a "
          "teacher needs to test distillation, and the dropout paper's MNIST nets train for hundreds of epochs, hours "
          "per seed here; the CNN makes 0.76% (58 test errors) in 49 s. The paper scale keeps the MLP teacher with "
          "max-norm. Distilling from a CNN into the MLP student tests the same claim (a student trained on a better "
          "network's soft targets beats the same student on hard labels) with a different teacher, so the teacher "
          "and the distilled student are labelled variant. The hard-label weight (0.1), the optimizer (SGD, "
          "momentum 0.9, cosine to zero) and the epochs are our choice (the paper gives none); the students' learning"
          " rates are tuned alike on validation data (`effitrain calibrate --tune`), because the T^2-scaled soft "
          "loss has a different gradient scale from cross-entropy.",
    bibtex="@article{hinton2015distilling,\n  title={Distilling the Knowledge in a Neural Network},\n"
           "  author={Hinton, Geoffrey and Vinyals, Oriol and Dean, Jeff},\n  journal={arXiv preprint "
           "arXiv:1503.02531},\n  year={2015}\n}",
)


# ---------------------------------------------------------------- functional form

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, hard_weight: float) -> torch.Tensor:
    """(1 - w) * T^2 * KL(teacher_T || student_T) + w * CE(student, labels).

    The T^2 factor keeps the soft gradients' size independent of T (Section 2).
    KL and cross-entropy against the soft targets differ by the teacher's
    entropy, a constant, so their gradients agree.
    """
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    hard = F.cross_entropy(student_logits.float(), labels)
    return (1.0 - hard_weight) * soft + hard_weight * hard


# ---------------------------------------------------------------- technique

@register_technique
class Distillation(Technique):
    """Replace the loss with the distillation loss against the seed's trained teacher."""

    name = "distillation"
    card = CARD
    touches = frozenset({"loss"})
    order = 40
    needs_arms = ("teacher",)
    description = "knowledge distillation from a trained teacher arm at temperature T"

    def __init__(self, temperature: float = 20.0, hard_weight: float = 0.1) -> None:
        if temperature <= 0 or not 0.0 <= hard_weight <= 1.0:
            raise ValueError(f"distillation: temperature={temperature} must be > 0 and "
                             f"hard_weight={hard_weight} in [0, 1]")
        self.temperature, self.hard_weight = temperature, hard_weight
        self.teacher: torch.nn.Module | None = None

    def params(self) -> dict:
        return {"temperature": self.temperature, "hard_weight": self.hard_weight}

    def setup(self, trainer, pl_module, stage: str) -> None:
        teacher = pl_module.context.models.get("teacher")
        if teacher is None:
            raise ValueError("distillation needs the 'teacher' arm trained first for this seed")
        self.teacher = teacher.to(pl_module.device).eval().requires_grad_(False)

    def loss(self, pl_module, logits, x, y, base_loss):
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return distillation_loss(logits, teacher_logits, y, self.temperature, self.hard_weight)


@torch.no_grad()
def max_norm_(model: torch.nn.Module, c: float) -> None:
    """Rescale, in place, every hidden unit's incoming weight vector to norm at most `c` (the dropout
    paper's max-norm constraint; the output layer is left free)."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for layer in linears[:-1]:
        norms = layer.weight.norm(dim=1, keepdim=True)
        layer.weight.mul_(torch.clamp(c / norms.clamp_min(1e-12), max=1.0))


@register_technique
class MaxNorm(Technique):
    """After every optimizer step, project hidden units' incoming weights onto the ball of radius c."""

    name = "max_norm"
    card = CARD
    touches = frozenset({"params"})
    order = 60
    description = "max-norm constraint on hidden units' incoming weights (the dropout paper's regulariser)"

    def __init__(self, c: float = 3.5) -> None:
        if not c > 0:
            raise ValueError(f"max_norm: c={c} must be positive")
        self.c = c

    def params(self) -> dict:
        return {"c": self.c}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        max_norm_(pl_module.model, self.c)


# ---------------------------------------------------------------- recipe

@dataclass(frozen=True)
class flat_cnn:  # noqa: N801  (a model factory, like harness.models')
    """`harness.models.small_cnn` reading flattened images: the teacher sees the students' flat batches when it
    scores them for distillation, so it restores the image shape first."""

    widths: tuple[int, int] = (16, 32)
    hidden: int = 128

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Unflatten(1, tuple(input_shape)),
                             small_cnn(self.widths, self.hidden)(input_shape, num_classes))


# Epochs per scale: (teacher, student). cpu: full MNIST (55k train, 5k validation). The students train 30 epochs
# (issue 10: at least 30); the teacher is the small CNN, which reaches 0.76% validation error in 6 epochs with
# +-2 px jitter (58 test errors; seed 1000, 49 s of training on the 2-core machine). The paper's MLP teacher
# (1200-1200, dropout, jitter, max-norm 3.5) was still at 1.2% validation error after 60 epochs (9 min; lr 0.05),
# and getting it under 0.9% would take hours per seed here (see the card notes).
_EPOCHS = {"smoke": (1, 1), "cpu": (6, 30), "paper": (100, 60)}


def recipe(scale: str) -> Recipe:
    base = mnist_mlp(scale)
    teacher_epochs, student_epochs = _EPOCHS[scale]
    if scale == "paper":
        teacher = Arm("teacher", description="784-1200-1200-10, dropout 0.2/0.5, +-2 px jitter, max-norm 3.5",
                      reference=True, techniques=("max_norm",), technique_kwargs={"max_norm": {"c": 3.5}},
                      overrides={"model": mlp((1200, 1200), 0.5, 0.2), "crop_pad": 2,
                                 "budget": {"epochs": teacher_epochs}})
    else:
        model = flat_cnn((4, 8), 16) if scale == "smoke" else flat_cnn((16, 32), 128)
        teacher = Arm("teacher", description=f"CNN conv{model.widths[0]}-conv{model.widths[1]}-FC{model.hidden}, "
                                             "+-2 px jitter (the paper's is an MLP)",
                      reference=True, fidelity="variant",
                      fidelity_note="a small CNN teacher instead of the paper's 784-1200-1200-10 dropout MLP, which "
                                    "needs far longer training than the cpu scale allows to make fewer than 90 errors",
                      overrides={"model": model, "crop_pad": 2, "budget": {"epochs": teacher_epochs}})
    arms = (
        teacher,
        Arm("hard_student", description="784-800-800-10 on hard labels, no regularisation"),
        Arm("distilled", techniques=("distillation",), description="the student on the teacher's T = 20 softmax",
            technique_kwargs={"distillation": {"temperature": 20.0, "hard_weight": 0.1}},
            **({} if scale == "paper" else {"fidelity": "variant",
                                            "fidelity_note": "distilled from the small CNN teacher, not the paper's "
                                                             "MLP"})),
    )
    return replace(base, arms=arms, baseline_arm="hard_student", paper=CARD.id, budget=Budget(epochs=student_epochs),
                   description=base.description + f", {student_epochs} epochs; teacher: "
                               + teacher.description.split(",")[0])
