"""The opt-in active NodePort probe behind `kpdoctor scan --probe` (and `kpdoctor node --probe`).

Static checks read rules; only a packet tells whether something *outside* the
node's rules (a cloud security group, a network ACL, a firewall in between)
drops NodePort traffic. So, when asked, kpdoctor connects from where it runs to
each NodePort of the cluster's NodePort/LoadBalancer Services on each selected
node's InternalIP, and KP-NODEPORT-FIREWALL interprets the outcome against the
node's expected dataplane. The sockets live here, on the collection side: a
check never opens one (checks must give the same answer replayed from a bundle).

What a TCP connect() tells, on Linux:
- handshake completes -> ``open`` (the connection is closed at once; no data is sent);
- ECONNREFUSED -> ``refused``: a RST, or ICMP port-unreachable - the answer of
  kube-proxy's REJECT for a Service without endpoints, or of nothing listening;
- no answer within the timeout -> ``timeout``: the SYN was dropped (a DROP rule,
  a security group, or eTP=Local on a node without local endpoints);
- any other error (EHOSTUNREACH from a ``REJECT --reject-with icmp-host-prohibited``
  or a missing route/ARP, ENETUNREACH, EPERM from a local OUTPUT drop, ...) -> ``error``,
  with the errno in the detail: ambiguous, so the check does not conclude from it.
UDP/SCTP NodePorts are listed as ``skipped``: a UDP probe cannot tell an open
port from a filtered one without an application answer.

Bounded on purpose (this is traffic towards production nodes): one TCP connect
per (node, NodePort), at most ``limit`` of them, ``concurrency`` at a time, each
waiting ``timeout`` seconds; worst case ``ceil(limit / concurrency) * timeout``.
When the cap cuts, it cuts evenly: targets are ordered port by port across all
nodes, so every node gets its first NodePorts probed.

Sockets are plain: to probe from another network namespace, run kpdoctor inside
it (``ip netns exec NS kpdoctor scan --probe ...``), which is what the tests do.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.errors import InputError

DEFAULT_TIMEOUT = 1.0
DEFAULT_CONCURRENCY = 32
DEFAULT_LIMIT = 512
MAX_TIMEOUT = 30.0
MAX_CONCURRENCY = 256

OPEN, REFUSED, TIMEOUT, ERROR, SKIPPED = "open", "refused", "timeout", "error", "skipped"
RESULTS = (OPEN, REFUSED, TIMEOUT, ERROR, SKIPPED)


@dataclass(frozen=True)
class ProbeOptions:
    timeout: float = DEFAULT_TIMEOUT  # seconds per connect
    concurrency: int = DEFAULT_CONCURRENCY
    limit: int = DEFAULT_LIMIT  # at most this many TCP connects in one run

    def validated(self) -> ProbeOptions:
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise InputError(f"--probe-timeout {self.timeout:g}: must be > 0 and <= {MAX_TIMEOUT:g} seconds")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InputError(f"--probe-concurrency {self.concurrency}: must be between 1 and {MAX_CONCURRENCY}")
        if self.limit < 0:
            raise InputError(f"--probe-limit {self.limit}: must be >= 0")
        return self


@dataclass(frozen=True)
class ProbeTarget:
    node: str
    address: str
    port: int
    protocol: str  # TCP | UDP | SCTP
    service: str  # ServicePortName "ns/name[:port]"
    kind: str = "node-port"


@dataclass
class ProbeRun:
    """Results in the shape KP-NODEPORT-FIREWALL reads (`ctx.options["probe"]`), plus what was not probed."""

    results: list[dict[str, Any]] = field(default_factory=list)
    over_limit: int = 0  # TCP targets left out by the cap
    no_address: list[str] = field(default_factory=list)  # selected nodes with no IPv4 InternalIP
    duration: float = 0.0

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(RESULTS, 0)
        for r in self.results:
            out[r["result"]] = out.get(r["result"], 0) + 1
        return out

    def summary(self) -> str:
        """One line for stderr: what was probed and what came back."""
        counts = self.counts()
        nodes = len({r["node"] for r in self.results if r["result"] != SKIPPED})
        probed = sum(v for k, v in counts.items() if k != SKIPPED)
        text = (f"probed {probed} NodePort(s) on {nodes} node(s) in {self.duration:.1f} s: "
                + ", ".join(f"{counts[k]} {k}" for k in (OPEN, REFUSED, TIMEOUT, ERROR)))
        if counts[SKIPPED]:
            text += f"; {counts[SKIPPED]} UDP/SCTP not probed"
        if self.over_limit:
            text += f"; {self.over_limit} left out by --probe-limit"
        if self.no_address:
            text += f"; no IPv4 InternalIP for {', '.join(self.no_address[:5])}{' ...' if len(self.no_address) > 5 else ''}"
        return text


def _ipv4_internal_ip(cluster: Any, node: str) -> str:
    api_node = cluster.node_by_name.get(node)
    for addr in api_node.internal_ips if api_node is not None else ():
        try:
            if ipaddress.ip_address(addr).version == 4:
                return str(addr)
        except ValueError:
            continue
    return ""


def node_ports(cluster: Any) -> list[tuple[int, str, str]]:
    """(nodePort, protocol, ServicePortName) of every Service port that has a NodePort, by port."""
    from kpdoctor.addresses import IPV4
    from kpdoctor.proxier.serviceport import all_service_ports

    seen: dict[tuple[int, str], str] = {}
    for info in all_service_ports(cluster, IPV4):
        if info.node_port and (info.node_port, info.protocol) not in seen:
            seen[(info.node_port, info.protocol)] = info.service_port_name
    return sorted((port, proto, svc) for (port, proto), svc in seen.items())


def plan(cluster: Any, nodes: Sequence[str], options: ProbeOptions) -> tuple[list[ProbeTarget], ProbeRun]:
    """The TCP targets to connect to (capped, port by port across nodes) and a run holding the rest."""
    run = ProbeRun()
    addresses: list[tuple[str, str]] = []
    for name in nodes:
        address = _ipv4_internal_ip(cluster, name)
        if address:
            addresses.append((name, address))
        else:
            run.no_address.append(name)
    tcp: list[ProbeTarget] = []
    for port, proto, svc in node_ports(cluster):
        for name, address in addresses:
            target = ProbeTarget(name, address, port, proto, svc)
            if proto == "TCP":
                tcp.append(target)
            else:
                run.results.append(_result(target, SKIPPED, f"{proto} is not probed (a {proto} probe cannot tell "
                                                            "open from filtered without an application answer)", None))
    run.over_limit = max(0, len(tcp) - options.limit)
    return tcp[: options.limit], run


def _result(target: ProbeTarget, result: str, detail: str, elapsed: float | None) -> dict[str, Any]:
    return {
        "node": target.node, "address": target.address, "port": target.port, "protocol": target.protocol,
        "kind": target.kind, "service": target.service, "result": result, "detail": detail,
        "elapsed": None if elapsed is None else round(elapsed, 4),
    }  # fmt: skip


def connect(address: str, port: int, timeout: float) -> tuple[str, str, float]:
    """One TCP connect: (result, detail, seconds)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    started = time.monotonic()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
        result, detail = OPEN, "handshake completed (closed at once, no data sent)"
    except TimeoutError:
        result, detail = TIMEOUT, f"no answer within {timeout:g} s (the SYN was dropped)"
    except ConnectionRefusedError:
        result, detail = REFUSED, "connection refused (RST or ICMP port unreachable)"
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "error")
        result, detail = ERROR, f"{name}: {exc.strerror or exc}"
    finally:
        sock.close()
    return result, detail, time.monotonic() - started


def run_targets(targets: Iterable[ProbeTarget], options: ProbeOptions) -> list[dict[str, Any]]:
    """Connect to every target (bounded pool), results in target order."""
    items = list(targets)
    if not items:
        return []

    def one(target: ProbeTarget) -> dict[str, Any]:
        result, detail, elapsed = connect(target.address, target.port, options.timeout)
        return _result(target, result, detail, elapsed)

    with ThreadPoolExecutor(max_workers=min(options.concurrency, len(items)),
                            thread_name_prefix="kpd-probe") as pool:
        return list(pool.map(one, items))


def probe_node_ports(cluster: Any, nodes: Sequence[str], options: ProbeOptions | None = None) -> ProbeRun:
    """Probe the cluster's NodePorts on `nodes`' InternalIPs from here."""
    opts = (options or ProbeOptions()).validated()
    started = time.monotonic()
    targets, run = plan(cluster, nodes, opts)
    run.results = run_targets(targets, opts) + run.results
    run.duration = time.monotonic() - started
    return run
