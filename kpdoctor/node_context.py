"""What checks read about a node, computed once per node per scan: parsed facts, its kube-proxy, expectation.

Node checks subclass `NodeCheck` and receive a `NodeCheckContext`: its `node` is never None and the
node's facts are typed attributes (`ctx.parsed`, `ctx.dumps`, `ctx.service_proxy`, `ctx.configured_mode`,
`ctx.kube_proxy_pod`, `ctx.kube_proxy_log`, `ctx.service_load`). Everything is memoized through the
check context's caches (`CheckContext.derived` per node, `CheckContext.shared` per scan), so ten checks
asking for the same view pay for it once; the functions below are the same views for code that holds a
plain `CheckContext` (`why`, the withholding guard).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from kpdoctor.checks_api import Check, CheckContext, Scope
from kpdoctor.cluster.kube_proxy_node import KUBE_PROXY_LOG, ConfiguredMode, ProxyMode, pod_log
from kpdoctor.cluster.kube_proxy_node import configured_mode as _configured_mode
from kpdoctor.cluster.model import Pod
from kpdoctor.cluster.state import ClusterState, NodeProxyConfig
from kpdoctor.dataplane.iptables_delta import IptablesRefs
from kpdoctor.dataplane.semantic import FrontendView, SemanticView
from kpdoctor.findings import Finding
from kpdoctor.node.dumps import NodeDumps, SharedParsedNode
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node.state import NodeState
from kpdoctor.node_only import config_from_node, is_node_only
from kpdoctor.proxier.shared_expectation import NodeExpectation, SharedExpectation
from kpdoctor.service_proxy import HOST_PROCESS, UNKNOWN, ServiceProxy, decide


def parsed(ctx: CheckContext) -> ParsedNode:
    """The parsed facts of `ctx.node` (one ParsedNode per node per scan).

    Its `iptables(key)` structure views come from the same single parse of each dump that the
    expected-vs-actual comparison uses (`node_dumps`), so a 400k-line dump is read once per node.
    """
    node = ctx.node
    if node is None:
        raise ValueError("parsed() needs a node-scope context")
    return ctx.derived("parsed-node", lambda: SharedParsedNode(node, dumps=node_dumps(ctx)))


def _parsed_other(ctx: CheckContext, node: NodeState) -> ParsedNode:
    """Parsed facts of another node (a cluster-scope check asking who serves Services there)."""
    found: dict[str, ParsedNode] = ctx.derived("parsed-nodes", dict)
    if node.name not in found:
        found[node.name] = SharedParsedNode(node, dumps=NodeDumps(node))
    return found[node.name]


def node_dumps(ctx: CheckContext) -> NodeDumps:
    """The node's iptables dumps, each parsed once (as a delta of the scan's reference dumps when incremental)."""
    node = ctx.node
    if node is None:
        raise ValueError("node_dumps() needs a node-scope context")
    refs = ctx.shared("iptables-refs", IptablesRefs) if ctx.options.incremental else None
    return ctx.derived("iptables-dumps", lambda: NodeDumps(node, refs))


# ------------------------------------------------------------------ kube-proxy on a node


def service_proxy(ctx: CheckContext, node_name: str | None = None) -> ServiceProxy:
    """Who implements Services on the node (`kpdoctor.service_proxy.decide`), once per node per scan."""
    name = node_name or (ctx.node.name if ctx.node else "")
    cache: dict[str, ServiceProxy] = ctx.derived("service-proxies", dict)
    if name not in cache:
        if ctx.node is not None and ctx.node.name == name:
            p: ParsedNode | None = parsed(ctx)
        else:
            state = ctx.nodes.get(name)
            p = _parsed_other(ctx, state) if state is not None and state.reachable else None
        if is_node_only(ctx.cluster):  # no cluster objects: only what the node's own kube-proxy reports
            config = config_from_node(name, p.configz, p.proxy_mode) if p is not None else None
            cache[name] = ServiceProxy(
                name, HOST_PROCESS if config is not None else UNKNOWN,
                "kube-proxy answering on the node", ("node facts only: no cluster objects in this scan",), config)
        else:
            cache[name] = decide(ctx.cluster, name, p)
    return cache[name]


def node_proxy_config(ctx: CheckContext, node_name: str | None = None) -> NodeProxyConfig | None:
    return service_proxy(ctx, node_name).config


def kube_proxy_pod(ctx: CheckContext, node_name: str | None = None) -> Pod | None:
    return service_proxy(ctx, node_name).pod


def kube_proxy_expected(ctx: CheckContext, node_name: str | None = None) -> bool:
    """Whether a kube-proxy is meant to run on the node (DaemonSet or static pod, embedded in k3s, a host
    process, or assumed from kube-proxy's ConfigMap when no workloads were collected)."""
    return service_proxy(ctx, node_name).runs_kube_proxy


def kube_proxy_version(ctx: CheckContext) -> tuple[int, int] | None:
    if is_node_only(ctx.cluster):
        return None
    return ctx.cluster.kube_proxy_version()


def configured_mode(ctx: CheckContext, node_name: str | None = None) -> ConfiguredMode | None:
    """The effective mode of the node's own kube-proxy config, how it was derived, where it came from."""
    return _configured_mode(node_proxy_config(ctx, node_name), kube_proxy_version(ctx))


def log_of(ctx: CheckContext, pod: Pod | None) -> str | None:
    """The kube-proxy pod's log from the API (cluster/logs) or, failing that, the node's own log fact."""
    text = pod_log(ctx.cluster, pod)
    if text is not None:
        return text
    if ctx.node is not None:
        return ctx.node.text(KUBE_PROXY_LOG)
    return None


# ------------------------------------------------------------------ the reference proxier's expectation


def expected_for(ctx: CheckContext, mode: ProxyMode | None = None) -> SemanticView:
    """The reference proxier's expectation for `ctx.node` (IPv4), from current Services/EndpointSlices."""
    return expected_detail(ctx, mode).view


def expected_detail(ctx: CheckContext, mode: ProxyMode | None = None) -> NodeExpectation:
    """`expected_for` with what an incremental comparison needs (which views are node-specific)."""
    node = ctx.node
    if node is None:
        raise ValueError("expected_for() needs a node-scope context")

    def build() -> NodeExpectation:
        from kpdoctor.proxier.context import build_input
        from kpdoctor.proxier.expected import view_options

        found = node_proxy_config(ctx, node.name)
        inp = build_input(ctx.cluster, node.name, config=found.config if found is not None else None, mode=mode)
        family = inp.family
        options = view_options(inp)  # mode/config-dependent parts (short-circuit, localhost NodePorts)
        shared = ctx.shared(f"expected-shared:{family}:{options}",
                            lambda: SharedExpectation(ctx.cluster, family, options))
        api_node = ctx.cluster.node_by_name.get(node.name)
        zone = (api_node.zone or "") if api_node is not None else ""
        return shared.expectation_for(node.name, zone, inp.primary_node_ip)

    return ctx.derived(f"expected-view:{mode or ''}", build)


def expected_node_port_drops(ctx: CheckContext, mode: ProxyMode | None = None) -> list[tuple[Any, FrontendView]]:
    """The expected view's NodePort frontends that DROP (`NodeExpectation.node_port_drops`)."""
    return expected_detail(ctx, mode).node_port_drops()


# ------------------------------------------------------------------ the typed context of node checks


def count_services(cluster: ClusterState) -> tuple[int, int]:
    """(proxied Services, endpoints) in the cluster, as kube-proxy counts its load."""
    services = sum(1 for s in cluster.services if s.proxied)
    endpoints = sum(len(e.endpoints) for e in cluster.endpoint_slices)
    return services, endpoints


class NodeCheckContext(CheckContext):
    """A node-scope `CheckContext` whose `node` is set, with the node's facts as typed, memoized attributes.

    Shares the caches of the context it was made from: every check on the node sees the same parse,
    the same kube-proxy decision and the same expectation."""

    node: NodeState

    def __init__(self, ctx: CheckContext) -> None:
        if ctx.node is None:
            raise ValueError("a node check needs a node-scope context")
        super().__init__(cluster=ctx.cluster, node=ctx.node, nodes=ctx.nodes, options=ctx.options, _cache=ctx._cache)

    @property
    def parsed(self) -> ParsedNode:
        """The node's parsed facts (iptables structure views from the one parse per dump)."""
        return parsed(self)

    @property
    def dumps(self) -> NodeDumps:
        """The node's iptables dumps, each parsed once (`kpdoctor.node.dumps.NodeDumps`)."""
        return node_dumps(self)

    @property
    def service_proxy(self) -> ServiceProxy:
        """Who implements Services on the node, and how that was found (`kpdoctor.service_proxy.decide`)."""
        return service_proxy(self)

    @property
    def kube_proxy_expected(self) -> bool:
        """Whether a kube-proxy is meant to run on the node."""
        return self.service_proxy.runs_kube_proxy

    @property
    def kube_proxy_pod(self) -> Pod | None:
        return self.service_proxy.pod

    @property
    def configured_mode(self) -> ConfiguredMode | None:
        """The effective mode of the node's kube-proxy config (None without a config)."""
        return configured_mode(self)

    @property
    def kube_proxy_version(self) -> tuple[int, int] | None:
        """(major, minor) of the cluster's kube-proxy; None when unknown (or a node-only scan)."""
        return kube_proxy_version(self)

    @property
    def kube_proxy_mode(self) -> ConfiguredMode | None:
        """The configured mode of the kube-proxy meant to run on the node; None when none is meant to run
        there or its config cannot be found (the mode-specific checks then have nothing to judge)."""
        return self.configured_mode if self.kube_proxy_expected else None

    @property
    def kube_proxy_log(self) -> str | None:
        """The node's kube-proxy log: its pod's from the API, else the node's own log fact."""
        return log_of(self, self.kube_proxy_pod)

    @property
    def service_load(self) -> tuple[int, int]:
        """(proxied Services, endpoints) of the cluster, once per scan; (0, 0) in a node-only scan (unknown)."""
        if is_node_only(self.cluster):
            return 0, 0
        return self.shared("service-load", lambda: count_services(self.cluster))


class NodeCheck(Check):
    """A node-scope check: implements `check_node`, which receives the typed `NodeCheckContext`."""

    scope: ClassVar[Scope] = "node"  # runs once per node: what makes it a node check

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        return self.check_node(ctx if isinstance(ctx, NodeCheckContext) else NodeCheckContext(ctx))

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        raise NotImplementedError
