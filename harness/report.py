"""Static HTML report of reproduction results.

`build_report` turns the Runner's results files, `<runs_dir>/<paper>/<scale>-<tag>.json`,
into a site readable without JavaScript: an overview `index.html`, one
`<paper>.html` per paper with a section per scale, and one time-to-accuracy PNG
per (paper, scale) under `figures/`; `combinability.html` from the matrix that
`effitrain matrix` writes to `<out_dir>/combinability.json`; then the thesis-style
`report.pdf` (harness.thesis). The site imports nothing else from the harness: a
results file carries all it shows, so an old file still renders (only the PDF's
bibliography reads the paper cards).

Every page and figure is written atomically (temp file in the same folder, then
`os.replace`) and the index last of the site, so a crash never leaves a half-written
page nor an index linking to a missing page. Output order is deterministic.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from harness import tta

__all__ = ["build_report", "load_results", "load_combinability", "combinability_rows", "combinability_facts",
           "arm_cells", "test_metrics", "format_summary", "variant", "SCALE_ORDER"]

SCALE_ORDER = {"smoke": 0, "cpu": 1, "paper": 2}
_TOP_KEYS = ("paper", "scale", "card", "budget", "command", "created", "seeds", "target",
             "baseline_arm", "arms", "speedups", "claims", "provenance")
_CARD_KEYS = ("title", "authors", "venue", "year")
_TARGET_KEYS = ("metric", "value", "mode")
_RUN_KEYS = ("seed", "train_seconds", "eval_share", "time_to_target_s", "final", "curve")
_CLAIM_KEYS = ("text", "metric", "arm", "claimed", "source", "tolerance", "measured", "low",
               "high", "verdict")
_SPEEDUP_KEYS = ("speedup", "low", "high", "verdict")
_PROV_KEYS = ("git_commit", "git_dirty", "torch", "lightning", "device", "cpu_count", "dataset_md5")
_VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "bad", "inconclusive": "maybe",
                  "not run at this scale": "skip"}
# combinability.json, written by `effitrain matrix` (harness/matrix.py); these keys are shown.
_COMB_KEYS = ("scale", "recipe", "budget", "target", "seeds", "techniques", "composition_order", "recipe_rule",
              "command", "created", "provenance", "singles", "pairs")
_SINGLE_KEYS = ("paper", "speedup", "low", "high", "verdict", "success_rate", "dacc", "dacc_low", "dacc_high")
_PAIR_KEYS = ("a", "b", "status", "verdict", "reason", "s_a", "s_a_low", "s_a_high", "s_b", "s_b_low", "s_b_high",
              "s_ab", "s_ab_low", "s_ab_high", "interaction", "interaction_low", "interaction_high",
              "dacc_ab", "dacc_sum", "dacc_excess")
# Pair verdicts (DESIGN.md, Combinability): interaction S_AB / (S_A * S_B) about 1 stacks, above 1
# synergy, below 1 overlap; the rest say why no interaction could be measured.
PAIR_VERDICT_CLASS = {"synergy": "syn", "stacks": "ok", "overlap": "maybe", "incompatible": "skip",
                      "not measurable": "skip", "missed target": "bad", "diverged": "bad", "failed": "bad"}
MATRIX_HOWTO = "effitrain matrix --scale cpu --seeds 3"
_CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;white-space:nowrap}
.budget{background:#fff6d5;border-left:5px solid #e0a800;padding:.5em .8em;margin:.6em 0;font-size:1.05em}
.ok{background:#d9f2dd}.bad{background:#f8d7da}.maybe{background:#fff3cd}.skip{background:#eceff1;color:#555}.syn{background:#d6e9f8}
code{background:#f4f4f4;padding:.1em .3em}section{border-top:2px solid #888;margin-top:2em}
.muted{color:#666;font-size:.9em}img{max-width:100%;border:1px solid #ddd}"""


def _e(value: Any) -> str:
    """Escape any value for HTML text or attributes."""
    return html.escape(str(value), quote=True)


def _require(obj: Any, keys: tuple[str, ...], where: str, path: Path) -> None:
    """Raise a one-line ValueError naming the file and the first missing key."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected an object at '{where.rstrip('.') or 'top level'}'")
    for key in keys:
        if key not in obj:
            raise ValueError(f"{path}: missing key '{where}{key}'")


def load_results(path: Path) -> dict[str, Any]:
    """Read and check one results file; malformed input raises ValueError naming the file."""
    try:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable results file ({exc})") from None
    _require(res, _TOP_KEYS, "", path)
    _require(res["card"], _CARD_KEYS, "card.", path)
    _require(res["target"], _TARGET_KEYS, "target.", path)
    _require(res["provenance"], _PROV_KEYS, "provenance.", path)
    _require(res["arms"], (), "arms.", path)
    for name, arm in res["arms"].items():
        _require(arm, ("runs",), f"arms.{name}.", path)
        for i, run in enumerate(arm["runs"]):
            _require(run, _RUN_KEYS, f"arms.{name}.runs[{i}].", path)
    for i, claim in enumerate(res["claims"]):
        _require(claim, _CLAIM_KEYS, f"claims[{i}].", path)
    for name, sp in res["speedups"].items():
        _require(sp, _SPEEDUP_KEYS, f"speedups.{name}.", path)
    path = Path(path)
    if (res["paper"], variant(res)) != (path.parent.name, path.stem):
        raise ValueError(f"{path}: paper/variant {res['paper']!r}/{variant(res)!r} do not match the file's location")
    return res


def load_combinability(path: Path) -> dict[str, Any] | None:
    """Read and check `combinability.json`; None when absent, ValueError naming file and key when malformed."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        comb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable combinability file ({exc})") from None
    _require(comb, _COMB_KEYS, "", path)
    _require(comb["target"], _TARGET_KEYS, "target.", path)
    _require(comb["provenance"], _PROV_KEYS, "provenance.", path)
    _require(comb["singles"], (), "singles.", path)
    for name, single in comb["singles"].items():
        _require(single, _SINGLE_KEYS, f"singles.{name}.", path)
    for key in ("seeds", "pairs", "techniques", "composition_order"):
        if not isinstance(comb[key], list):
            raise ValueError(f"{path}: expected a list at '{key}'")
    for i, pair in enumerate(comb["pairs"]):
        _require(pair, _PAIR_KEYS, f"pairs[{i}].", path)
    return comb


def variant(res: dict[str, Any]) -> str:
    """A results file's name: the scale, then the budget tag ("cpu-full", "cpu-demo")."""
    return f"{res['scale']}-{res['tag']}" if res.get("tag") else res["scale"]


def _discover(runs_dir: Path) -> list[dict[str, Any]]:
    """All results under runs_dir, sorted by paper then scale (smoke < cpu < paper)."""
    files = sorted(runs_dir.glob("*/*.json")) if runs_dir.is_dir() else []
    results = [load_results(f) for f in files]
    return sorted(results, key=lambda r: (r["paper"], SCALE_ORDER.get(r["scale"], 99), variant(r)))


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _kind(metric: str) -> str:
    """Classify a metric name by its last path segment: acc, errors, seconds or other."""
    name = metric.rsplit("/", 1)[-1].lower()
    if "acc" in name:
        return "acc"
    if "error" in name:
        return "errors"
    return "seconds" if "second" in name or name.endswith("_s") else "other"


def _fmt(metric: str, value: Any) -> str:
    """Format a metric value: accuracies as percent (2 dp), errors as integers, seconds 1 dp."""
    if value is None:
        return "—"
    v = float(value)
    if math.isinf(v):
        return "∞"
    kind = _kind(metric)
    if kind == "acc":
        return f"{100 * v:.2f}%"
    if kind == "errors":
        return str(round(v))
    return f"{v:.1f} s" if kind == "seconds" else f"{v:.4g}"


def _fmt_ci(metric: str, value: Any, low: Any, high: Any) -> str:
    """`value [low, high]`, or just the value when the interval is unknown."""
    if value is None:
        return "not measured"
    if low is None or high is None:
        return _fmt(metric, value)
    return f"{_fmt(metric, value)} [{_fmt(metric, low)}, {_fmt(metric, high)}]"


def _secs(value: float) -> str:
    """Seconds with one decimal; infinity stands for a target never reached."""
    return "∞" if math.isinf(value) else f"{value:.1f} s"


def _tta_cell(times: list[float]) -> str:
    """Median time to target with the [min, max] over seeds; a missed target counts as ∞."""
    if not times:
        return "no runs"
    med = statistics.median(times)
    head = "not reached (∞)" if math.isinf(med) else _secs(med)
    return f"{head} [{_secs(min(times))}, {_secs(max(times))}]"


def _fmt_speedup(sp: dict[str, Any] | None) -> str:
    """`1.10× [0.90, 1.30]`, `n/a` when no speedup could be computed, or why not."""
    if sp and sp.get("speedup") == 0:
        return "0× (technique never reached the target)"
    if sp and sp.get("verdict") == "only the technique reached the target":
        return "∞ (only the technique reached the target)"
    if not sp or sp.get("speedup") is None:
        return "n/a"
    if sp.get("low") is None or sp.get("high") is None:
        return f"{sp['speedup']:.2f}×"
    return f"{sp['speedup']:.2f}× [{sp['low']:.2f}, {sp['high']:.2f}]"


def _metric_label(metric: str) -> str:
    """Readable axis label: 'val/acc' -> 'validation accuracy'."""
    split = {"val": "validation", "test": "test", "train": "training"}
    names = {"acc": "accuracy", "loss": "loss", "errors": "errors"}
    prefix, _, name = metric.rpartition("/")
    return " ".join(p for p in (split.get(prefix, prefix), names.get(name, name)) if p)


def _arm_order(res: dict[str, Any]) -> list[str]:
    """Baseline arm first, then the others in the order the Runner ran them (references, baselines, techniques)."""
    base = res["baseline_arm"]
    return ([base] if base in res["arms"] else []) + [a for a in res["arms"] if a != base]


def _render_figure(res: dict[str, Any], path: Path) -> None:
    """Time-to-accuracy plot: target metric vs training seconds, a line per (arm, seed)."""
    metric, target = res["target"]["metric"], res["target"]["value"]
    fig = Figure(figsize=(7.5, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    palette = [f"C{i}" for i in range(10)]
    for i, arm in enumerate(_arm_order(res)):
        labelled = False
        for run in sorted(res["arms"][arm]["runs"], key=lambda r: r["seed"]):
            pts = [(p["train_seconds"], p[metric]) for p in run["curve"]
                   if p.get("train_seconds") is not None and p.get(metric) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=palette[i % 10], lw=1.5, alpha=0.8, marker="o", ms=2.5,
                    label="_nolegend_" if labelled else arm)
            labelled = True
    ax.axhline(target, ls="--", color="black", lw=1.1, label=f"target {_fmt(metric, target)}")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(_metric_label(metric))
    if _kind(metric) == "acc":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(f"Time to {_metric_label(metric)} {_fmt(metric, target)} ({res['scale']} scale)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(title="arm (a line per seed)", fontsize=8, title_fontsize=8, loc="lower right" if res["target"]["mode"] == "max" else "upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write(path, buf.getvalue())


def _page(title: str, body: str) -> str:
    """A complete HTML document with the inline stylesheet; `body` is already escaped HTML."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table; headers are plain text, cells are escaped HTML, classes are per row."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _safe_url(url: Any) -> str | None:
    """Only http(s) links are emitted, so a card cannot inject a javascript: URL."""
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def _citation(card: dict[str, Any]) -> str:
    """Authors, title, venue and year, with arXiv/URL links when the card has them."""
    text = f"{_e(card['authors'])}. <em>{_e(card['title'])}</em>. {_e(card['venue'])}, {_e(card['year'])}."
    url = _safe_url(card.get("url"))
    if card.get("arxiv"):
        text += f' arXiv:<a href="https://arxiv.org/abs/{quote(str(card["arxiv"]))}">{_e(card["arxiv"])}</a>.'
    if url:
        text += f' <a href="{_e(url)}">{_e(url)}</a>'
    return f"<p>{text}</p>"


def _claims_table(res: dict[str, Any]) -> str:
    """The claim ledger: each claimed number beside what this run measured, coloured by verdict."""
    rows, classes = [], []
    for c in res["claims"]:
        m = c["metric"]
        claimed = "n.f." if c["claimed"] is None else _fmt(m, c["claimed"])
        if c.get("paper_baseline") is not None:
            claimed += f'<br><span class="muted">paper baseline {_e(_fmt(m, c["paper_baseline"]))}</span>'
        arm = c["arm"] + (f" − {c['minus_arm']}" if c.get("minus_arm") else "")
        tol = "—" if c["tolerance"] is None else "±" + _fmt(m, c["tolerance"])
        rows.append([_e(c["text"]), f"<code>{_e(m)}</code>", _e(arm), claimed, _e(c["source"]),
                     _e(_fmt_ci(m, c["measured"], c["low"], c["high"])), _e(tol), f"<b>{_e(c['verdict'])}</b>"])
        classes.append(_VERDICT_CLASS.get(c["verdict"], ""))
    headers = ["claim", "metric", "arm", "claimed", "source", "measured [low, high]", "tolerance", "verdict"]
    return _table(headers, rows, classes) if rows else "<p>No claims recorded.</p>"


def _spread(metric: str, values: list[float]) -> str:
    """Median with the [min, max] range over seeds."""
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{_fmt(metric, med)} [{_fmt(metric, min(values))}, {_fmt(metric, max(values))}]"


def test_metrics(res: dict[str, Any]) -> list[str]:
    """The final `test/*` metrics any run of the table recorded, sorted."""
    return sorted({k for a in res["arms"].values() for r in a["runs"] for k in r["final"] if k.startswith("test/")})


def arm_cells(res: dict[str, Any], arm: str) -> dict[str, Any]:
    """One arm's time-to-target row as plain text, shared by the HTML table and the PDF.

    Keys: tta (median [min, max], ∞ for a miss), reached ("2/3 (67%)"), finals (one cell per
    `test_metrics(res)`), share (evaluation share of wall time), speedup (with its interval),
    verdict (the speedup's verdict, "" for a baseline) and theory (FLOPs-per-sample speedup).
    """
    runs = res["arms"][arm]["runs"]
    times = [math.inf if r["time_to_target_s"] is None else float(r["time_to_target_s"]) for r in runs]
    hit = sum(not math.isinf(t) for t in times)
    own = res["arms"][arm].get("target")  # an arm may race to its own target (e.g. another model)
    own_note = f" (to {own['metric']} {own['value']:g})" if own and own != res["target"] else ""
    shares = [r["eval_share"] for r in runs if r["eval_share"] is not None]
    sp = res["speedups"].get(arm)
    speed = "baseline" if sp is None and arm in tta.baselines(res) else _fmt_speedup(sp)
    if sp and sp.get("baseline", res["baseline_arm"]) != res["baseline_arm"]:
        speed += f" vs {sp['baseline']}"
    return {"tta": _tta_cell(times) + own_note,
            "reached": f"{hit}/{len(runs)} ({100 * hit / len(runs):.0f}%)" if runs else "—",
            "finals": [_spread(k, [r["final"][k] for r in runs if r["final"].get(k) is not None])
                       for k in test_metrics(res)],
            "share": f"{100 * statistics.median(shares):.1f}%" if shares else "—",
            "speedup": speed, "verdict": (sp or {}).get("verdict", ""), "theory": _theoretical(res, arm)}


def _tta_table(res: dict[str, Any]) -> str:
    """Per arm: time to target, success rate, final test metrics, eval share, speedup."""
    rows = []
    for arm in _arm_order(res):
        c = arm_cells(res, arm)
        desc = res["arms"][arm].get("description", "")
        rows.append([f"<b>{_e(arm)}</b><br><span class=\"muted\">{_e(desc)}</span>", _e(c["tta"]), _e(c["reached"]),
                     *(_e(f) for f in c["finals"]), _e(c["share"]), _e(c["speedup"]), _e(c["theory"])])
    headers = ["arm", "time to target: median [min, max]", "reached target",
               *(f"{k}: median [min, max]" for k in test_metrics(res)), "eval share of wall time",
               "speedup [interval]", "theoretical speedup (FLOPs per sample vs baseline)"]
    return _table(headers, rows)


def _theoretical(res: dict[str, Any], arm: str) -> str:
    """The arm's theoretical speedup from FLOPs per sample (harness.tta), in words."""
    ratio = tta.theoretical_speedup(res, arm)
    if ratio is None:
        return "—"
    if abs(1 / ratio - 1) < 0.005:
        return "1.00× (same FLOPs per sample)"
    return f"{ratio:.2f}× ({100 / ratio:.0f}% of the FLOPs per sample)"


def _provenance_table(res: dict[str, Any]) -> str:
    """Where the numbers came from: code version, software, machine, data checksums."""
    p = res["provenance"]
    md5 = "<br>".join(f"<code>{_e(k)}</code>: <code>{_e(v)}</code>" for k, v in sorted(p["dataset_md5"].items()))
    rows = [["git commit", f"<code>{_e(p['git_commit'])}</code>"],
            ["working tree dirty", _e("yes" if p["git_dirty"] else "no")],
            ["torch", _e(p["torch"])], ["lightning", _e(p["lightning"])], ["device", _e(p["device"])],
            ["cpu count", _e(p["cpu_count"])], ["dataset md5", md5 or "—"], ["created", _e(res["created"])]]
    return _table(["item", "value"], rows)


def _scale_section(res: dict[str, Any], figure: str) -> str:
    """One paper page section: everything measured at one scale, budget first."""
    t = res["target"]
    seeds = ", ".join(str(s) for s in res["seeds"])
    return "\n".join([
        f'<section id="scale-{_e(variant(res))}"><h2>Scale: {_e(res["scale"])} ({_e(res.get("tag") or "")})</h2>',
        f'<div class="budget"><b>Budget ({_e(variant(res))}):</b> {_e(res["budget"])}</div>',
        _citation(res["card"]),
        f"<p>Command: <code>{_e(res['command'])}</code><br>Seeds: {_e(seeds)} · target: "
        f"<code>{_e(t['metric'])}</code> {'≥' if t['mode'] == 'max' else '≤'} {_e(_fmt(t['metric'], t['value']))}</p>",
        "<h3>Claim ledger</h3>", _claims_table(res),
        "<h3>Time to target</h3>", _tta_table(res),
        f'<img src="{_e(figure)}" alt="{_e(_metric_label(t["metric"]))} against training time, {_e(res["scale"])} scale">',
        "<h3>Provenance</h3>", _provenance_table(res), "</section>"])


def _paper_page(results: list[dict[str, Any]], figures: list[str]) -> str:
    """A paper's page: header from its card, a contents list, a section per scale."""
    card = results[-1]["card"]
    toc = " · ".join(f'<a href="#scale-{_e(variant(r))}">{_e(variant(r))}</a>' for r in results)
    head = [f'<p><a href="index.html">← all papers</a></p><h1>{_e(card["title"])}</h1>']
    for key in ("summary", "notes"):
        if card.get(key):
            head.append(f"<p><b>{_e(key.capitalize())}:</b> {_e(card[key])}</p>")
    head.append(f"<p>Scales: {toc}</p>")
    sections = [_scale_section(r, f) for r, f in zip(results, figures)]
    return _page(card["title"], "\n".join(head + sections))


def _verdict_counts(claims: list[dict[str, Any]]) -> str:
    """'2 reproduced, 1 inconclusive', in a fixed verdict order."""
    counts: dict[str, int] = {}
    for c in claims:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    order = list(_VERDICT_CLASS) + sorted(set(counts) - set(_VERDICT_CLASS))
    return ", ".join(f"{counts[v]} {v}" for v in order if v in counts) or "no claims"


def _index_page(results: list[dict[str, Any]], runs_dir: Path, comb_present: bool = False) -> str:
    """The overview: one row per (paper, scale), or how to produce results if there are none;
    then the combinability page (or how to produce it) and the PDF."""
    how = "<code>effitrain reproduce PAPER --scale cpu</code>"
    if not results:
        body = (f"<h1>effitrain reproduction report</h1><p>No results found in <code>{_e(runs_dir)}</code>. "
                f"Produce them with {how}, then rebuild this report.</p>" + _extras_html(comb_present))
        return _page("effitrain reproduction report", body)
    rows = []
    for r in results:
        link = f"{quote(r['paper'])}.html#scale-{quote(variant(r))}"
        speed = "<br>".join(f"{_e(a)}: {_e(_fmt_speedup(r['speedups'][a]))}" for a in sorted(r["speedups"]))
        rows.append([f'<a href="{_e(link)}">{_e(r["card"]["title"])}</a><br><code>{_e(r["paper"])}</code>',
                     _e(variant(r)), _e(r["budget"]), _e(len(r["seeds"])), _e(_verdict_counts(r["claims"])),
                     speed or "n/a", f'<a href="{_e(link)}">details</a>'])
    headers = ["paper", "scale", "budget", "seeds", "claims", "speedup [interval] per technique arm", "page"]
    body = (f"<h1>effitrain reproduction report</h1><p>Each row is one paper at one scale; every number "
            f"comes from the budget in its row. Add results with {how}.</p>" + _table(headers, rows)
            + "<h2>Time to accuracy overview</h2><p>Every arm of every table, with its baseline's time to "
              "target, the speedup and its interval, the success rate, the final test accuracy and the "
              "theoretical speedup from FLOPs per sample beside the realised one: "
              '<a href="tta.csv">tta.csv</a>. Below, median test accuracy against median training time '
              "per arm; the red steps join the arms no other arm beats on both.</p>"
              '<img src="figures/pareto.png" alt="accuracy against training time, one panel per paper">'
            + _extras_html(comb_present))
    return _page("effitrain reproduction report", body)


def _ratio(value: Any, low: Any = None, high: Any = None, unit: str = "×") -> str:
    """A ratio with two decimals and its interval: `1.10× [0.90, 1.30]`; `—` when not measured."""
    def one(v: float) -> str:
        """Two decimals; an infinite ratio (only one side reached the target) as ∞."""
        return "∞" if math.isinf(v) else f"{v:.2f}"
    if value is None:
        return "—"
    head = one(float(value)) + unit
    return head if low is None or high is None else f"{head} [{one(float(low))}, {one(float(high))}]"


def _pp(value: Any, low: Any = None, high: Any = None) -> str:
    """A change of accuracy (fractions) in signed percentage points: `−0.20 pp [−0.40, +0.00]`."""
    def one(v: float) -> str:
        """Signed points with a typographic minus."""
        return f"{100 * v:+.2f}".replace("-", "−")
    if value is None:
        return "—"
    head = f"{one(float(value))} pp"
    return head if low is None or high is None else f"{head} [{one(float(low))}, {one(float(high))}]"


def combinability_facts(comb: dict[str, Any]) -> list[tuple[str, str]]:
    """What every pair shares, as (item, text): recipe and its rule, budget, target, seeds, order, command."""
    t = comb["target"]
    recipe = comb["recipe"] + (f": {comb['recipe_description']}" if comb.get("recipe_description") else "")
    runs = comb.get("runs") or {}
    return [("recipe", recipe), ("which recipe the pairs ran on", comb["recipe_rule"]),
            ("budget", f"{comb['scale']} scale: {comb['budget']}"),
            ("overrides", ", ".join(comb.get("overrides") or []) or "none"),
            ("target", f"{t['metric']} {'≥' if t['mode'] == 'max' else '≤'} {_fmt(t['metric'], t['value'])}"),
            ("seeds", ", ".join(str(x) for x in comb["seeds"]) + f" ({len(comb['seeds'])}, paired by seed)"),
            ("composition order", " → ".join(comb["composition_order"]) or "—"),
            ("command", comb["command"]), ("created", comb["created"]),
            ("runs", ", ".join(f"{v} {k}" for k, v in runs.items()) or "—")]


def combinability_rows(comb: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The singles and the pairs of a combinability matrix as plain-text cells (HTML and PDF share them)."""
    order = [t for t in comb["techniques"] if t in comb["singles"]]
    order += sorted(set(comb["singles"]) - set(order))
    singles = []
    for name in order:
        s = comb["singles"][name]
        rate = "—" if s["success_rate"] is None else f"{100 * s['success_rate']:.0f}%"
        singles.append({"technique": name, "paper": s["paper"] or "—", "verdict": s["verdict"] or "—",
                        "speedup": _ratio(s["speedup"], s["low"], s["high"]), "success": rate,
                        "dacc": _pp(s["dacc"], s["dacc_low"], s["dacc_high"]), "error": s.get("error") or ""})
    pairs = []
    for p in comb["pairs"]:
        note = p.get("recipe_note") if p.get("recipe") not in (None, comb["recipe"]) else None
        dacc = "—" if p["dacc_ab"] is None else (f"pair {_pp(p['dacc_ab'])} vs sum {_pp(p['dacc_sum'])} "
                                                 f"(excess {_pp(p['dacc_excess'])})")
        pairs.append({"pair": f"{p['a']} + {p['b']}", "verdict": p["verdict"] or "—",
                      "class": PAIR_VERDICT_CLASS.get(p["verdict"], ""),
                      "reason": (p["reason"] or "—") + (f" (ran on {p['recipe']}: {note})" if note else ""),
                      "s_a": _ratio(p["s_a"], p["s_a_low"], p["s_a_high"]),
                      "s_b": _ratio(p["s_b"], p["s_b_low"], p["s_b_high"]),
                      "s_ab": _ratio(p["s_ab"], p["s_ab_low"], p["s_ab_high"]),
                      "interaction": _ratio(p["interaction"], p["interaction_low"], p["interaction_high"], ""),
                      "dacc": dacc})
    return singles, pairs


def _combinability_page(comb: dict[str, Any], heatmap: bool) -> str:
    """The combinability matrix: shared setting, heatmap, singles, then every pair with its verdict and reason."""
    singles, pairs = combinability_rows(comb)
    facts = _table(["item", "value"], [[_e(k), _e(v)] for k, v in combinability_facts(comb)])
    s_rows = [[f"<b>{_e(s['technique'])}</b>", _e(s["paper"]), _e(f"{s['speedup']} ({s['verdict']})"),
               _e(s["success"]), _e(s["dacc"]) + (f'<br><span class="muted">{_e(s["error"])}</span>' if s["error"] else "")]
              for s in singles]
    p_rows = [[f"<b>{_e(p['pair'])}</b>", f"<b>{_e(p['verdict'])}</b>", _e(p["reason"]), _e(p["s_a"]),
               _e(p["s_b"]), _e(p["s_ab"]), _e(p["interaction"]), _e(p["dacc"])] for p in pairs]
    img = ('<img src="combinability.png" alt="pair verdicts and interactions as a heatmap">'
           if heatmap else "")
    body = [
        '<p><a href="index.html">← all papers</a></p><h1>Combinability of techniques</h1>',
        f'<div class="budget"><b>Budget ({_e(comb["scale"])}):</b> {_e(comb["budget"])}</div>',
        "<p>Every pair of techniques is first checked against their declarations (conflicts, two owners of the "
        "number format, incompatible surgeries); pairs that compose are trained against the same baseline and "
        "seeds as the single techniques. Interaction = S<sub>AB</sub> / (S<sub>A</sub> · S<sub>B</sub>): about 1 "
        "stacks, above 1 synergy, below 1 overlap. Speedups are median baseline time to target over median "
        "technique time, with bootstrap intervals; accuracy changes are medians of per-seed differences of test "
        "accuracy against the baseline, in percentage points.</p>", facts, img,
        "<h2>Single techniques</h2>",
        _table(["technique", "paper", "speedup [interval] (verdict)", "success rate",
                "test accuracy change [interval]"], s_rows) if s_rows else "<p>No single techniques recorded.</p>",
        "<h2>Pairs</h2>",
        _table(["pair", "verdict", "reason", "S_A", "S_B", "S_AB", "interaction [interval]",
                "accuracy change: pair vs sum of singles"], p_rows, [p["class"] for p in pairs])
        if p_rows else "<p>No pairs recorded.</p>",
        "<h2>Provenance</h2>", _provenance_table(comb)]
    return _page("Combinability of techniques", "\n".join(body))


def _extras_html(comb_present: bool) -> str:
    """Index paragraphs for the combinability page (or how to make it) and the thesis-style PDF."""
    if comb_present:
        comb = ('<h2>Combinability</h2><p>Which techniques stack, overlap or cannot be combined, pair by pair: '
                '<a href="combinability.html">combinability.html</a>.</p>')
    else:
        comb = ("<h2>Combinability</h2><p>No combinability matrix yet (<code>combinability.json</code> is missing "
                f"here). Produce it with <code>{_e(MATRIX_HOWTO)}</code>, then rebuild this report.</p>")
    return comb + ('<h2>Thesis-style report</h2><p>Everything above as one typeset document, with method '
                   'summaries, threats to validity and a bibliography: <a href="report.pdf">report.pdf</a>.</p>')


def build_report(runs_dir: str | Path = "reports/runs", out_dir: str | Path = "reports") -> Path:
    """Render every results file under runs_dir into a static site in out_dir, then the PDF; return index.html.

    `out_dir/combinability.json` (from `effitrain matrix`), when present, becomes combinability.html and
    a chapter of the PDF. Raises ValueError (naming the file and key) on a malformed results or
    combinability file, before anything is written; a failed PDF compile raises ValueError after the
    site is written and leaves the previous report.pdf in place (harness.thesis).
    """
    from harness import thesis  # imports this module; deferred to keep the import graph acyclic

    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    results = _discover(runs_dir)
    comb = load_combinability(out_dir / "combinability.json")
    by_paper: dict[str, list[dict[str, Any]]] = {}
    for res in results:
        by_paper.setdefault(res["paper"], []).append(res)
    for paper, group in by_paper.items():
        figures = []
        for res in group:
            name = f"{paper}-{variant(res)}-tta.png"
            _render_figure(res, out_dir / "figures" / name)
            figures.append(f"figures/{quote(name)}")
        atomic_write(out_dir / f"{paper}.html", _paper_page(group, figures).encode("utf-8"))
    overview = tta.rows(results, variant)
    atomic_write(out_dir / "tta.csv", tta.to_csv(overview))
    if results:
        atomic_write(out_dir / "figures" / "pareto.png", tta.pareto_png(overview))
    if comb is not None:
        heatmap = (out_dir / "combinability.png").is_file()
        atomic_write(out_dir / "combinability.html", _combinability_page(comb, heatmap).encode("utf-8"))
    index = out_dir / "index.html"
    atomic_write(index, _index_page(results, runs_dir, comb is not None).encode("utf-8"))
    thesis.build_pdf(results, comb, out_dir)
    return index


def format_summary(res: dict[str, Any]) -> str:
    """A plain-text digest of one results table, for the terminal after a run."""
    t = res["target"]
    lines = [f"{res['paper']} at {variant(res)} ({len(res['seeds'])} seed(s)); target {t['metric']} "
             f"{_fmt(t['metric'], t['value'])}", f"  budget: {res['budget']}"]
    for name in _arm_order(res):
        runs = res["arms"][name]["runs"]
        cell = _tta_cell([math.inf if r["time_to_target_s"] is None else r["time_to_target_s"] for r in runs])
        finals = ", ".join(f"{k} {_spread(k, [r['final'][k] for r in runs])}"
                           for k in sorted(runs[0]["final"]) if k.startswith("test/")) if runs else ""
        speed = res["speedups"].get(name)
        extra = f"; speedup {_fmt_speedup(speed)} ({speed['verdict']})" if speed else ""
        lines.append(f"  {name}: time to target {html.unescape(cell)}; {finals}{extra}")
    for c in res["claims"]:
        measured = _fmt_ci(c["metric"], c["measured"], c["low"], c["high"])
        claimed = "n.f." if c["claimed"] is None else _fmt(c["metric"], c["claimed"])
        lines.append(f"  claim {c['id'] if 'id' in c else c['text']}: claimed {claimed}, measured "
                     f"{html.unescape(measured)} -> {c['verdict']}")
    return "\n".join(lines)
