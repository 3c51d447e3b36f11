"""The report's figures as SVG (or PNG) bytes: a time-to-accuracy plot per results table and the Pareto overview.

The site and the PDF use SVG: vector, and in the PDF a sixth of a PNG's size (Typst decodes a PNG and
recompresses its pixels), so that the committed report.pdf stays small as papers are added. MLflow
gets a PNG per results table.

Drawn with matplotlib's object API (no pyplot state) and saved without the Software tag, so
the same tables give the same bytes. The combinability heatmap is the matrix's own output
(harness.results.combinability.heatmap_png), not drawn here.
"""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from harness.report.cells import Format, arm_order, metric_format, metric_label, number
from harness.results.schema import ResultsTable

__all__ = ["tta_plot", "pareto_plot", "pareto_front"]


def _encode(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG or as SVG (text as paths; element ids salted by a constant and no date, so the same
    figure gives the same bytes)."""
    buf = io.BytesIO()
    if fmt == "svg":
        with rc_context({"svg.hashsalt": "effitrain", "svg.fonttype": "path"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    elif fmt == "png":
        fig.savefig(buf, format="png", metadata={"Software": None})
    else:
        raise ValueError(f"figure format {fmt!r}: expected 'png' or 'svg'")
    return buf.getvalue()


def tta_plot(table: ResultsTable, fmt: str = "png") -> bytes:
    """Time-to-accuracy plot: target metric vs training seconds, a line per (arm, seed); `fmt` png or svg."""
    metric, target = table.target.metric, table.target.value
    fig = Figure(figsize=(7.5, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, arm in enumerate(arm_order(table)):
        labelled = False
        for run in sorted(table.arms[arm].runs, key=lambda r: r.seed):
            pts = [(p["train_seconds"], p[metric]) for p in run.curve
                   if p.get("train_seconds") is not None and p.get(metric) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=f"C{i % 10}", lw=1.5, alpha=0.8, marker="o", ms=2.5,
                    label="_nolegend_" if labelled else arm)
            labelled = True
    ax.axhline(target, ls="--", color="black", lw=1.1, label=f"target {number(metric, target)}")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(metric_label(metric))
    if metric_format(metric) is Format.PERCENT:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title(f"Time to {metric_label(metric)} {number(metric, target)} ({table.scale} scale)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(title="arm (a line per seed)", fontsize=8, title_fontsize=8,
              loc="lower right" if table.target.mode == "max" else "upper right")
    fig.tight_layout()
    return _encode(fig, fmt)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto front of (time, accuracy) points: no other point is both faster and more accurate."""
    front, best = [], -math.inf
    for t, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if a > best:
            front.append((t, a))
            best = a
    return front


def pareto_plot(rows: list[dict[str, Any]], fmt: str = "png") -> bytes:
    """One panel per (paper, variant) of tta.csv's rows: median test accuracy against median training seconds
    (`fmt` png or svg)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["test_acc"] is not None and row["train_seconds"] is not None:
            groups.setdefault((row["paper"], row["variant"]), []).append(row)
    n = max(len(groups), 1)
    cols = min(3, n)
    fig = Figure(figsize=(4.6 * cols, 3.6 * math.ceil(n / cols)), dpi=100)
    FigureCanvasAgg(fig)
    for i, ((paper, name), group) in enumerate(sorted(groups.items())):
        ax = fig.add_subplot(math.ceil(n / cols), cols, i + 1)
        points = [(r["train_seconds"], r["test_acc"]) for r in group]
        ax.scatter(*zip(*points), s=22, color="C0", zorder=3)
        for r in group:
            ax.annotate(r["arm"], (r["train_seconds"], r["test_acc"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.plot(*zip(*pareto_front(points)), color="C3", lw=1.2, drawstyle="steps-post", label="Pareto front",
                zorder=2)
        ax.set_title(f"{paper} ({name})", fontsize=8)
        ax.set_xlabel("training time, median (s)", fontsize=8)
        ax.set_ylabel("test accuracy, median", fontsize=8)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _encode(fig, fmt)
