"""`host-firewall` of `kpdoctor gate mode-switch --to nftables`: what a default-deny host firewall blocks after it.

kube-proxy's iptables and IPVS modes open a path through the host's iptables filter table: KUBE-FORWARD accepts
the Service traffic kube-proxy marked for masquerade (NodePorts, external IPs, load-balancer IPs from outside,
mark 0x4000) and RELATED/ESTABLISHED flows in FORWARD; KUBE-NODEPORTS accepts the health-check node ports in
INPUT. nftables mode adds nothing to iptables (kube-proxy docs, "Virtual IPs and Service Proxies", nftables
mode: NodePort interaction with firewalls; KEP-3866), and removes those chains when it starts (measured:
tests/test_klab_mode_switch.py). So on a node whose filter FORWARD (or INPUT) policy is DROP — Docker sets
FORWARD to DROP, ufw sets INPUT to DROP — that traffic is dropped after the switch unless the host firewall
accepts it itself. Computed per node from its own dumps; a node without them is "cannot prove".
"""

from __future__ import annotations

import ipaddress

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate.mode_nodes import MAX_LISTED, Node, current_mode
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, blocking, unknown, warning
from kpdoctor.node.parsed import IptablesView
from kpdoctor.shellcmd import command

DUMPS = ("iptables-save.txt", "iptables-legacy-save.txt")
_MATCHES = ("-s", "-d", "-i", "-o", "-p", "--dport", "--dports", "--ctstate", "--state", "-m")


def _accepts_all(line: str) -> bool:
    tokens = line.split()
    return not any(t in _MATCHES or t.startswith("!") for t in tokens)


def _accepts_pods(dump: IptablesView, chain: str, cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The first non-kube-proxy rule of `chain` that accepts everything or the pods' addresses ("" when none)."""
    for rule in dump.walk("filter", chain):
        if rule.target != "ACCEPT" or rule.chain.startswith("KUBE-"):
            continue
        if _accepts_all(rule.line):
            return rule.line
        if rule.addresses_within(cidrs):
            return rule.line
    return ""


def _accepts_port(dump: IptablesView, port: int) -> str:
    for rule in dump.walk("filter", "INPUT"):
        if rule.target != "ACCEPT" or rule.chain.startswith("KUBE-"):
            continue
        tokens = rule.line.split()
        if _accepts_all(rule.line):
            return rule.line
        for i, tok in enumerate(tokens[:-1]):
            if tok in ("--dport", "--dports") and "!" not in tokens[i - 1:i]:
                for part in tokens[i + 1].split(","):
                    lo, _, hi = part.partition(":")
                    if lo.isdigit() and int(lo) <= port <= int(hi or lo):
                        return rule.line
    return ""


def _pod_cidrs(cluster: ClusterState) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for n in cluster.nodes:
        for c in n.pod_cidrs:
            try:
                out.append(ipaddress.ip_network(c, strict=False))
            except ValueError:
                continue
    return out


def _node_reasons(cluster: ClusterState, node: Node, subject: str, key: str, dump: IptablesView,
                  evidence: list[str]) -> list[GateReason]:
    reasons: list[GateReason] = []
    policies = dump.policies.get("filter", {})
    nodeports = sorted({f"{p.node_port}/{p.protocol}" for s in cluster.services for p in s.ports if p.node_port})
    if policies.get("FORWARD") == "DROP":
        accepted = _accepts_pods(dump, "FORWARD", _pod_cidrs(cluster))
        if accepted:
            evidence.append(f"{node.name}: {key}: FORWARD policy DROP, but the host accepts pod traffic: {accepted}")
        else:
            shown = ", ".join(nodeports[:MAX_LISTED]) + (" ..." if len(nodeports) > MAX_LISTED else "")
            reasons.append(blocking(subject, (
                f"filter FORWARD policy is DROP ({key}) and only kube-proxy's KUBE-FORWARD accepts the Service "
                "traffic it marks (NodePorts, external and load-balancer IPs from outside) and established flows; "
                "nftables mode adds no iptables rule, so after the switch that traffic to pods is dropped"
                + (f": NodePorts {shown} stop answering on this node" if nodeports else "")
                + ". Accept it in the host firewall first (e.g. the pod CIDR in FORWARD)"),
                evidence=(f"{key}: :FORWARD DROP", f"{key}: no ACCEPT outside KUBE-* chains for the pod CIDR"),
                commands=tuple(command("iptables", "-I", "FORWARD", "-d", cidr, "-j", "ACCEPT", on=node.name)
                               for cidr in sorted({str(c) for c in _pod_cidrs(cluster)})[:4])))
    elif "FORWARD" in policies:
        evidence.append(f"{node.name}: {key}: FORWARD policy {policies['FORWARD']}")
    if policies.get("INPUT") == "DROP":
        checks = sorted({s.health_check_node_port for s in cluster.services if s.health_check_node_port})
        blocked = [p for p in checks if not _accepts_port(dump, p)]
        if blocked:
            reasons.append(blocking(subject, (
                f"filter INPUT policy is DROP ({key}) and only kube-proxy's KUBE-NODEPORTS accepts the health-check "
                f"node ports {', '.join(map(str, blocked))}; nftables mode adds no iptables rule, so the load "
                "balancers' health checks fail after the switch and they take the node out. Accept the ports in "
                "the host firewall first"), evidence=(f"{key}: :INPUT DROP",),
                commands=tuple(command("iptables", "-I", "INPUT", "-p", "tcp", "--dport", str(p), "-j", "ACCEPT",
                                       on=node.name) for p in blocked[:MAX_LISTED])))
        elif checks:
            evidence.append(f"{node.name}: {key}: INPUT policy DROP, health-check node ports accepted by the host")
        else:
            evidence.append(f"{node.name}: {key}: INPUT policy DROP, no health-check node ports")
    return reasons


def host_firewall(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = "No default-deny host firewall blocks Service traffic once kube-proxy's iptables accepts are gone"
    cases = []
    proofs: list[str] = []
    for node in nodes:
        subject = f"Node {node.name}"
        current, _ = current_mode(node)
        if target != "nftables" or current not in ("iptables", "ipvs"):
            cases.append(GateCase(subject))
            continue
        if node.facts is None:
            cases.append(GateCase(subject, (unknown(subject, "cannot prove: no node facts (its filter table)"),)))
            continue
        collected = [k for k in DUMPS if node.facts.state.text(k) is not None]
        if not collected:
            cases.append(GateCase(subject, (unknown(subject, (
                "cannot prove: the node's iptables filter table was not collected (iptables-save)")),)))
            continue
        found = [(k, d) for k in collected if (d := node.facts.iptables(k)) is not None and not d.empty]
        proofs.extend(f"{node.name}: {k}: no tables (nothing in iptables filters)" for k in collected
                      if k not in {f for f, _ in found})
        reasons: list[GateReason] = []
        for key, dump in found:
            reasons += _node_reasons(cluster, node, subject, key, dump, proofs)
        if node.facts.nft is not None and any(c.policy == "drop" and c.hook in ("input", "forward")
                                              and c.table != "kube-proxy" and (c.family, c.table)
                                              not in node.facts.nft.xt_tables
                                              for c in node.facts.nft.base_chains()):
            reasons.append(warning(subject, (
                "an nftables base chain outside kube-proxy drops by policy on input/forward (firewalld?): it drops "
                "what it does not accept in both modes (KP-NODEPORT-FIREWALL): unchanged by the switch")))
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("host-firewall", title, cases=tuple(cases), evidence=tuple(proofs))
