"""What a kube-proxy mode switch changes on one node: the reference proxier's view in both modes, compared.

For each node the reference proxier is run in the current and in the target mode
(same cluster, same node, same configuration but the mode) and the two
SemanticViews are compared. iptables and IPVS are rendered and parsed back
(`render_iptables` -> `parse_iptables_save` -> `semantic_view`; `ipvs_state` ->
`ipvs_semantic_view`); nftables is the mode-independent expectation, which
`tests/proxier/test_cross_mode.py` proves equal to the rendered nftables rules loaded
into a real kernel (parsing them needs `nft`, which a read-only gate must not run).

Differences kube-proxy intends are split off and reported as *documented*
(`DOCUMENTED`); every other difference is a finding: the expected list is empty.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from kpdoctor.addresses import IPV4, IPV6, is_ip
from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.semantic import (
    DROP,
    LOAD_BALANCER,
    LOCALHOST_NODE_PORT,
    NODE_PORT,
    REJECT,
    FrontendDiff,
    FrontendView,
    SemanticView,
    diff,
)
from kpdoctor.proxier.context import ProxierInput, build_input

# documented difference kinds -> where they are documented
DOCUMENTED = {
    "localhost-nodeport": "nftables/IPVS never accept NodePorts on 127.0.0.1 (kube-proxy docs, KEP-3866)",
    "short-circuit": "IPVS sends pods and the node to an eTP=Local frontend like outside clients (ipvs/proxier.go "
                     "syncEndpoint)",
    "local-fallback": "IPVS falls back to cluster endpoints for a Local policy without local endpoints "
                      "(kubernetes/kubernetes#97081)",
    "lb-firewall-no-endpoints": "IPVS programs loadBalancerSourceRanges even for a Service without endpoints",
    "ipvs-nodeport-no-address": "IPVS makes NodePort virtual servers only on the node's addresses",
}


def mode_view(inp: ProxierInput) -> SemanticView:
    """The reference proxier's view of `inp` in its mode (see the module docstring for how per mode)."""
    if inp.mode == "iptables":
        from kpdoctor.dataplane.iptables_save import parse_iptables_save
        from kpdoctor.dataplane.iptables_semantic import address_kinds_of, semantic_view
        from kpdoctor.proxier.expected import expected_view
        from kpdoctor.proxier.iptables import render_iptables

        kinds = address_kinds_of(expected_view(inp))
        return semantic_view(parse_iptables_save(render_iptables(inp), "reference iptables"), address_kinds=kinds)
    if inp.mode == "ipvs":
        from kpdoctor.proxier.expected import expected_view
        from kpdoctor.proxier.ipvs import reference_view

        names = {fe: v.service for fe, v in expected_view(inp).frontends.items()}
        return reference_view(inp, names)
    from kpdoctor.proxier.expected import expected_view

    return expected_view(inp)


@dataclass(frozen=True)
class Change:
    """One frontend whose behaviour differs between the modes."""

    frontend: str
    service: str
    what: str  # the diff kind, or a documented kind
    before: str
    after: str
    documented: str = ""  # key of DOCUMENTED, "" when undocumented (a finding)


@dataclass(frozen=True)
class NodeDiff:
    node: str
    family: str
    current: str
    target: ProxyMode
    frontends: int  # frontends compared (current mode)
    changes: tuple[Change, ...] = ()

    @property
    def undocumented(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.documented)

    @property
    def documented(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.documented)


def _show(v: FrontendView | None) -> str:
    if v is None:
        return "absent"
    eps = ",".join(sorted(v.endpoints)) or "-"
    extra = f" affinity={v.affinity_seconds}s" if v.affinity_seconds else ""
    ranges = f" sourceRanges={','.join(sorted(v.source_ranges))}" if v.source_ranges else ""
    return f"{v.verdict} {eps}{extra}{ranges}"


def _documented(d: FrontendDiff, modes: set[str]) -> str:
    a, b = d.expected, d.actual
    if d.frontend.kind == LOCALHOST_NODE_PORT:
        return "localhost-nodeport"
    if "ipvs" not in modes:
        return ""
    if d.frontend.kind == NODE_PORT and (a is None or b is None):
        return "ipvs-nodeport-no-address"
    if a is None or b is None:
        return ""
    if DROP in (a.verdict, b.verdict):
        return "local-fallback"
    if d.frontend.kind == LOAD_BALANCER and a.verdict == REJECT == b.verdict and a.endpoints == b.endpoints:
        return "lb-firewall-no-endpoints"
    return ""


def _strip_short_circuit(view: SemanticView) -> SemanticView:
    return SemanticView.of(replace(v, internal_endpoints=None) for v in view.frontends.values())


def compare(current: SemanticView, target: SemanticView, modes: set[str]) -> list[Change]:
    """Every frontend that behaves differently, each marked documented or not."""
    out: list[Change] = []
    if "ipvs" in modes:
        for fe in sorted(set(current.frontends) & set(target.frontends)):
            a, b = current.frontends[fe], target.frontends[fe]
            if a.internal_targets != b.internal_targets and replace(a, internal_endpoints=None) == replace(
                    b, internal_endpoints=None):
                out.append(Change(str(fe), a.service, "short-circuit", _show(a), _show(b), "short-circuit"))
        current, target = _strip_short_circuit(current), _strip_short_circuit(target)
    for d in diff(current, target):
        out.append(Change(str(d.frontend), d.service, d.kind, _show(d.expected), _show(d.actual),
                          _documented(d, modes)))
    seen = {c.frontend for c in out}
    for fe in sorted(set(current.frontends) & set(target.frontends)):  # what diff() does not compare
        a, b = current.frontends[fe], target.frontends[fe]
        if str(fe) not in seen and (a.source_ranges != b.source_ranges or a.service != b.service):
            out.append(Change(str(fe), a.service, "source-ranges", _show(a), _show(b)))
    return out


def node_diff(cluster: ClusterState, node: str, config: KubeProxyConfig, target: ProxyMode, family: str) -> NodeDiff:
    """The switch `config.effective_mode` -> `target` on `node` for one IP family."""
    current = config.effective_mode
    base = replace(config, mode=current)
    cur_in = build_input(cluster, node, config=base, family=family)
    tgt_in = build_input(cluster, node, config=base, mode=target, family=family)
    cur_view = mode_view(cur_in)
    changes = compare(cur_view, mode_view(tgt_in), {current, target})
    return NodeDiff(node, family, current, target, len(cur_view.frontends), tuple(changes))


def families(cluster: ClusterState) -> tuple[str, ...]:
    """The IP families with Services (IPv4 always, so an empty cluster is still compared)."""
    v6 = any(":" in ip for s in cluster.services for ip in s.cluster_ips)
    return (IPV4, IPV6) if v6 else (IPV4,)


# ---------------------------------------------------------------------- NodePort addresses


@dataclass(frozen=True)
class NodePortAddressChange:
    node: str
    before: tuple[str, ...]  # addresses NodePorts answer on today ("*" = every local address)
    after: tuple[str, ...]
    lost: tuple[str, ...]  # addresses known to the node that stop answering
    addresses_source: str  # where the node's addresses came from


def _accepts(cidrs: tuple[str, ...], address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a hostile or non-IP address value accepts nothing
        return False
    for text in cidrs:
        if text == "primary":
            continue
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            continue
        if net.version == ip.version and ip in net:
            return True
    return False


def nodeport_address_change(inp_current: ProxierInput, inp_target: ProxierInput,
                            node_addresses: tuple[str, ...], addresses_source: str) -> NodePortAddressChange:
    """Which of the node's addresses accept NodePorts before and after (nodePortAddresses, "primary")."""

    def accepted(inp: ProxierInput) -> tuple[str, ...] | None:
        configured = inp.config.effective_node_port_addresses
        if not configured:
            return None  # every local address
        primary = inp.primary_node_ip
        out = [a for a in node_addresses if _accepts(configured, a)]
        if "primary" in configured and primary:
            out.append(primary)
        return tuple(sorted(set(out), key=lambda a: (":" in a, a)))

    node_addresses = tuple(a for a in node_addresses if is_ip(a))
    before, after = accepted(inp_current), accepted(inp_target)
    before_set = set(node_addresses) if before is None else set(before)
    after_set = set(node_addresses) if after is None else set(after)
    lost = tuple(sorted(before_set - after_set, key=lambda a: (":" in a, a)))
    return NodePortAddressChange(inp_current.node_name, before or ("*",), after or ("*",), lost, addresses_source)
