"""The thesis-style PDF (harness.report.pdf) and the combinability page of the site (harness.report.html).

The tables are tests/helpers.py's: two papers (two technique families, so two chapters) and one
`effitrain run` table with no paper behind it, plus a three-technique combinability matrix. The PDF's
headings are read back with Typst's own query on the same generated sources; its text with pdftotext
where poppler-utils is installed. The tables come from a dirty working tree, so the report is built
with allow_dirty (and says so in every section).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import typst

from harness.report import cells, pdf
from harness.report.build import build_report, discover
from harness.results.schema import Combinability, ResultsTable, load_combinability, write_combinability
from tests.helpers import MARKUP, MP_TITLE, NO_PAPER, combinability, heatmap, paper_tables, write


def _inputs(root: Path, with_matrix: bool = True) -> tuple[Path, Path]:
    """Write the tables (and the matrix and heatmap) under root; return (runs dir, out dir)."""
    runs, out = root / "runs", root / "out"
    tables = paper_tables()
    for res in tables:
        write(runs, res)
    if with_matrix:
        write_combinability(combinability(tables[0].provenance), out / "combinability.json")
        heatmap(out / "combinability.png")
    return runs, out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The site and PDF built with a combinability matrix; returns the output folder."""
    runs, out = _inputs(tmp_path_factory.mktemp("thesis"))
    build_report(runs, out, allow_dirty=True)
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


def _headings(tables: list[ResultsTable], comb: Combinability | None, out: Path) -> list[str]:
    """Every heading of the document the sources describe, read back with typst.query."""
    with tempfile.TemporaryDirectory(dir=out) as work:
        source = pdf.write_sources(tables, comb, out, Path(work))
        found = json.loads(typst.query(str(source), "heading", format="json", root=str(out), ignore_system_fonts=True))
    return [_plain(h["body"]) for h in found]


def test_pdf_is_written_with_several_pages_and_no_leftovers(built: Path) -> None:
    data = (built / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF-") and _pdf_pages(data) >= 8
    assert not list(built.glob(".report-pdf-*")) and not list(built.rglob("*.tmp"))


def test_pdf_has_the_chapters_and_paper_sections(built: Path) -> None:
    tables = discover(built.parent / "runs")
    comb = load_combinability(built / "combinability.json")
    headings = _headings(tables, comb, built)
    titles = pdf.FAMILY_TITLES
    for title in (titles["arithmetic"], titles["model"], titles["runs"], "The measurement protocol",
                  *(t for t, _ in cells.PROTOCOL), "Stale and dirty tables",
                  "Time to accuracy: overview", "Combinability of techniques", "Threats to validity",
                  "JPEG-compressed CIFAR-10", "Provenance and environment", MP_TITLE, "Bibliography"):
        assert title in headings, title
    # chapters in family order: arithmetic before model before the single-technique runs
    assert headings.index(titles["arithmetic"]) < headings.index(titles["model"])
    assert headings.index(titles["model"]) < headings.index(titles["runs"])


def test_pdf_text_has_titles_verdicts_pairs_and_bibliography(built: Path) -> None:
    text = _pdf_text(built / "report.pdf")
    if text is None:  # no poppler: the bibliography file and the citations stand in for the rendered text
        with tempfile.TemporaryDirectory(dir=built) as work:
            source = pdf.write_sources(discover(built.parent / "runs"), None, built, Path(work))
            bib = (Path(work) / "report.bib").read_text(encoding="utf-8")
            keys = typst.query(str(source), "cite", field="key", format="json", root=str(built))
        assert "@article{hinton2015distilling" in bib and "hinton2015distilling" in keys
        return
    assert pdf.TITLE.replace("-", "") in text.replace("-", "")  # the title may be hyphenated
    assert "Distilling the Knowledge in a Neural Network <script>alert(1)</script>" in text
    assert "recorded: not reproduced" in text and "not run at this scale" in text
    assert "Dirty working tree:" in text and "Protocol not recorded:" in text  # banners of every section
    assert "Protocol and results: cpu [dirty; code not recorded; protocol not recorded]" in text
    assert MARKUP in text  # markup characters printed as text, nothing evaluated
    assert "bf16_autocast + distillation" in text and "stacks" in text and "reason <b>in words</b>" in text
    bibliography = text[text.rindex("Bibliography"):]
    assert "Distilling the Knowledge in a Neural Network" in bibliography and "Hinton" in bibliography
    assert "Mixed Precision Training" in bibliography and "Micikevicius" in bibliography
    assert "0123abcd" in text and "d41d8cd9" in text  # provenance appendix


def test_abstract_counts_come_from_the_data(tmp_path: Path) -> None:
    tables = paper_tables()
    comb = combinability(tables[0].provenance)
    data = pdf.report_data(tables, comb, tmp_path, {})
    abstract = data["abstract"]
    assert "reproduces 2 papers" in abstract and "adds 1 single-technique run " in abstract
    # 2 seeds: the judged claims count as no verdict (tests/test_report_protocol.py has 5-seed tables)
    assert "the 6 verdicts: 4 no verdict (under 5 seeds), 2 not run at this scale" in abstract
    assert "3 pairs of 3 techniques on the mnist_cnn recipe: 1 stacks, 1 overlap, 1 incompatible" in abstract
    assert data["date"] == "data as of 2026-11-22" and "0123abcd" in data["commits"]
    assert data["combinability"]["figure"] is None  # no heatmap under tmp_path/figures


def test_bibliography_comes_from_the_tables_cards(monkeypatch) -> None:
    assert pdf.bib_key("@inproceedings{ gupta2015deep,\n  title={x}}") == "gupta2015deep"
    assert pdf.bib_key("no entry") is None
    hinton, _, no_paper = paper_tables()
    looked_up = []
    monkeypatch.setattr(pdf, "_registry_bibtex", lambda paper: looked_up.append(paper))
    bib, keys = pdf.bibliography([hinton, no_paper], None)
    assert keys == {"hinton2015_distillation": "hinton2015distilling"}
    assert bib.startswith("@article{hinton2015distilling,") and NO_PAPER not in bib
    assert looked_up == [NO_PAPER]  # a table that carries its BibTeX needs no registry


def test_tables_without_bibtex_fall_back_to_the_paper_registry(monkeypatch) -> None:
    """Committed tables predate the card summary's bibtex: the one fallback reads the registry's card."""
    from types import SimpleNamespace

    from harness import papers

    def get_paper(paper: str) -> SimpleNamespace:
        return SimpleNamespace(CARD=SimpleNamespace(bibtex=f"@misc{{key_{paper}, title={{{paper}}}}}"))

    monkeypatch.setattr(papers, "get_paper", get_paper)
    hinton = paper_tables()[0]
    hinton.card.bibtex = None
    bib, keys = pdf.bibliography([hinton], combinability(hinton.provenance))  # the singles name three papers
    assert keys == {p: f"key_{p}" for p in ("gupta2015_fixed_point", "hinton2015_distillation",
                                            "micikevicius2018_mixed_precision")}
    assert bib.count("@misc{") == 3
    assert pdf._registry_bibtex(NO_PAPER) is None


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
    build_report(runs, out, allow_dirty=True)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert cells.MATRIX_HOWTO in index and 'href="combinability.html"' not in index
    assert not (out / "combinability.html").exists()
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    text = _pdf_text(out / "report.pdf")
    if text is not None:
        assert f"Produce it with `{cells.MATRIX_HOWTO}`" in text


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
        build_report(runs, out, pdf=False)
    assert str(path) in str(err.value) and key in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "combinability.json", "combinability.png"]


def test_failed_compile_keeps_the_old_pdf(tmp_path: Path) -> None:
    runs, out = _inputs(tmp_path)
    (out / "report.pdf").write_bytes(b"%PDF-old")
    (out / "combinability.png").write_bytes(b"not an image")  # Typst cannot decode it
    with pytest.raises(ValueError, match=r"report\.pdf: typst could not compile the report: .*image") as err:
        build_report(runs, out, allow_dirty=True)
    assert "\n" not in str(err.value)
    assert (out / "report.pdf").read_bytes() == b"%PDF-old"
    assert not list(out.glob(".report-pdf-*"))
    assert (out / "index.html").exists()  # the site was written before the PDF


def test_figures_are_sized_by_their_aspect_ratio(tmp_path: Path) -> None:
    # an SVG as matplotlib writes it (7.5 x 2 in) and a tall one: wide figures take 90% of the text width,
    # tall ones are capped at max_height_cm with their width following the ratio
    from harness.report import figures

    tables = paper_tables()
    (tmp_path / "wide.svg").write_bytes(figures.tta_plot(tables[0], "svg"))
    wide = pdf._figure(tmp_path, "wide.svg", "caption")
    assert wide == {"path": "/wide.svg", "width_cm": round(0.9 * pdf.TEXT_WIDTH_CM, 2), "caption": "caption"}
    (tmp_path / "tall.svg").write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                                       'width="100pt" height="400pt" viewBox="0 0 100 400"></svg>')
    assert pdf._figure(tmp_path, "tall.svg", "c", max_height_cm=8.0)["width_cm"] == 2.0
    assert pdf._figure(tmp_path, "absent.svg", "c") is None
