"""The entry points other commands call: `collect_node` for one node, `collect_nodes` for many.

They pick the transport, derive the plan from the cluster (Service IPs,
kube-proxy addresses), enforce the node deadline and turn every failure into a
NodeState with `error` set: callers (scan, gate) never see a node-level
exception, only facts and errors to report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from kpdoctor.errors import InputError
from kpdoctor.node.collectors import CollectPlan, plan_for
from kpdoctor.node.fanout import Reporter, fan_out
from kpdoctor.node.gather import Budget, Gatherer
from kpdoctor.node.ssh import SshOptions
from kpdoctor.node.state import NodeState
from kpdoctor.node.transport import CancelToken, Transport, TransportError

TRANSPORTS = ("local", "ssh", "kube-exec", "pod", "bundle")


@dataclass(frozen=True)
class CollectOptions:
    transport: str = "ssh"
    address: str | None = None  # overrides the Node's InternalIP (single node only)
    ssh: SshOptions = field(default_factory=SshOptions)
    timeout: float = 120.0  # per node, connect included
    concurrency: int = 32
    workers_per_node: int = 4
    bundle: str | None = None  # path, for transport "bundle"
    kube_api: Any = None  # a kubernetes CoreV1Api (kube-exec)
    use_iptc: bool = True  # local: read legacy tables with python-iptables when iptables-legacy-save is absent
    collector_image: str | None = None  # pod: the collector pod's image (default: the node's kube-proxy image)


def node_address(cluster: Any, name: str) -> str:
    node = cluster.node_by_name.get(name) if cluster is not None else None
    if node is None:
        return ""
    return node.address_of("InternalIP") or node.address_of("ExternalIP") or ""


def make_transport(name: str, cluster: Any, options: CollectOptions) -> Transport:
    if options.transport == "local":
        from kpdoctor.node.local import LocalTransport

        return LocalTransport()
    if options.transport == "ssh":
        from kpdoctor.node.ssh import SshTransport

        return SshTransport(name, options.address or node_address(cluster, name), options.ssh)
    if options.transport == "kube-exec":
        from kpdoctor.node.kube_exec import KubeExecTransport

        return KubeExecTransport(name, api=options.kube_api, cluster=cluster)
    if options.transport == "pod":
        from kpdoctor.node.podcollect import PodTransport

        return PodTransport(name, api=options.kube_api, cluster=cluster, image=options.collector_image,
                            lifetime_s=int(options.timeout))  # fmt: skip
    raise InputError(f"unknown transport {options.transport!r} (choose from {', '.join(TRANSPORTS)})")


def _legacy_reader(options: CollectOptions) -> Any:
    if options.transport != "local" or not options.use_iptc:
        return None
    from kpdoctor.node import iptc_reader

    return iptc_reader.dump_legacy_tables if iptc_reader.available() else None


def collect_with(
    name: str,
    transport: Transport,
    *,
    plan: CollectPlan,
    timeout: float = 120.0,
    cancel: CancelToken | None = None,
    workers: int = 4,
    legacy_reader: Any = None,
) -> NodeState:
    """Collect one node over an already-built transport (tests and benches inject transports here)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    deadline = time.monotonic() + timeout
    if cancel is not None:
        cancel.on_cancel(transport.close)
    try:
        transport.connect(timeout)
    except TransportError as exc:
        transport.close()
        return NodeState(name=name, transport=transport.name, address=transport.address, error=str(exc),
                         collected_at=started)  # fmt: skip
    try:
        facts = Gatherer(transport, plan, Budget(deadline, cancel), workers=workers, legacy_reader=legacy_reader).run()
    except Exception as exc:  # never a traceback for one node: report it as that node's error
        transport.close()
        return NodeState(name=name, transport=transport.name, address=transport.address,
                         error=f"internal error: {type(exc).__name__}: {exc}", collected_at=started)  # fmt: skip
    transport.close()
    error = "interrupted (Ctrl-C): partial facts" if cancel is not None and cancel.cancelled else ""
    return NodeState(
        name=name,
        transport=transport.name,
        facts=MappingProxyType(facts),
        address=transport.address,
        error=error,
        collected_at=started,
    )


def collect_node(
    name: str,
    *,
    cluster: Any = None,
    options: CollectOptions | None = None,
    cancel: CancelToken | None = None,
) -> NodeState:
    """One node's NodeState over the chosen transport; errors are in `.error`, never raised per node."""
    options = options or CollectOptions()
    if options.transport == "bundle":
        from kpdoctor.node.bundle import read_bundle

        if not options.bundle:
            raise InputError("--transport bundle needs --bundle PATH")
        return read_bundle(options.bundle).node_state(name)
    transport = make_transport(name, cluster, options)
    plan = plan_for(cluster, name)
    address = node_address(cluster, name)
    if address:
        plan = CollectPlan(plan.service_ips, plan.http, plan.health_check_ports, {**plan.extra, "node_ip": address})
    return collect_with(
        name, transport, plan=plan, timeout=options.timeout, cancel=cancel,
        workers=options.workers_per_node, legacy_reader=_legacy_reader(options),
    )  # fmt: skip


def collect_nodes(
    names: Sequence[str],
    *,
    cluster: Any = None,
    options: CollectOptions | None = None,
    reporter: Reporter | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, NodeState]:
    """Many nodes concurrently (bounded by options.concurrency); raises fanout.Interrupted on Ctrl-C."""
    options = options or CollectOptions()
    if options.transport == "bundle":
        from kpdoctor.node.bundle import read_bundle

        bundle = read_bundle(options.bundle or "")
        return {n: bundle.node_state(n) for n in names}
    if options.address and len(names) > 1:
        raise InputError("--address names one node; it cannot be used with several nodes")
    return fan_out(
        names,
        lambda n, c: collect_node(n, cluster=cluster, options=options, cancel=c),
        concurrency=options.concurrency,
        node_timeout=options.timeout,
        reporter=reporter,
        cancel=cancel,
    )
