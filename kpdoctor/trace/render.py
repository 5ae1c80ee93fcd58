"""A trace for people (the path, per outcome) and for tools (`-o json`); `--explain` prose names the cause.

Every text from the dumps (rules, comments, names) is printed through `_safe`: control characters are
escaped so a hostile comment cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import json
from typing import Any

from kpdoctor.trace.firewall_cause import firewall_cause, sentence
from kpdoctor.trace.run import TraceResult, endpoint_set, outcomes

_VERB = {"drop": "dropped", "reject": "rejected", "queue": "queued"}
_COLOURS = {"accept": "32", "drop": "31", "reject": "31", "queue": "33"}


def _safe(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


def _addr(result: TraceResult, addr: str, port: int | None = None) -> str:
    label = result.labels.of(addr) if result.labels else ""
    shown = f"[{addr}]:{port}" if port is not None and ":" in addr else (f"{addr}:{port}" if port is not None else addr)
    return f"{shown} ({label})" if label else shown


def _pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def to_dict(result: TraceResult) -> dict[str, Any]:
    req, pkt = result.request, result.packet
    return {
        "node": req.node,
        "mode": result.mode,
        "backends": result.backends,
        "packet": {"src": pkt.src, "sport": pkt.sport, "dst": pkt.dst, "dport": pkt.dport, "proto": pkt.proto,
                   "state": pkt.ctstate, "iif": pkt.iif, "mark": pkt.mark,
                   "path": "locally generated" if result.local_origin else "arriving"},
        "from": req.src.label, "to": req.dst.label,
        "complete": result.complete and not result.error,
        "error": result.error,
        "notes": result.notes,
        "endpoints": [{"target": k, "p": v, "belongs_to": result.labels.of(k.rsplit(":", 1)[0].strip("[]"))
                       if result.labels and k else ""} for k, v in sorted(endpoint_set(result).items())],
        "outcomes": outcomes(result),
    }


def render_json(result: TraceResult) -> str:
    return json.dumps(to_dict(result), indent=2, sort_keys=False)


def explain(result: TraceResult) -> list[str]:
    """Sentences naming the cause of each outcome that is not delivered. Outcomes that differ only in what the
    trace had to assume (an interface name it does not know, ...) are said once, with the assumptions named."""
    entries: dict[tuple[str, tuple[str, ...]], list[list[str]]] = {}  # (share, sentences) -> assumption lists
    for o in outcomes(result):
        share = _pct(o["p"])
        if o["verdict"] == "accept":
            where = _addr(result, o["final_dst"], o["final_dport"])
            nat = f", DNAT {o['dnat_to']}" if o["dnat_to"] else ", not translated"
            snat = " with source masqueraded" if o["masquerade"] else (f" SNAT to {o['snat_to']}" if o["snat_to"] else "")
            entries.setdefault((share, (f"delivered to {where}{nat}{snat}.",)), []).append(o["assumptions"])
            continue
        by = o["decided_by"] or {}
        where = by.get("where", "")
        text = by.get("text", "")
        source = by.get("source", "")
        later = _later_chains(o["steps"])
        before = f" before {later}" if later else ""
        verb = _VERB.get(o["verdict"], o["verdict"])
        cause = firewall_cause(o["steps"], by)
        fw = _safe(sentence(cause, by.get("kind") == "policy")) if cause else ""
        nat = f" (after DNAT to {o['dnat_to']})" if o["dnat_to"] else ""
        said = [f"{verb} by {_safe(where)} ({_safe(text)}) at {_safe(source) or 'n/a'}{before}{fw}{nat}."]
        for also in o["also_blocked_by"]:
            said.append(f"  Fixing that is not enough: it would then be {_VERB.get(also.get('detail', ''), 'stopped')} "
                        f"by {_safe(also.get('where', ''))} ({_safe(also.get('text', ''))}) at "
                        f"{_safe(also.get('source', ''))}.")
        entries.setdefault((share, tuple(said)), []).append(o["assumptions"])
    out: list[str] = []
    for (share, sentences), conds in entries.items():
        if len(conds) == 1:
            cond = f" (if {'; '.join(conds[0])})" if conds[0] else ""
        else:
            labels = sorted({a.rsplit(": ", 1)[0] for c in conds for a in c})
            cond = f" (in {len(conds)} assumed cases, on: {'; '.join(labels)})"
        out.append(f"{share}{_safe(cond)}: {sentences[0]}")
        out.extend(sentences[1:])
    if not result.complete:
        out.append("Partial: " + "; ".join(result.notes + ([result.error] if result.error else [])))
    return out


# kube-proxy's chains a packet meets at each hook (iptables mode), first the one to name when it was not reached
_KUBE_AT_HOOK = {"prerouting": ("KUBE-SERVICES", "KUBE-NODEPORTS"), "output": ("KUBE-SERVICES", "KUBE-NODEPORTS"),
                 "forward": ("KUBE-FORWARD",), "input": ("KUBE-NODEPORTS",)}


def _later_chains(steps: list[dict[str, str]]) -> str:
    """Which kube-proxy chain of the hook where the packet was stopped it had not reached (for the explanation)."""
    seen = " ".join(s.get("text", "") for s in steps)
    if "KUBE-" not in seen:
        return ""  # not kube-proxy's iptables rules (nftables mode, or no kube-proxy on the path)
    hooks = [s.get("text", "").split(" ", 1)[0] for s in steps if s.get("kind") == "hook"]
    hook = next((h for h in reversed(hooks) if h in _KUBE_AT_HOOK), "")
    for chain in _KUBE_AT_HOOK.get(hook, ()):
        if chain not in seen:
            return chain
    return ""


def render_text(result: TraceResult, *, colour: bool = False, show_explain: bool = False) -> str:
    req, pkt = result.request, result.packet
    lines = [
        f"trace on node {_safe(req.node)} (kube-proxy mode: {result.mode or 'unknown'}; walked: "
        f"{', '.join(result.backends)})",
        f"packet: {pkt.proto} {_addr(result, pkt.src, pkt.sport)} -> {_addr(result, pkt.dst, pkt.dport)}, "
        f"state {pkt.ctstate}, {'locally generated' if result.local_origin else 'arriving'}"
        + (f" on {pkt.iif}" if pkt.iif else ""),
    ]
    for note in result.notes:
        lines.append(f"note: {_safe(note)}")
    if result.error:
        lines.append(_paint(f"stopped: {result.error}", "33", colour))
    eps = endpoint_set(result)
    if any(eps):
        parts = [f"{_addr(result, *_split(k)) if k else 'not translated'} {_pct(v)}" for k, v in sorted(eps.items())]
        lines.append("endpoints: " + ", ".join(parts))
    for i, o in enumerate(outcomes(result), 1):
        verdict = _paint(o["verdict"].upper(), _COLOURS.get(o["verdict"], "0"), colour)
        lines.append("")
        lines.append(f"outcome {i}: {verdict} p={_pct(o['p'])}"
                     + (f" DNAT {o['dnat_to']}" if o["dnat_to"] else "")
                     + (" MASQUERADE" if o["masquerade"] else "") + (f" SNAT {o['snat_to']}" if o["snat_to"] else ""))
        for a in o["assumptions"]:
            lines.append(f"  assuming {_safe(a)}")
        for also in o["also_blocked_by"]:
            lines.append(f"  also blocked by {_safe(also['where'])}: {_safe(also['text'])} => {_safe(also.get('detail', ''))}"
                         + (f"  [{_safe(also['source'])}]" if also.get("source") else ""))
        for s in o["steps"]:
            src = f"  [{_safe(s['source'])}]" if s.get("source") else ""
            detail = f"  => {_safe(s['detail'])}" if s.get("detail") else ""
            head = f"{s['kind']:<7}"
            if s["kind"] == "hook":
                lines.append(f"  {head} {_safe(s['text'])}{detail}")
            else:
                lines.append(f"    {head} {_safe(s['where'])}: {_safe(s['text'])}{detail}{src}")
    if show_explain:
        lines.append("")
        lines.extend(explain(result))
    return "\n".join(lines) + "\n"


def _split(target: str) -> tuple[str, int | None]:
    from kpdoctor.trace.ipnet import split_host_port

    return split_host_port(target)
