"""The protocol's statistics (DESIGN.md, "Seeds and statistics"): medians, percentile-bootstrap
intervals over seeds, speedups of median time to target, claim verdicts.

Torch-free, so the report and the combinability verdicts need no training code; harness.measure
re-exports them for the code that runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["bootstrap_interval", "claim_verdict", "median", "speedup"]


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return float(np.median(values)) if len(values) else None


def _median(values: np.ndarray) -> float:
    return float(np.median(values))


def bootstrap_interval(values: list[float], stat: Callable[[np.ndarray], float] = _median,
                       n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over `values` (inf allowed); """
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    boots = np.array([stat(arr[rng.integers(0, len(arr), len(arr))]) for _ in range(n_boot)])
    lo, hi = np.percentile(boots, [100 * (1 - level) / 2, 100 * (1 + level) / 2], method="lower")
    return float(lo), float(hi)


def speedup(baseline_s: list[float | None], technique_s: list[float | None], n_boot: int = 2000,
            seed: int = 0) -> dict[str, Any]:
    """Speedup of median times to target with a bootstrap interval over seeds.

    None (not reached) counts as infinite time. "faster"/"slower" when the interval excludes 1,
    else "inconclusive" (always with one seed). Never reaching the target gives speedup 0;
    reaching it when the baseline never does gives no finite speedup (None).
    """
    b = np.array([math.inf if t is None else t for t in baseline_s], dtype=float)
    t = np.array([math.inf if x is None else x for x in technique_s], dtype=float)
    success = float(np.isfinite(t).mean()) if len(t) else 0.0
    point = _ratio(np.median(b), np.median(t))
    rng = np.random.default_rng(seed)
    boots = [_ratio(np.median(b[rng.integers(0, len(b), len(b))]), np.median(t[rng.integers(0, len(t), len(t))]))
             for _ in range(n_boot)]
    boots = np.array([x for x in boots if x is not None])
    none = {"speedup": None, "low": None, "high": None, "success_rate": success}
    if point is None or len(boots) == 0:
        return {**none, "verdict": "target not reached"}
    if math.isinf(point):  # only the technique reached the target: no finite ratio to report
        return {**none, "verdict": "only the technique reached the target"}
    if min(len(b), len(t)) < 2:  # one seed has no spread: a bootstrap of it would be a fake interval
        return {**none, "speedup": point, "verdict": "inconclusive"}
    lo, hi = (float(v) for v in np.percentile(boots, [2.5, 97.5], method="lower"))
    verdict = "faster" if lo > 1 else "slower" if hi < 1 else "inconclusive"
    return {"speedup": point, "low": lo, "high": hi, "success_rate": success, "verdict": verdict}


def _ratio(baseline: float, technique: float) -> float | None:
    if not math.isfinite(baseline) and not math.isfinite(technique):
        return None
    if technique == 0:
        return None
    return float(baseline / technique)  # inf/finite = inf (technique reached, baseline did not)


def claim_verdict(claimed: float | None, tolerance: float, low: float | None, high: float | None) -> str:
    """Compare a measured interval [low, high] with claimed +- tolerance."""
    if claimed is None:
        return "no number to compare"
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if high < claimed - tolerance or low > claimed + tolerance:
        return "not reproduced"
    if claimed - tolerance <= low and high <= claimed + tolerance:
        return "reproduced"
    return "inconclusive"
