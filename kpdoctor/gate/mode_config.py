"""`config-carried` of `kpdoctor gate mode-switch`: per-mode settings and behaviours the switch does not carry over.

KubeProxyConfiguration keeps some settings per mode (`iptables.*` — also read by IPVS mode — `nftables.*`,
`ipvs.*`), so a switch that edits only `mode:` silently drops them; and some behaviours exist in one mode only.
Computed per node from its own configuration (pod -> DaemonSet -> ConfigMap) and facts:
- `masqueradeAll` (iptables/IPVS: `iptables.masqueradeAll`; nftables: `nftables.masqueradeAll`): blocking when it
  would change — every Service connection's source address changes with it;
- `masqueradeBit`, `syncPeriod` / `minSyncPeriod` tuned in the current mode's section only: warnings;
- the conntrack INVALID drop (`--to nftables`): iptables mode drops forwarded packets conntrack marks INVALID
  unless `conntrack.tcpBeLiberal` or `nf_conntrack_tcp_be_liberal=1` (kube-proxy's fix for kubernetes#74839);
  nftables mode v1.36 has no such drop (none in the real rulesets of tests/fixtures/mode-switch): a warning with
  the setting that replaces it;
- from IPVS: schedulers other than `rr` and IPVS timeouts have no equivalent (endpoints are picked at random in
  iptables and nftables mode; conntrack timeouts apply), and the Service IPs bound to `kube-ipvs0` stop answering
  ping and other ports: warnings, with this node's numbers;
- to IPVS: every ClusterIP / external IP is bound to `kube-ipvs0`, so they answer ping and reach host sockets
  listening on 0.0.0.0 on any port: a warning with the count.
IPVS from configuration and recorded facts only: this machine's kernel has no IPVS.
"""

from __future__ import annotations

from dataclasses import replace

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate.mode_nodes import Node, current_mode
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, blocking, warning

SECTION = {"iptables": "iptables", "ipvs": "iptables", "nftables": "nftables"}


def _service_ips(cluster: ClusterState) -> set[str]:
    ips = {ip for s in cluster.services for ip in s.cluster_ips if ip and ip != "None"}
    ips.update(ip for s in cluster.services for ip in s.external_ips)
    return ips


def _kube_ipvs0_addresses(node: Node) -> int | None:
    """Addresses on kube-ipvs0 (0: the node has no kube-ipvs0); None when the interfaces were not collected."""
    if node.facts is None or node.facts.interfaces is None:
        return None
    return sum(len(i.addresses) for i in node.facts.interfaces if i.name == "kube-ipvs0")


def _liberal(node: Node) -> tuple[bool | None, str]:
    if node.config is not None and node.config.conntrack_tcp_be_liberal:
        return True, "conntrack.tcpBeLiberal: true"
    if node.facts is not None and "net.netfilter.nf_conntrack_tcp_be_liberal" in node.facts.sysctl:
        value = node.facts.sysctl["net.netfilter.nf_conntrack_tcp_be_liberal"]
        return value.strip() == "1", f"sysctl.txt: net.netfilter.nf_conntrack_tcp_be_liberal = {value.strip()}"
    return None, ""


def _node_reasons(cluster: ClusterState, node: Node, current: str, target: ProxyMode) -> list[GateReason]:
    assert node.config is not None
    subject = f"Node {node.name}"
    cur = replace(node.config, mode=current)
    tgt = replace(node.config, mode=target)
    out: list[GateReason] = []
    cur_s, tgt_s = SECTION[current], SECTION[target]
    if cur.masquerade_all != tgt.masquerade_all:
        out.append(blocking(subject, (
            f"{cur_s}.masqueradeAll is {str(cur.masquerade_all).lower()} but {tgt_s}.masqueradeAll is "
            f"{str(tgt.masquerade_all).lower()}: after the switch every Service connection is "
            + ("no longer" if cur.masquerade_all else "now") + f" masqueraded. Set {tgt_s}.masqueradeAll: "
            f"{str(cur.masquerade_all).lower()} in the same ConfigMap edit"), evidence=(node.origin,)))
    if cur_s != tgt_s:
        bits = (getattr(node.config, f"{cur_s}_masquerade_bit"), getattr(node.config, f"{tgt_s}_masquerade_bit"))
        if bits[0] is not None and bits[0] != (bits[1] if bits[1] is not None else 14):
            out.append(warning(subject, (
                f"{cur_s}.masqueradeBit is {bits[0]}, {tgt_s}.masqueradeBit is {bits[1] or '14 (default)'}: set it "
                "in the target's section too if the bit was chosen to avoid another component's marks")))
        syncs = (getattr(node.config, f"{cur_s}_sync"), getattr(node.config, f"{tgt_s}_sync"))
        if syncs[0] != syncs[1] and (syncs[0].sync_period or syncs[0].min_sync_period):
            out.append(warning(subject, (
                f"{cur_s}.syncPeriod/minSyncPeriod ({syncs[0].sync_period:g}s/{syncs[0].min_sync_period:g}s) are "
                f"tuned, {tgt_s}'s are {syncs[1].sync_period:g}s/{syncs[1].min_sync_period:g}s (0: default): carry "
                "them over if they were tuned for this cluster's size")))
    if current in ("iptables", "ipvs") and target == "nftables":
        liberal, where = _liberal(node)
        if liberal is False:
            out.append(warning(subject, (
                f"{current} mode drops forwarded packets conntrack marks INVALID here ({where}); nftables mode has no "
                "such drop, so out-of-window packets of long TCP flows can reach pods un-NATed and be answered with "
                "resets (kubernetes#74839): set conntrack.tcpBeLiberal: true with the switch")))
        elif liberal is None:
            out.append(warning(subject, (
                "not evaluated: whether conntrack is liberal (nf_conntrack_tcp_be_liberal not collected); if not, "
                "set conntrack.tcpBeLiberal: true with the switch (nftables mode has no INVALID drop)")))
    if current == "ipvs" and target != "ipvs":
        sched = node.config.ipvs_scheduler or "rr"
        if sched != "rr":
            out.append(warning(subject, (
                f"ipvs.scheduler {sched!r} has no {target} equivalent: endpoints are picked at random after the "
                "switch (no least-connection, hashing or weights)")))
        timeouts = [f"{k}={v:g}s" for k, v in (("tcpTimeout", node.config.ipvs_tcp_timeout),
                                               ("tcpFinTimeout", node.config.ipvs_tcp_fin_timeout),
                                               ("udpTimeout", node.config.ipvs_udp_timeout)) if v]
        if timeouts:
            out.append(warning(subject, (
                f"ipvs {', '.join(timeouts)} have no {target} equivalent: the kernel's conntrack timeouts apply")))
        bound = _kube_ipvs0_addresses(node)
        if bound != 0:  # 0: no kube-ipvs0 address on the node now (kube-proxy not running IPVS): nothing changes
            out.append(warning(subject, (
                (f"{bound} Service IPs are bound to kube-ipvs0 today" if bound is not None else
                 "IPVS mode binds Service IPs to kube-ipvs0 (the node's interfaces were not collected)")
                + ": after the switch they no longer answer ping nor ports no Service serves (they are not local "
                  "addresses any more); check monitoring that pings ClusterIPs")))
    if target == "ipvs" and current != "ipvs":
        n = len(_service_ips(cluster))
        out.append(warning(subject, (
            f"IPVS mode binds every ClusterIP and external IP ({n} here) to kube-ipvs0: they answer ping, and host "
            "processes listening on 0.0.0.0 are reachable on them on any port")))
    return out


def config_carried(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    title = "Per-mode settings and behaviours the switch does not carry over"
    cases = []
    for node in nodes:
        subject = f"Node {node.name}"
        current, _ = current_mode(node)
        if node.config is None or current not in SECTION or current == target:
            cases.append(GateCase(subject))  # no configuration: `semantic-diff` already cannot prove it
            continue
        cases.append(GateCase(subject, tuple(_node_reasons(cluster, node, current, target))))
    return GateCondition("config-carried", title, cases=tuple(cases))
