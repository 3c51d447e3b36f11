"""Stochastic pruning of activation gradients (Ye et al., arXiv:1908.00173, the method as PAPERS.md summarises it).

`prune_grad(g, tau, seed)`: an element with |g| < tau becomes sign(g) * tau with probability
|g| / tau and 0 otherwise, so its expectation is g (unbiased); elements with |g| >= tau pass
unchanged. `prune_threshold(g, rate)` picks tau without a sort: it models g as N(0, sigma^2),
estimates sigma = sqrt(pi/2) * mean|g| (one pass, unbiased for a zero-mean normal) and takes the
tau below which a fraction `rate` of that normal lies, tau = Phi^-1((1 + rate) / 2) * sigma.

Layout: `prune_grad_reference` is the specification; `torch.ops.effitrain.prune_grad` is the
custom op, whose kernel runs the path kernels/_common/dispatch.py picks from `_PRUNE_GRAD` (CPU:
the C++ fast path in csrc/sparsify.cpp when it builds, else the reference; CUDA: the Triton kernel
below); `prune_grad(..., impl=)` runs one path directly for tests and benchmarks. The op is
memory-bound (read g, write the result: 8 bytes per fp32 element), registered as an `OpBench`.
"""

from __future__ import annotations

import math
import statistics

import torch
from torch import Tensor

from kernels._common import build, dispatch
from kernels._common import random as krandom
from kernels._common.contract import FamilyContract, OpCase
from kernels._common.machine import OpBench, register_bench

try:  # the Triton kernel is decorated at import (tests set TRITON_INTERPRET=1 first when there is no GPU)
    import triton
    import triton.language as tl

    from kernels._common.random import tl_sparsify_hash, tl_uniform24
except ImportError:  # pragma: no cover - Triton ships with torch on Linux
    triton = None

IMPLS = dispatch.IMPLS
_BLOCK = 1024  # Triton elements per program


# ---------------------------------------------------------------- reference and threshold

def prune_grad_reference(g: Tensor, tau: Tensor | float, seed: int) -> Tensor:
    """The specification, in plain torch: u ~ U[0, 1) from a generator seeded with `seed`;
    |g| < tau -> sign(g) * tau if u * tau < |g| (probability |g| / tau) else 0; otherwise g."""
    gen = torch.Generator(device=g.device).manual_seed(int(seed))
    u = torch.rand(g.shape, generator=gen, device=g.device, dtype=torch.float32)
    x = g.float()
    t = torch.as_tensor(tau, dtype=torch.float32, device=g.device)
    a = x.abs()
    kept = torch.where(u * t < a, torch.copysign(t.expand_as(x), x), torch.zeros_like(x))
    return torch.where(a < t, kept, x).to(g.dtype).contiguous()


def check_rate(rate: float) -> float:
    if not isinstance(rate, (int, float)) or not 0.0 < rate < 1.0:
        raise ValueError(f"pruning rate {rate!r} must be a number in (0, 1)")
    return float(rate)


def normal_quantile(rate: float) -> float:
    """t = Phi^-1((1 + rate) / 2): a fraction `rate` of N(0, 1) has |x| < t."""
    return statistics.NormalDist().inv_cdf((1.0 + check_rate(rate)) / 2.0)


def prune_threshold(g: Tensor, rate: float) -> Tensor:
    """tau (a 0-d float32 tensor on g's device, no host sync) for target pruning rate `rate`.

    sigma is estimated as sqrt(pi/2) * mean|g|, because E|g| = sigma * sqrt(2/pi) for N(0, sigma^2):
    one read of g and no sort, as the paper intends: tau from the gradient distribution, not from a sort.
    """
    quantile = (1.0 + check_rate(rate)) / 2.0
    mean_abs = torch.linalg.vector_norm(g.detach(), ord=1, dtype=torch.float32) / max(g.numel(), 1)  # no temp
    sigma = mean_abs * math.sqrt(math.pi / 2.0)
    return sigma * torch.special.ndtri(sigma.new_tensor(quantile))  # = normal_quantile(rate), traceable


def expected_sparsity(rate: float) -> float:
    """Fraction of exact zeros that pruning at `rate` leaves on N(0, sigma^2) data.

    A fraction `rate` falls below tau, but a pruned element survives as +-tau with probability
    |g|/tau, so zeros = rate - E[|g|; |g| < tau] / tau = rate - sqrt(2/pi) (1 - exp(-t^2/2)) / t.
    """
    t = normal_quantile(rate)
    return rate - math.sqrt(2.0 / math.pi) * (1.0 - math.exp(-t * t / 2.0)) / t


# ---------------------------------------------------------------- fast paths

# Random bits on both fast paths: u = top 24 bits of fmix32(fmix32(i ^ k0) + k1) for element i, murmur3's
# 32-bit finaliser with keys from the seed (kernels/_common/random.py `sparsify_keys`, `tl_sparsify_hash`;
# random.h), so for one seed the C++ and Triton paths give the same bits.

if triton is not None:
    @triton.jit
    def _prune_kernel(g_ptr, out_ptr, tau_ptr, n, k0, k1, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        t = tl.load(tau_ptr).to(tl.float32)
        u = tl_uniform24(tl_sparsify_hash(offs, k0, k1))  # uniform on [0, 1), 2^-24 grid
        a = tl.abs(x)
        kept = tl.where(u * t < a, tl.where(x < 0, -t, t), 0.0)  # P(kept) = |x| / tau
        tl.store(out_ptr + offs, tl.where(a < t, kept, x).to(out_ptr.dtype.element_ty), mask=mask)


def _prune_triton(g: Tensor, tau: Tensor, seed: int) -> Tensor:
    src = g.contiguous()
    out = torch.empty_like(src)
    n = src.numel()
    if n >= 2**31:  # int32 offsets in the kernel
        raise ValueError(f"the Triton path takes fewer than 2^31 elements, got {n}")
    if n:
        t = tau.to(device=g.device, dtype=torch.float32).reshape(1)
        _prune_kernel[(triton.cdiv(n, _BLOCK),)](src, out, t, n, *krandom.sparsify_keys(int(seed)), BLOCK=_BLOCK)
    return out


def _prune_cpp(g: Tensor, tau: Tensor, seed: int) -> Tensor:
    ops = build.load("sparsify")
    if g.dtype == torch.float32:
        return ops.prune_grad(g, tau, seed)
    return ops.prune_grad(g.float(), tau, seed).to(g.dtype)  # bf16/fp16 gradients: compute in fp32


# Any floating dtype: the C++ path computes bf16/fp16 gradients in fp32.
_PRUNE_GRAD = dispatch.Implementations(
    "prune_grad", dispatch.reference(prune_grad_reference), dispatch.cpp("sparsify", _prune_cpp),
    dispatch.triton(_prune_triton))


# ---------------------------------------------------------------- the custom op

@torch.library.custom_op("effitrain::prune_grad", mutates_args=())
def prune_grad_op(g: Tensor, tau: Tensor, seed: int) -> Tensor:
    """Stochastic activation-gradient pruning, on the path `_PRUNE_GRAD` picks for g's device."""
    return _PRUNE_GRAD.pick("auto", g).fn(g, tau, seed)


@prune_grad_op.register_fake
def _(g: Tensor, tau: Tensor, seed: int) -> Tensor:
    return torch.empty(g.shape, dtype=g.dtype, device=g.device)


def _backward(ctx, grad: Tensor):
    """Straight-through: E[prune(g)] = g, so the derivative of the expectation is the identity."""
    return grad, None, None


prune_grad_op.register_autograd(_backward)


def prune_grad(g: Tensor, tau: Tensor | float, seed: int | None = None, impl: str = "auto") -> Tensor:
    """Prune `g` at threshold `tau`; `seed=None` draws one from torch's global generator.

    impl="auto" goes through the custom op (straight-through gradient); a path name runs that
    path directly (kernels/_common/dispatch.py)."""
    dispatch.check_impl(impl)
    if not isinstance(g, Tensor) or not g.is_floating_point():
        raise ValueError(f"g must be a floating-point tensor, got {type(g).__name__} "
                         f"{getattr(g, 'dtype', '')}")
    if not isinstance(tau, Tensor) and not (isinstance(tau, (int, float)) and tau >= 0 and math.isfinite(tau)):
        raise ValueError(f"tau {tau!r} must be a finite number >= 0 or a one-element tensor")
    tau_t = torch.as_tensor(tau, dtype=torch.float32, device=g.device)
    if tau_t.numel() != 1:
        raise ValueError(f"tau must have one element, got shape {tuple(tau_t.shape)}")
    seed = krandom.seed_or_draw(seed)
    if impl == "auto":
        return prune_grad_op(g, tau_t.reshape(()), seed)
    return _PRUNE_GRAD.pick(impl, g).fn(g, tau_t.reshape(()), seed)


# ---------------------------------------------------------------- benchmark registration

def _bench(device: str):
    """16 Mi fp32 gradients (64 MiB, past the caches); work = bytes read + written."""
    g = torch.randn(1 << 24, device=device)
    tau = prune_threshold(g, 0.9)
    return (lambda: prune_grad(g, tau, seed=0)), 8.0 * g.numel(), None


register_bench(OpBench("prune_grad", "memory", _bench,
                       note="stochastic activation-gradient pruning (Ye et al. 2019), fp32, tau at p = 0.9"))


# ---------------------------------------------------------------- the contract test's declaration

def _contract_inputs() -> tuple[Tensor, Tensor]:
    """Gradients on both sides of tau (some exactly at it, some zero), and tau as the op takes it."""
    gen = torch.Generator().manual_seed(0)
    g = torch.cat([torch.randn(60, generator=gen) * 2.0, torch.tensor([1.5, -1.5, 0.0, -0.0])])
    return g.repeat(16), torch.tensor(1.5)  # repeated: the contract test pools elements


def _opchecks() -> list[tuple[object, tuple]]:
    op = torch.ops.effitrain.prune_grad
    return [(op, (torch.randn(6, 7), torch.tensor(0.8), 5)),
            (op, (torch.randn(4, 3, requires_grad=True), torch.tensor(0.5), 1))]


CONTRACT = FamilyContract("sparsify", ops=(
    OpCase("prune_grad", lambda inputs, seed, impl: prune_grad(inputs[0], inputs[1], seed, impl),
           _contract_inputs, _PRUNE_GRAD, stochastic=True, bad_inputs=(
               lambda: prune_grad(torch.randn(3), 1.0, impl="fortran"),
               lambda: prune_grad(torch.randn(3), -1.0),
               lambda: prune_grad(torch.arange(3), 1.0),
               lambda: prune_grad(torch.randn(3), torch.ones(2)),
               lambda: prune_grad(torch.randn(3), 1.0, seed=2**63),
           )),
), opchecks=_opchecks)
