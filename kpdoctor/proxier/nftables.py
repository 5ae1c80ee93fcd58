"""Reference proxier, nftables mode: the `nft -f` transaction kube-proxy writes for one node and family.

The layout follows `pkg/proxy/nftables/proxier.go` and is version-aware because
it changed twice after the mode went beta:

* 1.31-1.32 ("filter-prerouting" layout): filter base chains at priority
  dstnat-10, a `filter-output-post-dnat` chain for `cluster-ips-check`, a
  `mark-for-masquerade` chain, per-endpoint chains with a hairpin
  `ip saddr <ep> jump mark-for-masquerade` rule, and the ClusterIP masquerade
  rule (`ip daddr <ip> <proto> dport <port> ...`) inside the service chain.
  Source read: kubernetes/kubernetes proxier.go @ b0f823e6.
* 1.33-1.35 ("pre-dnat" layout): `filter-prerouting-pre-dnat` /
  `filter-output-pre-dnat` at -110, the other filter chains at priority 0,
  the masquerade rule without the port match. Source read: upstream
  proxier_test.go @ 81810de6 (TestOverallNFTablesRules).
* 1.36 (golden data from a real v1.36.2): no `mark-for-masquerade` chain
  (`meta mark set meta mark | MARK` inline), the ClusterIP masquerade rule
  moved to the `services` chain (`@cluster-ips`), hairpin masquerading through
  the `hairpin-connections` set, and endpoint chains only for ClientIP
  affinity: other services DNAT inline with `dnat ip to numgen random mod N map`.
* 1.37 (proven against a real v1.37.2 in the lab): as 1.36, but a Service with a single endpoint
  gets `meta l4proto tcp dnat to IP:PORT` instead of a one-entry numgen map.

The exact minor where each change landed could not be read from a tagged
source here (the stored upstream copies are untagged); the boundaries above are
our best reading and are documented as such. Output is deterministic (services
in API order) where kube-proxy follows Go map order; the golden comparison
normalizes that.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kpdoctor.addresses import IPV6, cidr_family
from kpdoctor.errors import InputError
from kpdoctor.gcpause import gc_paused
from kpdoctor.proxier.context import ProxierInput
from kpdoctor.proxier.endpoints import EndpointInfo, ServicePortEndpoints
from kpdoctor.proxier.names import _PAIRS, _sha256

TABLE = "kube-proxy"
NAME_LENGTH_MAX = 256  # knftables.NameLengthMax
CHAIN_NAME_PREFIX_LENGTH_MAX = 16
CHAIN_NAME_BASE_LENGTH_MAX = NAME_LENGTH_MAX - CHAIN_NAME_PREFIX_LENGTH_MAX

LAYOUT_131 = "1.31"
LAYOUT_133 = "1.33"
LAYOUT_136 = "1.36"
MIN_VERSION = (1, 31)


def layout_for(version: tuple[int, int]) -> str:
    """Which of the three rule layouts a kube-proxy version writes."""
    if version < MIN_VERSION:
        raise InputError(
            f"nftables rendering supports kube-proxy v1.31 and later, not v{version[0]}.{version[1]} "
            "(nftables mode was alpha before v1.31)"
        )
    if version >= (1, 36):
        return LAYOUT_136
    if version >= (1, 33):
        return LAYOUT_133
    return LAYOUT_131


def hash_and_truncate(name: str) -> str:
    """`hashAndTruncate`: 8 chars of base32(sha256(name)) + "-" + name, cut to 240 with "..."."""
    n = int.from_bytes(_sha256(name.encode()).digest()[:5], "big")  # 40 bits = 8 base32 characters
    out = f"{_PAIRS[n >> 30]}{_PAIRS[(n >> 20) & 1023]}{_PAIRS[(n >> 10) & 1023]}{_PAIRS[n & 1023]}-{name}"
    if len(out) > CHAIN_NAME_BASE_LENGTH_MAX:
        out = out[: CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return out


def service_chain_base(namespace: str, name: str, protocol_lower: str, port_name: str) -> str:
    return hash_and_truncate(f"{namespace}/{name}/{protocol_lower}/{port_name}")


def endpoint_chain_base(namespace: str, name: str, protocol_lower: str, port_name: str, ep: EndpointInfo) -> str:
    ip = ep.ip.replace(":", ".") if ":" in ep.ip else ep.ip
    return hash_and_truncate(f"{namespace}/{name}/{protocol_lower}/{port_name}__{ip}/{ep.port}")


# kube-proxy v1.37 DNATs a one-endpoint Service straight to it instead of through a one-entry numgen map
# (seen in the rules a real v1.37.2 wrote in the lab: tests/lab/test_klab_fidelity.py; absent in v1.36.3's source).
SINGLE_ENDPOINT_DNAT_SINCE = (1, 37)


def _dnat_target(ep: EndpointInfo) -> str:
    return f"[{ep.ip}]:{ep.port}" if ":" in ep.ip else f"{ep.ip}:{ep.port}"


def _comment(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


@dataclass(frozen=True)
class _Family:
    ipx: str  # "ip" / "ip6"
    addr_type: str  # "ipv4_addr" / "ipv6_addr"
    no_localhost: str

    @classmethod
    def of(cls, family: str) -> _Family:
        if family == IPV6:
            return cls("ip6", "ipv6_addr", "ip6 daddr != ::1")
        return cls("ip", "ipv4_addr", "ip daddr != 127.0.0.0/8")


@dataclass(frozen=True)
class _LocalDetector:
    """`LocalTrafficDetector`'s nft fragments (`IfLocalNFT` / `IfNotLocalNFT`); empty when not implemented."""

    if_local: str = ""
    if_not_local: str = ""

    @property
    def implemented(self) -> bool:
        return bool(self.if_local)


def local_detector(inp: ProxierInput) -> _LocalDetector:
    cfg = inp.config
    fam = _Family.of(inp.family)
    mode = cfg.effective_detect_local_mode
    if mode == "ClusterCIDR":
        cidrs = [c.strip() for c in cfg.cluster_cidr.split(",") if c.strip() and cidr_family(c) == inp.family]
        if cidrs:
            net = str(ipaddress.ip_network(cidrs[0], strict=False))
            return _LocalDetector(f"{fam.ipx} saddr {net}", f"{fam.ipx} saddr != {net}")
    elif mode == "NodeCIDR":
        node = inp.cluster.node_by_name.get(inp.node_name)
        cidrs = [c for c in (node.pod_cidrs if node else ()) if cidr_family(c) == inp.family]
        if cidrs:
            net = str(ipaddress.ip_network(cidrs[0], strict=False))
            return _LocalDetector(f"{fam.ipx} saddr {net}", f"{fam.ipx} saddr != {net}")
    elif mode == "BridgeInterface" and cfg.bridge_interface:
        return _LocalDetector(f"iifname {_comment(cfg.bridge_interface)}", f"iifname != {_comment(cfg.bridge_interface)}")
    elif mode == "InterfaceNamePrefix" and cfg.interface_name_prefix:
        pat = _comment(cfg.interface_name_prefix + "*")
        return _LocalDetector(f"iifname {pat}", f"iifname != {pat}")
    return _LocalDetector()


@dataclass(frozen=True)
class NodePortAddresses:
    """`proxyutil.NodePortAddresses` for one family: match-all, or the node IPs inside the CIDRs."""

    match_all: bool
    node_ips: tuple[str, ...]


def node_port_addresses(inp: ProxierInput) -> NodePortAddresses:
    """Resolve `nodePortAddresses` (`primary` -> the node IP as a /32 or /128) against the node's IPs.

    kube-proxy reads interface addresses from the host; the Node object's
    InternalIP/ExternalIP addresses are the best offline stand-in.
    """
    raw = inp.config.effective_node_port_addresses
    cidrs: list[str] = []
    for item in raw:
        item = item.strip()
        if item == "primary":
            ip = inp.primary_node_ip
            if ip:
                cidrs.append(f"{ip}/{128 if ':' in ip else 32}")
        elif item:
            cidrs.append(item)
    nets = []
    for c in cidrs:
        if cidr_family(c) != inp.family:
            continue
        net = ipaddress.ip_network(c, strict=False)
        if net.prefixlen == 0:
            return NodePortAddresses(True, ())
        nets.append(net)
    if not nets:
        return NodePortAddresses(True, ())
    ips = []
    for ip in inp.node_ips:
        addr = ipaddress.ip_address(ip)
        if addr.is_loopback:
            continue
        if any(addr in n for n in nets) and str(addr) not in ips:
            ips.append(str(addr))
    return NodePortAddresses(False, tuple(ips))


class _Tx:
    """Accumulates `nft -f` lines for one table, in kube-proxy's command style."""

    def __init__(self, ipx: str) -> None:
        self.head = f"{ipx} {TABLE}"
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def chain(self, name: str, spec: str = "") -> None:
        self.lines.append(f"add chain {self.head} {name}{(' { ' + spec + ' ; }') if spec else ''}")
        self.lines.append(f"flush chain {self.head} {name}")

    def rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        suffix = f" comment {_comment(comment)}" if comment else ""
        self.lines.append(f"add rule {self.head} {chain} {rule}{suffix}")

    def container(self, kind: str, name: str, spec: str, *, flush: bool = True) -> None:
        self.lines.append(f"add {kind} {self.head} {name} {{ {spec} ; }}")
        if flush:
            self.lines.append(f"flush {kind} {self.head} {name}")

    def element(self, container: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        text = key
        if comment:
            text += f" comment {_comment(comment)}"
        if value is not None:
            text += f" : {value}"
        self.lines.append(f"add element {self.head} {container} {{ {text} }}")


_BASE_CHAINS: dict[str, tuple[tuple[str, str, str, int], ...]] = {
    LAYOUT_131: (
        ("filter-prerouting", "filter", "prerouting", -110),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
        ("filter-output-post-dnat", "filter", "output", -90),
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
    ),
    LAYOUT_133: (
        ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
        ("filter-output-pre-dnat", "filter", "output", -110),
        ("filter-input", "filter", "input", 0),
        ("filter-forward", "filter", "forward", 0),
        ("filter-output", "filter", "output", 0),
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
    ),
}
_BASE_CHAINS[LAYOUT_136] = _BASE_CHAINS[LAYOUT_133]

# (destination chain, source chain, extra match) in kube-proxy's `nftablesJumpChains` order.
_JUMPS: dict[str, tuple[tuple[str, str, str], ...]] = {
    LAYOUT_131: (
        ("nodeport-endpoints-check", "filter-input", "ct state new"),
        ("service-endpoints-check", "filter-input", "ct state new"),
        ("service-endpoints-check", "filter-forward", "ct state new"),
        ("service-endpoints-check", "filter-output", "ct state new"),
        ("firewall-check", "filter-prerouting", "ct state new"),
        ("firewall-check", "filter-output", "ct state new"),
        ("services", "nat-output", ""),
        ("services", "nat-prerouting", ""),
        ("masquerading", "nat-postrouting", ""),
        ("cluster-ips-check", "filter-forward", "ct state new"),
        ("cluster-ips-check", "filter-output-post-dnat", "ct state new"),
    ),
    LAYOUT_133: (
        ("firewall-check", "filter-prerouting-pre-dnat", "ct state new"),
        ("firewall-check", "filter-output-pre-dnat", "ct state new"),
        ("nodeport-endpoints-check", "filter-input", "ct state new"),
        ("service-endpoints-check", "filter-input", "ct state new"),
        ("service-endpoints-check", "filter-forward", "ct state new"),
        ("cluster-ips-check", "filter-forward", "ct state new"),
        ("service-endpoints-check", "filter-output", "ct state new"),
        ("cluster-ips-check", "filter-output", "ct state new"),
        ("services", "nat-prerouting", ""),
        ("services", "nat-output", ""),
        ("masquerading", "nat-postrouting", ""),
    ),
}
_JUMPS[LAYOUT_136] = _JUMPS[LAYOUT_133]


def _normalized_ranges(ranges: Iterable[str]) -> list[str]:
    out: list[str] = []
    for r in ranges:
        try:
            out.append(str(ipaddress.ip_network(r.strip(), strict=False)))
        except ValueError:
            continue
    return out


def _service_cidrs(inp: ProxierInput, given: Sequence[str] | None) -> list[str]:
    """ServiceCIDRs of this family. kube-proxy watches ServiceCIDR objects; snapshots rarely carry them."""
    if given is None:
        given = tuple(getattr(inp.cluster, "service_cidrs", ()) or ())
    return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in given if cidr_family(c) == inp.family]


class _Renderer:
    def __init__(self, inp: ProxierInput, service_cidrs: Sequence[str] | None) -> None:
        self.inp = inp
        self.layout = layout_for(inp.version)
        self._new_layout = self.layout == LAYOUT_136
        self.fam = _Family.of(inp.family)
        self.mark = inp.config.masquerade_mark
        self.masquerade_all = inp.config.masquerade_all
        self.detector = local_detector(inp)
        self.npa = node_port_addresses(inp)
        self.service_cidrs = _service_cidrs(inp, service_cidrs)
        self.tx = _Tx(self.fam.ipx)
        self.chains = _Tx(self.fam.ipx)  # per-service chains, appended after the top-level objects
        self.elements = _Tx(self.fam.ipx)

    # --- helpers ------------------------------------------------------------------------
    @property
    def new_layout(self) -> bool:
        return self._new_layout

    def mark_masq(self) -> str:
        """The statement that marks a packet for masquerading."""
        if self.new_layout:
            return f"meta mark set meta mark | {self.mark}"
        return "jump mark-for-masquerade"

    # --- top level ------------------------------------------------------------------------
    def setup(self) -> None:
        tx, fam, ipx = self.tx, self.fam, self.fam.ipx
        tx.add(f'add table {tx.head} {{ comment "rules for kube-proxy" ; }}')
        addr = fam.addr_type
        if self.new_layout:
            tx.container(
                "set", "hairpin-connections",
                f'type {addr} . {addr} . inet_proto . inet_service ; comment "service hairpin connections"',
            )
        tx.container("set", "cluster-ips", f'type {addr} ; comment "Active ClusterIPs"')
        if not self.npa.match_all:
            tx.container("set", "nodeport-ips", f'type {addr} ; comment "IPs that accept NodePort traffic"')
            for ip in self.npa.node_ips:
                tx.element("nodeport-ips", ip)
        tx.container(
            "map", "no-endpoint-services",
            f"type {addr} . inet_proto . inet_service : verdict ; "
            'comment "vmap to drop or reject packets to services with no endpoints"',
        )
        tx.container(
            "map", "no-endpoint-nodeports",
            "type inet_proto . inet_service : verdict ; "
            'comment "vmap to drop or reject packets to service nodeports with no endpoints"',
        )
        tx.container(
            "map", "firewall-ips",
            f"type {addr} . inet_proto . inet_service : verdict ; "
            'comment "destinations that are subject to LoadBalancerSourceRanges"',
        )
        tx.container(
            "map", "service-ips",
            f'type {addr} . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"',
        )
        tx.container("map", "service-nodeports", 'type inet_proto . inet_service : verdict ; comment "NodePort traffic"')

        for name, ctype, hook, prio in _BASE_CHAINS[self.layout]:
            tx.chain(name, f"type {ctype} hook {hook} priority {prio}")
        created: set[str] = set()
        regular = ["nodeport-endpoints-check", "service-endpoints-check", "firewall-check", "services", "masquerading",
                   "cluster-ips-check"]
        if not self.new_layout:
            regular.append("mark-for-masquerade")
        for name in regular:
            tx.chain(name)
            created.add(name)
        tx.chain("reject-chain", 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports"')
        for dst, src, extra in _JUMPS[self.layout]:
            tx.rule(src, f"{extra} jump {dst}".strip())

        if not self.npa.match_all:
            tx.rule("nodeport-endpoints-check",
                    f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")
        else:
            tx.rule("nodeport-endpoints-check", f"{fam.no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports")
        tx.rule("service-endpoints-check", f"{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services")
        tx.rule("firewall-check", f"{ipx} daddr . meta l4proto . th dport vmap @firewall-ips")

        if self.new_layout:
            if self.masquerade_all:
                tx.rule("services", f"{ipx} daddr @cluster-ips {self.mark_masq()}", "masquerade all clusterIP traffic")
            elif self.detector.implemented:
                tx.rule("services", f"{ipx} daddr @cluster-ips {self.detector.if_not_local} {self.mark_masq()}",
                        "masquerade clusterIP traffic from outside cluster")
        tx.rule("services", f"{ipx} daddr . meta l4proto . th dport vmap @service-ips")
        if not self.npa.match_all:
            tx.rule("services", f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")
        else:
            tx.rule("services", f"fib daddr type local {fam.no_localhost} meta l4proto . th dport vmap @service-nodeports")

        if self.new_layout:
            tx.rule("masquerading",
                    f"meta mark & {self.mark} != 0 meta mark set meta mark ^ {self.mark} masquerade fully-random")
            tx.rule("masquerading",
                    f"ct status dnat {ipx} saddr . {ipx} daddr . meta l4proto . th dport @hairpin-connections "
                    "masquerade fully-random")
        else:
            tx.rule("mark-for-masquerade", f"meta mark set meta mark | {self.mark}")
            tx.rule("masquerading", f"meta mark & {self.mark} == 0 return")
            tx.rule("masquerading", f"meta mark set meta mark ^ {self.mark}")
            tx.rule("masquerading", "masquerade fully-random")

        tx.rule("cluster-ips-check", f"{ipx} daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
        if self.service_cidrs:
            tx.rule("cluster-ips-check", f"{ipx} daddr {{ {', '.join(self.service_cidrs)} }} drop",
                    "Drop traffic to unallocated ClusterIPs")
        tx.rule("reject-chain", "reject")

    # --- per service port -----------------------------------------------------------------
    # `service` runs once per service port (10,000s) and is the renderer's whole cost at scale, so it
    # appends finished lines to the three line lists directly; the text is what `_Tx` would write.
    def service(self, spe: ServicePortEndpoints) -> None:
        info, cat = spe.info, spe.categorized
        new_layout = self.new_layout
        head = self.tx.head
        tx_add = self.tx.lines.append
        ch_add = self.chains.lines.append
        el_add = self.elements.lines.append
        ipx = self.fam.ipx
        namespace, svc_name, port_name = info.namespace, info.name, info.port_name
        proto = info.protocol_lower
        base = service_chain_base(namespace, svc_name, proto, port_name)
        cluster_chain, local_chain = f"service-{base}", f"local-{base}"
        external_chain, fw_chain = f"external-{base}", f"firewall-{base}"
        name = info.service_port_name
        affinity = info.session_affinity_seconds > 0
        all_reachable = cat.all_reachable
        with_ep_chains = affinity or not new_layout  # v1.36 has endpoint chains only for ClientIP affinity

        ep_chain: dict[str, str] = {}
        ep_set: dict[str, str] = {}
        if with_ep_chains:
            for ep in all_reachable:
                eb = endpoint_chain_base(namespace, svc_name, proto, port_name, ep)
                ep_chain[ep.key], ep_set[ep.key] = f"endpoint-{eb}", f"affinity-{eb}"

        uses_cluster_chain = bool(cat.cluster) and info.uses_cluster_endpoints
        uses_local_chain = bool(cat.local) and info.uses_local_endpoints
        has_endpoints = cat.has_any
        internal_policy_local = info.internal_policy_local
        external_policy_local = info.external_policy_local
        internal_chain, has_internal = cluster_chain, has_endpoints
        if internal_policy_local:
            internal_chain = local_chain
            has_internal = bool(cat.local) and has_endpoints
        external_policy_chain, has_external = cluster_chain, has_endpoints
        if external_policy_local:
            external_policy_chain = local_chain
            has_external = bool(cat.local) and has_endpoints
        uses_external_chain = has_endpoints and info.externally_accessible
        internal_verdict = external_verdict = ""
        if not has_endpoints:
            internal_verdict = external_verdict = "goto reject-chain"
        else:
            if not has_internal:
                internal_verdict = "drop"
            if not has_external:
                external_verdict = "drop"

        # map/set elements (`_Tx.element`): `add element <head> <map> { <key>[ comment "…"][ : <value>] }`
        port = str(info.port.port)
        cluster_ip = info.cluster_ip
        el = f"add element {head} "
        no_ep_comment = f" comment {_comment(name)}" if name else ""
        el_add(f"{el}cluster-ips {{ {cluster_ip} }}")
        if has_internal:
            el_add(f"{el}service-ips {{ {cluster_ip} . {proto} . {port} : goto {internal_chain} }}")
        else:
            el_add(f"{el}no-endpoint-services {{ {cluster_ip} . {proto} . {port}{no_ep_comment} : {internal_verdict} }}")
        for ext in info.external_ips:
            if has_endpoints:
                el_add(f"{el}service-ips {{ {ext} . {proto} . {port} : goto {external_chain} }}")
            if not has_external:
                el_add(f"{el}no-endpoint-services {{ {ext} . {proto} . {port}{no_ep_comment} : {external_verdict} }}")
        lb_vips = info.load_balancer_vips
        ranges = _normalized_ranges(info.load_balancer_source_ranges) if lb_vips else []
        uses_fw = bool(lb_vips) and bool(ranges)
        for lb in lb_vips:
            if has_endpoints:
                el_add(f"{el}service-ips {{ {lb} . {proto} . {port} : goto {external_chain} }}")
            if uses_fw:
                el_add(f"{el}firewall-ips {{ {lb} . {proto} . {port} : goto {fw_chain} }}")
        if not has_external:
            for lb in lb_vips:
                el_add(f"{el}no-endpoint-services {{ {lb} . {proto} . {port}{no_ep_comment} : {external_verdict} }}")
        node_port = info.node_port
        if node_port:
            if has_endpoints:
                el_add(f"{el}service-nodeports {{ {proto} . {node_port} : goto {external_chain} }}")
            if not has_external:
                el_add(f"{el}no-endpoint-nodeports {{ {proto} . {node_port}{no_ep_comment} : {external_verdict} }}")

        if new_layout:
            for ep in all_reachable:
                if ep.is_local:
                    el_add(f"{el}hairpin-connections {{ {ep.ip} . {ep.ip} . {proto} . {ep.port} }}")

        # chains (`_Tx.chain`), in kube-proxy's creation order: endpoints, cluster, local, external, firewall
        add_chain, flush_chain = f"add chain {head} ", f"flush chain {head} "
        created = [ep_chain[ep.key] for ep in all_reachable] if with_ep_chains else []
        if uses_cluster_chain:
            created.append(cluster_chain)
        if uses_local_chain:
            created.append(local_chain)
        if uses_external_chain:
            created.append(external_chain)
        if uses_fw:
            created.append(fw_chain)
        for chain in created:
            ch_add(add_chain + chain)
            ch_add(flush_chain + chain)

        # rules (`_Tx.rule`): `add rule <head> <chain> <rule>[ comment "…"]`
        rule = f"add rule {head} "
        if has_internal and not new_layout:
            if self.layout == LAYOUT_131:
                match = f"{ipx} daddr {cluster_ip} {proto} dport {port}"
            else:
                match = f"{ipx} daddr {cluster_ip}"
            if self.masquerade_all:
                ch_add(f"{rule}{internal_chain} {match} jump mark-for-masquerade")
            elif self.detector.implemented:
                ch_add(f"{rule}{internal_chain} {match} {self.detector.if_not_local} jump mark-for-masquerade")

        if uses_external_chain:
            mark_masq = self.mark_masq()
            if not external_policy_local:
                ch_add(f"{rule}{external_chain} {mark_masq}" + (' comment "masquerade"' if new_layout else ""))
            else:
                if self.detector.implemented:
                    ch_add(f"{rule}{external_chain} {self.detector.if_local} goto {cluster_chain}"
                           ' comment "short-circuit pod traffic"')
                ch_add(f'{rule}{external_chain} fib saddr type local {mark_masq} comment "masquerade local traffic"')
                ch_add(f'{rule}{external_chain} fib saddr type local goto {cluster_chain} '
                       'comment "short-circuit local traffic"')
            if has_external:
                ch_add(f"{rule}{external_chain} goto {external_policy_chain}")

        if uses_fw:
            sources = list(ranges)
            node_ip = self.inp.primary_node_ip
            if node_ip and any(ipaddress.ip_address(node_ip) in ipaddress.ip_network(r) for r in ranges):
                sources.extend(lb_vips)
            ch_add(f"{rule}{fw_chain} {ipx} saddr != {{ {', '.join(sources)} }} drop")

        if affinity:
            timeout = info.session_affinity_seconds
            spec = f"type {self.fam.addr_type} ; flags dynamic,timeout ; timeout {timeout}s"
            for ep in all_reachable:
                tx_add(f"add set {head} {ep_set[ep.key]} {{ {spec} ; }}")

        if uses_cluster_chain:
            self._to_endpoints(cluster_chain, proto, cat.cluster, ep_chain, ep_set, affinity)
        if uses_local_chain:
            self._to_endpoints(local_chain, proto, cat.local, ep_chain, ep_set, affinity)

        if with_ep_chains:
            for ep in all_reachable:
                key = ep.key
                prefix = f"{rule}{ep_chain[key]} "
                if not new_layout:
                    ch_add(f"{prefix}{ipx} saddr {ep.ip} jump mark-for-masquerade")
                if affinity:
                    ch_add(f"{prefix}update @{ep_set[key]} {{ {ipx} saddr }}")
                ch_add(f"{prefix}meta l4proto {proto} dnat to {_dnat_target(ep)}")

    def _to_endpoints(
        self, chain: str, proto: str, endpoints: Sequence[EndpointInfo],
        ep_chain: dict[str, str], ep_set: dict[str, str], affinity: bool,
    ) -> None:
        ipx = self.fam.ipx
        ch_add = self.chains.lines.append
        prefix = f"add rule {self.tx.head} {chain} "
        if affinity:
            for ep in endpoints:
                key = ep.key
                ch_add(f"{prefix}{ipx} saddr @{ep_set[key]} goto {ep_chain[key]}")
        n = len(endpoints)
        if self.new_layout and not affinity and n == 1 and self.inp.version >= SINGLE_ENDPOINT_DNAT_SINCE:
            # 1.37 (writeServiceToEndpointDNATs, "Special case for single endpoint services"): no map.
            ch_add(f"{prefix}meta l4proto {proto} dnat to {_dnat_target(endpoints[0])}")
        elif self.new_layout and not affinity:
            entries = ", ".join([f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(endpoints)])
            ch_add(f"{prefix}meta l4proto {proto} dnat {ipx} to numgen random mod {n} map {{ {entries} }}")
        else:
            entries = ", ".join([f"{i} : goto {ep_chain[ep.key]}" for i, ep in enumerate(endpoints)])
            ch_add(f"{prefix}numgen random mod {n} vmap {{ {entries} }}")

    def render(self) -> str:
        self.setup()
        service = self.service
        for spe in self.inp.service_ports():
            service(spe)
        # dedup set elements shared by several service ports (cluster-ips of multi-port services, hairpins):
        # dict keys keep the first occurrence's position
        elements = dict.fromkeys(self.elements.lines)
        return "\n".join([*self.tx.lines, *self.chains.lines, *elements]) + "\n"


def render_nftables(inp: ProxierInput, *, service_cidrs: Sequence[str] | None = None) -> str:
    """The `nft -f` input kube-proxy (nftables mode, `inp.version`) applies for `inp.family` on `inp.node_name`.

    `service_cidrs` are the cluster's ServiceCIDRs (kube-proxy reads ServiceCIDR
    objects for the "Drop traffic to unallocated ClusterIPs" rule); None means
    "whatever the snapshot carries", and without them that one rule is left out.
    """
    with gc_paused():  # also covers `inp.service_ports()`, the endpoint selection, when not computed yet
        return _Renderer(inp, service_cidrs).render()


def render_nftables_families(inps: Sequence[ProxierInput], *, service_cidrs: Sequence[str] | None = None) -> str:
    """One transaction for several families: a dual-stack kube-proxy writes `ip` and `ip6` tables."""
    return "".join(render_nftables(i, service_cidrs=service_cidrs) for i in inps)
