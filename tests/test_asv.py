"""The asv benchmarks beside the kernels are discoverable and well formed (asv's own check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


@pytest.mark.slow
def test_asv_finds_every_benchmark_file_and_reports_no_problem():
    asv = Path(sys.executable).with_name("asv")
    assert asv.exists(), "asv is pinned in requirements.lock; install the locked environment"
    files = sorted(p.stem for p in (KERNELS / "benchmarks").glob("bench_*.py"))
    assert files, "no asv benchmark files in kernels/benchmarks"
    out = subprocess.run([str(asv), "check", "--python=same"], cwd=KERNELS, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout, out.stdout
