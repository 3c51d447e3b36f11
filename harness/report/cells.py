"""The text cells the HTML site and the PDF both show, each defined once.

Numbers (by the metric's declared display format), intervals, seconds, ratios and percentage
points; speedup cells; a table's per-arm cells; claim cells and verdict counts; provenance rows;
the combinability matrix's facts and rows; and the terminal digest of a table. Cells are plain
text (never HTML or Typst markup): `html.py` escapes them, `pdf.py` places them as Typst strings.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from harness.results import tta
from harness.results.schema import (
    SCALE_ORDER,
    ClaimResult,
    ClaimVerdict,
    Combinability,
    PairVerdict,
    Provenance,
    ResultsTable,
    Speedup,
    SpeedupVerdict,
    variant,
)

__all__ = [
    "Format", "METRIC_FORMATS", "metric_format", "number", "interval", "seconds", "spread", "tta_cell",
    "speedup_cell", "ratio", "points", "share", "metric_label", "target_text", "arm_order", "final_test_metrics",
    "arm_cells", "theoretical_cell", "ClaimCells", "claim_cells", "counts", "verdict_counts", "VERDICT_CLASS",
    "CLAIM_VERDICT_ORDER", "PAIR_VERDICT_CLASS", "SPEEDUP_VERDICT_ORDER", "provenance_rows", "combinability_facts",
    "combinability_rows", "sorted_tables", "format_summary", "MATRIX_HOWTO", "SCALE_ORDER", "plural",
]

MATRIX_HOWTO = "effitrain matrix --scale cpu --seeds 3"


class Format(StrEnum):
    """How a metric's values are shown."""

    PERCENT = "percent"  # a fraction as a percentage, 2 decimals: 98.10%
    COUNT = "count"  # an integer: 190
    SECONDS = "seconds"  # one decimal and a unit: 5.3 s
    NUMBER = "number"  # 4 significant digits


# The display format of every metric the runs and cards use; a metric not listed here falls back to
# `_guessed_format` (its name), so that a new metric still shows, until it is declared here.
METRIC_FORMATS = {
    "val/acc": Format.PERCENT, "test/acc": Format.PERCENT, "train/acc": Format.PERCENT,
    "val/errors": Format.COUNT, "test/errors": Format.COUNT,
    "val/loss": Format.NUMBER, "test/loss": Format.NUMBER, "train/loss": Format.NUMBER,
    "speedup": Format.NUMBER, "cost/saving": Format.NUMBER, "memory/peak_ratio": Format.NUMBER,
    "time/train_seconds_total": Format.SECONDS, "time/time_to_target_s": Format.SECONDS,
    "time/eval_seconds": Format.SECONDS, "time/warmup_seconds": Format.SECONDS,
}


def _guessed_format(metric: str) -> Format:
    """The format of an undeclared metric, from its last path segment (the rule before formats were declared)."""
    name = metric.rsplit("/", 1)[-1].lower()
    if "acc" in name:
        return Format.PERCENT
    if "error" in name:
        return Format.COUNT
    return Format.SECONDS if "second" in name or name.endswith("_s") else Format.NUMBER


def metric_format(metric: str) -> Format:
    return METRIC_FORMATS.get(metric) or _guessed_format(metric)


def number(metric: str, value: Any) -> str:
    """A metric value in its format: `98.10%`, `190`, `5.3 s`, `0.1234`; `—` unknown, `∞` infinite."""
    if value is None:
        return "—"
    v = float(value)
    if math.isinf(v):
        return "∞"
    fmt = metric_format(metric)
    if fmt is Format.PERCENT:
        return f"{100 * v:.2f}%"
    if fmt is Format.COUNT:
        return str(round(v))
    return f"{v:.1f} s" if fmt is Format.SECONDS else f"{v:.4g}"


def interval(metric: str, value: Any, low: Any, high: Any) -> str:
    """`value [low, high]`, the value alone when the interval is unknown, `not measured` without a value."""
    if value is None:
        return "not measured"
    if low is None or high is None:
        return number(metric, value)
    return f"{number(metric, value)} [{number(metric, low)}, {number(metric, high)}]"


def seconds(value: float | None) -> str:
    """Seconds with one decimal; infinity (a miss among seeds) as ∞, None (a median miss) as `not reached`."""
    if value is None:
        return "not reached"
    return "∞" if math.isinf(value) else f"{value:.1f} s"


def spread(metric: str, values: list[float]) -> str:
    """Median with the [min, max] range over seeds."""
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{number(metric, med)} [{number(metric, min(values))}, {number(metric, max(values))}]"


def tta_cell(times: list[float]) -> str:
    """Median time to target with the [min, max] over seeds; a missed target counts as ∞."""
    if not times:
        return "no runs"
    med = statistics.median(times)
    head = "not reached (∞)" if math.isinf(med) else seconds(med)
    return f"{head} [{seconds(min(times))}, {seconds(max(times))}]"


def speedup_cell(sp: Speedup | None) -> str:
    """`1.10× [0.90, 1.30]`, `n/a` when no speedup could be computed, or why not."""
    if sp is not None and sp.speedup == 0:
        return "0× (technique never reached the target)"
    if sp is not None and sp.verdict is SpeedupVerdict.ONLY_TECHNIQUE:
        return "∞ (only the technique reached the target)"
    if sp is None or sp.speedup is None:
        return "n/a"
    if sp.low is None or sp.high is None:
        return f"{sp.speedup:.2f}×"
    return f"{sp.speedup:.2f}× [{sp.low:.2f}, {sp.high:.2f}]"


def ratio(value: Any, low: Any = None, high: Any = None, unit: str = "×") -> str:
    """A ratio with two decimals and its interval: `1.10× [0.90, 1.30]`; `—` when not measured."""
    def one(v: float) -> str:
        return "∞" if math.isinf(v) else f"{v:.2f}"
    if value is None:
        return "—"
    head = one(float(value)) + unit
    return head if low is None or high is None else f"{head} [{one(float(low))}, {one(float(high))}]"


def points(value: Any, low: Any = None, high: Any = None) -> str:
    """A change of accuracy (fractions) in signed percentage points: `−0.20 pp [−0.40, +0.00]`."""
    def one(v: float) -> str:
        return f"{100 * v:+.2f}".replace("-", "−")
    if value is None:
        return "—"
    head = f"{one(float(value))} pp"
    return head if low is None or high is None else f"{head} [{one(float(low))}, {one(float(high))}]"


def share(value: float | None, decimals: int = 0) -> str:
    """A fraction as a percentage: `67%`; `—` when unknown."""
    return "—" if value is None else f"{100 * value:.{decimals}f}%"


def metric_label(metric: str) -> str:
    """Readable name: 'val/acc' -> 'validation accuracy'."""
    split = {"val": "validation", "test": "test", "train": "training"}
    names = {"acc": "accuracy", "loss": "loss", "errors": "errors"}
    prefix, _, name = metric.rpartition("/")
    return " ".join(p for p in (split.get(prefix, prefix), names.get(name, name)) if p)


def target_text(target: Any) -> str:
    """`val/acc ≥ 97.00%`."""
    return f"{target.metric} {'≥' if target.mode == 'max' else '≤'} {number(target.metric, target.value)}"


def plural(count: int, noun: str) -> str:
    """'1 paper', '3 papers'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def sorted_tables(tables: list[ResultsTable]) -> list[ResultsTable]:
    """By paper, then scale (smoke < cpu < paper), then variant: the order of every page and chapter."""
    return sorted(tables, key=lambda t: (t.paper, SCALE_ORDER.get(t.scale, 99), variant(t)))


# ---------------------------------------------------------------- a table's arms

def arm_order(table: ResultsTable) -> list[str]:
    """Baseline arm first, then the others in the order the Runner ran them (references, baselines, techniques)."""
    base = table.baseline_arm
    return ([base] if base in table.arms else []) + [a for a in table.arms if a != base]


def final_test_metrics(table: ResultsTable) -> list[str]:
    """The final `test/*` metrics any run of the table recorded, sorted."""
    return sorted({k for a in table.arms.values() for r in a.runs for k in r.final if k.startswith("test/")})


def theoretical_cell(table: ResultsTable, arm: str) -> str:
    """The arm's theoretical speedup from FLOPs per sample (harness.results.tta), in words."""
    value = tta.theoretical_speedup(table, arm)
    if value is None:
        return "—"
    if abs(1 / value - 1) < 0.005:
        return "1.00× (same FLOPs per sample)"
    return f"{value:.2f}× ({100 / value:.0f}% of the FLOPs per sample)"


def arm_cells(table: ResultsTable, arm: str) -> dict[str, Any]:
    """One arm's time-to-target row.

    Keys: tta (median [min, max], ∞ for a miss), reached ("2/3 (67%)"), finals (one cell per
    `final_test_metrics(table)`), share (evaluation share of wall time), speedup (with its interval),
    verdict (the speedup's verdict, "" for a baseline) and theory (FLOPs-per-sample speedup).
    """
    runs = table.arms[arm].runs
    times = [math.inf if r.time_to_target_s is None else float(r.time_to_target_s) for r in runs]
    hit = sum(not math.isinf(t) for t in times)
    own = table.arms[arm].target  # an arm may race to its own target (e.g. another model)
    own_note = f" (to {own.metric} {own.value:g})" if own and own != table.target else ""
    shares = [r.eval_share for r in runs if r.eval_share is not None]
    sp = table.speedups.get(arm)
    speed = "baseline" if sp is None and arm in tta.baselines(table) else speedup_cell(sp)
    if sp and (sp.baseline or table.baseline_arm) != table.baseline_arm:
        speed += f" vs {sp.baseline}"
    return {"tta": tta_cell(times) + own_note,
            "reached": f"{hit}/{len(runs)} ({100 * hit / len(runs):.0f}%)" if runs else "—",
            "finals": [spread(k, [r.final[k] for r in runs if r.final.get(k) is not None])
                       for k in final_test_metrics(table)],
            "share": share(statistics.median(shares), 1) if shares else "—",
            "speedup": speed, "verdict": sp.verdict.value if sp else "", "theory": theoretical_cell(table, arm)}


# ---------------------------------------------------------------- claims and verdicts

# Claim verdicts in the order counts list them; the first four are coloured (class of the HTML row, fill of the PDF's).
CLAIM_VERDICT_ORDER = [ClaimVerdict.REPRODUCED, ClaimVerdict.NOT_REPRODUCED, ClaimVerdict.INCONCLUSIVE,
                       ClaimVerdict.NOT_RUN]
VERDICT_CLASS = {ClaimVerdict.REPRODUCED: "ok", ClaimVerdict.NOT_REPRODUCED: "bad",
                 ClaimVerdict.INCONCLUSIVE: "maybe", ClaimVerdict.NOT_RUN: "skip"}
SPEEDUP_VERDICT_ORDER = [SpeedupVerdict.FASTER, SpeedupVerdict.SLOWER, SpeedupVerdict.INCONCLUSIVE]
# Pair verdicts (DESIGN.md, Combinability): interaction S_AB / (S_A * S_B) about 1 stacks, above 1
# synergy, below 1 overlap; the rest say why no interaction could be measured.
PAIR_VERDICT_CLASS = {PairVerdict.SYNERGY: "syn", PairVerdict.STACKS: "ok", PairVerdict.OVERLAP: "maybe",
                      PairVerdict.INCOMPATIBLE: "skip", PairVerdict.NOT_MEASURABLE: "skip",
                      PairVerdict.MISSED_TARGET: "bad", PairVerdict.DIVERGED: "bad", PairVerdict.FAILED: "bad"}


@dataclass(frozen=True)
class ClaimCells:
    """A claim as text: what the paper says beside what the table measured."""

    text: str
    metric: str
    arm: str  # "distilled", or "a − b" for a claim on the difference of two arms
    claimed: str  # "n.f." when the paper gives no number
    paper_baseline: str | None
    tolerance: str
    source: str
    measured: str  # value [low, high]
    verdict: str
    css: str  # "" for a verdict without a colour


def claim_cells(claim: ClaimResult) -> ClaimCells:
    m = claim.metric
    return ClaimCells(
        text=claim.text, metric=m, arm=claim.arm + (f" − {claim.minus_arm}" if claim.minus_arm else ""),
        claimed="n.f." if claim.claimed is None else number(m, claim.claimed),
        paper_baseline=None if claim.paper_baseline is None else number(m, claim.paper_baseline),
        tolerance="—" if claim.tolerance is None else "±" + number(m, claim.tolerance), source=claim.source,
        measured=interval(m, claim.measured, claim.low, claim.high), verdict=claim.verdict.value,
        css=VERDICT_CLASS.get(claim.verdict, ""))


def counts(values: list[str], order: list[str]) -> str:
    """'3 reproduced, 1 inconclusive': counts in a fixed order, unknown values after, sorted."""
    found: dict[str, int] = {}
    for v in values:
        found[str(v)] = found.get(str(v), 0) + 1
    keys = [str(k) for k in order if str(k) in found]
    keys += sorted(set(found) - set(keys))
    return ", ".join(f"{found[k]} {k}" for k in keys)


def verdict_counts(claims: list[ClaimResult]) -> str:
    """A table's claim verdicts counted: '1 not reproduced, 1 inconclusive'; `no claims` without any."""
    return counts([c.verdict for c in claims], CLAIM_VERDICT_ORDER) or "no claims"


# ---------------------------------------------------------------- provenance

def provenance_rows(prov: Provenance, created: str, command: str | None = None,
                    python: bool = False) -> list[tuple[str, str | list[tuple[str, str]]]]:
    """Where the numbers came from, as (item, value); the dataset md5 value is a list of (file, md5).

    The site shows code version, software, machine, data and time; the PDF adds the Python
    version and the command (`python`, `command`).
    """
    rows: list[tuple[str, Any]] = [("git commit", str(prov.git_commit)),
                                   ("working tree dirty", "yes" if prov.git_dirty else "no"),
                                   ("torch", str(prov.torch)), ("lightning", str(prov.lightning))]
    if python:
        rows.append(("python", str(prov.python or "—")))
    rows += [("device", str(prov.device)), ("cpu count", str(prov.cpu_count)),
             ("dataset md5", sorted(prov.dataset_md5.items()))]
    if command is not None:
        rows.append(("command", command))
    return rows + [("created", created)]


# ---------------------------------------------------------------- the combinability matrix

def combinability_facts(comb: Combinability) -> list[tuple[str, str]]:
    """What every pair shares, as (item, text): recipe and its rule, budget, target, seeds, order, command."""
    recipe = comb.recipe + (f": {comb.recipe_description}" if comb.recipe_description else "")
    runs = comb.runs or {}
    return [("recipe", recipe), ("which recipe the pairs ran on", comb.recipe_rule),
            ("budget", f"{comb.scale} scale: {comb.budget}"),
            ("overrides", ", ".join(comb.overrides) or "none"), ("target", target_text(comb.target)),
            ("seeds", ", ".join(str(x) for x in comb.seeds) + f" ({len(comb.seeds)}, paired by seed)"),
            ("composition order", " → ".join(comb.composition_order) or "—"),
            ("command", comb.command), ("created", comb.created),
            ("runs", ", ".join(f"{v} {k}" for k, v in runs.items()) or "—")]


def combinability_rows(comb: Combinability) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The singles and the pairs of a combinability matrix as text cells."""
    order = [t for t in comb.techniques if t in comb.singles]
    order += sorted(set(comb.singles) - set(order))
    singles = []
    for name in order:
        s = comb.singles[name]
        singles.append({"technique": name, "paper": s.paper or "—", "verdict": s.verdict or "—",
                        "speedup": ratio(s.speedup, s.low, s.high), "success": share(s.success_rate),
                        "dacc": points(s.dacc, s.dacc_low, s.dacc_high), "error": s.error or ""})
    return singles, [_pair_cells(comb, p) for p in comb.pairs]


def _pair_cells(comb: Combinability, p: Any) -> dict[str, str]:
    note = p.recipe_note if p.recipe not in (None, comb.recipe) else None
    dacc = "—" if p.dacc_ab is None else (f"pair {points(p.dacc_ab)} vs sum {points(p.dacc_sum)} "
                                          f"(excess {points(p.dacc_excess)})")
    return {"pair": f"{p.a} + {p.b}", "verdict": p.verdict or "—", "class": PAIR_VERDICT_CLASS.get(p.verdict, ""),
            "reason": (p.reason or "—") + (f" (ran on {p.recipe}: {note})" if note else ""),
            "s_a": ratio(p.s_a, p.s_a_low, p.s_a_high), "s_b": ratio(p.s_b, p.s_b_low, p.s_b_high),
            "s_ab": ratio(p.s_ab, p.s_ab_low, p.s_ab_high),
            "interaction": ratio(p.interaction, p.interaction_low, p.interaction_high, ""), "dacc": dacc}


# ---------------------------------------------------------------- the terminal

def format_summary(table: ResultsTable) -> str:
    """A plain-text digest of one results table, for the terminal after a run."""
    t = table.target
    lines = [f"{table.paper} at {variant(table)} ({len(table.seeds)} seed(s)); target {t.metric} "
             f"{number(t.metric, t.value)}", f"  budget: {table.budget}"]
    for name in arm_order(table):
        runs = table.arms[name].runs
        cell = tta_cell([math.inf if r.time_to_target_s is None else r.time_to_target_s for r in runs])
        finals = ", ".join(f"{k} {spread(k, [r.final[k] for r in runs])}"
                           for k in sorted(runs[0].final) if k.startswith("test/")) if runs else ""
        speed = table.speedups.get(name)
        extra = f"; speedup {speedup_cell(speed)} ({speed.verdict})" if speed else ""
        lines.append(f"  {name}: time to target {cell}; {finals}{extra}")
    for c in table.claims:
        cells = claim_cells(c)
        lines.append(f"  claim {c.id or c.text}: claimed {cells.claimed}, measured {cells.measured} -> {c.verdict}")
    return "\n".join(lines)
