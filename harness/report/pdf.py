"""The thesis-style PDF, `reports/report.pdf`, typeset with Typst from the same tables and cells as the site.

A static template, `harness/report/templates/report.typ`, reads `report-data.json`, built here
from the results tables (and the combinability matrix) with the cells of `harness.report.cells`,
and `report.bib`, the BibTeX the tables' card summaries carry. The template places every string
as text (a value read with Typst's `json()` is never parsed as markup), so card and results text
needs no escaping.

The three sources go to a temp folder inside the output folder, Typst compiles them with the
output folder as its root (so `/figures/...` are the site's SVG figures), and the PDF is written with
the project's atomic writer: a failed compile leaves the previous PDF and raises ValueError with
Typst's first error line.

Each results table's section carries its protocol rows and its stale/dirty banners (`cells.status_banners`,
from the code checks `build_report` passes in; without them, checked against this checkout), and the
measurement protocol itself is a chapter (`cells.PROTOCOL`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import statistics
import struct
import tempfile
from pathlib import Path
from typing import Any

import typst

from harness.report import cells
from harness.results import tta
from harness.results.atomic import atomic_write
from harness.results.schema import Combinability, Provenance, ResultsTable, variant

__all__ = ["build_pdf", "write_sources", "report_data", "bibliography", "bib_key", "FAMILY_TITLES", "TITLE",
           "TEMPLATE"]

TEMPLATE = Path(__file__).with_name("templates") / "report.typ"
TITLE = "Cheaper neural-network training: a reproduction report"
# Chapter titles per card.family (harness/cards.py lists the keys); unknown keys get a generic title.
FAMILY_TITLES = {
    "arithmetic": "Cheaper arithmetic: number formats, rounding and approximate operations",
    "model": "Smaller models: distillation and compression",
    "data": "Less data: sampling, curricula and augmentation",
    "search": "Cheaper search: hyperparameters and architectures",
    "distributed": "More machines: large batches and distributed training",
    "runs": "Single techniques on a shared recipe",
}
_BIB_KEY = re.compile(r"@\s*\w+\s*\{\s*([^,\s]+)\s*,")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SVG_SIZE = re.compile(rb'<svg[^>]*?\swidth="(?P<w>[\d.]+)pt"\s+height="(?P<h>[\d.]+)pt"')
TEXT_WIDTH_CM = 16.8  # A4 (21 cm) less the template's 2.1 cm side margins
Comb = Combinability | None
Statuses = dict[tuple[str, str], cells.CodeStatus] | None


def build_pdf(tables: list[ResultsTable], comb: Comb, out_dir: str | Path, statuses: Statuses = None) -> Path:
    """Typeset `out_dir/report.pdf` from checked tables (and the combinability matrix, if any).

    The sources go to a temp folder inside out_dir, removed afterwards; the PDF replaces the old one
    only when Typst succeeded, else ValueError with Typst's first error line.
    """
    out_dir = Path(out_dir)
    pdf = out_dir / "report.pdf"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-pdf-"))
    try:
        source = write_sources(tables, comb, out_dir, work, statuses)
        try:
            # ignore_system_fonts: only the fonts in the typst wheel, so every machine typesets alike.
            data = typst.compile(str(source), root=str(out_dir), ignore_system_fonts=True,
                                 timestamp=_timestamp(tables, comb))
        except typst.TypstError as exc:
            first = next((ln.strip() for ln in str(exc.message).splitlines() if ln.strip()), "unknown error")
            raise ValueError(f"{pdf}: typst could not compile the report: {first}") from None
        atomic_write(pdf, data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return pdf


def write_sources(tables: list[ResultsTable], comb: Comb, out_dir: Path, work: Path,
                  statuses: Statuses = None) -> Path:
    """Write report.typ (the template), report-data.json and report.bib into `work`; return report.typ.

    `work` must lie inside `out_dir`, the root Typst compiles with (so it may read /figures/...).
    """
    bib, keys = bibliography(tables, comb)
    data = report_data(tables, comb, Path(out_dir), keys, statuses)
    data["bibliography"] = bool(bib)
    shutil.copyfile(TEMPLATE, work / "report.typ")
    (work / "report-data.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    (work / "report.bib").write_text(bib, encoding="utf-8")
    return work / "report.typ"


def bib_key(bibtex: str | None) -> str | None:
    """The cite key of a BibTeX entry: what follows `@type{` up to the comma."""
    found = _BIB_KEY.search(bibtex or "")
    return found.group(1) if found else None


def bibliography(tables: list[ResultsTable], comb: Comb) -> tuple[str, dict[str, str]]:
    """BibTeX text for every paper of the tables and of the matrix's singles, and each paper's cite key.

    A table's card summary carries its BibTeX; a paper id without one (a `run-<recipe>` table, or a
    matrix single whose paper has no table here) falls back to the paper registry (`_registry_bibtex`).
    """
    carried = {t.paper: t.card.bibtex for t in tables if t.card.bibtex}
    papers = {t.paper for t in tables} | {s.paper for s in (comb.singles.values() if comb else ()) if s.paper}
    entries, keys = [], {}
    for paper in sorted(papers):
        bibtex = carried.get(paper) or _registry_bibtex(paper)
        key = bib_key(bibtex)
        if key and key not in keys.values():
            entries.append(bibtex.strip())
            keys[paper] = key
    return ("\n\n".join(entries) + "\n") if entries else "", keys


def _registry_bibtex(paper: str) -> str | None:
    """The ONE place the report reaches for a paper's card: tables committed before the card summary
    carried `bibtex` (schema version 1 without it) get it from the paper registry. It is imported here,
    lazily, because it loads the plug-ins (reproductions, hence torch); tables written since need it not.
    None for an id that is not a registered paper (a `run-<recipe>` table) or when no registry is available."""
    if paper.startswith("run-"):
        return None
    try:
        from harness.papers import get_paper

        return get_paper(paper).CARD.bibtex or None
    except (ImportError, ValueError, AttributeError):
        return None


def _timestamp(tables: list[ResultsTable], comb: Comb) -> dt.datetime | None:
    """The newest `created` of the inputs, so the PDF's date (and bytes) follow the data, not the clock."""
    stamps = []
    for created in [t.created for t in tables] + ([comb.created] if comb else []):
        try:
            stamp = dt.datetime.fromisoformat(str(created))
        except ValueError:
            continue
        stamps.append(stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC))
    return max(stamps) if stamps else None


def _table(columns: list[str], widths: list[float], rows: list[list[str]], fills: list[str | None] | None = None,
           caption: str | None = None) -> dict[str, Any]:
    """A table for the template's `tbl`: every cell a string, widths in fr units, a fill class per row."""
    if any(len(r) != len(columns) for r in rows) or len(widths) != len(columns):
        raise ValueError(f"table {caption or columns}: every row needs {len(columns)} cells")
    return {"columns": columns, "widths": widths, "rows": [[str(c) for c in r] for r in rows],
            "fills": fills, "caption": caption}


def _figure(out_dir: Path, name: str, caption: str, max_height_cm: float = 9.5) -> dict[str, Any] | None:
    """A PNG or SVG at out_dir/`name` (e.g. figures/pareto.svg) for the template, or None when absent.

    Its width follows the image's aspect ratio (a PNG's IHDR width and height, bytes 16-24; an SVG's
    width and height attributes) so that it is at most `max_height_cm` tall and 90% of the text width wide.
    """
    try:
        with (out_dir / name).open("rb") as fh:
            head = fh.read(2048)
    except OSError:
        return None
    width_cm = 0.9 * TEXT_WIDTH_CM
    w, h = 0.0, 0.0
    if head.startswith(_PNG_SIGNATURE) and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
    elif svg := _SVG_SIZE.search(head):
        w, h = float(svg["w"]), float(svg["h"])
    if w and h:
        width_cm = min(width_cm, max_height_cm * w / h)
    return {"path": f"/{name}", "width_cm": round(width_cm, 2), "caption": caption}


def _is_paper(table: ResultsTable) -> bool:
    """A results table of a surveyed paper (its card names authors), not an `effitrain run` of one recipe."""
    return bool(table.card.authors)


def _techniques(tables: list[ResultsTable], comb: Comb) -> list[str]:
    """Every technique name any arm used or the matrix composed, sorted."""
    names = {n for t in tables for a in t.arms.values() for n in a.techniques}
    return sorted(names | set(comb.techniques if comb else []))


# ---------------------------------------------------------------- front matter

def _abstract(tables: list[ResultsTable], comb: Comb) -> str:
    """The abstract, generated from the data: papers, claims and verdicts, techniques, speedups, pairs."""
    if not tables:
        return ("No results tables were found, so this report is empty. Produce them with "
                "`effitrain reproduce PAPER --scale cpu`, then run `effitrain report`.")
    n = cells.plural
    papers = sorted({t.paper for t in tables if _is_paper(t)})
    runs = sorted({t.paper for t in tables if not _is_paper(t)})
    claims = {(t.paper, c.id or c.text) for t in tables for c in t.claims}
    verdicts = [cells.claim_cells(c, t).verdict_key for t in tables for c in t.claims]
    speed = [cells.speedup_verdict_key(t, a) for t in tables for a in t.speedups]
    techniques = _techniques(tables, comb)
    scales = sorted({t.scale for t in tables}, key=lambda s: cells.SCALE_ORDER.get(s, 99))
    text = (f"This report reproduces {n(len(papers), 'paper')} on cheaper neural-network training"
            + (f" and adds {n(len(runs), 'single-technique run')} on a shared recipe" if runs else "")
            + f", from {n(len(tables), 'results table')} at the {', '.join(scales)} scale. "
            f"The papers' cards list {n(len(claims), 'claim')}; judged in every table, the "
            f"{n(len(verdicts), 'verdict')}: {cells.counts(verdicts, cells.CLAIM_VERDICT_ORDER) or 'none'}. "
            f"{n(len(techniques), 'technique')} ({', '.join(techniques) or 'none'}) were measured against a "
            f"baseline under a fixed budget and the same seeds; the {n(len(speed), 'wall-clock speedup verdict')}: "
            f"{cells.counts(speed, cells.SPEEDUP_VERDICT_ORDER) or 'none'}. ")
    if comb is None:
        return text + f"No combinability matrix was built (`{cells.MATRIX_HOWTO}` builds it)."
    pairs = [p.verdict for p in comb.pairs]
    return text + (f"The combinability matrix composes {n(len(pairs), 'pair')} of "
                   f"{n(len(comb.techniques), 'technique')} on the {comb.recipe} recipe: "
                   f"{cells.counts(pairs, list(cells.PAIR_VERDICT_CLASS))}.")


def _front_matter(tables: list[ResultsTable], comb: Comb) -> dict[str, str]:
    """Title page and abstract: date of the newest input, the git commits the tables came from."""
    stamp = _timestamp(tables, comb)
    provs = [(t.created, t.provenance) for t in tables] + ([(comb.created, comb.provenance)] if comb else [])
    commits = []
    for _, p in sorted(provs, key=lambda cp: str(cp[0]), reverse=True):
        short = str(p.git_commit)[:10] + ("+dirty" if p.git_dirty else "")
        if short not in commits:
            commits.append(short)
    return {"title": TITLE, "subtitle": "generated by effitrain from its results tables",
            "date": f"data as of {stamp.date().isoformat()}" if stamp else "no data",
            "commits": "git commits of the tables, newest first: " + (", ".join(commits) or "none"),
            "abstract": _abstract(tables, comb)}


_SCALES = ("Every paper is a reproduction module with a card (citation, data, models and the claimed numbers), one "
           "or more techniques and recipes at three scales: smoke (synthetic data, for tests), cpu (real MNIST "
           "or CIFAR-10 on a small CPU, showing the direction of a claim) and paper (the paper's own setting, for "
           "a GPU). One runner trains every (arm, seed) under a fixed budget; a results table holds everything this "
           "report shows, including the protocol it was measured under.")


def report_data(tables: list[ResultsTable], comb: Comb, out_dir: Path, keys: dict[str, str],
                statuses: Statuses = None) -> dict[str, Any]:
    """Everything the template shows, as strings and tables; `keys` maps paper id -> cite key, `statuses`
    (paper, variant) -> the table's code check (default: checked against this checkout)."""
    out_dir = Path(out_dir)
    statuses = statuses if statuses is not None else cells.code_statuses(tables, comb=comb)
    protocol = {"intro": cells.PROTOCOL_INTRO, "scales": _SCALES,
                "items": [{"title": title, "text": text} for title, text in cells.PROTOCOL]}
    return {**_front_matter(tables, comb), "protocol": protocol, "chapters": _chapters(tables, out_dir, keys, statuses),
            "tta": _tta_chapter(tables, out_dir),
            "combinability": _comb_chapter(comb, out_dir, statuses.get(cells.MATRIX_KEY)),
            "combinability_missing": ("No combinability matrix was found (combinability.json next to this "
                                      f"report). Produce it with `{cells.MATRIX_HOWTO}`, then run `effitrain report`."),
            "threats": _threats(tables, comb, out_dir, statuses), "appendix": _appendix(tables, comb, statuses),
            "appendix_intro": "Where every table's numbers came from: code version, software, machine, data "
                              "checksums and the command that produced it.", "bibliography": False}


# ---------------------------------------------------------------- chapters per technique family

def _family_title(key: str) -> str:
    """Readable chapter title of a card.family key."""
    return FAMILY_TITLES.get(key) or f"{key.replace('_', ' ').capitalize()} techniques"


def _chapters(tables: list[ResultsTable], out_dir: Path, keys: dict[str, str],
              statuses: dict[tuple[str, str], cells.CodeStatus]) -> list[dict[str, Any]]:
    """One chapter per technique family (known families in FAMILY_TITLES order), a section per paper."""
    families: dict[str, dict[str, list[ResultsTable]]] = {}
    for table in tables:  # already sorted by paper, then scale
        family = table.card.family or ("runs" if not _is_paper(table) else "other")
        families.setdefault(family, {}).setdefault(table.paper, []).append(table)
    order = [f for f in FAMILY_TITLES if f in families and f != "runs"]
    order += sorted(set(families) - set(FAMILY_TITLES)) + (["runs"] if "runs" in families else [])
    chapters = []
    for family in order:
        groups = families[family]
        titles = "; ".join(g[-1].card.title for g in groups.values())
        chapters.append({"title": _family_title(family),
                         "intro": f"This chapter covers {cells.plural(len(groups), 'reproduction')}: {titles}.",
                         "papers": [_paper_section(g, out_dir, keys.get(p), statuses) for p, g in groups.items()]})
    return chapters


def _byline(table: ResultsTable) -> str:
    """Authors. Venue, year. arXiv id."""
    card = table.card
    parts = [card.authors, ", ".join(str(x) for x in (card.venue, card.year) if x)]
    if card.arxiv:
        parts.append(f"arXiv:{card.arxiv}")
    return ". ".join(p for p in parts if p) + "." if any(parts) else "A run of one recipe, not a paper."


def _paper_section(group: list[ResultsTable], out_dir: Path, key: str | None,
                   statuses: dict[tuple[str, str], cells.CodeStatus]) -> dict[str, Any]:
    """A paper: method, its claims (from the newest table), then protocol, results and verdicts per variant."""
    card = group[-1].card
    return {"title": card.title, "byline": _byline(group[-1]), "cite": key, "summary": card.summary or "",
            "notes": card.notes or "", "claims": _claims_table(group[-1]),
            "variants": [_variant_block(t, out_dir, statuses.get(cells.table_key(t))) for t in group]}


def _claims_table(table: ResultsTable) -> dict[str, Any] | None:
    """What the paper claims: text, kind, metric and arm with its fidelity, claimed value (n.f. = not found),
    tolerance, source."""
    rows = []
    for c in (cells.claim_cells(claim, table) for claim in table.claims):
        claimed = c.claimed + (f" (paper baseline {c.paper_baseline})" if c.paper_baseline is not None else "")
        rows.append([c.text, c.kind, f"{c.metric} on {c.arm}", c.fidelity, claimed, c.tolerance, c.source])
    return _table(["claim", "kind", "metric on arm", "fidelity of the arm", "claimed", "tolerance", "source"],
                  [2.5, 1.1, 1.6, 1.3, 1.1, 0.95, 1.3], rows,
                  caption=f"Claims of {table.card.title}.") if rows else None


def _variant_block(table: ResultsTable, out_dir: Path, status: cells.CodeStatus | None = None) -> dict[str, Any]:
    """One results table: its marks and banners, protocol, per-arm results, the time-to-accuracy figure, the
    claim verdicts."""
    name, metric = variant(table), table.target.metric
    rows = [[k, v] for k, v in cells.protocol_rows(table, status)]
    rows += [["baseline arm", table.baseline_arm], ["command", table.command], ["created", table.created]]
    protocol = _table(["item", "value"], [1.3, 5], rows, caption=f"Protocol at {name}.")
    caption = (f"Time to {cells.metric_label(metric)} at {name}: the target metric against training "
               "seconds, a line per (arm, seed); the dashed line is the target.")
    mark = cells.status_mark(table, status)
    return {"name": name, "budget": table.budget,
            "heading": f"Protocol and results: {name}" + (f" [{mark}]" if mark and mark != "current" else ""),
            "banners": [{"kind": k, "title": title, "text": text}
                        for k, title, text in cells.status_banners(table, status)],
            "protocol": protocol, "results": _results_table(table), "epochs": _epochs_table(table),
            "figure": _figure(out_dir, f"figures/{table.paper}-{name}-tta.svg", caption),
            "verdicts": _verdicts_table(table), "verdict_line": cells.verdict_counts(table.claims, table)}


_COST_COLUMNS = {"flops": "FLOPs to target", "steps": "steps to target", "seconds": "time to target"}


def _results_table(table: ResultsTable) -> dict[str, Any]:
    """Per arm (baseline first): fidelity, costs to target and speedups with their verdicts, the leading cost
    first (FLOPs on a CPU table, wall-clock on a GPU one), success, test accuracy, theory."""
    rows = []
    for arm in cells.arm_order(table):
        c = cells.arm_cells(table, arm)
        runs = table.arms[arm].runs
        acc = cells.spread("test/acc", [r.final["test/acc"] for r in runs if r.final.get("test/acc") is not None])
        desc = table.arms[arm].description
        achieved = f"achieved: {c['achieved']}" if c["achieved"] else ""
        head = "\n".join(x for x in (arm, desc, f"fidelity: {c['fidelity']}", achieved) if x)
        speed = "\n".join(f"{label} {value}" + (f" ({verdict})" if verdict else "")
                          for label, value, verdict in c["speedups"]) or c["speedup"]
        rows.append([head, *(cell for _, cell in c["costs"]), speed, c["reached"], acc, c["theory"]])
    lead = "FLOPs" if cells.cost_first(table) else "wall-clock"
    return _table(["arm", *(_COST_COLUMNS[k] + ": median [min, max]" for k in cells.cost_order(table)),
                   f"speedup [interval] (verdict), {lead} first", "reached target", "test accuracy: median [min, max]",
                   "theoretical speedup (FLOPs per sample)"],
                  [1.9, 1.25, 1.1, 1.25, 2.4, 0.8, 1.3, 1.2], rows,
                  caption=f"Results at {variant(table)}; speedups against {table.baseline_arm} unless noted.")


def _epochs_table(table: ResultsTable) -> dict[str, Any] | None:
    """The cost epoch by epoch where an arm's model changed size (cells.epoch_rows); None otherwise."""
    rows = cells.epoch_rows(table)
    if not rows:
        return None
    return _table(cells.EPOCH_COLUMNS, [1.9, 0.8, 1.3, 1.4, 1.2, 1.3], rows,
                  caption=f"Cost per epoch at {variant(table)} (medians over seeds): the model changed size during "
                          "training, and each epoch is charged the FLOPs counted on the model as it then was.")


def _verdicts_table(table: ResultsTable) -> dict[str, Any] | None:
    """Each claim beside what this table measured, coloured by verdict."""
    claims = [cells.claim_cells(c, table) for c in table.claims]
    rows = [[c.text, c.kind, c.claimed, c.measured, c.verdict] for c in claims]
    return _table(["claim", "kind", "claimed", "measured [interval]", "verdict"], [3.0, 1.1, 1.0, 2.0, 1.5], rows,
                  [c.css or None for c in claims], caption=f"Claim verdicts at {variant(table)}.") if rows else None


# ---------------------------------------------------------------- time to accuracy and combinability

def _tta_row(table: ResultsTable, r: dict[str, Any]) -> list[str]:
    """A tta.csv row as the PDF's overview shows it: the speedups with their verdicts, the leading cost first."""
    parts = cells.speedup_parts(table, r["arm"])
    sp = "\n".join(f"{label} {value}" + (f" ({verdict})" if verdict else "") for label, value, verdict in parts
                   if value != "not recorded") or cells.speedup_summary(table, r["arm"])
    return [f"{r['paper']}\n{r['variant']}", r["arm"], cells.seconds(r["time_to_target_s"]),
            cells.seconds(r["baseline_time_to_target_s"]) if r["baseline"] else "—", sp,
            cells.share(r["success_rate"]), cells.number("test/acc", r["test_acc"]),
            cells.ratio(r["theoretical_speedup"])]


def _tta_chapter(tables: list[ResultsTable], out_dir: Path) -> dict[str, Any]:
    """All arms of all tables in one table (tta.csv's rows), and the accuracy-vs-time Pareto figure."""
    rows = [_tta_row(t, r) for t in tables for r in tta.rows([t])]
    return {"intro": "Every arm of every table: its median time to target beside its baseline's, the speedups "
                     "(FLOPs and steps first on CPU tables, wall-clock first on GPU tables) with their intervals and "
                     "verdicts, the share of seeds that reached the target, the median final test "
                     "accuracy, and the speedup the arm's FLOPs per sample would give if time followed FLOPs. "
                     "The same rows are in tta.csv.",
            "figure": _figure(out_dir, "figures/pareto.svg", "Median test accuracy against median training time per "
                              "arm, a panel per table; the red steps join the arms no other arm beats on both.",
                              max_height_cm=20) if tables else None,
            "table": _table(["table", "arm", "time to target (median)", "baseline's", "speedup [interval]",
                             "reached", "test accuracy", "theoretical"], [2.1, 1.5, 1.0, 1.0, 2.4, 0.8, 1.0, 0.9],
                            rows, caption="Time to accuracy, every arm.")}


_COMB_INTRO = ("Each pair of techniques is first checked against their declarations (declared conflicts, "
               "two owners of the number format or of the optimizer); a pair that composes is trained "
               "against the same baseline and seeds as its two single techniques. Speedups are medians over "
               "seeds of the per-seed ratio of baseline to technique cost to target (the matrix's main cost is "
               "named in its setting; wall-clock beside it is judged against the A/A timing noise floor), with "
               "the exact order-statistic interval of the median (under 5 seeds, the range and no verdict); accuracy "
               "changes are medians of per-seed differences of test accuracy against the baseline.")


def _comb_chapter(comb: Comb, out_dir: Path, status: cells.CodeStatus | None = None) -> dict[str, Any] | None:
    """The combinability matrix: stale/dirty notices, setting and protocol, heatmap, singles and pairs in its main
    cost, then the singles and pairs in the other (wall-clock beside FLOPs)."""
    if comb is None:
        return None
    facts = [[k, v] for k, v in cells.combinability_facts(comb, status) if k != "budget"]
    views = [comb] + ([comb.secondary] if comb.secondary is not None else [])
    return {
        "intro": _COMB_INTRO, "budget": f"{comb.scale} scale: {comb.budget}",
        "banners": [{"kind": k, "title": title, "text": text} for k, title, text in cells.matrix_banners(comb, status)],
        "facts": _table(["item", "value"], [1.3, 5], facts, caption="The setting every pair shares."),
        "figure": _figure(out_dir, "combinability.png", "Pair verdicts and interactions (drawn by effitrain matrix).",
                          max_height_cm=14),
        "views": [_comb_view(comb, v) for v in views],
    }


def _comb_view(comb: Comb, view: Any) -> dict[str, Any]:
    singles, pairs = cells.combinability_rows(comb, view)
    cost = cells.cost_words(view.cost)
    return {
        "title": f"In {cost}",
        "singles": _table(["technique", "paper", "speedup [interval]", "verdict", "reached", "test accuracy change"],
                          [1.6, 2.0, 1.4, 0.9, 0.7, 1.6],
                          [[s["technique"], s["paper"], s["speedup"], s["verdict"], s["success"],
                            s["dacc"] + (f"\n{s['error']}" if s["error"] else "")] for s in singles],
                          caption=f"Single techniques against the baseline, in {cost}."),
        "pairs": _table(["pair", "verdict", "reason", "S_A", "S_B", "S_AB", "interaction", "accuracy change"],
                        [1.5, 1.35, 2.8, 1.1, 1.1, 1.1, 1.1, 1.6],
                        [[p["pair"], p["verdict"], p["reason"], p["s_a"], p["s_b"], p["s_ab"], p["interaction"],
                          p["dacc"]] for p in pairs], [p["class"] or None for p in pairs],
                        caption=f"Every pair in {cost}: verdict, reason, speedups [intervals], interaction "
                                "S_AB / (S_A · S_B) and the pair's accuracy change against the sum of the singles'."),
    }


# ---------------------------------------------------------------- threats to validity

def _threats(tables: list[ResultsTable], comb: Comb, out_dir: Path,
             statuses: dict[tuple[str, str], cells.CodeStatus]) -> list[dict[str, str]]:
    """Threats to validity, with the numbers (data, scales, seeds, hardware) taken from the inputs."""
    named = [(f"{t.paper}/{variant(t)}", t) for t in tables]
    cifar = [n for n, t in named if any("cifar" in k.lower() for k in t.provenance.dataset_md5)]
    return [{"title": "JPEG-compressed CIFAR-10", "text": _cifar_text(cifar, out_dir)},
            {"title": "CPU scale", "text": _scale_text(tables)},
            {"title": "Number of seeds", "text": _seeds_text(tables, comb)},
            {"title": "Hardware", "text": _hardware_text(tables, comb)},
            {"title": "Timing noise on a shared machine", "text": _noise_text(tables)},
            {"title": "Stale and dirty tables", "text": _stale_text(tables, comb, statuses)}]


def _cifar_text(cifar_tables: list[str], out_dir: Path) -> str:
    """The offline CIFAR-10 is a JPEG quality-75 copy; say which tables used it and what the copy is."""
    meta = ""
    try:
        info = json.loads((out_dir / "data" / "cifar10-jpeg75.json").read_text(encoding="utf-8"))
        md5 = ", ".join(f"{k} {v}" for k, v in sorted(info.get("md5", {}).items()))
        meta = (f" Its description (data/cifar10-jpeg75.json): {info['train'][0]} training and {info['test'][0]} "
                f"test images of {'x'.join(str(x) for x in info['train'][1:])}" + (f"; md5 {md5}." if md5 else "."))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass  # the description is optional: the threat stands without it
    used = ", ".join(cifar_tables) if cifar_tables else "none of the tables in this report"
    return ("The only CIFAR-10 available offline is a copy re-encoded as JPEG at quality 75, not the original "
            "lossless images. JPEG artefacts change the input distribution, so CIFAR-10 accuracies here are not "
            "comparable one to one with the papers' numbers; the direction of an effect is what they can show. "
            f"Tables that used it: {used}.{meta}")


def _scale_text(tables: list[ResultsTable]) -> str:
    """How many tables ran at cpu scale, and what that scale gives up."""
    scales = cells.counts([f"at {t.scale} scale" for t in tables],
                          [f"at {s} scale" for s in cells.SCALE_ORDER]) or "no tables"
    return (f"Results tables: {scales}. The cpu scale uses small models, training subsets and short budgets "
            "(each table's budget line says which), so absolute accuracies fall short of the papers' and a "
            "speedup measured on a small CPU model need not carry over to a large GPU model. Float16 has no fast "
            "path on the CPU, so mixed-precision arms there measure bfloat16 or an emulation of the number "
            "format, not tensor-core throughput; the theoretical speedup from FLOPs is shown beside every "
            "realised one for that reason.")


def _seeds_text(tables: list[ResultsTable], comb: Comb) -> str:
    """Seeds per table: under the protocol's minimum there are ranges and no verdicts."""
    per_table = cells.counts([f"table(s) with {len(t.seeds)} seed(s)" for t in tables], []) or "no tables"
    few = [f"{t.paper}/{variant(t)}" for t in tables if cells.too_few_seeds(t)]
    matrix = f" The combinability matrix used {len(comb.seeds)} seed(s)." if comb else ""
    return (f"Seeds: {per_table}.{matrix} Arms share seeds and are compared seed by seed; the interval of a median "
            f"over n seeds is the exact order-statistic one, so with {cells.MIN_SEEDS} seeds it is the range of "
            f"the seeds (93.8% coverage) and with fewer no verdict is given. Tables under {cells.MIN_SEEDS} seeds, "
            f"shown as ranges without verdicts: {', '.join(few) or 'none'}.")


def _machine(p: Provenance) -> str:
    threads = f" and {p.torch_threads} torch thread(s)" if p.torch_threads else ""
    return f"{p.device} with {p.cpu_count} CPU(s){threads}"


def _hardware_text(tables: list[ResultsTable], comb: Comb) -> str:
    """The machines the tables ran on (device, CPU count, torch threads), from provenance."""
    provs = [t.provenance for t in tables] + ([comb.provenance] if comb else [])
    machines = cells.counts([_machine(p) for p in provs], [])
    return (f"Machines, with the number of tables from each: {machines or 'none recorded'}. Wall-clock speedups "
            "depend on the machine: memory bandwidth, vector units and the number format's hardware support decide "
            "whether saved FLOPs become saved seconds.")


def _noise_text(tables: list[ResultsTable]) -> str:
    """Timing noise: shared machine, the A/A noise floors, evaluation share; numbers from the runs."""
    shares = [r.eval_share for t in tables for a in t.arms.values() for r in a.runs if r.eval_share is not None]
    share = (f" Evaluation took a median {100 * statistics.median(shares):.1f}% of wall time (the training clock "
             "excludes it)." if shares else "")
    floors = [f"{t.paper}/{variant(t)} {t.protocol.noise_floor:.2f}×" for t in tables
              if t.protocol is not None and t.protocol.noise_floor is not None]
    floor = (f" The A/A noise floors (largest timing ratio between a baseline and its replicate): {', '.join(floors)}."
             if floors else " No table here recorded an A/A noise floor.")
    return ("The tables were timed on a shared machine, where other processes compete for the same cores and "
            "memory bandwidth; the training clock excludes evaluation and warm-up but not interference. Arms run "
            "interleaved within each seed, and a wall-clock speedup inside the table's A/A noise floor is "
            "inconclusive (timing noise); the FLOPs and steps to target do not depend on the machine, which is why "
            "CPU tables lead with them." + floor + share)


def _stale_text(tables: list[ResultsTable], comb: Comb, statuses: dict[tuple[str, str], cells.CodeStatus]) -> str:
    """Which tables (and whether the matrix) ran code that has changed since, came from uncommitted code, or
    record no code."""
    def named(pick: Any) -> str:
        return ", ".join(f"{t.paper}/{variant(t)}" for t in tables if pick(t, statuses.get(cells.table_key(t))))
    stale = named(lambda t, s: s is not None and s.stale)
    dirty = named(lambda t, s: bool(t.provenance.git_dirty))
    unrecorded = named(lambda t, s: s is not None and not s.recorded)
    matrix = ""
    if comb is not None:
        marks = [title.lower() for _, title, _ in cells.matrix_banners(comb, statuses.get(cells.MATRIX_KEY))]
        matrix = " The combinability matrix: " + ("; ".join(marks) if marks else "current and clean") + "."
    return ("Each table lists the source files its runs executed with a hash of each, and the report hashes them "
            "again. Stale tables (their code has changed since): " + (stale or "none") + ". Tables made from "
            "uncommitted code, included with --allow-dirty: " + (dirty or "none") + ". Tables that record no "
            "code, so their staleness cannot be checked: " + (unrecorded or "none") + "." + matrix)


# ---------------------------------------------------------------- appendix

def _appendix(tables: list[ResultsTable], comb: Comb,
              statuses: dict[tuple[str, str], cells.CodeStatus]) -> list[dict[str, Any]]:
    """Provenance and environment of every results file (and the combinability matrix), marked stale or dirty."""
    sections = []
    for t in tables:
        status = statuses.get(cells.table_key(t))
        mark = cells.status_mark(t, status)
        sections.append({"title": f"{t.paper}/{variant(t)}.json" + (f" [{mark}]" if mark and mark != "current" else ""),
                         "table": _provenance(t.provenance, t.command, t.created, status)})
    if comb is not None:
        status = statuses.get(cells.MATRIX_KEY)
        marks = "; ".join(title.lower() for kind, title, _ in cells.matrix_banners(comb, status))
        sections.append({"title": "combinability.json" + (f" [{marks}]" if marks else ""),
                         "table": _provenance(comb.provenance, comb.command, comb.created, status)})
    return [{"title": "Provenance and environment", "sections": sections}]


def _provenance(prov: Provenance, command: str, created: str, status: cells.CodeStatus | None = None) -> dict[str, Any]:
    """Code version and its check, software, machine, data checksums, command and time of one input file."""
    rows = []
    for item, value in cells.provenance_rows(prov, created, command, python=True, status=status):
        if isinstance(value, list):  # the dataset checksums, a line per file
            value = "\n".join(f"{k}: {v}" for k, v in value) or "—"
        rows.append([item, value])
    return _table(["item", "value"], [1, 4], rows)
