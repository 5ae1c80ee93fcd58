"""Parse what the user names: `svc/NS/NAME[:PORT]` and `--from pod/NS/NAME|node/NAME|external|IP`.

Bad input is an InputError (exit 2) naming the argument; nothing is looked up here.
`resolve_client` then places the client on a node with the loaded cluster (pure).
"""

from __future__ import annotations

import ipaddress
import re

from kpdoctor.cluster.state import ClusterState
from kpdoctor.errors import InputError
from kpdoctor.why.model import Client, Target

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # DNS-1123 label (namespace, Service name)
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # DNS-1123 subdomain (pod, node names)
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
_PREFIXES = ("svc/", "service/", "services/")


def parse_target(text: str) -> Target:
    """`svc/NS/NAME`, `svc/NS/NAME:PORT` (PORT: a Service port name or number); `NS/NAME` works too."""
    raw = text.strip()
    body = next((raw[len(p):] for p in _PREFIXES if raw.lower().startswith(p)), raw)
    port: str | None = None
    if ":" in body:
        body, port = body.rsplit(":", 1)
    parts = body.split("/")
    if len(parts) != 2 or not all(parts):
        raise InputError(f"{text[:120]!r} is not svc/NAMESPACE/NAME[:PORT]", where="SERVICE")
    namespace, name = parts
    for what, value in (("namespace", namespace), ("Service name", name)):
        if not _LABEL.match(value):
            raise InputError(f"{what} {value[:80]!r} is not a valid DNS-1123 label", where="SERVICE")
    if port is not None:
        if port.isdigit():
            if not 1 <= int(port) <= 65535:
                raise InputError(f"port {port} is out of range 1-65535", where="SERVICE")
        elif not _PORT_NAME.match(port):
            raise InputError(f"port {port[:40]!r} is neither a number nor a valid port name", where="SERVICE")
    return Target(namespace, name, port)


def parse_from(text: str | None) -> Client:
    if text is None or not text.strip():
        return Client()
    raw = text.strip()
    low = raw.lower()
    if low == "external":
        return Client("external")
    if low.startswith("pod/"):
        parts = raw[4:].split("/")
        if len(parts) != 2 or not _LABEL.match(parts[0]) or not _SUBDOMAIN.match(parts[1]):
            raise InputError(f"{raw[:120]!r} is not pod/NAMESPACE/NAME", where="--from")
        return Client("pod", f"{parts[0]}/{parts[1]}")
    if low.startswith("node/"):
        name = raw[5:]
        if not _SUBDOMAIN.match(name):
            raise InputError(f"{raw[:120]!r} is not node/NAME", where="--from")
        return Client("node", name)
    try:
        return Client("ip", str(ipaddress.ip_address(raw)))
    except ValueError:
        raise InputError(f"{raw[:120]!r}: use pod/NAMESPACE/NAME, node/NAME, external or an IP address",
                         where="--from") from None


def resolve_client(client: Client, cluster: ClusterState) -> Client:
    """Place the client on a node (and zone) when the cluster says where it is; unchanged otherwise."""
    node: str | None = None
    if client.kind == "node":
        node = client.value
    elif client.kind == "pod":
        pod = next((p for p in cluster.workload_pods + cluster.pods if p.key == client.value), None)
        node = pod.node_name if pod is not None else None
    elif client.kind == "ip":
        hit = next((n.name for n in cluster.nodes if client.value in (a.address for a in n.addresses)), None)
        if hit is None:
            pod = next((p for p in cluster.workload_pods if p.pod_ip == client.value), None)
            hit = pod.node_name if pod is not None else None
        node = hit
    if node is None:
        return client
    api_node = cluster.node_by_name.get(node)
    return Client(client.kind, client.value, node, api_node.zone if api_node is not None else None)


def pod_namespaces(target: Target, client: Client) -> list[str]:
    """The namespaces whose Pods the analysis needs: the Service's, and a client pod's."""
    out = [target.namespace]
    if client.kind == "pod":
        ns = client.value.split("/", 1)[0]
        if ns not in out:
            out.append(ns)
    return out
