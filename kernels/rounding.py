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
they give the same distribution, not the same bits (the C++ and Triton paths share the hash and
give the same bits as each other). Deterministic ops match the reference exactly.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels import _build
from kernels._machine import OpBench, register_bench

ROUNDINGS = ("nearest", "stochastic")
IMPLS = ("auto", "reference", "cpp", "triton")
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


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A seed for one stochastic op call, from torch's (default or given) CPU generator."""
    return int(torch.randint(2**31 - 1, (), generator=generator))


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
# Random bits: the same counter-based hash as the C++ path (csrc/rounding.cpp), so for one seed
# the two fast paths give the same bits. (tl.rand would also do; the hash keeps CPU and GPU alike
# and runs under the interpreter even when triton was imported before TRITON_INTERPRET was set.)

def _fmix32_host(h: int) -> int:
    """murmur3's 32-bit finaliser, on the host (for the keys)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _keys(seed: int) -> tuple[int, int]:
    """The hash keys of csrc/rounding.cpp `keys_for(seed, 0)`, as signed int32 kernel arguments."""
    k1 = _fmix32_host((seed & 0xFFFFFFFF) ^ _fmix32_host(0x9E3779B9))
    k2 = _fmix32_host(((seed >> 32) + 0x7F4A7C15 + k1) & 0xFFFFFFFF)
    return tuple(k - 2**32 if k >= 2**31 else k for k in (k1, k2))


@triton.jit
def _fmix32(h):
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


@triton.jit
def _hash(offs, k1, k2):
    index = offs.to(tl.uint32, bitcast=True)
    return _fmix32(index * 0x9E3779B1 + k1.to(tl.uint32, bitcast=True)) ^ k2.to(tl.uint32, bitcast=True)


@triton.jit
def _round_fixed_kernel(x_ptr, out_ptr, n, scale, inv_scale, lo, hi, k1, k2,
                        STOCHASTIC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    y = tl.load(x_ptr + offs, mask=mask, other=0.0) * scale
    y = tl.where(y < lo, lo, tl.where(y > hi, hi, y))
    if STOCHASTIC:
        floor = tl.floor(y)
        u = (_hash(offs, k1, k2) >> 8).to(tl.float32) * 5.9604644775390625e-08  # [0, 1), 2^-24 grid
        q = floor + tl.where(u < y - floor, 1.0, 0.0)
    else:
        q = tl.ceil(y - 0.5) + 0.0
    tl.store(out_ptr + offs, q * inv_scale, mask=mask)


@triton.jit
def _stochastic_bf16_kernel(x_ptr, out_ptr, n, k1, k2, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    bits = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.uint32, bitcast=True)
    r = _hash(offs, k1, k2) >> 16
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
    h = _hash(offs, k1, k2)
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
    _round_fixed_kernel[_grid(x.numel())](x, out, x.numel(), 2.0**fl, 2.0**-fl, -top, top - 1, *_keys(seed),
                                          STOCHASTIC=stochastic, BLOCK=_BLOCK)
    return out


def _stochastic_round_triton(x: torch.Tensor, dtype: torch.dtype, seed: int) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    kernel = _stochastic_fp16_kernel if dtype == torch.float16 else _stochastic_bf16_kernel
    kernel[_grid(x.numel())](x, out.view(torch.int16), x.numel(), *_keys(seed), BLOCK=_BLOCK)
    return out


# ---------------------------------------------------------------- C++ fast path and dispatch

@functools.cache
def _cpp():
    """The compiled ops, or None when the C++ fast path cannot build here (then: the reference)."""
    try:
        return _build.load("rounding")
    except _build.FastPathUnavailable:
        return None


def _round_fixed_cpp(x, il, fl, stochastic, seed, out=None):
    ops = _cpp()
    if ops is None:
        result = round_fixed_reference(x, il, fl, stochastic, seed).contiguous()
        return result if out is None else out.copy_(result)
    if out is None:
        return ops.round_fixed(x, il, fl, stochastic, seed)
    ops.round_fixed_out(x, il, fl, stochastic, seed, out)
    return out


def _stochastic_round_cpp(x, dtype, seed):
    ops = _cpp()
    if ops is None:
        return stochastic_round_float_reference(x, dtype, seed).contiguous()
    fn = ops.stochastic_round_fp16 if dtype == torch.float16 else ops.stochastic_round_bf16
    return fn(x, seed)


@torch.library.custom_op("effitrain::round_fixed", mutates_args=(), device_types="cpu")
def _round_fixed_op(x: torch.Tensor, il: int, fl: int, stochastic: bool, seed: int) -> torch.Tensor:
    _check_fixed(x, il, fl)
    return _round_fixed_cpp(x, il, fl, stochastic, seed)


@_round_fixed_op.register_kernel("cuda")
def _(x, il, fl, stochastic, seed):
    _check_fixed(x, il, fl)
    return _round_fixed_triton(x, il, fl, stochastic, seed)


@_round_fixed_op.register_fake
def _(x, il, fl, stochastic, seed):
    return x.new_empty(x.shape)  # contiguous, as the kernels return


def _check_out(x: torch.Tensor, out: torch.Tensor) -> None:
    if out.dtype != torch.float32 or not out.is_contiguous() or out.shape != x.shape or out.device != x.device:
        raise ValueError(f"round_fixed: out must be a contiguous float32 tensor of shape {tuple(x.shape)} on "
                         f"{x.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")


@torch.library.custom_op("effitrain::round_fixed_out", mutates_args=("out",), device_types="cpu")
def _round_fixed_out_op(x: torch.Tensor, il: int, fl: int, stochastic: bool, seed: int, out: torch.Tensor) -> None:
    """`round_fixed` written into `out` (which may be `x`): no allocation, for parameters and benchmarks."""
    _check_fixed(x, il, fl)
    _check_out(x, out)
    _round_fixed_cpp(x, il, fl, stochastic, seed, out)


@_round_fixed_out_op.register_kernel("cuda")
def _(x, il, fl, stochastic, seed, out):
    _check_fixed(x, il, fl)
    _check_out(x, out)
    _round_fixed_triton(x, il, fl, stochastic, seed, out)


@_round_fixed_out_op.register_fake
def _(x, il, fl, stochastic, seed, out):
    return None


@torch.library.custom_op("effitrain::stochastic_round_float", mutates_args=(), device_types="cpu")
def _stochastic_round_op(x: torch.Tensor, dtype: torch.dtype, seed: int) -> torch.Tensor:
    _check_float(x, dtype)
    return _stochastic_round_cpp(x, dtype, seed)


@_stochastic_round_op.register_kernel("cuda")
def _(x, dtype, seed):
    _check_float(x, dtype)
    return _stochastic_round_triton(x, dtype, seed)


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

def _pick(impl: str, x: torch.Tensor, paths: dict):
    if impl not in IMPLS:
        raise ValueError(f"impl '{impl}' is not one of {', '.join(IMPLS)}")
    if impl == "cpp" and x.device.type != "cpu":
        raise ValueError(f"impl 'cpp' needs a CPU tensor, got {x.device}")
    return paths[impl]


def round_fixed(x: torch.Tensor, il: int, fl: int, rounding: str = "nearest", seed: int | None = None,
                impl: str = "auto", generator: torch.Generator | None = None,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Round fp32 `x` to fixed point <il, fl> ("nearest" or "stochastic").

    impl="auto" goes through the custom op: differentiable (straight-through) unless `out` is given
    (then it writes into `out`, which may be `x`, and returns it; use it under no_grad). The other
    impls call one path directly, for tests and benchmarks.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding '{rounding}' is not one of {', '.join(ROUNDINGS)}")
    _check_fixed(x, il, fl)
    seed = draw_seed(generator) if seed is None and rounding == "stochastic" else (seed or 0)
    stochastic = rounding == "stochastic"
    if out is not None:
        _check_out(x, out)
        if impl == "auto":
            torch.ops.effitrain.round_fixed_out(x, il, fl, stochastic, seed, out)
            return out
        result = round_fixed(x, il, fl, rounding, seed, impl)
        return out.copy_(result)
    fn = _pick(impl, x, {"auto": torch.ops.effitrain.round_fixed, "reference": round_fixed_reference,
                         "cpp": _round_fixed_cpp, "triton": _round_fixed_triton})
    return fn(x, il, fl, stochastic, seed)


def stochastic_round(x: torch.Tensor, dtype: torch.dtype, seed: int | None = None, impl: str = "auto",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastically round fp32 `x` to `dtype` (torch.float16 or torch.bfloat16); straight-through gradient."""
    _check_float(x, dtype)
    seed = draw_seed(generator) if seed is None else seed
    fn = _pick(impl, x, {"auto": torch.ops.effitrain.stochastic_round_float,
                         "reference": stochastic_round_float_reference, "cpp": _stochastic_round_cpp,
                         "triton": _stochastic_round_triton})
    return fn(x, dtype, seed)


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
                       note="fp32 -> <4,12> stochastic into a preallocated output, 2^25 elements; 4 B read + 4 B written"))
register_bench(OpBench("round_fixed_nearest", "memory", _bench_fixed(False, into=True), goal=0.7,
                       note="fp32 -> <4,12> nearest into a preallocated output, 2^25 elements"))
register_bench(OpBench("round_fixed_stochastic_alloc", "memory", _bench_fixed(True, into=False),
                       note="as round_fixed_stochastic, allocating its output (page faults included; torch's "
                            "own x * 2 reaches about 0.4 of copy this way on this CPU)"))
register_bench(OpBench("stochastic_round_bf16", "memory", _bench_float(torch.bfloat16),
                       note="fp32 -> bf16 stochastic, allocating, 2^25 elements; 4 B read + 2 B written"))
register_bench(OpBench("stochastic_round_fp16", "memory", _bench_float(torch.float16),
                       note="fp32 -> fp16 stochastic, allocating, 2^25 elements; 4 B read + 2 B written"))
