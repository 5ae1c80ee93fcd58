"""ClusterState: everything read from the API, indexed the way kube-proxy and the checks look it up."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from kpdoctor.cluster.config import (
    KubeProxyConfig,
    apply_flags,
    config_path_from_args,
    parse_config_text,
)
from kpdoctor.cluster.model import (
    ConfigMap,
    Container,
    DaemonSet,
    EndpointSlice,
    Node,
    Pod,
    ResourceGap,
    Service,
)

KUBE_SYSTEM = "kube-system"
DEFAULT_KUBE_PROXY_CONFIGMAP = "kube-proxy"
DEFAULT_CONFIG_KEY = "config.conf"
_VERSION_TAG = re.compile(r":v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class NodeProxyConfig:
    """A node's kube-proxy configuration and how it was found (the evidence a check cites)."""

    config: KubeProxyConfig
    origin: str  # e.g. "pod kube-system/kube-proxy-abcde -> DaemonSet kube-proxy -> ConfigMap kube-proxy[config.conf]"
    daemonset: DaemonSet | None = None
    pod: Pod | None = None
    configmap: ConfigMap | None = None
    config_key: str = ""  # the ConfigMap's data key the configuration was read from (e.g. config.conf)


@dataclass(frozen=True)
class ClusterState:
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    nodes: tuple[Node, ...] = ()
    configmaps: tuple[ConfigMap, ...] = ()
    daemonsets: tuple[DaemonSet, ...] = ()
    pods: tuple[Pod, ...] = ()
    # pod key ("ns/name") -> last lines of its log
    logs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # kinds that could not be read (RBAC 403, not collected)
    gaps: tuple[ResourceGap, ...] = ()
    # networking.k8s.io ServiceCIDR ranges (nftables mode drops traffic to unallocated ClusterIPs in them)
    service_cidrs: tuple[str, ...] = ()
    source: str = ""
    # Pods outside kube-system, loaded only for the namespaces a command asked for (`kpdoctor why`);
    # `workload_namespaces` says which were asked, so "no pods" is told apart from "not loaded".
    workload_pods: tuple[Pod, ...] = ()
    workload_namespaces: tuple[str, ...] = ()

    # ---- indexes --------------------------------------------------------------------
    @cached_property
    def service_by_key(self) -> Mapping[str, Service]:
        return MappingProxyType({s.key: s for s in self.services})

    @cached_property
    def slices_by_service(self) -> Mapping[str, tuple[EndpointSlice, ...]]:
        grouped: dict[str, list[EndpointSlice]] = defaultdict(list)
        for eps in self.endpoint_slices:
            if eps.service_name:
                grouped[eps.service_key].append(eps)
        return MappingProxyType({k: tuple(v) for k, v in grouped.items()})

    @cached_property
    def node_by_name(self) -> Mapping[str, Node]:
        return MappingProxyType({n.name: n for n in self.nodes})

    def configmap(self, namespace: str, name: str) -> ConfigMap | None:
        for cm in self.configmaps:
            if cm.namespace == namespace and cm.name == name:
                return cm
        return None

    def gap(self, kind: str) -> ResourceGap | None:
        return next((g for g in self.gaps if g.kind == kind), None)

    # ---- kube-proxy and Cilium workloads ------------------------------------------
    @cached_property
    def kube_proxy_daemonsets(self) -> tuple[DaemonSet, ...]:
        return tuple(ds for ds in self.daemonsets if _is_kube_proxy_workload(ds.name, ds.labels, ds.containers))

    @cached_property
    def kube_proxy_pods(self) -> tuple[Pod, ...]:
        return self._pods_of(self.kube_proxy_daemonsets,
                             lambda p: _is_kube_proxy_workload(p.name, p.labels, p.containers))

    def kube_proxy_pod_on(self, node_name: str) -> Pod | None:
        """The running (or most recent) kube-proxy pod on a node; Running pods win."""
        candidates = [p for p in self.kube_proxy_pods if p.node_name == node_name]
        candidates.sort(key=lambda p: (p.phase != "Running", p.name))
        return candidates[0] if candidates else None

    @cached_property
    def cilium_config(self) -> ConfigMap | None:
        return self.configmap(KUBE_SYSTEM, "cilium-config")

    @cached_property
    def cilium_daemonsets(self) -> tuple[DaemonSet, ...]:
        return tuple(ds for ds in self.daemonsets if ds.name == "cilium" or ds.labels.get("k8s-app") == "cilium")

    @cached_property
    def cilium_pods(self) -> tuple[Pod, ...]:
        return self._pods_of(self.cilium_daemonsets, lambda p: p.labels.get("k8s-app") == "cilium")

    def _pods_of(self, daemonsets: tuple[DaemonSet, ...], also: Callable[[Pod], bool]) -> tuple[Pod, ...]:
        """The pods owned by one of `daemonsets`, or that `also` recognizes (a static pod, a renamed one)."""
        names = {(d.namespace, d.name) for d in daemonsets}
        return tuple(
            p for p in self.pods
            if (p.owner_kind == "DaemonSet" and (p.namespace, p.owner_name) in names) or also(p)
        )

    def kube_proxy_version(self) -> tuple[int, int] | None:
        """The (major, minor) of the kube-proxy image, from DaemonSets, pods, or Node nodeInfo."""
        images = [c.image for ds in self.kube_proxy_daemonsets for c in ds.containers]
        images += [c.image for p in self.kube_proxy_pods for c in p.containers]
        for image in images:
            match = _VERSION_TAG.search(image.rsplit("/", 1)[-1])
            if match:
                return int(match.group(1)), int(match.group(2))
        for node in self.nodes:
            match = _VERSION_TAG.search(":" + node.kube_proxy_version)
            if match:
                return int(match.group(1)), int(match.group(2))
        return None

    # ---- per-node kube-proxy configuration ------------------------------------------
    def kube_proxy_daemonset_for(self, node_name: str) -> DaemonSet | None:
        """The kube-proxy DaemonSet whose nodeSelector matches the node; of several, the one with the most
        specific selector (a per-pool `kube-proxy-mode: nftables` beside `kubernetes.io/os: linux`); None when
        none matches or the most specific ones tie (node affinity is not modelled)."""
        node = self.node_by_name.get(node_name)
        if node is None:
            return None
        matching = [d for d in self.kube_proxy_daemonsets
                    if all(node.labels.get(k) == v for k, v in d.node_selector.items())]
        matching.sort(key=lambda d: -len(d.node_selector))
        if not matching or (len(matching) > 1 and len(matching[1].node_selector) == len(matching[0].node_selector)):
            return None
        return matching[0]

    def proxy_config_for(self, node_name: str) -> NodeProxyConfig | None:
        """Follow pod -> owner DaemonSet -> mounted ConfigMap; else DaemonSet node selector; else the default.

        Clusters run several kube-proxy DaemonSets (per node pool or per mode), each
        with its own ConfigMap, so "the" kube-proxy ConfigMap is only a fallback.
        """
        pod = self.kube_proxy_pod_on(node_name)
        if pod is not None:
            ds = next(
                (d for d in self.kube_proxy_daemonsets if d.namespace == pod.namespace and d.name == pod.owner_name),
                None,
            )
            found = self._config_from_workload(
                pod.namespace, pod.configmap_volumes, pod.containers, f"pod {pod.key}", ds, pod
            )
            if found is not None:
                return found
        node = self.node_by_name.get(node_name)
        if node is not None and self.kube_proxy_daemonsets:
            ds = self.kube_proxy_daemonset_for(node_name)
            if ds is not None:
                found = self._config_from_workload(
                    ds.namespace, ds.configmap_volumes, ds.containers, f"DaemonSet {ds.key}", ds, None
                )
                if found is not None:
                    return found
        cm = self.configmap(KUBE_SYSTEM, DEFAULT_KUBE_PROXY_CONFIGMAP)
        if cm is not None and DEFAULT_CONFIG_KEY in cm.data:
            cfg = parse_config_text(
                cm.data[DEFAULT_CONFIG_KEY], source=f"ConfigMap {KUBE_SYSTEM}/{cm.name}[{DEFAULT_CONFIG_KEY}]",
                lenient=True,
            )
            return NodeProxyConfig(cfg, f"ConfigMap {KUBE_SYSTEM}/{cm.name}[{DEFAULT_CONFIG_KEY}]", configmap=cm,
                                   config_key=DEFAULT_CONFIG_KEY)
        return None

    def _config_from_workload(
        self,
        namespace: str,
        volumes: tuple[str, ...],
        containers: tuple[Container, ...],
        via: str,
        ds: DaemonSet | None,
        pod: Pod | None,
    ) -> NodeProxyConfig | None:
        # kube-proxy's precedence (cmd/kube-proxy/app/server.go, Options.Complete): with --config the file
        # replaces every value parsed from flags (only logging flags and --hostname-override survive), so flags
        # such as --proxy-mode beside --config are ignored; without --config the flags are the configuration.
        argv = kube_proxy_argv(containers)
        config_path = config_path_from_args(argv)
        shown = " ".join(a for a in argv if a.startswith("--") and not a.startswith("--kubeconfig"))[:200]
        if not config_path:
            if not argv or (ds is not None and pod is None and not any(a.startswith("--") for a in argv)):
                return None
            origin = f"{via} command-line flags ({shown or 'none: defaults'}; no --config)"
            return NodeProxyConfig(apply_flags(KubeProxyConfig(source=origin), argv), origin, ds, pod, None)
        key = config_path.rsplit("/", 1)[-1]
        for cm_name in volumes:
            cm = self.configmap(namespace, cm_name)
            if cm is None:
                continue
            chosen = key if key in cm.data else (DEFAULT_CONFIG_KEY if DEFAULT_CONFIG_KEY in cm.data else None)
            if chosen is None:
                continue
            origin = f"{via} -> " + (f"DaemonSet {ds.name} -> " if ds and pod else "") + f"ConfigMap {cm.name}[{chosen}]"
            cfg = parse_config_text(cm.data[chosen], source=f"ConfigMap {namespace}/{cm.name}[{chosen}]", lenient=True)
            if "lenient decoding" in cfg.source:
                origin += cfg.source[cfg.source.index(" (fields unknown"):]
            ignored = ignored_flags(cfg, argv)
            if ignored:
                origin += f" (ignored beside --config, as kube-proxy ignores them: {' '.join(ignored)})"
            return NodeProxyConfig(cfg, origin, ds, pod, cm, chosen)
        return None  # --config names a file that was not collected (a ConfigMap missing, or a file on the host)


def ignored_flags(config: KubeProxyConfig, argv: tuple[str, ...]) -> list[str]:
    """The flags that would change `config` if kube-proxy applied them (it does not, beside --config)."""
    out = []
    for arg in argv:
        if arg.startswith("--") and not arg.startswith(("--config", "--hostname-override", "--v=", "--kubeconfig")):
            name = arg.split("=", 1)[0]
            value = arg.split("=", 1)[1] if "=" in arg else ""
            if value and apply_flags(config, (arg,)) != config:
                out.append(f"{name}={value}")
    return out


def kube_proxy_argv(containers: tuple[Container, ...]) -> tuple[str, ...]:
    """The kube-proxy container's command line (a `sh -c "kube-proxy ..."` wrapper, as kops writes it, split)."""
    import shlex

    for container in containers:
        if "kube-proxy" in container.name or any("kube-proxy" in c for c in container.command):
            argv = container.command + container.args
            for i, arg in enumerate(argv[:-1]):
                if arg == "-c" and "kube-proxy" in argv[i + 1]:
                    try:
                        return tuple(shlex.split(argv[i + 1]))
                    except ValueError:
                        return tuple(argv[i + 1].split())
            return argv
    return ()


def _is_kube_proxy_workload(name: str, labels: Mapping[str, str], containers: tuple[Container, ...]) -> bool:
    if labels.get("k8s-app") == "kube-proxy" or labels.get("component") == "kube-proxy":
        return True
    if name.startswith("kube-proxy"):
        return True
    return any(c.name == "kube-proxy" for c in containers)
