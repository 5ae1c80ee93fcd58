"""IPVS virtual servers + KUBE-* ipsets (+ kube-proxy's IPVS iptables rules) -> `SemanticView`.

An IPVS virtual server says where connections to one address:port go, but not
*what* that address is: ClusterIP, external IP, load-balancer VIP and NodePort
are told apart only by the ipsets kube-proxy fills next to them
(`KUBE-CLUSTER-IP`, `KUBE-EXTERNAL-IP[-LOCAL]`, `KUBE-LOAD-BALANCER`,
`KUBE-NODE-PORT-*`), and source ranges live only in `KUBE-LOAD-BALANCER-FW` /
`-SOURCE-CIDR`. So this extractor reads all of them.

Meaning of a virtual server for a *new* connection (kernel `ip_vs` behaviour):
- real servers with weight > 0 are the DNAT targets; weight 0 is kube-proxy's
  graceful deletion (draining, no new connections);
- no real server with weight > 0: `ip_vs_leave()` answers ICMP port
  unreachable, i.e. the client is refused: verdict `reject`;
- persistence (`-p T`) is ClientIP session affinity with timeout T (0 on refused frontends);
- source ranges: the CIDRs of `KUBE-LOAD-BALANCER-SOURCE-CIDR` plus `VIP/32` for the
  `KUBE-LOAD-BALANCER-SOURCE-IP` entry kube-proxy adds when a range holds the node IP.

IPVS keeps no Service names. `FrontendView.service` is filled from `names`
(frontend -> "ns/name:port", e.g. taken from the cluster's expected view);
without it, it is "".

NodePort virtual servers exist once per node address; they collapse into one
`node-port` frontend (address ""), their endpoints united so a stale real server
on any address shows.

What IPVS mode cannot show, because kube-proxy's IPVS proxier does not program it
(not an extractor limit; derived from kube-proxy's source and replayed IPVS state
only - this kernel has no IPVS): `internal_endpoints` is always None (no
short-circuit: `syncEndpoint` gives a virtual server one endpoint set for every
source, so pods reaching an eTP=Local LB IP get the local endpoints - or, with none,
the cluster ones, kubernetes#97081), and there are no `localhost-node-port`
frontends (node-port virtual servers only on non-loopback node addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import replace

from kpdoctor.dataplane import semantic as sem
from kpdoctor.dataplane.ipset import IPSets
from kpdoctor.dataplane.ipvs import VirtualServer
from kpdoctor.dataplane.semantic import Frontend, FrontendView, SemanticView


def _names(base: str) -> tuple[str, str]:
    """Both family spellings of a kube-proxy set name (IPv6: `KUBE-6-`, cut to 31 characters)."""
    return base, ("KUBE-6-" + base[len("KUBE-"):])[:31]


class _Sets:
    def __init__(self, ipsets: IPSets | None) -> None:
        self.ipsets = ipsets

    def members(self, base: str) -> frozenset[str]:
        if self.ipsets is None:
            return frozenset()
        v4, v6 = _names(base)
        return self.ipsets.members(v4) | self.ipsets.members(v6)

    @property
    def known(self) -> bool:
        return self.ipsets is not None and bool(self.ipsets.sets)


def _entry(vs: VirtualServer) -> str:
    return f"{vs.address},{vs.protocol.lower()}:{vs.port}"


def _canonical_net(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def _firewall_enforced(iptables: str | None, fw_sets: Iterable[str]) -> bool:
    """Source ranges only bite if KUBE-PROXY-FIREWALL sends the FW set to KUBE-SOURCE-RANGES-FIREWALL
    and that chain ends in DROP; without iptables text we take the sets at their word."""
    if iptables is None:
        return True
    lines = iptables.splitlines()
    jump = any(
        line.startswith("-A KUBE-PROXY-FIREWALL") and "-j KUBE-SOURCE-RANGES-FIREWALL" in line
        and any(f"--match-set {name} " in line for name in fw_sets)
        for line in lines
    )
    drop = any(line.strip() == "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP" for line in lines)
    return jump and drop


def ipvs_semantic_view(
    virtual_servers: Iterable[VirtualServer],
    ipsets: IPSets | None = None,
    iptables: str | None = None,
    *,
    node_ips: Iterable[str] = (),
    names: Mapping[Frontend, str] | None = None,
    node_ports: Iterable[tuple[int, str]] = (),
    service_ips: Iterable[str] = (),
) -> SemanticView:
    """The per-frontend meaning of an IPVS node (see module docstring for the rules).

    Without ipsets (a pasted `ipvsadm -Ln`, a bundle without `ipset-list.txt`) a virtual server is told apart
    by what is known: a node address (`node_ips`, e.g. the Node object's) or loopback carries node ports, and
    so does a NodePort number from the API (`node_ports`: (port, protocol)) on an address that is no Service
    IP (`service_ips`); anything else is a ClusterIP."""
    sets = _Sets(ipsets)
    cluster = sets.members("KUBE-CLUSTER-IP")
    external = sets.members("KUBE-EXTERNAL-IP") | sets.members("KUBE-EXTERNAL-IP-LOCAL")
    lbs = sets.members("KUBE-LOAD-BALANCER")
    lb_fw = sets.members("KUBE-LOAD-BALANCER-FW")
    source_cidrs = sets.members("KUBE-LOAD-BALANCER-SOURCE-CIDR")
    source_ips = sets.members("KUBE-LOAD-BALANCER-SOURCE-IP")  # VIP,proto:port,VIP when a range holds the node IP
    np_ports = {
        "TCP": sets.members("KUBE-NODE-PORT-TCP"),
        "UDP": sets.members("KUBE-NODE-PORT-UDP"),
    }
    np_sctp = sets.members("KUBE-NODE-PORT-SCTP-HASH")
    bound = sets.members("KUBE-IPVS-IPS")
    node_addresses = set(node_ips)
    api_node_ports = set(node_ports)
    vips = set(service_ips)
    fw_enforced = _firewall_enforced(iptables, _names("KUBE-LOAD-BALANCER-FW"))

    def kind_of(vs: VirtualServer) -> str:
        entry = _entry(vs)
        if entry in cluster:
            return sem.CLUSTER_IP
        if entry in lbs:
            return sem.LOAD_BALANCER
        if entry in external:
            return sem.EXTERNAL_IP
        if str(vs.port) in np_ports.get(vs.protocol, frozenset()) or entry in np_sctp:
            return sem.NODE_PORT
        # Not in any set (a leftover, or only ipvsadm output was collected): addresses on kube-ipvs0
        # are Service VIPs; node addresses (or anything unbound, when sets are known) carry node ports.
        if vs.address in node_addresses or (sets.known and vs.address not in bound) or _loopback(vs.address):
            return sem.NODE_PORT
        if (vs.port, vs.protocol) in api_node_ports and vs.address not in vips:
            return sem.NODE_PORT
        return sem.CLUSTER_IP

    views: dict[Frontend, FrontendView] = {}
    for vs in virtual_servers:
        if vs.fwmark:
            continue  # kube-proxy never makes fwmark services
        kind = kind_of(vs)
        frontend = Frontend(kind, "" if kind == sem.NODE_PORT else vs.address, vs.port, vs.protocol)
        endpoints = frozenset(rs.key for rs in vs.real_servers if rs.weight > 0)
        ranges: frozenset[str] = frozenset()
        if kind == sem.LOAD_BALANCER and fw_enforced and _entry(vs) in lb_fw:
            prefix = _entry(vs) + ","
            ranges = frozenset(_canonical_net(m[len(prefix):]) for m in source_cidrs | source_ips
                               if m.startswith(prefix))
        previous = views.get(frontend)
        if previous is not None:  # one node-port VS per node address: unite
            endpoints |= previous.endpoints
        affinity = max(vs.persistent or 0, previous.affinity_seconds if previous else 0) if endpoints else 0
        view = FrontendView(
            frontend=frontend,
            service=(names or {}).get(frontend, ""),
            verdict=sem.DNAT if endpoints else sem.REJECT,
            endpoints=endpoints,
            affinity_seconds=affinity,  # persistence of a refused frontend means nothing
            source_ranges=ranges,
        )
        views[frontend] = view
    return SemanticView.of(views.values())


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def api_frontends(expected: SemanticView | None) -> tuple[set[tuple[int, str]], set[str]]:
    """`node_ports` and `service_ips` for `ipvs_semantic_view`, from the API's (expected) view."""
    if expected is None:
        return set(), set()
    return (
        {(fe.port, fe.protocol) for fe in expected.frontends if fe.kind == sem.NODE_PORT},
        {fe.address for fe in expected.frontends if fe.address and fe.kind != sem.NODE_PORT},
    )


def guess_node_addresses(virtual_servers: Iterable[VirtualServer]) -> set[str]:
    """Without the API or ipsets: addresses that carry a port of the default NodePort range (30000-32767) that
    also appears on another address - kube-proxy makes one node-port virtual server per node address."""
    by_port: dict[tuple[int, str], set[str]] = {}
    for vs in virtual_servers:
        if 30000 <= vs.port <= 32767 and not vs.fwmark:
            by_port.setdefault((vs.port, vs.protocol), set()).add(vs.address)
    return {a for addrs in by_port.values() if len(addrs) > 1 for a in addrs}


def label_services(view: SemanticView, names_from: SemanticView) -> SemanticView:
    """Fill `service` from another view of the same node (IPVS itself stores no Service names)."""
    names = {fe: v.service for fe, v in names_from.frontends.items()}
    return SemanticView.of(replace(v, service=names.get(fe, v.service)) for fe, v in view.frontends.items())
