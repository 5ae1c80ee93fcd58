"""The iptables-mode reference proxier: what kube-proxy v1.36 leaves in netfilter on one node.

This follows `syncProxyRules` in kube-proxy's `pkg/proxy/iptables/proxier.go`
line for line (rule order, argument order, comment quoting, `%0.10f`
probabilities, hashes), because the point is to be byte-exact: the output,
restored into an empty network namespace and dumped with `iptables-save`, must
equal what a real kube-proxy left on the node (up to the per-service order of
KUBE-SERVICES-like chains, which kube-proxy takes from Go map iteration).

Two renderings exist:
- `render_restore_payload`: exactly the text kube-proxy pipes into
  `iptables-restore --noflush` on a full sync (filter + nat only), which is what
  upstream's unit tests compare;
- `render_iptables`: the complete state kube-proxy leaves behind, i.e. the
  payload plus what it creates with single `iptables` calls (the jump rules from
  the built-in chains, kubelet's KUBE-FIREWALL chain, the KUBE-PROXY-CANARY chains
  in mangle/nat/filter), as one restore file for an empty namespace.

Node-local facts kube-proxy reads from the host rather than the API are
options: whether the nfacct counters exist, whether `iptables` supports
`--random-fully`, `nf_conntrack_tcp_be_liberal`, and the node's local
addresses (for CIDR `nodePortAddresses`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from kpdoctor.addresses import IPV4, IPV6, canonical_ip, cidr_family
from kpdoctor.dataplane.iptables_save import BUILTIN_CHAINS
from kpdoctor.gcpause import gc_paused
from kpdoctor.proxier.context import ProxierInput
from kpdoctor.proxier.names import hash16, port_proto_hash

LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000
NFACCT_CT_STATE_INVALID = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NODEPORTS = "localhost_nps_accepted_pkts"

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's anti-martian chain, duplicated by kube-proxy

TABLE_ORDER = ("mangle", "filter", "nat")  # the order iptables-nft-save prints them

_CONNTRACK_NEW = ("-m", "conntrack", "--ctstate", "NEW")
# `iptablesJumpChains` + `iptablesKubeletJumpChains`: (table, kube chain, built-in chain, comment, extra args).
# kube-proxy inserts each with `iptables -I` (prepend), so a built-in chain ends up holding them in reverse.
JUMP_CHAINS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals", _CONNTRACK_NEW),
    ("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals", _CONNTRACK_NEW),
    ("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports", ()),
    ("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", _CONNTRACK_NEW),
    ("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", _CONNTRACK_NEW),
    ("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules", ()),
    ("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", _CONNTRACK_NEW),
    ("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", _CONNTRACK_NEW),
    ("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", _CONNTRACK_NEW),
    ("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", ()),
    ("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals", ()),
    ("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules", ()),
    ("filter", KUBE_FIREWALL, "INPUT", "", ()),
    ("filter", KUBE_FIREWALL, "OUTPUT", "", ()),
)
# `ipt.Monitor` creates the canary chain in these tables.
CANARY_TABLES = ("mangle", "nat", "filter")

_NODEPORTS_COMMENT = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'


@dataclass(frozen=True)
class IptablesOptions:
    """Host facts kube-proxy reads from the node itself (not from the API)."""

    nfacct: bool = True  # the two nfacct counters could be created (nfnetlink_acct present)
    random_fully: bool = True  # iptables >= 1.6.2 supports MASQUERADE --random-fully
    conntrack_tcp_liberal: bool | None = None  # net.netfilter.nf_conntrack_tcp_be_liberal; None: from config
    # The node's interface addresses of the rendered family (for CIDR nodePortAddresses). None: the
    # Node object's InternalIP/ExternalIP addresses plus the loopback address.
    local_addresses: tuple[str, ...] | None = None


@dataclass(frozen=True)
class NodePortAddresses:
    """`proxyutil.NodePortAddresses` for one family."""

    match_all: bool
    cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    contains_ipv4_loopback: bool

    def node_ips(self, local_addresses: Sequence[str]) -> list[str]:
        """`GetNodeIPs`: the local addresses inside one of the CIDRs (kube-proxy's order is a Go map's)."""
        found: list[str] = []
        for text in local_addresses:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if any(ip.version == c.version and ip in c for c in self.cidrs) and str(ip) not in found:
                found.append(str(ip))
        return found


def nodeport_addresses(inp: ProxierInput) -> NodePortAddresses:
    """Resolve `nodePortAddresses` for the input's family ("primary" -> the node's primary IP)."""
    configured = inp.config.effective_node_port_addresses
    strings: list[str] = []
    for entry in configured:
        if entry == "primary":
            primary = inp.primary_node_ip
            if primary and not ipaddress.ip_address(primary).is_loopback:
                strings.append(f"{primary}/{32 if inp.family == IPV4 else 128}")
        elif cidr_family(entry) == inp.family:
            strings.append(entry.strip())
    if not strings:  # nothing for this family: kube-proxy falls back to the zero CIDR (all addresses)
        strings = ["0.0.0.0/0" if inp.family == IPV4 else "::/0"]
    cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    loopback = False
    match_all = False
    for text in strings:
        net = ipaddress.ip_network(text, strict=False)
        if net.version == 4 and (net.network_address.is_loopback or ipaddress.ip_address("127.0.0.0") in net):
            loopback = True
        if net.prefixlen == 0:
            cidrs = [net]
            match_all = True
            break
        cidrs.append(net)
    return NodePortAddresses(match_all, tuple(cidrs), loopback)


def local_detector(inp: ProxierInput) -> tuple[str, str] | None:
    """`LocalTrafficDetector` args (IfLocal, IfNotLocal) for detectLocalMode, or None (no-op detector)."""
    cfg = inp.config
    mode = cfg.effective_detect_local_mode
    if mode == "ClusterCIDR":
        for cidr in (c.strip() for c in cfg.cluster_cidr.split(",")):
            if cidr and cidr_family(cidr) == inp.family:
                return f"-s {cidr}", f"! -s {cidr}"
    elif mode == "NodeCIDR":
        node = inp.cluster.node_by_name.get(inp.node_name)
        for cidr in node.pod_cidrs if node is not None else ():
            if cidr_family(cidr) == inp.family:
                return f"-s {cidr}", f"! -s {cidr}"
    elif mode == "BridgeInterface":
        if cfg.bridge_interface:
            return f"-i {cfg.bridge_interface}", f"! -i {cfg.bridge_interface}"
    elif mode == "InterfaceNamePrefix" and cfg.interface_name_prefix:
        return f"-i {cfg.interface_name_prefix}+", f"! -i {cfg.interface_name_prefix}+"
    return None


def _ip_string(text: str) -> str:
    """Go's `net.IP.String()`: canonical form."""
    return canonical_ip(text) or text


def _cidr_string(text: str) -> str:
    """Go's `(*net.IPNet).String()` after ParseCIDRSloppy: the masked network."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return text.strip()


def _chain_line(name: str) -> str:
    return f":{name} - [0:0]"


@dataclass
class IptablesRuleset:
    """kube-proxy's four line buffers after one full sync (lines without newlines)."""

    family: str
    filter_chains: list[str]
    filter_rules: list[str]
    nat_chains: list[str]
    nat_rules: list[str]
    large_cluster_mode: bool
    total_endpoints: int

    def payload(self) -> str:
        """The `iptables-restore --noflush` input of a full sync, as kube-proxy writes it."""
        parts = ["*filter", *self.filter_chains, *self.filter_rules, "COMMIT", "*nat", *self.nat_chains,
                 *self.nat_rules, "COMMIT", ""]
        return "\n".join(parts)


class _Probabilities:
    """kube-proxy precomputes `fmt.Sprintf("%0.10f", 1.0/float64(n))`; Python's formatting rounds the same way."""

    def __init__(self) -> None:
        self._cache: list[str] = ["<bad value>"]

    def __call__(self, n: int) -> str:
        cache = self._cache
        while len(cache) <= n:
            cache.append(f"{1.0 / len(cache):.10f}")
        return cache[n]


def sync_rules(inp: ProxierInput, options: IptablesOptions | None = None) -> IptablesRuleset:
    """One full `syncProxyRules` for `inp`: the filter and nat chains and rules, in kube-proxy's order."""
    with gc_paused():
        return _sync_rules(inp, options)


def _sync_rules(inp: ProxierInput, options: IptablesOptions | None) -> IptablesRuleset:
    opts = options or IptablesOptions()
    cfg = inp.config
    family = inp.family
    is_ipv6 = family == IPV6
    mark = cfg.masquerade_mark
    masquerade_all = cfg.masquerade_all
    detector = local_detector(inp)
    if_local, if_not_local = detector if detector is not None else ("", "")
    npa = nodeport_addresses(inp)
    localhost_nodeports = cfg.localhost_node_ports and npa.contains_ipv4_loopback and not is_ipv6
    conntrack_liberal = cfg.conntrack_tcp_be_liberal if opts.conntrack_tcp_liberal is None else opts.conntrack_tcp_liberal
    node_ip = inp.primary_node_ip
    node_ip_obj = ipaddress.ip_address(node_ip) if node_ip else None
    probability = _Probabilities()

    filter_chains = [_chain_line(c) for c in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS,
                                              KUBE_PROXY_FIREWALL)]
    nat_chains = [_chain_line(c) for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)]
    filter_rules: list[str] = []
    nat_rules: list[str] = [
        f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + (" --random-fully" if opts.random_fully else ""),
        f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    if not is_ipv6 and localhost_nodeports:
        filter_chains.append(_chain_line(KUBE_FIREWALL))
        filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
            "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        )

    service_ports = inp.service_ports()
    total_endpoints = sum(len(spe.endpoints) for spe in service_ports)
    large = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    nat_add = nat_rules.append
    natc_add = nat_chains.append
    filter_add = filter_rules.append

    for spe in service_ports:
        info = spe.info
        cat = spe.categorized
        proto = info.protocol_lower
        spn = info.service_port_name
        port = info.port.port
        h = port_proto_hash(spn, proto)
        cluster_chain = "KUBE-SVC-" + h
        local_chain = "KUBE-SVL-" + h
        ext_chain = "KUBE-EXT-" + h
        fw_chain = "KUBE-FW-" + h
        cluster_eps = cat.cluster
        local_eps = cat.local
        has_endpoints = cat.has_any
        uses_cluster_chain = bool(cluster_eps) and info.uses_cluster_endpoints
        uses_local_chain = bool(local_eps) and info.uses_local_endpoints

        internal_chain = cluster_chain
        has_internal = has_endpoints
        if info.internal_policy_local:
            internal_chain = local_chain
            if not local_eps:
                has_internal = False
        external_policy_chain = cluster_chain
        has_external = has_endpoints
        if info.external_policy_local:
            external_policy_chain = local_chain
            if not local_eps:
                has_external = False
        uses_ext_chain = has_endpoints and info.externally_accessible
        vips = info.load_balancer_vips
        ranges = info.load_balancer_source_ranges
        lb_chain = ext_chain
        uses_fw = has_endpoints and bool(vips) and bool(ranges)
        if uses_fw:
            lb_chain = fw_chain

        internal_target = external_target = ""
        internal_comment = external_comment = ""
        if not has_endpoints:
            internal_target = external_target = "REJECT"
            internal_comment = external_comment = f'"{spn} has no endpoints"'
        else:
            if not has_internal:
                internal_target = "DROP"
                internal_comment = f'"{spn} has no local endpoints"'
            if not has_external:
                external_target = "DROP"
                external_comment = f'"{spn} has no local endpoints"'

        cluster_ip = _ip_string(info.cluster_ip)
        match = f"-m {proto} -p {proto}"
        cluster_ip_args = f'-m comment --comment "{spn} cluster IP" {match} -d {cluster_ip} --dport {port}'
        # Capture the clusterIP.
        if has_internal:
            nat_add(f"-A {KUBE_SERVICES} {cluster_ip_args} -j {internal_chain}")
        else:
            filter_add(
                f"-A {KUBE_SERVICES} -m comment --comment {internal_comment} {match} -d {cluster_ip} "
                f"--dport {port} -j {internal_target}"
            )
        # Capture externalIPs.
        for raw in info.external_ips:
            eip = _ip_string(raw)
            if has_endpoints:
                nat_add(
                    f'-A {KUBE_SERVICES} -m comment --comment "{spn} external IP" {match} -d {eip} '
                    f"--dport {port} -j {ext_chain}"
                )
            if not has_external:
                filter_add(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {match} -d {eip} "
                    f"--dport {port} -j {external_target}"
                )
        # Capture load-balancer ingress.
        for vip in vips:
            if has_endpoints:
                nat_add(
                    f'-A {KUBE_SERVICES} -m comment --comment "{spn} loadbalancer IP" {match} -d {vip} '
                    f"--dport {port} -j {lb_chain}"
                )
            if uses_fw:
                filter_add(
                    f'-A {KUBE_PROXY_FIREWALL} -m comment --comment "{spn} traffic not accepted by {fw_chain}" '
                    f"{match} -d {vip} --dport {port} -j DROP"
                )
        if not has_external:
            for vip in vips:
                filter_add(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} {match} -d {vip} "
                    f"--dport {port} -j {external_target}"
                )
        # Capture nodeports.
        node_port = info.node_port
        if node_port:
            if has_endpoints:
                if localhost_nodeports and opts.nfacct:
                    nat_add(
                        f"-A {KUBE_NODEPORTS} -m comment --comment {spn} {match} -d 127.0.0.0/8 --dport {node_port} "
                        f"-m nfacct --nfacct-name {NFACCT_LOCALHOST_NODEPORTS} -j {ext_chain}"
                    )
                nat_add(f"-A {KUBE_NODEPORTS} -m comment --comment {spn} {match} --dport {node_port} -j {ext_chain}")
            if not has_external:
                filter_add(
                    f"-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m addrtype --dst-type LOCAL "
                    f"{match} --dport {node_port} -j {external_target}"
                )
        # Capture healthCheckNodePorts.
        if info.health_check_node_port:
            filter_add(
                f'-A {KUBE_NODEPORTS} -m comment --comment "{spn} health check node port" -m tcp -p tcp '
                f"--dport {info.health_check_node_port} -j ACCEPT"
            )

        # Internal traffic handling.
        if has_internal:
            if masquerade_all:
                nat_add(f"-A {internal_chain} {cluster_ip_args} -j {KUBE_MARK_MASQ}")
            elif detector is not None:
                nat_add(f"-A {internal_chain} {cluster_ip_args} {if_not_local} -j {KUBE_MARK_MASQ}")

        # External traffic handling.
        if uses_ext_chain:
            natc_add(_chain_line(ext_chain))
            if not info.external_policy_local:
                nat_add(
                    f'-A {ext_chain} -m comment --comment "masquerade traffic for {spn} external destinations" '
                    f"-j {KUBE_MARK_MASQ}"
                )
            else:
                if detector is not None:
                    nat_add(
                        f'-A {ext_chain} -m comment --comment "pod traffic for {spn} external destinations" '
                        f"{if_local} -j {cluster_chain}"
                    )
                nat_add(
                    f'-A {ext_chain} -m comment --comment "masquerade LOCAL traffic for {spn} external destinations" '
                    f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
                )
                nat_add(
                    f'-A {ext_chain} -m comment --comment "route LOCAL traffic for {spn} external destinations" '
                    f"-m addrtype --src-type LOCAL -j {cluster_chain}"
                )
            if has_external:
                nat_add(f"-A {ext_chain} -j {external_policy_chain}")

        # Firewall chain (loadBalancerSourceRanges).
        if uses_fw:
            natc_add(_chain_line(fw_chain))
            fw_args = f'-A {fw_chain} -m comment --comment "{spn} loadbalancer IP"'
            allow_from_node = False
            for raw in ranges:
                cidr = _cidr_string(raw)
                nat_add(f"{fw_args} -s {cidr} -j {ext_chain}")
                if node_ip_obj is not None:
                    try:
                        net = ipaddress.ip_network(cidr, strict=False)
                    except ValueError:
                        continue
                    if net.version == node_ip_obj.version and node_ip_obj in net:
                        allow_from_node = True
            if allow_from_node:
                for vip in vips:
                    nat_add(f"{fw_args} -s {vip} -j {ext_chain}")
            nat_add(
                f'-A {fw_chain} -m comment --comment "other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"'
            )

        # Per-endpoint keys and chain names, computed once per endpoint (the categorized lists share objects).
        reachable = cat.all_reachable
        if not (uses_cluster_chain or uses_local_chain or reachable):
            continue
        # With no Local policy, the cluster endpoints *are* all reachable endpoints (same order): reuse
        # their (key, chain) pairs; otherwise map the categorized lists back by object identity.
        sep_prefix = spn + proto
        if is_ipv6:
            pairs = [(k, "KUBE-SEP-" + hash16(sep_prefix + k)) for k in (f"[{ep.ip}]:{ep.port}" for ep in reachable)]
        else:
            pairs = [(k, "KUBE-SEP-" + hash16(sep_prefix + k)) for k in (f"{ep.ip}:{ep.port}" for ep in reachable)]
        affinity = info.session_affinity_seconds
        if info.uses_local_endpoints:
            named = {id(ep): pair for ep, pair in zip(reachable, pairs, strict=True)}
            cluster_pairs = [named[id(ep)] for ep in cluster_eps]
            local_pairs = [named[id(ep)] for ep in local_eps]
        else:
            cluster_pairs = pairs
            local_pairs = []
        if uses_cluster_chain:
            natc_add(_chain_line(cluster_chain))
            _write_service_to_endpoint_rules(nat_rules, spn, cluster_chain, cluster_pairs, affinity, large, probability)
        if uses_local_chain:
            natc_add(_chain_line(local_chain))
            _write_service_to_endpoint_rules(nat_rules, spn, local_chain, local_pairs, affinity, large, probability)
        comment = "" if large else f" -m comment --comment {spn}"
        recent_tail = f" {match} -j DNAT --to-destination "
        for ep, (key, sep) in zip(reachable, pairs, strict=True):
            natc_add(f":{sep} - [0:0]")
            nat_add(f"-A {sep}{comment} -s {ep.ip} -j {KUBE_MARK_MASQ}")
            if affinity:
                nat_add(f"-A {sep}{comment} -m recent --name {sep} --set{recent_tail}{key}")
            else:
                nat_add(f"-A {sep}{comment}{recent_tail}{key}")

    # Finally, tail-call to the nodePorts chain; this must be the last rule of KUBE-SERVICES.
    if npa.match_all:
        destinations = "-m addrtype --dst-type LOCAL"
        if is_ipv6:
            destinations += " ! -d ::1/128"
        elif not localhost_nodeports:
            destinations += " ! -d 127.0.0.0/8"
        nat_add(f"-A {KUBE_SERVICES} -m comment --comment {_NODEPORTS_COMMENT} {destinations} -j {KUBE_NODEPORTS}")
    else:
        loopback = "::1" if is_ipv6 else "127.0.0.1"
        addresses = opts.local_addresses if opts.local_addresses is not None else (*inp.node_ips, loopback)
        for ip in npa.node_ips(addresses):
            if ipaddress.ip_address(ip).is_loopback and (is_ipv6 or not localhost_nodeports):
                continue
            nat_add(f"-A {KUBE_SERVICES} -m comment --comment {_NODEPORTS_COMMENT} -d {ip} -j {KUBE_NODEPORTS}")

    if not conntrack_liberal:
        nfacct = f" -m nfacct --nfacct-name {NFACCT_CT_STATE_INVALID}" if opts.nfacct else ""
        filter_add(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j DROP")
    filter_add(
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT'
    )
    filter_add(
        f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT"
    )
    return IptablesRuleset(family, filter_chains, filter_rules, nat_chains, nat_rules, large, total_endpoints)


def _write_service_to_endpoint_rules(
    nat_rules: list[str],
    spn: str,
    chain: str,
    endpoints: Sequence[tuple[str, str]],
    affinity: int,
    large: bool,
    probability: _Probabilities,
) -> None:
    """`writeServiceToEndpointRules` over (`ip:port`, KUBE-SEP chain) pairs: affinity checks, then the ladder."""
    add = nat_rules.append
    if affinity:
        for key, sep in endpoints:
            comment = "" if large else f' -m comment --comment "{spn} -> {key}"'
            add(f"-A {chain}{comment} -m recent --name {sep} --rcheck --seconds {affinity} --reap -j {sep}")
    n = len(endpoints)
    last = n - 1
    for i, (key, sep) in enumerate(endpoints):
        comment = "" if large else f' -m comment --comment "{spn} -> {key}"'
        if i < last:
            add(f"-A {chain}{comment} -m statistic --mode random --probability {probability(n - i)} -j {sep}")
        else:
            add(f"-A {chain}{comment} -j {sep}")


def render_restore_payload(inp: ProxierInput, options: IptablesOptions | None = None) -> str:
    """Exactly what kube-proxy passes to `iptables-restore --noflush` on a full sync."""
    return sync_rules(inp, options).payload()


def jump_rules(table: str) -> dict[str, list[str]]:
    """Rules kube-proxy (and its kubelet-duplicate) put in built-in chains, in their final order."""
    out: dict[str, list[str]] = {}
    for tbl, dst, src, comment, extra in JUMP_CHAINS:
        if tbl != table:
            continue
        args = list(extra)
        if comment:
            args += ["-m", "comment", "--comment", f'"{comment}"']
        out.setdefault(src, []).insert(0, f"-A {src} {' '.join([*args, '-j', dst])}")
    return out


def render_iptables(inp: ProxierInput, options: IptablesOptions | None = None, *, header: bool = True) -> str:
    """The complete iptables state kube-proxy leaves on the node, as one `iptables-restore` file.

    Restoring it into an empty network namespace (after creating the nfacct
    counters) reproduces what `iptables-save` shows on a node after kube-proxy's
    first full sync.
    """
    with gc_paused():
        return _render_full(inp, sync_rules(inp, options), header)


def _render_full(inp: ProxierInput, rs: IptablesRuleset, header: bool) -> str:
    user_chains = {
        "mangle": [_chain_line(KUBE_PROXY_CANARY)],
        "filter": [*rs.filter_chains],
        "nat": [*rs.nat_chains, _chain_line(KUBE_PROXY_CANARY)],
    }
    if _chain_line(KUBE_FIREWALL) not in user_chains["filter"]:
        user_chains["filter"].append(_chain_line(KUBE_FIREWALL))  # created by EnsureChain, left empty
    user_chains["filter"].append(_chain_line(KUBE_PROXY_CANARY))
    table_rules = {"mangle": [], "filter": rs.filter_rules, "nat": rs.nat_rules}
    out: list[str] = []
    if header:
        out.append(
            f"# kpdoctor reference proxier: kube-proxy v{inp.version[0]}.{inp.version[1]} iptables mode, "
            f"node {inp.node_name}, {inp.family}"
        )
    for table in TABLE_ORDER:
        out.append(f"*{table}")
        out.extend(f":{c} ACCEPT [0:0]" for c in BUILTIN_CHAINS[table])
        out.extend(user_chains[table])
        jumps = jump_rules(table)
        for builtin in BUILTIN_CHAINS[table]:
            out.extend(jumps.get(builtin, ()))
        out.extend(table_rules[table])
        out.append("COMMIT")
    out.append("")
    return "\n".join(out)
