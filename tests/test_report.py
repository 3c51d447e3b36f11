"""The results schema (harness.results.schema), the shared cells and the static site (harness.report).

Tables come from tests/helpers.py, built with the schema's records: one paper at two scales, with
a claim the paper gives no number for, a run that never reached the target and a technique arm
whose speedup is unknown. They predate the protocol (no `protocol`, no code list), have 2 seeds (so
no verdict is shown) and come from a dirty working tree (so the report is built with allow_dirty).
The site is built without the PDF (tests/test_thesis.py covers it); tests/test_report_protocol.py
covers protocol tables, staleness and the dirty refusal.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.report import cells
from harness.report.build import build_report
from harness.results.schema import (
    SCHEMA_VERSION,
    ClaimVerdict,
    Combinability,
    ResultsTable,
    Speedup,
    SpeedupVerdict,
    load_combinability,
    load_table,
    to_json,
    write_json,
)
from tests.helpers import PAPER, table, write

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A report built from one paper at the cpu and smoke scales (no PDF)."""
    root = tmp_path_factory.mktemp("site")
    write(root / "runs", table("cpu", "cpu demo: students 2 epochs on 10k MNIST"))
    write(root / "runs", table("smoke", "smoke: 20 steps on 512 images"))
    out = root / "site"
    assert build_report(root / "runs", out, pdf=False, allow_dirty=True) == out / "index.html"
    return out


# ---------------------------------------------------------------- the schema

@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "reports" / "runs").glob("*/*.json")
                                       if not p.name.endswith(".metrics.json")), ids=lambda p: p.parent.name)
def test_every_committed_table_loads_and_round_trips(path: Path) -> None:
    """Every committed table validates; written again it keeps every value (nulls for fields it lacked)."""
    original = json.loads(path.read_text(encoding="utf-8"))
    loaded = load_table(path)
    assert loaded.schema_version == original.get("schema_version", 1)  # a file without the field is version 1
    _assert_kept(original, json.loads(to_json(loaded)))  # as the writer encodes it ("inf" for infinity)


def test_committed_combinability_loads_and_round_trips() -> None:
    path = ROOT / "reports" / "combinability.json"
    if not path.exists():
        pytest.skip("no committed combinability.json")
    _assert_kept(json.loads(path.read_text(encoding="utf-8")), json.loads(to_json(load_combinability(path))))


def _assert_kept(original: Any, written: Any, where: str = "") -> None:
    """`written` has every key and value of `original`, in the same order; it may add keys with defaults."""
    if isinstance(original, dict):
        assert [k for k in written if k in original] == list(original), where
        for key, value in original.items():
            _assert_kept(value, written[key], f"{where}.{key}")
    elif isinstance(original, list):
        assert len(original) == len(written), where
        for i, (a, b) in enumerate(zip(original, written)):
            _assert_kept(a, b, f"{where}[{i}]")
    else:
        assert original == written and type(original) is type(written), where


def test_verdicts_are_enums_written_as_their_words(tmp_path: Path) -> None:
    path = write(tmp_path / "runs", table("cpu", "b"))
    text = path.read_text(encoding="utf-8")
    assert '"verdict": "not reproduced"' in text and f'"schema_version": {SCHEMA_VERSION}' in text
    loaded = load_table(path)
    assert loaded.claims[0].verdict is ClaimVerdict.NOT_REPRODUCED
    assert loaded.speedups["distilled"].verdict is SpeedupVerdict.INCONCLUSIVE
    assert loaded == table("cpu", "b")


def _broken(tmp_path: Path, change: Any) -> Path:
    res = table("cpu", "b").to_dict()
    change(res)
    path = tmp_path / "runs" / PAPER / "cpu.json"
    write_json(res, path)
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.pop("budget"), "missing key 'budget'"),
    (lambda r: r["claims"][1].pop("verdict"), "missing key 'claims[1].verdict'"),
    (lambda r: r["arms"]["distilled"]["runs"][0].pop("curve"), "missing key 'arms.distilled.runs[0].curve'"),
    (lambda r: r["provenance"].pop("dataset_md5"), "missing key 'provenance.dataset_md5'"),
    (lambda r: r["claims"][0].update(verdict="great"), "'claims[0].verdict' should be one of 'reproduced'"),
    (lambda r: r["arms"]["distilled"]["runs"][1].update(seed="1"), "'arms.distilled.runs[1].seed' should be an int"),
    (lambda r: r["target"].update(value=True), "'target.value' should be a number"),
    (lambda r: r.update(speedups=[]), "'speedups' should be an object"),
    (lambda r: r.update(comment="x"), "unknown key 'comment'"),
    (lambda r: r.update(schema_version=SCHEMA_VERSION + 1), f"schema_version {SCHEMA_VERSION + 1} is newer"),
])
def test_a_bad_table_raises_naming_file_and_field(tmp_path: Path, change: Any, message: str) -> None:
    path = _broken(tmp_path, change)
    with pytest.raises(ValueError) as err:
        build_report(tmp_path / "runs", tmp_path / "out", pdf=False)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_bad_json_and_misplaced_file_raise(tmp_path: Path) -> None:
    bad = tmp_path / "runs" / PAPER / "cpu.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cpu.json: unreadable results file"):
        build_report(tmp_path / "runs", tmp_path / "out", pdf=False)
    write(tmp_path / "runs", table("cpu", "b")).rename(tmp_path / "runs" / PAPER / "paper.json")
    with pytest.raises(ValueError, match="paper.json: paper/variant"):
        build_report(tmp_path / "runs", tmp_path / "out", pdf=False)


def test_runner_tables_are_validated_when_written(tmp_path: Path) -> None:
    from harness.runner import write_results

    res = table("cpu", "b").to_dict()
    assert ResultsTable.from_dict(json.loads(write_results(res, tmp_path / "a.json").read_text())) == table("cpu", "b")
    res["claims"][0]["verdict"] = "great"
    with pytest.raises(ValueError, match="b.json: 'claims"):
        write_results(res, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
    summary = {"name": "mnist", "train": [100, 1, 28, 28]}  # `data check --summary` is not a table
    assert json.loads(write_results(summary, tmp_path / "c.json").read_text()) == summary


def test_combinability_records_round_trip() -> None:
    from tests.helpers import combinability

    comb = combinability(table("cpu", "b").provenance)
    assert Combinability.from_dict(json.loads(json.dumps(comb.to_dict()))) == comb


def test_an_unbounded_interval_is_written_as_strict_json_and_read_back_as_infinity(tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.helpers import combinability

    comb = combinability(table("cpu", "b").provenance)
    name = next(iter(comb.singles))
    comb.singles[name] = replace(comb.singles[name], high=math.inf)  # only the technique reached on one seed
    text = to_json(comb).decode()

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    assert json.loads(text, parse_constant=refuse)["singles"][name]["high"] == "inf"
    assert Combinability.from_dict(json.loads(text)).singles[name].high == math.inf
    with pytest.raises(ValueError):
        to_json({"x": math.nan})


_TRAINING = ("torch", "lightning", "reproductions", "harness.runner", "harness.matrix", "harness.measure",
             "harness.techniques", "harness.recipes", "harness.papers")


@pytest.mark.parametrize("path", sorted([*(ROOT / "harness" / "results").glob("*.py"),
                                         *(ROOT / "harness" / "report").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_results_and_report_import_no_training_code(path: Path) -> None:
    """Tables are read and reported without torch; the PDF's bibliography fallback is the one exception."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    allowed = {"harness.papers"} if path.name == "pdf.py" else set()
    assert not {n for n in names if n.startswith(_TRAINING)} - allowed


# ---------------------------------------------------------------- cells

def test_metric_formats_are_declared_and_cells_format_them() -> None:
    assert cells.metric_format("test/acc") is cells.Format.PERCENT
    assert cells.metric_format("time/train_seconds_total") is cells.Format.SECONDS
    assert cells.metric_format("speedup") is cells.Format.NUMBER
    assert cells.number("test/acc", 0.981) == "98.10%" and cells.number("test/errors", 190.4) == "190"
    assert cells.number("speedup", 1.23456) == "1.235" and cells.number("x", None) == "—"
    assert cells.interval("test/acc", 0.981, 0.979, None) == "98.10%"
    assert cells.interval("test/acc", None, 1, 2) == "not measured"
    assert cells.seconds(None) == "not reached" and cells.seconds(math.inf) == "∞" and cells.seconds(5.25) == "5.2 s"
    assert cells.ratio(1.1, 0.9, 1.3) == "1.10× [0.90, 1.30]" and cells.ratio(None) == "—"
    assert cells.points(-0.002, -0.004, 0.0) == "−0.20 pp [−0.40, +0.00]"


def test_speedup_cells_say_why_there_is_no_ratio() -> None:
    def sp(value: float | None, verdict: SpeedupVerdict) -> Speedup:
        return Speedup(speedup=value, low=value, high=value, verdict=verdict)

    assert cells.speedup_cell(sp(0.0, SpeedupVerdict.SLOWER)) == "0× (technique never reached the target)"
    assert cells.speedup_cell(sp(None, SpeedupVerdict.ONLY_TECHNIQUE)).startswith("∞")
    assert cells.speedup_cell(sp(None, SpeedupVerdict.TARGET_NOT_REACHED)) == "n/a"
    assert cells.speedup_cell(None) == "n/a"


def test_claim_cells_and_verdict_counts() -> None:
    t = table("cpu", "b")
    first = cells.claim_cells(t.claims[0])
    assert (first.claimed, first.paper_baseline, first.tolerance) == ("74", "146", "±10")
    assert first.measured == "190 [180, 200]"
    assert first.css == "bad" and cells.claim_cells(t.claims[1]).claimed == "n.f."
    assert cells.verdict_counts(t.claims) == "1 not reproduced, 1 inconclusive, 1 not run at this scale"
    # judged with its table: 2 seeds are under the protocol's 5, so no verdict, the recorded one named
    with_table = cells.claim_cells(t.claims[0], t)
    assert with_table.verdict == "no verdict: 2 seeds, under 5; recorded: not reproduced"
    assert with_table.css == "skip" and with_table.kind == "point ± 10" and with_table.fidelity == "not recorded"
    assert with_table.measured == "190 [180, 200]"  # a bootstrap interval of an old table is not called a range
    assert cells.verdict_counts(t.claims, t) == "2 no verdict (under 5 seeds), 1 not run at this scale"
    assert cells.verdict_counts([]) == "no claims"
    assert cells.counts(["b", "z", "a", "b"], ["b"]) == "2 b, 1 a, 1 z"


def test_format_summary_for_the_terminal() -> None:
    text = cells.format_summary(table("cpu", "b"))
    assert "hard_student: time to target not reached (∞) [6.2 s, ∞]" in text
    assert ("claim distilled_errors: claimed 74, measured 190 [180, 200] -> no verdict: 2 seeds, under 5; "
            "recorded: not reproduced") in text
    assert "distilled: time to target 5.3 s [5.1 s, 5.5 s]" in text and "wall-clock 1.21× [0.95, 1.40]" in text


# ---------------------------------------------------------------- the site

def test_index_links_every_paper_page(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert f'href="{PAPER}.html#scale-smoke"' in index
    assert f'href="{PAPER}.html#scale-cpu"' in index
    assert (site / f"{PAPER}.html").is_file()
    assert index.index("scale-smoke") < index.index("scale-cpu")  # smoke < cpu < paper
    # a CPU table without costs to target: wall-clock only, the missing costs named, no verdict at 2 seeds
    assert "distilled: wall-clock 1.21× [0.95, 1.40] (no verdict)<br>" in index
    assert "temperature_1: wall-clock n/a (no verdict)</td>" in index
    # the paper page says why: too few seeds, the recorded verdict, the costs the table lacks
    t = table("cpu", "b")
    assert cells.speedup_summary(t, "distilled") == ("wall-clock 1.21× [0.95, 1.40] (no verdict: 2 seeds, under 5; "
                                                     "recorded: inconclusive); FLOPs and steps not recorded")
    assert "2 no verdict (under 5 seeds), 1 not run at this scale" in index
    # the tables are dirty (allowed) and record no code: the index marks them; the protocol page is linked
    assert "<b>dirty; code not recorded; protocol not recorded</b>" in index and 'href="protocol.html"' in index
    # no combinability.json in the output folder: the index says how to make one, and links the PDF
    assert "effitrain matrix --scale cpu --seeds 5" in index and 'href="combinability.html"' not in index
    assert 'href="report.pdf"' in index and not (site / "report.pdf").exists()  # pdf=False


def test_paper_page_has_ledger_budget_and_tta(site: Path) -> None:
    page = (site / f"{PAPER}.html").read_text(encoding="utf-8")
    for verdict in ("no verdict: 2 seeds, under 5; recorded: not reproduced",
                    "no verdict: 2 seeds, under 5; recorded: inconclusive", "not run at this scale"):
        assert f"<b>{verdict}</b>" in page
    assert page.count("<b>Dirty working tree:</b>") == 2 and page.count("<b>Protocol not recorded:</b>") == 2
    assert page.count("<b>Code not recorded:</b>") == 2 and "interval method</td><td>not recorded" in page
    assert "2 (0, 1): under 5, so no verdict is shown" in page  # its bootstrap intervals are not called ranges
    for text in ("distilled student test errors", "soft targets beat hard targets", "60k-image result"):
        assert text in page
    assert "n.f." in page and "Section 3, text" in page
    assert "190 [180, 200]" in page and "98.10% [97.90%, 98.30%]" in page
    assert "cpu demo: students 2 epochs on 10k MNIST" in page and "smoke: 20 steps on 512 images" in page
    assert page.count('class="budget"') == 2
    assert "not reached (∞) [6.2 s, ∞]" in page and "5.3 s [5.1 s, 5.5 s]" in page
    assert "not reached (∞) [∞, ∞]" in page and "1/2 (50%)" in page and "0/2 (0%)" in page
    assert "n/a" in page and "0123abcd" in page and "d41d8cd9" in page
    assert page.index('id="scale-smoke"') < page.index('id="scale-cpu"')
    assert f'src="figures/{PAPER}-cpu-tta.svg"' in page


def test_figures_are_svg(site: Path) -> None:
    for scale in ("smoke", "cpu"):
        data = (site / "figures" / f"{PAPER}-{scale}-tta.svg").read_bytes()
        assert len(data) > 1000 and b"<svg" in data[:1000] and b"</svg>" in data[-20:]
    assert not list(site.rglob("*.tmp"))


def test_text_is_escaped(site: Path) -> None:
    for name in ("index.html", f"{PAPER}.html"):
        text = (site / name).read_text(encoding="utf-8")
        assert "<script>" not in text and "&lt;script&gt;" in text


def test_output_is_deterministic(site: Path) -> None:
    again = build_report(site.parent / "runs", site.parent / "again", pdf=False, allow_dirty=True).parent
    for name in ("index.html", f"{PAPER}.html", "protocol.html", f"figures/{PAPER}-cpu-tta.svg", "tta.csv"):
        assert (site / name).read_bytes() == (again / name).read_bytes()


@pytest.mark.parametrize("exists", [True, False])
def test_empty_runs_dir_says_how_to_produce_results(tmp_path: Path, exists: bool) -> None:
    runs = tmp_path / "runs"
    if exists:
        runs.mkdir()
    index = build_report(runs, tmp_path / "out", pdf=False).read_text(encoding="utf-8")
    assert "No results" in index and "effitrain reproduce PAPER --scale cpu" in index


def test_combinability_page_states_the_protocol_and_shows_wall_clock_beside_flops() -> None:
    from harness.report import html
    from tests.helpers import combinability

    page = html.combinability_page(combinability(table("cpu", "b").provenance), heatmap=False)
    flops, seconds = page.index("<h2>In counted FLOPs to target</h2>"), page.index(
        "<h2>In training-clock seconds to target</h2>")
    assert flops < seconds  # the machine-independent cost leads
    assert "inconclusive (timing noise)" in page[seconds:] and "capped" in page[seconds:]
    assert "1.07x (largest timing ratio between baseline_aa and the baseline" in page
    assert "bf16_autocast+distillation seed 2" in page and "reports/preregistered/matrix/cpu.json" in page
