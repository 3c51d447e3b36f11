"""The text cells the HTML site and the PDF both show, each defined once.

Numbers (by the metric's declared display format), intervals, seconds, ratios and percentage
points; speedup cells (machine-independent cost first on CPU tables); a table's per-arm cells;
claim cells (kind, fidelity) and verdict counts; the protocol a table was measured under and the
measurement protocol itself (`PROTOCOL`); provenance rows and the code check (`code_status`: is
the code a table's runs executed still the code on disk?); the combinability matrix's facts and
rows; and the terminal digest of a table. Cells are plain text (never HTML or Typst markup):
`html.py` escapes them, `pdf.py` places them as Typst strings.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
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
    "combinability_rows", "cost_words", "sorted_tables", "format_summary", "MATRIX_HOWTO", "SCALE_ORDER", "plural",
    "MIN_SEEDS", "NO_VERDICT", "PROTOCOL", "PROTOCOL_INTRO", "PROJECT_ROOT", "min_seeds", "too_few_seeds",
    "cost_first", "cost_order", "speedup_parts", "speedup_summary", "kind_text", "fidelity_text", "flops_text",
    "protocol_rows", "protocol_missing", "CodeStatus", "code_status", "code_statuses", "table_key",
    "MATRIX_KEY", "matrix_banners", "status_banners", "status_mark",
]

MATRIX_HOWTO = "effitrain matrix --scale cpu --seeds 5"
MIN_SEEDS = 5  # the protocol's minimum for a verdict (harness.results.stats.MIN_SEEDS, which imports scipy)
NO_VERDICT = "no verdict (under 5 seeds)"  # how verdict counts name a judgement withheld for too few seeds
# A table's provenance.code_files are paths relative to the project root (harness.experiments.jobs.code_files).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    "cost/flops_saved": Format.PERCENT, "cost/samples_saved": Format.PERCENT, "cost/steps_saved": Format.PERCENT,
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


def _times(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}"


def _speedup_text(value: float | None, low: float | None, high: float | None, verdict: Any,
                  range_of: int | None = None) -> str:
    """`1.10× [0.90, 1.30]`, `1.10× [range of 3 seeds: 0.90, 1.30]`, `n/a`, or why there is no ratio."""
    if value == 0:
        return "0× (technique never reached the target)"
    if verdict == SpeedupVerdict.ONLY_TECHNIQUE:
        return "∞ (only the technique reached the target)"
    if value is None:
        return "n/a"
    head = f"{_times(float(value))}×"
    if low is None or high is None:
        return head
    span = f"{_times(float(low))}, {_times(float(high))}"
    return f"{head} [range of {plural(range_of, 'seed')}: {span}]" if range_of else f"{head} [{span}]"


def speedup_cell(sp: Speedup | None, range_of: int | None = None) -> str:
    """`1.10× [0.90, 1.30]`, `n/a` when no speedup could be computed, or why not; with `range_of` (a table
    under the protocol's minimum of seeds) the interval is labelled as the range of that many seeds."""
    if sp is None:
        return "n/a"
    return _speedup_text(sp.speedup, sp.low, sp.high, sp.verdict, range_of)


# ---------------------------------------------------------------- seeds, costs and which leads

COST_LABELS = {"flops": "FLOPs", "steps": "steps", "samples": "samples", "seconds": "wall-clock"}
_JUDGED_SPEEDUPS = {SpeedupVerdict.FASTER, SpeedupVerdict.SLOWER, SpeedupVerdict.INCONCLUSIVE,
                    SpeedupVerdict.TIMING_NOISE, SpeedupVerdict.RANGE_ONLY}


def min_seeds(table: ResultsTable) -> int:
    """The seeds a verdict needs: the table's protocol's, or the protocol's default for older tables."""
    return table.protocol.min_seeds if table.protocol else MIN_SEEDS


def too_few_seeds(table: ResultsTable) -> bool:
    """Under the protocol's minimum of seeds: ranges, and no verdict."""
    return len(table.seeds) < min_seeds(table)


def _range_of(table: ResultsTable) -> int | None:
    """The seed count to label intervals with "range of n seeds": a protocol table under the minimum
    (its intervals are the seeds' min and max); None otherwise. Older tables' intervals were bootstraps."""
    return len(table.seeds) if table.protocol is not None and too_few_seeds(table) else None


def _no_verdict(table: ResultsTable) -> str:
    return f"no verdict: {plural(len(table.seeds), 'seed')}, under {min_seeds(table)}"


def cost_first(table: ResultsTable) -> bool:
    """A CPU table leads with its machine-independent cost (FLOPs, steps to target): its wall-clock was
    measured on a shared machine. A CUDA table leads with wall-clock."""
    return str(table.provenance.device).strip().lower().startswith("cpu")


def cost_order(table: ResultsTable) -> list[str]:
    """The costs a speedup cell shows, leading one first: keys of Speedup.costs, and "seconds" (wall-clock)."""
    return ["flops", "steps", "seconds"] if cost_first(table) else ["seconds", "flops", "steps"]


def _speedup_verdict(table: ResultsTable, verdict: SpeedupVerdict) -> str:
    """The verdict as shown: withheld under the minimum of seeds (an older table's recorded one named)."""
    if too_few_seeds(table) and verdict in _JUDGED_SPEEDUPS:
        recorded = f"; recorded: {verdict.value}" if table.protocol is None else ""
        return _no_verdict(table) + recorded
    return verdict.value


def speedup_parts(table: ResultsTable, arm: str) -> list[tuple[str, str, str]]:
    """An arm's speedups over its baseline as (cost label, ratio [interval], verdict), the leading cost first
    (`cost_order`); [] for an arm without a speedup. Costs a table did not record say so."""
    sp = table.speedups.get(arm)
    if sp is None:
        return []
    range_of = _range_of(table)
    parts = {"seconds": (speedup_cell(sp, range_of), _speedup_verdict(table, sp.verdict))}
    for cost in ("flops", "steps"):
        c = (sp.costs or {}).get(cost)
        parts[cost] = ((_speedup_text(c.speedup, c.low, c.high, c.verdict, range_of),
                        _speedup_verdict(table, c.verdict)) if c else ("not recorded", ""))
    return [(COST_LABELS[k], *parts[k]) for k in cost_order(table)]


def _arm_role(table: ResultsTable, arm: str) -> str | None:
    """Why an arm has no speedup: the baseline, an A/A control; None for an arm that races."""
    replica = table.arms[arm].replicate_of
    if replica:
        return f"A/A control of {replica} (timing noise floor)"
    return "baseline" if arm in tta.baselines(table) and arm not in table.speedups else None


def speedup_summary(table: ResultsTable, arm: str, compact: bool = False) -> str:
    """One line: `FLOPs 1.20× [1.10, 1.30] (faster); steps …; wall-clock … (inconclusive (timing noise))`,
    the leading cost first; `baseline`, `A/A control of …` or `n/a` for an arm without a speedup.
    `compact` (the index): a withheld verdict reads `no verdict` and costs not recorded are left out (the
    table's row says its protocol is not recorded)."""
    parts = speedup_parts(table, arm)
    if not parts:
        return _arm_role(table, arm) or "n/a"
    if compact:
        parts = [(label, value, "no verdict" if verdict.startswith("no verdict") else verdict)
                 for label, value, verdict in parts]
    shown = [f"{label} {value}" + (f" ({verdict})" if verdict else "") for label, value, verdict in parts
             if value != "not recorded"]
    missing = [label for label, value, _ in parts if value == "not recorded"]
    return "; ".join(shown + ([f"{' and '.join(missing)} not recorded"] if missing and not compact else []))


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


def flops_text(value: float | None) -> str:
    """Counted FLOPs with an SI prefix: `164 MFLOP`, `1.2 TFLOP`; `∞` (not reached), `—` (unknown)."""
    if value is None:
        return "—"
    v = float(value)
    if math.isinf(v):
        return "∞"
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g} FLOP"


EPOCH_COLUMNS = ["arm", "epoch", "parameters", "FLOPs this epoch", "of the baseline's", "training seconds"]


def resizing_arms(table: ResultsTable) -> list[str]:
    """Arms whose model changed size during a run (the parameters differ between epochs of some run)."""
    return [arm for arm in arm_order(table)
            if any(len({e.get("params") for e in (r.epochs or [])}) > 1 for r in table.arms[arm].runs)]


def epoch_rows(table: ResultsTable) -> list[list[str]]:
    """Per epoch of the baseline and of every arm whose model changed size: the medians over seeds of the
    parameters it trained (at the epoch's start), the counted FLOPs it spent, their share of the baseline's
    in the same epoch and its training-clock seconds (the first epoch's without the warm-up step). Empty when
    no arm changed size, or the runs predate the per-epoch ledger (results schema 4)."""
    arms = resizing_arms(table)
    if not arms:
        return []

    def medians(arm: str) -> dict[int, dict[str, float]]:
        by_epoch: dict[int, list[dict[str, float]]] = {}
        for run in table.arms[arm].runs:
            for row in run.epochs or []:
                by_epoch.setdefault(int(row["epoch"]), []).append(row)
        return {e: {k: statistics.median(r[k] for r in rows) for k in ("params", "flops", "train_seconds")}
                for e, rows in sorted(by_epoch.items())}

    base = medians(table.baseline_arm)
    rows = []
    for arm in [table.baseline_arm, *(a for a in arms if a != table.baseline_arm)]:
        for epoch, m in medians(arm).items():
            ref = base.get(epoch, {}).get("flops")
            rows.append([arm, str(epoch), f"{m['params']:,.0f}", flops_text(m["flops"]),
                         share(m["flops"] / ref) if ref else "—", seconds(m["train_seconds"])])
    return rows


def _cost_to_target(table: ResultsTable, arm: str, attr: str, show: Any) -> str:
    """Median cost to target over seeds with [min, max], a miss as ∞; `not recorded` for a table that
    predates the costs to target (no protocol, and no run holds one)."""
    runs = table.arms[arm].runs
    if not runs:
        return "no runs"
    if table.protocol is None and all(getattr(r, attr) is None for r in runs):
        return "not recorded"
    values = [math.inf if getattr(r, attr) is None else float(getattr(r, attr)) for r in runs]

    def one(v: float) -> str:
        return "∞" if math.isinf(v) else show(v)
    med = statistics.median(values)
    head = "not reached (∞)" if math.isinf(med) else one(med)
    return f"{head} [{one(min(values))}, {one(max(values))}]"


def fidelity_text(fidelity: str | None, note: str | None) -> str:
    """`faithful`, `variant: what differs`, `substitute: what stands in`; `not recorded` for older tables."""
    if not fidelity:
        return "not recorded"
    return f"{fidelity}: {note}" if note else fidelity


def achieved_text(table: ResultsTable, arm: str) -> str:
    """What the arm's techniques achieved (their per-step statistics, run means, then the median over seeds):
    `activation_grad_pruning/sparsity/mean 0.632`; per-layer statistics are left to MLflow. "" for none."""
    keys = sorted({k for r in table.arms[arm].runs for k in (r.stats or {})})
    shown = [k for k in keys if k.count("/") == 1 or k.endswith("/mean")]
    parts = []
    for key in shown:
        values = [r.stats[key] for r in table.arms[arm].runs if r.stats and key in r.stats]
        parts.append(f"{key} {statistics.median(values):.3g}" + (f" [{min(values):.3g}, {max(values):.3g}]"
                                                                  if len(values) > 1 else ""))
    return "; ".join(parts)


def arm_cells(table: ResultsTable, arm: str) -> dict[str, Any]:
    """One arm's row.

    Keys: tta (median [min, max], ∞ for a miss), steps and flops (the machine-independent costs to
    target, likewise), costs ((label, cell) for FLOPs, steps and time to target, the leading cost first),
    reached ("2/3 (67%)"), finals (one cell per `final_test_metrics(table)`), share (evaluation share
    of wall time), speedups (`speedup_parts`: (cost, ratio [interval], verdict), the leading cost first),
    speedup (them in one line, or the arm's role: baseline, A/A control), verdict (the wall-clock
    speedup's verdict as shown, "" without one), fidelity (with its note), theory (FLOPs-per-sample
    speedup) and achieved (the techniques' statistics, `achieved_text`).
    """
    info = table.arms[arm]
    runs = info.runs
    times = [math.inf if r.time_to_target_s is None else float(r.time_to_target_s) for r in runs]
    hit = sum(not math.isinf(t) for t in times)
    own = info.target  # an arm may race to its own target (e.g. another model)
    own_note = f" (to {own.metric} {own.value:g})" if own and own != table.target else ""
    shares = [r.eval_share for r in runs if r.eval_share is not None]
    sp = table.speedups.get(arm)
    speed = speedup_summary(table, arm)
    if sp and (sp.baseline or table.baseline_arm) != table.baseline_arm:
        speed += f" vs {sp.baseline}"
    steps = _cost_to_target(table, arm, "steps_to_target", lambda v: f"{v:.0f}")
    flops = _cost_to_target(table, arm, "flops_to_target", flops_text)
    tta_text = tta_cell(times) + own_note
    costs = {"flops": ("FLOPs", flops), "steps": ("steps", steps), "seconds": ("time", tta_text)}
    return {"tta": tta_text, "steps": steps, "flops": flops, "costs": [costs[k] for k in cost_order(table)],
            "reached": f"{hit}/{len(runs)} ({100 * hit / len(runs):.0f}%)" if runs else "—",
            "finals": [spread(k, [r.final[k] for r in runs if r.final.get(k) is not None])
                       for k in final_test_metrics(table)],
            "share": share(statistics.median(shares), 1) if shares else "—",
            "speedups": speedup_parts(table, arm), "speedup": speed,
            "verdict": _speedup_verdict(table, sp.verdict) if sp else "",
            "fidelity": fidelity_text(info.fidelity, info.fidelity_note), "theory": theoretical_cell(table, arm),
            "achieved": achieved_text(table, arm)}


# ---------------------------------------------------------------- claims and verdicts

# Claim verdicts in the order counts list them, with the class that colours them (the HTML row's class, the
# PDF row's fill): agreement green, contradiction red, undecided yellow, no judgement (too few seeds, a
# substitute's disagreement, not run, a capped run) grey; a collapsed run is a failure, like a contradiction.
CLAIM_VERDICT_ORDER = [ClaimVerdict.REPRODUCED, ClaimVerdict.CONSISTENT, ClaimVerdict.AGREES_SUBSTITUTE,
                       ClaimVerdict.NOT_REPRODUCED, ClaimVerdict.COLLAPSED, ClaimVerdict.DIFFERS_SUBSTITUTE,
                       ClaimVerdict.INCONCLUSIVE, ClaimVerdict.RANGE_ONLY, NO_VERDICT, ClaimVerdict.CAPPED,
                       ClaimVerdict.NOT_RUN]
VERDICT_CLASS = {ClaimVerdict.REPRODUCED: "ok", ClaimVerdict.CONSISTENT: "ok", ClaimVerdict.AGREES_SUBSTITUTE: "ok",
                 ClaimVerdict.NOT_REPRODUCED: "bad", ClaimVerdict.COLLAPSED: "bad",
                 ClaimVerdict.INCONCLUSIVE: "maybe", ClaimVerdict.DIFFERS_SUBSTITUTE: "skip",
                 ClaimVerdict.RANGE_ONLY: "skip", NO_VERDICT: "skip", ClaimVerdict.CAPPED: "skip",
                 ClaimVerdict.NOT_RUN: "skip"}
SPEEDUP_VERDICT_ORDER = [SpeedupVerdict.FASTER, SpeedupVerdict.SLOWER, SpeedupVerdict.INCONCLUSIVE,
                         SpeedupVerdict.TIMING_NOISE, SpeedupVerdict.RANGE_ONLY, NO_VERDICT, SpeedupVerdict.COLLAPSED]
# Pair verdicts (DESIGN.md, Combinability): interaction S_AB / (S_A * S_B) about 1 stacks, above 1
# synergy, below 1 overlap; the rest say why no interaction could be measured.
PAIR_VERDICT_CLASS = {PairVerdict.SYNERGY: "syn", PairVerdict.STACKS: "ok", PairVerdict.OVERLAP: "maybe",
                      PairVerdict.INCOMPATIBLE: "skip", PairVerdict.NOT_MEASURABLE: "skip",
                      PairVerdict.RANGE_ONLY: "skip", PairVerdict.MISSED_TARGET: "bad", PairVerdict.DIVERGED: "bad",
                      PairVerdict.FAILED: "bad", PairVerdict.COLLAPSED: "bad", PairVerdict.CAPPED: "skip"}
# Verdicts that judge a claim from its interval: withheld under the minimum of seeds.
_JUDGED_CLAIMS = {ClaimVerdict.REPRODUCED, ClaimVerdict.NOT_REPRODUCED, ClaimVerdict.INCONCLUSIVE,
                  ClaimVerdict.CONSISTENT, ClaimVerdict.AGREES_SUBSTITUTE, ClaimVerdict.DIFFERS_SUBSTITUTE,
                  ClaimVerdict.RANGE_ONLY}


@dataclass(frozen=True)
class ClaimCells:
    """A claim as text: what the paper says beside what the table measured."""

    text: str
    metric: str
    arm: str  # "distilled", "a − b" for a claim on the difference of two arms, "a < b < c" for an ordering
    claimed: str  # "n.f." when the paper gives no number
    paper_baseline: str | None
    tolerance: str
    source: str
    measured: str  # value [low, high], or value [range of n seeds: low, high]
    verdict: str  # as shown: "no verdict (3 seeds, under 5)" under the minimum of seeds
    css: str  # "" for a verdict without a colour
    kind: str = "point"  # in words: "point ± 10", "at least", "at most (up to)", "range", "ordering a < b < c"
    fidelity: str = "not recorded"  # of the arm judged: "faithful", "variant: what differs", "substitute: …"
    verdict_key: str = ""  # what verdict counts count: the verdict, or NO_VERDICT


def kind_text(claim: ClaimResult) -> str:
    """A claim's kind in words; tables before claim kinds held point claims only."""
    kind = claim.kind or "point"
    if kind == "point":
        return "point" if claim.tolerance is None else f"point ± {number(claim.metric, claim.tolerance)}"
    if kind == "ordering":
        return "ordering " + " < ".join(claim.arms or [])
    return {"at_least": "at least", "at_most": "at most (up to)", "range": "range"}.get(kind, kind)


def _claimed(claim: ClaimResult) -> str:
    m = claim.metric
    if claim.kind == "range" and claim.claimed is not None and claim.claimed_high is not None:
        return f"{number(m, claim.claimed)} to {number(m, claim.claimed_high)}"
    if claim.claimed is None:
        return " < ".join(claim.arms) if claim.kind == "ordering" and claim.arms else "n.f."
    prefix = {"at_least": "≥ ", "at_most": "≤ "}.get(claim.kind or "", "")
    return prefix + number(m, claim.claimed)


def _measured(claim: ClaimResult, range_of: int | None) -> str:
    m = claim.metric
    if claim.measured is None:
        return "not measured"
    head = ("smallest gap " if claim.kind == "ordering" else "") + number(m, claim.measured)
    if claim.low is None or claim.high is None:
        return head
    span = f"{number(m, claim.low)}, {number(m, claim.high)}"
    return f"{head} [range of {plural(range_of, 'seed')}: {span}]" if range_of else f"{head} [{span}]"


def claim_cells(claim: ClaimResult, table: ResultsTable | None = None) -> ClaimCells:
    """A claim's cells; with its `table`, a verdict from too few seeds is withheld and ranges are named."""
    m = claim.metric
    few = table is not None and too_few_seeds(table)
    range_of = _range_of(table) if table is not None and claim.coverage is None else None
    verdict, key, css = claim.verdict.value, claim.verdict.value, VERDICT_CLASS.get(claim.verdict, "")
    if few and claim.verdict in _JUDGED_CLAIMS:
        verdict, key, css = _no_verdict(table), NO_VERDICT, VERDICT_CLASS[NO_VERDICT]
        if table.protocol is None and claim.verdict is not ClaimVerdict.RANGE_ONLY:
            verdict += f"; recorded: {claim.verdict.value}"
    arm = " < ".join(claim.arms) if claim.kind == "ordering" and claim.arms else claim.arm
    return ClaimCells(
        text=claim.text, metric=m, arm=arm + (f" − {claim.minus_arm}" if claim.minus_arm else ""),
        claimed=_claimed(claim),
        paper_baseline=None if claim.paper_baseline is None else number(m, claim.paper_baseline),
        tolerance="—" if claim.tolerance is None else "±" + number(m, claim.tolerance), source=claim.source,
        measured=_measured(claim, range_of), verdict=verdict, css=css, kind=kind_text(claim),
        fidelity=fidelity_text(claim.fidelity, claim.fidelity_note), verdict_key=key)


def counts(values: list[str], order: list[str]) -> str:
    """'3 reproduced, 1 inconclusive': counts in a fixed order, unknown values after, sorted."""
    found: dict[str, int] = {}
    for v in values:
        found[str(v)] = found.get(str(v), 0) + 1
    keys = [str(k) for k in order if str(k) in found]
    keys += sorted(set(found) - set(keys))
    return ", ".join(f"{found[k]} {k}" for k in keys)


def verdict_counts(claims: list[ClaimResult], table: ResultsTable | None = None) -> str:
    """A table's claim verdicts counted as shown: '1 not reproduced, 1 inconclusive'; `no claims` without any.
    With the table, verdicts withheld for too few seeds count as NO_VERDICT."""
    return counts([claim_cells(c, table).verdict_key for c in claims], CLAIM_VERDICT_ORDER) or "no claims"


def speedup_verdict_key(table: ResultsTable, arm: str) -> str | None:
    """The wall-clock speedup verdict an arm's count goes under (NO_VERDICT under the minimum of seeds)."""
    sp = table.speedups.get(arm)
    if sp is None:
        return None
    return NO_VERDICT if too_few_seeds(table) and sp.verdict in _JUDGED_SPEEDUPS else sp.verdict.value


# ---------------------------------------------------------------- the protocol a table was measured under

def table_key(table: ResultsTable) -> tuple[str, str]:
    """(paper, variant): a table's identity, and the key of `code_statuses`."""
    return table.paper, variant(table)


# The combinability matrix's entry in the statuses dict (no paper is called "combinability.json").
MATRIX_KEY = ("combinability.json", "matrix")


def protocol_missing(table: ResultsTable) -> str | None:
    """What a table written before the measurement protocol (schema version 1 or 2) lacks, else None."""
    if table.protocol is not None:
        return None
    return (f"this table (schema version {table.schema_version}) was written before the measurement protocol. "
            "Its intervals are the earlier bootstrap ones, its arms were not interleaved by seed nor timed against "
            "an A/A control, and it records no costs to target, claim kinds or fidelity; read its verdicts with "
            "that in mind.")


def _noise_floor(table: ResultsTable) -> tuple[str, str]:
    proto = table.protocol
    if proto is None:
        return "not recorded", "not recorded"
    if proto.aa_arm is None:
        return "none: no A/A control ran", "none"
    replica = table.arms[proto.aa_arm].replicate_of if proto.aa_arm in table.arms else None
    aa = proto.aa_arm + (f" (the baseline {replica} run again on every seed)" if replica else "")
    if proto.noise_floor is None:
        return "not measured (the A/A control gave no timing)", aa
    return (f"{proto.noise_floor:.2f}× (largest ratio either way between the baseline and its A/A replicate; "
            "a wall-clock speedup inside it is inconclusive (timing noise))", aa)


def _load(table: ResultsTable) -> str:
    loads = [r.load for a in table.arms.values() for r in a.runs if r.load]
    medians = [x["median"] for x in loads if x.get("median") is not None]
    if not medians:
        return "not recorded"
    highest = max(x.get("max") or x["median"] for x in loads if x.get("median") is not None)
    return (f"median {statistics.median(medians):.2f}, highest {highest:.2f} (1-minute load average over "
            f"{plural(len(medians), 'run')})")


def _seeds_text(table: ResultsTable) -> str:
    n, need = len(table.seeds), min_seeds(table)
    listed = ", ".join(str(s) for s in table.seeds)
    if n < need and table.protocol is None:
        return f"{n} ({listed}): under {need}, so no verdict is shown (the recorded one is named beside it)"
    if n < need:
        return f"{n} ({listed}), paired by seed: under {need}, so intervals are ranges and no verdict is given"
    return f"{n} ({listed}), paired by seed"


def protocol_rows(table: ResultsTable, status: CodeStatus | None = None) -> list[tuple[str, str]]:
    """How a table's numbers were reached, as (item, text): seeds, interval method and its coverage, the
    timing noise floor and A/A arm, the cost shown first, arm order, collapse threshold, capped and
    collapsed runs, the target rule, machine load, and the code and working-tree checks. Fields a table
    predates say "not recorded"."""
    proto = table.protocol
    floor, aa = _noise_floor(table)
    method = "not recorded (the earlier bootstrap intervals)"
    collapse = capped = collapsed = rule = order = "not recorded"
    if proto is not None:
        method = proto.interval_method
        if proto.coverage is not None and f"{100 * proto.coverage:.1f}%" not in method:
            method += f" (coverage {100 * proto.coverage:.1f}%)"
        order = proto.arm_order
        if proto.collapse_accuracy is not None:
            chance = f", {proto.classes} classes" if proto.classes else ""
            collapse = f"final test accuracy at or below {number('test/acc', proto.collapse_accuracy)} " \
                       f"(1.5× chance{chance})"
        capped = ", ".join(proto.capped_runs) or "none"
        collapsed = ", ".join(proto.collapsed_runs) or "none"
        rule = proto.target_rule or "none recorded"
    lead = ("FLOPs and steps to target (machine-independent), then wall-clock: a CPU table, timed on a shared "
            "machine" if cost_first(table) else "wall-clock (training-clock seconds): a GPU table")
    if table.speedups and not any(sp.costs for sp in table.speedups.values()):
        lead += " (this table records wall-clock speedups only)"
    dirty = {True: "dirty: the runs came from uncommitted code", False: "clean", None: "not recorded"}
    return [("seeds", _seeds_text(table)), ("interval method", method), ("timing noise floor", floor),
            ("A/A control arm", aa), ("cost shown first", lead), ("arm order", order),
            ("collapsed when", collapse), ("capped runs (time guard hit; never in an accuracy comparison)", capped),
            ("collapsed runs", collapsed), ("target", target_text(table.target)), ("target rule", rule),
            ("machine load", _load(table)),
            ("code", status.text() if status is not None else "not checked"),
            ("working tree", dirty[table.provenance.git_dirty])]


# ---------------------------------------------------------------- is the code still the code that ran?

@dataclass(frozen=True)
class CodeStatus:
    """A table's recorded source files (provenance.code_files) against the files on disk now."""

    recorded: bool  # False: the table does not list its code files ("code not recorded")
    checked: int = 0  # files compared
    changed: tuple[str, ...] = field(default=())  # hash differs now
    missing: tuple[str, ...] = field(default=())  # no such file now (or outside the project)

    @property
    def stale(self) -> bool:
        return bool(self.changed or self.missing)

    def files(self) -> str:
        """`harness/x.py (changed), harness/y.py (missing)`."""
        return ", ".join([f"{f} (changed)" for f in self.changed] + [f"{f} (missing)" for f in self.missing])

    def text(self) -> str:
        if not self.recorded:
            return "code not recorded: the table lists no source files, so staleness cannot be checked"
        if self.stale:
            return f"stale: {self.files()} since the runs"
        return f"current: the {plural(self.checked, 'source file')} the runs executed are unchanged"


def code_status(prov: Provenance, root: str | Path | None = None) -> CodeStatus:
    """Compare provenance.code_files ({path relative to the project: first 16 hex of its sha256}) with the
    files under `root` (default: this checkout). Torch-free: only hashlib and the files themselves."""
    if not prov.code_files:
        return CodeStatus(recorded=False)
    base = Path(root if root is not None else PROJECT_ROOT).resolve()
    changed, missing = [], []
    for rel, digest in sorted(prov.code_files.items()):
        path = (base / rel).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            missing.append(rel)
        elif hashlib.sha256(path.read_bytes()).hexdigest()[:16] != str(digest)[:16]:
            changed.append(rel)
    return CodeStatus(recorded=True, checked=len(prov.code_files), changed=tuple(changed), missing=tuple(missing))


def code_statuses(tables: list[ResultsTable], root: str | Path | None = None,
                  comb: Combinability | None = None) -> dict[tuple[str, str], CodeStatus]:
    """`code_status` of every table, by `table_key`, and of the combinability matrix (if any) under `MATRIX_KEY`."""
    out = {table_key(t): code_status(t.provenance, root) for t in tables}
    if comb is not None:
        out[MATRIX_KEY] = code_status(comb.provenance, root)
    return out


def status_banners(table: ResultsTable, status: CodeStatus | None) -> list[tuple[str, str, str]]:
    """What a table's page and PDF section must say before its numbers, as (kind, title, text): kind "stale"
    (the code changed since), "dirty" (uncommitted code; shown only when the report was allowed to include
    it) or "note" (the code list or the protocol not recorded)."""
    out = []
    if status is not None and status.stale:
        out.append(("stale", "Stale", f"the code these runs executed has changed since: {status.files()}. Its "
                                      f"numbers may not be what the code gives now; rerun `{table.command}`."))
    if table.provenance.git_dirty:
        out.append(("dirty", "Dirty working tree", "these runs came from uncommitted changes on top of commit "
                    f"{str(table.provenance.git_commit)[:10]}, so the code behind them cannot be recovered from "
                    "git (included because the report was built with --allow-dirty)."))
    if status is not None and not status.recorded:
        out.append(("note", "Code not recorded", "this table does not list the source files its runs executed, "
                                                 "so whether it is stale cannot be checked."))
    missing = protocol_missing(table)
    if missing:
        out.append(("note", "Protocol not recorded", missing))
    return out


def matrix_banners(comb: Combinability, status: CodeStatus | None) -> list[tuple[str, str, str]]:
    """The matrix's stale, dirty or code-not-recorded notices, as `status_banners` gives a table's."""
    out = []
    if status is not None and status.stale:
        out.append(("stale", "Stale", f"the code these runs executed has changed since: {status.files()}. Its "
                                      f"numbers may not be what the code gives now; rerun `{comb.command}`."))
    if comb.provenance.git_dirty:
        out.append(("dirty", "Dirty working tree", "the matrix's runs came from uncommitted changes on top of commit "
                    f"{str(comb.provenance.git_commit)[:10]}, so the code behind them cannot be recovered from git "
                    "(included because the report was built with --allow-dirty)."))
    if status is not None and not status.recorded:
        out.append(("note", "Code not recorded", "the matrix does not list the source files its runs executed, "
                                                 "so whether it is stale cannot be checked."))
    return out


def status_mark(table: ResultsTable, status: CodeStatus | None) -> str:
    """The index's and the PDF headings' short mark: `stale (2 files)`, `dirty`, `code not recorded`, `current`."""
    marks = []
    if status is not None and status.stale:
        marks.append(f"stale ({plural(len(status.changed) + len(status.missing), 'file')} changed)")
    if table.provenance.git_dirty:
        marks.append("dirty")
    if status is not None and not status.recorded:
        marks.append("code not recorded")
    if table.protocol is None:
        marks.append("protocol not recorded")
    return "; ".join(marks) or ("current" if status is not None else "")


# ---------------------------------------------------------------- provenance

def provenance_rows(prov: Provenance, created: str, command: str | None = None, python: bool = False,
                    status: CodeStatus | None = None) -> list[tuple[str, str | list[tuple[str, str]]]]:
    """Where the numbers came from, as (item, value); the dataset md5 value is a list of (file, md5).

    The site shows code version, software, machine, data and time; the PDF adds the Python
    version and the command (`python`, `command`). With `status`, the code hash row says whether
    the recorded source files are unchanged.
    """
    rows: list[tuple[str, Any]] = [("git commit", str(prov.git_commit)),
                                   ("working tree dirty", {True: "yes", False: "no"}.get(prov.git_dirty,
                                                                                         "not recorded"))]
    code = prov.code_hash or "not recorded"
    if prov.code_files:
        code += f" ({plural(len(prov.code_files), 'source file')})"
    if status is not None and status.recorded:
        code += f"; {status.text()}"
    rows += [("code hash", code), ("torch", str(prov.torch)), ("lightning", str(prov.lightning))]
    if python:
        rows.append(("python", str(prov.python or "—")))
    rows += [("device", str(prov.device)), ("cpu count", str(prov.cpu_count)),
             ("dataset md5", sorted(prov.dataset_md5.items()))]
    if command is not None:
        rows.append(("command", command))
    return rows + [("created", created)]


# ---------------------------------------------------------------- the measurement protocol, stated

PROTOCOL_INTRO = (
    "Every table in this report was measured under one protocol (DESIGN.md, \"Measurement protocol\"). "
    "It exists so that a speedup or a verdict means the same thing in every table, and so that a reader "
    "can see how far each number can be trusted. Tables written before it carry \"protocol not recorded\".")

PROTOCOL: list[tuple[str, str]] = [
    ("Machine-independent cost first",
     "A run's cost to target is counted at the first evaluation whose metric reaches the target: optimizer "
     "steps, training samples and counted FLOPs (deterministic per seed, so any machine gives the same "
     "numbers), and training-clock seconds (evaluation pauses the clock). A run that never reaches the target "
     "costs infinity and counts against the success rate. Tables timed on a CPU lead with the FLOPs and steps "
     "speedups, since their wall-clock comes from a shared machine; GPU tables lead with wall-clock."),
    ("Interleaved arms and the timing noise floor",
     "Within each seed the arms run in an order drawn from the seed, so a burst of load elsewhere on the "
     "machine does not fall on one arm. The baseline runs twice per seed (the A/A control); the largest "
     "timing ratio between the two copies, either way, is the table's noise floor. A wall-clock speedup whose "
     "interval excludes 1 but not the noise floor is \"inconclusive (timing noise)\". Machine load is "
     "recorded for every run."),
    ("Budgets, not caps",
     "Budgets are epochs, steps or samples (a FLOP limit may be added), and every baseline's learning rate "
     "decays to zero at its budget: efficiency methods often lose their gain against such a baseline (Kaddour "
     "et al., NeurIPS 2023). A wall-clock limit is only a guard: a run stopped by it is marked \"capped\" and "
     "never enters an accuracy comparison."),
    ("Paired seeds and exact intervals",
     "Arms share seeds and are compared seed by seed: a speedup is the median of the per-seed ratios, an "
     "accuracy change the median of the per-seed differences. The interval of that median is the exact "
     "order-statistic (sign-test) interval: it needs no resampling, allows a target never reached, and its "
     "coverage is known. At 5 seeds it is the minimum to the maximum, with 93.8% coverage; each table names "
     "its method and coverage. A wall-clock claim is judged on its interval widened by the noise floor."),
    ("Under 5 seeds: ranges, no verdict",
     "With fewer than 5 seeds a table shows the range of the seeds, labelled \"range of n seeds\", and gives "
     "no verdict: its verdict cells say so."),
    ("Claim kinds and fidelity",
     "A claim is a point value ± a tolerance, a lower bound (\"at least\"), an upper bound (\"at most\", for "
     "\"up to\" claims, judged consistent when the measured value stays at or below it), a range, or an "
     "ordering of arms (a < b < c). It is judged on an arm whose fidelity is declared: faithful, a variant "
     "(what differs is stated), or a substitute standing in for a method the paper does not specify. A "
     "substitute is never judged \"not reproduced\": its verdicts read \"agrees (substitute)\" or "
     "\"differs (substitute)\"."),
    ("Collapsed runs",
     "A run whose final test accuracy is at or below 1.5 times chance has collapsed: it is listed, and a "
     "claim or speedup resting on it reads \"collapsed\"."),
    ("Pre-registered targets",
     "A recipe's target comes from a written rule applied to calibration runs of the baseline on validation "
     "data, with seeds disjoint from the reported ones (1000 on): the baseline's median final validation "
     "error plus 10%. Where hyperparameters are tuned, it is on validation only, every tuned arm (the "
     "baseline's included) trying the same number of settings; the record is committed before the reported "
     "runs (reports/preregistered/). Each table states its target rule and what was tuned; a table whose "
     "recipe has no record says its target is the recipe's own."),
    ("Stale and dirty tables",
     "Every table lists the source files its runs executed with a hash of each. The report hashes them "
     "again: a table whose code has changed since is marked stale, naming the files. A table made from "
     "uncommitted code (a dirty working tree) is refused unless the report is built with --allow-dirty, and "
     "then its page and section say so."),
]


# ---------------------------------------------------------------- the combinability matrix

_COST_WORDS = {"flops": "counted FLOPs to target", "seconds": "training-clock seconds to target",
               "steps": "steps to target", "samples": "samples to target"}


def combinability_facts(comb: Combinability, status: CodeStatus | None = None) -> list[tuple[str, str]]:
    """What every pair shares, as (item, text): recipe and its rule, budget, target, seeds, the protocol, command,
    and whether the code is still the code that ran (`status`, from `code_status`)."""
    recipe = comb.recipe + (f": {comb.recipe_description}" if comb.recipe_description else "")
    runs = comb.runs or {}
    pr = comb.protocol
    cost = _COST_WORDS.get(comb.cost, comb.cost)
    if comb.secondary is not None:
        cost += f"; {_COST_WORDS.get(comb.secondary.cost, comb.secondary.cost)} beside it, in its own tables"
    rows = [("recipe", recipe), ("which recipe the pairs ran on", comb.recipe_rule),
            ("budget", f"{comb.scale} scale: {comb.budget}"),
            ("overrides", ", ".join(comb.overrides) or "none"), ("target", target_text(comb.target)),
            ("speedups measured in", cost),
            ("seeds", ", ".join(str(x) for x in comb.seeds) + f" ({len(comb.seeds)}, paired by seed)")]
    if pr is not None:
        floor = (f"{pr.noise_floor:.2f}x (largest timing ratio between {pr.aa_arm} and the baseline on one seed); "
                 "wall-clock speedups within it are inconclusive, interactions are widened by its square"
                 if pr.noise_floor else "no A/A control ran: wall-clock verdicts are inconclusive (timing noise)")
        rows += [("intervals", pr.interval_method), ("timing noise floor", floor),
                 ("target rule", pr.target_rule or "—"), ("arm order", pr.arm_order),
                 ("capped runs (left out of accuracy; cost unknown if the target was not reached first)",
                  ", ".join(pr.capped_runs) or "none"),
                 ("collapsed runs" + (f" (test accuracy at or below {pr.collapse_accuracy:.3f})"
                                      if pr.collapse_accuracy else ""), ", ".join(pr.collapsed_runs) or "none")]
    dirty = {True: "dirty: the runs came from uncommitted code", False: "clean", None: "not recorded"}
    return rows + [("composition order", " → ".join(comb.composition_order) or "—"),
                   ("command", comb.command), ("created", comb.created),
                   ("runs", ", ".join(f"{v} {k}" for k, v in runs.items()) or "—"),
                   ("code", status.text() if status is not None else "not checked"),
                   ("working tree", dirty[comb.provenance.git_dirty])]


def combinability_rows(comb: Combinability, view: Any = None) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The singles and the pairs of a combinability matrix (or of one of its views, e.g. `comb.secondary`)
    as text cells."""
    view = view or comb
    order = [t for t in comb.techniques if t in view.singles]
    order += sorted(set(view.singles) - set(order))
    singles = []
    for name in order:
        s = view.singles[name]
        singles.append({"technique": name, "paper": s.paper or "—", "verdict": s.verdict or "—",
                        "speedup": ratio(s.speedup, s.low, s.high), "success": share(s.success_rate),
                        "dacc": points(s.dacc, s.dacc_low, s.dacc_high), "error": s.error or ""})
    return singles, [_pair_cells(comb, p) for p in view.pairs]


def cost_words(cost: str) -> str:
    """'counted FLOPs to target' for 'flops'."""
    return _COST_WORDS.get(cost, cost)


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
        extra = f"; speedup {speedup_summary(table, name)}" if name in table.speedups else ""
        lines.append(f"  {name}: time to target {cell}; {finals}{extra}")
    for c in table.claims:
        cells = claim_cells(c, table)
        lines.append(f"  claim {c.id or c.text}: claimed {cells.claimed}, measured {cells.measured} -> {cells.verdict}")
    return "\n".join(lines)
