"""Names <-> addresses for a trace, through the cluster state: `pod/NS/NAME`, `svc/NS/NAME[:PORT]`,
`node/NAME[:PORT]`, `external`, or a literal `IP[:PORT]`; and the reverse (what an address belongs to)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError
from kpdoctor.trace.ipnet import split_host_port

EXTERNAL_V4 = "203.0.113.10"  # TEST-NET-3 (RFC 5737): a client outside the cluster
EXTERNAL_V6 = "2001:db8::10"
# what the trace may say of them without the node's ip-addr.json: `external` means "not in the cluster"
EXTERNAL_NOT_LOCAL = {
    EXTERNAL_V4: "the `external` client (TEST-NET-3, RFC 5737: a client outside the cluster), not local",
    EXTERNAL_V6: "the `external` client (2001:db8::/32, RFC 3849: a client outside the cluster), not local",
}


@dataclass(frozen=True)
class Endpoint:
    """A resolved --from/--to."""

    address: str
    port: int | None
    proto: str | None  # from a Service port, when the name gave one
    label: str  # "pod payments/web-1", "svc payments/ledger", "node edge-1", "external client"
    node: str | None = None  # the node the address lives on (pods, nodes)


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InputError(f"{what} {text!r}: not an IP address or a name (pod/NS/NAME, svc/NS/NAME[:PORT], "
                         "node/NAME, external)") from None


def _port(text: str, what: str) -> int:
    if not text.isdecimal() or not 0 < int(text) < 65536:
        raise InputError(f"{what}: port {text!r} is not a number in 1-65535")
    return int(text)


def resolve(text: str, cluster: ClusterState | None, what: str, family: int = 4) -> Endpoint:
    """Resolve one --from/--to value; a name that the cluster state does not hold is an InputError."""
    text = text.strip()
    kind, sep, rest = text.partition("/")
    if text == "external":
        return Endpoint(EXTERNAL_V4 if family == 4 else EXTERNAL_V6, None, None, "external client")
    if sep and kind in ("pod", "svc", "service", "node"):
        if cluster is None:
            raise InputError(f"{what} {text!r}: names need the cluster state (bundle cluster/ or --snapshot)")
        if kind == "node":
            name, _, port = rest.partition(":")
            node = cluster.node_by_name.get(name)
            if node is None:
                raise InputError(f"{what} {text!r}: no Node {name!r} in the cluster state")
            ips = node.internal_ips
            if not ips:
                raise InputError(f"{what} {text!r}: Node {name} has no InternalIP")
            return Endpoint(ips[0], _port(port, what) if port else None, None, f"node {name}", name)
        ns, sep2, name = rest.partition("/")
        if not sep2 or not ns or not name:
            raise InputError(f"{what} {text!r}: expected {kind}/NAMESPACE/NAME")
        if kind == "pod":
            name, _, port = name.partition(":")
            pod = next((p for p in (*cluster.pods, *cluster.workload_pods) if p.namespace == ns and p.name == name),
                       None)
            if pod is None:
                raise InputError(f"{what} {text!r}: no Pod {ns}/{name} in the cluster state")
            if not pod.pod_ip:
                raise InputError(f"{what} {text!r}: Pod {ns}/{name} has no IP (not running?)")
            label = f"pod {ns}/{name}" + (" (hostNetwork)" if pod.host_network else "")
            return Endpoint(pod.pod_ip, _port(port, what) if port else None, None, label, pod.node_name)
        name, _, port_text = name.partition(":")
        svc = cluster.service_by_key.get(f"{ns}/{name}")
        if svc is None:
            raise InputError(f"{what} {text!r}: no Service {ns}/{name} in the cluster state")
        svc_ips = [ip for ip in svc.cluster_ips if ip and ip != "None"]
        if not svc_ips:
            raise InputError(f"{what} {text!r}: Service {ns}/{name} has no ClusterIP (headless?)")
        ports = svc.ports
        chosen = None
        if port_text:
            chosen = next((p for p in ports if p.name == port_text or str(p.port) == port_text), None)
            if chosen is None:
                raise InputError(f"{what} {text!r}: Service {ns}/{name} has no port {port_text!r}")
        elif ports:
            chosen = ports[0]
        ip = next((i for i in svc_ips if (":" in i) == (family == 6)), svc_ips[0])
        return Endpoint(ip, chosen.port if chosen else None, chosen.protocol.lower() if chosen else None,
                        f"svc {ns}/{name}")
    host, literal_port = split_host_port(text)
    return Endpoint(_ip(host, what), literal_port, None, "")


class Labels:
    """address -> what it belongs to, from the cluster state (Nodes, loaded pods, Service IPs) and from the
    rules a trace walked (a DNAT rule's comment names its Service). Keys are the addresses as the API
    prints them; a lookup canonicalizes only the address asked about."""

    def __init__(self, cluster: ClusterState | None) -> None:
        self._by_ip: dict[str, str] = {}
        if cluster is None:
            return
        by_ip = self._by_ip
        for svc in cluster.services:
            label = f"svc {svc.namespace}/{svc.name}"
            for ip in (*svc.cluster_ips, *svc.external_ips, *(i.ip for i in svc.load_balancer_ingress)):
                by_ip[ip] = label
        for pod in (*cluster.pods, *cluster.workload_pods):
            if pod.pod_ip and not pod.host_network:
                by_ip[pod.pod_ip] = f"pod {pod.namespace}/{pod.name}" + (f" on node {pod.node_name}"
                                                                         if pod.node_name else "")
        for node in cluster.nodes:
            for addr in node.addresses:
                by_ip[addr.address] = f"node {node.name}"

    def add(self, addr: str, label: str) -> None:
        self._by_ip.setdefault(addr, label)

    def copy(self) -> Labels:
        """An independent copy (one node's trace adds its rules' labels to its own)."""
        out = Labels(None)
        out._by_ip = dict(self._by_ip)
        return out

    def of(self, addr: str) -> str:
        found = self._by_ip.get(addr)
        if found is not None:
            return found
        try:
            return self._by_ip.get(str(ipaddress.ip_address(addr)), "")
        except ValueError:
            return ""
