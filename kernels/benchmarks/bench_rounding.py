"""asv benchmarks for kernels/rounding.py: time, and throughput as a fraction of copy bandwidth.

Bytes moved per element: 4 read + 4 written (fixed point, fp32 out) or 4 + 2 (fp16 / bf16 out),
divided by the bandwidth of an fp32 `dst.copy_(src)` (kernels._machine.copy_bandwidth). The
fixed-point op writes into a preallocated output, as the copy does; the fp16/bf16 ops allocate.
The issue's goal: round_fixed stochastic at 0.7 or more of copy bandwidth on 2^25 elements.
"""

import torch

from kernels import rounding
from kernels._common.machine import copy_bandwidth, median_seconds

NUMEL = 1 << 25


class RoundFixed:
    params = ["stochastic", "nearest"]
    param_names = ["rounding"]
    timeout = 300

    def setup(self, rounding_mode):
        self.x = torch.randn(NUMEL)
        self.out = torch.empty_like(self.x)
        self.stochastic = rounding_mode == "stochastic"
        self.call()  # builds the C++ fast path once, outside the timing

    def call(self):
        torch.ops.effitrain.round_fixed_out(self.x, 4, 12, self.stochastic, 1234, self.out)

    def time_round_fixed(self, rounding_mode):
        self.call()

    def track_fraction_of_copy_bandwidth(self, rounding_mode):
        return 8.0 * NUMEL / median_seconds(self.call) / copy_bandwidth("cpu")

    track_fraction_of_copy_bandwidth.unit = "fraction"


class StochasticRoundFloat:
    params = ["float16", "bfloat16"]
    param_names = ["dtype"]
    timeout = 300

    def setup(self, dtype):
        self.x = torch.randn(NUMEL)
        self.dtype = getattr(torch, dtype)
        self.call()

    def call(self):
        return torch.ops.effitrain.stochastic_round_float(self.x, self.dtype, 1234)

    def time_stochastic_round(self, dtype):
        self.call()

    def track_fraction_of_copy_bandwidth(self, dtype):
        return 6.0 * NUMEL / median_seconds(self.call) / copy_bandwidth("cpu")

    track_fraction_of_copy_bandwidth.unit = "fraction"


__all__ = ["RoundFixed", "StochasticRoundFloat", "rounding"]
