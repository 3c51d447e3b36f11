"""The thesis-style PDF: `reports/report.pdf`, typeset with Typst.

A static template, `harness/templates/report.typ`, reads `report-data.json`, which this module
builds from the same results files (and `combinability.json`) as the HTML site, and `report.bib`,
written from the paper cards' BibTeX. The template places every string as text — a value read
with Typst's `json()` is never parsed as markup — so card and results text needs no escaping.

The three files go to a temp folder inside the output folder, Typst compiles them with the output
folder as its root (so `/figures/...` are the site's PNGs), and the PDF replaces the old one with
`os.replace`: a failed compile leaves the previous PDF and raises ValueError with Typst's first
error line. As in harness.report, the results files carry everything shown; only the bibliography
needs the cards (`reproductions.PAPERS`), which results files do not copy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import statistics
import struct
import tempfile
from pathlib import Path
from typing import Any

import typst

from harness import report, tta

__all__ = ["build_pdf", "write_sources", "report_data", "bibliography", "bib_key", "FAMILY_TITLES", "TITLE"]

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
TEXT_WIDTH_CM = 16.8  # A4 (21 cm) less the template's 2.1 cm side margins
MATRIX_HOWTO = report.MATRIX_HOWTO


def build_pdf(results: list[dict[str, Any]], comb: dict[str, Any] | None, out_dir: str | Path) -> Path:
    """Typeset `out_dir/report.pdf` from checked results (and the combinability matrix, if any).

    The sources go to a temp folder inside out_dir, removed afterwards; the PDF replaces the old one
    only when Typst succeeded, else ValueError with Typst's first error line.
    """
    out_dir = Path(out_dir)
    pdf = out_dir / "report.pdf"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-pdf-"))
    try:
        source = write_sources(results, comb, out_dir, work)
        try:
            # ignore_system_fonts: only the fonts in the typst wheel, so every machine typesets alike.
            typst.compile(str(source), output=str(work / "report.pdf"), root=str(out_dir),
                          ignore_system_fonts=True, timestamp=_timestamp(results, comb))
        except typst.TypstError as exc:
            first = next((ln.strip() for ln in str(exc.message).splitlines() if ln.strip()), "unknown error")
            raise ValueError(f"{pdf}: typst could not compile the report: {first}") from None
        os.chmod(work / "report.pdf", 0o644)
        os.replace(work / "report.pdf", pdf)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return pdf


def write_sources(results: list[dict[str, Any]], comb: dict[str, Any] | None, out_dir: Path, work: Path) -> Path:
    """Write report.typ (the template), report-data.json and report.bib into `work`; return report.typ.

    `work` must lie inside `out_dir`, the root Typst compiles with (so it may read /figures/...).
    """
    papers = {r["paper"] for r in results} | {s["paper"] for s in (comb or {}).get("singles", {}).values()
                                              if s.get("paper")}
    bib, keys = bibliography(sorted(papers))
    data = report_data(results, comb, Path(out_dir), keys)
    data["bibliography"] = bool(bib)
    shutil.copyfile(TEMPLATE, work / "report.typ")
    (work / "report-data.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    (work / "report.bib").write_text(bib, encoding="utf-8")
    return work / "report.typ"


def bib_key(bibtex: str) -> str | None:
    """The cite key of a BibTeX entry: what follows `@type{` up to the comma."""
    found = _BIB_KEY.search(bibtex or "")
    return found.group(1) if found else None


def bibliography(papers: list[str]) -> tuple[str, dict[str, str]]:
    """BibTeX text for the papers that have a reproduction module, and each paper's cite key.

    A paper id without a module (a `run-<recipe>` table) or without BibTeX gets no entry.
    """
    from reproductions import PAPERS  # registers techniques; only the bibliography needs the cards

    entries, keys = [], {}
    for paper in papers:
        card = getattr(PAPERS.get(paper), "CARD", None)
        key = bib_key(card.bibtex) if card is not None else None
        if key and key not in keys.values():
            entries.append(card.bibtex.strip())
            keys[paper] = key
    return ("\n\n".join(entries) + "\n") if entries else "", keys


def _timestamp(results: list[dict[str, Any]], comb: dict[str, Any] | None) -> dt.datetime | None:
    """The newest `created` of the inputs, so the PDF's date (and bytes) follow the data, not the clock."""
    stamps = []
    for created in [r["created"] for r in results] + ([comb["created"]] if comb else []):
        try:
            stamp = dt.datetime.fromisoformat(str(created))
        except ValueError:
            continue
        stamps.append(stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc))
    return max(stamps) if stamps else None


def _table(columns: list[str], widths: list[float], rows: list[list[str]], fills: list[str | None] | None = None,
           caption: str | None = None) -> dict[str, Any]:
    """A table for the template's `tbl`: every cell a string, widths in fr units, a fill class per row."""
    if any(len(r) != len(columns) for r in rows) or len(widths) != len(columns):
        raise ValueError(f"table {caption or columns}: every row needs {len(columns)} cells")
    return {"columns": columns, "widths": widths, "rows": [[str(c) for c in r] for r in rows],
            "fills": fills, "caption": caption}


def _figure(out_dir: Path, name: str, caption: str, max_height_cm: float = 9.5) -> dict[str, Any] | None:
    """A PNG at out_dir/`name` (e.g. figures/pareto.png) for the template, or None when absent.

    Its width follows the PNG's aspect ratio (IHDR width and height, bytes 16-24 of the file) so
    that it is at most `max_height_cm` tall and 90% of the text width wide.
    """
    path = out_dir / name
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError:
        return None
    width_cm = 0.9 * TEXT_WIDTH_CM
    if head.startswith(_PNG_SIGNATURE) and len(head) == 24:
        w_px, h_px = struct.unpack(">II", head[16:24])
        if w_px and h_px:
            width_cm = min(width_cm, max_height_cm * w_px / h_px)
    return {"path": f"/{name}", "width_cm": round(width_cm, 2), "caption": caption}


def _is_paper(res: dict[str, Any]) -> bool:
    """A results table of a surveyed paper (its card names authors), not a `effitrain run` of one recipe."""
    return bool(res["card"].get("authors"))


def _counts(values: list[str], order: list[str]) -> str:
    """'3 reproduced, 1 inconclusive': counts in a fixed order, unknown values after."""
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    keys = [k for k in order if k in counts] + sorted(set(counts) - set(order))
    return ", ".join(f"{counts[k]} {k}" for k in keys)


def _techniques(results: list[dict[str, Any]], comb: dict[str, Any] | None) -> list[str]:
    """Every technique name any arm used or the matrix composed, sorted."""
    names = {t for r in results for a in r["arms"].values() for t in a.get("techniques", [])}
    return sorted(names | set((comb or {}).get("techniques", [])))


def _n(count: int, noun: str) -> str:
    """'1 paper', '3 papers'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _abstract(results: list[dict[str, Any]], comb: dict[str, Any] | None) -> str:
    """The abstract, generated from the data: papers, claims and verdicts, techniques, speedups, pairs."""
    if not results:
        return ("No results tables were found, so this report is empty. Produce them with "
                "`effitrain reproduce PAPER --scale cpu`, then run `effitrain report`.")
    papers = sorted({r["paper"] for r in results if _is_paper(r)})
    runs = sorted({r["paper"] for r in results if not _is_paper(r)})
    claims = {(r["paper"], c.get("id") or c["text"]) for r in results for c in r["claims"]}
    verdicts = [c["verdict"] for r in results for c in r["claims"]]
    speed = [sp["verdict"] for r in results for sp in r["speedups"].values() if sp.get("verdict")]
    techniques = _techniques(results, comb)
    scales = sorted({r["scale"] for r in results}, key=lambda s: report.SCALE_ORDER.get(s, 99))
    text = (f"This report reproduces {_n(len(papers), 'paper')} on cheaper neural-network training"
            + (f" and adds {_n(len(runs), 'single-technique run')} on a shared recipe" if runs else "")
            + f", from {_n(len(results), 'results table')} at the {', '.join(scales)} scale. "
            f"The papers' cards list {_n(len(claims), 'claim')}; judged in every table, the "
            f"{_n(len(verdicts), 'verdict')}: {_counts(verdicts, list(report._VERDICT_CLASS)) or 'none'}. "
            f"{_n(len(techniques), 'technique')} ({', '.join(techniques) or 'none'}) were measured against a "
            f"baseline under a fixed budget and the same seeds; the {_n(len(speed), 'speedup verdict')}: "
            f"{_counts(speed, ['faster', 'slower', 'inconclusive']) or 'none'}. ")
    if comb is None:
        return text + f"No combinability matrix was built (`{MATRIX_HOWTO}` builds it)."
    pairs = [p["verdict"] for p in comb["pairs"]]
    return text + (f"The combinability matrix composes {_n(len(pairs), 'pair')} of "
                   f"{_n(len(comb['techniques']), 'technique')} on the {comb['recipe']} recipe: "
                   f"{_counts(pairs, list(report.PAIR_VERDICT_CLASS))}.")


def _front_matter(results: list[dict[str, Any]], comb: dict[str, Any] | None) -> dict[str, str]:
    """Title page and abstract: date of the newest input, the git commits the tables came from."""
    stamp = _timestamp(results, comb)
    provs = [(r["created"], r["provenance"]) for r in results] + ([(comb["created"], comb["provenance"])] if comb else [])
    commits = []
    for _, p in sorted(provs, key=lambda cp: str(cp[0]), reverse=True):
        short = str(p["git_commit"])[:10] + ("+dirty" if p["git_dirty"] else "")
        if short not in commits:
            commits.append(short)
    return {"title": TITLE, "subtitle": "generated by effitrain from its results tables",
            "date": f"data as of {stamp.date().isoformat()}" if stamp else "no data",
            "commits": "git commits of the tables, newest first: " + (", ".join(commits) or "none"),
            "abstract": _abstract(results, comb)}


def report_data(results: list[dict[str, Any]], comb: dict[str, Any] | None, out_dir: Path,
                keys: dict[str, str]) -> dict[str, Any]:
    """Everything the template shows, as strings and tables; `keys` maps paper id -> cite key."""
    return {**_front_matter(results, comb), "chapters": _chapters(results, Path(out_dir), keys),
            "tta": _tta_chapter(results, Path(out_dir)), "combinability": _comb_chapter(comb, Path(out_dir)),
            "combinability_missing": ("No combinability matrix was found (combinability.json next to this "
                                      f"report). Produce it with `{MATRIX_HOWTO}`, then run `effitrain report`."),
            "threats": _threats(results, comb, Path(out_dir)), "appendix": _appendix(results, comb),
            "appendix_intro": "Where every table's numbers came from: code version, software, machine, data "
                              "checksums and the command that produced it.", "bibliography": False}


def _family_title(key: str) -> str:
    """Readable chapter title of a card.family key."""
    return FAMILY_TITLES.get(key) or f"{key.replace('_', ' ').capitalize()} techniques"


def _chapters(results: list[dict[str, Any]], out_dir: Path, keys: dict[str, str]) -> list[dict[str, Any]]:
    """One chapter per technique family (known families in FAMILY_TITLES order), a section per paper."""
    families: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for res in results:  # already sorted by paper, then scale
        family = res["card"].get("family") or ("runs" if not _is_paper(res) else "other")
        families.setdefault(family, {}).setdefault(res["paper"], []).append(res)
    order = [f for f in FAMILY_TITLES if f in families and f != "runs"]
    order += sorted(set(families) - set(FAMILY_TITLES)) + (["runs"] if "runs" in families else [])
    chapters = []
    for family in order:
        groups = families[family]
        titles = "; ".join(g[-1]["card"]["title"] for g in groups.values())
        chapters.append({"title": _family_title(family),
                         "intro": f"This chapter covers {_n(len(groups), 'reproduction')}: {titles}.",
                         "papers": [_paper_section(g, out_dir, keys.get(p)) for p, g in groups.items()]})
    return chapters


def _byline(card: dict[str, Any]) -> str:
    """Authors. Venue, year. arXiv id."""
    parts = [card.get("authors"), ", ".join(str(x) for x in (card.get("venue"), card.get("year")) if x)]
    if card.get("arxiv"):
        parts.append(f"arXiv:{card['arxiv']}")
    return ". ".join(p for p in parts if p) + "." if any(parts) else "A run of one recipe, not a paper."


def _paper_section(group: list[dict[str, Any]], out_dir: Path, key: str | None) -> dict[str, Any]:
    """A paper: method, its claims (from the newest table), then protocol, results and verdicts per variant."""
    card = group[-1]["card"]
    return {"title": card["title"], "byline": _byline(card), "cite": key,
            "summary": card.get("summary") or "", "notes": card.get("notes") or "",
            "claims": _claims_table(group[-1]), "variants": [_variant_block(r, out_dir) for r in group]}


def _claims_table(res: dict[str, Any]) -> dict[str, Any] | None:
    """What the paper claims: text, metric and arm, claimed value (n.f. = not found), tolerance, source."""
    rows = []
    for c in res["claims"]:
        m = c["metric"]
        claimed = "n.f." if c["claimed"] is None else report._fmt(m, c["claimed"])
        if c.get("paper_baseline") is not None:
            claimed += f" (paper baseline {report._fmt(m, c['paper_baseline'])})"
        arm = c["arm"] + (f" − {c['minus_arm']}" if c.get("minus_arm") else "")
        tol = "—" if c["tolerance"] is None else "±" + report._fmt(m, c["tolerance"])
        rows.append([c["text"], f"{m} on {arm}", claimed, tol, c["source"]])
    return _table(["claim", "metric on arm", "claimed", "tolerance", "source"], [3.2, 1.8, 1.3, 0.8, 1.5], rows,
                  caption=f"Claims of {res['card']['title']}.") if rows else None


def _variant_block(res: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """One results table: protocol, per-arm results, the time-to-accuracy figure, the claim verdicts."""
    t, name = res["target"], report.variant(res)
    target = f"{t['metric']} {'≥' if t['mode'] == 'max' else '≤'} {report._fmt(t['metric'], t['value'])}"
    protocol = _table(["item", "value"], [1, 5], [
        ["seeds", ", ".join(str(s) for s in res["seeds"]) + f" ({len(res['seeds'])})"],
        ["target", target], ["baseline arm", res["baseline_arm"]], ["command", res["command"]],
        ["created", res["created"]]])
    caption = (f"Time to {report._metric_label(t['metric'])} at {name}: the target metric against training "
               "seconds, a line per (arm, seed); the dashed line is the target.")
    verdicts = [c["verdict"] for c in res["claims"]]
    return {"name": name, "heading": f"Protocol and results: {name}", "budget": res["budget"],
            "protocol": protocol, "results": _results_table(res),
            "figure": _figure(out_dir, f"figures/{res['paper']}-{name}-tta.png", caption),
            "verdicts": _verdicts_table(res), "verdict_line": _counts(verdicts, list(report._VERDICT_CLASS))}


def _results_table(res: dict[str, Any]) -> dict[str, Any]:
    """Per arm (baseline first): time to target, success, speedup and verdict, test accuracy, theory."""
    rows = []
    for arm in report._arm_order(res):
        c = report.arm_cells(res, arm)
        runs = res["arms"][arm]["runs"]
        acc = report._spread("test/acc", [r["final"]["test/acc"] for r in runs if r["final"].get("test/acc") is not None])
        desc = res["arms"][arm].get("description", "")
        rows.append([f"{arm}\n{desc}" if desc else arm, c["tta"], c["reached"], c["speedup"],
                     c["verdict"] or "—", acc, c["theory"]])
    return _table(["arm", "time to target: median [min, max]", "reached target", "speedup [interval]",
                   "speedup verdict", "test accuracy: median [min, max]", "theoretical speedup (FLOPs per sample)"],
                  [2.2, 1.6, 0.9, 1.5, 1.0, 1.6, 1.5], rows,
                  caption=f"Results at {report.variant(res)}; speedups against {res['baseline_arm']} unless noted.")


def _verdicts_table(res: dict[str, Any]) -> dict[str, Any] | None:
    """Each claim beside what this table measured, coloured by verdict."""
    rows, fills = [], []
    for c in res["claims"]:
        m = c["metric"]
        claimed = "n.f." if c["claimed"] is None else report._fmt(m, c["claimed"])
        rows.append([c["text"], claimed, report._fmt_ci(m, c["measured"], c["low"], c["high"]), c["verdict"]])
        fills.append(report._VERDICT_CLASS.get(c["verdict"]))
    return _table(["claim", "claimed", "measured [interval]", "verdict"], [3.5, 1.0, 2.0, 1.3], rows, fills,
                  caption=f"Claim verdicts at {report.variant(res)}.") if rows else None


def _tta_chapter(results: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """All arms of all tables in one table (tta.csv's rows), and the accuracy-vs-time Pareto figure."""
    rows = []
    for r in tta.rows(results, report.variant):
        sp = report._fmt_speedup({"speedup": r["speedup"], "low": r["speedup_low"], "high": r["speedup_high"],
                                  "verdict": r["speedup_verdict"]}) if r["baseline"] else "baseline"
        rows.append([f"{r['paper']}\n{r['variant']}", r["arm"], _secs(r["time_to_target_s"]),
                     _secs(r["baseline_time_to_target_s"]) if r["baseline"] else "—",
                     sp + (f"\n{r['speedup_verdict']}" if r["speedup_verdict"] else ""),
                     "—" if r["success_rate"] is None else f"{100 * r['success_rate']:.0f}%",
                     report._fmt("test/acc", r["test_acc"]), report._ratio(r["theoretical_speedup"])])
    return {"intro": "Every arm of every table: its median time to target beside its baseline's, the speedup with "
                     "its interval and verdict, the share of seeds that reached the target, the median final test "
                     "accuracy, and the speedup the arm's FLOPs per sample would give if time followed FLOPs. "
                     "The same rows are in tta.csv.",
            "figure": _figure(out_dir, "figures/pareto.png", "Median test accuracy against median training time per arm, "
                              "a panel per table; the red steps join the arms no other arm beats on both.",
                              max_height_cm=20) if results else None,
            "table": _table(["table", "arm", "time to target (median)", "baseline's", "speedup [interval]",
                             "reached", "test accuracy", "theoretical"], [2.3, 1.6, 1.0, 1.0, 1.6, 0.8, 1.0, 0.9],
                            rows, caption="Time to accuracy, every arm.")}


def _secs(value: float | None) -> str:
    """Median seconds to target; None means the median run missed it."""
    return "not reached" if value is None else f"{value:.1f} s"


def _comb_chapter(comb: dict[str, Any] | None, out_dir: Path) -> dict[str, Any] | None:
    """The combinability matrix: setting and recipe rule, heatmap, singles, every pair with verdict and reason."""
    if comb is None:
        return None
    singles, pairs = report.combinability_rows(comb)
    facts = [[k, v] for k, v in report.combinability_facts(comb) if k != "budget"]
    return {
        "intro": "Each pair of techniques is first checked against their declarations (conflicting techniques, "
                 "two owners of the number format, incompatible surgeries); a pair that composes is trained "
                 "against the same baseline and seeds as its two single techniques. Speedups are median "
                 "baseline time to target over median technique time with bootstrap intervals; accuracy changes "
                 "are medians of per-seed differences of test accuracy against the baseline.",
        "budget": f"{comb['scale']} scale: {comb['budget']}",
        "facts": _table(["item", "value"], [1.3, 5], facts, caption="The setting every pair shares."),
        "figure": _figure(out_dir, "combinability.png", "Pair verdicts and interactions (drawn by effitrain matrix).",
                          max_height_cm=14),
        "singles": _table(["technique", "paper", "speedup [interval]", "verdict", "reached", "test accuracy change"],
                          [1.6, 2.0, 1.4, 0.9, 0.7, 1.6],
                          [[s["technique"], s["paper"], s["speedup"], s["verdict"], s["success"],
                            s["dacc"] + (f"\n{s['error']}" if s["error"] else "")] for s in singles],
                          caption="Single techniques against the baseline."),
        "pairs": _table(["pair", "verdict", "reason", "S_A", "S_B", "S_AB", "interaction", "accuracy change"],
                        [1.5, 1.35, 2.8, 1.1, 1.1, 1.1, 1.1, 1.6],
                        [[p["pair"], p["verdict"], p["reason"], p["s_a"], p["s_b"], p["s_ab"], p["interaction"],
                          p["dacc"]] for p in pairs], [p["class"] or None for p in pairs],
                        caption="Every pair: verdict, reason, speedups [intervals], interaction S_AB / (S_A · S_B) "
                                "and the pair's accuracy change against the sum of the singles'."),
    }


def _threats(results: list[dict[str, Any]], comb: dict[str, Any] | None, out_dir: Path) -> list[dict[str, str]]:
    """Threats to validity, with the numbers (data, scales, seeds, hardware) taken from the inputs."""
    tables = [(f"{r['paper']}/{report.variant(r)}", r) for r in results]
    cifar = [n for n, r in tables if any("cifar" in k.lower() for k in r["provenance"]["dataset_md5"])]
    return [{"title": "JPEG-compressed CIFAR-10", "text": _cifar_text(cifar, out_dir)},
            {"title": "CPU scale", "text": _scale_text(tables)},
            {"title": "Number of seeds", "text": _seeds_text(tables, comb)},
            {"title": "Hardware", "text": _hardware_text(results, comb)},
            {"title": "Timing noise on a shared machine", "text": _noise_text(results)}]


def _cifar_text(cifar_tables: list[str], out_dir: Path) -> str:
    """The offline CIFAR-10 is a JPEG quality-75 copy; say which tables used it and what the copy is."""
    meta_path = out_dir / "data" / "cifar10-jpeg75.json"
    meta = ""
    try:
        info = json.loads(meta_path.read_text(encoding="utf-8"))
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


def _scale_text(tables: list[tuple[str, dict[str, Any]]]) -> str:
    """How many tables ran at cpu scale, and what that scale gives up."""
    scales = _counts([f"at {r['scale']} scale" for _, r in tables],
                     [f"at {s} scale" for s in report.SCALE_ORDER]) or "no tables"
    return (f"Results tables: {scales}. The cpu scale uses small models, training subsets and short budgets "
            "(each table's budget line says which), so absolute accuracies fall short of the papers' and a "
            "speedup measured on a small CPU model need not carry over to a large GPU model. Float16 has no fast "
            "path on the CPU, so mixed-precision arms there measure bfloat16 or an emulation of the number "
            "format, not tensor-core throughput; the theoretical speedup from FLOPs is shown beside every "
            "realised one for that reason.")


def _seeds_text(tables: list[tuple[str, dict[str, Any]]], comb: dict[str, Any] | None) -> str:
    """Seeds per table: few seeds make wide bootstrap intervals, hence many inconclusive verdicts."""
    per_table = _counts([f"table(s) with {len(r['seeds'])} seed(s)" for _, r in tables], []) or "no tables"
    matrix = f" The combinability matrix used {len(comb['seeds'])} seed(s)." if comb else ""
    return (f"Seeds: {per_table}.{matrix} Intervals are bootstrap intervals over so few seeds, so they are wide and "
            "a verdict of inconclusive often means too few seeds rather than no effect; the baseline and the "
            "technique always share seeds.")


def _hardware_text(results: list[dict[str, Any]], comb: dict[str, Any] | None) -> str:
    """The machines the tables ran on (device, CPU count, torch threads), from provenance."""
    provs = [r["provenance"] for r in results] + ([comb["provenance"]] if comb else [])
    machines = _counts([f"{p['device']} with {p['cpu_count']} CPU(s)"
                        + (f" and {p['torch_threads']} torch thread(s)" if p.get("torch_threads") else "")
                        for p in provs], [])
    return (f"Machines, with the number of tables from each: {machines or 'none recorded'}. Wall-clock speedups "
            "depend on the machine: memory bandwidth, vector units and the number format's hardware support decide "
            "whether saved FLOPs become saved seconds.")


def _noise_text(results: list[dict[str, Any]]) -> str:
    """Timing noise: shared machine, evaluation share, warm-up; numbers from the runs."""
    shares = [r["eval_share"] for res in results for a in res["arms"].values() for r in a["runs"]
              if r.get("eval_share") is not None]
    share = (f" Evaluation took a median {100 * statistics.median(shares):.1f}% of wall time (the training clock "
             "excludes it)." if shares else "")
    return ("The tables were timed on a shared machine, where other processes compete for the same cores and "
            "memory bandwidth; the training clock excludes evaluation and warm-up but not interference. "
            "Speedups near 1 are within this noise and should be read with their intervals." + share)


def _appendix(results: list[dict[str, Any]], comb: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Provenance and environment of every results file (and the combinability matrix)."""
    sections = [{"title": f"{r['paper']}/{report.variant(r)}.json", "table": _provenance(r)} for r in results]
    if comb is not None:
        sections.append({"title": "combinability.json", "table": _provenance(comb)})
    return [{"title": "Provenance and environment", "sections": sections}]


def _provenance(res: dict[str, Any]) -> dict[str, Any]:
    """Code version, software, machine, data checksums, command and time of one input file."""
    p = res["provenance"]
    md5 = "\n".join(f"{k}: {v}" for k, v in sorted(p["dataset_md5"].items())) or "—"
    rows = [["git commit", str(p["git_commit"])], ["working tree dirty", "yes" if p["git_dirty"] else "no"],
            ["torch", str(p["torch"])], ["lightning", str(p["lightning"])], ["python", str(p.get("python", "—"))],
            ["device", str(p["device"])], ["cpu count", str(p["cpu_count"])], ["dataset md5", md5],
            ["command", res["command"]], ["created", res["created"]]]
    return _table(["item", "value"], [1, 4], rows)
