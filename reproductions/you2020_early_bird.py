"""You, Li, Xu, Fu, Wang, Chen, Baraniuk, Wang & Lin (2020), Drawing Early-Bird Tickets: Toward More
Efficient Training of Deep Networks.

Claim header (ICLR 2020, arXiv:1909.11957; official code github.com/GATECH-EIC/Early-Bird-Tickets):
train with network slimming (an L1 subgradient on every BatchNorm scale); at each epoch take the
global channel mask that prunes the fraction p of smallest |scale|; once the newest mask is within a
normalized Hamming distance of 0.1 of each of the four before it, the ticket has emerged: prune to it
and train only the smaller network. VGG16 on CIFAR-100, retrained tickets: 71.81 / 72.17 / 71.28% at
p = 10 / 30 / 50%; ResNet-18 on ImageNet at p = 10%: 69.84% (unpruned 69.57%) with 1177 instead of
1259 PFLOPs of training.

Arms: `baseline` (the same network, no slimming, the whole budget dense) and `early_bird` (slimming
until the ticket emerges, then the pruned ticket for the rest of the same budget). Both train the same
epochs on the same seeds, so the table compares accuracy and counted FLOPs at equal budget; the
ledger's rows show the epoch the ticket was drawn (parameters and FLOPs per epoch fall there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from harness.cards import Claim, PaperCard
from harness.measure import Budget, Target
from harness.recipes import Arm, Recipe
from harness.surgery import ChannelGroup, Slot, channel_groups, select_channels
from harness.techniques import Technique, register_technique

_CODE = "official code (github.com/GATECH-EIC/Early-Bird-Tickets, main.py and models/vgg.py)"
_PAPER_TABLE = "Table 2 (VGG16, CIFAR-100, retrained EB tickets)"

CARD = PaperCard(
    id="you2020_early_bird",
    title="Drawing Early-Bird Tickets: Toward More Efficient Training of Deep Networks",
    authors="Haoran You, Chaojian Li, Pengfei Xu, Yonggan Fu, Yue Wang, Xiaohan Chen, Richard G. Baraniuk, "
            "Zhangyang Wang, Yingyan Lin",
    venue="ICLR 2020", year=2020, arxiv="1909.11957", family="model",
    summary="Network slimming (L1 on BatchNorm scales) while a global channel mask at pruning ratio p is taken "
            "every epoch; when the newest mask stays within a normalized Hamming distance of 0.1 of the previous "
            "four, the early-bird ticket is drawn: the network is pruned to it and only the ticket trains on.",
    datasets=("cifar10", "cifar100", "imagenet"), models=("VGG16", "PreResNet-101", "ResNet-18", "ResNet-50"),
    claims=(
        Claim("vgg16_cifar100_p30", "VGG16 on CIFAR-100: the retrained EB ticket at p = 30% reaches 72.17% test "
              "accuracy", "test/acc", "early_bird", 0.7217, _PAPER_TABLE, tolerance=0.01, scales=("paper",)),
        Claim("vgg16_cifar100_p50", "VGG16 on CIFAR-100: the retrained EB ticket at p = 50% reaches 71.28%",
              "test/acc", "early_bird_p50", 0.7128, _PAPER_TABLE, tolerance=0.01, scales=("paper",)),
        Claim("vgg16_cifar100_p10", "VGG16 on CIFAR-100: the retrained EB ticket at p = 10% reaches 71.81%",
              "test/acc", "early_bird_p10", 0.7181, _PAPER_TABLE, tolerance=0.01, scales=("paper",)),
        Claim("ticket_early", "the ticket emerges early: under half of the run's steps are spent searching (the "
              "half is ours; the paper says 'at the very early training stage')", "early_bird/searching",
              "early_bird", 0.5, "Abstract; Section 3", kind="at_most"),
        Claim("flops_saved", "training at equal epochs spends fewer FLOPs than the dense baseline (at least 1% "
              "saved; the floor is ours)", "cost/flops_saved", "early_bird", 0.01, "Abstract (energy savings)",
              kind="at_least", minus_arm="baseline", scales=("cpu",)),
        Claim("accuracy_kept", "test accuracy within 1 point of the dense baseline trained for the same epochs, or "
              "better (the bound is ours; the paper's tickets match or beat their unpruned networks)", "test/acc",
              "early_bird", -0.01, _PAPER_TABLE, kind="at_least", minus_arm="baseline"),
        Claim("resnet18_imagenet", "ResNet-18 on ImageNet, p = 10%: 69.84% top-1 (unpruned 69.57%) with 1177 "
              "instead of 1259 PFLOPs of training", "test/acc", "early_bird", 0.6984, "Table 4", tolerance=0.005,
              paper_baseline=0.6957, scales=()),
    ),
    notes="From the official code: the slimming subgradient s * sign(gamma), s = 1e-4, is added to every BatchNorm "
          "scale's gradient after backward (main.py, updateBN); the mask keeps the channels whose |gamma| is above "
          "the value at index floor(p * n) of all n scales sorted (main.py, EarlyBird.pruning); the masks of the "
          "last five checks are kept and the ticket is drawn when the newest differs from each of the other four "
          "in at most 10% of the channels (EarlyBird.early_bird_emerge); a check runs at the start of every epoch, "
          "the first on the initial weights; VGG's BatchNorm scales start at 0.5 (models/vgg.py); SGD momentum 0.9, "
          "weight decay 1e-4, 160 epochs, lr 0.1 x0.1 at epochs 80 and 120. Where we chose. (1) One run: the ticket "
          "is pruned in place (weights and momentum kept, harness.surgery) and trains on for the rest of the same "
          "budget under the same schedule; the official code saves the ticket, then retrains it in a second run "
          "(from fresh weights at its latest commit) for the full schedule, so its search epochs come on top. "
          "The arm is therefore a variant, compared with a baseline of the same total epochs. (2) At least one "
          "channel stays per layer (the official VGG pruning would leave an empty layer). (3) Schedules: the "
          "protocol's baselines decay to zero at the budget, so both arms use cosine (ours). (4) cpu scale: the "
          "official CIFAR VGG16 layout at an eighth of its widths (8 to 64 channels) on 10,240 CIFAR-10 JPEG "
          "images for 16 epochs at p = 30%; the first check, on the initial scales (all 0.5), keeps no channel "
          "(as in the official code), so no ticket can be drawn before epoch 5; "
          "the global average pool replaces AvgPool2d(2), the same operation on "
          "the 2x2 map a 32x32 image leaves. Paper scale: the full VGG16 on CIFAR-100, batch 256 (ours; the "
          "official default is 64), 160 epochs.",
    bibtex="@inproceedings{you2020drawing,\n  title={Drawing Early-Bird Tickets: Toward More Efficient Training of "
           "Deep Networks},\n  author={You, Haoran and Li, Chaojian and Xu, Pengfei and Fu, Yonggan and Wang, Yue and "
           "Chen, Xiaohan and Baraniuk, Richard G. and Wang, Zhangyang and Lin, Yingyan},\n  booktitle={ICLR},\n"
           "  year={2020}\n}",
)

# The official CIFAR VGG16 layout (models/vgg.py, defaultcfg[16]): channels per conv, "M" a 2x2 max-pool.
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


# ---------------------------------------------------------------- model

class SlimVGG(nn.Module):
    """VGG for CIFAR as network slimming uses it: 3x3 conv (no bias), BatchNorm, ReLU per entry of `cfg`, 2x2
    max-pools, a global average pool and one linear classifier. BatchNorm scales start at 0.5."""

    def __init__(self, cfg: tuple, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():  # models/vgg.py's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@dataclass(frozen=True)
class slim_vgg:  # noqa: N801  (a factory, like harness.models')
    """Factory for `SlimVGG`: the VGG16 layout with every width multiplied by `width` (at least 1 channel)."""

    width: float = 1.0
    cfg: tuple = VGG16

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        cfg = tuple(v if v == "M" else max(1, round(v * self.width)) for v in self.cfg)
        return SlimVGG(cfg, input_shape[0], num_classes)


def vgg_groups(model: SlimVGG) -> list[ChannelGroup]:
    """One group per conv: its output channels and BatchNorm, read by the next conv or by the classifier."""
    layers = list(model.features)
    convs = [(m, layers[i + 1]) for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    groups = []
    for k, (conv, bn) in enumerate(convs):
        group = ChannelGroup(f"conv{k + 1}", weights=[Slot(conv, "weight", 0)],
                             others=[Slot(bn, n, 0) for n in ("weight", "bias", "running_mean", "running_var")])
        reader = convs[k + 1][0] if k + 1 < len(convs) else model.classifier
        group.weights.append(Slot(reader, "weight", 1))
        groups.append(group)
    return groups


def slimmable_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups whose channels carry BatchNorm scales (SlimVGG's, or harness.surgery's for the shared
    models); raises ValueError when there are none."""
    groups = vgg_groups(model) if isinstance(model, SlimVGG) else channel_groups(model)
    groups = [g for g in groups if _scales(g)]
    if not groups:
        raise ValueError(f"early_bird needs BatchNorm scales to slim; {type(model).__name__} has none")
    return groups


def _scales(group: ChannelGroup) -> list[torch.Tensor]:
    return [s.tensor for s in group.others
            if s.name == "weight" and isinstance(s.module, nn.modules.batchnorm._BatchNorm)]


# ---------------------------------------------------------------- functional form

def slimming_subgradient(model: nn.Module, s: float) -> None:
    """Add s * sign(gamma) to the gradient of every BatchNorm scale (the L1 penalty's subgradient)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and m.weight.grad is not None:
            m.weight.grad.add_(torch.sign(m.weight.detach()), alpha=s)


def channel_scores(groups: list[ChannelGroup]) -> list[torch.Tensor]:
    """Per group, each channel's |gamma| (the largest over the group's BatchNorm layers)."""
    return [torch.stack([t.detach().abs().float() for t in _scales(g)]).amax(0).cpu() for g in groups]


def global_mask(scores: list[torch.Tensor], ratio: float) -> torch.Tensor:
    """True for the channels kept: |gamma| above the value at index floor(ratio * n) of all n scores sorted."""
    flat = torch.cat(scores)
    threshold = flat.sort().values[min(int(flat.numel() * ratio), flat.numel() - 1)]
    return flat > threshold


def mask_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The normalized Hamming distance: the share of channels on which two masks differ."""
    return int((a != b).sum()) / a.numel()


def emerged(masks: list[torch.Tensor], keep: int, distance: float) -> tuple[bool, list[float]]:
    """Whether the newest of the last `keep` masks is within `distance` of each of the others (only once there
    are `keep` of them), and those distances."""
    if len(masks) < keep:
        return False, []
    dists = [mask_distance(masks[-1], m) for m in masks[-keep:-1]]
    return all(d <= distance for d in dists), dists


def prune_to_mask(groups: list[ChannelGroup], mask: torch.Tensor,
                  optimizer: torch.optim.Optimizer | None = None) -> dict[str, tuple[int, int]]:
    """Keep each group's channels the global mask keeps (its best-scored one when it keeps none), cutting the
    optimizer state with them. Returns {group: (width before, width after)}."""
    scores = channel_scores(groups)
    widths, start = {}, 0
    for group, score in zip(groups, scores, strict=True):
        keep = torch.nonzero(mask[start:start + score.numel()]).flatten()
        start += score.numel()
        if keep.numel() == 0:
            keep = score.argmax().reshape(1)
        before = group.width
        if keep.numel() < before:
            select_channels(group, keep, optimizer)
        widths[group.name] = (before, group.width)
    return widths


# ---------------------------------------------------------------- technique

@register_technique
class EarlyBird(Technique):
    """Network slimming with a mask check at the start of every epoch; the ticket is pruned to when it emerges."""

    name = "early_bird"
    card = CARD
    touches = frozenset({"params", "architecture"})
    order = 46
    conflicts = frozenset({"prunetrain", "dsd", "crs", "fixed_point", "gradient_approximation"})
    conflict_notes = {"prunetrain": "both remove channels in place, by different rules",
                      "dsd": "DSD's masks cover weights whose shapes the ticket changes",
                      **{n: "it replaces the conv layers whose channels the ticket cuts in place"
                         for n in ("crs", "fixed_point", "gradient_approximation")}}
    description = "network slimming until the channel mask settles (early-bird ticket), then the pruned ticket"

    def __init__(self, ratio: float = 0.3, s: float = 1e-4, distance: float = 0.1, keep: int = 5) -> None:
        if not 0 < ratio < 1:
            raise ValueError(f"early_bird ratio={ratio!r} must be in (0, 1)")
        if not s >= 0:
            raise ValueError(f"early_bird s={s!r} must be non-negative")
        if not 0 <= distance < 1:
            raise ValueError(f"early_bird distance={distance!r} must be in [0, 1)")
        if not isinstance(keep, int) or keep < 2:
            raise ValueError(f"early_bird keep={keep!r} must be an integer of at least 2")
        self.ratio, self.s, self.distance, self.keep = ratio, s, distance, keep
        self.masks: list[torch.Tensor] = []
        self.checked = -1  # the last epoch whose start was checked (a resumed epoch is not checked twice)
        self.ticket_epoch: int | None = None
        self.widths: dict[str, tuple[int, int]] = {}

    def params(self) -> dict:
        return {"ratio": self.ratio, "s": self.s, "distance": self.distance, "keep": self.keep}

    @staticmethod
    def unsupported(model: nn.Module) -> str | None:
        """Why this technique cannot run on `model` (no BatchNorm scales to slim), else None."""
        try:
            slimmable_groups(model)
        except ValueError as exc:
            return str(exc)
        return None

    def setup(self, trainer, pl_module, stage: str) -> None:
        slimmable_groups(pl_module.model)  # refuse a model without BatchNorm scales before training starts
        if trainer.world_size > 1:  # DDP's gradient buckets are sized once; the ticket changes the shapes
            raise ValueError("early_bird prunes the model in place, which data-parallel training (devices > 1) "
                             "cannot follow; run it on one device")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if self.ticket_epoch is not None or epoch <= self.checked:
            return
        self.checked = epoch
        groups = slimmable_groups(pl_module.model)
        self.masks = [*self.masks, global_mask(channel_scores(groups), self.ratio)][-self.keep:]
        found, _ = emerged(self.masks, self.keep, self.distance)
        if found:
            self.widths = prune_to_mask(groups, self.masks[-1], trainer.optimizers[0])
            self.ticket_epoch, self.masks = epoch, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.ticket_epoch is None and self.s:
            slimming_subgradient(pl_module.model, self.s)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.step_metrics[f"{self.name}/searching"] = float(self.ticket_epoch is None)

    def state_dict(self) -> dict:
        return {"masks": self.masks, "checked": self.checked, "ticket_epoch": self.ticket_epoch,
                "widths": self.widths}

    def load_state_dict(self, state: dict) -> None:
        self.masks, self.checked = list(state["masks"]), state["checked"]
        self.ticket_epoch, self.widths = state["ticket_epoch"], dict(state["widths"])


# ---------------------------------------------------------------- recipe

def recipe(scale: str) -> Recipe:
    """Dense VGG against the early-bird ticket at equal epochs: SGD momentum 0.9, weight decay 1e-4, cosine."""
    if scale == "smoke":
        data = dict(dataset="synthetic", model=slim_vgg(0.125), budget=Budget(epochs=3), batch_size=32,
                    n_train=128, eval_every_n_steps=2, n_val=64, target=Target("val/acc", 0.3),
                    description="synthetic 28x28, VGG16 at 1/8 width, 3 epochs of 4 steps")
        lr, ratios, extra = 0.05, (0.3,), {"keep": 2, "distance": 0.5}
    elif scale == "cpu":
        # 10,240 images = 80 steps per epoch, 16 epochs. A training step at batch 128 took 68 ms for VGG16 at 1/8
        # width and 170 ms at 1/4 width on the 2-core machine (2026-12-03; ResNet-8 width 16: 145 ms): about 2 min
        # per run at 1/8. The first check keeps no channel (every scale starts at 0.5), so the earliest ticket is
        # drawn at the start of epoch 5: 16 epochs leave room for one under half the run.
        data = dict(dataset="cifar10-jpeg75", model=slim_vgg(0.125), budget=Budget(epochs=16), batch_size=128,
                    n_train=10240, eval_every_n_steps=40, n_val=2000, crop_pad=4, flip=True,
                    target=Target("val/acc", 0.5),
                    description="cifar10-jpeg75, 10k subset, VGG16 at 1/8 width, 16 epochs, crop+flip")
        lr, ratios, extra = 0.1, (0.3,), {}
    else:
        data = dict(dataset="cifar100", model=slim_vgg(1.0), budget=Budget(epochs=160), batch_size=256,
                    eval_every_n_steps=196, n_val=5000, crop_pad=4, flip=True, target=Target("val/acc", 0.7),
                    description="CIFAR-100, VGG16, 160 epochs, batch 256, crop+flip")
        lr, ratios, extra = 0.1, (0.3, 0.5, 0.1), {}
    note = ("the ticket trains on in the same run and schedule, with the weights it was drawn with (the official "
            "code retrains it in a second run); at least one channel per layer"
            + ("; smoke: two masks within 0.5 draw the ticket, so that three epochs of four steps draw one"
               if extra else ""))
    arms = [Arm("baseline", description="the same network and schedule, dense, without slimming")]
    for p in ratios:
        arms.append(Arm("early_bird" if p == 0.3 else f"early_bird_p{round(p * 100)}", techniques=("early_bird",),
                        technique_kwargs={"early_bird": {"ratio": p, **extra}},
                        description=f"slimming (s = 1e-4) until the mask at p = {p:.0%} settles, then the ticket",
                        fidelity="variant", fidelity_note=note))
    return Recipe(name="you2020_vgg", scale=scale, arms=tuple(arms), baseline_arm="baseline", paper=CARD.id,
                  optim={"name": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 1e-4}, schedule="cosine", **data)
