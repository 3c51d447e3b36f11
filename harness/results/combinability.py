"""Combinability verdicts from a matrix's outcomes, and the files they go to.

Definitions (DESIGN.md, "Combinability"), all against the matrix's one baseline
and over the same seeds:

- S_X = median over seeds of (baseline cost to target / cost to target of arm X),
  paired by seed, with the exact order-statistic interval of that median
  (`harness.results.stats.speedup`). The cost is counted FLOPs by default
  (machine-independent, deterministic per seed); training-clock seconds go beside
  it (`secondary`), judged against the A/A control's timing noise floor (DESIGN.md,
  "Timing"); the matrix can be led by either (`combine.cost`);
- interaction I = S_AB / (S_A * S_B) = (t_A * t_B) / (t_AB * t_base), per seed
  (the four arms of a seed share its data order and initialisation), then its
  median and interval. Its interval above 1: "synergy"; below 1: "overlap";
  containing 1: "stacks" (in wall-clock the interval is widened by the noise floor
  squared first). Under 5 seeds: the range, and no verdict. A run that hit the time
  guard before the target makes its arm "capped" (cost unknown) and is left out of
  accuracy changes; a run at or below 1.5x chance makes it "collapsed";
- accuracy change dacc_X = median over seeds of (test accuracy of X - of the
  baseline) on the same seed, and the pair's excess dacc_AB - (dacc_A + dacc_B).

The plan comes from `harness.matrix` but is only read here, through `MatrixPlan`: it carries
what this module says about the techniques (their papers, where each comes from, the
composition order, the rule that chose the recipe), so nothing here imports the matrix,
the techniques or torch. Outputs: `combinability.json` (validated and written through
`harness.results.schema`), `combinability.csv` (one row per pair) and `combinability.png`
(the heatmap), each written atomically, all rendered before the first is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.results.atomic import atomic_write
from harness.results.schema import PairVerdict, combinability_json
from harness.results.stats import (
    MIN_SEEDS,
    TIMING_NOISE,
    interval_method,
    median,
    median_interval,
    noise_floor,
    paired_differences,
    seconds_per_step,
    speedup,
    summarise_values,
)

__all__ = ["MatrixPlan", "PAIR_COLUMNS", "ACC", "COSTS", "COST_WORDS", "interaction", "accuracy_change",
           "noise_floor_of", "single_rows", "pair_row", "recipe_note", "view", "summarise", "to_csv", "heatmap_png",
           "write_outputs"]

ACC = "test/acc"
PAIR_COLUMNS = ("a", "b", "status", "verdict", "reason", "recipe", "recipe_note", "s_a", "s_a_low", "s_a_high",
                "s_b", "s_b_low", "s_b_high", "s_ab", "s_ab_low", "s_ab_high", "interaction", "interaction_low",
                "interaction_high", "acc_base", "dacc_a", "dacc_b", "dacc_ab", "dacc_sum", "dacc_excess",
                "success_ab", "seeds")

Outcomes = dict[tuple[str, int], dict[str, Any]]


class MatrixPlan(Protocol):
    """What this module reads of `harness.matrix.Plan`."""

    recipe_name: str
    scale: str
    overrides: tuple[str, ...]
    names: tuple[str, ...]
    pairs: tuple[tuple[str, str, str | None], ...]
    recipe: Any  # harness.recipes.Recipe: description, budget.describe(), batch_size, target

    @property
    def papers(self) -> Mapping[str, str | None]: ...  # technique -> the paper id of its card, or None

    @property
    def origins(self) -> Mapping[str, str]: ...  # technique -> "crs from adelman2018_... (cifar10)"

    @property
    def composition_order(self) -> tuple[str, ...]: ...

    @property
    def rule(self) -> str: ...  # which recipe the pairs ran on and why, in words

    def arm_name(self, a: str, b: str) -> str: ...  # the arm that runs a with b


COSTS = {"flops": "flops_to_target", "seconds": "time_to_target_s", "steps": "steps_to_target",
         "samples": "samples_to_target"}
COST_WORDS = {"flops": "counted FLOPs to target", "seconds": "training-clock seconds to target",
              "steps": "steps to target", "samples": "samples to target"}


def _results(outcomes: Outcomes, arm: str, seeds: list[int]) -> list[dict[str, Any] | None]:
    return [outcomes[(arm, s)]["result"] for s in seeds]


def _times(outcomes: Outcomes, arm: str, seeds: list[int], cost: str = "seconds") -> list[float | None]:
    """Costs to target by seed (`cost`: a key of COSTS); None for not reached or a failed run."""
    key = COSTS[cost]
    return [None if r is None else r.get(key) for r in _results(outcomes, arm, seeds)]


def _accs(outcomes: Outcomes, arm: str, seeds: list[int]) -> list[float | None]:
    """Final test accuracies by seed; None for a failed run and for a capped one (left out of accuracy)."""
    return [None if r is None or r.get("capped") else r["final"].get(ACC) for r in _results(outcomes, arm, seeds)]


def _flagged(outcomes: Outcomes, arm: str, seeds: list[int], kind: str) -> list[int]:
    """Seeds whose run of `arm` was `kind` ("capped" or "collapsed")."""
    return [s for s, r in zip(seeds, _results(outcomes, arm, seeds)) if r is not None and r.get(kind)]


def _broken(outcomes: Outcomes, arm: str, seeds: list[int], cost: str) -> str | None:
    """"collapsed" when a run of the arm collapsed; "capped" when a capped run has no cost to target."""
    if _flagged(outcomes, arm, seeds, "collapsed"):
        return "collapsed"
    capped = set(_flagged(outcomes, arm, seeds, "capped"))
    if any(t is None for s, t in zip(seeds, _times(outcomes, arm, seeds, cost)) if s in capped):
        return "capped"
    return None


def _error(outcomes: Outcomes, arm: str, seeds: list[int]) -> tuple[str | None, bool]:
    """The first error among the arm's seeds and whether it was a divergence."""
    for s in seeds:
        o = outcomes[(arm, s)]
        if o["error"]:
            return f"seed {s}: {o['error']}", bool(o["diverged"])
    return None, False


def noise_floor_of(outcomes: Outcomes, seeds: list[int], aa_arm: str | None) -> float | None:
    """The A/A control's timing noise floor: training-clock seconds per step, baseline against its replicate."""
    if not aa_arm or any((a, s) not in outcomes for a in ("baseline", aa_arm) for s in seeds):
        return None

    def clock(arm: str) -> list[float]:
        return [seconds_per_step(r["train_seconds"], r.get("steps")) if r else 0.0
                for r in _results(outcomes, arm, seeds)]
    return noise_floor(clock("baseline"), clock(aa_arm))


def accuracy_change(base: list[float | None],
                    arm: list[float | None]) -> tuple[float | None, float | None, float | None]:
    """Median paired difference arm - baseline over seeds where both have a value, with its interval."""
    return summarise_values(paired_differences(arm, base))[:3]


def interaction(base: list[float | None], a: list[float | None], b: list[float | None],
                ab: list[float | None]) -> tuple[float | None, float | None, float | None]:
    """S_AB / (S_A * S_B) = t_A t_B / (t_AB t_base), per seed (the four arms of a seed share its data order
    and initialisation), then its median and interval over the seeds where all four reached the target."""
    per_seed = [ta * tb / (tab * t0) for t0, ta, tb, tab in zip(base, a, b, ab, strict=True)
                if None not in (t0, ta, tb, tab) and tab * t0 > 0]
    return summarise_values(per_seed)[:3]


def single_rows(plan: MatrixPlan, outcomes: Outcomes, seeds: list[int], cost: str = "seconds",
                floor: float | None = None) -> dict[str, dict[str, Any]]:
    """Speedup (in `cost` to target) and accuracy change of every technique alone against the baseline.

    Wall-clock verdicts need the A/A noise `floor`: inside it, or without one, "inconclusive (timing noise)".
    """
    base_t, base_a = _times(outcomes, "baseline", seeds, cost), _accs(outcomes, "baseline", seeds)
    rows = {}
    for name in plan.names:
        sp = speedup(base_t, _times(outcomes, name, seeds, cost), floor if cost == "seconds" else None)
        if cost == "seconds" and floor is None and sp["verdict"] in ("faster", "slower"):
            sp["verdict"] = TIMING_NOISE
        dacc, dlo, dhi = accuracy_change(base_a, _accs(outcomes, name, seeds))
        error, diverged = _error(outcomes, name, seeds)
        broke = PairVerdict.DIVERGED if diverged else PairVerdict.FAILED
        verdict = broke.value if error else _broken(outcomes, name, seeds, cost) or sp["verdict"]
        rows[name] = {"paper": plan.papers.get(name), "speedup": sp["speedup"], "low": sp["low"], "high": sp["high"],
                      "verdict": verdict, "success_rate": sp["success_rate"],
                      "dacc": dacc, "dacc_low": dlo, "dacc_high": dhi, "error": error}
    return rows


def recipe_note(plan: MatrixPlan, a: str, b: str) -> str:
    """Where the two techniques come from, and that they ran on the shared recipe instead."""
    pa, pb = plan.papers.get(a), plan.papers.get(b)
    head = f"both from {pa}" if pa is not None and pa == pb else f"{plan.origins[a]}; {plan.origins[b]}"
    return f"{head}; run on the shared recipe '{plan.recipe_name}' at {plan.scale} scale"


def _x(v: float | None, digits: int = 2) -> str:
    """A ratio in a verdict's reason: two decimals, n/a when unknown."""
    return "n/a" if v is None else f"{v:.{digits}f}"


def _pp(v: float | None) -> str:
    """An accuracy change in a verdict's reason, in signed percentage points."""
    return "n/a" if v is None else f"{100 * v:+.2f} pp"


def pair_row(plan: MatrixPlan, outcomes: Outcomes, seeds: list[int], a: str, b: str, why: str | None,
             singles: dict[str, dict[str, Any]], cost: str = "seconds", floor: float | None = None) -> dict[str, Any]:
    """One row of the matrix: static verdict, or measured speedups, interaction and accuracy changes."""
    row: dict[str, Any] = {k: None for k in PAIR_COLUMNS}
    row.update(a=a, b=b, recipe=plan.recipe_name, recipe_note=recipe_note(plan, a, b), seeds=len(seeds))
    if why:
        row.update(status="incompatible", verdict=PairVerdict.INCOMPATIBLE.value, reason=f"not run: {why}")
        return row
    ab = plan.arm_name(a, b)
    base_t, base_a = _times(outcomes, "baseline", seeds, cost), _accs(outcomes, "baseline", seeds)
    sp = speedup(base_t, _times(outcomes, ab, seeds, cost))
    inter = interaction(base_t, _times(outcomes, a, seeds, cost), _times(outcomes, b, seeds, cost),
                        _times(outcomes, ab, seeds, cost))
    dacc_ab = accuracy_change(base_a, _accs(outcomes, ab, seeds))[0]
    da, db = singles[a]["dacc"], singles[b]["dacc"]
    dsum = None if da is None or db is None else da + db
    row.update(status="composed", s_a=singles[a]["speedup"], s_a_low=singles[a]["low"], s_a_high=singles[a]["high"],
               s_b=singles[b]["speedup"], s_b_low=singles[b]["low"], s_b_high=singles[b]["high"],
               s_ab=sp["speedup"], s_ab_low=sp["low"], s_ab_high=sp["high"], interaction=inter[0],
               interaction_low=inter[1], interaction_high=inter[2],
               acc_base=median([v for v in base_a if v is not None]) if any(v is not None for v in base_a) else None,
               dacc_a=da, dacc_b=db, dacc_ab=dacc_ab,
               dacc_sum=dsum, dacc_excess=None if dsum is None or dacc_ab is None else dacc_ab - dsum,
               success_ab=sp["success_rate"])
    verdict, row["reason"] = _verdict(row, outcomes, seeds, ab, base_t, singles, cost, floor)
    row["verdict"] = verdict.value
    return row


def _verdict(row: dict[str, Any], outcomes: Outcomes, seeds: list[int], ab: str, base_t: list[float | None],
             singles: dict[str, dict[str, Any]], cost: str, floor: float | None) -> tuple[PairVerdict, str]:
    """The measured verdict of a composing pair and its reason in words."""
    a, b = row["a"], row["b"]
    error, diverged = _error(outcomes, ab, seeds)
    if error:
        return (PairVerdict.DIVERGED if diverged else PairVerdict.FAILED), f"{a} with {b}, {error}"
    broken = _broken(outcomes, ab, seeds, cost)
    if broken == "collapsed":
        return PairVerdict.COLLAPSED, (f"{a} with {b} collapsed (test accuracy at or below 1.5x chance) on seed(s) "
                                       f"{', '.join(map(str, _flagged(outcomes, ab, seeds, 'collapsed')))}")
    if broken == "capped":
        return PairVerdict.CAPPED, (f"{a} with {b} hit the training-time guard before the target on seed(s) "
                                    f"{', '.join(map(str, _flagged(outcomes, ab, seeds, 'capped')))}: its cost is "
                                    "unknown, not measured")
    n, base_hits = len(seeds), sum(t is not None for t in base_t)
    if base_hits * 2 <= n:
        return PairVerdict.NOT_MEASURABLE, f"the baseline reached the target in only {base_hits} of {n} seeds"
    if row["s_ab"] is None or row["s_ab"] == 0:
        reached = sum(t is not None for t in _times(outcomes, ab, seeds, cost))
        return PairVerdict.MISSED_TARGET, f"{a} with {b} reached the target in {reached} of {n} seeds within the budget"
    for x in (a, b):
        if singles[x]["error"] or not singles[x]["speedup"]:
            return PairVerdict.NOT_MEASURABLE, (
                f"{x} alone {'failed' if singles[x]['error'] else 'missed the target'}, so S_{x} and the "
                f"interaction are undefined (the pair: S_AB = {_x(row['s_ab'])})")
    return _measured(row, cost, floor)


def _measured(row: dict[str, Any], cost: str = "seconds", floor: float | None = None) -> tuple[PairVerdict, str]:
    """Stacks, synergy or overlap from the interaction and its interval, with the numbers in words.

    In wall-clock the interval is first widened by the square of the A/A noise floor (the interaction is the
    product of two timing ratios); without an A/A control a wall-clock interaction gets no verdict beyond
    "stacks"."""
    i, lo, hi = row["interaction"], row["interaction_low"], row["interaction_high"]
    acc = (f"; accuracy change {_pp(row['dacc_ab'])} for the pair against {_pp(row['dacc_sum'])} summed over the "
           f"singles ({_pp(row['dacc_excess'])} excess)")
    nums = (f"S_AB = {_x(row['s_ab'])} against S_A * S_B = {_x(row['s_a'])} * {_x(row['s_b'])} = "
            f"{_x(row['s_a'] * row['s_b'])}: interaction {_x(i)}")
    if row["seeds"] < MIN_SEEDS:
        return PairVerdict.RANGE_ONLY, (f"{nums}, range [{_x(lo)}, {_x(hi)}] over {row['seeds']} seeds (no verdict "
                                        f"under {MIN_SEEDS}){acc}")
    wide, noise = 1.0, ""
    if cost == "seconds":
        wide = float("inf") if floor is None else max(floor, 1.0) ** 2
        noise = (" (no A/A control: wall-clock noise unmeasured)" if floor is None else
                 f", judged beyond the timing noise floor squared ({_x(wide)})")
    verdict = (PairVerdict.SYNERGY if lo > wide else PairVerdict.OVERLAP if hi * wide < 1 else PairVerdict.STACKS)
    meaning = {PairVerdict.SYNERGY: "the interval lies above 1: the pair gains more than the product of the singles",
               PairVerdict.OVERLAP: "the interval lies below 1: the pair gains less than the product of the singles",
               PairVerdict.STACKS: "the interval contains 1: the speedups multiply within the seeds' spread"}[verdict]
    return verdict, f"{nums} [{_x(lo)}, {_x(hi)}]{noise}; {meaning}{acc}"


def view(plan: MatrixPlan, outcomes: Outcomes, seeds: list[int], cost: str,
         floor: float | None) -> dict[str, Any]:
    """Singles and pairs measured in one cost to target."""
    singles = single_rows(plan, outcomes, seeds, cost, floor)
    pairs = [pair_row(plan, outcomes, seeds, a, b, why, singles, cost, floor) for a, b, why in plan.pairs]
    return {"cost": cost, "singles": singles, "pairs": pairs}


# ---------------------------------------------------------------- outputs

def summarise(plan: MatrixPlan, outcomes: Outcomes, seeds: list[int], meta: dict[str, Any],
              cost: str = "flops", aa_arm: str | None = None) -> dict[str, Any]:
    """The whole matrix as one JSON-ready dict, in the schema of `harness.results.schema.Combinability`.

    S and the interactions are measured in `cost` to target (a key of COSTS); the other of FLOPs and
    wall-clock goes to `secondary`. `aa_arm` is the baseline's A/A control, whose timing gives the noise
    floor. `meta` adds command, created, code_version, executor, provenance and a partial `protocol`
    (classes, collapse_accuracy, target_rule); `write_outputs` validates.
    """
    if cost not in COSTS:
        raise ValueError(f"cost '{cost}' is not one of {', '.join(COSTS)}")
    floor = noise_floor_of(outcomes, seeds, aa_arm)
    main = view(plan, outcomes, seeds, cost, floor)
    other = "seconds" if cost != "seconds" else "flops"
    recipe = plan.recipe
    arms = sorted({a for a, _ in outcomes})
    flagged = {kind: [f"{a} seed {s}" for a in arms for s in _flagged(outcomes, a, seeds, kind)]
               for kind in ("capped", "collapsed")}
    protocol = {"min_seeds": MIN_SEEDS, "interval_method": interval_method(len(seeds)),
                "coverage": median_interval(list(range(len(seeds))))[2] if len(seeds) >= MIN_SEEDS else None,
                "noise_floor": floor, "aa_arm": aa_arm,
                "arm_order": "reference arms first, then the arms of each seed in an order drawn from the seed",
                "classes": None, "collapse_accuracy": None, "capped_runs": flagged["capped"],
                "collapsed_runs": flagged["collapsed"], "target_rule": None, **meta.pop("protocol", {})}
    return {
        "scale": plan.scale, "recipe": plan.recipe_name, "recipe_description": recipe.description,
        "budget": f"{recipe.budget.describe()}; batch {recipe.batch_size}", "overrides": list(plan.overrides),
        "target": {"metric": recipe.target.metric, "value": recipe.target.value, "mode": recipe.target.mode},
        "seeds": list(seeds), "techniques": list(plan.names), "composition_order": list(plan.composition_order),
        "recipe_rule": plan.rule, **meta,
        "runs": {"run": sum(not o["reused"] for o in outcomes.values()),
                 "reused": sum(bool(o["reused"]) for o in outcomes.values()),
                 "failed": sum(bool(o["error"]) for o in outcomes.values())},
        "baseline": {"time_to_target_s": _times(outcomes, "baseline", seeds),
                     "test_acc": _accs(outcomes, "baseline", seeds)},
        "singles": main["singles"], "pairs": main["pairs"], "cost": cost,
        "secondary": view(plan, outcomes, seeds, other, floor), "protocol": protocol,
    }


def to_csv(summary: dict[str, Any]) -> bytes:
    """combinability.csv: one row per pair; floats with 6 significant digits, missing values empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PAIR_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summary["pairs"]:
        writer.writerow({k: ("" if row[k] is None else f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                         for k in PAIR_COLUMNS})
    return buf.getvalue().encode()


_SHORT = {"incompatible": "x", "missed target": "missed", "not measurable": "n/m", "diverged": "NaN",
          "failed": "failed"}


def _grid(summary: dict[str, Any]) -> tuple[np.ndarray, list[list[str]]]:
    """Heatmap values and labels: single speedups on the diagonal, interactions or verdicts off it."""
    names = summary["techniques"]
    grid = np.full((len(names), len(names)), np.nan)
    labels = [["" for _ in names] for _ in names]
    for i, name in enumerate(names):
        s = summary["singles"][name]
        grid[i, i] = s["speedup"] if s["speedup"] else np.nan
        labels[i][i] = f"S={s['speedup']:.2f}" if s["speedup"] else s["verdict"].replace(" ", "\n")
    for p in summary["pairs"]:
        i, j = names.index(p["a"]), names.index(p["b"])
        for r, c in ((i, j), (j, i)):
            if p["interaction"] is not None and p["verdict"] in ("stacks", "synergy", "overlap"):
                grid[r, c] = p["interaction"]
                labels[r][c] = f"{p['interaction']:.2f}" + ("*" if p["verdict"] != "stacks" else "")
            else:
                labels[r][c] = _SHORT.get(p["verdict"], p["verdict"])
    return grid, labels


def heatmap_png(summary: dict[str, Any]) -> bytes:
    """Techniques by techniques: single speedups on the diagonal, interactions off it, verdict words elsewhere."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    names = summary["techniques"]
    n = len(names)
    grid, labels = _grid(summary)
    fig = Figure(figsize=(1.0 * n + 3.2, 0.8 * n + 2.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.set_facecolor("#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", norm=LogNorm(vmin=0.5, vmax=2.0))
    for r in range(n):
        for c in range(n):
            ax.text(c, r, labels[r][c], ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="speedup (diagonal) / interaction (pairs)")
    ax.set_title(f"Combinability on {summary['recipe']} ({summary['scale']}, {len(summary['seeds'])} seed(s))\n"
                 "diagonal: S alone; off: S_AB/(S_A*S_B), * interval excludes 1; x: incompatible",
                 fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_outputs(summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """combinability.json (validated by the schema), .csv and .png under out_dir, each atomically."""
    out_dir = Path(out_dir)
    files = {"combinability.json": combinability_json(summary, out_dir / "combinability.json"),
             "combinability.csv": to_csv(summary), "combinability.png": heatmap_png(summary)}
    for name, data in files.items():  # all rendered (and the JSON validated) before the first is written
        atomic_write(out_dir / name, data)
    return [out_dir / name for name in files]

