"""What DVC shows of a results table: headline metrics (`dvc metrics show`, `dvc exp show`) and the
time-to-accuracy curves (`dvc plots show`), written beside the table.

For `<dir>/<scale>-<tag>.json`:
- `<scale>-<tag>.metrics.json`: per arm, the median over seeds of test accuracy, of time to target
  (training-clock seconds; null when the target was not reached in most seeds) and of steps, plus
  the speedup against the arm's baseline where the table has one;
- `<scale>-<tag>.curves/<arm>.csv`: one row per evaluation of every seed (seed, step, train_seconds,
  val_acc, val_loss), one file per arm, so `dvc plots show` draws each arm as its own curve.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from harness.results.atomic import atomic_write
from harness.results.schema import write_json

__all__ = ["curve_rows", "headline", "write_exports"]


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def headline(table: dict[str, Any]) -> dict[str, Any]:
    """Per arm: median test accuracy, time to target and steps over seeds; the speedup where there is one."""
    out: dict[str, Any] = {}
    for arm, body in table["arms"].items():
        runs = body["runs"]
        reached = [r["time_to_target_s"] for r in runs if r["time_to_target_s"] is not None]
        row = {"test_acc": _median([r["final"]["test/acc"] for r in runs if "test/acc" in r["final"]]),
               "time_to_target_s": _median(reached) if len(reached) * 2 > len(runs) else None,
               "steps": _median([r["steps"] for r in runs])}
        speed = table.get("speedups", {}).get(arm)
        if speed is not None:
            row["speedup"] = speed.get("speedup")
        out[arm] = row
    return out


def curve_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"seed": r["seed"], "step": p["step"], "train_seconds": p["train_seconds"],
             "val_acc": p.get("val/acc"), "val_loss": p.get("val/loss")} for r in runs for p in r["curve"]]


def write_exports(table: dict[str, Any], table_path: str | Path) -> list[Path]:
    """Write the metrics file and one curve file per arm beside the table; return their paths."""
    table_path = Path(table_path)
    stem = table_path.with_suffix("")
    written = [write_json(headline(table), stem.with_name(stem.name + ".metrics.json"))]
    folder = stem.with_name(stem.name + ".curves")
    for arm, body in table["arms"].items():
        text = io.StringIO()
        writer = csv.DictWriter(text, ["seed", "step", "train_seconds", "val_acc", "val_loss"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(curve_rows(body["runs"]))
        written.append(atomic_write(folder / f"{arm}.csv", text.getvalue()))
    return written
