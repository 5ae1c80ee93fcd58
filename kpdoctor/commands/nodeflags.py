"""From command-line flags to what reaches nodes and the cluster: CollectOptions, the kube-exec API client,
the cluster source. Shared by `collect`, `node`, `scan` and `why`, which import it (it imports none of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpdoctor.commands.optgroups import ApiFlags, SshFlags
from kpdoctor.commands.options import DEFAULT_TIMEOUT

TRANSPORT_HELP = "How to reach the node: local | ssh | kube-exec | pod | bundle."
NODE_TRANSPORTS = ("ssh", "kube-exec", "pod", "local")  # the transports `scan`/`why` collect nodes through


@dataclass
class NodeFlags:
    transport: str | None
    address: str | None = None
    ssh: SshFlags = field(default_factory=SshFlags)
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = 32


def options_from(flags: NodeFlags, *, transport: str, bundle: str | None, kube_api: Any = None) -> Any:
    from kpdoctor.errors import InputError
    from kpdoctor.node.collect import TRANSPORTS, CollectOptions
    from kpdoctor.node.ssh import SshOptions

    if transport not in TRANSPORTS:
        raise InputError(f"--transport {transport!r}: choose from {', '.join(TRANSPORTS)}")
    if flags.timeout <= 0:
        raise InputError("--timeout must be positive (seconds per node)")
    if flags.concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    s = flags.ssh
    if s.port is not None and not 0 < s.port < 65536:
        raise InputError(f"--ssh-port {s.port}: not a TCP port")
    for key in s.key:
        if not Path(key).expanduser().is_file():
            raise InputError("no such key file", where=f"--ssh-key {key}")
    ssh = SshOptions(
        user=s.user,
        key_files=tuple(str(Path(k).expanduser()) for k in s.key),
        port=s.port,
        config_path=s.config,
        jump_host=s.jump_host,
        known_hosts=str(Path(s.known_hosts).expanduser()) if s.known_hosts else None,
        accept_new_host_keys=s.accept_new_host_keys,
        connect_timeout=min(15.0, flags.timeout),
    )
    return CollectOptions(
        transport=transport, address=flags.address, ssh=ssh, timeout=flags.timeout,
        concurrency=flags.concurrency, bundle=bundle, kube_api=kube_api,
    )  # fmt: skip


def kube_exec_api(transport: str | None, api: ApiFlags) -> Any:
    """The CoreV1Api that `--transport kube-exec` and `--transport pod` collect through; None for the others."""
    if transport not in ("kube-exec", "pod"):
        return None
    from kubernetes import client

    from kpdoctor.cluster.live import api_client

    return client.CoreV1Api(api_client(api.kubeconfig, api.context))


def node_collect_options(flags: NodeFlags, api: ApiFlags, *, collector_image: str | None = None) -> Any:
    """`scan`/`why`: CollectOptions when --transport reaches nodes itself (ssh, kube-exec, pod, local), else None.

    For `pod`, collector pods of earlier runs past their deadline are deleted first (kpdoctor.node.podcollect)."""
    if flags.transport not in NODE_TRANSPORTS:
        return None
    kube_api = kube_exec_api(flags.transport, api)
    options = options_from(flags, transport=flags.transport, bundle=None, kube_api=kube_api)
    if flags.transport == "pod":
        from kpdoctor.node.podcollect import prepare

        options = prepare(options, collector_image)
    return options


def load_cluster(*, snapshot: str | None, bundle: str | None, api: ApiFlags, live: bool) -> tuple[Any, Any]:
    """(ClusterState or None, LiveResult or None) from --snapshot, a bundle's cluster/, or the live API."""
    if snapshot:
        from kpdoctor.cluster.snapshot import load_snapshot

        return load_snapshot(snapshot), None
    if bundle:
        from kpdoctor.node.bundle import read_bundle

        opened = read_bundle(bundle)
        return (opened.cluster_state() if opened.has_cluster() else None), None
    if live:
        from kpdoctor.cluster.live import load_live

        result = load_live(api.kubeconfig, api.context)
        return result.state, result
    return None, None
