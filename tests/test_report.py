"""Tests for harness.report: the static site built from results files.

The example results are built here, by hand, in the Runner's schema: one paper
at two scales, with a claim the paper gives no number for, a run that never
reached the target and a technique arm whose speedup is unknown.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.report import build_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAPER = "hinton2015_distillation"


def _run(seed: int, tta: float | None, top: float, errors: int) -> dict[str, Any]:
    """One run record: a rising accuracy curve that ends at `top`."""
    curve = [{"step": 50 * (i + 1), "train_seconds": 1.5 * (i + 1) + 0.1 * seed,
              "val/acc": top - 0.012 * (5 - i) ** 1.5, "val/loss": 0.3 / (i + 1)} for i in range(6)]
    return {"seed": seed, "run_id": f"run{seed}", "train_seconds": 9.3, "eval_seconds": 0.8,
            "eval_share": 0.08, "warmup_seconds": 0.4, "steps": 300, "samples": 38400,
            "time_to_target_s": tta, "final": {"test/acc": top - 0.001, "test/errors": errors,
                                               "val/acc": top}, "curve": curve, "stopped_by": "epochs"}


def _results(scale: str, budget: str) -> dict[str, Any]:
    """A results dict in the Runner's schema."""
    claims = [
        {"id": "distilled_errors", "text": "distilled student test errors", "metric": "test/errors",
         "arm": "distilled", "claimed": 74, "paper_baseline": 146, "source": "Section 3",
         "tolerance": 10, "measured": 190.0, "low": 180.0, "high": 200.0, "verdict": "not reproduced"},
        {"id": "soft_targets_help", "text": "soft targets beat hard targets", "metric": "test/acc",
         "arm": "distilled", "claimed": None, "paper_baseline": None, "source": "Section 3, text",
         "tolerance": 0.002, "measured": 0.981, "low": 0.979, "high": 0.983, "verdict": "inconclusive"},
        {"id": "full_mnist", "text": "60k-image result", "metric": "test/acc", "arm": "distilled",
         "claimed": 0.9926, "paper_baseline": None, "source": "Table 1", "tolerance": 0.001,
         "measured": None, "low": None, "high": None, "verdict": "not run at this scale"},
    ]
    return {
        "paper": PAPER, "scale": scale,
        "card": {"title": "Distilling the Knowledge in a Neural Network <script>alert(1)</script>",
                 "authors": "Hinton, Vinyals, Dean", "venue": "NIPS Deep Learning Workshop", "year": 2015,
                 "arxiv": "1503.02531", "url": "https://arxiv.org/abs/1503.02531",
                 "summary": "Train a small student on a teacher's softened outputs."},
        "budget": budget, "command": f"effitrain reproduce {PAPER} --scale {scale} --seeds 2",
        "created": "2026-11-21T18:00:00+00:00", "seeds": [0, 1],
        "target": {"metric": "val/acc", "value": 0.97, "mode": "max"},
        "baseline_arm": "hard_student",
        "arms": {
            "hard_student": {"description": "student on hard labels", "techniques": [],
                             "runs": [_run(0, 6.2, 0.975, 250), _run(1, None, 0.965, 350)]},
            "distilled": {"description": "student on teacher soft targets", "techniques": ["distillation"],
                          "runs": [_run(0, 5.1, 0.982, 180), _run(1, 5.5, 0.981, 190)]},
            "temperature_1": {"description": "T=1", "techniques": ["distillation"],
                              "runs": [_run(0, None, 0.95, 500), _run(1, None, 0.95, 500)]},
        },
        "speedups": {
            "distilled": {"speedup": 1.21, "low": 0.95, "high": 1.4, "success_rate": 1.0,
                          "verdict": "inconclusive"},
            "temperature_1": {"speedup": None, "low": None, "high": None, "success_rate": 0.0,
                              "verdict": "inconclusive"},
        },
        "claims": claims,
        "provenance": {"git_commit": "0123abcd", "git_dirty": True, "torch": "2.5.1", "lightning": "2.4.0",
                       "device": "cpu", "cpu_count": 2, "dataset_md5": {"mnist/train.npz": "d41d8cd9"}},
    }


def _write(runs: Path, res: dict[str, Any]) -> Path:
    path = runs / res["paper"] / f"{res['scale']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res), encoding="utf-8")
    return path


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """A report built from one paper at the cpu and smoke scales."""
    runs = tmp_path / "runs"
    _write(runs, _results("cpu", "cpu demo: students 2 epochs on 10k MNIST"))
    _write(runs, _results("smoke", "smoke: 20 steps on 512 images"))
    out = tmp_path / "site"
    assert build_report(runs, out) == out / "index.html"
    return out


def test_index_links_every_paper_page(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert f'href="{PAPER}.html#scale-smoke"' in index
    assert f'href="{PAPER}.html#scale-cpu"' in index
    assert (site / f"{PAPER}.html").is_file()
    assert index.index("scale-smoke") < index.index("scale-cpu")  # smoke < cpu < paper
    assert "1.21× [0.95, 1.40]" in index and "temperature_1: n/a" in index
    assert "1 not reproduced, 1 inconclusive, 1 not run at this scale" in index
    # no combinability.json in the output folder: the index says how to make one, and links the PDF
    assert "effitrain matrix --scale cpu --seeds 3" in index and 'href="combinability.html"' not in index
    assert 'href="report.pdf"' in index and (site / "report.pdf").read_bytes().startswith(b"%PDF-")


def test_paper_page_has_ledger_budget_and_tta(site: Path) -> None:
    page = (site / f"{PAPER}.html").read_text(encoding="utf-8")
    for verdict in ("not reproduced", "inconclusive", "not run at this scale"):
        assert f"<b>{verdict}</b>" in page
    for text in ("distilled student test errors", "soft targets beat hard targets", "60k-image result"):
        assert text in page
    assert "n.f." in page and "Section 3, text" in page
    assert "190 [180, 200]" in page and "98.10% [97.90%, 98.30%]" in page
    assert "cpu demo: students 2 epochs on 10k MNIST" in page and "smoke: 20 steps on 512 images" in page
    assert page.count('class="budget"') == 2
    assert "not reached (∞) [6.2 s, ∞]" in page and "5.3 s [5.1 s, 5.5 s]" in page and "not reached (∞) [∞, ∞]" in page and "1/2 (50%)" in page and "0/2 (0%)" in page
    assert "n/a" in page and "0123abcd" in page and "d41d8cd9" in page
    assert page.index('id="scale-smoke"') < page.index('id="scale-cpu"')
    assert f'src="figures/{PAPER}-cpu-tta.png"' in page


def test_figures_are_png(site: Path) -> None:
    for scale in ("smoke", "cpu"):
        data = (site / "figures" / f"{PAPER}-{scale}-tta.png").read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    assert not list(site.rglob("*.tmp"))


def test_text_is_escaped(site: Path) -> None:
    for name in ("index.html", f"{PAPER}.html"):
        text = (site / name).read_text(encoding="utf-8")
        assert "<script>" not in text and "&lt;script&gt;" in text


def test_output_is_deterministic(site: Path, tmp_path: Path) -> None:
    again = build_report(tmp_path / "runs", tmp_path / "again").parent
    for name in ("index.html", f"{PAPER}.html", f"figures/{PAPER}-cpu-tta.png", "report.pdf"):
        assert (site / name).read_bytes() == (again / name).read_bytes()


@pytest.mark.parametrize("exists", [True, False])
def test_empty_runs_dir_says_how_to_produce_results(tmp_path: Path, exists: bool) -> None:
    runs = tmp_path / "runs"
    if exists:
        runs.mkdir()
    index = build_report(runs, tmp_path / "out").read_text(encoding="utf-8")
    assert "No results" in index and "effitrain reproduce PAPER --scale cpu" in index
    assert (tmp_path / "out" / "report.pdf").read_bytes().startswith(b"%PDF-")  # an empty report still typesets


@pytest.mark.parametrize(("drop", "key"), [
    (lambda r: r.pop("budget"), "budget"),
    (lambda r: r["claims"][1].pop("verdict"), "claims[1].verdict"),
    (lambda r: r["arms"]["distilled"]["runs"][0].pop("curve"), "arms.distilled.runs[0].curve"),
    (lambda r: r["provenance"].pop("dataset_md5"), "provenance.dataset_md5"),
])
def test_missing_key_raises_naming_file_and_key(tmp_path: Path, drop: Any, key: str) -> None:
    res = copy.deepcopy(_results("cpu", "b"))
    drop(res)
    path = _write(tmp_path / "runs", res)
    with pytest.raises(ValueError) as err:
        build_report(tmp_path / "runs", tmp_path / "out")
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and "\n" not in message
    assert not (tmp_path / "out" / "index.html").exists()


def test_bad_json_and_misplaced_file_raise(tmp_path: Path) -> None:
    bad = tmp_path / "runs" / PAPER / "cpu.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="cpu.json"):
        build_report(tmp_path / "runs", tmp_path / "out")
    bad.unlink()
    _write(tmp_path / "runs", _results("cpu", "b"))
    (tmp_path / "runs" / PAPER / "cpu.json").rename(tmp_path / "runs" / PAPER / "paper.json")
    with pytest.raises(ValueError, match="paper.json"):
        build_report(tmp_path / "runs", tmp_path / "out")


def test_speedup_cells_say_why_there_is_no_ratio():
    from harness.report import _fmt_speedup

    assert _fmt_speedup({"speedup": 0.0, "low": 0.0, "high": 0.0, "success_rate": 0.0,
                         "verdict": "slower"}) == "0× (technique never reached the target)"
    assert _fmt_speedup({"speedup": None, "low": None, "high": None, "success_rate": 1.0,
                         "verdict": "only the technique reached the target"}).startswith("∞")
    assert _fmt_speedup({"speedup": None, "low": None, "high": None, "success_rate": 0.0,
                         "verdict": "target not reached"}) == "n/a"
