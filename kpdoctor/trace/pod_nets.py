"""Which addresses are pod addresses, from the cluster's Nodes (`spec.podCIDRs`): a fact the trace uses to
decide "is this a local address of the node?" when the node's `ip -j addr` was not collected.

A pod lives in its own network namespace, so an address inside a Node's podCIDR is not an address of the
traced node's own namespace: for another node's podCIDR that holds for every address; for the traced node's
own podCIDR it holds except for the CNI bridge gateway, which the node itself holds (the bridge plugin puts
the range's first host address on cni0, flannel also the network address on flannel.1): those two are left
undecided (the trace follows both ways). hostNetwork pods use the node's address, which the Node's
status.addresses already decides. Each decision names the Node and the CIDR it came from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kpdoctor.cluster.state import ClusterState
from kpdoctor.trace.ipnet import cidr


@dataclass(frozen=True)
class PodNet:
    family: int
    network: int
    mask: int
    node: str
    text: str  # the CIDR, as ipaddress prints it
    own: bool  # the traced node's own podCIDR

    def reason(self, family: int, value: int) -> str | None:
        """Why an address is a pod address (not local), None when it is not in this range or it may be the
        traced node's CNI gateway."""
        if family != self.family or (value & self.mask) != self.network:
            return None
        if self.own and value - self.network <= 1:
            return None  # the network address / first host: the CNI bridge (or flannel.1) address on this node
        where = f"this node's podCIDR {self.text}" if self.own else f"{self.node}'s podCIDR {self.text}"
        return f"a pod address ({where}), not local"


def pod_nets(cluster: ClusterState | None, node_name: str) -> tuple[PodNet, ...]:
    """Every Node's podCIDR(s), the traced node's own first."""
    if cluster is None:
        return ()
    out: list[PodNet] = []
    for node in cluster.nodes:
        for text in node.pod_cidrs:
            found = cidr(text)
            if found is None or found[2] == 0:  # not a network, or a /0 (that would claim every address)
                continue
            canonical = str(ipaddress.ip_network(text.strip(), strict=False))  # what the trace prints of it
            out.append(PodNet(found[0], found[1], found[2], node.name[:253], canonical, node.name == node_name))
    out.sort(key=lambda n: not n.own)
    return tuple(out)
