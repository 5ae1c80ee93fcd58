"""Issue 9 item 8: terminal and Markdown output are inert.

- `kpdoctor node` (console summary) on a bundle node whose uname-r.txt holds rich markup (`[/bold]`, which
  crashed it before), an ESC sequence and a bidi override: printed as visible text, exit 0.
- A scan of a hostile B1 copy (a rule comment carrying a backtick run, a Markdown link, raw HTML and
  U+202E) in every format: no raw bidi override anywhere (JSON keeps it as a \\u202e escape, same
  value), and the Markdown report keeps the hostile text inside fences it cannot close or escaped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BUNDLES
from tests.support import cli
from tests.support.hostile_bundle import hostile_bundle

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "`````\n# owned [click](http://evil.example) <img src=x onerror=alert(1)> **bold** \u202eevil"
COMMENT = HOSTILE.replace("\n", " ")  # a rule comment is one line


def kpd(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.kpd(*args, env={"COLUMNS": "200"})


def test_node_console_summary_escapes_markup_controls_and_bidi(tmp_path: Path) -> None:
    root = tmp_path / "b"
    shutil.copytree(BUNDLES / "B1-healthy" / "bundle", root)
    (root / "nodes" / "edge-1" / "uname-r.txt").write_text("6.1[/bold] [red]x[/red] \x1b]0;owned\x07\x1b[2J \u202eevil\n")
    proc = kpd("node", "edge-1", "--transport", "bundle", "--bundle", str(root))
    assert proc.returncode in (0, 1), proc.stderr
    assert "internal error" not in proc.stderr
    assert "6.1[/bold] [red]x[/red] \\x1b]0;owned\\x07\\x1b[2J \\u202eevil" in proc.stdout
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_bundle("B1-healthy", tmp_path_factory.mktemp("md"), COMMENT)


@pytest.mark.parametrize("fmt", ["console", "markdown", "html", "junit", "json"])
def test_no_raw_bidi_override_in_any_format(hostile: Path, fmt: str) -> None:
    proc = kpd("scan", "--bundle", str(hostile), "-o", fmt)
    assert proc.returncode in (0, 1), proc.stderr
    assert "evil" in proc.stdout  # the hostile text is reported, shown escaped
    assert "\u202e" not in proc.stdout
    if fmt == "json":
        assert "\\u202eevil" in proc.stdout and COMMENT.replace("\u202e", "") != ""
        assert any(COMMENT in e for c in json.loads(proc.stdout)["checks"] for g in c["groups"]
                   for e in g["evidence"])  # same value once parsed


def _outside_fences(markdown: str) -> tuple[list[str], list[list[str]]]:
    """CommonMark fences: a line of >= 3 backticks opens; only a line of at least as many closes."""
    outside: list[str] = []
    blocks: list[list[str]] = []
    fence = 0
    for line in markdown.splitlines():
        run = re.match(r"^(`{3,})\s*$", line) or re.match(r"^(`{3,})[^`]*$", line)
        if fence == 0 and run:
            fence = len(run.group(1))
            blocks.append([])
        elif fence and re.fullmatch("`{" + str(fence) + r",}\s*", line):
            fence = 0
        elif fence:
            blocks[-1].append(line)
        else:
            outside.append(line)
    assert fence == 0, "a fence was left open"
    return outside, blocks


def test_markdown_keeps_hostile_text_in_fences_or_escaped(hostile: Path) -> None:
    proc = kpd("scan", "--bundle", str(hostile), "-o", "markdown")
    assert proc.returncode in (0, 1), proc.stderr
    outside, blocks = _outside_fences(proc.stdout)
    inside = "\n".join(line for block in blocks for line in block)
    assert "`````" in inside and "[click](http://evil.example)" in inside  # evidence: verbatim, fenced
    text = "\n".join(outside)
    assert "<img" not in text and "[click](" not in text and "**bold**" not in text
    assert not any(line.startswith("# owned") for line in outside)
