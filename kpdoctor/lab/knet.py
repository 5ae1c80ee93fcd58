"""The lab cluster's network: N node namespaces on one L2 segment, pods routed behind each node.

    <prefix>-net    bridge br0 10.240.0.1/24: the segment, and the nodes' default gateway; it does
                    not forward (ip_forward=0), so nothing leaves the lab
    <prefix>-n<i>   node i: eth0 10.240.0.(10+i)/24 on br0; ip_forward=1; a route to every
                    other node's pod CIDR via that node; pods wired point-to-point (vp<j>)
    <prefix>-n<i>p<j>  pod j of node i: eth0 10.244.(i+1).(10+j)/32, default via the node
    <prefix>-client 10.240.0.3/24 on br0: traffic from outside the nodes (NodePorts)

Every address exists only inside these namespaces; no host interface is created.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kpdoctor.lab import netns

NET_GATEWAY = "10.240.0.1"
CLIENT_IP = "10.240.0.3"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
MAX_NODES = 20
MAX_PODS = 50


def node_ip(index: int) -> str:
    return f"10.240.0.{10 + index}"


def pod_cidr(index: int) -> str:
    return f"10.244.{index + 1}.0/24"


def pod_ip(node_index: int, pod_index: int) -> str:
    return f"10.244.{node_index + 1}.{10 + pod_index}"


@dataclass
class PodNet:
    name: str
    netns: str
    ip: str


@dataclass
class NodeNet:
    name: str
    netns: str
    ip: str
    pod_cidr: str
    pods: list[PodNet] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeNet:
        pods = [PodNet(**p) for p in data.get("pods", [])]
        return cls(data["name"], data["netns"], data["ip"], data["pod_cidr"], pods)


class Topology:
    """Create namespaces through `new_ns`, which records each name before it exists (for teardown)."""

    def __init__(self, prefix: str, new_ns: Any) -> None:
        self.prefix = prefix
        self._new_ns = new_ns

    @property
    def net_ns(self) -> str:
        return f"{self.prefix}-net"

    @property
    def client_ns(self) -> str:
        return f"{self.prefix}-client"

    def build(self, nodes: int, pods_per_node: int) -> list[NodeNet]:
        if not 1 <= nodes <= MAX_NODES:
            raise netns.LabError(f"--nodes must be between 1 and {MAX_NODES}")
        if not 0 <= pods_per_node <= MAX_PODS:
            raise netns.LabError(f"pods per node must be between 0 and {MAX_PODS}")
        netns.require_tools("sysctl")
        net = self._new_ns(self.net_ns)
        netns.sysctl(net, "net.ipv4.ip_forward", "0")
        netns.run(["ip", "link", "add", "br0", "type", "bridge"], netns=net)
        netns.run(["ip", "link", "set", "br0", "up"], netns=net)
        netns.add_address(net, "br0", f"{NET_GATEWAY}/24")
        client = self._new_ns(self.client_ns)
        self._plug(client, "c0")
        netns.add_address(client, "eth0", f"{CLIENT_IP}/24")
        netns.add_route(client, "default", via=NET_GATEWAY)
        result = []
        for i in range(nodes):
            result.append(self._node(i, nodes, pods_per_node))
        return result

    def _plug(self, ns: str, port: str) -> None:
        """A veth from `ns` (eth0) to a port of br0 in the segment namespace."""
        netns.veth(ns, "eth0", self.net_ns, port)
        netns.run(["ip", "link", "set", port, "master", "br0"], netns=self.net_ns)

    def _node(self, i: int, total: int, pods: int) -> NodeNet:
        name = f"{self.prefix}-n{i}"
        ns = self._new_ns(name)
        netns.node_forwarding(ns)
        self._plug(ns, f"n{i}")
        netns.add_address(ns, "eth0", f"{node_ip(i)}/24")
        netns.add_route(ns, "default", via=NET_GATEWAY)
        for k in range(total):
            if k != i:
                netns.add_route(ns, pod_cidr(k), via=node_ip(k))
        node = NodeNet(name, ns, node_ip(i), pod_cidr(i))
        for j in range(pods):
            pod_ns = self._new_ns(f"{name}p{j}")
            netns.plug_pod(ns, f"vp{j}", pod_ns, pod_ip(i, j), f"10.244.{i + 1}.1")
            node.pods.append(PodNet(f"pod-{i}-{j}", pod_ns, pod_ip(i, j)))
        return node
