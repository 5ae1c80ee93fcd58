"""The one place where checks get derived views: parsed facts, node config, expected vs actual dataplane.

Checks must not each re-parse a 400k-line dump or re-render the reference
proxier, and must not each know which module parses which mode; everything
here is memoized per node through `ctx.derived`, and the wiring to the
dataplane parsers (written per mode) lives only in `actual_view`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kpdoctor.checks_api import CheckContext
from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.model import Pod
from kpdoctor.cluster.state import NodeProxyConfig
from kpdoctor.dataplane.semantic import FrontendDiff, SemanticView, diff
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node.state import NodeState

# kube-proxy's chains per mode (kubelet's KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY / KUBE-FIREWALL excluded).
IPTABLES_MARKER_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-PROXY-CANARY")
IPVS_IPTABLES_MARKERS = ("KUBE-NODE-PORT", "KUBE-LOAD-BALANCER")
DEFAULT_MODE_VERSION_MAX = (1, 36)  # up to this version "" means iptables on Linux
KUBE_PROXY_LOG = "kube-proxy/log.txt"


# ------------------------------------------------------------------ parsed facts per node


def parsed(ctx: CheckContext) -> ParsedNode:
    """The parsed facts of `ctx.node` (one ParsedNode per node per scan)."""
    node = ctx.node
    if node is None:
        raise ValueError("parsed() needs a node-scope context")
    return ctx.derived("parsed-node", lambda: ParsedNode(node))


def parsed_of(ctx: CheckContext, node: NodeState) -> ParsedNode:
    """Parsed facts of another node (cluster-scope checks looking across nodes)."""
    found: dict[str, ParsedNode] = ctx.derived("parsed-nodes", dict)
    if node.name not in found:
        found[node.name] = ParsedNode(node)
    return found[node.name]


# ------------------------------------------------------------------ kube-proxy on a node


def node_proxy_config(ctx: CheckContext, node_name: str | None = None) -> NodeProxyConfig | None:
    name = node_name or (ctx.node.name if ctx.node else "")
    cache: dict[str, NodeProxyConfig | None] = ctx.derived("proxy-configs", dict)
    if name not in cache:
        cache[name] = ctx.cluster.proxy_config_for(name)
    return cache[name]


def kube_proxy_pod(ctx: CheckContext, node_name: str | None = None) -> Pod | None:
    name = node_name or (ctx.node.name if ctx.node else "")
    return ctx.cluster.kube_proxy_pod_on(name)


def kube_proxy_expected(ctx: CheckContext, node_name: str | None = None) -> bool:
    """Whether a kube-proxy is meant to run on the node: a kube-proxy pod is scheduled there,
    or a kube-proxy DaemonSet's nodeSelector matches the node."""
    name = node_name or (ctx.node.name if ctx.node else "")
    if kube_proxy_pod(ctx, name) is not None:
        return True
    node = ctx.cluster.node_by_name.get(name)
    for ds in ctx.cluster.kube_proxy_daemonsets:
        if node is not None and all(node.labels.get(k) == v for k, v in ds.node_selector.items()):
            return True
    # A snapshot without workloads (only Services/EndpointSlices/Nodes/ConfigMaps) but with kube-proxy's
    # ConfigMap: assume the default kube-proxy runs there rather than silently skipping every node check.
    return not ctx.cluster.daemonsets and not ctx.cluster.pods and ctx.cluster.configmap(
        "kube-system", "kube-proxy") is not None


def kube_proxy_version(ctx: CheckContext) -> tuple[int, int] | None:
    return ctx.cluster.kube_proxy_version()


def resolve_mode(config_mode: str, version: tuple[int, int] | None) -> tuple[str, str]:
    """(effective mode, explanation). `""` is iptables on Linux up to v1.36; later, confirm with /proxyMode."""
    if config_mode:
        return config_mode, f'mode: "{config_mode}"'
    if version is None or version <= DEFAULT_MODE_VERSION_MAX:
        ver = f"v{version[0]}.{version[1]}" if version else "v1.36 (assumed)"
        return "iptables", f'mode: "" (the default, iptables on Linux for kube-proxy {ver})'
    return "iptables", (
        f'mode: "" (default; iptables up to v1.36 - kube-proxy v{version[0]}.{version[1]} may differ, '
        "confirm with /proxyMode)"
    )


def configured_mode(ctx: CheckContext, node_name: str | None = None) -> tuple[str, str, NodeProxyConfig] | None:
    """(effective mode, explanation, where it came from) for the node's own kube-proxy config."""
    found = node_proxy_config(ctx, node_name)
    if found is None:
        return None
    mode, why = resolve_mode(found.config.mode, kube_proxy_version(ctx))
    return mode, why, found


_USING = re.compile(r'"Using (\w+) Proxier"')


def log_of(ctx: CheckContext, pod: Pod | None) -> str | None:
    """The kube-proxy pod's log from the API (cluster/logs) or, failing that, the node's own log fact."""
    if pod is not None:
        text = ctx.cluster.logs.get(pod.key)
        if text is not None:
            return text
    if ctx.node is not None:
        return ctx.node.text(KUBE_PROXY_LOG)
    return None


def logged_mode(log: str | None) -> tuple[str, str] | None:
    """The last "Using X Proxier" line: (mode, line)."""
    if not log:
        return None
    found: tuple[str, str] | None = None
    for line in log.splitlines():
        match = _USING.search(line)
        if match:
            found = (match.group(1).lower(), line.strip())
    return found


# -------------------------------------------------------------------- dataplane presence


@dataclass(frozen=True)
class Presence:
    """Which kube-proxy dataplanes exist on a node, with one evidence line each."""

    iptables: str = ""  # evidence when KUBE-SERVICES & co. exist in the default/nft backend
    iptables_legacy: str = ""
    iptables_ipvs_chains: str = ""  # KUBE-NODE-PORT / KUBE-LOAD-BALANCER: written by IPVS mode only
    nftables: str = ""
    ipvs: str = ""

    def modes(self) -> list[str]:
        out = []
        if self.iptables or self.iptables_legacy:
            out.append("iptables")
        if self.nftables:
            out.append("nftables")
        if self.ipvs:
            out.append("ipvs")
        return out


def _ipt_evidence(p: ParsedNode, key: str) -> str:
    dump = p.iptables(key)
    if dump is None:
        return ""
    chains = dump.kube_chains()
    names = [c for t in ("nat", "filter") for c in chains.get(t, ()) if c in IPTABLES_MARKER_CHAINS]
    if not names:
        return ""
    total = sum(len(v) for v in chains.values())
    return f"{key}: {total} kube-proxy chains (e.g. {', '.join(sorted(set(names))[:3])})"


def presence(p: ParsedNode) -> Presence:
    nft_key = "iptables-nft-save.txt" if p.has("iptables-nft-save.txt") else "iptables-save.txt"
    default = _ipt_evidence(p, "iptables-save.txt") or _ipt_evidence(p, nft_key)
    legacy = _ipt_evidence(p, "iptables-legacy-save.txt")
    ipvs_chains = ""
    for key in ("iptables-save.txt", "iptables-legacy-save.txt"):
        dump = p.iptables(key)
        if dump is not None:
            hit = sorted(c for c in dump.chains("nat") if c in IPVS_IPTABLES_MARKERS)
            if hit:
                ipvs_chains = f"{key}: IPVS-mode chains {', '.join(hit)}"
                break
    nft = ""
    if p.nft is not None:
        tables = [f"table {fam} {name}" for fam, name in p.nft.tables if name == "kube-proxy"]
        if tables:
            nft = f"nft-ruleset.json: {', '.join(tables)}"
    ipvs_parts = []
    if p.ipvs_services:
        ipvs_parts.append(f"ipvsadm-save.txt: {len(p.ipvs_services)} virtual servers")
    if any(i.name == "kube-ipvs0" for i in p.interfaces or ()):
        ipvs_parts.append("ip-addr.json: interface kube-ipvs0")
    kube_sets = [s for s in p.ipsets or () if s.startswith("KUBE-")]
    if kube_sets:
        ipvs_parts.append(f"ipset-list.txt: {len(kube_sets)} KUBE-* sets (e.g. {kube_sets[0]})")
    return Presence(default, legacy, ipvs_chains, nft, "; ".join(ipvs_parts))


def iptables_rules_key(p: ParsedNode) -> str | None:
    """The dump that holds the kube-proxy rules: the default backend first, then legacy, then nft."""
    for key in ("iptables-save.txt", "iptables-legacy-save.txt", "iptables-nft-save.txt"):
        if _ipt_evidence(p, key):
            return key
    for key in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt"):
        if p.has(key):
            return key
    return None


# ---------------------------------------------------------- expected and actual dataplane


class ViewUnavailable(Exception):
    """The view cannot be built (dump unreadable, IPVS state unavailable); the message says why."""


def actual_view(
    node: NodeState, mode: str, *, rules_key: str | None = None, expected: SemanticView | None = None,
    family: str = "IPv4",
) -> SemanticView | None:
    """The node's dataplane as a SemanticView for `mode`; None when the node has no dump for it.

    `expected` (the reference proxier's view) only lends names: which address is a
    load balancer vs an external IP, and Service names for IPVS (which stores none).
    Raises ViewUnavailable when a dump exists but cannot be read (the message says why).
    """
    from kpdoctor.errors import InputError

    try:
        if mode == "iptables":
            from kpdoctor.dataplane.iptables_save import parse_iptables_save
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of
            from kpdoctor.dataplane.iptables_semantic import semantic_view as ipt_view

            key = rules_key or iptables_rules_key(ParsedNode(node))
            if family == "IPv6":
                key = "ip6tables-save.txt"
            text = node.text(key) if key else None
            if text is None:
                return None
            kinds = address_kinds_of(expected) if expected is not None else None
            return ipt_view(parse_iptables_save(text, f"{node.name}/{key}"), address_kinds=kinds)
        if mode == "nftables":
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of
            from kpdoctor.dataplane.nft import parse_nft_json
            from kpdoctor.dataplane.nft_semantic import semantic_view as nft_view

            text = node.text("nft-ruleset.json")
            if text is None:
                return None
            kinds = address_kinds_of(expected) if expected is not None else None
            ruleset = parse_nft_json(text, source=f"{node.name}/nft-ruleset.json")
            return nft_view(ruleset, family, address_kinds=kinds)
        if mode == "ipvs":
            from kpdoctor.dataplane.ipvs import read_node_ipvs
            from kpdoctor.dataplane.ipvs_semantic import ipvs_semantic_view, label_services

            if node.text("ipvsadm-save.txt") is None:
                return None
            table, ipsets = read_node_ipvs(node)
            if not table.available:
                raise ViewUnavailable(table.reason)
            p = ParsedNode(node)
            view = ipvs_semantic_view(
                table.virtual_servers, ipsets, node.text(iptables_rules_key(p) or "iptables-save.txt"),
                node_ips=p.addresses(6 if family == "IPv6" else 4),
            )
            return label_services(view, expected) if expected is not None else view
    except InputError as exc:
        raise ViewUnavailable(str(exc)) from None
    raise ViewUnavailable(f"unknown proxy mode {mode!r}")


def expected_for(ctx: CheckContext, mode: str | None = None) -> SemanticView:
    """The reference proxier's expectation for `ctx.node` (IPv4), from current Services/EndpointSlices."""
    node = ctx.node
    if node is None:
        raise ValueError("expected_for() needs a node-scope context")

    def build() -> SemanticView:
        from kpdoctor.proxier.context import build_input
        from kpdoctor.proxier.expected import expected_view

        found = node_proxy_config(ctx, node.name)
        config: KubeProxyConfig | None = None
        if found is not None:
            config = found.config
        inp = build_input(ctx.cluster, node.name, config=config, mode=mode)
        view: SemanticView = expected_view(inp)
        return view

    return ctx.derived(f"expected-view:{mode or ''}", build)


@dataclass(frozen=True)
class Comparison:
    mode: str
    rules_key: str  # the fact the actual view was read from
    expected: SemanticView
    actual: SemanticView
    diffs: list[FrontendDiff]


def compare(ctx: CheckContext, mode: str) -> Comparison | None:
    """Expected vs actual for the node in `mode`; None when the node has no dump for that mode."""
    node = ctx.node
    if node is None:
        raise ValueError("compare() needs a node-scope context")

    def build() -> Comparison | None:
        p = parsed(ctx)
        key = iptables_rules_key(p) if mode == "iptables" else (
            "nft-ruleset.json" if mode == "nftables" else "ipvsadm-save.txt"
        )
        expected = expected_for(ctx, mode)
        actual = actual_view(node, mode, rules_key=key, expected=expected)
        if actual is None:
            return None
        return Comparison(mode, key or "", expected, actual, diff(expected, actual))

    result: Comparison | None = ctx.derived(f"compare:{mode}", build)
    return result


def grep_fact(node: NodeState, key: str, needle: str, limit: int = 3) -> list[str]:
    """`key:LINE: text` for the first lines of a fact containing `needle` (evidence for a finding)."""
    text = node.text(key)
    if not text:
        return []
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            shown = line.strip()
            if len(shown) > 240:
                shown = shown[:237] + "..."
            out.append(f"{key}:{lineno}: {shown}")
            if len(out) >= limit:
                break
    return out


def memo(ctx: CheckContext, key: str, factory: Callable[[], Any]) -> Any:
    return ctx.derived(key, factory)
