"""kernels/rounding.py, what is particular to it: the fixed-point and fp16/bf16 specification (ties,
saturation, special values, overflow), unbiasedness against the exact expectation, the `out` variant,
the straight-through gradient and the benchmarks. What every family must do (opcheck, fast paths
against the reference, seeds, bad input, dispatch, compile) is in tests/test_kernels_contract.py.
"""

from __future__ import annotations

import pytest
import torch

from kernels import rounding as R
from kernels._common.machine import BENCHES

IMPLS = R._ROUND_FIXED.available(torch.zeros(1))  # the reference, and the fast paths that can run here
FORMATS = ((16 - 8, 8), (16 - 14, 14), (1, 0), (4, 20))  # (il, fl)


def _hard_values() -> torch.Tensor:
    """Ties, grid points, range ends, out-of-range, signed zeros, subnormals, inf and NaN, plus random."""
    special = torch.tensor([0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.0**-9, -(2.0**-9), 3 * 2.0**-9, 127.99, 128.0,
                            -128.0, -129.0, 1e30, -1e30, 1e-42, float("inf"), float("-inf"), float("nan")])
    gen = torch.Generator().manual_seed(0)
    return torch.cat([special, torch.randn(4000, generator=gen) * 4, torch.randn(1000, generator=gen) * 300])


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("impl", [i for i in IMPLS if i != "reference"] + ["auto"])
@pytest.mark.parametrize("il,fl", FORMATS)
def test_nearest_matches_reference_bit_for_bit_on_every_format(impl, il, fl):
    x = _hard_values()
    expected = R.round_fixed(x, il, fl, "nearest", impl="reference")
    assert _bits_equal(R.round_fixed(x, il, fl, "nearest", impl=impl), expected)


def test_nearest_spec():
    """Ties go toward -inf (the paper's Eq. 1), saturation at both ends, NaN kept."""
    x = torch.tensor([0.5, 1.5, -0.5, -1.5, 0.51, 200.0, -200.0, float("nan"), float("inf")])
    out = R.round_fixed(x, 8, 0, "nearest", impl="reference")
    expected = torch.tensor([0.0, 1.0, -1.0, -2.0, 1.0, 127.0, -128.0, float("nan"), 127.0])
    assert torch.allclose(out, expected, equal_nan=True)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("il,fl", [(8, 8), (2, 14)])
def test_stochastic_on_grid_saturated_and_bounded(impl, il, fl):
    x = _hard_values()
    out = R.round_fixed(x, il, fl, "stochastic", seed=3, impl=impl)
    lo, hi = -(2.0 ** (il - 1)), 2.0 ** (il - 1) - 2.0**-fl
    finite = ~x.isnan()
    assert out[~finite].isnan().all() and (out[finite] >= lo).all() and (out[finite] <= hi).all()
    units = out[finite] * 2.0**fl
    assert torch.equal(units, units.round())
    inside = finite & (x > lo) & (x < hi)
    step = 2.0**-fl
    assert ((out[inside] - x[inside]).abs() < step).all()  # one of the two neighbours
    assert (out[x >= hi] == hi).all() and (out[x <= lo] == lo).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_stochastic_fixed_is_unbiased(impl):
    """Mean over 2^17 draws of values at known remainders: within 5 standard errors of x."""
    fractions = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.9, 0.999])
    x = ((torch.tensor([3.0, -7.0, 0.0, 1.0, -1.0, 12.0]) + fractions) * 2.0**-8).repeat(1 << 17)
    out = R.round_fixed(x, 8, 8, "stochastic", seed=11, impl=impl).view(-1, 6)
    mean_units = out.double().mean(0) * 2**8
    target = x[:6].double() * 2**8
    stderr = (fractions.double() * (1 - fractions.double()) / (1 << 17)).sqrt().clamp(min=1e-9)
    assert ((mean_units - target).abs() <= 5 * stderr + 1e-9).all(), (mean_units - target)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stochastic_float_is_unbiased_between_neighbours(impl, dtype):
    gen = torch.Generator().manual_seed(1)
    base = torch.cat([torch.randn(8, generator=gen), torch.tensor([1e-6, -3e-7, 5e-8, 1000.3])])  # fp16 subnormals too
    x = base.repeat(1 << 15)
    out = R.stochastic_round(x, dtype, seed=5, impl=impl)
    assert out.dtype == dtype
    down = base.to(dtype).float()
    up_step = torch.where(down <= base, torch.nextafter(base.to(dtype), torch.tensor(float("inf"), dtype=dtype)),
                          torch.nextafter(base.to(dtype), torch.tensor(float("-inf"), dtype=dtype))).float()
    lo, hi = torch.minimum(down, up_step), torch.maximum(down, up_step)
    values = out.float().view(-1, base.numel())
    assert ((values == lo) | (values == hi)).all()  # only the two neighbours
    p = ((base - lo) / (hi - lo)).double()
    stderr = (p * (1 - p) / values.shape[0]).sqrt().clamp(min=1e-9)
    frac_up = (values == hi).double().mean(0)
    assert ((frac_up - p).abs() <= 5 * stderr + 1e-6).all(), (frac_up - p)


@pytest.mark.parametrize("impl", IMPLS)
def test_stochastic_float_special_values_and_overflow(impl):
    x = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 65504.0, 70000.0, -70000.0, 1.0])
    h = R.stochastic_round(x, torch.float16, seed=2, impl=impl).float()
    assert torch.equal(h[[0, 1, 5, 8]], x[[0, 1, 5, 8]]) and torch.signbit(h[1])
    assert h[2] == float("inf") and h[3] == float("-inf") and h[4].isnan()
    assert h[6] == float("inf") and h[7] == float("-inf")  # past 65536: inf, as documented
    near_max = torch.full((1 << 14,), 65520.0)  # half-way between 65504 and the inf "step" 65536
    frac_inf = R.stochastic_round(near_max, torch.float16, seed=4, impl=impl).isinf().double().mean()
    assert abs(frac_inf - 0.5) < 0.05
    b = R.stochastic_round(torch.tensor([float("nan"), float("inf"), 3.3e38 * 1.03]), torch.bfloat16, seed=1,
                           impl=impl)
    assert b[0].isnan() and b[1] == float("inf") and (b[2] == float("inf") or b[2] == torch.finfo(torch.bfloat16).max)


def test_out_variant_in_place():
    x = torch.randn(3000) * 3
    expected = R.round_fixed(x, 4, 12, "stochastic", seed=6)
    y = x.clone()
    assert R.round_fixed(y, 4, 12, "stochastic", seed=6, out=y) is y
    assert torch.equal(y, expected)


def test_straight_through_gradient():
    x = torch.randn(64, requires_grad=True)
    (R.round_fixed(x, 4, 12, "stochastic") * torch.arange(64.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(64.0))
    z = torch.randn(32, requires_grad=True)
    R.stochastic_round(z, torch.bfloat16).float().sum().backward()
    assert torch.equal(z.grad, torch.ones(32)) and z.grad.dtype == torch.float32


def test_benches_registered():
    names = {b.name: b for b in BENCHES}
    assert names["round_fixed_stochastic"].goal == 0.7 and names["round_fixed_stochastic"].bound == "memory"
    assert {"round_fixed_nearest", "stochastic_round_bf16", "stochastic_round_fp16"} <= set(names)


def test_cpp_and_triton_share_random_bits_on_special_values():
    """Both fast paths hash (seed, index) the same way, so they agree bit for bit, also on the NaNs,
    infinities, saturating and overflowing values the contract test's statistical inputs leave out."""
    if not {"cpp", "triton"} <= set(IMPLS):
        pytest.skip(f"needs both fast paths; here: {', '.join(IMPLS)}")
    x = _hard_values()
    assert _bits_equal(R.round_fixed(x, 4, 12, "stochastic", seed=8, impl="cpp"),
                       R.round_fixed(x, 4, 12, "stochastic", seed=8, impl="triton"))
    for dtype in (torch.float16, torch.bfloat16):
        a = R.stochastic_round(x, dtype, seed=8, impl="cpp").view(torch.int16)
        assert torch.equal(a, R.stochastic_round(x, dtype, seed=8, impl="triton").view(torch.int16))
