"""Node-only scans: a bundle (or `kpdoctor node`) with a node's facts and no cluster objects.

`kpdoctor collect --offline` on a machine without cluster access writes `nodes/<name>/` and no
`cluster/`. Such a scan has no Services, EndpointSlices, Nodes or kube-proxy workloads: the cluster is
an empty ClusterState whose every kind is a gap with NODE_ONLY_REASON, so a read of it is "not
evaluated", never "there are none". Checks that can judge a node from its own facts declare
`node_facts_suffice = True`; they take kube-proxy's configuration from what the node's kube-proxy
serves (`/configz`, else `/proxyMode`), never from a guess. The others are reported as not evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.kube_proxy_node import PROXY_MODES
from kpdoctor.cluster.model import ResourceGap
from kpdoctor.cluster.state import ClusterState, NodeProxyConfig

NODE_ONLY_REASON = "not in this scan's input: node facts only, collected without cluster access (no cluster/)"
NODE_ONLY_KINDS = ("Service", "EndpointSlice", "Node", "ConfigMap", "DaemonSet", "Pod", "log")


def node_only_cluster(source: str) -> ClusterState:
    """The cluster of a node-only scan: nothing known, every kind a gap."""
    return ClusterState(gaps=tuple(ResourceGap(k, NODE_ONLY_REASON) for k in NODE_ONLY_KINDS), source=source)


def cluster_missing_error(manifest: Mapping[str, Any] | None, archive_error: str) -> str | None:
    """Why a bundle without cluster/ is NOT a node-only bundle (an error), or None when it is one.

    `collect --offline` writes a manifest whose cluster part lists no files. A manifest listing cluster files
    that are absent, or an archive cut short before any cluster file, lost its cluster/: scanning its nodes
    alone would silently drop every cluster check, so it is refused."""
    cluster = manifest.get("cluster") if manifest else None
    listed = cluster.get("files") if isinstance(cluster, Mapping) else None
    if listed:
        return "bundle has no cluster/ snapshot, but its manifest.json lists cluster files (removed or cut off)"
    if archive_error:
        return f"bundle has no cluster/ snapshot, and the archive ends early ({archive_error}): it may have been cut"
    return None


def is_node_only(cluster: ClusterState) -> bool:
    return any(g.reason == NODE_ONLY_REASON for g in cluster.gaps)


def config_from_node(node_name: str, configz: KubeProxyConfig | None, proxy_mode: str | None) -> NodeProxyConfig | None:
    """kube-proxy's configuration as the node's running kube-proxy reports it; None when it did not answer.

    /configz is the configuration the process runs with; /proxyMode alone gives the mode with every other
    field at its default (said in the origin, which every finding quotes as evidence)."""
    if configz is not None:
        return NodeProxyConfig(configz, f"kube-proxy/configz.json on {node_name} (no cluster/ in the input)")
    mode = (proxy_mode or "").strip()
    if mode in PROXY_MODES:
        return NodeProxyConfig(KubeProxyConfig(mode=mode),
                               f"kube-proxy/proxyMode.txt on {node_name}: {mode} (other settings: defaults; "
                               "no cluster/ in the input)")
    return None
