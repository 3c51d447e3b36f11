"""The time-to-accuracy overview: `reports/tta.csv` and the accuracy-vs-training-time Pareto figure.

One CSV row per (paper, scale and budget tag, arm), from the committed results
tables: the target, the arm's and its baseline's median time to target, the
speedup with its bootstrap interval and verdict, the success rate, the final
test accuracy, the median training seconds, and the theoretical speedup the
arm's FLOPs per sample would give beside the realised one.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

COLUMNS = ("paper", "variant", "target_metric", "target_value", "arm", "baseline", "techniques", "seeds",
           "time_to_target_s", "baseline_time_to_target_s", "speedup", "speedup_low", "speedup_high",
           "speedup_verdict", "success_rate", "test_acc", "train_seconds", "flops_per_sample",
           "theoretical_speedup")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _median_tta(runs: list[dict[str, Any]]) -> float | None:
    """Median time to target with misses as infinity; None when the median itself is a miss."""
    value = _median([math.inf if r["time_to_target_s"] is None else r["time_to_target_s"] for r in runs])
    return None if value is None or math.isinf(value) else value


def flops_per_sample(runs: list[dict[str, Any]]) -> float | None:
    """Median counted FLOPs per training sample (the warm-up step's count times the declared share)."""
    return _median([r["flops"] / r["samples"] for r in runs if r.get("flops") and r.get("samples")])


def baselines(res: dict[str, Any]) -> set[str]:
    """Arms some other arm is raced against (the recipe's baseline and any per-arm baseline)."""
    return {res["baseline_arm"]} | {a.get("baseline") for a in res["arms"].values() if a.get("baseline")}


def theoretical_speedup(res: dict[str, Any], arm: str) -> float | None:
    """The arm's speedup if time followed FLOPs: its baseline's FLOPs per sample over its own.

    FLOPs are those counted on the warm-up step times the share the techniques declare, so a technique
    that shrinks the ops (sampled convolutions) and one that declares a share (CRS) are both covered.
    None for a baseline, or when a table recorded no FLOP count.
    """
    base = res["arms"][arm].get("baseline") or res["baseline_arm"]
    if arm in baselines(res) or base not in res["arms"]:
        return None
    mine, theirs = flops_per_sample(res["arms"][arm]["runs"]), flops_per_sample(res["arms"][base]["runs"])
    return theirs / mine if mine and theirs else None


def rows(results: list[dict[str, Any]], variant) -> list[dict[str, Any]]:
    """The CSV rows for every arm of every results table; `variant(res)` names scale and tag."""
    out = []
    for res in results:
        racing_against = baselines(res)
        for arm, info in res["arms"].items():
            runs = info["runs"]
            base = info.get("baseline") or res["baseline_arm"]
            racing = arm not in racing_against and base in res["arms"]
            sp = res["speedups"].get(arm, {}) if racing else {}
            target = info.get("target") or res["target"]
            out.append({
                "paper": res["paper"], "variant": variant(res), "target_metric": target["metric"],
                "target_value": target["value"], "arm": arm,
                "baseline": base if racing else "", "techniques": "+".join(info.get("techniques", [])),
                "seeds": len(runs), "time_to_target_s": _median_tta(runs),
                "baseline_time_to_target_s": _median_tta(res["arms"][base]["runs"]) if racing else None,
                "speedup": sp.get("speedup"), "speedup_low": sp.get("low"), "speedup_high": sp.get("high"),
                "speedup_verdict": sp.get("verdict", ""),
                "success_rate": sum(r["time_to_target_s"] is not None for r in runs) / len(runs) if runs else None,
                "test_acc": _median([r["final"]["test/acc"] for r in runs if r["final"].get("test/acc") is not None]),
                "train_seconds": _median([r["train_seconds"] for r in runs]), "flops_per_sample": flops_per_sample(runs),
                "theoretical_speedup": theoretical_speedup(res, arm),
            })
    return out


def to_csv(table: list[dict[str, Any]]) -> bytes:
    """CSV text; floats with 6 significant digits, missing values empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if row[k] is None else f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                         for k in COLUMNS})
    return buf.getvalue().encode("utf-8")


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto front of (time, accuracy) points: no other point is both faster and more accurate."""
    front, best = [], -math.inf
    for t, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if a > best:
            front.append((t, a))
            best = a
    return front


def pareto_png(table: list[dict[str, Any]]) -> bytes:
    """One panel per (paper, variant): median test accuracy against median training seconds per arm."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table:
        if row["test_acc"] is not None and row["train_seconds"] is not None:
            groups.setdefault((row["paper"], row["variant"]), []).append(row)
    n = max(len(groups), 1)
    cols = min(3, n)
    fig = Figure(figsize=(4.6 * cols, 3.6 * math.ceil(n / cols)), dpi=100)
    FigureCanvasAgg(fig)
    for i, ((paper, variant), group) in enumerate(sorted(groups.items())):
        ax = fig.add_subplot(math.ceil(n / cols), cols, i + 1)
        points = [(r["train_seconds"], r["test_acc"]) for r in group]
        ax.scatter(*zip(*points), s=22, color="C0", zorder=3)
        for r in group:
            ax.annotate(r["arm"], (r["train_seconds"], r["test_acc"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        front = _front(points)
        ax.plot(*zip(*front), color="C3", lw=1.2, drawstyle="steps-post", label="Pareto front", zorder=2)
        ax.set_title(f"{paper} ({variant})", fontsize=8)
        ax.set_xlabel("training time, median (s)", fontsize=8)
        ax.set_ylabel("test accuracy, median", fontsize=8)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
