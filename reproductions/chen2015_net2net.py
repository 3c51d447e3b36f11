"""Chen, Goodfellow & Shlens (2016), Net2Net: Accelerating Learning via Knowledge Transfer.

Claim header (ICLR 2016, arXiv:1511.05641): a trained network is grown into a larger one by
function-preserving transforms, so that the larger network starts from what the smaller one learnt
instead of from scratch. Net2WiderNet replicates units (a random choice of existing ones) and divides
the weights that read each copy by the number of copies; Net2DeeperNet inserts layers initialised to
the identity. The grown network converges faster than the same network trained from random
initialisation, and than the smaller network widened with random units.

Arms: `baseline` (the large network from random initialisation for the whole budget), `net2wider`
(the network at half width for the first share of the budget, then widened by Net2WiderNet and
trained on) and `random_pad` (the same schedule, the new units random). The small network's
training is the teacher's: it is part of the grown arms' runs, so the ledger charges its steps and
FLOPs to them, and every arm trains the same epochs.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.cards import Claim, PaperCard
from harness.measure import Budget, Target
from harness.models import ResNetCifar, resnet_cifar
from harness.recipes import Arm, Recipe
from harness.surgery import ChannelGroup, channel_groups, resize_, select_channels, sync_attributes
from harness.techniques import Technique, register_technique

CARD = PaperCard(
    id="chen2015_net2net",
    title="Net2Net: Accelerating Learning via Knowledge Transfer",
    authors="Tianqi Chen, Ian Goodfellow, Jonathon Shlens",
    venue="ICLR 2016", year=2016, arxiv="1511.05641", family="model",
    summary="Function-preserving growth: Net2WiderNet replicates randomly chosen units and divides their outgoing "
            "weights by the replication count (plus a little noise to break the symmetry); Net2DeeperNet inserts "
            "identity-initialised layers. The grown network starts from the small one's knowledge.",
    datasets=("imagenet",), models=("Inception-BN",),
    claims=(
        Claim("faster_than_scratch", "the widened network reaches the target in fewer FLOPs than the same network "
              "from random initialisation, the small network's training included", "speedup", "net2wider",
              1.0, "Section 4 (Figures 4 and 5: faster convergence than random initialisation)", kind="at_least",
              cost="flops"),
        Claim("better_than_random_pad", "function-preserving widening ends more accurate than widening with random "
              "units, at equal budget", "test/acc", "net2wider", 0.0, "Section 4.1 (random pad baseline)",
              kind="at_least", minus_arm="random_pad"),
        Claim("imagenet_inception", "Inception-BN on ImageNet: faster convergence and a new state of the art "
              "(exact figures n.f.)", "test/acc", "net2wider", None, "Section 4", scales=()),
    ),
    notes="Where we chose. (1) Net2WiderNet on every channel group of a CIFAR ResNet (harness.surgery's groups: a "
          "residual stage's shared channels are widened by one mapping, so the shortcuts stay consistent): the "
          "writers' output channels, biases and BatchNorm parameters and running statistics are copied along the "
          "mapping, the readers' input channels divided by the copy count; outputs are equal before and after without"
          " noise. (2) Noise: N(0, (0.01 * std)^2) added to the readers' copied input channels, std that layer's "
          "weight std (the paper adds noise of unstated size). (3) The optimizer state of every widened tensor "
          "restarts at zero, the old units' momentum included (ours). (4) Net2DeeperNet for ResNets is a residual "
          "block whose last BatchNorm has scale and shift zero: the block adds nothing, so it is exactly the identity"
          " after a ReLU (an identity conv followed by BatchNorm is the identity only in eval mode). It is tested, "
          "not run in a recipe: a block added mid-run brings parameters the optimizer and its schedule do not hold. "
          "(5) One run per arm: the small network (half width) trains for the first 30% of the steps, then grows; the"
          " paper trains the teacher to convergence first. The baseline trains the large network for the same total "
          "epochs, so the small network's cost is charged to the grown arms. (6) cpu scale: ResNet-8 grown from width"
          " 8 to 16 on 10,240 CIFAR-10 JPEG images, 8 epochs; SGD lr 0.1, momentum 0.9, weight decay 5e-4, batch 128 "
          "and cosine decay are ours; the paper's scale is Inception-BN on ImageNet, which needs hours of GPU time "
          "per run (a torchvision ResNet has no channel groups here yet).",
    bibtex="@inproceedings{chen2016net2net,\n  title={Net2Net: Accelerating Learning via Knowledge Transfer},\n"
           "  author={Chen, Tianqi and Goodfellow, Ian and Shlens, Jonathon},\n  booktitle={ICLR},\n  year={2016}\n}",
)


# ---------------------------------------------------------------- functional form

def widen(group: ChannelGroup, width: int, generator: torch.Generator, noise: float = 0.0,
          random_pad: bool = False, optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
    """Net2WiderNet on one channel group: channels 0..old-1 stay, each new one copies a random old one (its
    writers' rows and statistics), and every reader's input channels are divided by their copy counts; with
    `random_pad` the new channels get fresh random weights instead. Returns the mapping (new -> old channel)."""
    old = group.width
    if width < old:
        raise ValueError(f"widen: width {width} is below the group's {old} channels")
    mapping = torch.cat([torch.arange(old), torch.randint(0, old, (width - old,), generator=generator)])
    counts = torch.bincount(mapping, minlength=old).to(torch.float32)
    for slot in [*group.weights, *group.others]:
        tensor = slot.tensor
        grown = tensor.detach().index_select(slot.dim, slot.index(mapping)).clone()
        reader = slot in group.weights and slot.dim == 1
        if random_pad and width > old:  # new channels as a fresh layer would have them
            fresh = slot.index(torch.arange(old, width))
            part = grown.index_select(slot.dim, fresh)
            if slot in group.weights:  # a writer's rows or a reader's columns: random at the layer's weight scale
                std = float(tensor.detach().std()) if tensor.numel() > 1 else 0.0
                part = torch.randn(part.shape, generator=generator).to(grown) * std
            else:  # BatchNorm scale and running variance 1, shifts, biases and running means 0
                part = torch.full_like(part, 1.0 if slot.name in ("weight", "running_var") else 0.0)
            grown.index_copy_(slot.dim, fresh, part)
        elif reader:
            share = counts[mapping].repeat_interleave(slot.block).to(grown)
            view = [1] * grown.dim()
            view[slot.dim] = -1
            grown = grown / share.view(view)
            if noise and width > old:
                new = slot.index(torch.arange(old, width))
                std = float(tensor.detach().std()) if tensor.numel() > 1 else 0.0
                extra = torch.randn(grown.index_select(slot.dim, new).shape, generator=generator) * (noise * std)
                grown.index_add_(slot.dim, new, extra.to(grown))
        resize_(tensor, grown.contiguous(), optimizer)
    for module in {id(s.module): s.module for s in [*group.weights, *group.others]}.values():
        sync_attributes(module)
    return mapping


def narrow_(model: nn.Module, share: float) -> dict[str, int]:
    """Make `model` the same network at `share` of its widths, freshly initialised; returns the full widths."""
    full = {}
    for group in channel_groups(model):
        full[group.name] = group.width
        select_channels(group, torch.arange(max(1, round(share * group.width))))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            m.reset_parameters()
    return full


def identity_block(model: ResNetCifar, after: int) -> None:
    """Net2DeeperNet for a CIFAR ResNet: insert, after block `after`, a residual block whose last BatchNorm has
    scale and shift zero, so it outputs relu(x + 0) = x for its (non-negative, post-ReLU) input."""
    from harness.models import _Block

    width = model.blocks[after].conv2.out_channels
    block = _Block(width, width, 1)
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    blocks = list(model.blocks)
    model.blocks = nn.Sequential(*blocks[:after + 1], block, *blocks[after + 1:])


# ---------------------------------------------------------------- technique

@register_technique
class Net2Wider(Technique):
    """Train at a share of the widths, then widen to the full network by Net2WiderNet (or random padding)."""

    name = "net2wider"
    card = CARD
    touches = frozenset({"architecture"})
    order = 47
    conflicts = frozenset({"prunetrain", "dsd", "early_bird", "crs", "fixed_point", "gradient_approximation"})
    conflict_notes = {"prunetrain": "both change the channel widths in place", "dsd": "DSD's masks cover weights "
                      "whose shapes the widening changes", "early_bird": "both change the channel widths in place",
                      **{n: "it replaces the conv layers whose channels the widening grows in place"
                         for n in ("crs", "fixed_point", "gradient_approximation")}}
    description = "Net2WiderNet: a narrow network trained first, widened function-preservingly mid-run"

    def __init__(self, share: float = 0.5, grow_at: float = 0.3, noise: float = 0.01,
                 random_pad: bool = False) -> None:
        if not 0 < share < 1:
            raise ValueError(f"net2wider share={share!r} must be in (0, 1) (the small network's share of widths)")
        if not 0 < grow_at < 1:
            raise ValueError(f"net2wider grow_at={grow_at!r} must be in (0, 1) (a share of the run's steps)")
        if not noise >= 0:
            raise ValueError(f"net2wider noise={noise!r} must be non-negative")
        self.share, self.grow_at, self.noise, self.random_pad = share, grow_at, noise, bool(random_pad)
        self.full: dict[str, int] = {}
        self.grown = False
        self.seed = 0

    def params(self) -> dict:
        return {"share": self.share, "grow_at": self.grow_at, "noise": self.noise, "random_pad": self.random_pad}

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size > 1:  # DDP's gradient buckets are sized once; widening changes the shapes
            raise ValueError("net2wider grows the model in place, which data-parallel training (devices > 1) "
                             "cannot follow; run it on one device")
        self.seed = int(torch.randint(0, 2**31 - 1, ()))  # after the run's seed: the same on a resumed run
        self.full = narrow_(pl_module.model, self.share)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.grown or trainer.global_step < round(self.grow_at * pl_module.total_steps):
            return
        generator = torch.Generator().manual_seed(self.seed)
        for group in channel_groups(pl_module.model):
            widen(group, self.full[group.name], generator, self.noise, self.random_pad, trainer.optimizers[0])
        self.grown = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.step_metrics[f"{self.name}/small"] = float(not self.grown)

    def state_dict(self) -> dict:
        return {"grown": self.grown, "full": self.full, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.grown, self.full, self.seed = state["grown"], dict(state["full"]), int(state["seed"])


# ---------------------------------------------------------------- recipe

def recipe(scale: str) -> Recipe:
    """The large network from scratch against the same network grown from its half-width self."""
    if scale == "smoke":
        data = dict(dataset="synthetic", model=resnet_cifar(8, 8), budget=Budget(epochs=2), batch_size=32,
                    n_train=128, eval_every_n_steps=2, n_val=64, target=Target("val/acc", 0.3),
                    description="synthetic 28x28, ResNet-8 width 8 (grown from 4), 2 epochs of 4 steps")
    elif scale == "cpu":
        # 10,240 images = 80 steps per epoch, 8 epochs; ResNet-8 width 16 steps took 174 ms and width 8 steps
        # 86 ms on the 2-core machine (2026-12-02): about 2 min per run.
        data = dict(dataset="cifar10-jpeg75", model=resnet_cifar(8, 16), budget=Budget(epochs=8), batch_size=128,
                    n_train=10240, eval_every_n_steps=40, n_val=2000, crop_pad=4, flip=True,
                    target=Target("val/acc", 0.5),
                    description="cifar10-jpeg75, 10k subset, ResNet-8 width 16 (grown from 8), 8 epochs, crop+flip")
    else:
        data = dict(dataset="cifar10", model=resnet_cifar(20, 16), budget=Budget(epochs=160), batch_size=128,
                    eval_every_n_steps=390, n_val=5000, crop_pad=4, flip=True, target=Target("val/acc", 0.9),
                    description="CIFAR-10, ResNet-20 grown from width 8 to 16, 160 epochs (ours: the paper's "
                                "Inception-BN on ImageNet has no channel groups here)")
    note = "one run: the small network trains for the first 30% of the steps (the paper: a converged teacher)"
    arms = (Arm("baseline", description="the large network from random initialisation"),
            Arm("net2wider", techniques=("net2wider",), description="half width for 30% of the steps, then "
                "Net2WiderNet to full width", fidelity="variant", fidelity_note=note),
            Arm("random_pad", techniques=("net2wider",), technique_kwargs={"net2wider": {"random_pad": True}},
                description="half width for 30% of the steps, then widened with random units", baseline="baseline",
                fidelity="variant", fidelity_note=note + "; the new units random (the paper's random-pad control)"))
    return Recipe(name="chen2015_resnet", scale=scale, arms=arms, baseline_arm="baseline", paper=CARD.id,
                  optim={"name": "sgd", "lr": 0.1 if scale != "smoke" else 0.05, "momentum": 0.9,
                         "weight_decay": 5e-4}, schedule="cosine", **data)
