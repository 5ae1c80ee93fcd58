"""One trace: node facts + cluster state + the packet -> `TraceResult`.

This module gathers the inputs (which iptables dumps, the node's addresses, ipsets, forwarding sysctl, the
kube-proxy mode) and hands them to the path walker; it does no I/O of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kpdoctor.cluster.state import ClusterState
from kpdoctor.dataplane.ipset import IPSets, parse_ipset_list
from kpdoctor.dataplane.iptables_save import tokenize
from kpdoctor.errors import InputError
from kpdoctor.node.parsed import parse_ip_addr, parse_iptables_version, parse_sysctl
from kpdoctor.node.state import NodeState
from kpdoctor.trace.addresses import EXTERNAL_NOT_LOCAL, Endpoint, Labels
from kpdoctor.trace.chains import node_chains
from kpdoctor.trace.context import TraceContext, local_addresses
from kpdoctor.trace.ipnet import split_host_port
from kpdoctor.trace.model import Branch, Packet, TooManyBranches
from kpdoctor.trace.pod_nets import pod_nets
from kpdoctor.trace.spec_cache import SpecCache
from kpdoctor.trace.walk import PathWalker, Routing


@dataclass(frozen=True)
class TraceRequest:
    node: str
    src: Endpoint
    dst: Endpoint
    proto: str = "tcp"
    sport: int = 40000
    state: str = "NEW"
    iif: str | None = None
    mark: int = 0


@dataclass
class TraceResult:
    request: TraceRequest
    packet: Packet
    local_origin: bool
    mode: str  # kube-proxy mode on the node ("" when not known)
    backends: list[str]
    leaves: list[Branch]
    notes: list[str] = field(default_factory=list)
    complete: bool = True  # False: part of the node's dataplane was not walked (see notes)
    error: str = ""  # the walk stopped (too many branches)
    labels: Labels | None = None


def _mode(state: NodeState, cluster: ClusterState | None) -> str:
    mode = (state.text("kube-proxy/proxyMode.txt") or "").strip()
    if mode:
        return mode
    if cluster is not None:
        found = cluster.proxy_config_for(state.name)
        if found is not None:
            return found.config.effective_mode
    return ""


@dataclass
class PreparedNode:
    """A node's dumps parsed and its base chains built, once for any number of traces (--matrix)."""

    family: int
    ctx: TraceContext
    walker: PathWalker
    walked: list[str]
    notes: list[str]
    complete: bool
    mode: str
    labels: Labels


def prepare(state: NodeState, cluster: ClusterState | None, family: int = 4,
            specs: SpecCache | None = None, labels: Labels | None = None) -> PreparedNode:
    """`specs`: compiled rule specs to share with other nodes' dumps; `labels`: the cluster's address labels,
    built once and copied for this node (--matrix)."""
    version = parse_iptables_version(state.text("iptables-version.txt"))
    node = cluster.node_by_name.get(state.name) if cluster is not None else None
    known = {a.address: f"{a.address} is in Node {state.name}'s status.addresses ({a.type})"
             for a in node.addresses} if node is not None else {}
    ip_addr = state.text("ip-addr.json")
    links = None if ip_addr is None else parse_ip_addr(ip_addr)
    ifaces = None if links is None else [(i.name, a[0]) for i in links for a in i.addresses]
    ranges = pod_nets(cluster, state.name) if ifaces is None else ()
    local = local_addresses(ifaces, known, ranges, EXTERNAL_NOT_LOCAL)
    ipsets: IPSets | None = None
    ipset_text = state.text("ipset-list.txt")
    notes: list[str] = []
    if ipset_text:
        try:
            ipsets = parse_ipset_list(ipset_text, f"{state.name}/ipset-list.txt")
        except InputError as exc:
            notes.append(f"ipset-list.txt not usable ({exc}): ipset matches are followed both ways")
    ctx = TraceContext(local, ipsets, primary=node.internal_ips[0] if node and node.internal_ips else "",
                       specs=specs if specs is not None else SpecCache(),
                       bridges=None if links is None else frozenset(i.master for i in links if i.master))
    found = node_chains(state, None if version is None else version.backend, family, ctx)
    if not found.iptables_dumps and not found.has_nft_dump:
        raise InputError("no iptables or nftables dump of this node (iptables-save.txt, iptables-nft-save.txt, "
                         "iptables-legacy-save.txt, nft-ruleset.json): nothing to trace", where=state.name)
    notes.extend(found.notes)
    sysctls = parse_sysctl(state.text("sysctl.txt"))
    key = "net.ipv4.ip_forward" if family == 4 else "net.ipv6.conf.all.forwarding"
    fwd_text = sysctls.get(key)
    routing = Routing(None if fwd_text is None else fwd_text.strip() == "1")
    if ifaces is None and ranges:
        notes.append("ip-addr.json not collected: whether an address is the node's own is decided from the Node's "
                     "status.addresses (local), the Nodes' podCIDRs (pod addresses, not local; except this node's "
                     "CNI gateway, its podCIDR's first two addresses) and the `external` client's address (not "
                     "local); other cases are followed both ways")
    elif ifaces is None:
        notes.append("ip-addr.json not collected: whether an address is the node's own is known only for the "
                     "Node's API addresses; other cases are followed both ways")
    notes.append("routing table not evaluated: a destination that is not the node's own is assumed routable "
                 "(forwarded)")
    mode = _mode(state, cluster)
    complete = True
    if found.ipvs_vips and ifaces is None:
        # kube-proxy binds every VIP to kube-ipvs0: without ip-addr.json, the VIPs are known local all the same
        vips = {vip: f"{vip} is an IPVS virtual server (kube-proxy binds it to kube-ipvs0)"
                for vip in found.ipvs_vips}
        ctx.local = local_addresses(None, {**vips, **known}, ranges, EXTERNAL_NOT_LOCAL)
        notes.append("IPVS virtual-server addresses taken as local (kube-proxy binds them to kube-ipvs0)")
    if mode == "ipvs" and "ipvs" not in found.walked:
        complete = False
        notes.append("kube-proxy runs in ipvs mode on this node but ipvsadm-save.txt was not collected (or is "
                     "empty): the IPVS lookup is not evaluated, so Service translation is not shown")
    if mode == "nftables" and not found.has_nft_dump:
        complete = False
        notes.append("kube-proxy runs in nftables mode on this node but nft-ruleset.json was not collected: its "
                     "rules are not evaluated")
    return PreparedNode(family, ctx, PathWalker(found.chains, ctx, routing), found.walked, notes, complete, mode,
                        labels.copy() if labels is not None else Labels(cluster))


def run_trace(req: TraceRequest, state: NodeState, cluster: ClusterState | None,
              prepared: PreparedNode | None = None) -> TraceResult:
    family = 6 if ":" in req.dst.address else 4
    if prepared is None or prepared.family != family:
        prepared = prepare(state, cluster, family)
    ctx = prepared.ctx
    ctx.forks = 0
    ctx.local.reset()
    local_origin = req.src.node == req.node and req.src.label.startswith("node ") \
        or ctx.local.is_local(req.src.address) is True
    iif = req.iif if req.iif is not None else ("" if local_origin else None)
    dport = req.dst.port if req.dst.port is not None else 0
    pkt = Packet(req.src.address, req.dst.address, req.src.port or req.sport, dport, req.proto, family, iif=iif,
                 mark=req.mark, ctstate=req.state)
    notes = list(prepared.notes)
    if req.state != "NEW":
        notes.append("state established: nat chains are not run (conntrack applies the NAT chosen for the "
                     "connection's first packet, which the dumps do not show); the packet is walked as addressed")
    result = TraceResult(req, pkt, local_origin, prepared.mode, prepared.walked, [], notes,
                         prepared.complete, labels=prepared.labels)
    try:
        result.leaves = prepared.walker.run(pkt, local_origin)
    except TooManyBranches as exc:
        result.error = str(exc)
        result.complete = False
    result.notes.extend(_assumed_notes(ctx.local.assumed))
    _label_endpoints(result)
    return result


MAX_ASSUMED_NOTES = 10


def _assumed_notes(assumed: dict[str, str]) -> list[str]:
    """One note per address the Nodes' podCIDRs decided (a Service with many endpoints: the first few)."""
    out = [f"assumed: {addr} is {why}" for addr, why in list(assumed.items())[:MAX_ASSUMED_NOTES]]
    if len(assumed) > MAX_ASSUMED_NOTES:
        out.append(f"assumed the same for {len(assumed) - MAX_ASSUMED_NOTES} more addresses in the Nodes' podCIDRs")
    return out


def _label_endpoints(result: TraceResult) -> None:
    """A DNAT target is labelled with its rule's comment (kube-proxy writes "ns/svc:port" there)."""
    if result.labels is None:
        return
    for leaf in result.leaves:
        if not leaf.dnat_to:
            continue
        step = next((s for s in leaf.steps if s.kind == "nat" and s.detail.startswith("DNAT")), None)
        if step is None:
            continue
        try:
            args = tokenize(step.text)
        except ValueError:
            continue
        comment = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--comment"), "")
        if comment:
            host, _ = split_host_port(leaf.dnat_to)
            result.labels.add(host, f"endpoint of {comment[:120]}")


def outcomes(result: TraceResult) -> list[dict[str, Any]]:
    """Leaves grouped by what happened: verdict, DNAT target, SNAT, the rule that decided, assumptions;
    probabilities summed."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for leaf in result.leaves:
        by = leaf.verdict_by if leaf.verdict != "accept" else None
        key = (leaf.verdict, leaf.dnat_to, leaf.masquerade, leaf.snat_to, by.source if by else "",
               leaf.assumptions, tuple(s.source for s in leaf.also_blocked_by))
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "verdict": leaf.verdict, "p": 0.0, "dnat_to": leaf.dnat_to, "masquerade": leaf.masquerade,
                "snat_to": leaf.snat_to, "decided_by": by.to_dict() if by else None,
                "assumptions": list(leaf.assumptions), "steps": [s.to_dict() for s in leaf.steps],
                "also_blocked_by": [s.to_dict() for s in leaf.also_blocked_by],
                "final_dst": leaf.packet.dst, "final_dport": leaf.packet.dport, "mark": leaf.packet.mark,
            }
        g["p"] += leaf.p
    return sorted(groups.values(), key=lambda g: (-g["p"], g["verdict"], g["dnat_to"]))


def endpoint_set(result: TraceResult) -> dict[str, float]:
    """DNAT target -> probability over the accepted leaves that made no assumption ("" = not translated)."""
    out: dict[str, float] = {}
    for leaf in result.leaves:
        if leaf.verdict == "accept" and not leaf.assumptions:
            out[leaf.dnat_to] = out.get(leaf.dnat_to, 0.0) + leaf.p
    return out
