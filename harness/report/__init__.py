"""The report: a static HTML site and a thesis-style PDF built from the results tables.

`cells` holds every text cell both outputs show, `figures` the PNGs, `html` the site's pages,
`pdf` the Typst document (template in `templates/`), and `build.build_report` puts them together.
A new report section is cells + html + pdf in this folder. Nothing here imports training code:
the tables (harness.results.schema) carry everything shown.

This file imports nothing, so that `harness.report.cells` stays cheap to import (no matplotlib, no typst).
"""

__all__: list[str] = []
