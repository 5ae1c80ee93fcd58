"""The typed results of `kpdoctor why`: causes, node behaviour, groups and the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# blocking: the Service (or the named client's path to it) does not work; partial: some connections or
# some nodes fail; note: worth knowing, not a fault; not-evaluated: a fact that could not be read.
Severity = Literal["blocking", "partial", "note", "not-evaluated"]
SEVERITY_ORDER: dict[str, int] = {"blocking": 0, "partial": 1, "note": 2, "not-evaluated": 3}


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    port: str | None = None  # a port name or number as the user wrote it

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"svc/{self.key}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Client:
    """Where the connection comes from (`--from`): anywhere (unset), a pod, a node, outside, an IP."""

    kind: Literal["anywhere", "pod", "node", "external", "ip"] = "anywhere"
    value: str = ""
    node: str | None = None  # the node the client's packets go through first, when known
    zone: str | None = None

    def __str__(self) -> str:
        if self.kind == "anywhere":
            return "any client"
        where = f" (on node {self.node})" if self.node and self.kind != "node" else ""
        return f"{self.kind} {self.value}{where}" if self.value else self.kind


@dataclass(frozen=True)
class Cause:
    code: str  # stable id, e.g. "selector-matches-no-pods"
    severity: Severity
    headline: str  # one sentence
    fix: str = ""
    evidence: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class FrontendBehaviour:
    frontend: str  # e.g. "ClusterIP 10.96.150.30:80/TCP"
    verdict: str  # dnat | reject | drop | none (no rule)
    endpoints: tuple[str, ...] = ()
    expected_verdict: str | None = None  # None: no API to compare with
    expected_endpoints: tuple[str, ...] = ()
    status: str = "ok"  # ok | stale | missing-endpoints | wrong-verdict | no-rule | extra | observed
    stale: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    comment: str = ""  # the rule's own words (e.g. "has no endpoints"), when the dump says

    def describe(self) -> str:
        if self.verdict == "dnat":
            what = f"DNAT to {', '.join(self.endpoints)}" if self.endpoints else "DNAT"
        elif self.verdict == "reject":
            what = "REJECT (connection refused)" + (f" with '{self.comment}'" if self.comment else "")
        elif self.verdict == "drop":
            what = "DROP (clients time out)" + (f" ('{self.comment}')" if self.comment else "")
        else:
            what = "nothing (no rule: not load-balanced)"
        return f"{self.frontend}: {what}"


# node status, worst first
NODE_STATUS_ORDER = ("no-rules", "wrong-verdict", "stale", "missing-endpoints", "broken", "extra", "at-risk",
                     "observed", "ok", "not-evaluated")


@dataclass(frozen=True)
class NodeBehaviour:
    node: str
    status: str  # one of NODE_STATUS_ORDER
    summary: str  # what the node does with the Service, in words (no node name in it: used for grouping)
    mode: str = ""
    rules_source: str = ""  # the fact the rules were read from
    frontends: tuple[FrontendBehaviour, ...] = ()
    conditions: tuple[str, ...] = ()  # node-wide faults that break (or freeze) the Service on this node
    commands: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        return self.status in ("ok", "observed") and not self.conditions


@dataclass(frozen=True)
class NodeGroup:
    status: str
    summary: str
    nodes: tuple[str, ...]

    def line(self) -> str:
        who = self.nodes[0] if len(self.nodes) == 1 else f"{len(self.nodes)} nodes ({_names(self.nodes)})"
        label = "OK" if self.status == "ok" else self.status
        return f"{who}: {label}" + (f", {self.summary}" if self.summary else "")


def _names(nodes: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(nodes[:limit])
    return shown + (f", +{len(nodes) - limit} more" if len(nodes) > limit else "")


@dataclass
class WhyReport:
    target: Target
    client: Client
    source: str  # where the cluster/nodes were read from
    service_found: bool | None  # None: no API to look in
    verdict: str = ""
    fix: str = ""
    exit_code: int = 0
    causes: list[Cause] = field(default_factory=list)
    nodes: list[NodeBehaviour] = field(default_factory=list)
    groups: list[NodeGroup] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    not_evaluated: list[str] = field(default_factory=list)
    unchecked_nodes: list[str] = field(default_factory=list)  # the cluster's nodes whose rules were not read
