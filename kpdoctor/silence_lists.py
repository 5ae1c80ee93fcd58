"""Silences per Service on a finding that lists several Services (its `services` label).

Some findings speak for many Services at once: KP-NODEPORT-FIREWALL's eTP=Local note is ONE note per node
listing every such Service in its `services` label (a JSON list of `namespace/name[:port/PROTOCOL]`), because
at 10,000 Services a note per Service repeated itself hundreds of times per node. A silence written for one
Service (`service: shop/legacy`) still means what it says on such a finding:
- every listed Service silenced (by one or several silences): the whole finding is silenced, with every
  silence's reason;
- some of them: the finding stays, the silenced Services leave its `services` label (they are in its
  `silenced_services` label instead) and one evidence line says which were silenced, by what and why; the
  message, which states what the node does, is unchanged.
A silence that matches the whole finding (no service or namespace selector, or one the finding's own subject
and labels satisfy) is applied by kpdoctor.silences as to any finding, before this is asked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from kpdoctor.findings import Finding

LABEL = "services"
SILENCED_LABEL = "silenced_services"
MAX_ENTRIES = 100_000  # a label longer than this (hostile node result) is not split per Service
NAMED = 10  # silenced Services named in the evidence line


class _Silence(Protocol):
    reason: str
    where: str
    used: int
    check: str
    namespace: str
    service: str

    def matches_parts(self, check_id: str, node: str, namespace: str, service: str) -> bool: ...


def listed(finding: Finding) -> list[str]:
    """The finding's `services` label as a list of strings, [] when absent or not such a list."""
    raw = dict(finding.labels).get(LABEL, "")
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except (ValueError, RecursionError):
        return []
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES or not all(isinstance(e, str) for e in entries):
        return []
    return entries


def _service(entry: str) -> tuple[str, str]:
    """(namespace, "namespace/name") of an entry `namespace/name[:port/PROTOCOL]`."""
    service = entry.split(":", 1)[0]
    return service.split("/", 1)[0] if "/" in service else "", service if "/" in service else ""


def apply_per_service(finding: Finding, node: str, silences: Sequence[_Silence]) -> Finding:
    """`finding` with the silences applied to each Service it lists (unchanged when none applies)."""
    check = finding.check_id.lower()
    silences = [s for s in silences if (s.namespace or s.service) and s.check.lower() in ("*", check)]
    if not silences:  # none for this check selects by namespace or Service: nothing to do per Service
        return finding
    entries = listed(finding)
    if not entries:
        return finding
    hits: dict[int, _Silence] = {}
    silenced: list[str] = []
    kept: list[str] = []
    for entry in entries:
        namespace, service = _service(entry)
        hit = next((s for s in silences if service and s.matches_parts(finding.check_id, node, namespace, service)),
                   None)  # fmt: skip
        if hit is None:
            kept.append(entry)
        else:
            hits.setdefault(id(hit), hit)
            silenced.append(entry)
    if not silenced:
        return finding
    for hit in hits.values():
        hit.used += 1
    why = "; ".join(f"{h.reason} ({h.where})" for h in hits.values())
    if not kept:
        return replace(finding, silenced_reason=why)
    names = ", ".join(silenced[:NAMED]) + (f", … and {len(silenced) - NAMED} more" if len(silenced) > NAMED else "")
    labels = tuple((k, json.dumps(kept) if k == LABEL else v) for k, v in finding.labels if k != SILENCED_LABEL)
    return replace(finding, labels=(*labels, (SILENCED_LABEL, json.dumps(silenced))),
                   evidence=(*finding.evidence, f"silenced: {len(silenced)} of the {len(entries)} listed Services "
                             f"({names}): {why}"))  # fmt: skip
