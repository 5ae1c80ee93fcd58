"""Turn Kubernetes API objects (dicts, as `kubectl get -o json` or the client serve them) into the model.

Both loaders (snapshot files and the live API) end here, so the two cannot
disagree about what a field means. Defaults follow the API server's: a missing
`ready` condition means ready, a missing `serving` means "same as ready".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kpdoctor.cluster.model import (
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    ConfigMap,
    Container,
    ContainerPort,
    ContainerStatus,
    DaemonSet,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    LoadBalancerIngress,
    Node,
    NodeAddress,
    Pod,
    PodCondition,
    Service,
    ServicePort,
)
from kpdoctor.errors import InputError


def _map(value: Any) -> Mapping[str, str]:
    if not value:
        return MappingProxyType({})
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _meta(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _protocol(value: Any) -> Any:
    proto = str(value or "TCP").upper()
    return proto if proto in ("TCP", "UDP", "SCTP") else "TCP"


def parse_service(obj: dict[str, Any]) -> Service:
    namespace, name = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = tuple(
        ServicePort(
            name=str(p.get("name") or ""),
            protocol=_protocol(p.get("protocol")),
            port=int(p.get("port") or 0),
            target_port=p.get("targetPort"),
            node_port=int(p.get("nodePort") or 0),
        )
        for p in spec.get("ports") or ()
    )
    ingress = tuple(
        LoadBalancerIngress(ip=str(i["ip"]), ip_mode=str(i.get("ipMode") or "VIP"))
        for i in (status.get("loadBalancer") or {}).get("ingress") or ()
        if i.get("ip")
    )
    affinity_cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    return Service(
        namespace=namespace,
        name=name,
        type=str(spec.get("type") or "ClusterIP"),
        cluster_ips=tuple(str(ip) for ip in cluster_ips),
        external_ips=tuple(str(ip) for ip in spec.get("externalIPs") or ()),
        load_balancer_ingress=ingress,
        load_balancer_source_ranges=tuple(str(r).strip() for r in spec.get("loadBalancerSourceRanges") or ()),
        ports=ports,
        health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
        session_affinity=str(spec.get("sessionAffinity") or "None"),
        session_affinity_timeout=int(affinity_cfg) if affinity_cfg is not None else 10800,
        external_traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
        internal_traffic_policy=str(spec.get("internalTrafficPolicy") or "Cluster"),
        traffic_distribution=spec.get("trafficDistribution"),
        ip_families=tuple(str(f) for f in spec.get("ipFamilies") or ()),
        labels=_map((obj.get("metadata") or {}).get("labels")),
        selector=_map(spec.get("selector")),
        external_name=str(spec.get("externalName") or ""),
    )


def _hint_names(hints: dict[str, Any] | None, key: str) -> tuple[str, ...] | None:
    if not hints or key not in hints or hints[key] is None:
        return None
    return tuple(str(h.get("name")) for h in hints[key])


def parse_endpoint(ep: dict[str, Any]) -> Endpoint:
    cond = ep.get("conditions") or {}
    ready = cond.get("ready")
    ready_b = True if ready is None else bool(ready)
    serving = cond.get("serving")
    hints = ep.get("hints")
    ref = ep.get("targetRef") or {}
    return Endpoint(
        addresses=tuple(str(a) for a in ep.get("addresses") or ()),
        ready=ready_b,
        serving=True if serving is None else bool(serving),
        terminating=bool(cond.get("terminating") or False),
        node_name=ep.get("nodeName"),
        zone=ep.get("zone"),
        hints_for_zones=_hint_names(hints, "forZones"),
        hints_for_nodes=_hint_names(hints, "forNodes"),
        target_pod=str(ref["name"]) if isinstance(ref, dict) and ref.get("kind") == "Pod" and ref.get("name") else None,
    )


def parse_endpointslice(obj: dict[str, Any], *, source: str = "") -> EndpointSlice:
    namespace, name = _meta(obj)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return EndpointSlice(
        namespace=namespace,
        name=name,
        service_name=str(labels.get(SERVICE_NAME_LABEL) or ""),
        address_type=str(obj.get("addressType") or "IPv4"),
        endpoints=tuple(parse_endpoint(ep) for ep in obj.get("endpoints") or ()),
        ports=tuple(
            EndpointPort(
                name=str(p.get("name") or ""),
                port=None if p.get("port") is None else int(p["port"]),
                protocol=_protocol(p.get("protocol")),
            )
            for p in obj.get("ports") or ()
        ),
        source=source,
        managed_by=str(labels.get(MANAGED_BY_LABEL) or ""),
    )


def parse_node(obj: dict[str, Any]) -> Node:
    _, name = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ready: bool | None = None
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
    info = status.get("nodeInfo") or {}
    pod_cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return Node(
        name=name,
        addresses=tuple(
            NodeAddress(str(a.get("type")), str(a.get("address"))) for a in status.get("addresses") or ()
        ),
        labels=_map((obj.get("metadata") or {}).get("labels")),
        pod_cidrs=tuple(str(c) for c in pod_cidrs),
        ready=ready,
        kernel_version=str(info.get("kernelVersion") or ""),
        kube_proxy_version=str(info.get("kubeProxyVersion") or ""),
        os_image=str(info.get("osImage") or ""),
        kubelet_version=str(info.get("kubeletVersion") or ""),
        annotations=_map((obj.get("metadata") or {}).get("annotations")),
    )


def parse_configmap(obj: dict[str, Any], *, source: str = "") -> ConfigMap:
    namespace, name = _meta(obj)
    return ConfigMap(namespace=namespace, name=name, data=_map(obj.get("data")), source=source)


def _containers(pod_spec: dict[str, Any]) -> tuple[Container, ...]:
    return tuple(
        Container(
            name=str(c.get("name") or ""),
            image=str(c.get("image") or ""),
            command=tuple(str(x) for x in c.get("command") or ()),
            args=tuple(str(x) for x in c.get("args") or ()),
            ports=tuple(
                ContainerPort(int(p["containerPort"]), str(p.get("name") or ""), _protocol(p.get("protocol")))
                for p in c.get("ports") or ()
                if isinstance(p, dict) and p.get("containerPort") is not None
            ),
            env=_map({e.get("name"): e.get("value") for e in c.get("env") or ()
                      if isinstance(e, dict) and e.get("name") and isinstance(e.get("value"), str)}),
        )
        for c in pod_spec.get("containers") or ()
    )


def _configmap_volumes(pod_spec: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(v["configMap"]["name"])
        for v in pod_spec.get("volumes") or ()
        if isinstance(v.get("configMap"), dict) and v["configMap"].get("name")
    )


def parse_daemonset(obj: dict[str, Any]) -> DaemonSet:
    namespace, name = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    return DaemonSet(
        namespace=namespace,
        name=name,
        labels=_map((obj.get("metadata") or {}).get("labels")),
        selector=_map((spec.get("selector") or {}).get("matchLabels")),
        containers=_containers(pod_spec),
        configmap_volumes=_configmap_volumes(pod_spec),
        node_selector=_map(pod_spec.get("nodeSelector")),
        desired=int(status.get("desiredNumberScheduled") or 0),
        current=int(status.get("currentNumberScheduled") or 0),
        ready=int(status.get("numberReady") or 0),
        available=int(status.get("numberAvailable") or 0),
        updated=int(status.get("updatedNumberScheduled") or 0),
        misscheduled=int(status.get("numberMisscheduled") or 0),
    )


def _container_status(cs: dict[str, Any]) -> ContainerStatus:
    state_obj = cs.get("state") or {}
    state = next(iter(state_obj), "")
    reason = str((state_obj.get(state) or {}).get("reason") or "")
    last = (cs.get("lastState") or {}).get("terminated") or {}
    return ContainerStatus(
        name=str(cs.get("name") or ""),
        ready=bool(cs.get("ready")),
        restart_count=int(cs.get("restartCount") or 0),
        state=state,
        reason=reason,
        last_exit_code=None if last.get("exitCode") is None else int(last["exitCode"]),
        last_reason=str(last.get("reason") or ""),
    )


def parse_pod(obj: dict[str, Any]) -> Pod:
    namespace, name = _meta(obj)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    owner = next(iter(meta.get("ownerReferences") or ()), None) or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    return Pod(
        namespace=namespace,
        name=name,
        labels=_map(meta.get("labels")),
        node_name=spec.get("nodeName"),
        phase=str(status.get("phase") or ""),
        ready=ready,
        pod_ip=status.get("podIP"),
        host_network=bool(spec.get("hostNetwork")),
        owner_kind=owner.get("kind"),
        owner_name=owner.get("name"),
        containers=_containers(spec),
        configmap_volumes=_configmap_volumes(spec),
        container_statuses=tuple(_container_status(cs) for cs in status.get("containerStatuses") or ()),
        conditions=tuple(
            PodCondition(str(c.get("type") or ""), str(c.get("status") or ""), str(c.get("reason") or ""),
                         str(c.get("message") or "")[:500])
            for c in status.get("conditions") or ()
            if isinstance(c, dict)
        ),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def require_dict(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON/YAML object, found {type(obj).__name__}", where=where)
    return obj
