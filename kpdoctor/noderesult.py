"""One node's check results as a compact JSON document, and the central merge of many of them.

For large clusters the node checks run next to each node (issue 14: a collector pod per node) and only
their findings come back, not the node's multi-megabyte dumps; the central process runs the cluster checks
and merges. `encode` is the node side, `decode` reads a document from outside (hostile: shape and size
checked, InputError naming the document), `merge` builds the one ScanResult the renderers take. Merging the
per-node results of a scan gives the same findings, runs and report as checking every node centrally
(tests/node/test_noderesult.py, on the demo bundle's real kube-proxy nodes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kpdoctor.checks_api import Check
from kpdoctor.engine import CheckRun, ScanResult, settle_status
from kpdoctor.errors import InputError
from kpdoctor.findings import Finding, Remediation, Severity
from kpdoctor.gcpause import gc_paused
from kpdoctor.node.state import NodeState
from kpdoctor.silences import SilenceSet

FORMAT = "kpdoctor-node-result/v1"
MAX_FINDINGS = 100_000  # per node
MAX_TEXT = 1 << 16  # characters per string field
MAX_ITEMS = 256  # evidence lines, remediation commands, labels per finding
MAX_LABEL = 1 << 20  # characters per label value (KP-NODEPORT-FIREWALL's `services`: every eTP=Local Service)


@dataclass
class NodeRun:
    check: str
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class NodeResult:
    node: NodeState  # name, transport, address, error: no facts
    service_proxy: str = ""
    runs: list[NodeRun] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # this node's, unreachable finding included
    omitted: dict[str, int] = field(default_factory=dict)  # check id -> findings below min_severity, not sent


def _finding_doc(f: Finding) -> dict[str, Any]:
    return {
        "check": f.check_id, "severity": f.severity.label, "subject": f.subject, "message": f.message,
        "evidence": list(f.evidence), "docs": f.docs, "not_evaluated": f.not_evaluated,
        "remediation": None if f.remediation is None else {"text": f.remediation.text,
                                                           "commands": list(f.remediation.commands)},
        "labels": [list(kv) for kv in f.labels],
    }  # fmt: skip


def encode(result: ScanResult, node: str, *, min_severity: Severity | None = None) -> dict[str, Any]:
    """The node side: `result` is a run of the node checks on (at least) `node`; keep what concerns it.
    With `min_severity`, findings below it (evaluated ones: never a "not evaluated") are only counted: at
    10,000 Services a node has hundreds of informational notes that are the same on every node."""
    state = next(n for n in result.nodes if n.name == node)
    kept: list[dict[str, Any]] = []
    omitted: dict[str, int] = {}
    for f in result.findings:
        if f.scope != node or f.silenced_reason:
            continue
        if min_severity is not None and f.severity < min_severity and not f.not_evaluated:
            omitted[f.check_id] = omitted.get(f.check_id, 0) + 1
        else:
            kept.append(_finding_doc(f))
    return {
        "format": FORMAT,
        "node": {"name": state.name, "transport": state.transport, "address": state.address, "error": state.error},
        "service_proxy": result.service_proxies.get(node, ""),
        "runs": [{"check": r.check.id, "duration_s": r.duration, "errors": [e for e in r.errors if e.startswith(f"{node}: ")]}
                 for r in result.runs if node in r.evaluated],  # fmt: skip
        "findings": kept,
        "omitted": omitted,
    }


def _text(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what}: expected a string, got {type(value).__name__}", where=where)
    if len(value) > MAX_TEXT:
        raise InputError(f"{what}: longer than {MAX_TEXT} characters", where=where)
    return value


def _texts(value: Any, what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise InputError(f"{what}: expected a list of at most {MAX_ITEMS} strings", where=where)
    return tuple(_text(v, what, where) for v in value)


def _obj(value: Any, what: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{what}: expected an object, got {type(value).__name__}", where=where)
    return value


_SEVERITIES = {s.label: s for s in Severity}


class _Bad(Exception):
    """A fast-path check failed: the slow path (_finding_error) names the field in the InputError."""


class Interner:
    """One object per distinct value over every node result decoded with it: 1,000 nodes send the same
    docs URL, remediation texts and commands, evidence lines; kept once, the merge of their findings costs
    memory for what differs, not for what repeats (a node's name makes its messages differ anyway)."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.remediations: dict[tuple[str, tuple[str, ...]], Remediation] = {}

    def text(self, value: Any, limit: int = MAX_TEXT) -> str:
        if type(value) is not str or len(value) > limit:
            raise _Bad
        return self.strings.setdefault(value, value)

    def texts(self, value: Any) -> tuple[str, ...]:
        if type(value) is not list or len(value) > MAX_ITEMS:
            raise _Bad
        key = tuple([self.text(v) for v in value])
        return self.tuples.setdefault(key, key)

    def remediation(self, text: str, commands: tuple[str, ...]) -> Remediation:
        key = (text, commands)
        found = self.remediations.get(key)
        if found is None:
            found = self.remediations[key] = Remediation(text, commands)
        return found


def _finding(doc: Any, node: str, i: int, where: str, strings: Interner) -> Finding:
    """A finding from outside, every field checked (type, length, count); repeated values interned."""
    try:
        if type(doc) is not dict:
            raise _Bad
        get = doc.get
        sev = get("severity")
        severity = _SEVERITIES.get(sev) if type(sev) is str else None
        if severity is None and type(sev) is str:
            try:
                severity = Severity.parse(sev)  # " Error", "WARNING": what Severity.parse accepts
            except ValueError:
                raise _Bad from None
        rem = get("remediation")
        labels = get("labels", [])
        not_evaluated = get("not_evaluated", False)
        if severity is None or type(not_evaluated) is not bool or type(labels) is not list or \
                len(labels) > MAX_ITEMS or not (rem is None or type(rem) is dict):
            raise _Bad
        remediation = None if rem is None else strings.remediation(strings.text(rem.get("text", "")),
                                                                   strings.texts(rem.get("commands", [])))
        pairs: tuple[tuple[str, str], ...] = ()
        if labels:
            if not all(type(kv) is list and len(kv) == 2 for kv in labels):
                raise _Bad
            pairs = tuple((strings.text(k), strings.text(v, MAX_LABEL)) for k, v in labels)
        return Finding(
            check_id=strings.text(get("check")), severity=severity, scope=node, subject=strings.text(get("subject")),
            message=strings.text(get("message")), evidence=strings.texts(get("evidence", [])),
            remediation=remediation, docs=strings.text(get("docs", "")), not_evaluated=not_evaluated, labels=pairs,
        )  # fmt: skip
    except _Bad:
        _finding_error(doc, i, where)
        raise InputError(f"findings[{i}]: not a finding", where=where) from None


def _finding_error(doc: Any, i: int, where: str) -> None:
    """Raise the InputError naming the field of findings[i] that is wrong (the slow path of _finding)."""
    what = f"findings[{i}]"
    d = _obj(doc, what, where)
    try:
        Severity.parse(_text(d.get("severity"), f"{what}.severity", where))
    except ValueError as exc:
        raise InputError(f"{what}.severity: {exc}", where=where) from None
    rem = d.get("remediation")
    if rem is not None:
        r = _obj(rem, f"{what}.remediation", where)
        _text(r.get("text", ""), f"{what}.remediation.text", where)
        _texts(r.get("commands", []), f"{what}.remediation.commands", where)
    labels = d.get("labels", [])
    if not isinstance(labels, list) or len(labels) > MAX_ITEMS or not all(
            isinstance(kv, list) and len(kv) == 2 for kv in labels):
        raise InputError(f"{what}.labels: expected a list of [key, value] pairs", where=where)
    for k, v in labels:
        _text(k, f"{what}.labels", where)
        if not isinstance(v, str) or len(v) > MAX_LABEL:
            raise InputError(f"{what}.labels: a value is not a string of at most {MAX_LABEL} characters", where=where)
    if not isinstance(d.get("not_evaluated", False), bool):
        raise InputError(f"{what}.not_evaluated: expected true or false", where=where)
    for key in ("check", "subject", "message", "docs"):
        _text(d.get(key, "" if key == "docs" else None), f"{what}.{key}", where)
    _texts(d.get("evidence", []), f"{what}.evidence", where)


@gc_paused()  # a node's thousands of findings: no cycles (kpdoctor/gcpause.py)
def decode(doc: Any, where: str, strings: Interner | None = None) -> NodeResult:
    """A node result from outside; `where` names it (file, pod) in the one-line error. Pass one `strings`
    to every decode of a merge: repeated values are then kept once."""
    strings = strings if strings is not None else Interner()
    d = _obj(doc, "node result", where)
    if d.get("format") != FORMAT:
        raise InputError(f"not a {FORMAT} document (format {str(d.get('format'))[:40]!r})", where=where)
    n = _obj(d.get("node"), "node", where)
    name = _text(n.get("name"), "node.name", where)
    if not name or name == "cluster":
        raise InputError(f"node.name: not a node name: {name!r}", where=where)
    node = NodeState(name=name, transport=_text(n.get("transport", ""), "node.transport", where),
                     address=_text(n.get("address", ""), "node.address", where),
                     error=_text(n.get("error", ""), "node.error", where))  # fmt: skip
    runs_doc, findings_doc = d.get("runs", []), d.get("findings", [])
    if not isinstance(runs_doc, list) or len(runs_doc) > MAX_ITEMS * 4:
        raise InputError("runs: expected a list", where=where)
    if not isinstance(findings_doc, list) or len(findings_doc) > MAX_FINDINGS:
        raise InputError(f"findings: expected a list of at most {MAX_FINDINGS}", where=where)
    runs = []
    for i, r in enumerate(runs_doc):
        run = _obj(r, f"runs[{i}]", where)
        duration = run.get("duration_s", 0.0)
        if not isinstance(duration, int | float) or isinstance(duration, bool) or not 0 <= duration < 1e6:
            raise InputError(f"runs[{i}].duration_s: expected seconds", where=where)
        runs.append(NodeRun(_text(run.get("check"), f"runs[{i}].check", where), float(duration),
                            list(_texts(run.get("errors", []), f"runs[{i}].errors", where))))  # fmt: skip
    findings = [_finding(f, name, i, where, strings) for i, f in enumerate(findings_doc)]
    omitted_doc = _obj(d.get("omitted", {}), "omitted", where)
    if len(omitted_doc) > MAX_ITEMS or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10**9
                                               for v in omitted_doc.values()):  # fmt: skip
        raise InputError("omitted: expected check ids with counts", where=where)
    omitted = {_text(k, "omitted", where): int(v) for k, v in omitted_doc.items()}
    return NodeResult(node, _text(d.get("service_proxy", ""), "service_proxy", where), runs, findings, omitted)


@gc_paused()
def merge(checks: Sequence[Check], central: ScanResult, nodes: Iterable[NodeResult], *,
          silences: SilenceSet | None = None) -> ScanResult:
    """`central` ran the cluster checks (and holds the load-error findings); `nodes` are the node checks'
    results, in node order. The result is what run_checks gives for all of them on one machine."""
    runs = {c.id: CheckRun(c) for c in checks}
    central_runs = {r.check.id: r for r in central.runs}
    node_findings: dict[str, list[Finding]] = {c.id: [] for c in checks}
    head = [f for f in central.findings if f.scope == "cluster" and f.check_id not in runs]  # load errors
    seen: list[NodeState] = []
    shapes: dict[str, str] = {}
    reachable = omitted = 0
    duration = central.duration
    for result in nodes:
        seen.append(result.node)
        if not result.node.reachable:
            head += result.findings
            continue
        reachable += 1
        if result.service_proxy:
            shapes[result.node.name] = result.service_proxy
        omitted += sum(result.omitted.values())
        for sent in result.runs:
            if sent.check in runs:
                runs[sent.check].evaluated.append(result.node.name)
                runs[sent.check].duration += sent.duration
                runs[sent.check].errors += sent.errors
                duration += sent.duration
        for f in result.findings:
            node_findings.setdefault(f.check_id, []).append(f)
    findings = head
    for check in checks:
        run = runs[check.id]
        out = node_findings.pop(check.id, [])
        done = central_runs.get(check.id)
        if check.scope == "cluster" and done is not None:
            run.evaluated += done.evaluated
            run.duration += done.duration
            run.errors += done.errors
            out += [f for f in central.findings if f.check_id == check.id]
        settle_status(run, out, any_reachable=reachable > 0)
        findings += out
    for stray in node_findings.values():  # a node sent findings of a check not run here: kept, not lost
        findings += stray
    if silences is not None:
        findings = silences.apply(findings)
    options = central.options
    if omitted:  # the report says how many node findings were counted, not sent (options.node_findings_omitted)
        options = replace(options, node_findings_omitted=omitted)
    return ScanResult(cluster=central.cluster, nodes=seen, findings=findings, runs=list(runs.values()),
                      silences=silences or SilenceSet(), options=options, duration=duration,
                      load_errors=central.load_errors, service_proxies=shapes)  # fmt: skip
