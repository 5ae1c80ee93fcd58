"""One root cause, one headline: link the report's findings to the cause they share (issue 10, item 3).

A node whose kube-proxy is down (or cannot run its mode) produces four or five
findings from different checks: the pod crash-loops, the DaemonSet is not
ready, nothing answers on :10256, the Service rules are stale. They are one
fault. This module decides, per node, which finding is the cause (the first
of CAUSE_RANK present on that node) and marks every other warning-or-worse
finding on the same node(s) of a CONSEQUENCE check as its consequence.

It works on the report dict (the JSON, source of truth): every group and
occurrence keeps its place and its evidence, gains a `cause` reference (the
cause's id, "" when it is its own cause), and the report gains a top-level
`causes` list: one headline per cause, its consequences, and the union of the
remediation commands of cause and consequences, deduplicated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kpdoctor.cluster.state import ClusterState

# (check id, subject prefix) of findings that can be a node's root cause, most fundamental first.
CAUSE_RANK: tuple[tuple[str, str], ...] = (
    ("KP-PROXIER-MODE", "Node "),  # the configured mode cannot run on this node: kube-proxy exits
    ("KP-KERNEL-MODULES", "Node "),  # the kernel lacks what the mode needs
    ("KP-PROXY-HEALTH", "Pod "),  # kube-proxy's pod on the node is not running
    ("KP-PROXY-NODE-HEALTH", "Node "),  # kube-proxy does not answer on the node
    ("KP-BACKEND-SPLIT", "Node "),  # a second, frozen copy of the rules
)
# The causes that mean kube-proxy is not running on the node (and so neither is its health check node port).
KUBE_PROXY_DOWN = frozenset({0, 2, 3})
# Checks whose findings are symptoms when a cause exists on the same node.
CONSEQUENCE = frozenset({"KP-STALE-ENDPOINTS", "KP-PROXY-HEALTH", "KP-PROXY-NODE-HEALTH", "KP-KERNEL-MODULES",
                         "KP-SYNC-LAG"})
_MIN = ("warning", "error", "critical")


def _rank(check: str, subject: str) -> int | None:
    for i, (cid, prefix) in enumerate(CAUSE_RANK):
        if check == cid and subject.startswith(prefix):
            return i
    return None


def occurrence_nodes(occ: Mapping[str, Any], cluster: ClusterState | None) -> list[str]:
    """The nodes a finding is about: its scope, or for a cluster finding about a kube-proxy Pod its node,
    about a DaemonSet the nodes of its pods that are not ready."""
    if occ["scope"] != "cluster":
        return [occ["scope"]]
    if cluster is None:
        return []
    subject = occ["subject"]
    if subject.startswith("Pod "):
        key = subject[4:]
        return [p.node_name for p in cluster.pods if p.key == key and p.node_name]
    if subject.startswith("DaemonSet "):
        key = subject[10:]
        ns, _, name = key.partition("/")
        return sorted({p.node_name for p in cluster.pods if p.namespace == ns and p.owner_name == name
                       and p.node_name and not p.ready})
    return []


def _short(message: str, limit: int = 110) -> str:
    """The first clause of a message: what a headline can carry."""
    head = message.split(": ", 1)[0].split(". ", 1)[0].strip()
    return head if len(head) <= limit else head[: limit - 1].rstrip() + "…"


_PHRASE = {
    ("KP-PROXY-HEALTH", "DaemonSet "): "DaemonSet not ready",
    ("KP-PROXY-HEALTH", "Pod "): "kube-proxy pod not running",
    ("KP-PROXY-NODE-HEALTH", "Node "): "nothing answers on :10256/:10249",
    ("KP-KERNEL-MODULES", "Node "): "kernel modules for the mode missing",
    ("KP-STALE-ENDPOINTS", "Node "): "no Service rules on the node",
    ("KP-SYNC-LAG", "Node "): "rules not synced",
}


def _consequence_phrase(items: list[dict[str, Any]]) -> list[str]:
    dead = sorted({c["subject"] for c in items if c["check"] == "KP-NODEPORT-FIREWALL"})
    services = sorted({c["subject"].split(":", 1)[0] for c in items if c["subject"].startswith("Service ")
                       and c["check"] != "KP-NODEPORT-FIREWALL"})
    out = []
    if services:
        out.append(f"{len(services)} Service{'s' if len(services) != 1 else ''} with stale or missing rules")
    if dead:
        out.append(f"{len(dead)} Service{'s' if len(dead) != 1 else ''} no node can serve "
                   f"({', '.join(d[8:] for d in dead[:3])}{', ...' if len(dead) > 3 else ''})")
    for c in items:
        if c["subject"].startswith("Service "):
            continue
        phrase = next((v for (cid, prefix), v in _PHRASE.items()
                       if c["check"] == cid and c["subject"].startswith(prefix)), None)
        phrase = phrase or f"{c['check']} {c['subject']}"
        if phrase not in out:
            out.append(phrase)
    return out


def endpoint_nodes(cluster: ClusterState | None) -> dict[str, list[str]]:
    """Service `ns/name` -> the nodes of its ready endpoints (EndpointSlices)."""
    out: dict[str, set[str]] = {}
    for sl in cluster.endpoint_slices if cluster is not None else ():
        nodes = out.setdefault(sl.service_key, set())
        nodes.update(e.node_name for e in sl.endpoints if e.ready and e.node_name)
    return {k: sorted(v) for k, v in out.items()}


def _entry(causes: dict[str, dict[str, Any]], check: Mapping[str, Any], group: Mapping[str, Any],
           occ: dict[str, Any], cluster: ClusterState | None) -> dict[str, Any]:
    """The `causes` entry of the cause finding `occ` (made on first use)."""
    cause_id = f"{check['id']}/{occ['subject']}"
    if cause_id not in causes:
        causes[cause_id] = {"id": cause_id, "check": check["id"], "subject": occ["subject"],
                            "severity": group["severity"], "message": occ["message"],
                            "nodes": sorted(occurrence_nodes(occ, cluster)), "group": group["id"],
                            "consequences": [], "_cause": occ}
    return causes[cause_id]


def _listed_services(occ: Mapping[str, Any], parsed: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Services `ns/name` of a KP-NODEPORT-FIREWALL eTP=Local note: its `services` label (a JSON list; the
    one note per node lists them all; parsed once per distinct label in `parsed`), else its subject."""
    label = occ["labels"].get("services", "")
    if label not in parsed:
        try:
            listed = json.loads(label) if label else []
        except ValueError:
            listed = []
        names = [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else []
        parsed[label] = tuple(dict.fromkeys(n.split(":", 1)[0] for n in names))
    if parsed[label]:
        return parsed[label]
    return (occ["subject"][8:].split(":", 1)[0],) if occ["subject"].startswith("Service ") else ()


def _unservable(flat: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]],
                by_node: Mapping[str, tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]],
                causes: dict[str, dict[str, Any]], cluster: ClusterState | None) -> None:
    """An eTP=Local NodePort that drops "by design" on nodes without endpoints is no "nothing to fix" when
    every node that has its endpoints is down through a cause: then no node serves that Service (the load
    balancer's health check on those nodes is kube-proxy's own). Linked to the cause as a consequence of its
    own, at error: a Service with endpoints that no node can serve."""
    if not any(rank in KUBE_PROXY_DOWN for rank, *_rest in by_node.values()):
        return
    homes_of = endpoint_nodes(cluster)
    parsed: dict[str, tuple[str, ...]] = {}
    verdict: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None] = {}  # Service -> its cause
    linked: set[tuple[str, str]] = set()  # (cause id, Service) already among that cause's consequences
    seeded: set[str] = set()
    for check, group, occ, _nodes in flat:
        if check["id"] != "KP-NODEPORT-FIREWALL" or "externalTrafficPolicy: Local" not in occ["message"] \
                or group["silenced"]:
            continue
        for service in _listed_services(occ, parsed):
            if service not in verdict:  # the same on every node: decided once per Service
                homes = homes_of.get(service, [])
                down = {n: by_node[n] for n in homes if n in by_node and by_node[n][0] in KUBE_PROXY_DOWN}
                found = {cause[3]["subject"]: cause for cause in down.values()}
                verdict[service] = next(iter(found.values()))[1:] if homes and len(found) == 1 and \
                    len(down) == len(homes) else None
            cause = verdict[service]
            if cause is None:
                continue
            entry = _entry(causes, *cause, cluster)
            occ["cause"] = occ["cause"] or entry["id"]  # a node's one note lists many Services: its first cause
            if entry["id"] not in seeded:  # what the cause already lists (other checks' consequences)
                seeded.add(entry["id"])
                linked.update((entry["id"], c["subject"][8:]) for c in entry["consequences"]
                              if c["subject"].startswith("Service "))
            if (entry["id"], service) in linked:
                continue
            linked.add((entry["id"], service))
            entry["consequences"].append({
                "check": check["id"], "group": group["id"], "subject": f"Service {service}", "severity": "error",
                "message": (f"Service {service} has endpoints, but no node can serve it: externalTrafficPolicy: "
                            f"Local and its ready endpoints are only on {', '.join(homes_of[service])}, where the "
                            "cause above stops kube-proxy (and with it the health check node port the load "
                            "balancer asks); every other node drops its NodePort by design")})


def attach_causes(report: dict[str, Any], cluster: ClusterState | None) -> None:
    """Add `id`/`cause` to every group, `cause` to every occurrence, and the top-level `causes` list."""
    flat: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]] = []
    seen: set[str] = set()
    for check in report["checks"]:
        for group in check["groups"]:
            gid = f"{check['id']}/{group['subject']}"
            n = 1
            while gid in seen:  # one subject, two messages or severities: two groups, two ids
                n += 1
                gid = f"{check['id']}/{group['subject']}#{n}"
            seen.add(gid)
            group["id"] = gid
            group["cause"] = ""
            for occ in group["occurrences"]:
                occ["cause"] = ""
                flat.append((check, group, occ, occurrence_nodes(occ, cluster)))
    live = [(c, g, o, n) for c, g, o, n in flat
            if n and not g["silenced"] and not g["not_evaluated"] and g["severity"] in _MIN]
    # the cause on each node: the most fundamental cause-type finding there
    by_node: dict[str, tuple[int, dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
    for check, group, occ, nodes in live:
        rank = _rank(check["id"], occ["subject"])
        if rank is None:
            continue
        for node in nodes:
            if node not in by_node or rank < by_node[node][0]:
                by_node[node] = (rank, check, group, occ)
    causes: dict[str, dict[str, Any]] = {}
    for check, group, occ, nodes in live:
        found = {id(by_node[n][3]): by_node[n] for n in nodes if n in by_node}
        if len(found) != 1 or len(nodes) != sum(1 for n in nodes if n in by_node):
            continue
        rank, ccheck, cgroup, cocc = next(iter(found.values()))
        if cocc is occ:
            continue
        own = _rank(check["id"], occ["subject"])
        if check["id"] not in CONSEQUENCE and own is None:
            continue
        if own is not None and own <= rank:
            continue
        entry = _entry(causes, ccheck, cgroup, cocc, cluster)
        occ["cause"] = entry["id"]
        # "message": only what the cause adds to the finding (its own message is in its occurrence)
        entry["consequences"].append({"check": check["id"], "group": group["id"], "subject": occ["subject"],
                                      "severity": group["severity"], "message": ""})
    _unservable(flat, by_node, causes, cluster)
    for check in report["checks"]:
        for group in check["groups"]:
            refs = {o["cause"] for o in group["occurrences"]}
            group["cause"] = refs.pop() if len(refs) == 1 else ""
    order = {s: i for i, s in enumerate(("critical", "error", "warning", "info"))}
    caused: dict[str, list[dict[str, Any]]] = {}
    for _c, _g, o, _n in flat:
        if o["cause"]:
            caused.setdefault(o["cause"], []).append(o)
    out = []
    for entry in causes.values():
        cocc = entry.pop("_cause")
        worst = min((c["severity"] for c in entry["consequences"]), key=order.__getitem__, default=entry["severity"])
        entry["severity"] = min(entry["severity"], worst, key=order.__getitem__)
        commands: list[str] = []
        for rem in [cocc["remediation"], *(o["remediation"] for o in caused.get(entry["id"], ()))]:
            for cmd in (rem or {}).get("commands", ()):
                if cmd not in commands:
                    commands.append(cmd)
        entry["commands"] = commands
        where = ", ".join(entry["nodes"]) or "cluster"
        entry["headline"] = (f"{where}: {_short(entry['message'])} → "
                             + ", ".join(_consequence_phrase(entry["consequences"])))
        out.append(entry)
    out.sort(key=lambda e: (order[e["severity"]], e["nodes"], e["id"]))
    report["causes"] = out


def covered_commands(report: Mapping[str, Any], group: Mapping[str, Any]) -> set[str]:
    """Commands of `group` already printed under a cause headline (renderers print each command once)."""
    out: set[str] = set()
    for cause in report.get("causes", ()):
        if cause["id"] == group.get("cause") or cause["group"] == group.get("id"):
            out.update(cause["commands"])
    return out
