"""The one-sentence verdict, the fix and the exit code of `kpdoctor why`, from API causes and node behaviour.

Exit code: 0 when nothing is wrong (or only notes, or nothing could be evaluated: the verdict says so,
it never claims "reachable" from what it did not see); 1 when a cause blocks the Service or some nodes
(or clients) fail it.
"""

from __future__ import annotations

from kpdoctor.why.model import Cause, NodeBehaviour, WhyReport

BAD_NODE = ("no-rules", "wrong-verdict", "stale", "missing-endpoints", "broken")


def _node_fix(nb: NodeBehaviour) -> str:
    if nb.status == "stale" or nb.status == "missing-endpoints":
        return (f"make kube-proxy on {nb.node} sync again (its rules are frozen at an old state), then delete the "
                "conntrack entries NATed to the removed endpoints")
    if nb.status == "no-rules":
        return f"get kube-proxy running on {nb.node} (it has no Service rules); keep the node out of service meanwhile"
    if nb.status == "broken":
        return f"fix the node-wide fault on {nb.node} ({', '.join(sorted({c.split(':', 1)[0] for c in nb.conditions}))})"
    return f"make kube-proxy on {nb.node} resync (its rules differ from the API)"


def _short(message: str, limit: int = 110) -> str:
    """The first clause of a finding's message."""
    cut = min((i for i in (message.find(": "), message.find(" (")) if i > 0), default=len(message))
    text = message[:cut]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bad_line(nb: NodeBehaviour) -> str:
    if nb.status == "broken":
        return f"{nb.node}: " + "; ".join(_short(c.split(": ", 1)[-1]) for c in nb.conditions[:2])
    return f"{nb.node}: {nb.status}, {nb.summary}" if nb.summary else f"{nb.node}: {nb.status}"


def decide(report: WhyReport) -> None:
    """Fill report.verdict, .fix, .exit_code, .evidence and .commands."""
    svc = str(report.target)
    blocking = [c for c in report.causes if c.severity == "blocking"]
    partial = [c for c in report.causes if c.severity == "partial"]
    served_elsewhere = [c for c in report.causes if c.code in ("external-name", "headless", "other-proxy")]
    evaluated = [nb for nb in report.nodes if nb.status != "not-evaluated"]
    bad = [nb for nb in evaluated if nb.status in BAD_NODE]
    good = [nb for nb in evaluated if nb.status not in BAD_NODE]
    observed = [nb for nb in evaluated if nb.status == "observed"]
    where = f" for {report.client}" if report.client.kind != "anywhere" else ""
    if blocking:
        _lead_with(report, blocking[0], f"{svc} is not reachable{where}: {blocking[0].headline}.", exit_code=1)
        return
    if served_elsewhere and not bad:
        _lead_with(report, served_elsewhere[0], f"{served_elsewhere[0].headline}.")
        return
    if report.service_found is None:  # no API: what the nodes' rules say, nothing to compare them with
        _observed_verdict(report, observed, svc)
        return
    if bad:
        report.exit_code = 1
        lines = [_bad_line(nb) for nb in bad]
        if not good:
            among = " among those checked" if report.unchecked_nodes else ""
            report.verdict = (f"{svc} has no healthy node{among}: " + "; ".join(lines[:3])
                              + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "") + ".")
        else:
            report.verdict = (f"{svc} works from {len(good)} node(s) but not from {len(bad)}: "
                              + "; ".join(lines[:3]) + ".")
        risky = [nb.node for nb in good if nb.status == "at-risk"]
        if risky:
            report.verdict += f" ({', '.join(risky)}: rules correct now but frozen, kube-proxy is not syncing there.)"
        report.fix = "; ".join(dict.fromkeys(_node_fix(nb) for nb in bad)) + "."
        for nb in bad:
            report.evidence += [f"{nb.node}: {fb.describe()}" for fb in nb.frontends if fb.status != "ok"]
            report.evidence += [f"{nb.node}: {c}" for c in nb.conditions]
            report.commands += [c for c in nb.commands if c not in report.commands]
        if partial:
            report.evidence.append(f"also: {partial[0].headline}")
        return
    if partial:
        _lead_with(report, partial[0], f"{svc} is reachable only partly{where}: {partial[0].headline}.", exit_code=1)
        return
    if not evaluated:
        reason = "no node was evaluated (" + (report.nodes[0].summary if report.nodes else "no node access") + ")"
        report.verdict = (f"no API-level cause found for {svc}; {reason}: what the nodes do with it is not known. "
                          "Give kpdoctor node access (--bundle, --transport) to check their rules.")
        return
    risky = [nb.node for nb in good if nb.status == "at-risk"]
    if risky:
        report.evidence += [f"{nb.node}: {c}" for nb in good if nb.status == "at-risk" for c in nb.conditions]
    every = "every node checked" if report.unchecked_nodes else "every node"
    report.verdict = (f"{svc} is reachable from {every} ({len(good)} node{'s' if len(good) != 1 else ''}: the rules "
                      "match the API and the endpoints are ready)" if report.client.node is None else
                      f"{svc} is reachable{where} (its node's rules match the API and the endpoints are ready)")
    unseen = len(report.nodes) - len(evaluated) + len(report.unchecked_nodes)
    report.verdict += "." if not unseen else f"; {unseen} node(s) not evaluated."
    if risky:
        report.verdict += f" At risk: {', '.join(risky)} (kube-proxy not syncing: rules frozen, the next change breaks it)."


def _lead_with(report: WhyReport, cause: Cause, verdict: str, exit_code: int | None = None) -> None:
    """`cause` is the verdict: its sentence, its fix, its evidence and commands (and the exit code when given)."""
    report.verdict = verdict
    report.fix = cause.fix
    _take(report, cause)
    if exit_code is not None:
        report.exit_code = exit_code


def _take(report: WhyReport, cause: Cause) -> None:
    report.evidence += list(cause.evidence)
    report.commands += [c for c in cause.commands if c not in report.commands]


def _observed_verdict(report: WhyReport, observed: list[NodeBehaviour], svc: str) -> None:
    failing = [(nb, fb) for nb in observed for fb in nb.frontends if fb.verdict != "dnat"]
    if failing:
        report.exit_code = 1
        nb, fb = failing[0]
        others = len({n.node for n, _ in failing}) - 1
        report.verdict = (f"without the API: node {nb.node} {_verb(fb)}"
                          + (f" (and {others} more node(s) likewise)" if others else "") + ".")
        report.fix = ("The Service has no endpoints the node knows of: check its selector and pods with the API "
                      "(kpdoctor why against the cluster or a bundle with cluster/).")
    elif _disagree(observed):
        report.exit_code = 1
        report.verdict = f"without the API: the nodes disagree about {svc}: " + "; ".join(_disagree(observed)[:3]) + \
            " - one of them is stale (the API would say which)."
        report.fix = "Run kpdoctor why against the cluster (or a bundle with cluster/) to tell the stale node."
    elif observed:
        targets = sorted({e for nb in observed for fb in nb.frontends for e in fb.endpoints})
        report.verdict = (f"without the API: the nodes' rules load-balance {svc} to {', '.join(targets[:5])}"
                          + (" ..." if len(targets) > 5 else "") + " (not compared with the API: staleness is unknown).")
    else:
        report.verdict = f"without the API and with no node rules naming {svc}: nothing could be evaluated."
    for nb in observed:
        report.evidence += [f"{nb.node} ({nb.mode}): {fb.describe()}" for fb in nb.frontends]


def _verb(fb: object) -> str:
    frontend = getattr(fb, "frontend", "")
    address = frontend.split(" ", 1)[-1].rsplit("/", 1)[0]
    verdict = getattr(fb, "verdict", "")
    comment = getattr(fb, "comment", "")
    if verdict == "reject":
        return f"rejects {address}" + (f" with '{comment}'" if comment else "")
    if verdict == "drop":
        return f"drops {address}" + (f" ('{comment}')" if comment else "")
    return f"has no rule for {address}"


def _disagree(observed: list[NodeBehaviour]) -> list[str]:
    """Per frontend, the DNAT targets only some nodes have (`edge-1 alone sends to 10.244.53.12:8080`)."""
    seen: dict[str, dict[str, frozenset[str]]] = {}
    for nb in observed:
        for fb in nb.frontends:
            seen.setdefault(fb.frontend, {})[nb.node] = frozenset(fb.endpoints)
    out: list[str] = []
    for frontend, per_node in sorted(seen.items()):
        if len(per_node) < 2 or len(set(per_node.values())) == 1:
            continue
        everyone = frozenset.intersection(*per_node.values())
        for node, eps in sorted(per_node.items()):
            odd = sorted(eps - everyone)
            if odd:
                out.append(f"{node} alone sends {frontend} to {', '.join(odd)}")
    return out
