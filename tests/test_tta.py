"""The time-to-accuracy overview (harness.results.tta): tta.csv rows, and the Pareto figure drawn from them."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from harness.report.build import build_report
from harness.report.figures import pareto_front
from harness.results import tta
from tests.helpers import table, write


def test_csv_has_a_row_per_arm_with_baseline_times_and_speedups(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write(runs, table("cpu", "cpu demo"))
    build_report(runs, tmp_path / "site", pdf=False, allow_dirty=True)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "site" / "tta.csv").read_text(encoding="utf-8"))))
    assert [r["arm"] for r in rows] == ["hard_student", "distilled", "temperature_1"]
    base, distilled, t1 = rows
    assert base["baseline"] == "" and base["speedup"] == ""
    assert distilled["baseline"] == "hard_student"
    # medians with a miss counted as infinity: the baseline's two seeds are 6.2 s and never
    assert distilled["time_to_target_s"] == "5.3" and base["time_to_target_s"] == ""
    assert float(distilled["speedup"]) == 1.21 and distilled["speedup_verdict"] == "inconclusive"
    assert float(t1["success_rate"]) == 0.0 and float(base["success_rate"]) == 0.5
    assert distilled["theoretical_speedup"] == ""  # these runs recorded no FLOP count
    # nor costs to target, paired cost speedups or fidelity (the table predates the protocol)
    assert distilled["flops_speedup"] == distilled["steps_to_target"] == distilled["fidelity"] == ""
    assert b"<svg" in (tmp_path / "site" / "figures" / "pareto.svg").read_bytes()[:1000]


def test_theoretical_speedup_is_the_ratio_of_flops_per_sample() -> None:
    res = table("cpu", "b")
    for run in res.arms["distilled"].runs:
        run.flops = run.samples * 50.0
    for run in res.arms["hard_student"].runs:
        run.flops = run.samples * 200.0
    row = {r["arm"]: r for r in tta.rows([res])}["distilled"]
    assert math.isclose(row["theoretical_speedup"], 4.0)
    assert tta.theoretical_speedup(res, "hard_student") is None  # a baseline races no one


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.93), (4.0, 0.97), (2.0, 0.80)]
    assert pareto_front(points) == [(1.0, 0.90), (2.0, 0.95), (4.0, 0.97)]
