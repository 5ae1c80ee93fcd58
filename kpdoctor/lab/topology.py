"""A Kubernetes node in miniature: one "node" namespace routing for N "pod" namespaces and a client.

Layout (every address exists only inside the lab's own namespaces):

    client ns  eth0 10.240.0.3/24  <-veth->  node ns eth0 10.240.0.2/24   (the node's InternalIP)
    node ns    uplink0 10.240.1.2/30 <-veth-> gateway ns 10.240.1.1/30  (the node's default route; the
               gateway does not forward, so nothing leaves the lab)
    pod-i ns   eth0 10.244.1.(10+i)/32 <-veth-> node ns vp<i> 10.244.1.1/32 + route 10.244.1.(10+i)/32

Pods are wired point-to-point and routed (like the ptp / Calico CNIs), not bridged:
every packet between pods crosses the node's IP layer, so kube-proxy's DNAT is
undone on the reply without br_netfilter, and the lab's result does not depend
on a host-wide `bridge-nf-call-iptables` setting. Pod default routes point at the
node, the node forwards (`ip_forward=1` in its namespace only), and Service IPs
need no route: they are DNATed in the node namespace before routing.

`Lab` is a context manager: on exit (also on failure or Ctrl-C) it stops the
servers it started, by PID, and deletes its uniquely named namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kpdoctor.lab import netns
from kpdoctor.lab.servers import Server

NODE_IP = "10.240.0.2"
CLIENT_IP = "10.240.0.3"
NODE_NET_PREFIX = 24
POD_GATEWAY = "10.244.1.1"
POD_CIDR = "10.244.1.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NODE_UPLINK_IP = "10.240.1.2"
GATEWAY_IP = "10.240.1.1"
MAX_PODS = 200


def pod_ip(index: int) -> str:
    return f"10.244.1.{10 + index}"


@dataclass(frozen=True)
class Pod:
    name: str
    netns: str
    ip: str
    node_if: str


class Lab:
    """Build with `with Lab(pods=2) as lab:`; everything is gone after the block."""

    def __init__(self, pods: int = 2, *, prefix: str | None = None, node_name: str = "lab-node") -> None:
        self.pods_wanted = pods
        self.prefix = prefix or netns.unique_prefix()
        self.node_name = node_name
        self.pods: list[Pod] = []
        self.servers: list[Server] = []
        self._created: list[str] = []

    @property
    def node_ns(self) -> str:
        return f"{self.prefix}-node"

    @property
    def gateway_ns(self) -> str:
        return f"{self.prefix}-gw"

    @property
    def client_ns(self) -> str:
        return f"{self.prefix}-client"

    @property
    def namespaces(self) -> list[str]:
        return list(self._created)

    def pod(self, name: str) -> Pod:
        for p in self.pods:
            if p.name == name:
                return p
        raise KeyError(name)

    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.teardown()

    def _new_ns(self, name: str) -> str:
        if netns.exists(name):  # never adopt (and later delete) a namespace that is not ours
            raise netns.LabError("network namespace already exists", where=name)
        self._created.append(name)
        write_marker(self.prefix, self._created)  # before creating: a crash right after still leaves a record
        netns.create(name)
        return name

    def build(self) -> None:
        if not 0 <= self.pods_wanted <= MAX_PODS:
            raise netns.LabError(f"pods must be between 0 and {MAX_PODS}")
        netns.require_tools("sysctl")
        node = self._new_ns(self.node_ns)
        netns.node_forwarding(node)
        client = self._new_ns(self.client_ns)
        netns.veth(node, "eth0", client, "eth0")
        netns.add_address(node, "eth0", f"{NODE_IP}/{NODE_NET_PREFIX}")
        netns.add_address(client, "eth0", f"{CLIENT_IP}/{NODE_NET_PREFIX}")
        netns.add_route(client, "default", via=NODE_IP)
        # A real node has a default route, so a Service IP without a rule is forwarded (through the
        # FORWARD hook, where kube-proxy's REJECTs live) rather than answered "network unreachable"
        # by routing. Here the gateway is a namespace that does not forward: traffic dies there.
        gateway = self._new_ns(self.gateway_ns)
        netns.sysctl(gateway, "net.ipv4.ip_forward", "0")
        netns.veth(node, "uplink0", gateway, "eth0")
        netns.add_address(node, "uplink0", f"{NODE_UPLINK_IP}/30")
        netns.add_address(gateway, "eth0", f"{GATEWAY_IP}/30")
        netns.add_route(node, "default", via=GATEWAY_IP)
        for index in range(self.pods_wanted):
            self.add_pod(f"pod-{index}")

    def add_pod(self, name: str) -> Pod:
        index = len(self.pods)
        ns = self._new_ns(f"{self.prefix}-p{index}")
        node_if = f"vp{index}"
        ip = pod_ip(index)
        netns.plug_pod(self.node_ns, node_if, ns, ip, POD_GATEWAY)
        pod = Pod(name=name, netns=ns, ip=ip, node_if=node_if)
        self.pods.append(pod)
        return pod

    def serve(self, pod: Pod, port: int) -> Server:
        """Start a name server in `pod` on `port`; teardown stops it."""
        server = Server(name=pod.name, netns=pod.netns, port=port)
        self.servers.append(server)
        return server.start()

    def teardown(self) -> None:
        """Stop our servers by PID, then delete our namespaces; never raises, never touches others'."""
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()
        for name in reversed(self._created):
            with contextlib.suppress(Exception):
                netns.delete(name)
        if not any(netns.exists(n) for n in self._created):
            with contextlib.suppress(OSError):
                (MARKER_DIR / f"{self.prefix}.json").unlink()
        self._created.clear()
        self.pods.clear()


# Each live lab leaves a marker naming its creator PID and namespaces, so a lab whose process was
# killed outright (SIGKILL, OOM, power cut of a CI runner) can be found and removed later by
# `cleanup_stale()` / `kpdoctor lab cleanup` -- without ever guessing from names alone.
MARKER_DIR = Path("/run/kpdoctor-lab")


def write_marker(prefix: str, namespaces: list[str]) -> None:
    MARKER_DIR.mkdir(parents=True, exist_ok=True)
    tmp = MARKER_DIR / f".{prefix}.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "namespaces": namespaces}), encoding="utf-8")
    tmp.replace(MARKER_DIR / f"{prefix}.json")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete the namespaces of labs whose creating process is gone; return what was deleted."""
    removed: list[str] = []
    if not MARKER_DIR.is_dir():
        return removed
    for marker in sorted(MARKER_DIR.glob("*.json")):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            pid, names = int(data["pid"]), [str(n) for n in data["namespaces"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        prefix = marker.name.removesuffix(".json")
        if _alive(pid) or not all(n.startswith(prefix + "-") for n in names):
            continue
        for name in reversed(names):
            if netns.exists(name):
                netns.delete(name)
                removed.append(name)
        with contextlib.suppress(OSError):
            marker.unlink()
    return removed
