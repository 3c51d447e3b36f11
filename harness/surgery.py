"""Model surgery in place: remove or add channels while training, keeping the optimizer in step.

Techniques that change a network's structure mid-run (PruneTrain's reconfiguration, an Early-Bird
ticket, a Net2Net widening) change each parameter's `.data` in place instead of building a new
module: the `Parameter` objects stay the same, so the optimizer, its learning-rate schedule and
Lightning's references to them stay valid, and the optimizer's per-parameter state (SGD momentum,
Adam moments) is cut or padded along the same dimension. The counted FLOPs follow by themselves
(`measure.Ledger` recounts when parameter shapes change), and a checkpoint of the smaller model
resumes through `match_shapes`, which gives a freshly built model the saved shapes before the
weights load.

A `ChannelGroup` is one set of channels that must be removed together: the output channels of the
layers that write a tensor and the input channels of the layers that read it (a residual stage's
shared channels, or a block's inner channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ChannelGroup", "Slot", "channel_groups", "match_shapes", "resize_", "resnet_cifar_groups",
           "select_channels", "small_cnn_groups", "sync_attributes"]


@dataclass(frozen=True)
class Slot:
    """One tensor of one module indexed by the group's channels along `dim`; with `block` > 1, channel c owns
    the `block` consecutive entries c * block ... (a linear layer reading a flattened C x H x W map)."""

    module: nn.Module
    name: str  # a parameter or buffer of `module`: weight, bias, running_mean, running_var
    dim: int
    block: int = 1

    @property
    def tensor(self) -> torch.Tensor:
        return getattr(self.module, self.name)

    @property
    def channels(self) -> int:
        return self.tensor.shape[self.dim] // self.block

    def index(self, keep: torch.Tensor) -> torch.Tensor:
        """The entries along `dim` that the channels `keep` own."""
        keep = keep.to(self.tensor.device)
        if self.block == 1:
            return keep
        return (keep[:, None] * self.block + torch.arange(self.block, device=keep.device)).flatten()


@dataclass
class ChannelGroup:
    """Channels removed together. `weights` are the conv/linear weight slots whose magnitudes decide
    whether a channel still carries anything (writers along dim 0, readers along dim 1); `others` follow
    them (biases, BatchNorm parameters and running statistics)."""

    name: str
    weights: list[Slot] = field(default_factory=list)
    others: list[Slot] = field(default_factory=list)

    @property
    def width(self) -> int:
        return self.weights[0].channels

    def channel_max_abs(self) -> torch.Tensor:
        """Per channel, the largest |w| over every weight slot of the group (a channel is dead when all are 0)."""
        per_slot = [s.tensor.detach().abs().transpose(0, s.dim).reshape(self.width, -1).amax(1) for s in self.weights]
        return torch.stack(per_slot).amax(0)


def resize_(tensor: torch.Tensor, data: torch.Tensor, optimizer: torch.optim.Optimizer | None = None,
            dim: int | None = None, index: torch.Tensor | None = None) -> None:
    """Give a parameter new data of another shape in place; cut its optimizer state the same way.

    With `dim` and `index`, state tensors shaped like the old parameter are `index_select`ed along `dim`;
    without, they are reset to zeros of the new shape (a grown parameter has no history).
    """
    old_shape = tensor.shape
    if isinstance(tensor, nn.Parameter) and optimizer is not None and tensor in optimizer.state:
        state = optimizer.state[tensor]
        for key, value in list(state.items()):
            if isinstance(value, torch.Tensor) and value.shape == old_shape:
                state[key] = value.index_select(dim, index).contiguous() if index is not None \
                    else torch.zeros_like(data)
    tensor.data = data
    if isinstance(tensor, nn.Parameter):
        tensor.grad = None


def select_channels(group: ChannelGroup, keep: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Keep only the channels `keep` (sorted indices) of every slot of `group`, optimizer state included."""
    keep = keep.to(torch.long).sort().values
    for slot in [*group.weights, *group.others]:
        tensor, index = slot.tensor, slot.index(keep)
        resize_(tensor, tensor.detach().index_select(slot.dim, index).contiguous(), optimizer, slot.dim, index)
    for module in {id(s.module): s.module for s in [*group.weights, *group.others]}.values():
        sync_attributes(module)


def sync_attributes(module: nn.Module) -> None:
    """Make a layer's size attributes agree with its tensors (they are read by repr, not by forward)."""
    if isinstance(module, nn.Conv2d):
        module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1] * module.groups
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = module.weight.shape[0] if module.weight is not None else module.running_mean.shape[0]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape


def match_shapes(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Resize `model`'s parameters and buffers to the shapes in `state_dict` (before loading it).

    Returns the names resized. Keys of `model.state_dict()` missing from `state_dict` are left alone,
    so loading still reports them.
    """
    resized = []
    modules = dict(model.named_modules())
    for name, tensor in model.state_dict(keep_vars=True).items():
        saved = state_dict.get(name)
        if saved is None or not isinstance(saved, torch.Tensor) or saved.shape == tensor.shape:
            continue
        resize_(tensor, torch.empty(saved.shape, dtype=tensor.dtype, device=tensor.device))
        resized.append(name)
        sync_attributes(modules[name.rpartition(".")[0]])
    return resized


# ---------------------------------------------------------------- channel groups of shared models

def _writes(group: ChannelGroup, conv: nn.Module, bn: nn.Module | None) -> None:
    group.weights.append(Slot(conv, "weight", 0))
    if getattr(conv, "bias", None) is not None:
        group.others.append(Slot(conv, "bias", 0))
    if bn is not None:
        group.others += [Slot(bn, n, 0) for n in ("weight", "bias", "running_mean", "running_var")
                         if getattr(bn, n, None) is not None]


def resnet_cifar_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups of `harness.models.ResNetCifar`: per block its inner channels (conv1's outputs,
    bn1, conv2's inputs), and per stage the residual channels every block of the stage adds into (the
    stem or the projection writes them, each block's conv2 and bn2 write them, each block's conv1, the
    next stage's projection and the head read them). Keeping one index set per stage keeps the
    identity shortcuts consistent, as PruneTrain's union rule does."""
    stem_conv, stem_bn = model.stem[0], model.stem[1]
    stages: list[ChannelGroup] = []
    current = ChannelGroup("stage1")
    _writes(current, stem_conv, stem_bn)
    inner: list[ChannelGroup] = []
    for i, block in enumerate(model.blocks):
        current.weights.append(Slot(block.conv1, "weight", 1))  # conv1 reads the block's input
        if not isinstance(block.short, nn.Identity):  # a projection reads the old stage and starts a new one
            current.weights.append(Slot(block.short[0], "weight", 1))
            stages.append(current)
            current = ChannelGroup(f"stage{len(stages) + 1}")
            _writes(current, block.short[0], block.short[1])
        group = ChannelGroup(f"block{i + 1}")
        _writes(group, block.conv1, block.bn1)
        group.weights.append(Slot(block.conv2, "weight", 1))
        inner.append(group)
        _writes(current, block.conv2, block.bn2)
    current.weights.append(Slot(model.head[-1], "weight", 1))
    stages.append(current)
    return stages + inner


def small_cnn_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups of `harness.models.SmallCNN`: each conv's output channels (with its bias and norm)
    read by the next conv, the second conv's read by the first linear layer through the flattened map (each
    channel owns (side / 4)^2 columns), and the hidden units of the first linear layer read by the last."""
    f, c = model.features, model.classifier
    conv1, norm1, conv2, norm2 = f[0], f[1], f[4], f[5]
    fc1, fc2 = c[1], c[3]
    groups = [ChannelGroup("conv1"), ChannelGroup("conv2"), ChannelGroup("fc1")]
    _writes(groups[0], conv1, norm1 if isinstance(norm1, nn.BatchNorm2d) else None)
    groups[0].weights.append(Slot(conv2, "weight", 1))
    _writes(groups[1], conv2, norm2 if isinstance(norm2, nn.BatchNorm2d) else None)
    groups[1].weights.append(Slot(fc1, "weight", 1, block=fc1.weight.shape[1] // conv2.weight.shape[0]))
    _writes(groups[2], fc1, None)
    groups[2].weights.append(Slot(fc2, "weight", 1))
    return groups


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups of a shared model whose structure is known (ResNetCifar, SmallCNN)."""
    from harness.models import ResNetCifar, SmallCNN

    if isinstance(model, ResNetCifar):
        return resnet_cifar_groups(model)
    if isinstance(model, SmallCNN):
        return small_cnn_groups(model)
    raise ValueError(f"channel groups are defined for ResNetCifar and SmallCNN, not {type(model).__name__}")
