"""asv benchmarks for column-row sampling (kernels/crs.py), beside the dense ops they replace.

Time of crs_matmul (2048^3 fp32, sample_ratio 0.5; issue goal >= 1.6x the dense matmul) and of
crs_conv2d (the MNIST CNN's 32 -> 64 5x5 convolution, batch 256), each with its dense op, and
the share of the machine's dense matmul peak that the FLOPs actually done reach.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._common import machine as _machine
from kernels.crs import crs_conv2d, crs_matmul


class CRSMatmul:
    params = [0.25, 0.5, 0.9]
    param_names = ["sample_ratio"]

    def setup(self, sample_ratio: float) -> None:
        gen = torch.Generator().manual_seed(0)
        self.a = torch.randn(2048, 2048, generator=gen)
        self.b = torch.randn(2048, 2048, generator=gen)
        _, idx = crs_matmul(self.a, self.b, sample_ratio, 1, seed=1, return_indices=True)
        self.flops = 2.0 * 2048 * len(torch.unique(idx)) * 2048  # repeated draws are merged

    def time_crs_matmul(self, sample_ratio: float) -> None:
        crs_matmul(self.a, self.b, sample_ratio, 1, seed=1)

    def time_dense_matmul(self, sample_ratio: float) -> None:
        self.a @ self.b

    def track_fraction_of_matmul_peak(self, sample_ratio: float) -> float:
        seconds = _machine.median_seconds(lambda: crs_matmul(self.a, self.b, sample_ratio, 1, seed=1), repeats=5)
        return self.flops / seconds / _machine.matmul_peak()

    track_fraction_of_matmul_peak.unit = "fraction"

    def track_speedup_over_dense(self, sample_ratio: float) -> float:
        dense = _machine.median_seconds(lambda: self.a @ self.b, repeats=5)
        return dense / _machine.median_seconds(lambda: crs_matmul(self.a, self.b, sample_ratio, 1, seed=1), repeats=5)

    track_speedup_over_dense.unit = "x"


class CRSConv2d:
    def setup(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 32, 14, 14, generator=gen)
        self.w = torch.randn(64, 32, 5, 5, generator=gen)
        _, idx = crs_conv2d(self.x, self.w, None, 1, 2, 1, 0.5, 1, seed=1, return_indices=True)
        self.flops = 2.0 * 256 * 64 * 14 * 14 * len(torch.unique(idx)) * 25

    def _crs(self):
        return crs_conv2d(self.x, self.w, None, 1, 2, 1, 0.5, 1, seed=1)

    def time_crs_conv2d(self) -> None:
        self._crs()

    def time_dense_conv2d(self) -> None:
        F.conv2d(self.x, self.w, None, 1, 2)

    def track_fraction_of_matmul_peak(self) -> float:
        return self.flops / _machine.median_seconds(self._crs, repeats=5) / _machine.matmul_peak()

    track_fraction_of_matmul_peak.unit = "fraction"
