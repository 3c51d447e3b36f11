"""The protocol's statistics (DESIGN.md, "Seeds and statistics"): paired per-seed comparisons, exact
intervals for their median, the timing noise floor, and claim verdicts by kind.

- Arms share seeds, so every comparison is paired: a speedup is the median over seeds of the per-seed
  ratio baseline cost / technique cost; an accuracy change the median of the per-seed differences.
- The interval of a median is the exact distribution-free one from order statistics (the sign-test
  interval; `scipy.stats.binom` gives its coverage, and `scipy.stats.quantile_test` computes the same
  interval, which the tests check). It needs no resampling, allows infinite values (a target never
  reached) and states its coverage: the narrowest interval whose coverage is at least 95%, or, where
  none is (5 seeds: the widest one, min to max, covers 93.75%), the widest, with that coverage named.
- Below `MIN_SEEDS` seeds no verdict is given: the table shows the range of the seeds.
- Timing noise floor: the largest ratio, either way, between the baseline and its A/A replicate (the
  same computation run twice per seed). A wall-clock speedup whose interval excludes 1 but not the
  floor is "inconclusive (timing noise)".

Torch-free, so the report and the combinability verdicts need no training code; harness.measure
re-exports what the training side uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as _sp

__all__ = ["MIN_SEEDS", "LEVEL", "METHOD", "RANGE_ONLY", "TIMING_NOISE", "median", "median_interval",
           "interval_method", "paired_ratios", "paired_differences", "speedup", "summarise_values", "noise_floor",
           "claim_verdict", "ordering_verdict", "for_fidelity"]

MIN_SEEDS = 5  # fewer: the range of the seeds is shown and no verdict given
LEVEL = 0.95
METHOD = "exact order-statistic interval of the median over paired seeds (sign test; scipy.stats.binom)"

RANGE_ONLY = "range only (under 5 seeds)"
TIMING_NOISE = "inconclusive (timing noise)"


def median(values: Sequence[float]) -> float | None:
    """The median (infinite values allowed), or None for no values."""
    return float(np.median(np.asarray(values, dtype=float))) if len(values) else None


def _coverage(n: int, k: int) -> float:
    """Coverage of [x_(k), x_(n+1-k)] (1-based order statistics) for the median of a continuous law."""
    return float(1.0 - 2.0 * _sp.binom.cdf(k - 1, n, 0.5))


def median_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float] | None:
    """(low, high, coverage) of the exact order-statistic interval for the median; None below MIN_SEEDS.

    The narrowest symmetric interval [x_(k), x_(n+1-k)] with coverage >= `level`; when even the widest
    (min, max) falls short, that one with its own coverage.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n < MIN_SEEDS:
        return None
    k = 1
    while k + 1 <= (n + 1) // 2 and _coverage(n, k + 1) >= level:
        k += 1
    return float(x[k - 1]), float(x[n - k]), _coverage(n, k)


def interval_method(n: int) -> str:
    """The method line a table prints for `n` seeds."""
    if n < MIN_SEEDS:
        return f"range of {n} seed{'s' if n != 1 else ''} (no verdict under {MIN_SEEDS})"
    cov = median_interval(list(range(n)))[2]
    return f"{METHOD}, coverage {100 * cov:.1f}% at {n} seeds"


def paired_ratios(baseline: Sequence[float | None], technique: Sequence[float | None]) -> list[float]:
    """Per-seed baseline cost / technique cost; None (not reached) is infinite cost.

    Only the technique reached: inf; only the baseline: 0; neither: the seed has no ratio and is left out.
    """
    out = []
    for b, t in zip(baseline, technique, strict=True):
        b = math.inf if b is None else float(b)
        t = math.inf if t is None else float(t)
        if math.isinf(b) and math.isinf(t):
            continue
        out.append(math.inf if t == 0 or math.isinf(b) else b / t)
    return out


def paired_differences(arm: Sequence[float | None], other: Sequence[float | None]) -> list[float]:
    """Per-seed arm - other over seeds where both have a value."""
    return [a - b for a, b in zip(arm, other, strict=True) if a is not None and b is not None]


def summarise_values(values: Sequence[float]) -> tuple[float | None, float | None, float | None, float | None]:
    """Median over seeds, its exact interval and that interval's coverage; under MIN_SEEDS the range of the
    seeds and coverage None (no verdict); all None for no values."""
    if not len(values):
        return None, None, None, None
    ci = median_interval(list(values))
    return (median(list(values)), *(ci if ci else (min(values), max(values), None)))


def speedup(baseline: Sequence[float | None], technique: Sequence[float | None],
            floor: float | None = None) -> dict[str, Any]:
    """Paired speedup of `technique` over `baseline` costs (by seed; None = target not reached).

    Verdicts: "faster"/"slower" when the interval excludes 1 (and, given a timing noise `floor`,
    excludes [1/floor, floor] too, else "inconclusive (timing noise)"); "inconclusive"; the range only
    under MIN_SEEDS seeds; "target not reached" when neither arm ever reached it on any seed; "only the
    technique reached the target" when the baseline never did (no finite ratio).
    """
    success = float(np.mean([t is not None for t in technique])) if len(technique) else 0.0
    ratios = paired_ratios(baseline, technique)
    point, low, high, cov = summarise_values(ratios)
    out = {"speedup": point, "low": low, "high": high, "success_rate": success, "n_seeds": len(ratios),
           "coverage": cov}
    if not ratios:
        return {**out, "verdict": "target not reached"}
    if all(b is None for b in baseline):
        return {**out, "speedup": None, "low": None, "high": None, "verdict": "only the technique reached the target"}
    if cov is None:
        return {**out, "verdict": RANGE_ONLY}
    f = max(floor or 1.0, 1.0)
    if low > f:
        verdict = "faster"
    elif high < 1 / f:
        verdict = "slower"
    elif low > 1 or high < 1:
        verdict = TIMING_NOISE
    else:
        verdict = "inconclusive"
    return {**out, "verdict": verdict}


def seconds_per_step(train_seconds: float, steps: int | None) -> float:
    """A run's clock for the A/A comparison: training seconds per step (the replicates run the same steps); 0 for
    a run with no steps, which `noise_floor` skips."""
    return train_seconds / steps if steps else 0.0


def noise_floor(baseline_s: Sequence[float], replicate_s: Sequence[float]) -> float | None:
    """The largest per-seed timing ratio, either way, between the baseline and its A/A replicate."""
    r = [b / a for b, a in zip(baseline_s, replicate_s, strict=True) if b and a and math.isfinite(b / a)]
    return float(max(max(x, 1 / x) for x in r)) if r else None


def claim_verdict(kind: str, claimed: float | None, tolerance: float, low: float | None, high: float | None,
                  claimed_high: float | None = None) -> str:
    """Judge a measured interval [low, high] against a claim of `kind`.

    point: claimed +- tolerance; at_least: measured >= claimed - tolerance; at_most ("up to"): a value
    at or below claimed + tolerance is consistent; range: within [claimed - tol, claimed_high + tol].
    """
    if claimed is None:
        return "no number to compare"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    lo, hi = claimed - tolerance, (claimed_high if kind == "range" else claimed) + tolerance
    if kind == "at_least":
        return "reproduced" if low >= lo else "not reproduced" if high < lo else "inconclusive"
    if kind == "at_most":
        return "consistent" if high <= hi else "not reproduced" if low > hi else "inconclusive"
    if kind in ("point", "range"):
        if high < lo or low > hi:
            return "not reproduced"
        return "reproduced" if lo <= low and high <= hi else "inconclusive"
    raise ValueError(f"claim kind '{kind}' is not point, at_least, at_most, range or ordering")


def ordering_verdict(gaps: list[tuple[float | None, float | None]]) -> str:
    """An ordering a < b < c from the intervals of its consecutive paired gaps (b - a, c - b): all above 0
    reproduces it, any below 0 contradicts it, otherwise inconclusive."""
    if any(lo is None or hi is None for lo, hi in gaps):
        return "inconclusive"
    if all(lo > 0 for lo, _ in gaps):
        return "reproduced"
    if any(hi < 0 for _, hi in gaps):
        return "not reproduced"
    return "inconclusive"


def for_fidelity(verdict: str, fidelity: str) -> str:
    """A substitute arm (the paper's method is unknown) cannot reproduce or refute the paper: its agreement
    and disagreement say so."""
    if fidelity != "substitute":
        return verdict
    return {"reproduced": "agrees (substitute)", "consistent": "agrees (substitute)",
            "not reproduced": "differs (substitute)"}.get(verdict, verdict)

