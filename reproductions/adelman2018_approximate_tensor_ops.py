"""Adelman & Silberstein (2018; NeurIPS 2021 with Levy and Hakimi), Faster Neural Network
Training with Approximate Tensor Operations.

Claim header (arXiv:1805.08079): replacing the matrix products and convolutions of training by
column-row sampling (CRS) -- k of the K column-row pairs (input channels for a convolution),
drawn with probability proportional to the product of their norms and scaled to stay unbiased --
cuts 30-80% of the computation with little or no impact on accuracy (v1); the 2021 version
reports up to 66% less compute and communication and up to 1.37x faster training.

Arms on one recipe, two models raced each against its own baseline, the official code's MNIST defaults
(github.com/adelmanm/approx, also acsl-technion/approx: mnist_mlp_pytorch, mnist_cnn_pytorch): `mlp` (the
recipe baseline, MNIST MLP 784-500-500-10, Adam, batch 50) and `mlp_crs` (the official MLP sampler: exact
forward, Bernoulli-sampled input and weight gradients, ratio 0.9, minimal_k 10); `cnn` (conv32-conv64-
FC1024-FC10, SGD 0.01 momentum 0.5, batch 64) and `cnn_crs` (the official CNN sampler: the top-k input
channels of each convolution, unscaled, ratio 0.5). `mlp_crs_iid` and `cnn_crs_iid` are variants with our
sampler (the unbiased i.i.d. CRS the paper analyses, sampled in forward). Sampling runs in training only;
evaluation is exact, as in the official modules. Our sampler's kernels (reference, custom ops, C++ and
Triton fast paths) live in kernels/crs.py; the official samplers are plain torch here.
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
            "sampled input channels; knobs sample_ratio and minimal_k. The official MNIST code samples the MLP's "
            "backward matmuls (Bernoulli) and keeps the CNN's top-k input channels.",
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
          "Samplers (official code github.com/adelmanm/approx, src/pytorch/approx_mul_pytorch; k = min(max(int(K "
          "ratio), minimal_k), K) everywhere, exact op when k = K). mlp_crs (faithful): modules/approx_Linear.py "
          "-> Function/approx_linear.py approx_linear_func: exact forward; backward samples the input gradient "
          "(grad_out @ W, K = output features) and the weight gradient (grad_out^T @ x, K = batch examples) with "
          "functional/approx_linear.py linear_bernoulli_sampling: pair i kept independently with probability "
          "0.9 min(1, k w_i / sum w) + 0.1/K (w_i the norm product, k reduced to the nonzero count), kept pairs "
          "scaled 1/p_i (unbiased); bias gradient exact; ratio 0.9 and minimal_k 10 for both backward matmuls "
          "(mnist_mlp_pytorch/model.py). Here: BernoulliBackwardLinear, bernoulli_matmul; the Bernoulli draws "
          "use torch's CPU generator, and the input gradient of the first layer (its input is data) is not "
          "computed (the official code computes and discards it). cnn_crs (faithful): modules/approx_Conv2d.py "
          "forward -> functional/approx_conv2d.py approx_conv2d_func_forward -> conv2d_top_k: the k input "
          "channels with the largest |x_c| |W_c| (norms over batch and space, and over output channels and "
          "kernel), no uniform mixing, no scaling, deterministic, gradients through the kept channels by "
          "autograd; ratio 0.5, minimal_k 1 (mnist_cnn_pytorch/main.py); FC layers exact. Here: TopKConv2d, "
          "topk_conv2d. mlp_crs_iid and cnn_crs_iid (variants) use our sampler: i.i.d. with replacement, "
          "p_i proportional to |A[:,i]| |B[i,:]|, scale 1/(k p_i), no uniform mixing (the unbiased CRS the "
          "paper analyses; close to the official `linear_random_sampling`/`conv2d_random_sampling` without "
          "their 10% mixing), sampled in forward with gradients through the drawn pairs ('forward sampling', "
          "which the official README says produced most results). conv1 (1 input channel) stays exact with "
          "every sampler. What remains ours: the CNN has no dropout (official: Dropout2d after conv2, 0.5 "
          "after FC1); the MLP keeps the official dropout 0.1 but takes its log-softmax over the classes (the "
          "official mnist_mlp_pytorch/model.py takes it over dim 0, the batch); cpu scale: 3 MLP epochs and 2 "
          "CNN epochs (official: 20); paper scale keeps the official 20 epochs on 55k/5k MNIST. flop_fraction "
          "counts the three matmuls of each layer (forward, input gradient unless the input is data, weight "
          "gradient): a forward-sampled layer (iid, top-k) spends k/K on all three; an official MLP layer "
          "spends the forward whole and each Bernoulli-sampled backward matmul at (0.9 k + 0.1)/K, its "
          "expected kept share when no probability is clipped at 1 (an upper bound otherwise); the realised "
          "pairs are logged (crs/sampled_fraction). The iid C++ kernel merges repeated draws, so its work is "
          "lower still (crs/distinct_fraction).",
    bibtex="@inproceedings{adelman2021faster,\n  title={Faster Neural Network Training with Approximate Tensor "
           "Operations},\n  author={Adelman, Menachem and Levy, Kfir Y. and Hakimi, Ido and Silberstein, Mark},\n"
           "  booktitle={NeurIPS},\n  year={2021}\n}",
)


# ---------------------------------------------------------------- functional form

# The official samplers mix this much uniform probability into their keep probabilities ("epsilon-optimal
# sampling", `epsilon = 0.1` in functional/approx_linear.py `linear_bernoulli_sampling`).
UNIFORM_MIX = 0.1


def bernoulli_keep_probs(norms: torch.Tensor, k: int, epsilon: float = UNIFORM_MIX) -> torch.Tensor:
    """Official keep probabilities (`linear_bernoulli_sampling`): pair i is kept with probability
    (1 - epsilon) min(1, k' w_i / sum w) + epsilon / K, w_i = |A[:, i]| |B[i, :]|, k' = min(k, #nonzero w).

    Every pair keeps at least epsilon / K; about (1 - epsilon) k' + epsilon pairs are kept on average
    (fewer where a probability is clipped at 1). Computed in float64 on the CPU.
    """
    w = norms.detach().double().cpu()
    total = float(w.sum())
    k = min(k, int(torch.count_nonzero(w)))
    share = (k * w / total).clamp(0.0, 1.0) if total > 0 else torch.zeros_like(w)
    return (1 - epsilon) * share + epsilon / len(w)


def bernoulli_share(K: int, k: int, epsilon: float = UNIFORM_MIX) -> float:
    """Expected share of the K pairs a Bernoulli-sampled matmul keeps (no probability clipped; at most this)."""
    return 1.0 if k >= K else ((1 - epsilon) * k + epsilon) / K


def bernoulli_matmul(a: torch.Tensor, b: torch.Tensor, k: int, epsilon: float = UNIFORM_MIX,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(unbiased estimate of a @ b, kept pair indices): each pair kept independently with its
    `bernoulli_keep_probs` probability p_i and scaled by 1 / p_i (official `linear_bernoulli_sampling`).

    Exact when k >= K, and when every norm product is zero (the product is then zero). Official fallback
    kept: when no pair is drawn, the first k' pairs are used. The draws come from `generator`, by default
    torch's global CPU generator. Not differentiable (it runs inside a backward).
    """
    K = a.shape[1]
    if k >= K:
        return a @ b, torch.arange(K, device=a.device)
    norms = torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=1)
    nnz = int(torch.count_nonzero(norms))
    if nnz == 0:
        return a @ b, torch.arange(K, device=a.device)
    p = bernoulli_keep_probs(norms, k, epsilon)
    idx = torch.bernoulli(p, generator=generator).nonzero()[:, 0]
    if len(idx) == 0:
        idx = torch.arange(min(k, nnz))
    scale = (1.0 / p[idx]).to(a.device, a.dtype)
    idx = idx.to(a.device)
    return (a[:, idx] * scale) @ b[idx], idx


class _BackwardSampledLinear(torch.autograd.Function):
    """y = x W^T + b exactly; backward samples both matmuls with `bernoulli_matmul` (official
    `approx_linear_func`): the input gradient over the output features, the weight gradient over the
    batch examples. The bias gradient is exact. `counts` receives (kept, K) of each sampled matmul."""

    @staticmethod
    def forward(ctx, x, weight, bias, sample_ratio, minimal_k, counts):
        ctx.save_for_backward(x, weight)
        ctx.knobs, ctx.counts, ctx.has_bias = (sample_ratio, minimal_k), counts, bias is not None
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        flat_x, flat_g = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            K = weight.shape[0]
            grad_x, idx = bernoulli_matmul(flat_g, weight.to(flat_g.dtype), crs_k(K, *ctx.knobs))
            grad_x = grad_x.reshape(x.shape)
            ctx.counts.append((len(idx), K))
        if ctx.needs_input_grad[1]:
            K = flat_x.shape[0]
            grad_w, idx = bernoulli_matmul(flat_g.t(), flat_x.to(flat_g.dtype), crs_k(K, *ctx.knobs))
            grad_w = grad_w.to(weight.dtype)
            ctx.counts.append((len(idx), K))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat_g.sum(0)
        return grad_x, grad_w, grad_b, None, None, None


def topk_channels(x: torch.Tensor, weight: torch.Tensor, k: int) -> torch.Tensor:
    """The k input channels with the largest |x[:, c]| |weight[:, c]| (norms over all other dimensions;
    official `conv2d_top_k`, which sorts with `topk_indices`)."""
    with torch.no_grad():
        norms = torch.linalg.vector_norm(x, dim=(0, 2, 3)) * torch.linalg.vector_norm(weight, dim=(0, 2, 3))
        return torch.topk(norms, k).indices


def topk_conv2d(x, weight, bias, stride, padding, dilation, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(conv2d over the top-k input channels, unscaled, no uniform mixing, their indices); exact when k >= C.
    Differentiable: gradients flow through the kept channels only (official `conv2d_top_k`)."""
    C = x.shape[1]
    if k >= C:
        return nn.functional.conv2d(x, weight, bias, stride, padding, dilation), torch.arange(C, device=x.device)
    idx = topk_channels(x, weight, k)
    out = nn.functional.conv2d(x.index_select(1, idx), weight.index_select(1, idx), bias, stride, padding, dilation)
    return out, idx


class _ForwardSampled(nn.Module):
    """A layer sampling k = crs_k(fan_in, ...) of its fan_in pairs in the forward, gradients through them."""

    fan_in: int
    sample_ratio: float
    minimal_k: int
    last_idx: torch.Tensor | None

    def spent(self, matmuls: int, batch: int) -> float:
        """Dense-matmul equivalents spent per step: all `matmuls` (forward and gradients) at k/K."""
        return matmuls * crs_k(self.fan_in, self.sample_ratio, self.minimal_k) / self.fan_in

    def realised(self) -> tuple[int, int, int] | None:
        """(pairs drawn, distinct pairs, pairs available) of the last training forward, or None."""
        if self.last_idx is None:
            return None
        return len(self.last_idx), len(torch.unique(self.last_idx)), self.fan_in


class CRSLinear(_ForwardSampled):
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


class CRSConv2d(_ForwardSampled):
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


class BernoulliBackwardLinear(nn.Module):
    """Official MNIST MLP layer (`approx_Linear` with sample_ratio_bwd / sample_ratio_wu set): exact
    forward, Bernoulli-sampled input and weight gradients; the same Parameters as `linear`."""

    def __init__(self, linear: nn.Linear, sample_ratio: float, minimal_k: int) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.sample_ratio, self.minimal_k = sample_ratio, minimal_k
        self.fan_in, self.fan_out = linear.in_features, linear.out_features
        self.counts: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return nn.functional.linear(x, self.weight, self.bias)
        return _BackwardSampledLinear.apply(x, self.weight, self.bias, self.sample_ratio, self.minimal_k, self.counts)

    def spent(self, matmuls: int, batch: int) -> float:
        """Forward exact; weight gradient over `batch` examples and input gradient (when computed) over the
        output features, each at its expected kept share (`bernoulli_share`)."""
        knobs = (self.sample_ratio, self.minimal_k)
        weight_grad = bernoulli_share(batch, crs_k(batch, *knobs))
        input_grad = bernoulli_share(self.fan_out, crs_k(self.fan_out, *knobs)) if matmuls == 3 else 0.0
        return 1.0 + weight_grad + input_grad

    def realised(self) -> tuple[int, int, int] | None:
        """(pairs kept, the same, pairs available) over the backward matmuls since the last call, or None."""
        counts, self.counts[:] = list(self.counts), []
        if not counts:
            return None
        kept = sum(c[0] for c in counts)
        return kept, kept, sum(c[1] for c in counts)


class TopKConv2d(_ForwardSampled):
    """Official MNIST CNN layer (`approx_Conv2d` forward -> `conv2d_top_k`): the training forward keeps the
    top-k input channels by norm product, unscaled and deterministic; backward through them."""

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
        k = crs_k(self.fan_in, self.sample_ratio, self.minimal_k)
        out, self.last_idx = topk_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, k)
        return out


SAMPLERS = {"iid": (CRSLinear, CRSConv2d), "official": (BernoulliBackwardLinear, TopKConv2d)}


def _replaceable(module: nn.Module, layers: str) -> bool:
    linear = type(module) is nn.Linear and layers in ("all", "linear")
    conv = (type(module) is nn.Conv2d and layers in ("all", "conv") and module.groups == 1
            and module.padding_mode == "zeros" and not isinstance(module.padding, str))
    return linear or conv


def apply_crs(model: nn.Module, sample_ratio: float, minimal_k: int, layers: str = "all",
              sampler: str = "iid") -> dict[str, nn.Module]:
    """Swap Linear/Conv2d layers for their CRS versions (`SAMPLERS[sampler]`) in place; return {name: new module}."""
    linear_cls, conv_cls = SAMPLERS[sampler]
    swapped = {}
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if _replaceable(child, layers):
                cls = linear_cls if isinstance(child, nn.Linear) else conv_cls
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
    description = ("column-row sampling: matmuls/convs from k norm-weighted pairs; sampler 'iid' (unbiased, with "
                   "replacement, in forward) or 'official' (the official code's MNIST samplers)")

    def __init__(self, sample_ratio: float = 0.5, minimal_k: int = 1, layers: str = "all",
                 sampler: str = "iid") -> None:
        crs_k(1, sample_ratio, minimal_k)  # validates both knobs
        if layers not in ("all", "linear", "conv"):
            raise ValueError(f"crs: layers='{layers}' must be 'all', 'linear' or 'conv'")
        if sampler not in SAMPLERS:
            raise ValueError(f"crs: sampler='{sampler}' must be one of {', '.join(SAMPLERS)}")
        self.sample_ratio, self.minimal_k, self.layers, self.sampler = sample_ratio, minimal_k, layers, sampler
        self.swapped: dict[str, nn.Module] = {}
        self._fraction: float | None = None

    def params(self) -> dict:
        return {"sample_ratio": self.sample_ratio, "minimal_k": self.minimal_k, "layers": self.layers,
                "sampler": self.sampler}

    def flop_fraction(self) -> float:
        """Share of the dense matmul/conv FLOPs spent: exact once setup() has seen the model."""
        return self._fraction if self._fraction is not None else self.sample_ratio

    def setup(self, trainer, pl_module, stage: str) -> None:
        recipe = pl_module.recipe
        macs = layer_macs(pl_module.model, pl_module.context.data.input_shape, recipe.flatten)
        self.swapped = apply_crs(pl_module.model, self.sample_ratio, self.minimal_k, self.layers, self.sampler)
        batch = getattr(recipe, "micro_batch_size", None) or recipe.batch_size  # examples per backward
        dense = sum(m * p for m, p in macs.values())
        self._fraction = sum(m * (self.swapped[n].spent(p, batch) if n in self.swapped else p)
                             for n, (m, p) in macs.items()) / dense
        # The Runner's Ledger asks flop_fraction() at train start, after this setup().

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        drawn = distinct = total = 0
        for name, module in self.swapped.items():
            seen = module.realised()
            if seen is None:
                continue
            k, u, n = seen
            pl_module.step_metrics[f"{self.name}/k/{name}"] = float(k)
            pl_module.step_metrics[f"{self.name}/distinct/{name}"] = float(u)
            drawn, distinct, total = drawn + k, distinct + u, total + n
        if total:
            pl_module.step_metrics[f"{self.name}/sampled_fraction"] = drawn / total
            pl_module.step_metrics[f"{self.name}/distinct_fraction"] = distinct / total


# ---------------------------------------------------------------- recipe

# Official defaults (mnist_mlp_pytorch/model.py, main.py, util.py; mnist_cnn_pytorch/main.py). The MLP's
# sample_ratio_bwd / minimal_k_bwd and sample_ratio_wu / minimal_k_wu equal sample_ratio / minimal_k there.
MLP_CRS = {"sample_ratio": 0.9, "minimal_k": 10, "layers": "all", "sampler": "official"}
CNN_CRS = {"sample_ratio": 0.5, "minimal_k": 1, "layers": "conv", "sampler": "official"}
MLP_CRS_IID = {**MLP_CRS, "sampler": "iid"}
CNN_CRS_IID = {**CNN_CRS, "sampler": "iid"}
# Per scale: MLP epochs and target; CNN epochs, training subset, validation size, evaluation
# cadence and target. cpu: measured idle on a 2-core machine, MLP 4 ms/step, MLP with iid CRS 8 ms, CNN
# 35 ms, CNN with iid CRS 32 ms, so the four arms other than mlp_crs and cnn_crs took about 3 minutes a
# seed; the official-sampler arms (exact MLP forward, top-k CNN) are not timed yet.
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
        Arm("mlp_crs", ("crs",), "the MLP with exact forwards and Bernoulli-sampled input and weight gradients "
            "in every linear layer (ratio 0.9, minimal_k 10; the official code's MNIST MLP sampler)",
            technique_kwargs={"crs": MLP_CRS}, baseline="mlp"),
        Arm("mlp_crs_iid", ("crs",), "the MLP with every linear layer sampled in forward, i.i.d. with replacement "
            "(ratio 0.9, minimal_k 10)", technique_kwargs={"crs": MLP_CRS_IID}, baseline="mlp", fidelity="variant",
            fidelity_note="our sampler: forward sampled (k i.i.d. draws with replacement, p_i proportional to the "
                          "norm product, scale 1/(k p_i), no uniform mixing) and gradients through the drawn "
                          "pairs; the official MLP keeps the forward exact and samples only the two backward "
                          "matmuls (Bernoulli, scale 1/p_i, 10% uniform mixing)"),
        Arm("cnn", description="CNN conv32-conv64-FC1024-FC10, exact", overrides=cnn),
        Arm("cnn_crs", ("crs",), "the CNN with both convolutions keeping their top-k input channels, unscaled "
            "(ratio 0.5; the official code's MNIST CNN sampler)", overrides=cnn, technique_kwargs={"crs": CNN_CRS},
            baseline="cnn"),
        Arm("cnn_crs_iid", ("crs",), "the CNN with both convolutions sampled over input channels, i.i.d. with "
            "replacement (ratio 0.5)", overrides=cnn, technique_kwargs={"crs": CNN_CRS_IID}, baseline="cnn",
            fidelity="variant",
            fidelity_note="our sampler: k input channels drawn i.i.d. with replacement, p_i proportional to the "
                          "norm product, scaled 1/(k p_i) (unbiased, random); the official CNN keeps the top-k "
                          "channels, deterministic and unscaled (biased)"),
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
