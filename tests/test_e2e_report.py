"""End to end: the built report opened in headless Chromium (Debian's `chromium`).

The report (without its PDF) is built from the committed results tables and the committed combinability
matrix with its heatmap into a temp dir and served on 127.0.0.1; a
small check page loads each page in a same-origin iframe, waits for it, and writes what it found
(tables, images and whether each decoded, links) into its own DOM, which `chromium --dump-dom`
prints. The index is also screenshotted.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.report.build import build_report

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
CHECK_PAGE = """<!DOCTYPE html><html><body><iframe id="f" width="1200" height="2000"></iframe>
<pre id="out">pending</pre>
<script>
const page = new URLSearchParams(location.search).get("page");
const frame = document.getElementById("f");
frame.addEventListener("load", () => {
  const doc = frame.contentDocument;
  const images = [...doc.images].map(i => ({src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0}));
  const out = {title: doc.title, tables: doc.querySelectorAll("table").length,
               rows: doc.querySelectorAll("tr").length, images: images,
               links: [...doc.querySelectorAll("a[href]")].map(a => a.getAttribute("href"))};
  document.getElementById("out").textContent = "RESULT" + JSON.stringify(out) + "END";
});
frame.src = page;
</script></body></html>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on stderr
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The report built from the committed tables, served on 127.0.0.1; yields (site dir, base URL)."""
    chromium = shutil.which("chromium")
    assert chromium, "the end-to-end report test needs Debian's chromium (apt install chromium chromium-driver)"
    site = tmp_path_factory.mktemp("site")
    for name in ("combinability.json", "combinability.png"):  # the matrix's committed outputs
        shutil.copyfile(ROOT / "reports" / name, site / name)
    # Every committed table and the matrix come from a clean tree: the report refuses them otherwise.
    build_report(ROOT / "reports" / "runs", site, pdf=False)
    (site / "_check.html").write_text(CHECK_PAGE, encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}", chromium
    server.shutdown()
    server.server_close()


def _inspect(chromium: str, base: str, page: str, profile: Path) -> dict:
    out = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                          "--dump-dom", f"{base}/_check.html?page={page}"],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r"RESULT(.*)END", out.stdout)
    assert found, f"the check page did not report on {page}: {out.stdout[-500:]} {out.stderr[-500:]}"
    return json.loads(found.group(1))


def test_every_page_loads_its_figures_and_tables_and_links_resolve(served, tmp_path):
    site, base, chromium = served
    index = _inspect(chromium, base, "index.html", tmp_path / "profile")
    assert index["tables"] >= 1 and index["rows"] > 1
    assert index["images"] and all(i["ok"] for i in index["images"]), index["images"]
    pages = sorted({urlsplit(h).path for h in index["links"] if h.endswith(".html") or ".html#" in h}
                   - {"combinability.html", "protocol.html"})  # checked in their own tests
    assert pages, "the index links no paper page"
    for page in pages:
        assert (site / page).exists(), f"index links {page}, which was not built"
        found = _inspect(chromium, base, page, tmp_path / "profile")
        assert found["tables"] >= 2, f"{page}: expected the claim ledger and the time-to-target table"
        assert found["images"] and all(i["ok"] for i in found["images"]), f"{page}: {found['images']}"


def test_combinability_page_loads_with_its_heatmap(served, tmp_path):
    site, base, chromium = served
    index = _inspect(chromium, base, "index.html", tmp_path / "profile")
    assert "combinability.html" in index["links"]
    found = _inspect(chromium, base, "combinability.html", tmp_path / "profile")
    assert found["tables"] >= 4, "expected the setting, singles, pairs and provenance tables"
    assert [i["src"] for i in found["images"]] == ["combinability.png"] and found["images"][0]["ok"]
    assert "index.html" in found["links"]


def test_index_screenshot(served, tmp_path):
    site, base, chromium = served
    shot = tmp_path / "index.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,2400",
                    f"--screenshot={shot}", f"{base}/index.html"], capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a rendered page with figures, not a blank frame
