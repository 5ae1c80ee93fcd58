"""KP-SYSCTL-CONNTRACK: the kernel settings Service traffic depends on, and conntrack headroom.

- `net.ipv4.ip_forward=1`: DNATed Service traffic to pods (on this or other
  nodes) is forwarded; with 0 every Service backed by a remote pod is dead.
- `net.ipv4.conf.all.route_localnet=1`: only needed for NodePorts on
  127.0.0.1 (iptables mode with `localhostNodePorts: true` and nodePortAddresses
  covering loopback); kube-proxy sets it itself, so 0 there means someone reset it.
- `net.bridge.bridge-nf-call-iptables=1`: only matters where a Linux bridge
  carries pod traffic (bridge CNI, kubenet); then pod-to-Service traffic between
  pods on the same bridge bypasses netfilter without it (replies skip un-DNAT).
  On routed CNIs it is irrelevant, and it is not reported there.
- conntrack fill: when `nf_conntrack_count` reaches `nf_conntrack_max` the
  kernel drops new connections ("nf_conntrack: table full, dropping packet").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from kpdoctor.checks._common import KUBE_PROXY_CONFIG_DOCS
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.parsed import ParsedNode, sysctl_int
from kpdoctor.node_context import NodeCheck, NodeCheckContext
from kpdoctor.shellcmd import Lit, command

FILL_WARNING = 0.75
FILL_ERROR = 0.90
_DROP_COUNTERS = ("drop", "early_drop", "insert_failed")


def _bridges_with_pods(p: ParsedNode) -> list[str]:
    """Bridges that have veth ports (pods): the only setups where bridge-nf-call-iptables matters."""
    ifaces = p.interfaces or []
    names = {i.name for i in ifaces}
    masters = {i.master for i in ifaces if i.master and i.master in names and
               (i.name.startswith("veth") or i.kind == "veth")}
    bridges = {i.name for i in ifaces if i.kind == "bridge"}
    return sorted(masters | {b for b in bridges if any(i.master == b for i in ifaces)})


class SysctlConntrack(NodeCheck):
    id = "KP-SYSCTL-CONNTRACK"
    title = "ip_forward, route_localnet, bridge-nf-call-iptables and conntrack headroom"
    severity = Severity.ERROR
    tags = ("sysctl", "conntrack", "kernel")
    reads = ("sysctl.txt", "conntrack-stats.txt", "ip-addr.json")
    node_facts_suffice = True  # runs in node-only scans (kpdoctor.node_only)
    rationale = (
        "Correct rules do nothing when the node does not forward, when bridged pod traffic bypasses netfilter, "
        "or when the conntrack table is full and new connections are dropped."
    )
    remediation = "Set the sysctls persistently (/etc/sysctl.d) and size nf_conntrack_max for the node's load."
    catches = (
        "`ip_forward`, `route_localnet` for localhost NodePorts, `bridge-nf-call-iptables` only where a "
        "Linux bridge carries pods, conntrack fill ratio"
    )
    references = (
        "https://kubernetes.io/docs/setup/production-environment/container-runtimes/"
        "#forwarding-ipv4-and-letting-iptables-see-bridged-traffic",
        KUBE_PROXY_CONFIG_DOCS,
        "https://www.kernel.org/doc/html/latest/networking/nf_conntrack-sysctl.html",
    )

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        node = ctx.node
        p = ctx.parsed
        if not p.has("sysctl.txt"):
            return
        s = p.sysctl
        persist = "/etc/sysctl.d/99-kubernetes.conf"
        forward = sysctl_int(s, "net.ipv4.ip_forward")
        if forward == 0:
            yield self.finding(
                ctx, f"Node {node.name}",
                f"net.ipv4.ip_forward is 0 on node {node.name}: the node does not forward DNATed Service traffic, so "
                "Services whose endpoints are pods are unreachable through this node",
                severity=Severity.CRITICAL if ctx.kube_proxy_expected else Severity.ERROR,
                evidence=["sysctl.txt: net.ipv4.ip_forward = 0"],
                fix="Enable forwarding now and persistently.",
                commands=[command("sysctl", "-w", "net.ipv4.ip_forward=1", on=node.name),
                          command("echo", "net.ipv4.ip_forward = 1", Lit(">>"), persist, on=node.name)],
            )
        yield from self._route_localnet(ctx, p)
        bridges = _bridges_with_pods(p)
        bnf = sysctl_int(s, "net.bridge.bridge-nf-call-iptables")
        if bridges and bnf != 1:
            state = "0" if bnf == 0 else "absent (br_netfilter not loaded)"
            yield self.finding(
                ctx, f"Node {node.name}",
                f"node {node.name} bridges pod traffic ({', '.join(bridges)}) but net.bridge.bridge-nf-call-iptables "
                f"is {state}: traffic between pods on the same bridge skips netfilter, so a pod calling a Service "
                "whose endpoint is on the same bridge gets replies that were never un-DNATed (connections hang)",
                severity=Severity.ERROR,
                evidence=[f"ip-addr.json: bridge(s) with pod ports: {', '.join(bridges)}",
                          f"sysctl.txt: net.bridge.bridge-nf-call-iptables = {bnf if bnf is not None else '(absent)'}"],
                fix="Load br_netfilter and enable the sysctl, persistently.",
                commands=[command("modprobe", "br_netfilter", Lit("&&"), "sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1",
                                  on=node.name),
                          command("echo", "br_netfilter", Lit(">"), "/etc/modules-load.d/br_netfilter.conf", on=node.name),
                          command("echo", "net.bridge.bridge-nf-call-iptables = 1", Lit(">>"), persist, on=node.name)],
            )
        yield from self._conntrack(ctx, p)

    def _route_localnet(self, ctx: NodeCheckContext, p: ParsedNode) -> Iterable[Finding]:
        node = ctx.node
        found = ctx.kube_proxy_mode
        if found is None or found[0] != "iptables":
            return
        config = found[2].config
        npa = config.effective_node_port_addresses
        covers_loopback = not npa or any(
            a != "primary" and _covers(a, "127.0.0.1") for a in npa
        )
        if not (config.localhost_node_ports and covers_loopback):
            return
        value = sysctl_int(p.sysctl, "net.ipv4.conf.all.route_localnet")
        if value == 0:
            yield self.finding(
                ctx, f"Node {node.name}",
                f"localhost NodePorts are enabled on node {node.name} (iptables mode, localhostNodePorts: true, "
                f"nodePortAddresses {list(npa) or 'all'}) but net.ipv4.conf.all.route_localnet is 0: "
                "connections to 127.0.0.1:<nodePort> fail. kube-proxy sets it on start, so something reset it",
                severity=Severity.WARNING,
                evidence=["sysctl.txt: net.ipv4.conf.all.route_localnet = 0",
                          f"{found[2].origin}: localhostNodePorts true, nodePortAddresses {list(npa) or '[] (all)'}"],
                fix="Set route_localnet=1 (or stop relying on 127.0.0.1 NodePorts: nodePortAddresses: [primary]).",
                commands=[command("sysctl", "-w", "net.ipv4.conf.all.route_localnet=1", on=node.name)],
            )

    def _conntrack(self, ctx: NodeCheckContext, p: ParsedNode) -> Iterable[Finding]:
        node = ctx.node
        count = sysctl_int(p.sysctl, "net.netfilter.nf_conntrack_count")
        limit = sysctl_int(p.sysctl, "net.netfilter.nf_conntrack_max")
        stats = p.conntrack_stats or {}
        drops = {k: stats.get(k, 0) for k in _DROP_COUNTERS if stats.get(k, 0)}
        if count is not None and limit:
            ratio = count / limit
            if ratio >= FILL_WARNING:
                new_max = 1 << (max(limit * 2, 262144) - 1).bit_length()
                yield self.finding(
                    ctx, f"Node {node.name}",
                    f"conntrack table on node {node.name} is {ratio:.0%} full ({count} of {limit}): at 100% the "
                    "kernel drops new connections (\"nf_conntrack: table full, dropping packet\")",
                    severity=Severity.ERROR if ratio >= FILL_ERROR else Severity.WARNING,
                    evidence=[f"sysctl.txt: net.netfilter.nf_conntrack_count = {count}",
                              f"sysctl.txt: net.netfilter.nf_conntrack_max = {limit}"]
                    + ([f"conntrack-stats.txt: {', '.join(f'{k}={v}' for k, v in drops.items())}"] if drops else []),
                    fix="Raise the limit (kube-proxy sets it from conntrack.maxPerCore x CPUs, min conntrack.min, "
                    "at start; raise those in its config so a restart does not lower it again) and find what opens "
                    "so many connections.",
                    commands=[command("sysctl", "-w", f"net.netfilter.nf_conntrack_max={new_max}", on=node.name),
                              command("conntrack", "-S", on=node.name, note=": watch drop / early_drop / insert_failed")],
                )
                return
        if drops.get("drop") or drops.get("early_drop"):
            yield self.finding(
                ctx, f"Node {node.name}",
                f"conntrack on node {node.name} has dropped packets ({', '.join(f'{k}={v}' for k, v in drops.items())}"
                "): the table was full at some point since boot",
                severity=Severity.WARNING,
                evidence=[f"conntrack-stats.txt: {', '.join(f'{k}={v}' for k, v in drops.items())}"],
                fix="Raise nf_conntrack_max (and kube-proxy's conntrack.maxPerCore/min) if this keeps growing.",
                commands=[command("conntrack", "-S", on=node.name)],
            )


def _covers(cidr: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


CHECK = SysctlConntrack()
