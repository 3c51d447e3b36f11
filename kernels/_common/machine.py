"""What this machine allows, measured, and the quick kernel benchmark registry.

Throughput is reported as a fraction of a measured ceiling, never of a spec
sheet: memory-bound ops against the bandwidth of `dst.copy_(src)` on fp32
tensors too large for the caches (bytes read + bytes written), compute-bound
ops against a dense fp32 matmul of the same size class. The asv benchmarks in
`kernels/benchmarks/` and `effitrain bench kernels` both use these.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def median_seconds(fn: Callable[[], object], repeats: int = 7, warmup: int = 2, device: str = "cpu") -> float:
    """Median wall-clock seconds of `fn()` over `repeats` calls after `warmup` calls."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@functools.cache
def copy_bandwidth(device: str = "cpu", numel: int = 1 << 25) -> float:
    """Bytes per second of an fp32 tensor copy (read + write) of `numel` elements (128 MiB)."""
    src = torch.rand(numel, device=device)
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), device=device)
    return 2 * src.numel() * src.element_size() / seconds


@functools.cache
def matmul_peak(device: str = "cpu", n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a dense n x n x n matmul (2 n^3 FLOPs): the compute ceiling ops are measured against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = median_seconds(lambda: a @ b, repeats=7, warmup=5, device=device)  # the first calls run below speed
    return 2 * n**3 / seconds


@dataclass(frozen=True)
class OpBench:
    """One line of `effitrain bench kernels`.

    `make(device)` returns (fn, work, baseline): `fn()` runs the op once; `work`
    is the bytes it must move (bound="memory") or the FLOPs it must do
    (bound="compute"); `baseline` is an optional callable the op is compared
    with side by side (e.g. the dense matmul a sampled one replaces), or None.
    `goal` is the issue's target, a fraction of the ceiling ("memory") or a
    speedup over the baseline ("compute"), or None.
    """

    name: str
    bound: str  # "memory" | "compute"
    make: Callable[[str], tuple[Callable[[], object], float, Callable[[], object] | None]]
    goal: float | None = None
    note: str = ""


BENCHES: list[OpBench] = []


def register_bench(bench: OpBench) -> OpBench:
    if bench.bound not in ("memory", "compute"):
        raise ValueError(f"bench {bench.name}: bound '{bench.bound}' is not 'memory' or 'compute'")
    if any(b.name == bench.name for b in BENCHES):
        raise ValueError(f"bench '{bench.name}' is already registered")
    BENCHES.append(bench)
    return bench


def measure(bench: OpBench, device: str = "cpu", repeats: int = 7) -> dict:
    """Time one op (and its baseline, alternating call by call) and express it against the machine's ceiling."""
    fn, work, baseline = bench.make(device)
    if baseline is None:
        seconds = median_seconds(fn, repeats=repeats, device=device)
    else:  # op and dense op alternate, so both see the same machine state; medians of each
        pairs = [(median_seconds(fn, 1, 0, device), median_seconds(baseline, 1, 0, device))
                 for _ in range(repeats + 2)][2:]  # the first two pairs warm up
        seconds, base_seconds = (statistics.median(p[i] for p in pairs) for i in (0, 1))
    memory = bench.bound == "memory"
    ceiling = copy_bandwidth(device) if memory else matmul_peak(device)
    row = {"op": bench.name, "bound": bench.bound, "device": device, "seconds": seconds, "goal": bench.goal,
           "rate": work / seconds, "ceiling": ceiling, "fraction": work / seconds / ceiling,
           "unit": "B/s" if memory else "FLOP/s"}
    if baseline is not None:
        row.update(baseline_seconds=base_seconds, speedup=base_seconds / seconds)
    return row
