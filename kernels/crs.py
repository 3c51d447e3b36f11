"""Column-row sampling (CRS): approximate matmul and convolution by sampled column-row pairs.

Adelman & Silberstein, "Faster Neural Network Training with Approximate Tensor Operations"
(arXiv:1805.08079; NeurIPS 2021 with Levy and Hakimi). A @ B (M x K times K x N) equals the
sum over i of the outer products A[:, i] B[i, :]. CRS draws k of the K pairs i.i.d. with
replacement, pair i with probability p_i proportional to |A[:, i]| |B[i, :]|, and scales each
drawn pair by 1 / (k p_i): the estimate is unbiased and its variance is the smallest such a
sampler can have (Drineas, Kannan & Mahoney 2006, the paper's Section 3). Convolution samples
input channels the same way, the norm of a channel taken over the batch and spatial positions
of the input and over the output channels and kernel positions of the weight (the paper's
multi-channel extension; official code `conv2d_random_sampling`).

Facts from the official code (github.com/acsl-technion/approx, src/pytorch/approx_mul_pytorch):
k = min(max(int(K * sample_ratio), minimal_k), K), and when k == K the exact op runs
(`functional/approx_linear.py`). Its with-replacement sampler scales by 1 / (k p_i) as here;
its defaults are Bernoulli sampling for linear layers and top-k (unscaled) input channels for
convolutions, both mixed with 10% uniform probability; this module implements the unbiased
with-replacement sampler the paper analyses (no uniform mixing). The gradients flow through the
sampled pairs only ("forward sampling", README: "performed best in practice and was used to
generate most of the results in the paper"), so the two backward matmuls shrink by k / K too.
The C++ kernel merges repeated draws of a pair (their scales add up): the same estimate from the
u <= k distinct pairs, so it does u / k of the sampled work.

Layout: plain-torch references (the specification); custom ops `effitrain::crs_mm` and
`effitrain::crs_conv` (returning the output, the drawn indices and their scales) with fakes,
autograd rules and backward ops, each with its implementations declared once (`_CRS_MM`, ...) and
picked by kernels/_common/dispatch.py: on CPU the C++ fast path (kernels/csrc/crs.cpp) where it
builds and the tensors are fp32, on CUDA a Triton sampler and gather, else the plain-torch path;
`crs_matmul` / `crs_conv2d` are the public entry points with an `impl=` choice. Random draws:
kernels/_common/random.py (the C++ and Triton samplers use different hashes, so they agree in
distribution, not in bits). The FLOP counter is taught the DENSE cost of
these ops, because the harness multiplies counted dense FLOPs by a technique's declared
`flop_fraction()`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

from kernels._common import build, dispatch
from kernels._common import random as krandom
from kernels._common.contract import FamilyContract, OpCase
from kernels._common.machine import OpBench, register_bench
from kernels._common.random import tl_crs_uniform

IMPLS = dispatch.IMPLS


def crs_k(K: int, sample_ratio: float, minimal_k: int) -> int:
    """Pairs to draw: min(max(int(K * sample_ratio), minimal_k), K) (official code)."""
    if not (isinstance(sample_ratio, (int, float)) and 0.0 < sample_ratio <= 1.0):
        raise ValueError(f"sample_ratio={sample_ratio!r} must be a number in (0, 1]")
    if not (isinstance(minimal_k, int) and minimal_k >= 1):
        raise ValueError(f"minimal_k={minimal_k!r} must be an integer >= 1")
    return min(max(int(K * sample_ratio), minimal_k), K)


# ---------------------------------------------------------------- references (plain torch)

def _sample_torch(weights: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """k indices drawn with probability weights / sum(weights), and their scales 1 / (k p_i)."""
    w = weights.detach().double().cpu()
    total = float(w.sum())
    if total == 0.0:  # every product is zero, so A @ B is exactly zero: weight-0 draws
        return torch.arange(k) % len(w), torch.zeros(k)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(w / total, k, replacement=True, generator=gen)
    return idx, (total / (k * w[idx])).float()


def _mm_torch(a: Tensor, b: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(CRS estimate of a @ b, drawn indices, scales); exact when k >= K. Differentiable."""
    K = a.shape[1]
    if k >= K:
        return a @ b, torch.arange(K, device=a.device), torch.ones(K, device=a.device)
    idx, scale = _sample_torch(torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=1), k, seed)
    idx, scale = idx.to(a.device), scale.to(a.device, a.dtype)
    return (a[:, idx] * scale) @ b[idx], idx, scale.float()


def _conv_torch(x, w, bias, stride, padding, dilation, k, seed) -> tuple[Tensor, Tensor, Tensor]:
    """(CRS estimate of conv2d over k drawn input channels, indices, scales). Differentiable."""
    C = x.shape[1]
    if k >= C:
        return F.conv2d(x, w, bias, stride, padding, dilation), torch.arange(C, device=x.device), \
            torch.ones(C, device=x.device)
    norms = torch.linalg.vector_norm(x, dim=(0, 2, 3)) * torch.linalg.vector_norm(w, dim=(0, 2, 3))
    idx, scale = _sample_torch(norms, k, seed)
    idx, scale = idx.to(x.device), scale.to(x.device, x.dtype)
    out = F.conv2d(x[:, idx] * scale.view(1, -1, 1, 1), w[:, idx], bias, stride, padding, dilation)
    return out, idx, scale.float()


def crs_matmul_reference(a: Tensor, b: Tensor, sample_ratio: float, minimal_k: int, seed: int) -> Tensor:
    """The specification: a @ b estimated from crs_k(K, ...) pairs drawn under `seed`."""
    return _mm_torch(a, b, crs_k(a.shape[1], sample_ratio, minimal_k), seed)[0]


def crs_conv2d_reference(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation,
                         sample_ratio: float, minimal_k: int, seed: int) -> Tensor:
    """The specification: conv2d estimated from crs_k(C_in, ...) input channels drawn under `seed`."""
    k = crs_k(x.shape[1], sample_ratio, minimal_k)
    return _conv_torch(x, weight, bias, _pair(stride), _pair(padding), _pair(dilation), k, seed)[0]


def _mm_backward_torch(grad, a, b, idx, scale, need_a, need_b) -> tuple[Tensor, Tensor]:
    """Gradients through the drawn pairs: index_select, two small matmuls, index_add."""
    s = scale.to(a.dtype)
    none = a.new_empty(0)
    grad_a = a.new_zeros(a.shape).index_add_(1, idx, (grad @ b[idx].T) * s) if need_a else none
    grad_b = b.new_zeros(b.shape).index_add_(0, idx, (a[:, idx] * s).T @ grad) if need_b else none
    return grad_a, grad_b


def _conv_backward_torch(grad, x, w, idx, scale, stride, padding, dilation, need_x, need_w, need_bias):
    x_s = x[:, idx] * scale.to(x.dtype).view(1, -1, 1, 1)
    gx_s, gw_s, gb = torch.ops.aten.convolution_backward(
        grad, x_s, w[:, idx], [w.shape[0]], stride, padding, dilation, False, [0, 0], 1, [need_x, need_w, need_bias])
    none = x.new_empty(0)
    gx = x.new_zeros(x.shape).index_add_(1, idx, gx_s * scale.to(x.dtype).view(1, -1, 1, 1)) if need_x else none
    gw = w.new_zeros(w.shape).index_add_(1, idx, gw_s) if need_w else none
    return gx, gw, gb if need_bias else none


# ---------------------------------------------------------------- Triton (CUDA; interpreter in tests)

@triton.jit
def _sample_kernel(cdf_ptr, w_ptr, idx_ptr, scale_ptr, K, k, key, inv_k, STEPS: tl.constexpr, BLOCK: tl.constexpr):
    """Draw t: u = uniform(seed, t) * total, binary search for the first cdf > u, scale = total / (k w_i)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    total = tl.load(cdf_ptr + K - 1)
    u = tl_crs_uniform(key, offs, BLOCK) * total
    lo = tl.full([BLOCK], 0, tl.int32)  # tl.full, not tl.zeros: see kernels/_common/random.py
    hi = tl.full([BLOCK], 0, tl.int32) + (K - 1)
    for _ in tl.static_range(STEPS):
        mid = (lo + hi) // 2
        right = tl.load(cdf_ptr + mid) <= u
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(right, hi, mid)
    i = tl.minimum(lo, K - 1)
    w = tl.load(w_ptr + i)
    scale = tl.where(w > 0, total * inv_k / tl.where(w > 0, w, 1.0), 0.0)
    tl.store(idx_ptr + offs, i.to(tl.int64), mask=offs < k)
    tl.store(scale_ptr + offs, scale, mask=offs < k)


@triton.jit
def _gather_kernel(src_ptr, idx_ptr, scale_ptr, dst_ptr, k, Q, s_p, s_c, s_q,
                   HAS_SCALE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_Q: tl.constexpr):
    """dst[p, t, q] = src[p, idx[t], q] * scale[t] into a contiguous P x k x Q buffer."""
    p = tl.program_id(0).to(tl.int64)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    q = tl.program_id(2) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    c = tl.load(idx_ptr + t, mask=t < k, other=0)
    mask = (t < k)[:, None] & (q < Q)[None, :]
    v = tl.load(src_ptr + p * s_p + c[:, None] * s_c + q[None, :] * s_q, mask=mask, other=0.0)
    if HAS_SCALE:
        v = v * tl.load(scale_ptr + t, mask=t < k, other=0.0)[:, None].to(v.dtype)
    tl.store(dst_ptr + (p * k + t[:, None]) * Q + q[None, :], v, mask=mask)


def _sample_triton(weights: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor]:
    w = weights.detach().float().contiguous()
    cdf = torch.cumsum(w.double(), 0).float()
    idx = torch.empty(k, dtype=torch.long, device=w.device)
    scale = torch.empty(k, dtype=torch.float32, device=w.device)
    block = min(1024, triton.next_power_of_2(k))
    _sample_kernel[(triton.cdiv(k, block),)](cdf, w, idx, scale, len(w), k, krandom.crs_key32(seed), 1.0 / k,
                                             STEPS=max(1, math.ceil(math.log2(len(w)))) + 1, BLOCK=block)
    return idx, scale


def _gather_triton(src: Tensor, P: int, Q: int, strides: tuple[int, int, int], idx: Tensor,
                   scale: Tensor | None) -> Tensor:
    k = len(idx)
    dst = torch.empty(P, k, Q, dtype=src.dtype, device=src.device)
    block_q = min(128, triton.next_power_of_2(Q))
    block_t = min(triton.next_power_of_2(k), max(1, 1024 // block_q))
    grid = (P, triton.cdiv(k, block_t), triton.cdiv(Q, block_q))
    _gather_kernel[grid](src, idx, scale if scale is not None else idx, dst, k, Q, *strides,
                         HAS_SCALE=scale is not None, BLOCK_T=block_t, BLOCK_Q=block_q)
    return dst


def _mm_triton(a: Tensor, b: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    (M, K), N = a.shape, b.shape[1]
    if k >= K:
        return a @ b, torch.arange(K, device=a.device), torch.ones(K, device=a.device)
    idx, scale = _sample_triton(torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=1), k, seed)
    a_s = _gather_triton(a, M, 1, (a.stride(0), a.stride(1), 0), idx, scale).view(M, k)
    b_s = _gather_triton(b, 1, N, (0, b.stride(0), b.stride(1)), idx, None).view(k, N)
    return a_s @ b_s, idx, scale


def _conv_triton(x, w, bias, stride, padding, dilation, k, seed) -> tuple[Tensor, Tensor, Tensor]:
    (Nb, C, H, W), (C_out, _, R, S) = x.shape, w.shape
    if k >= C:
        return F.conv2d(x, w, bias, stride, padding, dilation), torch.arange(C, device=x.device), \
            torch.ones(C, device=x.device)
    x, w = x.contiguous(), w.contiguous()
    norms = torch.linalg.vector_norm(x, dim=(0, 2, 3)) * torch.linalg.vector_norm(w, dim=(0, 2, 3))
    idx, scale = _sample_triton(norms, k, seed)
    x_s = _gather_triton(x, Nb, H * W, (C * H * W, H * W, 1), idx, scale).view(Nb, k, H, W)
    w_s = _gather_triton(w, C_out, R * S, (C * R * S, R * S, 1), idx, None).view(C_out, k, R, S)
    return F.conv2d(x_s, w_s, bias, stride, padding, dilation), idx, scale


# ---------------------------------------------------------------- the implementations of each op

def _crs_cpp(name: str):
    """The C++ op `name` of csrc/crs.cpp, loaded (built) on first call."""
    return lambda *args: getattr(build.load("crs"), name)(*args)


def _mm_reference(a, b, k, seed):
    out, idx, scale = _mm_torch(a, b, k, seed)
    return out, idx.clone(), scale.clone()  # a custom op returns fresh tensors, never arange/ones views


def _mm_backward_reference(grad, a, b, idx, scale, need_a, need_b):
    if len(idx) == a.shape[1]:  # the dense case
        return (grad @ b.T if need_a else a.new_empty(0)), (a.T @ grad if need_b else a.new_empty(0))
    return _mm_backward_torch(grad, a, b, idx, scale, need_a, need_b)


def _conv_reference(x, w, bias, stride, padding, dilation, k, seed):
    out, idx, scale = _conv_torch(x, w, bias, stride, padding, dilation, k, seed)
    return out, idx.clone(), scale.clone()


def _conv_backward_reference(grad, x, w, idx, scale, stride, padding, dilation, need_x, need_w, need_bias):
    return _conv_backward_torch(grad.contiguous(), x, w, idx, scale, stride, padding, dilation, need_x, need_w,
                                need_bias)


_FP32 = (torch.float32,)  # the C++ kernels take fp32 only; other dtypes run the plain-torch path
_CRS_MM = dispatch.Implementations(
    "crs_mm", dispatch.reference(_mm_reference), dispatch.cpp("crs", _crs_cpp("crs_mm"), _FP32),
    dispatch.triton(_mm_triton))
_CRS_CONV = dispatch.Implementations(
    "crs_conv", dispatch.reference(_conv_reference), dispatch.cpp("crs", _crs_cpp("crs_conv"), _FP32),
    dispatch.triton(_conv_triton))
# The backward passes have no Triton path: on CUDA they run the plain-torch one.
_CRS_MM_BACKWARD = dispatch.Implementations(
    "crs_mm_backward", dispatch.reference(_mm_backward_reference),
    dispatch.cpp("crs", _crs_cpp("crs_mm_backward"), _FP32))
_CRS_CONV_BACKWARD = dispatch.Implementations(
    "crs_conv_backward", dispatch.reference(_conv_backward_reference),
    dispatch.cpp("crs", _crs_cpp("crs_conv_backward"), _FP32))


# ---------------------------------------------------------------- custom ops

def _no_autocast(t: Tensor):
    """Custom ops get no autocast rule, but the ops inside them would: keep the inputs' dtype."""
    return torch.autocast(t.device.type, enabled=False)


@torch.library.custom_op("effitrain::crs_mm", mutates_args=())
def crs_mm(a: Tensor, b: Tensor, k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(CRS estimate of a @ b from k pairs, indices int64[k'], scales float32[k']), k' = min(k, K)."""
    with _no_autocast(a):
        return _CRS_MM.pick("auto", a, b).fn(a, b, k, seed)


@crs_mm.register_fake
def _(a, b, k, seed):
    kk = min(k, a.shape[1])
    return a.new_empty(a.shape[0], b.shape[1]), a.new_empty(kk, dtype=torch.long), a.new_empty(kk, dtype=torch.float32)


@torch.library.custom_op("effitrain::crs_mm_backward", mutates_args=())
def crs_mm_backward(grad: Tensor, a: Tensor, b: Tensor, idx: Tensor, scale: Tensor, need_a: bool,
                    need_b: bool) -> tuple[Tensor, Tensor]:
    """Gradients of crs_mm through its drawn pairs; an unneeded one is an empty tensor."""
    grad = grad.to(a.dtype)
    return _CRS_MM_BACKWARD.pick("auto", grad, a, b).fn(grad, a, b, idx, scale, need_a, need_b)


@crs_mm_backward.register_fake
def _(grad, a, b, idx, scale, need_a, need_b):
    return (a.new_empty(a.shape) if need_a else a.new_empty(0)), (b.new_empty(b.shape) if need_b else b.new_empty(0))


def _mm_setup(ctx, inputs, output):
    a, b, _, _ = inputs
    _, idx, scale = output
    ctx.mark_non_differentiable(idx, scale)
    ctx.save_for_backward(a, b, idx, scale)


def _mm_backward(ctx, grad, _grad_idx, _grad_scale):
    a, b, idx, scale = ctx.saved_tensors
    need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    ga, gb = crs_mm_backward(grad, a, b, idx, scale, need_a, need_b)
    return (ga if need_a else None), (gb if need_b else None), None, None


crs_mm.register_autograd(_mm_backward, setup_context=_mm_setup)


@torch.library.custom_op("effitrain::crs_conv", mutates_args=())
def crs_conv(x: Tensor, w: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
             dilation: list[int], k: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(CRS estimate of conv2d from k input channels, indices, scales); groups = 1."""
    with _no_autocast(x):
        return _CRS_CONV.pick("auto", x, w).fn(x, w, bias, stride, padding, dilation, k, seed)


@crs_conv.register_fake
def _(x, w, bias, stride, padding, dilation, k, seed):
    side = [(n + 2 * p - d * (r - 1) - 1) // s + 1
            for n, r, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation)]
    kk = min(k, x.shape[1])
    return (x.new_empty(x.shape[0], w.shape[0], *side), x.new_empty(kk, dtype=torch.long),
            x.new_empty(kk, dtype=torch.float32))


@torch.library.custom_op("effitrain::crs_conv_backward", mutates_args=())
def crs_conv_backward(grad: Tensor, x: Tensor, w: Tensor, idx: Tensor, scale: Tensor, stride: list[int],
                      padding: list[int], dilation: list[int], need_x: bool, need_w: bool,
                      need_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of crs_conv through its drawn channels; an unneeded one is an empty tensor."""
    grad = grad.to(x.dtype)
    return _CRS_CONV_BACKWARD.pick("auto", grad, x, w).fn(grad, x, w, idx, scale, stride, padding, dilation,
                                                          need_x, need_w, need_bias)


@crs_conv_backward.register_fake
def _(grad, x, w, idx, scale, stride, padding, dilation, need_x, need_w, need_bias):
    return ((x.new_empty(x.shape) if need_x else x.new_empty(0)), (w.new_empty(w.shape) if need_w else w.new_empty(0)),
            (w.new_empty(w.shape[0]) if need_bias else w.new_empty(0)))


def _conv_setup(ctx, inputs, output):
    x, w, bias, stride, padding, dilation, _, _ = inputs
    _, idx, scale = output
    ctx.mark_non_differentiable(idx, scale)
    ctx.save_for_backward(x, w, idx, scale)
    ctx.geometry = (stride, padding, dilation)


def _conv_backward(ctx, grad, _grad_idx, _grad_scale):
    x, w, idx, scale = ctx.saved_tensors
    need = ctx.needs_input_grad[:3]
    gx, gw, gb = crs_conv_backward(grad, x, w, idx, scale, *ctx.geometry, *need)
    return (gx if need[0] else None), (gw if need[1] else None), (gb if need[2] else None), None, None, None, None, None


crs_conv.register_autograd(_conv_backward, setup_context=_conv_setup)


# Dense costs, so that FLOPs counted by the harness stay the dense count it scales by flop_fraction().
@register_flop_formula(torch.ops.effitrain.crs_mm)
def _crs_mm_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


@register_flop_formula(torch.ops.effitrain.crs_mm_backward)
def _crs_mm_backward_flop(grad_shape, a_shape, b_shape, idx_shape, scale_shape, need_a, need_b, *args, **kwargs):
    return (int(need_a) + int(need_b)) * 2 * a_shape[0] * a_shape[1] * b_shape[1]


@register_flop_formula(torch.ops.effitrain.crs_conv)
def _crs_conv_flop(x_shape, w_shape, bias_shape, stride, padding, dilation, *args, out_shape=None, **kwargs):
    return conv_flop_count(x_shape, w_shape, out_shape[0], transposed=False)


@register_flop_formula(torch.ops.effitrain.crs_conv_backward)
def _crs_conv_backward_flop(grad_shape, x_shape, w_shape, idx_shape, scale_shape, stride, padding, dilation,
                            need_x, need_w, need_bias, *args, **kwargs):
    return (int(need_x) + int(need_w)) * conv_flop_count(x_shape, w_shape, grad_shape, transposed=False)


# ---------------------------------------------------------------- public entry points

def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(u) for u in v]


def crs_matmul(a: Tensor, b: Tensor, sample_ratio: float = 0.5, minimal_k: int = 1, seed: int | None = None,
               impl: str = "auto", return_indices: bool = False):
    """Unbiased CRS estimate of a @ b (2-D) from crs_k(K, sample_ratio, minimal_k) drawn pairs.

    Differentiable through the drawn pairs (impl "auto" and "reference"). With
    `return_indices`, also returns the drawn pair indices. `impl`: kernels/_common/dispatch.py.
    """
    dispatch.check_impl(impl)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"crs_matmul: expected 2-D a (M x K) and b (K x N), got {tuple(a.shape)} and {tuple(b.shape)}")
    k, seed = crs_k(a.shape[1], sample_ratio, minimal_k), krandom.seed_or_draw(seed)
    if impl == "auto":
        out, idx, _ = torch.ops.effitrain.crs_mm(a, b, k, seed)
    else:
        out, idx, _ = _CRS_MM.pick(impl, a, b).fn(a, b, k, seed)
    return (out, idx) if return_indices else out


def crs_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
               sample_ratio: float = 0.5, minimal_k: int = 1, seed: int | None = None, impl: str = "auto",
               return_indices: bool = False):
    """Unbiased CRS estimate of conv2d (groups = 1) from crs_k(C_in, ...) drawn input channels."""
    dispatch.check_impl(impl)
    if x.dim() != 4 or weight.dim() != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"crs_conv2d: expected x (N, C, H, W) and weight (O, C, R, S) with equal C (groups=1), "
                         f"got {tuple(x.shape)} and {tuple(weight.shape)}")
    k, seed = crs_k(x.shape[1], sample_ratio, minimal_k), krandom.seed_or_draw(seed)
    geometry = (_pair(stride), _pair(padding), _pair(dilation))
    if impl == "auto":
        out, idx, _ = torch.ops.effitrain.crs_conv(x, weight, bias, *geometry, k, seed)
    else:
        out, idx, _ = _CRS_CONV.pick(impl, x, weight).fn(x, weight, bias, *geometry, k, seed)
    return (out, idx) if return_indices else out


# ---------------------------------------------------------------- `effitrain bench kernels`

def _bench_matmul(device: str, n: int = 2048, sample_ratio: float = 0.5):
    """n x n x n fp32 at sample_ratio 0.5 (issue goal: >= 1.6x the dense matmul), forward only.

    The work is 2 n u n FLOPs for the u distinct pairs among the k draws (repeats are merged).
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    _, idx = crs_matmul(a, b, sample_ratio, 1, seed=1, return_indices=True)
    distinct = len(torch.unique(idx)) if device == "cpu" else len(idx)  # the Triton path does not merge
    return (lambda: crs_matmul(a, b, sample_ratio, 1, seed=1)), 2.0 * n * distinct * n, (lambda: a @ b)


def _bench_conv(device: str, sample_ratio: float = 0.5):
    """The MNIST CNN's second convolution (32 -> 64 channels, 5x5, 14x14) at batch 256."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, 14, 14, generator=gen).to(device)
    w = torch.randn(64, 32, 5, 5, generator=gen).to(device)
    _, idx = crs_conv2d(x, w, None, 1, 2, 1, sample_ratio, 1, seed=1, return_indices=True)
    distinct = len(torch.unique(idx)) if device == "cpu" else len(idx)
    flops = 2.0 * 256 * 64 * 14 * 14 * distinct * 25
    return (lambda: crs_conv2d(x, w, None, 1, 2, 1, sample_ratio, 1, seed=1)), flops, \
        (lambda: F.conv2d(x, w, None, 1, 2))


register_bench(OpBench("crs_matmul 2048^3 r=0.5", "compute", _bench_matmul, goal=1.6,
                       note="flops actually done: 2 M u N for the u distinct drawn pairs; speedup against a @ b"))
register_bench(OpBench("crs_conv2d 32->64 5x5 r=0.5", "compute", _bench_conv, goal=None,
                       note="flops are those actually done; speedup against dense F.conv2d"))


# ---------------------------------------------------------------- the contract test's declaration

def _pair_inputs(M: int = 6, K: int = 12, N: int = 5) -> tuple[Tensor, Tensor]:
    """Columns/rows of very different norms (products over 1:100), so the sampling distribution is far from
    uniform: a sampler with other probabilities shows in the spread of the estimate."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=gen) * torch.linspace(0.1, 3.0, K)
    b = torch.randn(K, N, generator=gen) * torch.linspace(0.2, 2.0, K)[:, None]
    return a, b


def _conv_inputs() -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 5, 5, generator=gen) * torch.linspace(0.2, 2.0, 6).view(1, -1, 1, 1)
    return x, torch.randn(3, 6, 3, 3, generator=gen), torch.randn(3, generator=gen)


def _opchecks() -> list[tuple[object, tuple]]:
    a, b = _pair_inputs()
    a.requires_grad_(), b.requires_grad_()
    x, w, bias = (t.requires_grad_() for t in _conv_inputs())
    _, idx, scale = crs_mm(a.detach(), b.detach(), 5, 1)
    _, cidx, cscale = crs_conv(x.detach(), w.detach(), bias.detach(), [1, 1], [1, 1], [1, 1], 2, 3)
    ops = torch.ops.effitrain
    return [(ops.crs_mm, (a, b, 5, 1)), (ops.crs_mm, (a, b, 12, 1)),
            (ops.crs_conv, (x, w, bias, [1, 1], [1, 1], [1, 1], 2, 3)),
            (ops.crs_mm_backward, (torch.randn(6, 5), a.detach(), b.detach(), idx, scale, True, False)),
            (ops.crs_conv_backward, (torch.randn(2, 3, 5, 5), x.detach(), w.detach(), cidx, cscale, [1, 1],
                                     [1, 1], [1, 1], True, True, True))]


_BAD_MATMUL = (
    lambda: crs_matmul(torch.randn(6, 12), torch.randn(5, 12), 0.5, 1, seed=0),
    lambda: crs_matmul(*_pair_inputs(), 0.0, 1, seed=0),
    lambda: crs_matmul(*_pair_inputs(), 1.5, 1, seed=0),
    lambda: crs_matmul(*_pair_inputs(), 0.5, 0, seed=0),
    lambda: crs_matmul(*_pair_inputs(), 0.5, 1, seed=-1),
    lambda: crs_matmul(*_pair_inputs(), 0.5, 1, seed=0, impl="fast"),
)
_BAD_CONV = (
    lambda: crs_conv2d(*_pair_inputs()),
    lambda: crs_conv2d(torch.randn(2, 6, 5, 5), torch.randn(3, 4, 3, 3)),
    lambda: crs_conv2d(*_conv_inputs(), sample_ratio=2.0),
)
# Sums in another order (C++ merges repeated draws; Triton gathers before the matmul): 1e-5 relative.
_FP_ATOL, _FP_RTOL = 1e-5, 1e-5


def _conv_call(ratio: float):
    return lambda inputs, seed, impl: crs_conv2d(*inputs, 1, 1, 1, ratio, 1, seed, impl)


CONTRACT = FamilyContract("crs", ops=(
    OpCase("crs_matmul", lambda inputs, seed, impl: crs_matmul(*inputs, 1 / 3, 1, seed, impl), _pair_inputs, _CRS_MM,
           stochastic=True, bad_inputs=_BAD_MATMUL, shared_bits=False, draws=150, atol=_FP_ATOL, rtol=_FP_RTOL),
    OpCase("crs_matmul[k=K]", lambda inputs, seed, impl: crs_matmul(*inputs, 1.0, 1, seed, impl), _pair_inputs,
           _CRS_MM, stochastic=False),
    OpCase("crs_conv2d", _conv_call(0.5), _conv_inputs, _CRS_CONV, stochastic=True, bad_inputs=_BAD_CONV,
           shared_bits=False, draws=150, atol=_FP_ATOL, rtol=_FP_RTOL, dispatch_tensors=lambda inputs: inputs[:2]),
    OpCase("crs_conv2d[k=C]", _conv_call(1.0), _conv_inputs, _CRS_CONV, stochastic=False,
           dispatch_tensors=lambda inputs: inputs[:2]),
), opchecks=_opchecks)
