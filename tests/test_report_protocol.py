"""The report under the measurement protocol (schema version 3): what every table shows, the cost that
leads, stale and dirty tables, and the protocol page.

Tables are tests/helpers.py's hinton table made into a protocol table here: 5 seeds (or 3), an A/A
control arm, costs to target, paired cost speedups, claims of every kind with declared fidelity, and
provenance that lists the code files its runs executed (files in a temp "project" whose hashes the
tests control). The site is built without the PDF except where the PDF's own marks are checked.
"""

from __future__ import annotations

import copy
import hashlib
import html
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from harness.report import cells, pdf
from harness.report.build import build_report
from harness.results import tta
from harness.results.schema import (
    ClaimResult,
    ClaimVerdict,
    CostSpeedup,
    PairVerdict,
    Protocol,
    ResultsTable,
    Run,
    Speedup,
    SpeedupVerdict,
    variant,
)
from tests.helpers import PAPER, table, write

CODE = {"harness/train.py": b"def train(): return 1\n", "reproductions/hinton.py": b"PAPER = 'hinton'\n"}
METHOD = ("exact order-statistic interval of the median over paired seeds (sign test; scipy.stats.binom), "
          "coverage 93.8% at 5 seeds")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _project(root: Path) -> Path:
    """A project tree holding the files the table's runs executed."""
    for rel, data in CODE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _run(seed: int, arm: str, steps: int | None, flops: float | None, acc: float = 0.98) -> Run:
    reached = steps is not None
    return Run(arm=arm, seed=seed, train_seconds=9.0, eval_share=0.08, steps=300, samples=38400, flops=3e10,
               time_to_target_s=steps * 0.05 if reached else None, final={"test/acc": acc, "test/errors": 200},
               curve=[{"step": 50, "train_seconds": 2.5, "val/acc": acc}], steps_to_target=steps,
               samples_to_target=steps * 128 if reached else None, flops_to_target=flops,
               load={"start": 1.0, "median": 1.25, "max": 2.0}, capped=False, collapsed=False)


def _cost(value: float, low: float, high: float, verdict: SpeedupVerdict) -> CostSpeedup:
    return CostSpeedup(speedup=value, low=low, high=high, verdict=verdict)


def protocol_table(n_seeds: int = 5, device: str = "cpu: x86_64", dirty: bool = False) -> ResultsTable:
    """The hinton table under the protocol: n seeds, an A/A arm, costs, claims of every kind, code files."""
    t = table("cpu", "cpu: students 2 epochs on 10k MNIST")
    seeds = list(range(n_seeds))
    t.seeds = seeds
    few = n_seeds < 5
    base, distilled, t1 = (t.arms[a] for a in ("hard_student", "distilled", "temperature_1"))
    base.runs = [_run(s, "hard_student", 400 + 10 * s, 1.2e9 + 1e7 * s) for s in seeds]
    distilled.runs = [_run(s, "distilled", 250 + 10 * s, 4.1e8 + 1e7 * s) for s in seeds]
    t1.runs = [_run(s, "temperature_1", None, None, acc=0.12) for s in seeds]
    distilled.fidelity, distilled.fidelity_note = "variant", "T = 8 instead of 20"
    t1.fidelity, t1.fidelity_note = "substitute", "a plain softmax stands in for the unpublished schedule"
    base.fidelity = "faithful"
    aa = copy.deepcopy(base)
    aa.description, aa.replicate_of = "A/A control: hard_student run again", "hard_student"
    t.arms["hard_student_aa"] = aa
    judged = SpeedupVerdict.RANGE_ONLY if few else SpeedupVerdict.FASTER
    t.speedups = {
        "distilled": Speedup(speedup=1.07, low=1.01, high=1.15, success_rate=1.0, baseline="hard_student",
                             verdict=SpeedupVerdict.RANGE_ONLY if few else SpeedupVerdict.TIMING_NOISE,
                             n_seeds=n_seeds, coverage=None if few else 0.9375,
                             costs={"flops": _cost(2.93, 2.8, 3.1, judged), "steps": _cost(1.6, 1.5, 1.7, judged),
                                    "samples": _cost(1.6, 1.5, 1.7, judged)}),
        "temperature_1": Speedup(speedup=None, low=None, high=None, success_rate=0.0, n_seeds=0,
                                 verdict=SpeedupVerdict.COLLAPSED, coverage=None,
                                 costs={k: _cost(None, None, None, SpeedupVerdict.COLLAPSED)
                                        for k in ("flops", "steps", "samples")})}
    claim = dict(source="Section 3", tolerance=0.002, n_seeds=n_seeds, coverage=None if few else 0.9375,
                 fidelity="variant", fidelity_note="T = 8 instead of 20")

    def verdict(v: ClaimVerdict) -> ClaimVerdict:
        return ClaimVerdict.RANGE_ONLY if few else v

    t.claims = [
        ClaimResult(id="point", text="distilled accuracy", metric="test/acc", arm="distilled", claimed=0.981,
                    kind="point", measured=0.98, low=0.979, high=0.983, verdict=verdict(ClaimVerdict.REPRODUCED),
                    **claim),
        ClaimResult(id="least", text="at least 97%", metric="test/acc", arm="distilled", claimed=0.97,
                    kind="at_least", measured=0.98, low=0.979, high=0.983, verdict=verdict(ClaimVerdict.REPRODUCED),
                    **claim),
        ClaimResult(id="most", text="up to 3x fewer FLOPs", metric="speedup", arm="distilled", claimed=3.0,
                    kind="at_most", cost="flops", measured=2.93, low=2.8, high=3.1,
                    verdict=verdict(ClaimVerdict.CONSISTENT), **claim),
        ClaimResult(id="range", text="accuracy between 97.5% and 98.5%", metric="test/acc", arm="distilled",
                    claimed=0.975, claimed_high=0.985, kind="range", measured=0.98, low=0.979, high=0.983,
                    verdict=verdict(ClaimVerdict.REPRODUCED), **claim),
        ClaimResult(id="order", text="soft targets help", metric="test/acc", arm="distilled", claimed=None,
                    kind="ordering", arms=["temperature_1", "hard_student", "distilled"], measured=0.004,
                    low=0.001, high=0.006, verdict=verdict(ClaimVerdict.REPRODUCED), **claim),
        ClaimResult(id="sub", text="substitute agrees", metric="test/acc", arm="temperature_1", claimed=0.95,
                    kind="point", measured=0.12, low=0.11, high=0.13, verdict=ClaimVerdict.COLLAPSED,
                    **{**claim, "fidelity": "substitute", "fidelity_note": "a plain softmax"})]
    t.protocol = Protocol(min_seeds=5, interval_method=f"range of {n_seeds} seeds (no verdict under 5)" if few
                          else METHOD, coverage=None if few else 0.9375, noise_floor=1.18, aa_arm="hard_student_aa",
                          arm_order="reference arms first, then the arms of each seed in an order drawn from the seed",
                          classes=10, collapse_accuracy=0.15, capped_runs=["hard_student seed 1"],
                          collapsed_runs=[f"temperature_1 seed {s}" for s in seeds],
                          target_rule="97% of the calibration baseline's median validation accuracy")
    t.provenance = replace(t.provenance, git_dirty=dirty, device=device, code_hash="abcdef0123456789",
                           code_files={rel: _digest(data) for rel, data in CODE.items()})
    return t


def _build(tmp_path: Path, *tables: ResultsTable, **kwargs) -> Path:
    runs = tmp_path / "runs"
    for t in tables:
        write(runs, t)
    if "code_root" not in kwargs:  # the project as the runs saw it
        kwargs["code_root"] = _project(tmp_path / "project")
    return build_report(runs, tmp_path / "site", pdf=kwargs.pop("pdf", False), **kwargs).parent


def _text(path: Path) -> str:
    """A page's text: tags dropped, entities unescaped, whitespace collapsed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))))


# ---------------------------------------------------------------- what every table shows

def test_a_protocol_table_shows_its_protocol_fidelity_and_claim_kinds(tmp_path: Path) -> None:
    site = _build(tmp_path, protocol_table())
    page = (site / f"{PAPER}.html").read_text(encoding="utf-8")
    text = _text(site / f"{PAPER}.html")
    for shown in ("5 (0, 1, 2, 3, 4), paired by seed", METHOD,
                  "1.18× (largest ratio either way between the baseline and its A/A replicate",
                  "hard_student_aa (the baseline hard_student run again on every seed)",
                  "final test accuracy at or below 15.00% (1.5× chance, 10 classes)", "hard_student seed 1",
                  "temperature_1 seed 0, temperature_1 seed 1", "97% of the calibration baseline's median",
                  "median 1.25, highest 2.00", "fidelity: variant: T = 8 instead of 20",
                  "fidelity: substitute: a plain softmax stands in", "fidelity: faithful",
                  "A/A control of hard_student (timing noise floor)"):
        assert shown in text, shown
    for kind in ("point ± 0.20%", "at least", "at most (up to)", "range",
                 "ordering temperature_1 &lt; hard_student &lt; distilled"):
        assert f"<td>{kind}</td>" in page, kind
    assert "97.50% to 98.50%" in text and "≤ 3" in text
    # coloured by verdict: consistent like reproduced, collapsed like not reproduced
    assert '<tr class="ok"><td>up to 3x fewer FLOPs</td>' in page
    assert '<tr class="bad"><td>substitute agrees</td>' in page and "<b>collapsed</b>" in page
    assert "protocol not recorded" not in text and "STALE" not in text and "Stale:" not in text
    # medians of the machine-independent costs to target, per arm
    assert "1.22 GFLOP [1.2 GFLOP, 1.24 GFLOP]" in text and "420 [400, 440]" in text and "270 [250, 290]" in text


def test_new_verdicts_have_colours_and_orders() -> None:
    v = cells.VERDICT_CLASS
    assert v[ClaimVerdict.CONSISTENT] == v[ClaimVerdict.AGREES_SUBSTITUTE] == v[ClaimVerdict.REPRODUCED] == "ok"
    assert v[ClaimVerdict.COLLAPSED] == v[ClaimVerdict.NOT_REPRODUCED] == "bad"
    assert v[ClaimVerdict.DIFFERS_SUBSTITUTE] == v[ClaimVerdict.RANGE_ONLY] == "skip"
    assert cells.PAIR_VERDICT_CLASS[PairVerdict.RANGE_ONLY] == "skip"
    assert set(ClaimVerdict) - {ClaimVerdict.NO_NUMBER, ClaimVerdict.NOT_MEASURED, ClaimVerdict.TARGET_NOT_REACHED,
                                ClaimVerdict.ONLY_TECHNIQUE} <= set(cells.CLAIM_VERDICT_ORDER)
    assert {SpeedupVerdict.TIMING_NOISE, SpeedupVerdict.RANGE_ONLY, SpeedupVerdict.COLLAPSED} <= set(
        cells.SPEEDUP_VERDICT_ORDER)


def test_under_five_seeds_intervals_are_ranges_and_there_is_no_verdict(tmp_path: Path) -> None:
    t = protocol_table(n_seeds=3)
    site = _build(tmp_path, t)
    text = _text(site / f"{PAPER}.html")
    assert "3 (0, 1, 2), paired by seed: under 5, so intervals are ranges and no verdict is given" in text
    assert "range of 3 seeds (no verdict under 5)" in text
    assert "FLOPs 2.93× [range of 3 seeds: 2.80, 3.10] no verdict: 3 seeds, under 5" in text
    assert "98.00% [range of 3 seeds: 97.90%, 98.30%]" in text
    claims = [cells.claim_cells(c, t) for c in t.claims]
    assert [c.verdict for c in claims[:5]] == ["no verdict: 3 seeds, under 5"] * 5
    assert claims[5].verdict == "collapsed"  # a collapsed run is no judgement from the interval
    assert cells.verdict_counts(t.claims, t) == "1 collapsed, 5 no verdict (under 5 seeds)"
    assert "reproduced" not in text.replace("not reproduced", "")
    # the same table at 5 seeds: exact intervals, not ranges, and verdicts
    five = _text(_build(tmp_path / "five", protocol_table()) / f"{PAPER}.html")
    assert "range of" not in five and "no verdict" not in five
    assert "FLOPs 2.93× [2.80, 3.10] faster" in five


# ---------------------------------------------------------------- machine-independent cost first

def test_a_cpu_table_leads_with_flops_a_cuda_table_with_wall_clock(tmp_path: Path) -> None:
    cpu = protocol_table()
    gpu = protocol_table(device="cuda: NVIDIA H200")
    gpu.tag = "gpu"
    assert [p[0] for p in cells.speedup_parts(cpu, "distilled")] == ["FLOPs", "steps", "wall-clock"]
    assert [p[0] for p in cells.speedup_parts(gpu, "distilled")] == ["wall-clock", "FLOPs", "steps"]
    assert cells.speedup_summary(cpu, "distilled") == (
        "FLOPs 2.93× [2.80, 3.10] (faster); steps 1.60× [1.50, 1.70] (faster); "
        "wall-clock 1.07× [1.01, 1.15] (inconclusive (timing noise))")
    assert cells.speedup_summary(gpu, "distilled").startswith("wall-clock 1.07× [1.01, 1.15]")
    site = _build(tmp_path, cpu, gpu)
    index = _text(site / "index.html")
    assert "distilled: FLOPs 2.93× [2.80, 3.10] (faster); steps" in index
    assert "distilled: wall-clock 1.07× [1.01, 1.15] (inconclusive (timing noise)); FLOPs 2.93×" in index
    page = (site / f"{PAPER}.html").read_text(encoding="utf-8")
    cpu_part, gpu_part = page.split('id="scale-cpu-gpu"') if 'id="scale-cpu-gpu"' in page else (None, None)
    assert cpu_part is not None
    # the arm table's columns and cells follow the same order
    assert cpu_part.index("FLOPs to target: median") < cpu_part.index("time to target: median")
    assert gpu_part.index("time to target: median") < gpu_part.index("FLOPs to target: median")
    rows = {r["arm"]: r for r in tta.rows([cpu])}
    assert rows["distilled"]["flops_speedup"] == 2.93 and rows["distilled"]["steps_to_target"] == 270
    assert rows["distilled"]["fidelity"] == "variant"


# ---------------------------------------------------------------- provenance that cannot lie

def test_a_table_whose_code_changed_is_marked_stale_naming_the_files(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    site = _build(tmp_path, protocol_table(), code_root=project)
    assert "Stale" not in _text(site / f"{PAPER}.html")
    assert "current: the 2 source files the runs executed are unchanged" in _text(site / f"{PAPER}.html")
    (project / "harness/train.py").write_bytes(b"def train(): return 2\n")
    (project / "reproductions/hinton.py").unlink()
    site = _build(tmp_path, protocol_table(), code_root=project)
    page = _text(site / f"{PAPER}.html")
    assert ("Stale: the code these runs executed has changed since: harness/train.py (changed), "
            "reproductions/hinton.py (missing)") in page
    assert '<div class="banner stale">' in (site / f"{PAPER}.html").read_text(encoding="utf-8")
    assert "stale (2 files changed)" in _text(site / "index.html")
    status = cells.code_status(protocol_table().provenance, project)
    assert status.stale and status.changed == ("harness/train.py",) and status.missing == ("reproductions/hinton.py",)
    data = pdf.report_data([protocol_table()], None, site, {}, {cells.table_key(protocol_table()): status})
    block = data["chapters"][0]["papers"][0]["variants"][0]
    assert block["heading"] == "Protocol and results: cpu [stale (2 files changed)]"
    assert block["banners"][0]["kind"] == "stale" and "harness/train.py (changed)" in block["banners"][0]["text"]
    assert "Stale tables (their code has changed since): hinton2015_distillation/cpu." in data["threats"][-1]["text"]


def test_staleness_is_checked_against_this_checkout_by_default(tmp_path: Path) -> None:
    real = "harness/report/cells.py"
    prov = replace(protocol_table().provenance, code_files={real: _digest((cells.PROJECT_ROOT / real).read_bytes())})
    assert not cells.code_status(prov).stale and cells.code_status(prov).checked == 1
    assert cells.code_status(replace(prov, code_files={real: "0" * 16})).changed == (real,)
    assert cells.code_status(replace(prov, code_files={"../outside.py": "0" * 16})).missing == ("../outside.py",)
    unrecorded = cells.code_status(replace(prov, code_files=None))
    assert not unrecorded.recorded and not unrecorded.stale and "code not recorded" in unrecorded.text()


def test_a_dirty_table_is_refused_unless_allowed_and_then_bannered(tmp_path: Path) -> None:
    dirty = protocol_table(dirty=True)
    with pytest.raises(ValueError) as err:
        _build(tmp_path, dirty)
    path = tmp_path / "runs" / PAPER / f"{variant(dirty)}.json"
    assert str(err.value).startswith(f"{path}: made from uncommitted code") and "--allow-dirty" in str(err.value)
    assert "\n" not in str(err.value) and not (tmp_path / "site").exists()  # refused before anything is written
    site = _build(tmp_path, dirty, allow_dirty=True, pdf=shutil.which("pdftotext") is not None)
    page = (site / f"{PAPER}.html").read_text(encoding="utf-8")
    assert '<div class="banner dirty"><b>Dirty working tree:</b> these runs came from uncommitted changes' in page
    assert "<b>dirty</b>" in (site / "index.html").read_text(encoding="utf-8")
    if (site / "report.pdf").exists():
        out = subprocess.run(["pdftotext", str(site / "report.pdf"), "-"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        text = re.sub(r"\s+", " ", out.replace("\u200b", ""))
        assert "Protocol and results: cpu [dirty]" in text and "Dirty working tree: these runs came from" in text
        assert "The measurement protocol" in text and "93.8% coverage" in text


def test_the_matrix_is_refused_when_dirty_and_marked_when_its_code_changed(tmp_path: Path) -> None:
    from harness.results.schema import write_combinability
    from tests.helpers import combinability

    clean = protocol_table()
    comb_path = tmp_path / "site" / "combinability.json"
    comb_path.parent.mkdir()
    write_combinability(combinability(replace(clean.provenance, git_dirty=True)), comb_path)
    with pytest.raises(ValueError) as err:
        _build(tmp_path, clean)
    assert str(err.value).startswith(f"{comb_path}: made from uncommitted code") and "\n" not in str(err.value)
    assert not (tmp_path / "site" / "index.html").exists()  # refused before anything is written
    page = _text(_build(tmp_path, clean, allow_dirty=True) / "combinability.html")
    assert "Dirty working tree: the matrix's runs came from uncommitted changes" in page

    write_combinability(combinability(clean.provenance), comb_path)  # clean, its code as the runs saw it
    page = _text(_build(tmp_path, clean) / "combinability.html")
    assert "code current: the 2 source files the runs executed are unchanged" in page and "Stale:" not in page
    assert "working tree clean" in page

    changed = replace(clean.provenance, code_files={**clean.provenance.code_files, "harness/train.py": "0" * 16})
    write_combinability(combinability(changed), comb_path)
    site = _build(tmp_path, clean, pdf=shutil.which("pdftotext") is not None)
    page = _text(site / "combinability.html")
    assert "Stale: the code these runs executed has changed since: harness/train.py (changed)" in page
    if (site / "report.pdf").exists():
        out = subprocess.run(["pdftotext", str(site / "report.pdf"), "-"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        text = re.sub(r"\s+", " ", out.replace("\u200b", ""))
        assert "Stale: the code these runs executed has changed since: harness/train.py (changed)" in text
        assert "combinability.json [stale]" in text and "The combinability matrix: stale." in text


def test_the_cli_refuses_dirty_tables_unless_allow_dirty(tmp_path: Path, capsys) -> None:
    from harness.cli import main

    write(tmp_path / "runs", protocol_table(dirty=True))
    argv = ["report", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "site")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "made from uncommitted code" in err and err.count("\n") == 1 and not (tmp_path / "site").exists()
    assert main([*argv, "--allow-dirty"]) == 0
    assert "Dirty working tree" in (tmp_path / "site" / f"{PAPER}.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the protocol stated

def test_the_protocol_page_exists_and_is_linked(tmp_path: Path) -> None:
    site = _build(tmp_path, protocol_table())
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="protocol.html"' in index and 'href="protocol.html"' in (site / f"{PAPER}.html").read_text()
    text = _text(site / "protocol.html")
    for said in ("Machine-independent cost first", "A/A control", "noise floor", "capped", "93.8% coverage",
                 "range of n seeds", "at most", "agrees (substitute)", "differs (substitute)", "never judged",
                 "1.5 times chance", "calibration runs", "stale", "--allow-dirty"):
        assert said in text, said
    empty = build_report(tmp_path / "none", tmp_path / "empty", pdf=False)
    assert 'href="protocol.html"' in empty.read_text() and (tmp_path / "empty" / "protocol.html").is_file()


def test_what_a_technique_achieved_is_shown_beside_the_arm(tmp_path: Path) -> None:
    table = protocol_table()
    arm = next(a for a in table.arms if table.arms[a].techniques)
    for i, run in enumerate(table.arms[arm].runs):
        run.stats = {"tech/sparsity/mean": 0.6 + i / 100, "tech/sparsity/conv1": 0.9, "tech/flop_fraction": 0.7}
    text = cells.achieved_text(table, arm)
    assert text == "tech/flop_fraction 0.7 [0.7, 0.7]; tech/sparsity/mean 0.62 [0.6, 0.64]"  # no per-layer stats
    assert cells.achieved_text(table, table.baseline_arm) == ""
    page = _text(_build(tmp_path, table) / f"{table.paper}.html")
    assert f"achieved: {text}" in page
