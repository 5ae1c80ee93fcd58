"""Userland readiness of a kube-proxy mode switch (`userland-ready`): what the target mode needs beside the kernel.

Per node (kernel requirements are `kernel-ready`'s, from `checks.kernel_modules`):
- nftables: `nft` >= 1.0.1 (kube-proxy's nftables mode runs `nft`); from the node's `nft --version`
  (`nft-version.txt`) or the version `nft -j` writes into `nft-ruleset.json`. That is the node's nft: the one
  kube-proxy uses when it runs on the host; in a container it uses its image's, which no bundle shows, so an
  unknown version is a warning ("not evaluated"), never a pass claim;
- IPVS: the `ipset` tool (IPVS mode runs `ipset`) and, when MetalLB or kube-vip announce LoadBalancer IPs
  (L2/ARP), `ipvs.strictARP: true` (IPVS binds every Service IP to `kube-ipvs0`, so without strict ARP every
  node answers ARP for them: MetalLB's and kube-vip's install docs require it);
- every mode: the conntrack tool (`conntrack -S` answered), for checking stale flows after the switch.
IPVS evidence here is judged from recorded shapes only: this machine's kernel has no IPVS.
"""

from __future__ import annotations

from kpdoctor.cluster.kube_proxy_node import ProxyMode
from kpdoctor.cluster.model import Container
from kpdoctor.cluster.state import ClusterState
from kpdoctor.gate.mode_nodes import Node
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, blocking, warning

NFT_MIN = (1, 0, 1)
L2_ANNOUNCERS = ("metallb", "kube-vip")


def _announces_arp(name: str, containers: tuple[Container, ...]) -> bool:
    if name == "kube-vip":  # kube-vip's env: vip_arp "true" is ARP (L2) mode; BGP-only needs no strict ARP
        envs = [c.env for c in containers if "kube-vip" in c.image.lower() or c.name == "kube-vip"]
        return not envs or any(e.get("vip_arp", "true").lower() == "true" for e in envs)
    return True  # MetalLB: L2 or BGP is in its CRDs, which the input does not hold: assume L2


def l2_announcers(cluster: ClusterState) -> list[str]:
    """kube-system DaemonSets and Pods that look like MetalLB speakers or kube-vip in ARP mode (by name or image).
    The input holds kube-system workloads only: MetalLB in metallb-system is not visible (said by the caller)."""
    found: set[str] = set()
    workloads = [(f"DaemonSet {d.key}", d.name, d.containers) for d in cluster.daemonsets]
    workloads += [(f"Pod {p.key}", p.name, p.containers) for p in cluster.pods if p.owner_kind != "DaemonSet"]
    for label, obj_name, containers in workloads:
        text = " ".join([obj_name, *(c.image for c in containers)]).lower()
        found.update(f"{label} ({name})" for name in L2_ANNOUNCERS if name in text and _announces_arp(name, containers))
    return sorted(found)


def _nft(node: Node, subject: str) -> tuple[list[GateReason], list[str]]:
    p = node.facts
    version = p.nft_version if p is not None else None
    if version is None:
        return [warning(subject, (
            "not evaluated: the nft version was not collected (nft-version.txt, or nft-ruleset.json from `nft -j`); "
            "kube-proxy's nftables mode needs nft >= 1.0.1 where it runs: check with `kubectl -n kube-system exec "
            "<kube-proxy pod> -- nft --version`"))], []
    shown = ".".join(map(str, version))
    if version < NFT_MIN:
        return [blocking(subject, (
            f"nft {shown} is older than the 1.0.1 kube-proxy's nftables mode needs (the node's nft; in a container "
            "kube-proxy uses its image's)"), evidence=(f"nft {shown}",))], []
    return [], [f"nft {shown} (the node's; in a container kube-proxy uses its image's)"]


def _ipvs(cluster: ClusterState, node: Node, subject: str, announcers: list[str]) -> tuple[list[GateReason],
                                                                                           list[str]]:
    reasons: list[GateReason] = []
    evidence: list[str] = []
    state = node.facts.state if node.facts is not None else None
    if state is not None and state.text("ipset-list.txt") is not None:
        evidence.append("ipset-list.txt: `ipset list` answered")
    else:
        why = state.fact("ipset-list.txt").error if state is not None else "no node facts"
        reasons.append(warning(subject, (
            f"not evaluated: the ipset tool IPVS mode needs was not seen on the node ({why or 'not collected'}); "
            "in a container kube-proxy uses its image's")))
    if announcers:
        strict = node.config.ipvs_strict_arp if node.config is not None else None
        if strict is None:
            reasons.append(warning(subject, "not evaluated: no kube-proxy configuration to read ipvs.strictARP from"))
        elif not strict:
            reasons.append(blocking(subject, (
                f"{', '.join(announcers[:3])} announce LoadBalancer IPs, and IPVS mode binds every Service IP to "
                "kube-ipvs0: set ipvs.strictARP: true in the kube-proxy ConfigMap with the switch, or every node "
                "answers ARP for them (MetalLB and kube-vip require it with IPVS)"), evidence=(node.origin,)))
        else:
            evidence.append(f"ipvs.strictARP: true ({node.origin})")
    elif node.config is not None and not node.config.ipvs_strict_arp and any(
            s.type == "LoadBalancer" for s in cluster.services):
        reasons.append(warning(subject, (
            "not evaluated: LoadBalancer Services exist and ipvs.strictARP is false; no MetalLB or kube-vip in "
            "kube-system, and workloads in other namespaces are not in the input: if one announces LoadBalancer "
            "IPs by ARP (MetalLB L2, kube-vip ARP), set ipvs.strictARP: true with the switch")))
    return reasons, evidence


def userland_ready(cluster: ClusterState, nodes: list[Node], target: ProxyMode) -> GateCondition:
    needs = {"nftables": "nft >= 1.0.1, conntrack", "ipvs": "ipset, strictARP with L2 announcers, conntrack"}
    title = f"Every node has the tools {target} mode needs ({needs.get(target, 'conntrack')})"
    announcers = l2_announcers(cluster) if target == "ipvs" else []
    cases = []
    proofs: list[str] = []
    for node in nodes:
        subject = f"Node {node.name}"
        reasons: list[GateReason] = []
        evidence: list[str] = []
        if target == "nftables":
            r, e = _nft(node, subject)
            reasons += r
            evidence += e
        elif target == "ipvs":
            r, e = _ipvs(cluster, node, subject, announcers)
            reasons += r
            evidence += e
        state = node.facts.state if node.facts is not None else None
        if state is not None and state.text("conntrack-stats.txt") is not None:
            evidence.append("conntrack-stats.txt: `conntrack -S` answered")
        else:
            reasons.append(warning(subject, (
                "the conntrack tool was not seen on the node: install conntrack (conntrack-tools) to check and "
                "flush stale flows after the switch (`conntrack -L`, `conntrack -D`)")))
        proofs.extend(f"{node.name}: {e}" for e in evidence)
        cases.append(GateCase(subject, tuple(reasons)))
    return GateCondition("userland-ready", title, cases=tuple(cases), evidence=tuple(proofs))
