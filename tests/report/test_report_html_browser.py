"""The HTML report in a real browser (Debian's chromium, headless), at a laptop width and a narrow one.

Screenshots are taken of the report as shipped (no script in it). For the layout and filter assertions a
copy of the page gets a test-only script appended that measures the laid-out page and clicks the filter
labels, writing the results into document.title, which `--dump-dom` prints: the measurement runs in the
browser's real layout engine. The report carries hostile names (tests/support/report.py): they must appear
as text, never as elements.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kpdoctor.report import render
from tests.support.report import HOSTILE, hostile_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTHS = (1366, 800)  # a laptop screen; a half-screen window

MEASURE = """<script>
(() => {
  const doc = document.documentElement, out = {};
  out.innerWidth = window.innerWidth;
  out.scrollWidth = doc.scrollWidth;
  out.overflowing = [...document.querySelectorAll('.group, .cause, pre, h1, h2, p, nav')]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.className || e.tagName);
  out.images = document.images.length;
  out.scripts = document.scripts.length;
  out.text = document.body.innerText.includes(%s);
  const shown = sel => [...document.querySelectorAll(sel)].filter(e => getComputedStyle(e).display !== 'none').length;
  out.infoBefore = shown('.group.info');
  document.querySelector('label[for=fs-info]').click();
  out.infoAfter = shown('.group.info');
  out.errorsAfter = shown('.group.error');
  document.querySelector('label[for=fs-info]').click();
  const edge2 = [...document.querySelectorAll('nav.filters label')].find(l => l.textContent === 'edge-2');
  edge2.click();
  out.groupsOnEdge2 = shown('.group');
  out.closedDetails = [...document.querySelectorAll('details')].filter(d => !d.open).length;
  document.title = JSON.stringify(out);
})();
</script>"""


def _chromium(tmp: Path, width: int, *args: str) -> str:
    assert CHROMIUM, "chromium is not installed (apt-get install chromium; .ci/run installs it)"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp / f'profile-{width}'}", f"--window-size={width},900", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    path = tmp / "report.html"
    path.write_text(render("html", hostile_report()), encoding="utf-8")
    return path


@pytest.mark.parametrize("width", WIDTHS)
def test_screenshot_of_the_shipped_report(page: Path, tmp_path: Path, width: int) -> None:
    shot = tmp_path / f"report-{width}.png"
    _chromium(tmp_path, width, f"--screenshot={shot}", page.as_uri())
    assert _png_size(shot) == (width, 900)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one (blank is ~3 kB)


@pytest.mark.parametrize("width", WIDTHS)
def test_layout_filters_and_escaping_in_the_browser(page: Path, tmp_path: Path, width: int) -> None:
    probe = tmp_path / "probe.html"
    text = page.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", MEASURE % json.dumps(HOSTILE) + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, width, "--dump-dom", probe.as_uri())
    found = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert found, dom[:500]
    import html

    out: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    assert out["innerWidth"] == width
    assert out["scrollWidth"] <= width and out["overflowing"] == []  # nothing cut off, no sideways page
    assert out["images"] == 0 and out["scripts"] == 1  # the hostile names made no element; only the probe ran
    assert out["text"] is True  # ... and are shown as text
    assert out["infoBefore"] >= 2 and out["infoAfter"] == 0 and out["errorsAfter"] >= 1
    assert 0 < out["groupsOnEdge2"] < 8
    assert out["closedDetails"] >= 5  # evidence collapsed by default
