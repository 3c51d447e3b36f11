"""asv benchmarks: stochastic activation-gradient pruning (kernels/sparsify.py).

The op is memory-bound: it reads the fp32 gradient and writes the pruned one (8 bytes per
element), so its throughput is reported as a fraction of the machine's measured copy bandwidth
(`kernels._machine.copy_bandwidth`). The threshold (one read of g) is timed beside it.
"""

from __future__ import annotations

import torch

from kernels import sparsify as sp
from kernels._common import build
from kernels._common.machine import copy_bandwidth, median_seconds


class PruneGrad:
    """prune_grad on a 16 Mi-element fp32 gradient (64 MiB, past the caches), tau at p = 0.9."""

    params = [["reference", "cpp", "triton"]]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl: str) -> None:
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if impl == "cpp" and (self.device != "cpu" or not build.available("sparsify")):
            raise NotImplementedError("the C++ fast path runs on CPU and must build")
        if impl == "triton" and self.device != "cuda":
            raise NotImplementedError("Triton is timed on CUDA only (the CPU interpreter is a test tool)")
        self.g = torch.randn(1 << 24, device=self.device)
        self.tau = sp.prune_threshold(self.g, 0.9)
        self.impl = impl
        sp.prune_grad(self.g, self.tau, 0, impl=impl)  # build / compile outside the timing

    def time_prune(self, impl: str) -> None:
        sp.prune_grad(self.g, self.tau, 0, impl=impl)
        if self.device == "cuda":
            torch.cuda.synchronize()

    def time_threshold(self, impl: str) -> None:
        sp.prune_threshold(self.g, 0.9).item()

    def track_bandwidth_fraction(self, impl: str) -> float:
        seconds = median_seconds(lambda: sp.prune_grad(self.g, self.tau, 0, impl=impl), device=self.device)
        return 8.0 * self.g.numel() / seconds / copy_bandwidth(self.device)

    track_bandwidth_fraction.unit = "fraction"
