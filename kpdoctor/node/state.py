"""NodeState: the facts of one node, each with where it came from.

A fact is keyed by its file name in the bundle layout (`docs/bundle.md`), e.g.
`iptables-save.txt` or `kube-proxy/metrics.txt`. That makes a bundle and a live
collection the same thing: a collector fills facts from commands, the bundle
reader from files, and checks read them by name without knowing which.
A missing tool or file is itself a fact (`present=False` with the reason), not
a crash and not a silent gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kpdoctor.node.summary import NodeSummary


# The IPv4 iptables dumps a node's facts may hold (bundle file names): the default backend's, iptables-nft's and
# iptables-legacy's.
IPTABLES_V4_DUMPS = ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt")


@dataclass(frozen=True, slots=True)
class Fact:
    key: str  # bundle file name, e.g. "iptables-save.txt"
    content: str | None  # None when not collected / not present on the node
    source: str = ""  # the command or file it came from, e.g. "iptables-nft-save" or "/proc/modules"
    exit_code: int | None = None
    stderr: str = ""
    duration: float = 0.0
    error: str = ""  # why content is None (not installed, timed out, permission denied, ...)
    truncated: bool = False

    @property
    def present(self) -> bool:
        return self.content is not None

    def content_or(self, default: str) -> str:
        """The content, or `default` when the fact is absent (for derived facts that tolerate gaps)."""
        return default if self.content is None else self.content

    def evidence(self) -> str:
        """One line naming the source, for a finding's evidence."""
        where = self.source or self.key
        if self.content is None:
            return f"{where}: not available ({self.error or 'not collected'})"
        return f"{where} (exit {self.exit_code})" if self.exit_code not in (None, 0) else where


@dataclass(frozen=True)
class NodeState:
    name: str
    transport: str  # local | ssh | kube-exec | bundle
    facts: Mapping[str, Fact] = field(default_factory=lambda: MappingProxyType({}))
    address: str = ""
    error: str = ""  # set when the node could not be reached at all
    collected_at: str = ""

    @property
    def reachable(self) -> bool:
        return not self.error

    def fact(self, key: str) -> Fact:
        return self.facts.get(key) or Fact(key=key, content=None, error="not collected")

    def text(self, key: str) -> str | None:
        """The content of a fact, or None when absent."""
        found = self.facts.get(key)
        return None if found is None else found.content

    def summary(self) -> NodeSummary:
        """Derived facts (backends holding KUBE-* chains, IPVS availability, kube-proxy surfaces, ...)."""
        from kpdoctor.node.summary import summarize

        return summarize(self)
