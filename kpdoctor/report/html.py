"""Self-contained HTML: one file with inline CSS, no scripts, fonts or images from anywhere.

It must open from an email attachment or a CI artifact store with no network,
so nothing is loaded from outside the file; links to the check docs are plain
hyperlinks the reader may follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#1b1f24;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
table.summary td,table.summary th{padding:.2em .8em;border:1px solid #d0d7de}table.summary{border-collapse:collapse}
.group{border:1px solid #d0d7de;border-left-width:6px;border-radius:4px;padding:.5em 1em;margin:.8em 0}
.critical{border-left-color:#8b0000}.error{border-left-color:#cf222e}.warning{border-left-color:#bf8700}
.info{border-left-color:#0969da}.silenced{opacity:.6}
.sev{font-weight:700;text-transform:uppercase;font-size:.8em;padding:.1em .4em;border-radius:3px;color:#fff}
.sev.critical{background:#8b0000}.sev.error{background:#cf222e}.sev.warning{background:#bf8700}.sev.info{background:#0969da}
pre{background:#f6f8fa;padding:.5em;overflow-x:auto;font-size:12px;border-radius:3px}
.nodes{color:#57606a}.passed{color:#1a7f37}
"""


def _pre(lines: list[str]) -> str:
    return "<pre>" + escape("\n".join(lines)) + "</pre>"


def render_html(report: Mapping[str, Any]) -> str:
    s = report["summary"]
    src = report["source"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>kpdoctor report: {escape(src['location'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>kpdoctor report: {escape(src['kind'])} <code>{escape(src['location'])}</code></h1>",
        f"<p>kpdoctor {escape(report['kpdoctor_version'])}, {escape(report['generated_at'])}; "
        f"{s['checks_run']} checks; nodes reachable {s['nodes_reachable']}/{s['nodes_total']} "
        f"(transport {escape(src['transport'])}); exit code {report['exit_code']} "
        f"(fail-on {escape(report['fail_on'] or 'not set')}).</p>",
        '<table class="summary"><tr>' + "".join(f"<th>{k}</th>" for k in s["findings"])
        + "<th>silenced</th><th>not evaluated</th></tr><tr>"
        + "".join(f"<td>{v}</td>" for v in s["findings"].values())
        + f"<td>{s['silenced']}</td><td>{s['not_evaluated']}</td></tr></table>",
    ]
    for gap in report["gaps"]:
        parts.append(f"<p><strong>cannot read {escape(gap['kind'])}</strong>: {escape(gap['reason'])}</p>")
    for check in report["checks"]:
        if not check["groups"]:
            continue
        docs = f' (<a href="{escape(check["docs"])}">docs</a>)' if check["docs"] else ""
        parts.append(f"<h2>{escape(check['id'])}: {escape(check['title'])}{docs}</h2>")
        for g in check["groups"]:
            cls = g["severity"] + (" silenced" if g["silenced"] else "")
            nodes = (f' <span class="nodes">on {len(g["nodes"])} node(s): {escape(", ".join(g["nodes"]))}</span>'
                     if g["nodes"] else "")
            parts.append(f'<div class="group {cls}"><span class="sev {g["severity"]}">{g["severity"]}</span> '
                         f"<strong>{escape(g['subject'])}</strong>{nodes}<p>{escape(g['message'])}</p>")
            if g["silenced"]:
                parts.append(f"<p><em>Silenced:</em> {escape(g['silenced_reason'])}</p>")
            evidence = [f"{o['scope']}: {e}" if len(g["occurrences"]) > 1 else e
                        for o in g["occurrences"] for e in o["evidence"]]
            if evidence:
                parts.append("<p>Evidence:</p>" + _pre(evidence))
            rem = g.get("remediation")
            if rem:
                parts.append(f"<p><strong>Fix:</strong> {escape(rem['text'])}</p>")
                if rem["commands"]:
                    parts.append(_pre(rem["commands"]))
            parts.append("</div>")
    passed = [c["id"] for c in report["checks"] if c["status"] == "passed"]
    if passed:
        parts.append(f'<h2>Passed</h2><p class="passed">{escape(", ".join(passed))}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
