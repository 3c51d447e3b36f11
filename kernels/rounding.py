"""Rounding ops: fp32 to a signed fixed-point grid, and stochastic rounding of fp32 to fp16 / bf16.

Each op has a plain-torch `*_reference` (the specification), a `torch.library.custom_op`
(`effitrain::round_fixed`, `effitrain::stochastic_round_float`) whose CPU kernel is the C++ fast
path (`kernels/csrc/rounding.cpp`, falling back to the reference when it cannot build) and whose
CUDA kernel is Triton, a fake (shape) implementation and an autograd rule.

Fixed point <il, fl> (Gupta et al. 2015, Section 2): a word of il + fl bits, step 2^-fl, range
[-2^(il-1), 2^(il-1) - 2^-fl]; values outside saturate to the ends. Output stays fp32 (each value
is exactly on the grid), which is how training simulates the narrow word. "nearest" breaks ties
toward -inf (the paper's Eq. 1 rounds x = floor + step/2 down); "stochastic" rounds up with
probability equal to the remainder in steps, so E[round(x)] = x inside the range (Eq. 2). A zero
result is +0; NaN stays NaN.

Stochastic rounding to fp16 / bf16 is unbiased between the two neighbouring representable values.
Overflow: the format is treated as if it went on one more step past its largest finite value, and
that step is returned as inf. So fp16 values in (65504, 65536) become inf with probability
(|x| - 65504) / 32 and 65504 otherwise, |x| >= 65536 gives inf; bf16 likewise with 2^128 as the
step past 3.3895e38. NaN stays NaN, inf stays inf, the sign is kept (also of zero).

Autograd (all ops): straight-through. Rounding is piecewise constant, so its true derivative is
zero almost everywhere; the gradient passes unchanged (cast back to fp32), as the paper's training
treats rounding as part of the number format, not as a layer.

Random numbers: ops take an integer `seed` and are deterministic given it. The Python wrappers
draw it from torch's generator, so `torch.manual_seed` makes runs repeatable. The reference uses
`torch.rand` with a generator seeded by `seed`; the fast paths hash (seed, element index), so
they give the same distribution, not the same bits (the C++ and Triton paths share the hash,
kernels/_common/random.py and random.h, and give the same bits as each other). Deterministic
ops match the reference exactly.

Paths: each op declares its implementations once (`_ROUND_FIXED`, `_STOCHASTIC_ROUND`); which one
runs is decided by kernels/_common/dispatch.py (`impl=`, else `EFFITRAIN_KERNEL_IMPL`, else C++ on
CPU and Triton on CUDA, the reference where neither can run).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._common import build, dispatch
from kernels._common import random as krandom
from kernels._common.contract import FamilyContract, OpCase
from kernels._common.machine import OpBench, register_bench
from kernels._common.random import tl_rounding_hash, tl_uniform24

ROUNDINGS = ("nearest", "stochastic")
IMPLS = dispatch.IMPLS
_MANTISSA_BITS = {torch.float16: 10, torch.bfloat16: 7}  # stored fraction bits
_MIN_EXPONENT = {torch.float16: -14, torch.bfloat16: -126}  # exponent of the smallest normal


def _check_fixed(x: torch.Tensor, il: int, fl: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        raise ValueError(f"round_fixed: x must be a float32 tensor, got {getattr(x, 'dtype', type(x))}")
    if not (isinstance(il, int) and isinstance(fl, int) and il >= 1 and fl >= 0 and il + fl <= 24):
        raise ValueError(f"round_fixed: il={il!r}, fl={fl!r}; expected integers il >= 1, fl >= 0, il + fl <= 24 "
                         f"(a word of at most 24 bits is exact in fp32)")


def _check_float(x: torch.Tensor, dtype: torch.dtype) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        raise ValueError(f"stochastic_round: x must be a float32 tensor, got {getattr(x, 'dtype', type(x))}")
    if dtype not in _MANTISSA_BITS:
        raise ValueError(f"stochastic_round: dtype {dtype} is not torch.float16 or torch.bfloat16")


draw_seed = krandom.draw_seed  # public name: a seed from torch's (default or given) CPU generator


def _uniform(x: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return torch.rand(x.shape, generator=gen, device=x.device, dtype=torch.float32)


# ---------------------------------------------------------------- references (the specification)

def round_fixed_reference(x: torch.Tensor, il: int, fl: int, stochastic: bool, seed: int) -> torch.Tensor:
    """Round fp32 `x` to the grid <il, fl>, saturating; fp32 out (see the module docstring)."""
    _check_fixed(x, il, fl)
    top = 2.0 ** (il + fl - 1)  # grid units; x * 2^fl is exact
    y = (x * 2.0**fl).clamp(-top, top - 1)  # NaN stays NaN
    if stochastic:
        floor = torch.floor(y)
        q = floor + (_uniform(x, seed) < y - floor).float()
    else:
        q = torch.ceil(y - 0.5) + 0.0  # ties toward -inf (Eq. 1); + 0.0 makes a zero +0
    return q * 2.0**-fl


def stochastic_round_float_reference(x: torch.Tensor, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Round fp32 `x` to fp16/bf16 stochastically between its two neighbours (module docstring)."""
    _check_float(x, dtype)
    a = x.abs()
    _, exponent = torch.frexp(a)  # a = m * 2^exponent, m in [0.5, 1)
    step = torch.ldexp(torch.ones_like(a), (exponent - 1).clamp(min=_MIN_EXPONENT[dtype]) - _MANTISSA_BITS[dtype])
    units = a / step  # exact: step is a power of two
    floor = torch.floor(units)
    q = (floor + (_uniform(x, seed) < units - floor).float()) * step  # past the largest finite: inf on cast
    q = torch.where(torch.isfinite(x), q, a)
    return torch.copysign(q, x).to(dtype)


# ---------------------------------------------------------------- Triton kernels (CUDA; CPU under the interpreter)
# Random bits: the same counter-based hash as the C++ path (kernels/_common/random.py `rounding_keys`,
# `tl_rounding_hash`; random.h), so for one seed the two fast paths give the same bits.

@triton.jit
def _round_fixed_kernel(x_ptr, out_ptr, n, scale, inv_scale, lo, hi, k1, k2,
                        STOCHASTIC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    y = tl.load(x_ptr + offs, mask=mask, other=0.0) * scale
    y = tl.where(y < lo, lo, tl.where(y > hi, hi, y))
    if STOCHASTIC:
        floor = tl.floor(y)
        u = tl_uniform24(tl_rounding_hash(offs, k1, k2))  # [0, 1), 2^-24 grid
        q = floor + tl.where(u < y - floor, 1.0, 0.0)
    else:
        q = tl.ceil(y - 0.5) + 0.0
    tl.store(out_ptr + offs, q * inv_scale, mask=mask)


@triton.jit
def _stochastic_bf16_kernel(x_ptr, out_ptr, n, k1, k2, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    bits = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.uint32, bitcast=True)
    r = tl_rounding_hash(offs, k1, k2) >> 16
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    res = tl.where(nan, (bits >> 16) | 0x40, (bits + r) >> 16)  # add 16 random low bits, truncate
    tl.store(out_ptr + offs, res.to(tl.int16), mask=mask)


@triton.jit
def _stochastic_fp16_kernel(x_ptr, out_ptr, n, k1, k2, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    bits = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.uint32, bitcast=True)
    sign = (bits >> 16) & 0x8000
    mag = bits & 0x7FFFFFFF
    h = tl_rounding_hash(offs, k1, k2)
    up = (mag + (h >> 19)) & 0xFFFFE000  # normal range: add 13 random low bits, truncate
    normal = tl.where(up >= 0x47800000, 0x7C00, (((up >> 23) - 112) << 10) | ((up >> 13) & 0x3FF))
    # fp16 subnormal range: |x| = m * 2^-sh in units of 2^-24 (as in csrc/rounding.cpp)
    subnormal = mag < 0x38800000
    e = tl.maximum(mag >> 23, 1)
    m = (mag & 0x7FFFFF) | tl.where((mag >> 23) > 0, 0x800000, 0)
    sh = tl.where(subnormal, 126 - e, 14)
    whole = tl.where(sh < 32, m >> (sh & 31), 0)
    frac = tl.where(sh < 32, m << ((32 - sh) & 31), tl.where(sh < 64, m >> ((sh - 32) & 31), 0))
    sub = whole + tl.where(h < frac, 1, 0)
    res = tl.where(subnormal, sub, normal)
    res = tl.where(mag > 0x7F800000, 0x7E00, res)
    tl.store(out_ptr + offs, (sign | res).to(tl.int16), mask=mask)


_BLOCK = 1024


def _grid(n: int) -> tuple[int]:
    if n >= 2**31:
        raise ValueError(f"rounding (Triton): {n} elements; the kernels index with int32, expected < 2^31")
    return (triton.cdiv(n, _BLOCK),)


def _round_fixed_triton(x: torch.Tensor, il: int, fl: int, stochastic: bool, seed: int,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty_like(x) if out is None else out
    top = 2.0 ** (il + fl - 1)
    _round_fixed_kernel[_grid(x.numel())](x, out, x.numel(), 2.0**fl, 2.0**-fl, -top, top - 1,
                                          *krandom.rounding_keys(seed), STOCHASTIC=stochastic, BLOCK=_BLOCK)
    return out


def _stochastic_round_triton(x: torch.Tensor, dtype: torch.dtype, seed: int) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    kernel = _stochastic_fp16_kernel if dtype == torch.float16 else _stochastic_bf16_kernel
    kernel[_grid(x.numel())](x, out.view(torch.int16), x.numel(), *krandom.rounding_keys(seed), BLOCK=_BLOCK)
    return out


# ---------------------------------------------------------------- C++ fast path and the implementations

def _round_fixed_cpp(x, il, fl, stochastic, seed, out=None):
    ops = build.load("rounding")
    if out is None:
        return ops.round_fixed(x, il, fl, stochastic, seed)
    ops.round_fixed_out(x, il, fl, stochastic, seed, out)
    return out


def _stochastic_round_cpp(x, dtype, seed):
    ops = build.load("rounding")
    fn = ops.stochastic_round_fp16 if dtype == torch.float16 else ops.stochastic_round_bf16
    return fn(x, seed)


def _round_fixed_ref(x, il, fl, stochastic, seed, out=None):
    """The reference with the fast paths' calling convention: contiguous, or written into `out`."""
    result = round_fixed_reference(x, il, fl, stochastic, seed).contiguous()
    return result if out is None else out.copy_(result)


def _stochastic_round_ref(x, dtype, seed):
    return stochastic_round_float_reference(x, dtype, seed).contiguous()


# fp32 in, so no dtype filter: the ops refuse other dtypes before any path runs.
_ROUND_FIXED = dispatch.Implementations(
    "round_fixed", dispatch.reference(_round_fixed_ref), dispatch.cpp("rounding", _round_fixed_cpp),
    dispatch.triton(_round_fixed_triton))
_STOCHASTIC_ROUND = dispatch.Implementations(
    "stochastic_round", dispatch.reference(_stochastic_round_ref), dispatch.cpp("rounding", _stochastic_round_cpp),
    dispatch.triton(_stochastic_round_triton))


# ---------------------------------------------------------------- custom ops (one kernel for every device)

@torch.library.custom_op("effitrain::round_fixed", mutates_args=())
def _round_fixed_op(x: torch.Tensor, il: int, fl: int, stochastic: bool, seed: int) -> torch.Tensor:
    _check_fixed(x, il, fl)
    return _ROUND_FIXED.pick("auto", x).fn(x, il, fl, stochastic, seed)


@_round_fixed_op.register_fake
def _(x, il, fl, stochastic, seed):
    return x.new_empty(x.shape)  # contiguous, as the kernels return


def _check_out(x: torch.Tensor, out: torch.Tensor) -> None:
    if out.dtype != torch.float32 or not out.is_contiguous() or out.shape != x.shape or out.device != x.device:
        raise ValueError(f"round_fixed: out must be a contiguous float32 tensor of shape {tuple(x.shape)} on "
                         f"{x.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")


@torch.library.custom_op("effitrain::round_fixed_out", mutates_args=("out",))
def _round_fixed_out_op(x: torch.Tensor, il: int, fl: int, stochastic: bool, seed: int, out: torch.Tensor) -> None:
    """`round_fixed` written into `out` (which may be `x`): no allocation, for parameters and benchmarks."""
    _check_fixed(x, il, fl)
    _check_out(x, out)
    _ROUND_FIXED.pick("auto", x).fn(x, il, fl, stochastic, seed, out)


@_round_fixed_out_op.register_fake
def _(x, il, fl, stochastic, seed, out):
    return None


@torch.library.custom_op("effitrain::stochastic_round_float", mutates_args=())
def _stochastic_round_op(x: torch.Tensor, dtype: torch.dtype, seed: int) -> torch.Tensor:
    _check_float(x, dtype)
    return _STOCHASTIC_ROUND.pick("auto", x).fn(x, dtype, seed)


@_stochastic_round_op.register_fake
def _(x, dtype, seed):
    return x.new_empty(x.shape, dtype=dtype)


def _straight_through(ctx, grad: torch.Tensor):
    """Rounding's gradient: passed through unchanged (as fp32, the input's dtype); none for the knobs."""
    return (grad.float(),) + (None,) * ctx.n_knobs


def _context(n_knobs: int):
    def setup_context(ctx, inputs, output) -> None:
        ctx.n_knobs = n_knobs

    return setup_context


_round_fixed_op.register_autograd(_straight_through, setup_context=_context(4))
_stochastic_round_op.register_autograd(_straight_through, setup_context=_context(2))


# ---------------------------------------------------------------- public API

def round_fixed(x: torch.Tensor, il: int, fl: int, rounding: str = "nearest", seed: int | None = None,
                impl: str = "auto", generator: torch.Generator | None = None,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Round fp32 `x` to fixed point <il, fl> ("nearest" or "stochastic").

    impl="auto" goes through the custom op: differentiable (straight-through) unless `out` is given
    (then it writes into `out`, which may be `x`, and returns it; use it under no_grad). The other
    impls call one path directly, for tests and benchmarks (kernels/_common/dispatch.py).
    `seed=None` draws one from `generator` (default: torch's) for stochastic rounding.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding '{rounding}' is not one of {', '.join(ROUNDINGS)}")
    _check_fixed(x, il, fl)
    dispatch.check_impl(impl)
    stochastic = rounding == "stochastic"  # nearest draws no seed (and uses none)
    seed = krandom.seed_or_draw(seed, generator) if stochastic else krandom.check_seed(seed or 0)
    if out is not None:
        _check_out(x, out)
    if impl == "auto" and out is None:
        return torch.ops.effitrain.round_fixed(x, il, fl, stochastic, seed)
    if impl == "auto":
        torch.ops.effitrain.round_fixed_out(x, il, fl, stochastic, seed, out)
        return out
    result = _ROUND_FIXED.pick(impl, x).fn(x, il, fl, stochastic, seed)
    return result if out is None else out.copy_(result)


def stochastic_round(x: torch.Tensor, dtype: torch.dtype, seed: int | None = None, impl: str = "auto",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastically round fp32 `x` to `dtype` (torch.float16 or torch.bfloat16); straight-through gradient."""
    _check_float(x, dtype)
    dispatch.check_impl(impl)
    seed = krandom.seed_or_draw(seed, generator)
    if impl == "auto":
        return torch.ops.effitrain.stochastic_round_float(x, dtype, seed)
    return _STOCHASTIC_ROUND.pick(impl, x).fn(x, dtype, seed)


# ---------------------------------------------------------------- quick benchmarks (`effitrain bench kernels`)

BENCH_NUMEL = 1 << 25  # 128 MiB of fp32: far beyond the caches


def _bench_fixed(stochastic: bool, into: bool):
    """Into a preallocated output (as the copy it is measured against), or allocating a fresh one
    (then, on CPU, the page faults of a new 128 MiB buffer are part of the time, as for `x * 2`)."""

    def make(device: str):
        x = torch.randn(BENCH_NUMEL, device=device)
        out = torch.empty_like(x)
        if into:
            return (lambda: torch.ops.effitrain.round_fixed_out(x, 4, 12, stochastic, 1234, out)), 8.0 * x.numel(), None
        return (lambda: torch.ops.effitrain.round_fixed(x, 4, 12, stochastic, 1234)), 8.0 * x.numel(), None

    return make


def _bench_float(dtype: torch.dtype):
    def make(device: str):
        x = torch.randn(BENCH_NUMEL, device=device)
        return (lambda: torch.ops.effitrain.stochastic_round_float(x, dtype, 1234)), 6.0 * x.numel(), None

    return make


register_bench(OpBench("round_fixed_stochastic", "memory", _bench_fixed(True, into=True), goal=0.7,
                       note="fp32 -> <4,12> stochastic into a preallocated output, 2^25 elements; "
                            "4 B read + 4 B written"))
register_bench(OpBench("round_fixed_nearest", "memory", _bench_fixed(False, into=True), goal=0.7,
                       note="fp32 -> <4,12> nearest into a preallocated output, 2^25 elements"))
register_bench(OpBench("round_fixed_stochastic_alloc", "memory", _bench_fixed(True, into=False),
                       note="as round_fixed_stochastic, allocating its output (page faults included; torch's "
                            "own x * 2 reaches about 0.4 of copy this way on this CPU)"))
register_bench(OpBench("stochastic_round_bf16", "memory", _bench_float(torch.bfloat16),
                       note="fp32 -> bf16 stochastic, allocating, 2^25 elements; 4 B read + 2 B written"))
register_bench(OpBench("stochastic_round_fp16", "memory", _bench_float(torch.float16),
                       note="fp32 -> fp16 stochastic, allocating, 2^25 elements; 4 B read + 2 B written"))


# ---------------------------------------------------------------- the contract test's declaration

def _stochastic_inputs() -> tuple[torch.Tensor]:
    """Values between grid points (and fp16 subnormals, zeros, saturating ones), each 16 times: the
    contract test pools elements, so a small bias shows."""
    gen = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(48, generator=gen) * 3,
                        torch.tensor([3.1, -7.25, 0.001, -0.999, 1e-6, -3e-7, 5e-8, 0.0, -0.0, 1000.3])])
    return (values.repeat(16),)


def _nearest_inputs() -> tuple[torch.Tensor]:
    """Ties, grid points, range ends, out-of-range, signed zeros, subnormals, inf and NaN, plus random."""
    gen = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.0**-9, -(2.0**-9), 3 * 2.0**-9, 127.99, 128.0,
                            -128.0, -129.0, 1e30, -1e30, 1e-42, float("inf"), float("-inf"), float("nan")])
    return (torch.cat([special, torch.randn(2000, generator=gen) * 4, torch.randn(500, generator=gen) * 300]),)


def _opchecks() -> list[tuple[object, tuple]]:
    x = torch.randn(33, 5)
    ops = torch.ops.effitrain
    return [(ops.round_fixed, (x, 4, 12, True, 7)), (ops.round_fixed, (x.t(), 8, 8, False, 0)),  # non-contiguous
            (ops.stochastic_round_float, (x, torch.float16, 7)), (ops.stochastic_round_float, (x, torch.bfloat16, 7)),
            (ops.round_fixed_out, (x, 4, 12, True, 7, torch.empty_like(x)))]


_BAD_ROUND_FIXED = (
    lambda: round_fixed(torch.randn(3), 0, 8),
    lambda: round_fixed(torch.randn(3), 16, 16),
    lambda: round_fixed(torch.randn(3).double(), 4, 4),
    lambda: round_fixed(torch.randn(3), 4, 4, rounding="up"),
    lambda: round_fixed(torch.randn(3), 4, 4, impl="cuda"),
    lambda: round_fixed(torch.randn(3), 4, 4, out=torch.empty(4)),
    lambda: round_fixed(torch.randn(3), 4, 4, "stochastic", seed=-1),
)
_BAD_STOCHASTIC_ROUND = (
    lambda: stochastic_round(torch.randn(3), torch.float32),
    lambda: stochastic_round(torch.randn(3).half(), torch.bfloat16),
    lambda: stochastic_round(torch.randn(3), torch.float16, impl="fast"),
)


def _stochastic_round_case(dtype: torch.dtype) -> OpCase:
    return OpCase(f"stochastic_round[{str(dtype).removeprefix('torch.')}]",
                  lambda inputs, seed, impl: stochastic_round(inputs[0], dtype, seed, impl),
                  _stochastic_inputs, _STOCHASTIC_ROUND, stochastic=True, bad_inputs=_BAD_STOCHASTIC_ROUND)


CONTRACT = FamilyContract("rounding", ops=(
    OpCase("round_fixed[nearest]", lambda inputs, seed, impl: round_fixed(inputs[0], 8, 8, "nearest", seed, impl),
           _nearest_inputs, _ROUND_FIXED, stochastic=False, bad_inputs=_BAD_ROUND_FIXED),
    OpCase("round_fixed[stochastic]",
           lambda inputs, seed, impl: round_fixed(inputs[0], 4, 12, "stochastic", seed, impl),
           _stochastic_inputs, _ROUND_FIXED, stochastic=True, bad_inputs=_BAD_ROUND_FIXED),
    _stochastic_round_case(torch.float16),
    _stochastic_round_case(torch.bfloat16),
), opchecks=_opchecks)
