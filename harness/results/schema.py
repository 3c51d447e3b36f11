"""The results schema: typed, validated records of what runs produce and reports read.

Two files are the contract between running and reporting:

- a results table, `reports/runs/<paper>/<variant>.json`, written by `effitrain reproduce`/`run`
  (`ResultsTable`: its arms and their runs, speedups, judged claims, provenance, card summary);
- the combinability matrix, `reports/combinability.json`, written by `effitrain matrix`
  (`Combinability`: the singles and the pairs with their verdicts).

Each record is a keyword-only dataclass whose field order is the key order of the JSON, so a
table read and written again keeps its layout. `from_dict` checks every field against its type
annotation and raises a one-line ValueError naming the file and the field
(`reports/runs/x/cpu-full.json: missing key 'arms.baseline.runs[0].curve'`); unknown keys are
refused too, so a writer that adds a field must add it here. Verdicts are str-valued enums, so the
JSON holds the same words as before. A file without `schema_version` is version 1 (every table
committed before the field existed); a newer version than `SCHEMA_VERSION` is refused.

Nothing here imports training code: reports can be built where torch is not installed.
"""

from __future__ import annotations

import json
import math
import numbers
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from harness.results.atomic import atomic_write

__all__ = [
    "SCHEMA_VERSION", "SCALE_ORDER", "ClaimVerdict", "SpeedupVerdict", "PairVerdict", "Target", "Run", "ArmResult",
    "Speedup", "CostSpeedup", "ClaimResult", "Provenance", "Protocol",
    "CardSummary", "ResultsTable", "Single", "Pair", "BaselineTimes", "CostView",
    "Combinability", "variant", "load_table", "load_combinability", "write_table", "write_combinability",
    "combinability_json", "write_json", "to_json",
]

SCHEMA_VERSION = 4  # 2: runs record resumed_from_step and checkpoint_seconds; 3: the protocol (costs to target,
# load, paired speedups by cost, claim kinds and fidelity, the A/A noise floor, the code hash); 4: runs record one
# row per epoch (parameters, FLOPs, samples, seconds), which change where a technique changes the model's size
SCALE_ORDER = {"smoke": 0, "cpu": 1, "paper": 2}


class ClaimVerdict(StrEnum):
    """What a reproduced value says about a claimed one (runner.judge_claims, measure.claim_verdict)."""

    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"
    NOT_RUN = "not run at this scale"
    NOT_MEASURED = "not measured"
    NO_NUMBER = "no number to compare"
    TARGET_NOT_REACHED = "target not reached"  # a speedup claim whose arms never reached the target
    ONLY_TECHNIQUE = "only the technique reached the target"
    CONSISTENT = "consistent"  # an "at most" claim ("up to x"): the measured value is at or below it
    RANGE_ONLY = "range only (under 5 seeds)"  # version 3: fewer seeds than the protocol needs for a verdict
    COLLAPSED = "collapsed"  # a run of the arm ended at or below 1.5x chance accuracy
    CAPPED = "capped"  # a run of the arm hit its time guard: left out of accuracy comparisons
    AGREES_SUBSTITUTE = "agrees (substitute)"  # the arm is our stand-in for an unknown method
    DIFFERS_SUBSTITUTE = "differs (substitute)"


class SpeedupVerdict(StrEnum):
    """How an arm's time to target compares with its baseline's (measure.speedup)."""

    FASTER = "faster"
    SLOWER = "slower"
    INCONCLUSIVE = "inconclusive"
    TARGET_NOT_REACHED = "target not reached"
    ONLY_TECHNIQUE = "only the technique reached the target"
    TIMING_NOISE = "inconclusive (timing noise)"  # the interval excludes 1 but not the A/A noise floor
    RANGE_ONLY = "range only (under 5 seeds)"
    COLLAPSED = "collapsed"
    CAPPED = "capped"  # the matrix: a run hit its time guard before the target, so its cost is unknown


class PairVerdict(StrEnum):
    """A pair of techniques in the matrix (DESIGN.md, Combinability); the last two also end a single."""

    SYNERGY = "synergy"
    STACKS = "stacks"
    OVERLAP = "overlap"
    INCOMPATIBLE = "incompatible"
    NOT_MEASURABLE = "not measurable"
    MISSED_TARGET = "missed target"
    DIVERGED = "diverged"
    FAILED = "failed"
    RANGE_ONLY = "range only (under 5 seeds)"  # version 3: too few seeds for a verdict
    COLLAPSED = "collapsed"  # version 3: a run of the pair ended at or below 1.5x chance accuracy
    CAPPED = "capped"  # version 3: a run of the pair hit its time guard before the target


_Record = TypeVar("_Record", bound="_Base")


class _Base:
    """JSON <-> dataclass conversion shared by every record."""

    @classmethod
    def from_dict(cls: type[_Record], obj: Any, path: str | Path = "<memory>") -> _Record:
        """Check `obj` (parsed JSON) against the fields' types; ValueError naming `path` and the field."""
        return _record(cls, obj, "", str(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict: enums as their words, every field present (None as null)."""
        return _dump(self)


@dataclass(kw_only=True)
class Target(_Base):
    metric: str
    value: float
    mode: str  # "max" or "min"


@dataclass(kw_only=True)
class Run(_Base):
    """One (arm, seed): the Runner's RunResult row."""

    arm: str | None = None
    seed: int
    run_id: str | None = None
    train_seconds: float
    eval_seconds: float | None = None
    eval_share: float | None
    warmup_seconds: float | None = None
    steps: int | None = None
    samples: int | None = None
    flops: float | None = None
    flop_fraction: float | None = None
    time_to_target_s: float | None  # None: the target was not reached
    final: dict[str, float]
    curve: list[dict[str, float]]  # one point per evaluation: step, train_seconds and metrics
    stopped_by: str | None = None
    resumed_from_step: int | None = None  # version 2: the step a resumed run continued from
    checkpoint_seconds: float | None = None  # version 2: writing checkpoints, off the training clock
    steps_to_target: int | None = None  # version 3: cost at the first evaluation reaching the target
    samples_to_target: int | None = None
    flops_to_target: float | None = None
    load: dict[str, float] | None = None  # version 3: the machine's 1-minute load average: start, median, max
    capped: bool | None = None  # version 3: stopped by the training-time guard
    collapsed: bool | None = None  # version 3: final test accuracy at or below 1.5x chance
    stats: dict[str, float] | None = None  # version 3: techniques' per-step statistics, means over the run
    epochs: list[dict[str, float]] | None = None  # version 4: per epoch: params, flops, samples, train_seconds


@dataclass(kw_only=True)
class ArmResult(_Base):
    """An arm's setting and its runs, one per seed."""

    description: str = ""
    techniques: list[str] = field(default_factory=list)
    baseline: str | None = None  # the arm it races against, when not the table's baseline arm
    flop_fraction: float | None = None
    budget: str | None = None
    target: Target | None = None  # an arm may race to its own target
    fidelity: str | None = None  # version 3: faithful, variant or substitute (to the paper's method)
    fidelity_note: str | None = None  # what differs (variant) or what stands in (substitute)
    replicate_of: str | None = None  # version 3: this arm is the A/A control of that arm
    runs: list[Run]


@dataclass(kw_only=True)
class CostSpeedup(_Base):
    """A paired speedup in one machine-independent cost to target (steps, samples, FLOPs)."""

    speedup: float | None
    low: float | None
    high: float | None
    verdict: SpeedupVerdict


@dataclass(kw_only=True)
class Speedup(_Base):
    """Wall-clock (training-clock) speedup to target, and, from version 3, the machine-independent ones."""

    speedup: float | None
    low: float | None
    high: float | None
    success_rate: float | None = None
    verdict: SpeedupVerdict
    baseline: str | None = None
    n_seeds: int | None = None  # version 3: seeds with a ratio (paired)
    coverage: float | None = None  # the interval's exact coverage; None: the range of the seeds
    costs: dict[str, CostSpeedup] | None = None  # version 3: "steps", "samples", "flops"


@dataclass(kw_only=True)
class ClaimResult(_Base):
    """A card's Claim with what this table measured for it."""

    id: str | None = None
    text: str
    metric: str
    arm: str
    claimed: float | None  # None: not found in the paper (n.f.)
    source: str
    tolerance: float | None
    paper_baseline: float | None = None
    scales: list[str] | None = None
    minus_arm: str | None = None
    kind: str | None = None  # version 3: point, at_least, at_most, range, ordering (older tables: point)
    claimed_high: float | None = None  # a range claim's upper end
    arms: list[str] | None = None  # an ordering claim's arms, in the claimed increasing order of the metric
    cost: str | None = None  # a speedup claim's cost: seconds, steps, samples or flops
    fidelity: str | None = None  # of the arm judged: faithful, variant, substitute
    fidelity_note: str | None = None
    n_seeds: int | None = None
    coverage: float | None = None
    measured: float | None
    low: float | None
    high: float | None
    verdict: ClaimVerdict


@dataclass(kw_only=True)
class Provenance(_Base):
    git_commit: str
    git_dirty: bool | None
    torch: str
    lightning: str
    python: str | None = None
    device: str
    cpu_count: int | None
    torch_threads: int | None = None
    dataset_md5: dict[str, str]
    code_hash: str | None = None  # version 3: hash of the source the table's runs execute (jobs.code_hash)
    code_files: dict[str, str] | None = None  # version 3: those files and their sha256 prefixes (staleness check)


@dataclass(kw_only=True)
class Protocol(_Base):
    """How a table's verdicts were reached (DESIGN.md, "Measurement"), so a reader need not guess."""

    min_seeds: int
    interval_method: str
    coverage: float | None  # of the intervals at this many seeds; None: ranges, no verdicts
    noise_floor: float | None  # largest A/A timing ratio either way; None: no A/A control ran
    aa_arm: str | None
    arm_order: str
    classes: int | None
    collapse_accuracy: float | None  # at or below: collapsed (1.5x chance)
    capped_runs: list[str] = field(default_factory=list)  # "arm seed N"
    collapsed_runs: list[str] = field(default_factory=list)
    target_rule: str | None = None  # how the target was fixed


@dataclass(kw_only=True)
class CardSummary(_Base):
    """The part of a PaperCard a table carries (cards.PaperCard.summary_dict), so reports import no papers."""

    title: str
    authors: str  # empty for an `effitrain run` table, which has no paper
    venue: str
    year: int | None
    arxiv: str | None = None
    url: str | None = None
    summary: str = ""
    notes: str = ""
    family: str | None = None
    bibtex: str | None = None  # absent in tables written before it was carried


@dataclass(kw_only=True)
class ResultsTable(_Base):
    """One paper (or recipe) at one scale and budget tag: `reports/runs/<paper>/<variant>.json`."""

    schema_version: int = SCHEMA_VERSION
    paper: str
    scale: str
    tag: str | None = None
    card: CardSummary
    budget: str
    command: str
    created: str
    seeds: list[int]
    target: Target
    baseline_arm: str
    arms: dict[str, ArmResult]
    speedups: dict[str, Speedup]
    claims: list[ClaimResult]
    provenance: Provenance
    protocol: Protocol | None = None  # version 3

    @property
    def variant(self) -> str:
        return variant(self)


@dataclass(kw_only=True)
class Single(_Base):
    """One technique alone against the matrix's baseline."""

    paper: str | None
    speedup: float | None
    low: float | None
    high: float | None
    verdict: SpeedupVerdict | PairVerdict | None  # diverged or failed when its runs broke
    success_rate: float | None
    dacc: float | None
    dacc_low: float | None
    dacc_high: float | None
    error: str | None = None


@dataclass(kw_only=True)
class Pair(_Base):
    """One pair of the matrix: its static or measured verdict and the numbers behind it."""

    a: str
    b: str
    status: str  # "composed" or "incompatible"
    verdict: PairVerdict | None
    reason: str | None
    recipe: str | None = None
    recipe_note: str | None = None
    s_a: float | None
    s_a_low: float | None
    s_a_high: float | None
    s_b: float | None
    s_b_low: float | None
    s_b_high: float | None
    s_ab: float | None
    s_ab_low: float | None
    s_ab_high: float | None
    interaction: float | None
    interaction_low: float | None
    interaction_high: float | None
    acc_base: float | None = None
    dacc_a: float | None = None
    dacc_b: float | None = None
    dacc_ab: float | None
    dacc_sum: float | None
    dacc_excess: float | None
    success_ab: float | None = None
    seeds: int | None = None


@dataclass(kw_only=True)
class BaselineTimes(_Base):
    time_to_target_s: list[float | None]
    test_acc: list[float | None]


@dataclass(kw_only=True)
class CostView(_Base):
    """The matrix measured in another cost to target than its main one (e.g. wall-clock beside FLOPs)."""

    cost: str
    singles: dict[str, Single]
    pairs: list[Pair]


@dataclass(kw_only=True)
class Combinability(_Base):
    """The matrix `effitrain matrix` writes to `reports/combinability.json`."""

    schema_version: int = SCHEMA_VERSION
    scale: str
    recipe: str
    recipe_description: str | None = None
    budget: str
    overrides: list[str] = field(default_factory=list)
    target: Target
    seeds: list[int]
    techniques: list[str]
    composition_order: list[str]
    recipe_rule: str
    command: str
    created: str
    code_version: str | None = None
    executor: str | None = None
    provenance: Provenance
    runs: dict[str, int] | None = None  # run, reused, failed
    baseline: BaselineTimes | None = None
    singles: dict[str, Single]
    pairs: list[Pair]
    cost: str = "seconds"  # version 3: the cost to target S and the interactions are measured in
    secondary: CostView | None = None  # version 3: the same in the other cost (wall-clock beside FLOPs)
    protocol: Protocol | None = None  # version 3: seeds, intervals, the A/A noise floor, capped runs, target rule


def variant(table: ResultsTable) -> str:
    """A table's file stem: the scale, then the budget tag ("cpu-full", "cpu-bf16_autocast-full")."""
    return f"{table.scale}-{table.tag}" if table.tag else table.scale


# ---------------------------------------------------------------- reading

def _read_json(path: Path, kind: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable {kind} file ({exc})") from None


def load_table(path: str | Path) -> ResultsTable:
    """Read and validate a results table; its paper and variant must match its folder and file name."""
    path = Path(path)
    table = ResultsTable.from_dict(_read_json(path, "results"), path)
    if (table.paper, table.variant) != (path.parent.name, path.stem):
        raise ValueError(f"{path}: paper/variant {table.paper!r}/{table.variant!r} do not match the file's location")
    return table


def load_combinability(path: str | Path) -> Combinability:
    """Read and validate `combinability.json`."""
    return Combinability.from_dict(_read_json(Path(path), "combinability"), path)


def _record(cls: type, obj: Any, where: str, path: str) -> Any:
    """Build dataclass `cls` from a JSON object, checking required, unknown and typed fields."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected an object at '{where or 'top level'}'")
    prefix = f"{where}." if where else ""
    version = obj.get("schema_version", 1) if "schema_version" in {f.name for f in fields(cls)} else 1
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {version} is newer than this effitrain reads ({SCHEMA_VERSION})")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in obj:
        if key not in known:
            raise ValueError(f"{path}: unknown key '{prefix}{key}'")
    values = {}
    for name, f in known.items():
        if name == "schema_version" and name not in obj:  # written before the field existed: version 1
            values[name] = 1
            continue
        if name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{path}: missing key '{prefix}{name}'")
            continue
        values[name] = _value(hints[name], obj[name], f"{prefix}{name}", path)
    return cls(**values)


def _value(tp: Any, value: Any, where: str, path: str) -> Any:
    """Check one JSON value against a type annotation and convert records and enums."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # `X | None`: X's own message names the field that is wrong
            return _value(options[0], value, where, path)
        for arg in options:
            try:
                return _value(arg, value, where, path)
            except ValueError:
                continue
        raise ValueError(f"{path}: '{where}' should be {_describe(tp)}, not {value!r}")
    if is_dataclass(tp):
        return _record(tp, value, where, path)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{path}: '{where}' should be {_describe(tp)}, not {value!r}") from None
    if origin is list:
        _check(isinstance(value, list), tp, value, where, path)
        return [_value(args[0], v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if origin is dict:
        _check(isinstance(value, dict), tp, value, where, path)
        return {k: _value(args[1], v, f"{where}.{k}", path) for k, v in value.items()}
    if tp is float and isinstance(value, str) and value in INFINITIES:  # to_json writes infinity so
        return INFINITIES[value]
    ok = {float: (numbers.Real,), int: (numbers.Integral,), str: (str,), bool: (bool,)}[tp]  # numpy scalars too
    _check(isinstance(value, ok) and (tp is bool or not isinstance(value, bool)), tp, value, where, path)
    return value


def _check(ok: bool, tp: Any, value: Any, where: str, path: str) -> None:
    if not ok:
        raise ValueError(f"{path}: '{where}' should be {_describe(tp)}, not {type(value).__name__} {value!r}"[:300])


def _describe(tp: Any) -> str:
    """A type annotation in words, for error messages."""
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return "a list"
    if typing.get_origin(tp) is dict or is_dataclass(tp):
        return "an object"
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(tp, str(tp))


# ---------------------------------------------------------------- writing

def _dump(value: Any) -> Any:
    if is_dataclass(value):
        return {f.name: _dump(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


# An unbounded value (a speedup interval's end when only the technique reached the target on a seed) is a
# float infinity, which JSON cannot write: it is written as one of these strings and read back as the float.
INFINITIES = {"inf": math.inf, "-inf": -math.inf}


def _finite_json(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    return value


def to_json(obj: Any) -> bytes:
    """The project's JSON encoding of a record or a plain object: indent 1, numpy floats as floats, infinities
    as the strings "inf"/"-inf" (standard JSON has none), no NaN (ValueError)."""
    data = obj.to_dict() if isinstance(obj, _Base) else obj
    data = _finite_json(json.loads(json.dumps(data, default=float)))  # numpy scalars become floats first
    return json.dumps(data, indent=1, allow_nan=False).encode("utf-8")


def write_json(obj: Any, path: str | Path) -> Path:
    """Write any JSON-ready object atomically, in the same encoding as the tables."""
    return atomic_write(path, to_json(obj))


def write_table(table: ResultsTable | dict[str, Any], path: str | Path) -> Path:
    """Validate a results table (a record, or the Runner's dict) and write it atomically.

    A dict is read as its JSON text would be (tuples as lists), since that is what the file will hold.
    """
    if not isinstance(table, ResultsTable):
        table = ResultsTable.from_dict(json.loads(json.dumps(table, default=float)), path)
    return write_json(table, path)


def write_combinability(comb: Combinability | dict[str, Any], path: str | Path) -> Path:
    """Validate the matrix (a record, or combinability.summarise's dict) and write it atomically."""
    return atomic_write(path, combinability_json(comb, path))


def combinability_json(comb: Combinability | dict[str, Any], path: str | Path = "<memory>") -> bytes:
    """The validated matrix as JSON bytes (for writers that render every file before writing any)."""
    if not isinstance(comb, Combinability):
        comb = Combinability.from_dict(comb, path)
    return to_json(comb)
