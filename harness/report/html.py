"""The static site: `index.html`, one page per paper with a section per variant, `combinability.html`.

Readable without JavaScript, one inline stylesheet. Every cell comes from `harness.report.cells`
as plain text and is escaped here; only http(s) links from a card are emitted. Functions return
page text; `harness.report.build` writes it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report import cells
from harness.results.schema import CardSummary, Combinability, Provenance, ResultsTable, variant

__all__ = ["paper_page", "index_page", "combinability_page", "CSS"]

CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;white-space:nowrap}
.budget{background:#fff6d5;border-left:5px solid #e0a800;padding:.5em .8em;margin:.6em 0;font-size:1.05em}
.ok{background:#d9f2dd}.bad{background:#f8d7da}.maybe{background:#fff3cd}.skip{background:#eceff1;color:#555}.syn{background:#d6e9f8}
code{background:#f4f4f4;padding:.1em .3em}section{border-top:2px solid #888;margin-top:2em}
.muted{color:#666;font-size:.9em}img{max-width:100%;border:1px solid #ddd}"""
_TITLE = "effitrain reproduction report"
_HOW = "<code>effitrain reproduce PAPER --scale cpu</code>"


def _esc(value: Any) -> str:
    """Escape any value for HTML text or attributes."""
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    """A complete HTML document with the inline stylesheet; `body` is already escaped HTML."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(title)}</title>\n<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table; headers are plain text, cells are escaped HTML, classes are per row."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_esc(classes[i])}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _safe_url(url: Any) -> str | None:
    """Only http(s) links are emitted, so a card cannot inject a javascript: URL."""
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def _citation(card: CardSummary) -> str:
    """Authors, title, venue and year, with arXiv/URL links when the card has them."""
    text = f"{_esc(card.authors)}. <em>{_esc(card.title)}</em>. {_esc(card.venue)}, {_esc(card.year)}."
    url = _safe_url(card.url)
    if card.arxiv:
        text += f' arXiv:<a href="https://arxiv.org/abs/{quote(str(card.arxiv))}">{_esc(card.arxiv)}</a>.'
    if url:
        text += f' <a href="{_esc(url)}">{_esc(url)}</a>'
    return f"<p>{text}</p>"


def _claims_table(table: ResultsTable) -> str:
    """The claim ledger: each claimed number beside what this run measured, coloured by verdict."""
    rows, classes = [], []
    for c in map(cells.claim_cells, table.claims):
        claimed = _esc(c.claimed)
        if c.paper_baseline is not None:
            claimed += f'<br><span class="muted">paper baseline {_esc(c.paper_baseline)}</span>'
        rows.append([_esc(c.text), f"<code>{_esc(c.metric)}</code>", _esc(c.arm), claimed, _esc(c.source),
                     _esc(c.measured), _esc(c.tolerance), f"<b>{_esc(c.verdict)}</b>"])
        classes.append(c.css)
    headers = ["claim", "metric", "arm", "claimed", "source", "measured [low, high]", "tolerance", "verdict"]
    return _table(headers, rows, classes) if rows else "<p>No claims recorded.</p>"


def _tta_table(table: ResultsTable) -> str:
    """Per arm: time to target, success rate, final test metrics, eval share, speedup."""
    rows = []
    for arm in cells.arm_order(table):
        c = cells.arm_cells(table, arm)
        desc = table.arms[arm].description
        rows.append([f"<b>{_esc(arm)}</b><br><span class=\"muted\">{_esc(desc)}</span>", _esc(c["tta"]),
                     _esc(c["reached"]), *(_esc(f) for f in c["finals"]), _esc(c["share"]), _esc(c["speedup"]),
                     _esc(c["theory"])])
    headers = ["arm", "time to target: median [min, max]", "reached target",
               *(f"{k}: median [min, max]" for k in cells.final_test_metrics(table)), "eval share of wall time",
               "speedup [interval]", "theoretical speedup (FLOPs per sample vs baseline)"]
    return _table(headers, rows)


def _provenance_table(prov: Provenance, created: str) -> str:
    """Where the numbers came from: code version, software, machine, data checksums."""
    rows = []
    for item, value in cells.provenance_rows(prov, created):
        if isinstance(value, list):
            text = "<br>".join(f"<code>{_esc(k)}</code>: <code>{_esc(v)}</code>" for k, v in value) or "—"
        else:
            text = f"<code>{_esc(value)}</code>" if item == "git commit" else _esc(value)
        rows.append([item, text])
    return _table(["item", "value"], rows)


def _scale_section(table: ResultsTable, figure: str) -> str:
    """One paper page section: everything measured at one variant, budget first."""
    name, t = variant(table), table.target
    seeds = ", ".join(str(s) for s in table.seeds)
    return "\n".join([
        f'<section id="scale-{_esc(name)}"><h2>Scale: {_esc(table.scale)} ({_esc(table.tag or "")})</h2>',
        f'<div class="budget"><b>Budget ({_esc(name)}):</b> {_esc(table.budget)}</div>',
        _citation(table.card),
        f"<p>Command: <code>{_esc(table.command)}</code><br>Seeds: {_esc(seeds)} · target: "
        f"<code>{_esc(t.metric)}</code> {'≥' if t.mode == 'max' else '≤'} {_esc(cells.number(t.metric, t.value))}</p>",
        "<h3>Claim ledger</h3>", _claims_table(table),
        "<h3>Time to target</h3>", _tta_table(table),
        f'<img src="{_esc(figure)}" alt="{_esc(cells.metric_label(t.metric))} against training time, '
        f'{_esc(table.scale)} scale">',
        "<h3>Provenance</h3>", _provenance_table(table.provenance, table.created), "</section>"])


def paper_page(tables: list[ResultsTable], figures: list[str]) -> str:
    """A paper's page: header from its card, a contents list, a section per variant (figure URLs beside)."""
    card = tables[-1].card
    toc = " · ".join(f'<a href="#scale-{_esc(variant(t))}">{_esc(variant(t))}</a>' for t in tables)
    head = [f'<p><a href="index.html">← all papers</a></p><h1>{_esc(card.title)}</h1>']
    for key in ("summary", "notes"):
        if getattr(card, key):
            head.append(f"<p><b>{_esc(key.capitalize())}:</b> {_esc(getattr(card, key))}</p>")
    head.append(f"<p>Scales: {toc}</p>")
    sections = [_scale_section(t, f) for t, f in zip(tables, figures)]
    return _page(card.title, "\n".join(head + sections))


def _extras(comb_present: bool) -> str:
    """Index paragraphs for the combinability page (or how to make it) and the thesis-style PDF."""
    if comb_present:
        comb = ('<h2>Combinability</h2><p>Which techniques stack, overlap or cannot be combined, pair by pair: '
                '<a href="combinability.html">combinability.html</a>.</p>')
    else:
        comb = ("<h2>Combinability</h2><p>No combinability matrix yet (<code>combinability.json</code> is missing "
                f"here). Produce it with <code>{_esc(cells.MATRIX_HOWTO)}</code>, then rebuild this report.</p>")
    return comb + ('<h2>Thesis-style report</h2><p>Everything above as one typeset document, with method '
                   'summaries, threats to validity and a bibliography: <a href="report.pdf">report.pdf</a>.</p>')


def _index_row(t: ResultsTable) -> list[str]:
    link = f"{quote(t.paper)}.html#scale-{quote(variant(t))}"
    speed = "<br>".join(f"{_esc(a)}: {_esc(cells.speedup_cell(t.speedups[a]))}" for a in sorted(t.speedups))
    return [f'<a href="{_esc(link)}">{_esc(t.card.title)}</a><br><code>{_esc(t.paper)}</code>',
            _esc(variant(t)), _esc(t.budget), _esc(len(t.seeds)), _esc(cells.verdict_counts(t.claims)),
            speed or "n/a", f'<a href="{_esc(link)}">details</a>']


def index_page(tables: list[ResultsTable], runs_dir: Path, comb_present: bool = False) -> str:
    """The overview: one row per (paper, variant), or how to produce results if there are none;
    then the combinability page (or how to produce it) and the PDF."""
    if not tables:
        body = (f"<h1>{_TITLE}</h1><p>No results found in <code>{_esc(runs_dir)}</code>. "
                f"Produce them with {_HOW}, then rebuild this report.</p>" + _extras(comb_present))
        return _page(_TITLE, body)
    headers = ["paper", "scale", "budget", "seeds", "claims", "speedup [interval] per technique arm", "page"]
    body = (f"<h1>{_TITLE}</h1><p>Each row is one paper at one scale; every number "
            f"comes from the budget in its row. Add results with {_HOW}.</p>"
            + _table(headers, [_index_row(t) for t in tables])
            + "<h2>Time to accuracy overview</h2><p>Every arm of every table, with its baseline's time to "
              "target, the speedup and its interval, the success rate, the final test accuracy and the "
              "theoretical speedup from FLOPs per sample beside the realised one: "
              '<a href="tta.csv">tta.csv</a>. Below, median test accuracy against median training time '
              "per arm; the red steps join the arms no other arm beats on both.</p>"
              '<img src="figures/pareto.png" alt="accuracy against training time, one panel per paper">'
            + _extras(comb_present))
    return _page(_TITLE, body)


_COMB_INTRO = (
    "<p>Every pair of techniques is first checked against their declarations (declared conflicts, two owners "
    "of the number format or of the optimizer); pairs that compose are trained against the same baseline and "
    "seeds as the single techniques. Interaction = S<sub>AB</sub> / (S<sub>A</sub> · S<sub>B</sub>): about 1 "
    "stacks, above 1 synergy, below 1 overlap. Speedups are median baseline time to target over median "
    "technique time, with bootstrap intervals; accuracy changes are medians of per-seed differences of test "
    "accuracy against the baseline, in percentage points.</p>")


def combinability_page(comb: Combinability, heatmap: bool) -> str:
    """The combinability matrix: shared setting, heatmap, singles, then every pair with its verdict and reason."""
    singles, pairs = cells.combinability_rows(comb)
    facts = _table(["item", "value"], [[_esc(k), _esc(v)] for k, v in cells.combinability_facts(comb)])
    s_rows = [[f"<b>{_esc(s['technique'])}</b>", _esc(s["paper"]), _esc(f"{s['speedup']} ({s['verdict']})"),
               _esc(s["success"]),
               _esc(s["dacc"]) + (f'<br><span class="muted">{_esc(s["error"])}</span>' if s["error"] else "")]
              for s in singles]
    p_rows = [[f"<b>{_esc(p['pair'])}</b>", f"<b>{_esc(p['verdict'])}</b>", _esc(p["reason"]), _esc(p["s_a"]),
               _esc(p["s_b"]), _esc(p["s_ab"]), _esc(p["interaction"]), _esc(p["dacc"])] for p in pairs]
    img = '<img src="combinability.png" alt="pair verdicts and interactions as a heatmap">' if heatmap else ""
    body = [
        '<p><a href="index.html">← all papers</a></p><h1>Combinability of techniques</h1>',
        f'<div class="budget"><b>Budget ({_esc(comb.scale)}):</b> {_esc(comb.budget)}</div>',
        _COMB_INTRO, facts, img, "<h2>Single techniques</h2>",
        _table(["technique", "paper", "speedup [interval] (verdict)", "success rate",
                "test accuracy change [interval]"], s_rows) if s_rows else "<p>No single techniques recorded.</p>",
        "<h2>Pairs</h2>",
        _table(["pair", "verdict", "reason", "S_A", "S_B", "S_AB", "interaction [interval]",
                "accuracy change: pair vs sum of singles"], p_rows, [p["class"] for p in pairs])
        if p_rows else "<p>No pairs recorded.</p>",
        "<h2>Provenance</h2>", _provenance_table(comb.provenance, comb.created)]
    return _page("Combinability of techniques", "\n".join(body))
