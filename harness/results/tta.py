"""The time-to-accuracy overview, `reports/tta.csv`: one row per (paper, variant, arm) of the results tables.

Each row holds the target, the arm's and its baseline's median time to target, the speedup with its
bootstrap interval and verdict, the success rate, the final test accuracy, the median training
seconds, and the theoretical speedup the arm's FLOPs per sample would give beside the realised one.
The report draws the accuracy-vs-time Pareto figure from the same rows (harness.report.figures).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from harness.results.schema import ResultsTable, Run, variant
from harness.results.stats import median

__all__ = ["COLUMNS", "rows", "to_csv", "baselines", "theoretical_speedup", "flops_per_sample", "median_tta"]

COLUMNS = ("paper", "variant", "target_metric", "target_value", "arm", "baseline", "techniques", "seeds",
           "time_to_target_s", "baseline_time_to_target_s", "speedup", "speedup_low", "speedup_high",
           "speedup_verdict", "success_rate", "test_acc", "train_seconds", "flops_per_sample",
           "theoretical_speedup")


def median_tta(runs: list[Run]) -> float | None:
    """Median time to target with misses as infinity; None when the median itself is a miss."""
    value = median([math.inf if r.time_to_target_s is None else r.time_to_target_s for r in runs])
    return None if value is None or math.isinf(value) else value


def flops_per_sample(runs: list[Run]) -> float | None:
    """Median counted FLOPs per training sample (the warm-up step's count times the declared share)."""
    return median([r.flops / r.samples for r in runs if r.flops and r.samples])


def baselines(table: ResultsTable) -> set[str]:
    """Arms some other arm is raced against (the table's baseline arm and any per-arm baseline)."""
    return {table.baseline_arm} | {a.baseline for a in table.arms.values() if a.baseline}


def theoretical_speedup(table: ResultsTable, arm: str) -> float | None:
    """The arm's speedup if time followed FLOPs: its baseline's FLOPs per sample over its own.

    FLOPs are those counted on the warm-up step times the share the techniques declare, so a technique
    that shrinks the ops (sampled convolutions) and one that declares a share (CRS) are both covered.
    None for a baseline, or when a table recorded no FLOP count.
    """
    base = table.arms[arm].baseline or table.baseline_arm
    if arm in baselines(table) or base not in table.arms:
        return None
    mine, theirs = flops_per_sample(table.arms[arm].runs), flops_per_sample(table.arms[base].runs)
    return theirs / mine if mine and theirs else None


def rows(tables: list[ResultsTable]) -> list[dict[str, Any]]:
    """The CSV rows for every arm of every results table."""
    return [_row(table, arm) for table in tables for arm in table.arms]


def _row(table: ResultsTable, arm: str) -> dict[str, Any]:
    info = table.arms[arm]
    runs = info.runs
    base = info.baseline or table.baseline_arm
    racing = arm not in baselines(table) and base in table.arms
    sp = table.speedups.get(arm) if racing else None
    target = info.target or table.target
    return {
        "paper": table.paper, "variant": variant(table), "target_metric": target.metric,
        "target_value": target.value, "arm": arm, "baseline": base if racing else "",
        "techniques": "+".join(info.techniques), "seeds": len(runs), "time_to_target_s": median_tta(runs),
        "baseline_time_to_target_s": median_tta(table.arms[base].runs) if racing else None,
        "speedup": sp and sp.speedup, "speedup_low": sp and sp.low, "speedup_high": sp and sp.high,
        "speedup_verdict": sp.verdict.value if sp else "",
        "success_rate": sum(r.time_to_target_s is not None for r in runs) / len(runs) if runs else None,
        "test_acc": median([r.final["test/acc"] for r in runs if r.final.get("test/acc") is not None]),
        "train_seconds": median([r.train_seconds for r in runs]), "flops_per_sample": flops_per_sample(runs),
        "theoretical_speedup": theoretical_speedup(table, arm),
    }


def to_csv(table: list[dict[str, Any]]) -> bytes:
    """CSV text; floats with 6 significant digits, missing values empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: _csv_cell(row[k]) for k in COLUMNS})
    return buf.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> Any:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else value
