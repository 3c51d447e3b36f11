"""Wang, Nelaturu (& Amarasinghe) (2019), Accelerated CNN Training Through Gradient Approximation.

Claim header (arXiv:1908.05460, abstract): three ways to approximate the weight-gradient computation of
convolutions, one with an efficient GPU kernel, give ResNet-20 and VGG-19 on CIFAR-10 over 7% wall-clock
speed-up with a minimal loss of validation accuracy.

A convolution's backward pass is two convolutions of about the forward's cost: the input gradient
(needed by the layers below, kept exact here) and the weight gradient dW = sum over examples n and
output positions (i, j) of g[n, o, i, j] * x_patch[n, c, i, j]. Each method below estimates that sum
from a random part of it, rescaled so the estimate stays unbiased, and runs only the smaller convolution:

- `batch`:   a random `keep_fraction` of the examples n (a cyclic window of the shuffled batch), scaled by N / k;
- `spatial`: every `spatial_stride`-th output row and column from a random phase, scaled by stride^2 --
             a strided weight-gradient convolution, our stand-in for the paper's kernel;
- `channel`: a random cyclic window of `keep_fraction` of the filters o, scaled by O / k (the others get
             no update this step).

Arms: `exact` (baseline) and one arm per method. The abstract is the only part of the paper's text we
could read, so the three methods and their knobs are our choices; the card's notes say which.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_weight

from harness.cards import Claim, PaperCard
from harness.measure import Budget, Target
from harness.models import resnet_cifar
from harness.recipes import Arm, Recipe
from harness.techniques import Technique, register_technique

CARD = PaperCard(
    id="wang2019_gradient_approximation",
    title="Accelerated CNN Training Through Gradient Approximation",
    authors="Ziheng Wang, Sree Harsha Nelaturu, Saman Amarasinghe",
    venue="EMC2 Workshop 2019 (arXiv)",
    year=2019,
    arxiv="1908.05460",
    family="arithmetic",
    summary="Compute the input gradient of each convolution exactly and its weight gradient approximately, "
            "from a random, rescaled part of the batch, of the output positions or of the filters.",
    datasets=("cifar10",),
    models=("ResNet-20", "VGG-19"),
    claims=(
        Claim("speedup", "over 7% wall-clock speed-up (speedup of the approximate arm over exact training)",
              "speedup", "spatial", 1.07, "Abstract", kind="at_least"),
        Claim("accuracy_loss", "minimal validation-accuracy loss (test accuracy, approximate minus exact)",
              "test/acc", "spatial", 0.0, "Abstract", tolerance=0.01, minus_arm="exact"),
        Claim("resnet20_acc", "ResNet-20 test accuracy with gradient approximation", "test/acc", "spatial", None,
              "n.f.", scales=("paper",)),
        Claim("vgg19_acc", "VGG-19 test accuracy with gradient approximation", "test/acc", "vgg_spatial", None,
              "n.f.", scales=("paper",)),
    ),
    notes="Where we had to choose: only the abstract of the paper was accessible, so the three methods "
          "(batch, spatial and channel sampling of the weight-gradient sum, each rescaled to be unbiased), "
          "their knobs (keep_fraction 0.5, spatial_stride 2) and which arm carries the claims (spatial, our "
          "analogue of the paper's strided GPU kernel) are ours, not the paper's. Input gradients stay exact; "
          "only plain zero-padded convolutions with groups=1 are swapped. Batch and channel sampling keep a "
          "cyclic window from a uniform random start (unbiased, and contiguous slices instead of a gather). "
          "Targets (cpu: 30% validation accuracy; paper: 90%) are ours. The speed-up claim is a lower bound "
          "('over 7%', judged as at least 1.07x); the tolerance of 1 point of test accuracy for 'minimal loss' is "
          "ours. Paper-scale optimisation (SGD 0.1, momentum 0.9, weight decay 1e-4, 160 epochs) follows He et "
          "al.'s CIFAR ResNet setting, not this paper, with a cosine decay to zero in place of their steps (the "
          "protocol's baselines decay to zero at the budget). cpu scale: ResNet-20 on a 4,500-image subset of "
          "cifar10-jpeg75 for 3 epochs, sized so that all four arms of one seed take about 2-3 minutes on an idle "
          "2-core CPU.",
    bibtex="@inproceedings{wang2019accelerated,\n  title={Accelerated CNN Training Through Gradient "
           "Approximation},\n  author={Wang, Ziheng and Nelaturu, Sree Harsha and Amarasinghe, Saman},\n"
           "  booktitle={EMC2 Workshop},\n  year={2019}\n}",
)

METHODS = ("batch", "spatial", "channel")


# ---------------------------------------------------------------- functional form

def check_knobs(method: str, keep_fraction: float, spatial_stride: int) -> None:
    """Raise ValueError naming a bad knob and what was expected."""
    if method not in METHODS:
        raise ValueError(f"gradient approximation method={method!r} is not one of {', '.join(METHODS)}")
    if not isinstance(keep_fraction, (int, float)) or not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction={keep_fraction!r} must be a number in (0, 1]")
    if isinstance(spatial_stride, bool) or not isinstance(spatial_stride, int) or spatial_stride < 1:
        raise ValueError(f"spatial_stride={spatial_stride!r} must be an integer >= 1")


def draw_sample(method: str, grad_shape: torch.Size, keep_fraction: float, spatial_stride: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The part of the sum to keep: the (row, col) phase, or sorted example / filter indices.

    Indices form a cyclic window from a uniform random start, so each example or filter is kept with
    probability k / n (unbiased) and the kept part is at most two contiguous slices, not a gather.
    The loader shuffles each batch, so a window of examples is a uniformly random subset of them.
    """
    if method == "spatial":
        return torch.randint(spatial_stride, (2,), generator=generator)
    n = grad_shape[0] if method == "batch" else grad_shape[1]
    k = max(1, round(keep_fraction * n))
    start = torch.randint(n, (), generator=generator)
    return ((start + torch.arange(k)) % n).sort().values


def _runs(index: torch.Tensor) -> list[slice]:
    """Sorted indices as contiguous slices."""
    values, runs, first = index.tolist(), [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            runs.append(slice(values[first], values[i - 1] + 1))
            first = i
    return runs


def sample_mask(method: str, sample: torch.Tensor, grad_shape: torch.Size, spatial_stride: int) -> torch.Tensor:
    """Dense weights (0 or the unbiasing scale), broadcastable to the output gradient: the definition."""
    n, o, h, w = grad_shape
    if method == "spatial":
        mask = torch.zeros(1, 1, h, w)
        a, b = sample.tolist()
        mask[..., a::spatial_stride, b::spatial_stride] = float(spatial_stride**2)
        return mask
    size = n if method == "batch" else o
    mask = torch.zeros(size).index_fill_(0, sample, size / len(sample))
    return mask.view(-1, 1, 1, 1) if method == "batch" else mask.view(1, -1, 1, 1)


def approx_weight_grad(x: torch.Tensor, grad: torch.Tensor, weight_shape: torch.Size, stride, padding, dilation,
                       method: str, sample: torch.Tensor, spatial_stride: int) -> torch.Tensor:
    """conv2d_weight(x, grad * sample_mask), computed with only the kept part of the convolution."""
    if method == "batch":
        out = sum(conv2d_weight(x[r], weight_shape, grad[r], stride, padding, dilation) for r in _runs(sample))
        return out * (len(x) / len(sample))
    if method == "channel":
        out, scale = grad.new_zeros(weight_shape), weight_shape[0] / len(sample)
        for r in _runs(sample):
            part = grad[:, r]
            out[r] = conv2d_weight(x, (part.shape[1], *weight_shape[1:]), part, stride, padding, dilation) * scale
        return out
    s, (a, b) = spatial_stride, sample.tolist()
    g = grad[:, :, a::s, b::s]
    if g.numel() == 0:  # the phase missed every output position (output smaller than the stride)
        return grad.new_zeros(weight_shape)
    x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    # input rows the kept outputs read
    rows = (g.shape[2] - 1) * stride[0] * s + dilation[0] * (weight_shape[2] - 1) + 1
    cols = (g.shape[3] - 1) * stride[1] * s + dilation[1] * (weight_shape[3] - 1) + 1
    x = x[:, :, a * stride[0]: a * stride[0] + rows, b * stride[1]: b * stride[1] + cols]
    return conv2d_weight(x, weight_shape, g, (stride[0] * s, stride[1] * s), 0, dilation) * float(s * s)


class _ApproxConv2dFn(torch.autograd.Function):
    """conv2d forward; backward: exact input and bias gradients, approximate weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, method, keep_fraction, spatial_stride):
        out = F.conv2d(x, weight, bias, stride, padding, dilation)
        sample = draw_sample(method, out.shape, keep_fraction, spatial_stride)
        ctx.save_for_backward(x, weight, sample)
        ctx.conf = (stride, padding, dilation, method, spatial_stride, bias is not None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x_saved, w_saved, sample = ctx.saved_tensors
        stride, padding, dilation, method, spatial_stride, has_bias = ctx.conf
        x, weight = x_saved.to(grad.dtype), w_saved.to(grad.dtype)  # under autocast the forward ran in grad's dtype
        gx = gw = None
        gb = grad.sum((0, 2, 3)) if has_bias and ctx.needs_input_grad[2] else None
        if ctx.needs_input_grad[0]:  # the real input, not conv2d_input's expanded stand-in: oneDNN runs it faster
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False, (0, 0),
                                                     1, (True, False, False))[0].to(x_saved.dtype)
        if ctx.needs_input_grad[1]:
            gw = approx_weight_grad(x, grad, weight.shape, stride, padding, dilation, method, sample,
                                    spatial_stride).to(w_saved.dtype)
        return gx, gw, gb, None, None, None, None, None, None


class ApproxConv2d(nn.Conv2d):
    """An nn.Conv2d whose training backward approximates the weight gradient; eval is plain conv2d."""

    method, keep_fraction, spatial_stride = "spatial", 0.5, 2

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, method: str, keep_fraction: float, spatial_stride: int) -> ApproxConv2d:
        """Same Parameters, buffers and hooks (the module's state is shared, not copied)."""
        new = cls.__new__(cls)
        new.__dict__.update(conv.__dict__)
        new.method, new.keep_fraction, new.spatial_stride = method, keep_fraction, spatial_stride
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and self.weight.requires_grad):
            return super().forward(x)
        return _ApproxConv2dFn.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                     self.method, self.keep_fraction, self.spatial_stride)


def swappable(m: nn.Module) -> bool:
    """Plain zero-padded, ungrouped nn.Conv2d with numeric padding (subclasses are left alone)."""
    return (type(m) is nn.Conv2d and m.groups == 1 and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


def approximate_convs(model: nn.Module, method: str, keep_fraction: float = 0.5, spatial_stride: int = 2) -> int:
    """Swap every swappable conv in `model` for ApproxConv2d in place; return how many were swapped."""
    check_knobs(method, keep_fraction, spatial_stride)
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if swappable(child)]
    for parent, name, child in targets:
        setattr(parent, name, ApproxConv2d.from_conv(child, method, keep_fraction, spatial_stride))
    return len(targets)


# ---------------------------------------------------------------- technique

@register_technique
class GradientApproximation(Technique):
    """Swap the model's convolutions for ones with an approximate (sampled, unbiased) weight gradient."""

    name = "gradient_approximation"
    card = CARD
    # It replaces the model's convolutions (layer surgery) to change their weight gradients.
    touches = frozenset({"gradients", "architecture"})
    # CRS (order 30) replaces the same plain convolutions first; this technique would then find none to swap and
    # the pair would silently be CRS alone.
    conflicts = frozenset({"crs"})
    conflict_notes = {"crs": "both replace the same convolutions (CRSConv2d, ApproxConv2d); composed, the later "
                             "would find none left to swap and silently do nothing"}
    order = 45
    description = "convolution weight gradients from a random rescaled sample (batch / spatial / channel)"

    def __init__(self, method: str = "spatial", keep_fraction: float = 0.5, spatial_stride: int = 2) -> None:
        check_knobs(method, keep_fraction, spatial_stride)
        self.method, self.keep_fraction, self.spatial_stride = method, keep_fraction, spatial_stride
        self.swapped = 0

    def params(self) -> dict:
        return {"method": self.method, "keep_fraction": self.keep_fraction, "spatial_stride": self.spatial_stride}

    def weight_grad_keep(self) -> float:
        """Share of the weight-gradient convolution's FLOPs each method runs (edges aside)."""
        return 1.0 / self.spatial_stride**2 if self.method == "spatial" else self.keep_fraction

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.swapped += approximate_convs(pl_module.model, self.method, self.keep_fraction, self.spatial_stride)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.step_metrics[f"{self.name}/approximated_convs"] = float(self.swapped)  # 0: nothing to do
        pl_module.step_metrics[f"{self.name}/weight_grad_keep"] = self.weight_grad_keep() if self.swapped else 1.0

    def flop_fraction(self) -> float:
        """1.0: the step's FLOP counter already sees the smaller weight-gradient convolutions.

        FlopCounterMode counts the convolution_backward calls this technique makes, on their reduced
        shapes, so declaring a fraction on top would count the saving twice.
        """
        return 1.0


# ---------------------------------------------------------------- recipe

class VGGCifar(nn.Sequential):
    """VGG-19 (configuration E) with BatchNorm for 32x32 inputs and one linear classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        layers: list[nn.Module] = []
        for width in (64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"):
            conv = [] if width == "M" else [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                            nn.BatchNorm2d(width), nn.ReLU()]
            layers += conv or [nn.MaxPool2d(2)]
            in_channels = in_channels if width == "M" else width
        super().__init__(*layers, nn.Flatten(), nn.Linear(512, num_classes))


def vgg19_cifar(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return VGGCifar(input_shape[0], num_classes)  # the model factory the paper-scale VGG arms use


def _arms(prefix: str = "", **overrides) -> list[Arm]:
    kw = {"spatial": {"spatial_stride": 2}, "batch": {"keep_fraction": 0.5}, "channel": {"keep_fraction": 0.5}}
    exact = Arm(f"{prefix}exact", description="exact gradients", overrides=overrides)
    return [exact] + [Arm(f"{prefix}{m}", ("gradient_approximation",), f"{m}-sampled weight gradient, {kw[m]}",
                          overrides=overrides, baseline=exact.name if prefix else None, fidelity="substitute",
                          fidelity_note="our own sampling of the weight-gradient sum; the paper's methods are not "
                                        "described in the text available (abstract only)",
                          technique_kwargs={"gradient_approximation": {"method": m, **kw[m]}}) for m in METHODS]


def recipe(scale: str) -> Recipe:
    """ResNet-20 on CIFAR-10 (paper: plus VGG-19 arms); SGD momentum 0.9, batch 128."""
    if scale not in ("smoke", "cpu", "paper"):
        raise ValueError(f"scale '{scale}' is not one of smoke, cpu, paper")
    smoke, paper = scale == "smoke", scale == "paper"
    arms = _arms() + (_arms("vgg_", model=vgg19_cifar) if paper else [])
    return Recipe(
        name="cifar_resnet20_gradapprox", scale=scale, paper=CARD.id, baseline_arm="exact", arms=tuple(arms),
        dataset="synthetic" if smoke else "cifar10" if paper else "cifar10-jpeg75",
        model=resnet_cifar(8, 4) if smoke else resnet_cifar(20, 16),
        budget=Budget(steps=4) if smoke else Budget(epochs=160 if paper else 3),
        target=Target("val/acc", 0.2 if smoke else 0.9 if paper else 0.3),
        optim={"name": "sgd", "lr": 0.1 if paper else 0.05, "momentum": 0.9, "weight_decay": 1e-4 if paper else 5e-4},
        schedule="cosine",  # the protocol's baselines decay to zero at the budget (He et al. step at 80 and 120)
        batch_size=32 if smoke else 128, eval_every_n_steps=2 if smoke else 500 if paper else 12,
        n_val=64 if smoke else 5000 if paper else 1000, n_train=4500 if scale == "cpu" else None,
        crop_pad=0 if smoke else 4, flip=not smoke,
        description="synthetic 28x28, ResNet-8 width 4" if smoke else "CIFAR-10 45k/5k, ResNet-20 and VGG-19"
        if paper else "cifar10-jpeg75, 4.5k-image subset, 1k validation, ResNet-20, 3 epochs",
    )
