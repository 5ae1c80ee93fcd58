"""Named network namespaces and the commands run inside them.

The lab exists to put real packets through real netfilter without ever touching
the host's own ruleset, so every command that reads or changes network state
goes through `run(..., netns=NAME)` (`ip netns exec NAME ...`) and every call
has a timeout: a wedged `iptables-restore` must fail a test, not hang it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kpdoctor.errors import KpdoctorError

NETNS_DIR = Path("/run/netns")
DEFAULT_TIMEOUT = 20.0


class LabError(KpdoctorError):
    """The lab could not be built or driven (no root, a missing tool, a command that failed)."""

    exit_code = 2


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def require_tools(*tools: str) -> None:
    """Fail early with one line naming what is missing, instead of a FileNotFoundError mid-build."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces and loads netfilter rules)")
    missing = [t for t in ("ip", *tools) if shutil.which(t) is None]
    if missing:
        raise LabError(f"the lab needs {', '.join(missing)} installed")


def ns_argv(netns: str | None, args: Sequence[str]) -> list[str]:
    """`ip netns exec NETNS args`; None means the host (read-only callers only). An empty or blank name is
    refused: it would silently run a lab command (iptables-restore, nft -f, sysctl -w) on the host."""
    if netns is None:
        return list(args)
    if not netns.strip():
        raise LabError("empty network namespace name: refusing to run on the host", where=repr(netns))
    return ["ip", "netns", "exec", netns, *args]


def run(
    args: Sequence[str],
    *,
    netns: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
    check: bool = True,
) -> Result:
    """Run one command (inside `netns` when given) with a hard timeout; raise LabError on failure."""
    argv = ns_argv(netns, args)
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out after {timeout:g}s: {' '.join(argv[:8])}", where=netns) from None
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {exc.filename}", where=netns) from None
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        tail = detail[-1] if detail else f"exit status {proc.returncode}"
        raise LabError(f"{' '.join(args[:6])} failed: {tail}", where=netns)
    return result


def unique_prefix(tag: str = "kpd") -> str:
    """A fresh name prefix: concurrent tests and users never collide on namespace names."""
    return f"{tag}-{secrets.token_hex(3)}"


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_namespaces() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def create(name: str) -> None:
    """Create an empty namespace with loopback up (connects to 127.0.0.1 inside it must work)."""
    if exists(name):
        raise LabError("network namespace already exists", where=name)
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], netns=name)


def delete(name: str) -> None:
    """Delete the namespace name; the kernel frees it (and its veths, rules) once no process is inside."""
    if exists(name):
        run(["ip", "netns", "del", name], check=False)


def sysctl(netns: str, key: str, value: str) -> None:
    """Per-namespace sysctls (ip_forward, route_localnet, ...) written through /proc/sys inside the netns."""
    run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


def read_sysctl(netns: str, key: str) -> str:
    return run(["sysctl", "-n", key], netns=netns).stdout.strip()


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair with one end in each namespace (created directly there: no host-side interface ever)."""
    run(["ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
    run(["ip", "-n", ns_a, "link", "set", if_a, "up"])
    run(["ip", "-n", ns_b, "link", "set", if_b, "up"])


def add_address(netns: str, ifname: str, cidr: str) -> None:
    run(["ip", "-n", netns, "addr", "add", cidr, "dev", ifname])


def add_route(netns: str, dest: str, *, via: str | None = None, dev: str | None = None, onlink: bool = False) -> None:
    args = ["ip", "-n", netns, "route", "add", dest]
    if via:
        args += ["via", via]
    if dev:
        args += ["dev", dev]
    if onlink:
        args.append("onlink")
    run(args)


def node_forwarding(netns: str) -> None:
    """A node namespace that routes for its pods: ip_forward on, ICMP redirects off.

    A pod reaching itself through a Service leaves and re-enters on the same veth, which makes the kernel
    send ICMP redirects; those spend the per-peer ICMP rate-limit tokens, and the next REJECT's
    port-unreachable is then held back ~1 s (a refused connect looks slow).
    """
    sysctl(netns, "net.ipv4.ip_forward", "1")
    sysctl(netns, "net.ipv4.conf.all.send_redirects", "0")
    sysctl(netns, "net.ipv4.conf.default.send_redirects", "0")


def plug_pod(node_ns: str, node_if: str, pod_ns: str, ip: str, gateway: str) -> None:
    """Wire a pod namespace to its node the way the CNI ptp plugin does: a veth (`node_if` on the node, eth0
    in the pod), `gateway`/32 on the node's end, a /32 host route to `ip` through it, and the pod's default
    route via `gateway` on-link."""
    veth(node_ns, node_if, pod_ns, "eth0")
    add_address(node_ns, node_if, f"{gateway}/32")
    add_route(node_ns, f"{ip}/32", dev=node_if)
    add_address(pod_ns, "eth0", f"{ip}/32")
    add_route(pod_ns, "default", via=gateway, dev="eth0", onlink=True)
