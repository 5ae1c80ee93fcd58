"""The contract a check plugin implements (built-in `checks/` and third-party packs alike).

A check is metadata plus `run(ctx)`. `run` reads only what collectors gathered
(`ctx`): no sockets, no subprocesses, no module-level clients. That is what
makes checks testable on recorded data and safe to run on production.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

from kpdoctor.cluster.state import ClusterState
from kpdoctor.findings import Finding, Remediation, Severity
from kpdoctor.node.state import NodeState
from kpdoctor.scan_options import ScanOptions

Scope = Literal["cluster", "node"]
T = TypeVar("T")
SHARED_SCOPE = "\0scan"  # the cache scope of `CheckContext.shared` (no node is named so)


@functools.lru_cache(maxsize=256)
def installed_docs_uri(page: str) -> str:
    """file: URI of docs/checks/PAGE shipped with the package (or in the checkout); "" when there is none."""
    from kpdoctor.docs_location import docs_dir

    base = docs_dir()
    path = base / page if base is not None else None
    return path.resolve().as_uri() if path is not None and path.is_file() else ""


@dataclass
class CheckContext:
    """Everything a check may read. Built by the engine; shared, read-only by convention.

    `node` is set for node-scope checks (one context per node); `nodes` holds every
    collected node so cluster-scope checks can look across them. `derived` memoizes
    expensive views (the reference proxier's expectation, parsed dataplanes) so that
    ten checks asking for the same thing pay for it once.
    """

    cluster: ClusterState
    node: NodeState | None = None
    nodes: Mapping[str, NodeState] = field(default_factory=lambda: MappingProxyType({}))
    options: ScanOptions = field(default_factory=ScanOptions)
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def derived(self, key: str, factory: Callable[[], T]) -> T:
        cache_key = (self.node.name if self.node else "", key)
        if cache_key not in self._cache:
            self._cache[cache_key] = factory()
        value: T = self._cache[cache_key]
        return value

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """Like `derived`, but one value for the whole scan (every node), not one per node.

        For views that do not depend on the node (the cluster-wide part of the reference
        proxier's expectation): the engine passes one cache to every context of a scan and
        drops only the per-node entries after each node, so these live until the scan ends.
        """
        cache_key = (SHARED_SCOPE, key)
        if cache_key not in self._cache:
            self._cache[cache_key] = factory()
        value: T = self._cache[cache_key]
        return value


class Check:
    """Base class: subclasses set the metadata class attributes and implement `run`."""

    id: ClassVar[str]  # stable, e.g. "KP-PROXIER-MODE"
    title: ClassVar[str]
    scope: ClassVar[Scope]
    severity: ClassVar[Severity]
    tags: ClassVar[tuple[str, ...]] = ()
    rationale: ClassVar[str] = ""
    remediation: ClassVar[str] = ""  # template text; findings carry the filled-in commands
    catches: ClassVar[str] = ""  # one line for README's check table: what the check catches (default: the title)
    references: ClassVar[tuple[str, ...]] = ()
    docs_page: ClassVar[str] = ""  # file name under docs/checks/, default "<id>.md"
    # Cluster kinds the check reads ("Service", "EndpointSlice", "Node", "Pod", "DaemonSet", "ConfigMap").
    # Optional: when one of them is in `cluster.gaps` (RBAC 403) the engine reports "not evaluated:
    # forbidden" without running the check. Undeclared reads of a forbidden kind are caught too.
    requires: ClassVar[tuple[str, ...]] = ()
    # Node facts a node check reads (bundle keys; "kube-proxy/" = the folder). When none of them is present on
    # a node and the check found nothing there, the engine reports it "not evaluated" there, not "passed".
    reads: ClassVar[tuple[str, ...]] = ()
    # True when the check judges a node from its own facts alone (kube-proxy's config read from the node's
    # /configz or /proxyMode): it then also runs in a node-only scan (no cluster objects, kpdoctor.node_only).
    node_facts_suffice: ClassVar[bool] = False

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        raise NotImplementedError

    # -- helpers for building findings ---------------------------------------------
    @classmethod
    def docs_url(cls) -> str:
        """The check's page as installed with this copy of kpdoctor (a file: URI, so it exists and matches the
        installed version; kpdoctor has no public docs site), a plugin's own http(s) URL, or "" without a page."""
        page = cls.docs_page or cls.id + ".md"
        if page.startswith(("https://", "http://")):
            return page
        return installed_docs_uri(page)

    def finding(
        self,
        ctx: CheckContext,
        subject: str,
        message: str,
        *,
        severity: Severity | None = None,
        evidence: Iterable[str] = (),
        fix: str | None = None,
        commands: Iterable[str] = (),
        not_evaluated: bool = False,
    ) -> Finding:
        return Finding(
            check_id=self.id,
            severity=self.severity if severity is None else severity,
            scope=ctx.node.name if ctx.node is not None and self.scope == "node" else "cluster",
            subject=subject,
            message=message,
            evidence=tuple(evidence),
            remediation=Remediation(fix if fix is not None else self.remediation, tuple(commands))
            if (fix or self.remediation or commands)
            else None,
            docs=self.docs_url(),
            not_evaluated=not_evaluated,
        )
