"""`kpdoctor why` output: a JSON-able dict (for tools and `scan --service -o json`) and console text.

Everything from outside (names, labels, rule comments) goes through `printable` in the text form;
JSON escapes control characters itself.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from kpdoctor.printable import printable
from kpdoctor.why.model import SEVERITY_ORDER, FrontendBehaviour, WhyReport

SCHEMA = "kpdoctor.why/v1"


def to_dict(report: WhyReport) -> dict[str, Any]:
    return {
        "format": SCHEMA,
        "service": str(report.target),
        "client": {"kind": report.client.kind, "value": report.client.value, "node": report.client.node,
                   "zone": report.client.zone, "text": str(report.client)},
        "source": report.source,
        "service_found": report.service_found,
        "verdict": report.verdict,
        "fix": report.fix,
        "exit_code": report.exit_code,
        "evidence": list(report.evidence),
        "commands": list(report.commands),
        "causes": [asdict(c) for c in sorted(report.causes, key=lambda c: SEVERITY_ORDER[c.severity])],
        "node_groups": [{"status": g.status, "summary": g.summary, "nodes": list(g.nodes)} for g in report.groups],
        "nodes": [asdict(nb) for nb in report.nodes],
        "not_evaluated": list(report.not_evaluated),
        "nodes_not_checked": list(report.unchecked_nodes),
    }


def render_text(report: WhyReport) -> str:
    return render_view(to_dict(report))


def render_view(view: dict[str, Any]) -> str:
    """Console text of a `to_dict` view (also printed by `scan --service` from its JSON report)."""
    data = printable(view)
    client = data["client"]
    out: list[str] = [f"kpdoctor why {data['service']}   (source: {data['source']}; client: {client['text']})", ""]
    out.append(f"VERDICT  {data['verdict']}")
    if data["fix"]:
        out.append(f"FIX      {data['fix']}")
    out += [f"  $ {c}" for c in data["commands"][:8]]
    out += [f"  - {e}" for e in data["evidence"][:12]]
    out += ["", "API"]
    if not data["causes"]:
        out.append("  no API-level cause found" if data["service_found"] else "  not evaluated")
    for c in data["causes"]:
        out.append(f"  [{c['severity']}] {c['headline']}")
        out += [f"      {e}" for e in c["evidence"][:8]]
        if c["fix"] and c["severity"] != "note":
            out.append(f"      fix: {c['fix']}")
    narrowed = client["node"] and client["kind"] != "external"
    out += ["", "NODES" + (" (the client's node)" if narrowed else "")]
    if not data["nodes"]:
        out.append("  not evaluated (no node rules read)")
    for g in data["node_groups"]:
        nodes = g["nodes"]
        who = nodes[0] if len(nodes) == 1 else f"{len(nodes)} nodes ({', '.join(nodes[:5])}" + \
            (f", +{len(nodes) - 5} more)" if len(nodes) > 5 else ")")
        label = "OK" if g["status"] == "ok" else g["status"]
        out.append(f"  {who}: {label}" + (f", {g['summary']}" if g["summary"] else ""))
    for nb in data["nodes"]:
        if nb["status"] == "ok":
            continue
        source = ", ".join(x for x in (nb["mode"], nb["rules_source"]) if x)
        out.append(f"  {nb['node']}" + (f" ({source})" if source else "") + ":")
        out += [f"      {_describe(fb)}" for fb in nb["frontends"]]
        out += [f"      node-wide: {c}" for c in nb["conditions"]]
    if data["not_evaluated"]:
        out += ["", "NOT EVALUATED"] + [f"  - {n}" for n in data["not_evaluated"]]
    return "\n".join(out) + "\n"


def _describe(raw: dict[str, Any]) -> str:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    fb = FrontendBehaviour(**fields)
    text = fb.describe()
    if fb.status not in ("ok", "observed"):
        text += f"  [{fb.status}" + (f"; stale {', '.join(fb.stale)}" if fb.stale else "") + \
            (f"; missing {', '.join(fb.missing)}" if fb.missing else "") + "]"
    return text
