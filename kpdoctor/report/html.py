"""Self-contained HTML: one file with inline CSS, no scripts, fonts or images from anywhere.

It must open from an email attachment or a CI artifact store with no network,
so nothing is loaded from outside the file; links to the check docs are plain
hyperlinks the reader may follow. Filters (severity, node, check) are CSS only
(checkboxes and radio buttons before <main>, `:checked ~` rules): no script
runs. Node and check names reach the page only as escaped text; the filter
classes are indices (n0, c3), never names. Evidence is collapsible
(<details>); commands are never wrapped (a wrapped command pasted into a shell
is another command): a long one scrolls inside its own block, and no block is
wider than the page at any width.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from kpdoctor.report.layout import affected, group_view, ordered_checks, passed_checks, visible_groups, where
from kpdoctor.report.model import SEVERITIES

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1em auto;max-width:1100px;color:#1b1f24;padding:0 1em}
h1{font-size:1.5em;overflow-wrap:anywhere}h2{font-size:1.15em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em;overflow-wrap:anywhere}
p,li,strong,summary,code{overflow-wrap:anywhere}
table.summary td,table.summary th{padding:.2em .8em;border:1px solid #d0d7de}table.summary{border-collapse:collapse}
.group,.cause{border:1px solid #d0d7de;border-left-width:6px;border-radius:4px;padding:.5em 1em;margin:.8em 0;max-width:100%}
.critical{border-left-color:#8b0000}.error{border-left-color:#cf222e}.warning{border-left-color:#bf8700}
.info{border-left-color:#0969da}.silenced{opacity:.6}
.sev{font-weight:700;text-transform:uppercase;font-size:.8em;padding:.1em .4em;border-radius:3px;color:#fff}
.sev.critical{background:#8b0000}.sev.error{background:#cf222e}.sev.warning{background:#bf8700}.sev.info{background:#0969da}
pre{background:#f6f8fa;padding:.5em;overflow-x:auto;font-size:12px;border-radius:3px;max-width:100%}
pre.evidence{white-space:pre-wrap;overflow-wrap:anywhere}pre.cmd{white-space:pre}
.nodes{color:#57606a}.passed{color:#1a7f37}
input.f{position:absolute;opacity:0;pointer-events:none}
nav.filters{display:flex;flex-wrap:wrap;gap:.3em .6em;align-items:center;margin:.6em 0;font-size:.9em}
nav.filters label{border:1px solid #d0d7de;border-radius:1em;padding:.05em .6em;cursor:pointer;user-select:none;overflow-wrap:anywhere}
nav.filters b{margin-left:.6em}
"""


def _pre(lines: list[str], cls: str) -> str:
    return f'<pre class="{cls}">' + escape("\n".join(lines)) + "</pre>"


def _filters(nodes: list[str], checks: list[str]) -> tuple[str, str, str]:
    """(the inputs, the labels bar, the CSS rules) of the severity/node/check filters."""
    inputs = [f'<input class="f" type="checkbox" id="fs-{s}" checked>' for s in SEVERITIES]
    bar = ["<b>severity</b>"] + [f'<label for="fs-{s}">{s}</label>' for s in SEVERITIES]
    css = [f"#fs-{s}:not(:checked)~main .group.{s}{{display:none}}"
           f"#fs-{s}:checked~nav label[for=fs-{s}]{{background:#ddf4ff}}" for s in SEVERITIES]
    for kind, names, key in (("node", nodes, "n"), ("check", checks, "c")):
        inputs.append(f'<input class="f" type="radio" name="f{key}" id="f{key}-all" checked>')
        bar += [f"<b>{kind}</b>", f'<label for="f{key}-all">all</label>']
        css.append(f"#f{key}-all:checked~nav label[for=f{key}-all]{{background:#ddf4ff}}")
        for i, name in enumerate(names):
            inputs.append(f'<input class="f" type="radio" name="f{key}" id="f{key}-{i}">')
            bar.append(f'<label for="f{key}-{i}">{escape(name)}</label>')
            css.append(f"#f{key}-{i}:checked~main .group:not(.{key}{i}){{display:none}}"
                       f"#f{key}-{i}:checked~nav label[for=f{key}-{i}]{{background:#ddf4ff}}")
            if key == "c":
                css.append(f"#f{key}-{i}:checked~main section.check:not(.{key}{i}){{display:none}}")
    return "".join(inputs), '<nav class="filters">' + " ".join(bar) + "</nav>", "".join(css)


def render_html(report: Mapping[str, Any], *, min_severity: str | None = None) -> str:
    s = report["summary"]
    src = report["source"]
    checks = [c for c in ordered_checks(report) if visible_groups(c, min_severity)]
    nodes = sorted({n for c in checks for g in c["groups"] for n in g["nodes"]})
    node_ix = {n: i for i, n in enumerate(nodes)}
    check_ix = {c["id"]: i for i, c in enumerate(checks)}
    inputs, bar, filter_css = _filters(nodes, [c["id"] for c in checks])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>kpdoctor report: {escape(src['location'])}</title>",
        f"<style>{_CSS}{filter_css}</style></head><body>",
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
    if affected(report):
        parts.append(f'<p class="affected"><strong>Affected:</strong> {escape(affected(report))}</p>')
    parts += [inputs, bar, "<main>"]
    for gap in report["gaps"]:
        parts.append(f"<p><strong>cannot read {escape(gap['kind'])}</strong>: {escape(gap['reason'])}</p>")
    if report.get("causes"):
        parts.append("<h2>Root causes</h2>")
        for cause in report["causes"]:
            parts.append(f'<div class="cause {cause["severity"]}"><span class="sev {cause["severity"]}">'
                         f'{cause["severity"]}</span> <strong>{escape(cause["headline"])}</strong><ul>'
                         + "".join(f"<li>{escape(c['check'])} {escape(c['subject'])}</li>"
                                   for c in cause["consequences"]) + "</ul>"
                         + (_pre(cause["commands"], "cmd") if cause["commands"] else "") + "</div>")
    for check in checks:
        docs = f' (<a href="{escape(check["docs"])}">docs</a>)' if check["docs"] else ""
        ci = check_ix[check["id"]]
        parts.append(f'<section class="check c{ci}"><h2>{escape(check["id"])}: {escape(check["title"])}{docs}</h2>')
        for g in visible_groups(check, min_severity):
            cls = " ".join([g["severity"], *(["silenced"] if g["silenced"] else []), f"c{ci}",
                            *(f"n{node_ix[n]}" for n in g["nodes"])])
            parts.append(f'<div class="group {cls}"><span class="sev {g["severity"]}">{g["severity"]}</span> '
                         f'<strong>{escape(g["subject"])}</strong><span class="nodes">{escape(where(g))}</span>'
                         f"<p>{escape(g['message'])}</p>")
            view = group_view(report, g)
            if view.cause:
                parts.append(f"<p><em>Cause:</em> {escape(view.cause)}</p>")
            if g["silenced"]:
                parts.append(f"<p><em>Silenced:</em> {escape(g['silenced_reason'])}</p>")
            evidence = view.evidence_lines()
            if evidence:
                parts.append(f"<details><summary>Evidence ({len(evidence)} line{'s' if len(evidence) != 1 else ''})"
                             f"</summary>{_pre(evidence, 'evidence')}</details>")
            if view.remedy is not None:
                parts.append(f"<p><strong>Fix:</strong> {escape(view.fix)}</p>")
                if view.covered:
                    parts.append(f"<p><em>{view.covered} command(s) listed under its root cause above.</em></p>")
                if view.commands:
                    parts.append(_pre(view.commands, "cmd"))
            parts.append("</div>")
        parts.append("</section>")
    parts.append("</main>")
    passed = passed_checks(report)
    if passed:
        parts.append(f'<h2>Passed</h2><p class="passed">{escape(", ".join(passed))}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
