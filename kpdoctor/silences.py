"""`.kpdoctor.yaml`: silence a check for a node, a namespace or a Service - always with a reason.

A silenced finding is not dropped: the report still shows it, marked with the
reason and where the silence was declared, and it no longer counts for
`--fail-on`. Silences are deliberately narrow and auditable; a silence without
a reason is an error, because "why is this ignored?" is the first question the
next on-call engineer asks.

    version: 1
    silences:
      - check: KP-STALE-ENDPOINTS       # required: a check id (or "*" for every check)
        service: legacy/old-api          # any of node / namespace / service (globs allowed)
        reason: "old-api is being decommissioned (TICKET-123)"   # required
        expires: 2026-12-31              # optional: ignored (and reported) after this date

Malformed files raise InputError naming `file:line`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path

import yaml

from kpdoctor.errors import InputError
from kpdoctor.findings import Finding
from kpdoctor.silence_lists import apply_per_service

DEFAULT_FILE = ".kpdoctor.yaml"
_KEYS = ("check", "node", "namespace", "service", "reason", "expires")
_SUBJECT = re.compile(r"^(?P<kind>[A-Za-z]+) (?P<ns>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/(?P<name>[^\s:/]+)")


@dataclass
class Silence:
    check: str
    reason: str
    where: str  # file:line of the entry
    node: str = ""
    namespace: str = ""
    service: str = ""
    expires: dt.date | None = None
    used: int = 0

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires < dt.date.today()

    def describe(self) -> str:
        parts = [f"check {self.check}"]
        parts += [f"{k} {v}" for k, v in (("node", self.node), ("namespace", self.namespace),
                                          ("service", self.service)) if v]
        return ", ".join(parts)

    def matches(self, finding: Finding) -> bool:
        return self.matches_parts(finding.check_id, *subject_parts(finding))

    def matches_parts(self, check_id: str, node: str, namespace: str, service: str) -> bool:
        """Whether this silence applies to check `check_id` on that node / namespace / Service ("" = none)."""
        if self.expired:
            return False
        if self.check != "*" and self.check.lower() != check_id.lower():
            return False
        if self.node and not (node and fnmatchcase(node, self.node)):
            return False
        if self.namespace and not (namespace and fnmatchcase(namespace, self.namespace)):
            return False
        return not (self.service and not (service and fnmatchcase(service, self.service)))


def subject_parts(finding: Finding) -> tuple[str, str, str]:
    """(node, namespace, service "ns/name") a finding is about; labels win over parsing the subject."""
    labels = dict(finding.labels)
    node = labels.get("node") or (finding.scope if finding.scope != "cluster" else "")
    if not node and finding.subject.startswith("Node "):
        node = finding.subject[5:].split()[0]
    namespace = labels.get("namespace", "")
    service = labels.get("service", "")
    match = _SUBJECT.match(finding.subject)
    if match:
        namespace = namespace or match.group("ns")
        if match.group("kind") == "Service" and not service:
            service = f"{match.group('ns')}/{match.group('name')}"
    if service and not namespace:
        namespace = service.split("/", 1)[0]
    return node, namespace, service


@dataclass
class SilenceSet:
    silences: list[Silence] = field(default_factory=list)
    source: str = ""

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        out: list[Finding] = []
        for finding in findings:
            hit = next((s for s in self.silences if s.matches(finding)), None)
            if finding.silenced_reason:
                out.append(finding)
                continue
            if hit is None:  # a finding listing several Services: the silences of each (kpdoctor.silence_lists)
                out.append(apply_per_service(finding, subject_parts(finding)[0], self.silences) if self.silences
                           else finding)  # fmt: skip
                continue
            hit.used += 1
            out.append(replace(finding, silenced_reason=f"{hit.reason} ({hit.where})"))
        return out

    def expired_warnings(self) -> list[str]:
        """One line per expired silence: it no longer applies, and saying so beats a finding that reappears
        with no explanation (or a file that silently stopped doing what it says)."""
        return [f"{s.where}: silence ({s.describe()}) expired on {s.expires.isoformat()} and no longer applies; "
                f"renew or remove it (reason was: {s.reason})"
                for s in self.silences if s.expired and s.expires is not None]

    def validate_checks(self, known_ids: Sequence[str]) -> None:
        """A silence for a check that does not exist is a typo that silences nothing: refuse it."""
        lower = {k.lower() for k in known_ids}
        for s in self.silences:
            if s.check != "*" and s.check.lower() not in lower:
                raise InputError(f"unknown check id {s.check!r} (known: {', '.join(sorted(known_ids))})",
                                 where=s.where)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node, where: str, key: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.value is None:
        raise InputError(f"'{key}' must be a string", where=f"{where}:{_line(node)}")
    return str(node.value).strip()


def parse_silences(text: str, source: str) -> SilenceSet:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"invalid YAML: {problem}", where=f"{source}:{line}") from None
    if root is None:
        return SilenceSet(source=source)
    if not isinstance(root, yaml.MappingNode):
        raise InputError("top level must be a mapping with a 'silences' list", where=f"{source}:{_line(root)}")
    result = SilenceSet(source=source)
    for key_node, value_node in root.value:
        key = _scalar(key_node, source, "key")
        if key == "version":
            if _scalar(value_node, source, "version") != "1":
                raise InputError("unsupported version (only 1)", where=f"{source}:{_line(value_node)}")
        elif key == "silences":
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null"):
                continue
            if not isinstance(value_node, yaml.SequenceNode):
                raise InputError("'silences' must be a list", where=f"{source}:{_line(value_node)}")
            result.silences.extend(_parse_entry(item, source) for item in value_node.value)
        else:
            raise InputError(f"unknown key {key!r} (expected: version, silences)", where=f"{source}:{_line(key_node)}")
    return result


def _parse_entry(node: yaml.Node, source: str) -> Silence:
    where = f"{source}:{_line(node)}"
    if not isinstance(node, yaml.MappingNode):
        raise InputError("each silence must be a mapping (check, reason, node/namespace/service)", where=where)
    values: dict[str, str] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node, source, "key")
        if key not in _KEYS:
            raise InputError(f"unknown key {key!r} in a silence (expected: {', '.join(_KEYS)})",
                             where=f"{source}:{_line(key_node)}")
        values[key] = _scalar(value_node, source, key)
        if key == "service" and "/" not in values[key]:
            raise InputError(f"service {values[key]!r} must be 'namespace/name'", where=f"{source}:{_line(value_node)}")
    if not values.get("check"):
        raise InputError("silence has no 'check' (a check id, or \"*\")", where=where)
    if not values.get("reason"):
        raise InputError(f"silence for {values['check']} has no 'reason' (a reason is mandatory)", where=where)
    expires = None
    if values.get("expires"):
        try:
            expires = dt.date.fromisoformat(values["expires"])
        except ValueError:
            raise InputError(f"expires {values['expires']!r} is not a date (YYYY-MM-DD)", where=where) from None
    return Silence(check=values["check"], reason=values["reason"], where=where, node=values.get("node", ""),
                   namespace=values.get("namespace", ""), service=values.get("service", ""), expires=expires)


def load_silences(path: str | Path | None, *, default_dir: Path | None = None) -> SilenceSet:
    """Read `path`, or `.kpdoctor.yaml` in `default_dir` (the cwd) when it exists; else no silences."""
    if path is None:
        candidate = (default_dir or Path.cwd()) / DEFAULT_FILE
        if not candidate.is_file():
            return SilenceSet()
        path = candidate
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", where=str(file)) from None
    return parse_silences(text, str(file))
