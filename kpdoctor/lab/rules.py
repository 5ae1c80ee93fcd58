"""Render the reference proxier's rules for a lab cluster, and find the first/last Service in them.

The renderers are imported here, lazily, so building a lab (or `kpdoctor --help`)
does not pay for them.
"""

from __future__ import annotations

import re

from kpdoctor.cluster.state import ClusterState
from kpdoctor.lab.netns import LabError
from kpdoctor.proxier.context import ProxierInput


def render_rules(cluster: ClusterState, node_name: str, mode: str) -> str:
    """What kube-proxy v1.36 in `mode` would write on `node_name` (iptables-restore or nft -f input)."""
    from kpdoctor.cluster.kube_proxy_node import is_proxy_mode
    from kpdoctor.proxier.context import build_input

    if not is_proxy_mode(mode) or mode == "ipvs":
        raise LabError(f"the lab renders iptables or nftables rules, not {mode!r} (this kernel has no IPVS)")
    inp = build_input(cluster, node_name, mode=mode)
    try:
        from kpdoctor.proxier.render import render
    except ModuleNotFoundError as exc:
        if exc.name != "kpdoctor.proxier.render":
            raise
        return _render_by_mode(inp, mode)
    return render(inp)


def _render_by_mode(inp: ProxierInput, mode: str) -> str:
    """Fallback while the mode dispatcher is absent: call the mode's renderer directly."""
    if mode == "iptables":
        from kpdoctor.proxier.iptables import render_iptables

        return render_iptables(inp)
    if mode == "nftables":
        from kpdoctor.proxier.nftables import render_nftables

        return render_nftables(inp)
    raise LabError(f"the lab renders iptables or nftables rules, not {mode!r}")


_DEST = re.compile(r" -d (\d+\.\d+\.\d+\.\d+)(?:/32)?\b")
_DPORT = re.compile(r" --dport (\d+)\b")


def kube_services_order(iptables_rules: str) -> list[tuple[str, int]]:
    """(ClusterIP, port) in the order nat KUBE-SERVICES matches them: the order a new packet walks."""
    order: list[tuple[str, int]] = []
    table = ""
    for line in iptables_rules.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        # kube-proxy writes `-d IP --dport P`, iptables-save reorders matches: find each on its own
        elif table == "nat" and line.startswith("-A KUBE-SERVICES ") and " -j KUBE-SVC-" in line:
            dest, dport = _DEST.search(line), _DPORT.search(line)
            if dest and dport:
                order.append((dest.group(1), int(dport.group(1))))
    return order
