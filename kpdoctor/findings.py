"""Findings: what a check says, the one contract between checks and renderers.

A finding names its subject precisely (`Service payments/ledger:http/TCP`, a
node, a DaemonSet) and carries its evidence (the exact rule, log line, metric or
file) and remediation with the real names filled in, because a report that says
"some Service is broken" is not one an on-call engineer can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Severity(IntEnum):
    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None


@dataclass(frozen=True, slots=True)
class Remediation:
    text: str
    commands: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    check_id: str
    severity: Severity
    scope: str  # "cluster" or the node name
    subject: str  # e.g. "Service payments/ledger:http/TCP", "Node edge-1", "DaemonSet kube-system/kube-proxy"
    message: str
    evidence: tuple[str, ...] = ()
    remediation: Remediation | None = None
    docs: str = ""
    # set when the check could not be evaluated (missing evidence, RBAC 403, plugin error)
    not_evaluated: bool = False
    silenced_reason: str = ""  # set by .kpdoctor.yaml silences; the report shows it
    labels: tuple[tuple[str, str], ...] = field(default=())
