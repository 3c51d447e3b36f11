"""Tests for harness.thesis (reports/report.pdf) and the combinability page of harness.report.

The results are the hand-built tables of test_report.py: two papers (two technique families, so two
chapters) and one `effitrain run` table with no paper behind it, plus a combinability.json written
here in the schema `effitrain matrix` writes. The PDF's headings are read back with Typst's own query
on the same generated sources; its text with pdftotext where poppler-utils is installed.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import typst
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness import report, thesis
from harness.report import build_report
from tests.test_report import _results, _write

# Text that is Typst markup: spliced into the template it would fail to compile (@nokey, #panic).
MARKUP = 'Soft targets *help* #panic("spliced") $x^2$ @nokey <lbl> `raw` \\ _under_ = head'
MP_TITLE = "Mixed Precision Training"
NO_PAPER = "run-mnist_cnn"


def _paper_tables() -> list[dict[str, Any]]:
    """hinton (family model), a copy as micikevicius (family arithmetic) and a run without a paper."""
    hinton = _results("cpu", "cpu: students 2 epochs on 10k MNIST")
    hinton["card"].update(family="model", summary=MARKUP, notes="Our tolerances.")
    mp = copy.deepcopy(hinton)
    mp["paper"] = "micikevicius2018_mixed_precision"
    mp["card"].update(title=MP_TITLE, family="arithmetic", authors="Micikevicius et al.", summary="fp16 with "
                      "fp32 master weights and loss scaling.")
    run = copy.deepcopy(hinton)
    run.update(paper=NO_PAPER, claims=[])
    run["card"] = {"title": "mnist_cnn", "authors": "", "venue": "", "year": None, "arxiv": None, "url": None,
                   "summary": "MNIST CNN"}
    return [hinton, mp, run]


def _pair(a: str, b: str, verdict: str, **numbers: float | None) -> dict[str, Any]:
    """One pair record; numbers not given are null, as for an incompatible pair."""
    keys = ["s_a", "s_b", "s_ab", "interaction"]
    record = {f"{k}{suffix}": None for k in keys for suffix in ("", "_low", "_high")}
    record.update({k: None for k in ("acc_base", "dacc_a", "dacc_b", "dacc_ab", "dacc_sum", "dacc_excess",
                                     "success_ab")})
    record.update(a=a, b=b, status="incompatible" if verdict == "incompatible" else "composed", verdict=verdict,
                  reason=f"{a} and {b}: reason <b>in words</b>", recipe="mnist_cnn", recipe_note="the shared recipe",
                  seeds=3, **numbers)
    return record


def _combinability(prov: dict[str, Any]) -> dict[str, Any]:
    """A matrix of three techniques: one stacking pair, one overlapping pair, one incompatible pair."""
    single = {"speedup": 1.2, "low": 1.05, "high": 1.4, "verdict": "faster", "success_rate": 1.0,
              "dacc": -0.002, "dacc_low": -0.004, "dacc_high": 0.0, "error": None}
    return {
        "scale": "cpu", "recipe": "mnist_cnn", "recipe_description": "MNIST 55k/5k, CNN conv16-conv32-FC128",
        "budget": "epochs=2; batch 128", "overrides": ["n_train=12000"],
        "target": {"metric": "val/acc", "value": 0.97, "mode": "max"}, "seeds": [0, 1, 2],
        "techniques": ["bf16_autocast", "distillation", "fixed_point"],
        "composition_order": ["bf16_autocast", "fixed_point", "distillation"],
        "recipe_rule": "every pair runs on mnist_cnn, the one recipe all three techniques accept",
        "command": "effitrain matrix --scale cpu --seeds 3", "created": "2026-11-22T09:00:00+00:00",
        "code_version": "abc123", "runs": {"run": 12, "reused": 3, "failed": 0}, "provenance": prov,
        "baseline": {"time_to_target_s": [12.1, 11.0, None], "test_acc": [0.98, 0.981, 0.979]},
        "singles": {"bf16_autocast": {**single, "paper": "micikevicius2018_mixed_precision"},
                    "distillation": {**single, "paper": "hinton2015_distillation", "speedup": 0.8, "low": 0.7,
                                     "high": 0.9, "verdict": "slower"},
                    "fixed_point": {**single, "paper": "gupta2015_fixed_point", "verdict": "inconclusive"}},
        "pairs": [_pair("bf16_autocast", "distillation", "stacks", s_a=1.2, s_a_low=1.05, s_a_high=1.4, s_b=0.8,
                        s_b_low=0.7, s_b_high=0.9, s_ab=0.97, s_ab_low=0.9, s_ab_high=1.05, interaction=1.01,
                        interaction_low=0.9, interaction_high=1.1, dacc_ab=-0.003, dacc_sum=-0.004,
                        dacc_excess=0.001),
                  _pair("bf16_autocast", "fixed_point", "incompatible"),
                  _pair("distillation", "fixed_point", "overlap", s_ab=0.5, interaction=0.52)],
    }


def _heatmap(path: Path) -> None:
    """A small PNG standing in for the matrix command's heatmap."""
    fig = Figure(figsize=(3, 2), dpi=60)
    FigureCanvasAgg(fig)
    fig.add_subplot().imshow([[1.0, 0.5], [0.5, 1.0]])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def _inputs(root: Path, with_matrix: bool = True) -> tuple[Path, Path]:
    """Write the results (and the matrix and heatmap) under root; return (runs dir, out dir)."""
    runs, out = root / "runs", root / "out"
    tables = _paper_tables()
    for res in tables:
        _write(runs, res)
    if with_matrix:
        out.mkdir(parents=True)
        (out / "combinability.json").write_text(json.dumps(_combinability(tables[0]["provenance"])), encoding="utf-8")
        _heatmap(out / "combinability.png")
    return runs, out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The site and PDF built with a combinability matrix; returns the output folder."""
    runs, out = _inputs(tmp_path_factory.mktemp("thesis"))
    build_report(runs, out)
    return out


def _pdf_pages(pdf: bytes) -> int:
    """The page count of the page tree's root (the largest /Count in the file)."""
    return max(int(n) for n in re.findall(rb"/Count (\d+)", pdf))


def _pdf_text(pdf: Path) -> str | None:
    """The PDF's text via pdftotext (poppler-utils) when installed, else None."""
    exe = shutil.which("pdftotext")
    if exe is None:
        return None
    done = subprocess.run([exe, str(pdf), "-"], capture_output=True, text=True, timeout=60, check=True)
    return re.sub(r"\s+", " ", done.stdout.replace("\u200b", "").replace("\u00ad", ""))


def _plain(content: Any) -> str:
    """The text of a Typst content value as `typst.query` serialises it."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_plain(c) for c in content)
    if isinstance(content, dict):
        if "text" in content:
            return _plain(content["text"])
        if content.get("func") == "space":
            return " "
        return "".join(_plain(content[k]) for k in ("body", "children", "child") if k in content)
    return ""


def _headings(results: list[dict[str, Any]], comb: dict[str, Any] | None, out: Path) -> list[str]:
    """Every heading of the document the sources describe, read back with typst.query."""
    with tempfile.TemporaryDirectory(dir=out) as work:
        source = thesis.write_sources(results, comb, out, Path(work))
        found = json.loads(typst.query(str(source), "heading", format="json", root=str(out), ignore_system_fonts=True))
    return [_plain(h["body"]) for h in found]


def test_pdf_is_written_with_several_pages_and_no_leftovers(built: Path) -> None:
    pdf = (built / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and _pdf_pages(pdf) >= 8
    assert not list(built.glob(".report-pdf-*")) and not list(built.rglob("*.tmp"))


def test_pdf_has_the_chapters_and_paper_sections(built: Path) -> None:
    results = report._discover(built.parent / "runs")
    comb = report.load_combinability(built / "combinability.json")
    headings = _headings(results, comb, built)
    for title in (thesis.FAMILY_TITLES["arithmetic"], thesis.FAMILY_TITLES["model"], thesis.FAMILY_TITLES["runs"],
                  "Time to accuracy: overview", "Combinability of techniques", "Threats to validity",
                  "JPEG-compressed CIFAR-10", "Provenance and environment", MP_TITLE, "Bibliography"):
        assert title in headings, title
    # chapters in family order: arithmetic before model before the single-technique runs
    assert headings.index(thesis.FAMILY_TITLES["arithmetic"]) < headings.index(thesis.FAMILY_TITLES["model"])
    assert headings.index(thesis.FAMILY_TITLES["model"]) < headings.index(thesis.FAMILY_TITLES["runs"])


def test_pdf_text_has_titles_verdicts_pairs_and_bibliography(built: Path) -> None:
    text = _pdf_text(built / "report.pdf")
    if text is None:  # no poppler: the bibliography file and the citations stand in for the rendered text
        with tempfile.TemporaryDirectory(dir=built) as work:
            source = thesis.write_sources(report._discover(built.parent / "runs"), None, built, Path(work))
            bib = (Path(work) / "report.bib").read_text(encoding="utf-8")
            keys = typst.query(str(source), "cite", field="key", format="json", root=str(built))
        assert "@article{hinton2015distilling" in bib and "hinton2015distilling" in keys
        return
    assert thesis.TITLE.replace("-", "") in text.replace("-", "")  # the title may be hyphenated
    assert "Distilling the Knowledge in a Neural Network <script>alert(1)</script>" in text
    assert "not reproduced" in text and "not run at this scale" in text
    assert MARKUP in text  # markup characters printed as text, nothing evaluated
    assert "bf16_autocast + distillation" in text and "stacks" in text and "reason <b>in words</b>" in text
    bibliography = text[text.rindex("Bibliography"):]
    assert "Distilling the Knowledge in a Neural Network" in bibliography and "Hinton" in bibliography
    assert "Mixed Precision Training" in bibliography and "Deep Learning with Limited Numerical" in bibliography
    assert "0123abcd" in text and "d41d8cd9" in text  # provenance appendix


def test_abstract_counts_come_from_the_data(tmp_path: Path) -> None:
    tables = _paper_tables()
    comb = _combinability(tables[0]["provenance"])
    data = thesis.report_data(tables, comb, tmp_path, {})
    abstract = data["abstract"]
    assert "reproduces 2 papers" in abstract and "adds 1 single-technique run " in abstract
    assert "the 6 verdicts: 2 not reproduced, 2 inconclusive, 2 not run at this scale" in abstract
    assert "3 pairs of 3 techniques on the mnist_cnn recipe: 1 stacks, 1 overlap, 1 incompatible" in abstract
    assert data["date"] == "data as of 2026-11-22" and "0123abcd" in data["commits"]
    assert data["combinability"]["figure"] is None  # no heatmap under tmp_path/figures


def test_bibliography_keys_and_papers_without_a_module() -> None:
    assert thesis.bib_key("@inproceedings{ gupta2015deep,\n  title={x}}") == "gupta2015deep"
    assert thesis.bib_key("no entry") is None
    bib, keys = thesis.bibliography(["hinton2015_distillation", NO_PAPER])
    assert keys == {"hinton2015_distillation": "hinton2015distilling"}
    assert bib.startswith("@article{hinton2015distilling,") and NO_PAPER not in bib


def test_combinability_page(built: Path) -> None:
    page = (built / "combinability.html").read_text(encoding="utf-8")
    index = (built / "index.html").read_text(encoding="utf-8")
    assert 'href="combinability.html"' in index and 'href="report.pdf"' in index
    assert 'src="combinability.png"' in page
    assert "every pair runs on mnist_cnn" in page and "bf16_autocast → fixed_point → distillation" in page
    assert '<tr class="ok"><td><b>bf16_autocast + distillation</b></td><td><b>stacks</b></td>' in page
    assert '<tr class="skip"><td><b>bf16_autocast + fixed_point</b></td><td><b>incompatible</b></td>' in page
    assert '<tr class="maybe">' in page and "&lt;b&gt;in words&lt;/b&gt;" in page and "<b>in words" not in page
    assert "1.20× [1.05, 1.40]" in page and "0.80× [0.70, 0.90]" in page and "1.01 [0.90, 1.10]" in page
    assert "pair −0.30 pp vs sum −0.40 pp (excess +0.10 pp)" in page and "−0.20 pp [−0.40, +0.00]" in page


def test_without_matrix_the_report_says_how_to_make_it(tmp_path: Path) -> None:
    runs, out = _inputs(tmp_path, with_matrix=False)
    build_report(runs, out)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert report.MATRIX_HOWTO in index and 'href="combinability.html"' not in index
    assert not (out / "combinability.html").exists()
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    text = _pdf_text(out / "report.pdf")
    if text is not None:
        assert f"Produce it with `{report.MATRIX_HOWTO}`" in text


@pytest.mark.parametrize(("break_it", "key"), [
    (lambda c: c.pop("recipe_rule"), "'recipe_rule'"),
    (lambda c: c["pairs"][1].pop("verdict"), "'pairs[1].verdict'"),
    (lambda c: c["singles"]["fixed_point"].pop("dacc"), "'singles.fixed_point.dacc'"),
    (lambda c: c["provenance"].pop("git_commit"), "'provenance.git_commit'"),
    (lambda c: c.update(pairs={"a": 1}), "'pairs'"),
    (None, "unreadable"),
])
def test_bad_matrix_raises_before_anything_is_written(tmp_path: Path, break_it: Any, key: str) -> None:
    runs, out = _inputs(tmp_path)
    path = out / "combinability.json"
    if break_it is None:
        path.write_text('{"scale": "cpu",', encoding="utf-8")
    else:
        comb = json.loads(path.read_text(encoding="utf-8"))
        break_it(comb)
        path.write_text(json.dumps(comb), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        build_report(runs, out)
    assert str(path) in str(err.value) and key in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "combinability.json", "combinability.png"]


def test_failed_compile_keeps_the_old_pdf(tmp_path: Path) -> None:
    runs, out = _inputs(tmp_path)
    (out / "report.pdf").write_bytes(b"%PDF-old")
    (out / "combinability.png").write_bytes(b"not an image")  # Typst cannot decode it
    with pytest.raises(ValueError, match=r"report\.pdf: typst could not compile the report: .*image") as err:
        build_report(runs, out)
    assert "\n" not in str(err.value)
    assert (out / "report.pdf").read_bytes() == b"%PDF-old"
    assert not list(out.glob(".report-pdf-*"))
    assert (out / "index.html").exists()  # the site was written before the PDF
