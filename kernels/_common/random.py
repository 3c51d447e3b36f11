"""Random numbers of the kernels: seed drawing, and the counter-based hashes of the fast paths.

Seeds. Every stochastic op takes an integer `seed` and is deterministic given it. When the caller
passes none, `seed_or_draw` takes one from torch's (default or given) CPU generator, so
`torch.manual_seed` makes runs repeatable; it consumes one `torch.randint` draw per call, as the
families always did (the global stream, and so every later random number, stays as before).

Hashes. The references draw `torch.rand` from a generator seeded with `seed`; the fast paths hash
(seed, element or draw index) instead, so they give the same distribution as the reference, not
the same bits. Each family's fast paths (C++ in `random.h`, Triton and host keys here) share one
scheme, so its C++ and Triton paths give the same bits for one seed, except where noted. The
three schemes differ, and stay so: the project promises the same bits, hence the same final
metrics, before and after kernels/_common existed.

- rounding: keys (k1, k2) = `rounding_keys(seed)`; element i draws
  h = fmix32(i * 0x9E3779B1 + k1) ^ k2 (one round of the finaliser; kernels/csrc/rounding.cpp says why).
- sparsify: keys (k0, k1) = `sparsify_keys(seed)`; h = fmix32(fmix32(i ^ k0) + k1) (two rounds).
  Unlike rounding, k1 does not depend on k0 and the index is xored in rather than Weyl-stepped.
- crs: the C++ sampler draws t-th uniform from splitmix64 (53 bits, `crs_uniform53` in random.h);
  the Triton sampler hashes fmix32(t * 0x9E3779B9 + `crs_key32(seed)`) (24 bits). So for crs the
  two fast paths do NOT give the same bits, only the same distribution.

A 24-bit uniform in [0, 1) is (h >> 8) * 2^-24 everywhere. fmix32 is murmur3's 32-bit finaliser
(Appleby, MurmurHash3.cpp `fmix32`); splitmix64's finaliser is Steele, Lea & Flood (OOPSLA 2014),
constants from Stafford's "Mix13" variant as in java.util.SplittableRandom.
"""

from __future__ import annotations

import operator

import torch

try:  # the Triton helpers are decorated at import (tests set TRITON_INTERPRET=1 first when there is no GPU)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton ships with torch on Linux
    triton = None

SEED_LIMIT = 2**63  # seeds are int64 in the C++ schemas
MASK32 = 0xFFFFFFFF
MASK64 = 0xFFFFFFFFFFFFFFFF
UNIFORM24 = 5.9604644775390625e-08  # 2^-24: top 24 hash bits -> a float in [0, 1)


# ---------------------------------------------------------------- seeds

def draw_seed(generator: torch.Generator | None = None) -> int:
    """A seed for one stochastic op call: one draw from torch's (default or given) CPU generator."""
    return int(torch.randint(2**31 - 1, (), generator=generator))


def check_seed(seed) -> int:
    """`seed` as a Python int in [0, 2^63) (ints, numpy ints and integer 0-d tensors pass), else ValueError."""
    try:
        value = operator.index(seed)
    except TypeError:
        value = None
    if value is None or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"seed={seed!r} must be a non-negative integer below 2**63")
    return value


def seed_or_draw(seed, generator: torch.Generator | None = None) -> int:
    """`seed` checked, or a fresh one from torch's generator when it is None."""
    return draw_seed(generator) if seed is None else check_seed(seed)


# ---------------------------------------------------------------- host side of the hashes (keys)

def fmix32(h: int) -> int:
    """murmur3's 32-bit finaliser on a Python int (a bijection of 32-bit words with full avalanche)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def splitmix64(z: int) -> int:
    """splitmix64's 64-bit finaliser on a Python int (the C++ `mix64` in random.h)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def as_int32(word: int) -> int:
    """A 32-bit word as the signed int32 a Triton kernel argument holds (the kernels bitcast it back)."""
    return word - 2**32 if word >= 2**31 else word


def rounding_keys(seed: int) -> tuple[int, int]:
    """random.h `rounding_keys(seed, 0)` (indices below 2^32), as signed int32 kernel arguments."""
    k1 = fmix32((seed & MASK32) ^ fmix32(0x9E3779B9))
    k2 = fmix32(((seed >> 32) + 0x7F4A7C15 + k1) & MASK32)
    return as_int32(k1), as_int32(k2)


def sparsify_keys(seed: int) -> tuple[int, int]:
    """random.h `sparsify_keys(seed, 0)` (indices below 2^32), as signed int32 kernel arguments.

    Differs from `rounding_keys`: k1 is not chained on k0 (kept so: same bits as before)."""
    seed &= MASK64
    k0 = fmix32((seed & MASK32) ^ fmix32(0x9E3779B9))
    k1 = fmix32(((seed >> 32) + 0x7F4A7C15) & MASK32)
    return as_int32(k0), as_int32(k1)


def crs_key32(seed: int) -> int:
    """The Triton crs sampler's 32-bit key: splitmix64 of a Weyl step of the seed, below 2^31.

    Below 2^31 so it passes as a plain int32. (The C++ sampler keys splitmix64 differently: random.h.)"""
    return splitmix64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & MASK64) % 2**31


# ---------------------------------------------------------------- Triton side of the hashes
# Our own hash rather than tl.rand: under the test interpreter, triton.language's own @jit helpers
# (tl.rand, tl.zeros, ...) only run when triton was first imported with TRITON_INTERPRET=1, and
# Lightning imports it before tests/conftest.py sets that. These helpers are plain functions of
# 32-bit unsigned words, so they run under the interpreter and compile alike.

if triton is not None:
    @triton.jit
    def tl_fmix32(h):
        """murmur3's 32-bit finaliser of a uint32 tensor (wrapping multiplies)."""
        h ^= h >> 16
        h *= 0x85EBCA6B
        h ^= h >> 13
        h *= 0xC2B2AE35
        h ^= h >> 16
        return h

    @triton.jit
    def tl_uniform24(h):
        """The top 24 bits of a uint32 hash as a float32 in [0, 1) on a 2^-24 grid."""
        return (h >> 8).to(tl.float32) * 5.9604644775390625e-08

    @triton.jit
    def tl_rounding_hash(offs, k1, k2):
        """rounding's element hash: fmix32(i * 0x9E3779B1 + k1) ^ k2 (random.h `rounding_hash`)."""
        index = offs.to(tl.uint32, bitcast=True)
        return tl_fmix32(index * 0x9E3779B1 + k1.to(tl.uint32, bitcast=True)) ^ k2.to(tl.uint32, bitcast=True)

    @triton.jit
    def tl_sparsify_hash(offs, k0, k1):
        """sparsify's element hash: fmix32(fmix32(i ^ k0) + k1) (random.h `sparsify_hash`)."""
        index = offs.to(tl.uint32, bitcast=True)
        return tl_fmix32(tl_fmix32(index ^ k0.to(tl.uint32, bitcast=True)) + k1.to(tl.uint32, bitcast=True))

    @triton.jit
    def tl_crs_uniform(key, offs, BLOCK: tl.constexpr):
        """The Triton crs sampler's uniforms in [0, 1): fmix32(t * 0x9E3779B9 + key), top 24 bits."""
        h = offs.to(tl.uint32) * tl.full([BLOCK], 0x9E3779B9, tl.uint32) + key
        return tl_uniform24(tl_fmix32(h))
