"""The time-to-accuracy overview, `reports/tta.csv`: one row per (paper, variant, arm) of the results tables.

Each row holds the target, the arm's and its baseline's median time to target, the wall-clock speedup
with its interval and verdict, the success rate, the final test accuracy, the median training
seconds, and the theoretical speedup the arm's FLOPs per sample would give beside the realised one;
then (schema version 3) the machine-independent costs: median steps and FLOPs to target and the
paired speedups in FLOPs and steps with their verdicts, and the arm's fidelity to the paper's method.
Columns older tables lack are empty.
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
           "theoretical_speedup", "steps_to_target", "flops_to_target", "flops_speedup", "flops_speedup_low",
           "flops_speedup_high", "flops_speedup_verdict", "steps_speedup", "steps_speedup_low", "steps_speedup_high",
           "steps_speedup_verdict", "fidelity")


def _median_cost(runs: list[Run], attr: str) -> float | None:
    """Median cost to target (steps_to_target, flops_to_target) with misses as infinity; None when the median
    is a miss or no run recorded the cost (tables before schema version 3)."""
    if not any(getattr(r, attr) is not None for r in runs):
        return None
    value = median([math.inf if getattr(r, attr) is None else float(getattr(r, attr)) for r in runs])
    return None if value is None or math.isinf(value) else value


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
        "steps_to_target": _median_cost(runs, "steps_to_target"),
        "flops_to_target": _median_cost(runs, "flops_to_target"),
        **_cost_speedup(sp, "flops"), **_cost_speedup(sp, "steps"), "fidelity": info.fidelity or "",
    }


def _cost_speedup(sp: Any, cost: str) -> dict[str, Any]:
    """The paired speedup in one machine-independent cost, as `<cost>_speedup[_low|_high|_verdict]` columns."""
    c = (sp.costs or {}).get(cost) if sp else None
    return {f"{cost}_speedup": c and c.speedup, f"{cost}_speedup_low": c and c.low,
            f"{cost}_speedup_high": c and c.high, f"{cost}_speedup_verdict": c.verdict.value if c else ""}


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
