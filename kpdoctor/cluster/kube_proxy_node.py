"""Facts about the kube-proxy of one node that the cluster objects tell: its effective proxier mode, its log.

Who runs kube-proxy on a node is decided in one place, `kpdoctor.service_proxy.decide`; this module
reads what follows from its configuration (`NodeProxyConfig`) and its Pod.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, TypeGuard, get_args

from kpdoctor.cluster.model import Pod
from kpdoctor.cluster.state import ClusterState, NodeProxyConfig

ProxyMode = Literal["iptables", "nftables", "ipvs"]
PROXY_MODES: tuple[ProxyMode, ...] = get_args(ProxyMode)
DEFAULT_MODE_VERSION_MAX = (1, 36)  # up to this version "" means iptables on Linux
KUBE_PROXY_LOG = "kube-proxy/log.txt"  # the node fact holding kube-proxy's log when the API had none
_USING = re.compile(r'"Using (\w+) Proxier"')


def is_proxy_mode(word: str | None) -> TypeGuard[ProxyMode]:
    """True when `word` is a mode kube-proxy (and the reference proxier) has on Linux; narrows it to ProxyMode."""
    return word in PROXY_MODES


def resolve_mode(config_mode: str, version: tuple[int, int] | None) -> tuple[str, str]:
    """(effective mode, explanation). `""` is iptables on Linux up to v1.36; later, confirm with /proxyMode.

    The mode is returned as configured (an unknown word stays what it is: checks report it)."""
    if config_mode:
        return config_mode, f'mode: "{config_mode}"'
    if version is None or version <= DEFAULT_MODE_VERSION_MAX:
        ver = f"v{version[0]}.{version[1]}" if version else "v1.36 (assumed)"
        return "iptables", f'mode: "" (the default, iptables on Linux for kube-proxy {ver})'
    return "iptables", (
        f'mode: "" (default; iptables up to v1.36 - kube-proxy v{version[0]}.{version[1]} may differ, '
        "confirm with /proxyMode)"
    )


class ConfiguredMode(NamedTuple):
    """The node's kube-proxy mode as its configuration sets it (unpacks as (mode, why, source))."""

    mode: str  # effective mode (a ProxyMode, or the unknown word the config holds)
    why: str  # how it was derived, e.g. 'mode: "" (the default, ...)'
    source: NodeProxyConfig  # where the config came from


def configured_mode(found: NodeProxyConfig | None, version: tuple[int, int] | None) -> ConfiguredMode | None:
    """The effective mode of a node's kube-proxy config (None without a config)."""
    if found is None:
        return None
    mode, why = resolve_mode(found.config.mode, version)
    return ConfiguredMode(mode, why, found)


def pod_log(cluster: ClusterState, pod: Pod | None) -> str | None:
    """The kube-proxy pod's log as the API gave it (cluster/logs), None without one."""
    if pod is None:
        return None
    return cluster.logs.get(pod.key)


def logged_mode(log: str | None) -> tuple[str, str] | None:
    """The last "Using X Proxier" line: (mode, line)."""
    if not log:
        return None
    found: tuple[str, str] | None = None
    for line in log.splitlines():
        match = _USING.search(line)
        if match:
            found = (match.group(1).lower(), line.strip())
    return found
