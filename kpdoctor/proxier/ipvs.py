"""Reference proxier, IPVS mode: the state kube-proxy v1.36's IPVS proxier leaves on a node.

IPVS mode spreads a Service over four places — kernel virtual/real servers,
addresses on the dummy `kube-ipvs0`, `KUBE-*` ipsets, and a small iptables
ruleset that matches those sets — so a doctor has to know all four to tell a
healthy node from a broken one. This module follows `syncProxyRules`,
`writeIptablesRules`, `acceptIPVSTraffic`, `createAndLinkKubeChain` and
`syncEndpoint` of `pkg/proxy/ipvs/proxier.go` and the set table of
`pkg/proxy/ipvs/ipset.go` (names, types, comments, rule order).

What is not reproducible byte for byte and why:
- kube-proxy programs IPVS over netlink, so there is no "input text"; the
  virtual servers are printed as `ipvsadm --save -n` would list them, in
  ipvsadm's sort order (see `VirtualServer.sort_key`).
- Sets are printed as `ipset save` would print them back (members sorted;
  the kernel lists them in hash order; `/32` source nets bare, as ipset prints).
- The jump rules from built-in chains are made by kube-proxy with
  `iptables -I` (EnsureRule), not by iptables-restore; they are included in the
  restore text, marked by a comment, so restoring it into an empty namespace
  reproduces the node.
- The node's local addresses are taken from the Node object (InternalIP /
  ExternalIP of the family); a real node may have more (e.g. a CNI bridge
  address), on which kube-proxy also opens NodePort virtual servers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace

from kpdoctor.addresses import IPV6, cidr_family
from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.ipset import IPSet, IPSets
from kpdoctor.dataplane.ipvs import RealServer, VirtualServer
from kpdoctor.dataplane.ipvs_format import format_ipset_save, format_ipvsadm_save
from kpdoctor.dataplane.ipvs_semantic import ipvs_semantic_view
from kpdoctor.dataplane.semantic import Frontend, SemanticView
from kpdoctor.proxier.context import ProxierInput
from kpdoctor.proxier.endpoints import EndpointInfo, ServicePortEndpoints

DUMMY_DEVICE = "kube-ipvs0"
DEFAULT_SCHEDULER = "rr"

# pkg/proxy/ipvs/ipset.go: name, type, comment — in `ipsetInfo` order (proxier.go)
LOOP_BACK = "KUBE-LOOP-BACK"
CLUSTER_IP = "KUBE-CLUSTER-IP"
EXTERNAL_IP = "KUBE-EXTERNAL-IP"
EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
LOAD_BALANCER = "KUBE-LOAD-BALANCER"
LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
IPVS_IPS = "KUBE-IPVS-IPS"

HASH_IP = "hash:ip"
HASH_IP_PORT = "hash:ip,port"
HASH_IP_PORT_IP = "hash:ip,port,ip"
HASH_IP_PORT_NET = "hash:ip,port,net"
BITMAP_PORT = "bitmap:port"

IPSET_INFO: tuple[tuple[str, str, str], ...] = (
    (LOOP_BACK, HASH_IP_PORT_IP, "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    (CLUSTER_IP, HASH_IP_PORT, "Kubernetes service cluster ip + port for masquerade purpose"),
    (EXTERNAL_IP, HASH_IP_PORT, "Kubernetes service external ip + port for masquerade and filter purpose"),
    (EXTERNAL_IP_LOCAL, HASH_IP_PORT, "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    (LOAD_BALANCER, HASH_IP_PORT, "Kubernetes service lb portal"),
    (LOAD_BALANCER_FW, HASH_IP_PORT, "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    (LOAD_BALANCER_LOCAL, HASH_IP_PORT,
     "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    (LOAD_BALANCER_SOURCE_IP, HASH_IP_PORT_IP,
     "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    (LOAD_BALANCER_SOURCE_CIDR, HASH_IP_PORT_NET,
     "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    (NODE_PORT_TCP, BITMAP_PORT, "Kubernetes nodeport TCP port for masquerade purpose"),
    (NODE_PORT_LOCAL_TCP, BITMAP_PORT, "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    (NODE_PORT_UDP, BITMAP_PORT, "Kubernetes nodeport UDP port for masquerade purpose"),
    (NODE_PORT_LOCAL_UDP, BITMAP_PORT, "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    (NODE_PORT_SCTP, HASH_IP_PORT, "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    (NODE_PORT_LOCAL_SCTP, HASH_IP_PORT,
     "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    (HEALTH_CHECK_NODE_PORT, BITMAP_PORT, "Kubernetes health check node port"),
    (IPVS_IPS, HASH_IP, "Addresses on the ipvs interface"),
)
_COMMENTS = {name: comment for name, _, comment in IPSET_INFO}

# `ipsetWithIptablesChain` (proxier.go): set, table, from chain, to, match type, protocol match.
# kubeNodePortLocalSet* must come before kubeNodePortSet* (upstream's note).
_SET_CHAIN_RULES: tuple[tuple[str, str, str, str, str, str], ...] = (
    (LOOP_BACK, "nat", "KUBE-POSTROUTING", "MASQUERADE", "dst,dst,src", ""),
    (LOAD_BALANCER, "nat", "KUBE-SERVICES", "KUBE-LOAD-BALANCER", "dst,dst", ""),
    (LOAD_BALANCER_LOCAL, "nat", "KUBE-LOAD-BALANCER", "RETURN", "dst,dst", ""),
    (NODE_PORT_LOCAL_TCP, "nat", "KUBE-NODE-PORT", "RETURN", "dst", "tcp"),
    (NODE_PORT_TCP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "tcp"),
    (NODE_PORT_LOCAL_UDP, "nat", "KUBE-NODE-PORT", "RETURN", "dst", "udp"),
    (NODE_PORT_UDP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "udp"),
    (NODE_PORT_LOCAL_SCTP, "nat", "KUBE-NODE-PORT", "RETURN", "dst,dst", "sctp"),
    (NODE_PORT_SCTP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst,dst", "sctp"),
    (LOAD_BALANCER_FW, "filter", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst", ""),
    (LOAD_BALANCER_SOURCE_CIDR, "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
    (LOAD_BALANCER_SOURCE_IP, "filter", "KUBE-SOURCE-RANGES-FIREWALL", "RETURN", "dst,dst,src", ""),
)

# `iptablesChains` and `iptablesJumpChain` (proxier.go), in order.
_NAT_CHAINS = ("KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ")
_FILTER_CHAINS = ("KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
                  "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER")
_JUMPS: tuple[tuple[str, str, str, str], ...] = (
    ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
    ("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-NODE-PORT", "kubernetes health check rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "INPUT", "KUBE-IPVS-FILTER", "kubernetes ipvs access filter"),
    ("filter", "OUTPUT", "KUBE-IPVS-OUT-FILTER", "kubernetes ipvs access filter"),
)
_BUILTIN = {"nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"), "filter": ("INPUT", "FORWARD", "OUTPUT")}

SECTION_IPVSADM = "ipvsadm --save -n"
SECTION_ADDRESSES = "kube-ipvs0 addresses"
SECTION_IPSET = "ipset save"
SECTION_IPTABLES = "iptables-restore"


def set_name(name: str, family: str) -> str:
    """IPv6 sets are `KUBE-6-...`, cut to ipset's 31 characters (ipset.go NewIPSet)."""
    if family == IPV6 and name.startswith("KUBE-"):
        return ("KUBE-6-" + name[len("KUBE-"):])[:31]
    return name


@dataclass(frozen=True)
class IPVSState:
    """Everything kube-proxy's IPVS proxier maintains on one node, for one IP family."""

    virtual_servers: tuple[VirtualServer, ...]
    ipsets: tuple[IPSet, ...]  # all 17 sets in kube-proxy's creation order (most may be empty)
    addresses: tuple[str, ...]  # bound to kube-ipvs0 (= KUBE-IPVS-IPS members), sorted
    iptables: str  # iptables-restore input (with the built-in chain jumps, marked)
    node_port_ips: tuple[str, ...]  # the addresses that carry NodePort virtual servers
    family: str = "IPv4"

    def ipset(self, name: str) -> IPSet:
        wanted = set_name(name, self.family)
        return next(s for s in self.ipsets if s.name == wanted)


def _host_net(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """ipset prints a host-length net without its prefix (seen with ipset 7.17)."""
    if cidr.prefixlen == cidr.max_prefixlen:
        return str(cidr.network_address)
    return str(cidr)


def _node_port_ips(inp: ProxierInput) -> tuple[str, ...]:
    """`nodePortAddresses` applied to the node's addresses; loopback never carries IPVS node ports."""
    ips = [ip for ip in inp.node_ips if not ipaddress.ip_address(ip).is_loopback]
    wanted = inp.config.effective_node_port_addresses
    if not wanted:
        return tuple(ips)
    nets = []
    for item in wanted:
        if item == "primary":
            if inp.primary_node_ip:
                nets.append(ipaddress.ip_network(inp.primary_node_ip))
            continue
        if cidr_family(item) != inp.family:
            continue
        net = ipaddress.ip_network(item.strip(), strict=False)
        if net.prefixlen == 0:
            return tuple(ips)  # MatchAll
        nets.append(net)
    if not nets:
        return tuple(ips)  # no CIDR of this family: kube-proxy matches all
    return tuple(ip for ip in ips if any(ipaddress.ip_address(ip) in n for n in nets))


def _local_detector(inp: ProxierInput) -> list[str] | None:
    """`localDetector.IfNotLocal()` args, or None when not implemented (proxy/util/localdetector.go)."""
    cfg = inp.config
    mode = cfg.effective_detect_local_mode
    if mode == "ClusterCIDR":
        cidrs = [c.strip() for c in cfg.cluster_cidr.split(",") if c.strip() and cidr_family(c) == inp.family]
        return ["!", "-s", str(ipaddress.ip_network(cidrs[0], strict=False))] if cidrs else None
    if mode == "NodeCIDR":
        node = inp.cluster.node_by_name.get(inp.node_name)
        cidrs = [c for c in (node.pod_cidrs if node else ()) if cidr_family(c) == inp.family]
        return ["!", "-s", str(ipaddress.ip_network(cidrs[0], strict=False))] if cidrs else None
    if mode == "BridgeInterface" and cfg.bridge_interface:
        return ["!", "-i", cfg.bridge_interface]
    if mode == "InterfaceNamePrefix" and cfg.interface_name_prefix:
        return ["!", "-i", f"{cfg.interface_name_prefix}+"]
    return None


def _real_servers(endpoints: tuple[EndpointInfo, ...]) -> tuple[RealServer, ...]:
    return tuple(RealServer(ep.ip, ep.port, 1, "Masq") for ep in endpoints)


def _endpoints_for(spe: ServicePortEndpoints, only_node_local: bool) -> tuple[EndpointInfo, ...]:
    """`syncEndpoint`: Local policy uses local endpoints, and falls back to the cluster endpoints when
    there are none (kubernetes/kubernetes#97081: "Allow access from local PODs even if no local
    endpoints exist") — unlike the iptables/nftables proxiers, which DROP."""
    cat = spe.categorized
    if only_node_local:
        return cat.local if cat.local else cat.cluster
    return cat.cluster


def ipvs_state(inp: ProxierInput) -> IPVSState:
    """Compute what one sync of kube-proxy's IPVS proxier programs (see module docstring)."""
    family = inp.family
    proto_of = str.lower
    scheduler = inp.config.ipvs_scheduler or DEFAULT_SCHEDULER
    node_ips = set(inp.node_ips)
    np_ips = _node_port_ips(inp)
    members: dict[str, set[str]] = {name: set() for name, _, _ in IPSET_INFO}
    services: dict[tuple[str, str, int], VirtualServer] = {}
    bound: set[str] = set()
    no_node_access: list[tuple[str, str, int]] = []  # (lb ip, protocol, port) for KUBE-IPVS-OUT-FILTER

    def add_vs(address: str, port: int, spe: ServicePortEndpoints, only_local: bool) -> None:
        info = spe.info
        vs = VirtualServer(
            protocol=info.protocol,
            address=address,
            port=port,
            scheduler=scheduler,
            persistent=info.session_affinity_seconds,
            sched_flags=("mh-port",) if scheduler == "mh" else (),  # utilipvs.FlagSourceHash = IP_VS_SVC_F_SCHED2
            real_servers=_real_servers(_endpoints_for(spe, only_local)),
        )
        services[vs.key] = vs

    for spe in inp.service_ports():
        info = spe.info
        proto = proto_of(info.protocol)
        for ep in spe.endpoints:  # hairpin: every local endpoint, whatever its condition
            if ep.is_local:
                members[LOOP_BACK].add(f"{ep.ip},{proto}:{ep.port},{ep.ip}")

        members[CLUSTER_IP].add(f"{info.cluster_ip},{proto}:{info.port.port}")
        add_vs(info.cluster_ip, info.port.port, spe, info.internal_policy_local)
        bound.add(info.cluster_ip)

        for ext in info.external_ips:
            members[EXTERNAL_IP_LOCAL if info.external_policy_local else EXTERNAL_IP].add(
                f"{ext},{proto}:{info.port.port}"
            )
            add_vs(ext, info.port.port, spe, info.external_policy_local)
            if ext not in node_ips:  # "We must not add the address to the dummy device if it exist on another interface"
                bound.add(ext)

        for vip in info.load_balancer_vips:
            entry = f"{vip},{proto}:{info.port.port}"
            members[LOAD_BALANCER].add(entry)
            if info.external_policy_local:
                members[LOAD_BALANCER_LOCAL].add(entry)
            ranges = [ipaddress.ip_network(r.strip(), strict=False) for r in info.load_balancer_source_ranges]
            if ranges:
                members[LOAD_BALANCER_FW].add(entry)
                primary = inp.primary_node_ip
                allow_from_node = False
                for net in ranges:
                    members[LOAD_BALANCER_SOURCE_CIDR].add(f"{entry},{_host_net(net)}")
                    if primary and ipaddress.ip_address(primary) in net:
                        allow_from_node = True
                if allow_from_node:
                    members[LOAD_BALANCER_SOURCE_IP].add(f"{entry},{vip}")
                else:
                    no_node_access.append((vip, proto, info.port.port))
            add_vs(vip, info.port.port, spe, info.external_policy_local)
            if vip not in node_ips:
                bound.add(vip)

        if info.node_port:
            if not np_ips:
                continue  # kube-proxy skips node ports (and the health check port) without node IPs
            if proto == "sctp":
                entries = [f"{ip},sctp:{info.node_port}" for ip in np_ips]
                members[NODE_PORT_SCTP].update(entries)
                if info.external_policy_local:
                    members[NODE_PORT_LOCAL_SCTP].update(entries)
            else:
                plain, local = {"tcp": (NODE_PORT_TCP, NODE_PORT_LOCAL_TCP),
                                "udp": (NODE_PORT_UDP, NODE_PORT_LOCAL_UDP)}[proto]
                members[plain].add(str(info.node_port))
                if info.external_policy_local:
                    members[local].add(str(info.node_port))
            for ip in np_ips:
                add_vs(ip, info.node_port, spe, info.external_policy_local)

        if info.health_check_node_port:
            members[HEALTH_CHECK_NODE_PORT].add(str(info.health_check_node_port))

    members[IPVS_IPS] = set(bound)

    ipsets = tuple(
        IPSet(
            name=set_name(name, family),
            type=set_type,
            header=(("range", "0-65535"),) if set_type == BITMAP_PORT else
            (("family", "inet6" if family == IPV6 else "inet"), ("hashsize", "1024"), ("maxelem", "65536")),
            members=frozenset(members[name]),
            comment=comment,
        )
        for name, set_type, comment in IPSET_INFO
    )
    iptables = _iptables_text(inp, {name: bool(m) for name, m in members.items()}, no_node_access)
    vss = tuple(sorted(services.values(), key=VirtualServer.sort_key))
    addresses = tuple(sorted(bound, key=lambda a: int(ipaddress.ip_address(a))))
    return IPVSState(vss, ipsets, addresses, iptables, np_ips, family)


def _iptables_text(inp: ProxierInput, nonempty: dict[str, bool], no_node_access: list[tuple[str, str, int]]) -> str:
    """`createAndLinkKubeChain` + `writeIptablesRules` + `acceptIPVSTraffic`, in kube-proxy's order."""
    family = inp.family
    mark = inp.config.masquerade_mark

    def s(name: str) -> str:
        return set_name(name, family)

    def comment(name: str) -> str:
        return f'"{_COMMENTS[name]}"'

    nat: list[str] = []
    flt: list[str] = []
    nat.append(f"-A KUBE-SERVICES -s {'::1/128' if family == IPV6 else '127.0.0.0/8'} -j RETURN")
    for name, table, src, dst, match, proto in _SET_CHAIN_RULES:
        if not nonempty[name]:
            continue
        rule = f"-A {src}" + (f" -p {proto}" if proto else "")
        rule += f" -m comment --comment {comment(name)} -m set --match-set {s(name)} {match} -j {dst}"
        (flt if table == "filter" else nat).append(rule)
    if nonempty[CLUSTER_IP]:
        head = f"-A KUBE-SERVICES -m comment --comment {comment(CLUSTER_IP)} -m set --match-set {s(CLUSTER_IP)}"
        detector = _local_detector(inp)
        if inp.config.iptables_masquerade_all:
            nat.append(f"{head} dst,dst -j KUBE-MARK-MASQ")
        elif detector is not None:
            nat.append(f"{head} dst,dst {' '.join(detector)} -j KUBE-MARK-MASQ")
        else:
            nat.append(f"{head} src,dst -j KUBE-MARK-MASQ")
    for name, masq in ((EXTERNAL_IP, True), (EXTERNAL_IP_LOCAL, False)):
        if not nonempty[name]:
            continue
        head = f"-A KUBE-SERVICES -m comment --comment {comment(name)} -m set --match-set {s(name)} dst,dst"
        if masq:
            nat.append(f"{head} -j KUBE-MARK-MASQ")
        nat.append(f"{head} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
        nat.append(f"{head} -m addrtype --dst-type LOCAL -j ACCEPT")
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    nat.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    flt.append("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP")
    for ip, proto, port in no_node_access:
        flt.append(f"-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port} -j DROP")
    for name in (CLUSTER_IP, LOAD_BALANCER):  # acceptIPVSTraffic: must be at the end of KUBE-SERVICES
        if nonempty[name]:
            nat.append(f"-A KUBE-SERVICES -m set --match-set {s(name)} dst,dst -j ACCEPT")
    flt.append(f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT')
    flt.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
               "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.append(f"-A KUBE-NODE-PORT -m comment --comment {comment(HEALTH_CHECK_NODE_PORT)} "
               f"-m set --match-set {s(HEALTH_CHECK_NODE_PORT)} dst -j ACCEPT")
    for name, match in ((LOAD_BALANCER, "dst,dst"), (CLUSTER_IP, "dst,dst"), (EXTERNAL_IP, "dst,dst"),
                        (EXTERNAL_IP_LOCAL, "dst,dst"), (HEALTH_CHECK_NODE_PORT, "dst")):
        flt.append(f"-A KUBE-IPVS-FILTER -m set --match-set {s(name)} {match} -j RETURN")
    flt.append(f"-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {s(IPVS_IPS)} dst -j REJECT")
    nat.append(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
    nat.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
    nat.append('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
               "-j MASQUERADE --random-fully")
    nat.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")

    out: list[str] = []
    for table, chains, rules in (("nat", _NAT_CHAINS, nat), ("filter", _FILTER_CHAINS, flt)):
        out.append(f"*{table}")
        out.extend(f":{c} ACCEPT [0:0]" for c in _BUILTIN[table])
        out.extend(f":{c} - [0:0]" for c in chains)
        out.append("# jumps kube-proxy ensures with `iptables -I` (EnsureRule), not via iptables-restore:")
        jumps = [j for j in _JUMPS if j[0] == table]
        # each is prepended in turn, so the last one listed ends up first in its chain
        for _, src, dst, text in reversed(jumps):
            out.append(f'-A {src} -m comment --comment "{text}" -j {dst}')
        out.extend(rules)
        out.append("COMMIT")
    return "".join(line + "\n" for line in out)


def render_ipvs(inp: ProxierInput) -> str:
    """One document, four delimited sections (`#### <section>` lines; see `split_ipvs_document`)."""
    state = ipvs_state(inp)
    kp = f"{inp.version[0]}.{inp.version[1]}"
    parts = [
        f"# kpdoctor reference proxier: kube-proxy v{kp} IPVS mode, node {inp.node_name}, {inp.family}\n",
        f"#### {SECTION_IPVSADM}\n",
        format_ipvsadm_save(state.virtual_servers),
        f"#### {SECTION_ADDRESSES}\n",
        f"ip link add {DUMMY_DEVICE} type dummy\n",
        "".join(f"ip addr add {a}/{128 if ':' in a else 32} dev {DUMMY_DEVICE}\n" for a in state.addresses),
        f"#### {SECTION_IPSET}\n",
        format_ipset_save(state.ipsets),
        f"#### {SECTION_IPTABLES}\n",
        state.iptables,
    ]
    return "".join(parts)


def reference_view(inp: ProxierInput, names: Mapping[Frontend, str] | None = None) -> SemanticView:
    """The semantic view of the IPVS state kube-proxy would program (IPVS mode's own semantics:
    Local policies fall back to cluster endpoints, no endpoints = refused)."""
    state = ipvs_state(inp)
    sets = IPSets({s.name: s for s in state.ipsets})
    return ipvs_semantic_view(state.virtual_servers, sets, state.iptables, node_ips=inp.node_ips, names=names)


def expected_ipvs_view(inp: ProxierInput) -> SemanticView:
    """The mode-independent expectation (`kpdoctor.proxier.expected.expected_view`) adjusted for what
    kube-proxy's IPVS proxier intends differently, derived from the categorized endpoints (not from
    the rendered state), so it cross-checks `ipvs_state`:

    - Local traffic policy without local endpoints: iptables/nftables DROP; IPVS's `syncEndpoint`
      falls back to the cluster endpoints (kubernetes/kubernetes#97081), and a virtual server left
      without real servers refuses (ICMP port unreachable from `ip_vs_leave`).
    - LoadBalancer source ranges are programmed (KUBE-LOAD-BALANCER-FW) even when the Service has no
      endpoints; iptables mode builds no firewall for a rejected Service.
    - NodePorts exist only on the node's addresses: with none (or none matching nodePortAddresses)
      there is no NodePort virtual server, and kube-proxy also skips the health check port.
    - No short-circuit (`ViewOptions(short_circuit=False)`): pods and the node reach an eTP=Local
      external frontend through the same virtual server as outside clients (`syncEndpoint` picks
      the endpoints per virtual server, not per source); no localhost NodePorts either.
    """
    from kpdoctor.proxier.expected import ViewOptions, service_port_views, source_ranges

    node_ip = inp.primary_node_ip
    has_node_port_ips = bool(_node_port_ips(inp))
    views = []
    for spe in inp.service_ports():
        for view in service_port_views(spe, node_ip, ViewOptions(short_circuit=False)):
            kind = view.frontend.kind
            if kind == sem.NODE_PORT and not has_node_port_ips:
                continue
            if view.verdict == sem.DROP:
                eps = spe.categorized.cluster
                view = replace(view, verdict=sem.DNAT if eps else sem.REJECT, endpoints=frozenset(ep.key for ep in eps),
                               affinity_seconds=spe.info.session_affinity_seconds if eps else 0)
            if kind == sem.LOAD_BALANCER and not view.source_ranges:
                view = replace(view, source_ranges=source_ranges(spe, node_ip))
            views.append(view)
    return SemanticView.of(views)
