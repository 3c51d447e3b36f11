"""Stochastic activation-gradient pruning, what is particular to it: the pruning rule on every path,
unbiasedness against g itself, shapes and dtypes, the threshold rule, autograd and the benchmark.
What every family must do (opcheck, fast paths against the reference, seeds, bad input, dispatch,
compile, C++ == Triton bits) is in tests/test_kernels_contract.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from kernels import sparsify as sp


@pytest.fixture(params=("auto",) + sp._PRUNE_GRAD.available(torch.zeros(1)))
def impl(request):
    return request.param


def test_values_below_threshold_on_grid_and_above_untouched(impl):
    g = torch.randn(4096) * 2.0
    tau = 1.5
    out = sp.prune_grad(g, tau, seed=1, impl=impl)
    small = g.abs() < tau
    assert torch.equal(out[~small], g[~small])  # |g| >= tau: unchanged, bit for bit
    on_grid = (out[small] == 0) | (out[small] == tau * torch.sign(g[small]))
    assert bool(on_grid.all())  # below tau: 0 or sign(g) * tau, never the opposite sign
    assert out.dtype == g.dtype and out.shape == g.shape


@pytest.mark.parametrize("value", [0.3, -1.2, 1.9])
def test_unbiased(impl, value):
    """Each element's mean over many independent draws is g, within 5 standard errors."""
    tau, n = 2.0, 200_000
    g = torch.full((n,), value)
    out = sp.prune_grad(g, tau, seed=7, impl=impl)
    p = abs(value) / tau
    se = tau * math.sqrt(p * (1 - p) / n)
    assert abs(out.double().mean().item() - value) < 5 * se
    assert abs((out != 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_zero_threshold_is_identity_and_shapes_kept(impl):
    g = torch.randn(2, 3, 5, 7)
    assert torch.equal(sp.prune_grad(g, 0.0, seed=0, impl=impl), g)
    t = g.transpose(1, 3)  # non-contiguous input
    out = sp.prune_grad(t, 0.5, seed=0, impl=impl)
    assert out.shape == t.shape and bool(((out == t) | (out == 0) | (out.abs() == 0.5)).all())


def test_threshold_rule_and_achieved_sparsity_on_normal_data():
    """On N(0, sigma^2): a fraction p lies below tau and the zero fraction matches the closed form."""
    g = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)) * 3e-4
    for rate in (0.5, 0.9, 0.99):
        tau = sp.prune_threshold(g, rate)
        assert abs((g.abs() < tau).double().mean().item() - rate) < 0.005
        zeros = (sp.prune_grad(g, tau, seed=0) == 0).double().mean().item()
        assert abs(zeros - sp.expected_sparsity(rate)) < 0.005
    assert 0.53 < sp.expected_sparsity(0.9) < 0.55 and 0.68 < sp.expected_sparsity(0.99) < 0.70


def test_bf16_gradients():
    g = torch.randn(1000, dtype=torch.bfloat16)
    out = sp.prune_grad(g, 1.0, seed=0)
    assert out.dtype == torch.bfloat16
    small = g.abs() < 1.0
    assert torch.equal(out[~small], g[~small]) and bool(((out[small] == 0) | (out[small].abs() == 1)).all())


def test_autograd_is_straight_through():
    g = torch.randn(20, requires_grad=True)
    sp.prune_grad_op(g, torch.tensor(0.5), 0).sum().backward()
    assert torch.equal(g.grad, torch.ones(20))


def test_compile_fullgraph():
    def step(x):
        tau = sp.prune_threshold(x, 0.9)
        return sp.prune_grad_op(x * 2.0, tau, 3)

    x = torch.randn(257)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), step(x))


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.5, "0.9"])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        sp.prune_threshold(torch.randn(3), rate)


def test_bench_registered():
    from kernels._common.machine import BENCHES

    bench = next(b for b in BENCHES if b.name == "prune_grad")
    assert bench.bound == "memory"
