"""The static site: `index.html`, one page per paper with a section per variant, `protocol.html`,
`combinability.html`.

Readable without JavaScript, one inline stylesheet. Every cell comes from `harness.report.cells`
as plain text and is escaped here; only http(s) links from a card are emitted. Functions return
page text; `harness.report.build` writes it. Pages take the tables' code checks (`cells.code_statuses`,
by `cells.table_key`); without them they check against this checkout.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report import cells
from harness.results.schema import CardSummary, Combinability, Provenance, ResultsTable, variant

__all__ = ["paper_page", "index_page", "combinability_page", "protocol_page", "CSS"]
Statuses = dict[tuple[str, str], cells.CodeStatus] | None

CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;white-space:nowrap}
.budget{background:#fff6d5;border-left:5px solid #e0a800;padding:.5em .8em;margin:.6em 0;font-size:1.05em}
.ok{background:#d9f2dd}.bad{background:#f8d7da}.maybe{background:#fff3cd}.skip{background:#eceff1;color:#555}.syn{background:#d6e9f8}
.banner{padding:.5em .8em;margin:.6em 0;border-left:5px solid}.stale{background:#fde2e1;border-color:#c62828}
.dirty{background:#fde2e1;border-color:#6a1b9a}.note{background:#eef3f8;border-color:#78909c}
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
    """The claim ledger: each claim's kind and the fidelity of the arm judged, the claimed number beside
    what this run measured, coloured by verdict."""
    rows, classes = [], []
    for c in (cells.claim_cells(claim, table) for claim in table.claims):
        claimed = _esc(c.claimed)
        if c.paper_baseline is not None:
            claimed += f'<br><span class="muted">paper baseline {_esc(c.paper_baseline)}</span>'
        rows.append([_esc(c.text), _esc(c.kind), f"<code>{_esc(c.metric)}</code>",
                     f'{_esc(c.arm)}<br><span class="muted">fidelity: {_esc(c.fidelity)}</span>', claimed,
                     _esc(c.source), _esc(c.measured), _esc(c.tolerance), f"<b>{_esc(c.verdict)}</b>"])
        classes.append(c.css)
    headers = ["claim", "kind", "metric", "arm (fidelity)", "claimed", "source", "measured [interval]", "tolerance",
               "verdict"]
    return _table(headers, rows, classes) if rows else "<p>No claims recorded.</p>"


_COST_HEADERS = {"flops": "FLOPs to target: median [min, max]", "steps": "steps to target: median [min, max]",
                 "seconds": "time to target: median [min, max]"}


def _speedups(c: dict[str, Any]) -> str:
    """The speedup lines of an arm, the leading cost first: `FLOPs 1.20× [1.10, 1.30] faster`."""
    if not c["speedups"]:
        return _esc(c["speedup"])
    return "<br>".join(f"{_esc(label)} {_esc(value)}" + (f" <b>{_esc(verdict)}</b>" if verdict else "")
                       for label, value, verdict in c["speedups"])


def _tta_table(table: ResultsTable) -> str:
    """Per arm: fidelity, costs to target (the leading one first), speedups, success rate, final test metrics,
    eval share, theoretical speedup."""
    rows = []
    for arm in cells.arm_order(table):
        c = cells.arm_cells(table, arm)
        desc = table.arms[arm].description
        rows.append([f'<b>{_esc(arm)}</b><br><span class="muted">{_esc(desc)}</span>'
                     f'<br><span class="muted">fidelity: {_esc(c["fidelity"])}</span>'
                     + (f'<br><span class="muted">achieved: {_esc(c["achieved"])}</span>' if c["achieved"] else ""),
                     *(_esc(cell) for _, cell in c["costs"]), _speedups(c), _esc(c["reached"]),
                     *(_esc(f) for f in c["finals"]), _esc(c["share"]), _esc(c["theory"])])
    lead = "FLOPs" if cells.cost_first(table) else "wall-clock"
    headers = ["arm (fidelity)", *(_COST_HEADERS[k] for k in cells.cost_order(table)),
               f"speedup [interval] verdict, {lead} first", "reached target",
               *(f"{k}: median [min, max]" for k in cells.final_test_metrics(table)), "eval share of wall time",
               "theoretical speedup (FLOPs per sample vs baseline)"]
    return _table(headers, rows)


def _provenance_table(prov: Provenance, created: str, status: cells.CodeStatus | None = None) -> str:
    """Where the numbers came from: code version and its check, software, machine, data checksums."""
    rows = []
    for item, value in cells.provenance_rows(prov, created, status=status):
        if isinstance(value, list):
            text = "<br>".join(f"<code>{_esc(k)}</code>: <code>{_esc(v)}</code>" for k, v in value) or "—"
        else:
            text = f"<code>{_esc(value)}</code>" if item == "git commit" else _esc(value)
        rows.append([item, text])
    return _table(["item", "value"], rows)


def _banners(notices: list[tuple[str, str, str]]) -> str:
    """Stale, dirty and not-recorded notices (`cells.status_banners`, `cells.matrix_banners`), above the numbers
    they qualify."""
    return "\n".join(f'<div class="banner {kind}"><b>{_esc(title)}:</b> {_esc(text)}</div>'
                      for kind, title, text in notices)


def _scale_section(table: ResultsTable, figure: str, status: cells.CodeStatus | None = None) -> str:
    """One paper page section: marks and budget first, then the protocol, claims, costs and provenance."""
    name, t = variant(table), table.target
    mark = cells.status_mark(table, status)
    protocol = _table(["item", "value"], [[_esc(k), _esc(v)] for k, v in cells.protocol_rows(table, status)])
    return "\n".join([
        f'<section id="scale-{_esc(name)}"><h2>Scale: {_esc(table.scale)} ({_esc(table.tag or "")})'
        + (f' <span class="muted">[{_esc(mark)}]</span>' if mark and mark != "current" else "") + "</h2>",
        _banners(cells.status_banners(table, status)),
        f'<div class="budget"><b>Budget ({_esc(name)}):</b> {_esc(table.budget)}</div>',
        _citation(table.card),
        f"<p>Command: <code>{_esc(table.command)}</code><br>Seeds: {_esc(len(table.seeds))} · target: "
        f"<code>{_esc(t.metric)}</code> {'≥' if t.mode == 'max' else '≤'} {_esc(cells.number(t.metric, t.value))}</p>",
        '<h3>Protocol</h3><p class="muted">How these numbers were reached; the protocol itself is stated on '
        '<a href="protocol.html">protocol.html</a>.</p>', protocol,
        "<h3>Claim ledger</h3>", _claims_table(table),
        "<h3>Cost to target</h3>", _tta_table(table), _epochs_table(table),
        f'<img src="{_esc(figure)}" alt="{_esc(cells.metric_label(t.metric))} against training time, '
        f'{_esc(table.scale)} scale">',
        "<h3>Provenance</h3>", _provenance_table(table.provenance, table.created, status), "</section>"])


def _epochs_table(table: ResultsTable) -> str:
    """Where a technique changed the model's size: the cost epoch by epoch (cells.epoch_rows), else nothing."""
    rows = cells.epoch_rows(table)
    if not rows:
        return ""
    return ('<h3>Cost per epoch</h3><p class="muted">Medians over seeds. The model changed size during training, so '
            "each epoch is charged what it cost: FLOPs counted on the model as it was at each step.</p>"
            + _table(cells.EPOCH_COLUMNS, [[_esc(c) for c in row] for row in rows]))


def paper_page(tables: list[ResultsTable], figures: list[str], statuses: Statuses = None) -> str:
    """A paper's page: header from its card, a contents list, a section per variant (figure URLs beside)."""
    statuses = statuses if statuses is not None else cells.code_statuses(tables)
    card = tables[-1].card
    toc = " · ".join(f'<a href="#scale-{_esc(variant(t))}">{_esc(variant(t))}</a>' for t in tables)
    head = [f'<p><a href="index.html">← all papers</a> · <a href="protocol.html">the measurement protocol</a></p>'
            f"<h1>{_esc(card.title)}</h1>"]
    for key in ("summary", "notes"):
        if getattr(card, key):
            head.append(f"<p><b>{_esc(key.capitalize())}:</b> {_esc(getattr(card, key))}</p>")
    head.append(f"<p>Scales: {toc}</p>")
    sections = [_scale_section(t, f, statuses.get(cells.table_key(t))) for t, f in zip(tables, figures)]
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


_PROTOCOL_LINK = ('<p>How every number here was measured (costs to target, interleaved arms and the timing noise '
                  'floor, paired seeds and exact intervals, claim kinds and fidelity, stale and dirty tables): '
                  '<a href="protocol.html">the measurement protocol</a>.</p>')


def _index_row(t: ResultsTable, status: cells.CodeStatus | None) -> tuple[list[str], str]:
    link = f"{quote(t.paper)}.html#scale-{quote(variant(t))}"
    speed = "<br>".join(f"{_esc(a)}: {_esc(cells.speedup_summary(t, a, compact=True))}" for a in sorted(t.speedups))
    mark = cells.status_mark(t, status)
    css = "stale" if status is not None and status.stale else "dirty" if t.provenance.git_dirty else ""
    return [f'<a href="{_esc(link)}">{_esc(t.card.title)}</a><br><code>{_esc(t.paper)}</code>',
            _esc(variant(t)), _esc(t.budget), _esc(len(t.seeds)), _esc(cells.verdict_counts(t.claims, t)),
            speed or "n/a", f"<b>{_esc(mark)}</b>" if css else _esc(mark), f'<a href="{_esc(link)}">details</a>'], css


def index_page(tables: list[ResultsTable], runs_dir: Path, comb_present: bool = False,
               statuses: Statuses = None) -> str:
    """The overview: one row per (paper, variant) with its stale/dirty marks, or how to produce results if
    there are none; then the protocol page, the combinability page (or how to produce it) and the PDF."""
    if not tables:
        body = (f"<h1>{_TITLE}</h1><p>No results found in <code>{_esc(runs_dir)}</code>. "
                f"Produce them with {_HOW}, then rebuild this report.</p>" + _PROTOCOL_LINK + _extras(comb_present))
        return _page(_TITLE, body)
    statuses = statuses if statuses is not None else cells.code_statuses(tables)
    headers = ["paper", "scale", "budget", "seeds", "claims",
               "speedup [interval] per technique arm (FLOPs first on CPU tables)", "code", "page"]
    rows, classes = zip(*(_index_row(t, statuses.get(cells.table_key(t))) for t in tables))
    body = (f"<h1>{_TITLE}</h1><p>Each row is one paper at one scale; every number "
            f"comes from the budget in its row. Add results with {_HOW}.</p>" + _PROTOCOL_LINK
            + _table(headers, list(rows), list(classes))
            + "<h2>Time to accuracy overview</h2><p>Every arm of every table, with its baseline's time to "
              "target, the speedups (FLOPs, steps, wall-clock) and their intervals, the success rate, the final "
              "test accuracy and the theoretical speedup from FLOPs per sample beside the realised one: "
              '<a href="tta.csv">tta.csv</a>. Below, median test accuracy against median training time '
              "per arm; the red steps join the arms no other arm beats on both.</p>"
              '<img src="figures/pareto.svg" alt="accuracy against training time, one panel per paper">'
            + _extras(comb_present))
    return _page(_TITLE, body)


def protocol_page() -> str:
    """The measurement protocol every table's verdicts follow, stated once (`cells.PROTOCOL`)."""
    body = ['<p><a href="index.html">← all papers</a></p><h1>The measurement protocol</h1>',
            f"<p>{_esc(cells.PROTOCOL_INTRO)}</p>"]
    body += [f"<h2>{_esc(title)}</h2><p>{_esc(text)}</p>" for title, text in cells.PROTOCOL]
    return _page("The measurement protocol", "\n".join(body))


_COMB_INTRO = (
    "<p>Every pair of techniques is first checked against their declarations (declared conflicts, two owners "
    "of the number format or of the optimizer); pairs that compose are trained against the same baseline and "
    "seeds as the single techniques. Interaction = S<sub>AB</sub> / (S<sub>A</sub> · S<sub>B</sub>): about 1 "
    "stacks, above 1 synergy, below 1 overlap. Speedups are medians over seeds of the per-seed ratio of "
    "baseline to technique cost to target (the cost the matrix leads with is named below; wall-clock beside "
    "it is judged against the A/A control's timing noise floor), with the exact order-statistic interval of "
    "the median (under 5 seeds, the range of the seeds and no verdict); accuracy changes are medians of "
    "per-seed differences of test accuracy against the baseline, in percentage points.</p>")


def _comb_tables(comb: Combinability, view: Any, level: str) -> list[str]:
    """The singles and pairs tables of one view of the matrix (its main cost, or the secondary)."""
    singles, pairs = cells.combinability_rows(comb, view)
    s_rows = [[f"<b>{_esc(s['technique'])}</b>", _esc(s["paper"]), _esc(f"{s['speedup']} ({s['verdict']})"),
               _esc(s["success"]),
               _esc(s["dacc"]) + (f'<br><span class="muted">{_esc(s["error"])}</span>' if s["error"] else "")]
              for s in singles]
    p_rows = [[f"<b>{_esc(p['pair'])}</b>", f"<b>{_esc(p['verdict'])}</b>", _esc(p["reason"]), _esc(p["s_a"]),
               _esc(p["s_b"]), _esc(p["s_ab"]), _esc(p["interaction"]), _esc(p["dacc"])] for p in pairs]
    return [f"<{level}>Single techniques</{level}>",
            _table(["technique", "paper", "speedup [interval] (verdict)", "success rate",
                    "test accuracy change [interval]"], s_rows) if s_rows else "<p>No single techniques recorded.</p>",
            f"<{level}>Pairs</{level}>",
            _table(["pair", "verdict", "reason", "S_A", "S_B", "S_AB", "interaction [interval]",
                    "accuracy change: pair vs sum of singles"], p_rows, [p["class"] for p in pairs])
            if p_rows else "<p>No pairs recorded.</p>"]


def combinability_page(comb: Combinability, heatmap: bool, status: cells.CodeStatus | None = None) -> str:
    """The combinability matrix: its stale/dirty notices, shared setting and protocol, heatmap, singles, then every
    pair with its verdict and reason, in the matrix's main cost and then in the other (wall-clock beside FLOPs)."""
    facts = _table(["item", "value"], [[_esc(k), _esc(v)] for k, v in cells.combinability_facts(comb, status)])
    img = '<img src="combinability.png" alt="pair verdicts and interactions as a heatmap">' if heatmap else ""
    body = [
        '<p><a href="index.html">← all papers</a></p><h1>Combinability of techniques</h1>',
        f'<div class="budget"><b>Budget ({_esc(comb.scale)}):</b> {_esc(comb.budget)}</div>',
        _banners(cells.matrix_banners(comb, status)),
        _COMB_INTRO, facts, img,
        f"<h2>In {_esc(cells.cost_words(comb.cost))}</h2>", *_comb_tables(comb, comb, "h3")]
    if comb.secondary is not None:
        body += [f"<h2>In {_esc(cells.cost_words(comb.secondary.cost))}</h2>",
                 *_comb_tables(comb, comb.secondary, "h3")]
    body += ["<h2>Provenance</h2>", _provenance_table(comb.provenance, comb.created)]
    return _page("Combinability of techniques", "\n".join(body))
