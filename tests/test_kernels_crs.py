"""Column-row sampling, what is particular to it: the k rule, unbiasedness against the exact product,
each sampler's pair frequencies, each path computing the estimate of its own draws, gradients through
the drawn pairs, the FLOP counter and the benchmarks. What every family must do (opcheck, fast paths
against the reference, seeds, bad input, dispatch, compile, k = K exactly dense) is in
tests/test_kernels_contract.py. Triton runs under the interpreter without a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import crs
from kernels._common import build, machine

needs_cpp = pytest.mark.skipif(not build.available("crs"), reason="C++ fast path does not build here")


def _pair_inputs(seed=0, M=6, K=12, N=5):
    """Columns/rows of very different norms, so the sampling distribution is far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(M, K, generator=gen) * torch.linspace(0.1, 3.0, K)
    b = torch.randn(K, N, generator=gen) * torch.linspace(2.0, 0.2, K)[:, None]
    return a, b


def _norm_probs(a, b):
    w = a.norm(dim=0) * b.norm(dim=1)
    return w / w.sum()


def test_k_rule_follows_official_code():
    assert crs.crs_k(784, 0.9, 10) == 705
    assert crs.crs_k(10, 0.5, 10) == 10  # minimal_k wins, capped at K
    assert crs.crs_k(1, 0.5, 1) == 1
    assert crs.crs_k(32, 0.5, 1) == 16


@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_matmul_is_unbiased(impl):
    a, b = _pair_inputs()
    exact = a @ b
    draws = torch.stack([crs.crs_matmul(a, b, 1 / 3, 1, seed=s, impl=impl) for s in range(2000)])
    mean, se = draws.mean(0), draws.std(0) / len(draws) ** 0.5
    assert (draws.std(0) > 0).all()  # it really samples
    assert ((mean - exact).abs() <= 5 * se + 1e-5).all(), ((mean - exact).abs() / se).max()


@needs_cpp
def test_cpp_sampler_draws_pairs_in_proportion_to_norm_products():
    a, b = _pair_inputs()
    idx = torch.cat([crs.crs_matmul(a, b, 1 / 3, 1, seed=s, impl="cpp", return_indices=True)[1] for s in range(3000)])
    freq = torch.bincount(idx, minlength=12).double() / len(idx)
    p = _norm_probs(a, b).double()
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / len(idx)).sqrt() + 1e-9).all()


def test_triton_sampler_draws_pairs_in_proportion_to_norm_products():
    a, b = _pair_inputs()
    p = _norm_probs(a, b)
    idx, scale = crs._sample_triton(a.norm(dim=0) * b.norm(dim=1), 20000, seed=11)
    freq = torch.bincount(idx, minlength=12).double() / len(idx)
    assert ((freq - p.double()).abs() <= 5 * (p * (1 - p) / len(idx)).double().sqrt()).all()
    torch.testing.assert_close(scale, 1 / (20000 * p[idx]), rtol=1e-4, atol=0)


@pytest.mark.parametrize("impl", ["auto", "cpp", "triton"])
def test_fast_paths_compute_the_estimate_of_their_own_draws(impl):
    if impl == "cpp" and not build.available("crs"):
        pytest.skip("C++ fast path does not build here")
    a, b = _pair_inputs(1, M=9, K=40, N=7)
    out, idx = crs.crs_matmul(a, b, 0.25, 1, seed=5, impl=impl, return_indices=True)
    p = _norm_probs(a, b)
    expected = (a[:, idx] / (len(idx) * p[idx])) @ b[idx]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_matmul_gradients_flow_through_the_drawn_pairs():
    a, b = _pair_inputs(4, M=8, K=20, N=6)
    w = b.t().contiguous().requires_grad_()  # a Linear's weight: b = W^T is a strided view
    a.requires_grad_()
    out, idx, scale = torch.ops.effitrain.crs_mm(a, w.t(), 7, 3)
    (out * torch.arange(out.numel()).view_as(out)).sum().backward()
    got = a.grad.clone(), w.grad.clone()
    a.grad = w.grad = None
    ref = (a[:, idx] * scale) @ w.t()[idx]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    (ref * torch.arange(ref.numel()).view_as(ref)).sum().backward()
    torch.testing.assert_close(got[0], a.grad, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got[1], w.grad, rtol=1e-5, atol=1e-4)
    assert (a.grad.abs().sum(0)[torch.unique(idx)] > 0).all() and len(torch.unique(idx)) < 20


def test_conv_is_unbiased_and_its_gradients_follow_the_drawn_channels():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 5, 5, generator=gen) * torch.linspace(0.2, 2.0, 6).view(1, -1, 1, 1)
    w = torch.randn(3, 6, 3, 3, generator=gen)
    bias = torch.randn(3, generator=gen)
    exact = F.conv2d(x, w, bias, 1, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread spares 1000 OpenMP start-ups
    try:
        draws = torch.stack([crs.crs_conv2d(x, w, bias, 1, 1, 1, 0.5, 1, seed=s) for s in range(1000)])
    finally:
        torch.set_num_threads(threads)
    mean, se = draws.mean(0), draws.std(0) / len(draws) ** 0.5
    assert ((mean - exact).abs() <= 5 * se + 1e-4).all()
    xg, wg, bg = (t.clone().requires_grad_() for t in (x, w, bias))
    out, idx, scale = torch.ops.effitrain.crs_conv(xg, wg, bg, [1, 1], [1, 1], [1, 1], 2, 9)
    (out ** 2).sum().backward()
    got = [t.grad.clone() for t in (xg, wg, bg)]
    for t in (xg, wg, bg):
        t.grad = None
    (F.conv2d(xg[:, idx] * scale.view(1, -1, 1, 1), wg[:, idx], bg, 1, 1) ** 2).sum().backward()
    for g, t in zip(got, (xg, wg, bg)):
        torch.testing.assert_close(g, t.grad, rtol=1e-4, atol=1e-3)


def test_triton_conv_computes_the_estimate_of_its_own_draws():
    x, w = torch.randn(2, 5, 6, 6), torch.randn(3, 5, 3, 3)
    out, idx = crs.crs_conv2d(x, w, None, 2, 1, 1, 0.4, 1, seed=4, impl="triton", return_indices=True)
    p = torch.linalg.vector_norm(x, dim=(0, 2, 3)) * torch.linalg.vector_norm(w, dim=(0, 2, 3))
    p = p / p.sum()
    expected = F.conv2d(x[:, idx] / (len(idx) * p[idx]).view(1, -1, 1, 1), w[:, idx], None, 2, 1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_flop_counter_sees_the_dense_cost():
    a, b = _pair_inputs(8)
    a.requires_grad_()
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        crs.crs_matmul(a, b, 0.5, 1, seed=1).sum().backward()
    assert counter.get_total_flops() == 2 * (2 * 6 * 12 * 5)  # forward + input gradient (b needs none)


def test_benchmarks_are_registered():
    names = {bench.name: bench for bench in machine.BENCHES}
    assert names["crs_matmul 2048^3 r=0.5"].goal == 1.6 and names["crs_matmul 2048^3 r=0.5"].bound == "compute"
    fn, flops, baseline = crs._bench_conv("cpu")
    assert fn().shape == baseline().shape and 0 < flops < 2.0 * 256 * 64 * 14 * 14 * 32 * 25
