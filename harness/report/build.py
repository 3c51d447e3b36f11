"""`build_report`: the site, tta.csv, the figures and the PDF from `<runs_dir>/<paper>/<variant>.json`.

Output, under `out`: an overview `index.html`, one `<paper>.html` per paper with a section per
variant, `protocol.html` (the measurement protocol), a time-to-accuracy PNG per table under `figures/`,
`tta.csv` and `figures/pareto.svg`; `combinability.html` when `out/combinability.json` (written by
`effitrain matrix`) exists; then `report.pdf`. Every input is validated before anything is written, every
file goes through the one atomic writer, and the index is the last page of the site, so a crash never
leaves a half-written page nor an index linking to a missing page. Output order is deterministic.

Provenance that cannot lie: a table made from uncommitted code (`provenance.git_dirty`) is refused unless
`allow_dirty`, and then bannered; a table whose recorded source files (`provenance.code_files`) hash
differently now, or are gone, is marked stale, naming them (`cells.code_status`, torch-free).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from harness.report import cells, figures, html
from harness.report.pdf import build_pdf
from harness.results import tta
from harness.results.atomic import atomic_write
from harness.results.schema import Combinability, ResultsTable, load_combinability, load_table, variant

__all__ = ["build_report", "discover", "check_dirty"]


def discover(runs_dir: str | Path) -> list[ResultsTable]:
    """Every results table under runs_dir, validated, by paper then scale (smoke < cpu < paper)."""
    runs_dir = Path(runs_dir)
    files = sorted(f for f in runs_dir.glob("*/*.json") if not f.name.endswith(".metrics.json")) \
        if runs_dir.is_dir() else []  # <table>.metrics.json: DVC's headline numbers (results/exports.py)
    return cells.sorted_tables([load_table(f) for f in files])


def check_dirty(tables: list[ResultsTable], runs_dir: str | Path, allow_dirty: bool = False,
                comb: Combinability | None = None, comb_path: str | Path = "combinability.json") -> None:
    """Refuse tables (and a combinability matrix, `comb`, read from `comb_path`) whose runs came from a dirty
    working tree, unless `allow_dirty`: ValueError, one line, naming the (first) file."""
    dirty = [Path(runs_dir) / t.paper / f"{variant(t)}.json" for t in tables if t.provenance.git_dirty]
    if comb is not None and comb.provenance.git_dirty:
        dirty.append(Path(comb_path))
    if dirty and not allow_dirty:
        first = dirty[0]
        others = len(dirty) - 1
        more = f", as {'is' if others == 1 else 'are'} {cells.plural(others, 'other table')}" if others else ""
        raise ValueError(f"{first}: made from uncommitted code (provenance.git_dirty is true){more}; commit and "
                         "rerun, or build the report with --allow-dirty to include such tables marked as dirty")


def _paper_pages(tables: list[ResultsTable], out: Path, statuses: dict[tuple[str, str], cells.CodeStatus]) -> None:
    """A figure per table and a page per paper."""
    by_paper: dict[str, list[ResultsTable]] = {}
    for table in tables:
        by_paper.setdefault(table.paper, []).append(table)
    for paper, group in by_paper.items():
        urls = []
        for table in group:
            name = f"{paper}-{variant(table)}-tta.svg"
            atomic_write(out / "figures" / name, figures.tta_plot(table, "svg"))
            urls.append(f"figures/{quote(name)}")
        atomic_write(out / f"{paper}.html", html.paper_page(group, urls, statuses))


def build_report(runs_dir: str | Path = "reports/runs", out: str | Path = "reports", pdf: bool = True,
                 matrix_dir: str | Path | None = None, allow_dirty: bool = False,
                 code_root: str | Path | None = None) -> Path:
    """Render every results table under runs_dir into a static site in `out`, then the PDF; return index.html.

    The combinability matrix is read from `matrix_dir` (default: `out`, where `effitrain matrix` writes by
    default); when it lies elsewhere its heatmap is copied into the site. Each table's recorded source files
    are checked against those under `code_root` (default: this checkout) for staleness.

    Raises ValueError (naming the file and the field) on a malformed results or combinability file, and
    (naming the file) on a table made from uncommitted code unless `allow_dirty`, before anything is
    written; a failed PDF compile raises ValueError after the site is written and leaves the previous
    report.pdf in place. `pdf=False` skips the PDF (tests that do not test it).
    """
    runs_dir, out = Path(runs_dir), Path(out)
    matrix_dir = Path(matrix_dir) if matrix_dir is not None else out
    tables = discover(runs_dir)
    comb_path = matrix_dir / "combinability.json"
    comb: Combinability | None = load_combinability(comb_path) if comb_path.is_file() else None
    check_dirty(tables, runs_dir, allow_dirty, comb, comb_path)
    statuses = cells.code_statuses(tables, code_root, comb)
    if comb is not None and matrix_dir.resolve() != out.resolve() and (matrix_dir / "combinability.png").is_file():
        atomic_write(out / "combinability.png", (matrix_dir / "combinability.png").read_bytes())
    _paper_pages(tables, out, statuses)
    overview = tta.rows(tables)
    atomic_write(out / "tta.csv", tta.to_csv(overview))
    if tables:
        atomic_write(out / "figures" / "pareto.svg", figures.pareto_plot(overview, "svg"))
    if comb is not None:
        heatmap = (out / "combinability.png").is_file()
        atomic_write(out / "combinability.html", html.combinability_page(comb, heatmap, statuses.get(cells.MATRIX_KEY)))
    atomic_write(out / "protocol.html", html.protocol_page())
    index = atomic_write(out / "index.html", html.index_page(tables, runs_dir, comb is not None, statuses))
    if pdf:
        build_pdf(tables, comb, out, statuses)
    return index
