"""Pods behind a Service: which match its selector, why one is not ready, which label sets come closest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher

from kpdoctor.cluster.model import ContainerPort, Pod

# Labels that controllers add to every pod: never what a selector should be compared with.
_NOISE_LABELS = frozenset({"pod-template-hash", "controller-revision-hash", "pod-template-generation",
                           "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index"})


def selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service selector (equality on every key) against a pod's labels; an empty selector matches nothing."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_serving(pod: Pod) -> bool:
    """Ready and not terminating: what the EndpointSlice controller publishes as ready."""
    return pod.ready and not pod.deleting and bool(pod.pod_ip)


def not_ready_reason(pod: Pod) -> str:
    """Why a pod is not a ready endpoint, from its status as the kubelet and the scheduler wrote it."""
    if pod.deleting:
        return "terminating (deletionTimestamp is set): removed from the ready endpoints"
    if pod.phase in ("Succeeded", "Failed"):
        return f"phase {pod.phase}: its containers have exited"
    scheduled = pod.condition("PodScheduled")
    if pod.phase == "Pending" and scheduled is not None and scheduled.status == "False":
        detail = f": {scheduled.message}" if scheduled.message else ""
        return f"Pending, not scheduled ({scheduled.reason or 'unschedulable'}){detail}"
    for cs in pod.container_statuses:
        if cs.state == "waiting" and cs.reason:
            last = ""
            if cs.last_exit_code is not None:
                last = f", last exit code {cs.last_exit_code}" + (f" ({cs.last_reason})" if cs.last_reason else "")
            return f"container {cs.name} is {cs.reason} (restarted {cs.restart_count} times{last})"
    running_not_ready = [cs.name for cs in pod.container_statuses if cs.state == "running" and not cs.ready]
    ready_cond = pod.condition("Ready")
    cond_text = ""
    if ready_cond is not None and ready_cond.status != "True":
        cond_text = f" (Ready={ready_cond.status}" + (f", {ready_cond.reason}" if ready_cond.reason else "") + \
            (f": {ready_cond.message}" if ready_cond.message else "") + ")"
    if running_not_ready:
        return (f"running but not ready: the readiness probe of container {', '.join(running_not_ready)} "
                f"is failing{cond_text}")
    if pod.phase == "Pending":
        return f"Pending{cond_text or ' (containers not started)'}"
    if not pod.pod_ip:
        return f"phase {pod.phase or 'unknown'}, no pod IP yet"
    return f"not ready{cond_text}" if cond_text else f"not ready (phase {pod.phase or 'unknown'})"


def pod_line(pod: Pod) -> str:
    where = f" on {pod.node_name}" if pod.node_name else " (not scheduled)"
    ip = f" {pod.pod_ip}" if pod.pod_ip else ""
    state = "ready" if is_serving(pod) else not_ready_reason(pod)
    return f"pod {pod.key}{ip}{where}: {state}"


@dataclass(frozen=True)
class NearLabels:
    labels: tuple[tuple[str, str], ...]  # the pods' labels (controller noise removed)
    pods: tuple[str, ...]
    score: float
    differences: tuple[str, ...]  # "selector app=payment vs pods app=payments"


def _clean(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in _NOISE_LABELS))


def nearest_label_sets(selector: Mapping[str, str], pods: Iterable[Pod], limit: int = 3) -> list[NearLabels]:
    """The pods' distinct label sets closest to `selector` (per selector pair: 1 when equal, else the best
    string similarity of `k=v` with one of the pod's pairs), with what differs."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for pod in pods:
        groups.setdefault(_clean(pod.labels), []).append(pod.name)
    ranked: list[NearLabels] = []
    for labels, names in groups.items():
        if not labels:
            continue
        have = dict(labels)
        score = 0.0
        diffs: list[str] = []
        for k, v in sorted(selector.items()):
            if have.get(k) == v:
                score += 1.0
                continue
            want = f"{k}={v}"
            best, ratio = max(((f"{k2}={v2}", SequenceMatcher(None, want, f"{k2}={v2}").ratio())
                               for k2, v2 in labels), key=lambda t: t[1])
            score += ratio
            diffs.append(f"selector {want} vs pods {best}" if ratio >= 0.5 else f"selector {want}: no pod label like it")
        ranked.append(NearLabels(labels, tuple(sorted(names)), score / max(len(selector), 1), tuple(diffs)))
    ranked.sort(key=lambda n: (-n.score, -len(n.pods), n.labels))
    return ranked[:limit]


def container_ports(pods: Iterable[Pod]) -> list[ContainerPort]:
    seen: dict[tuple[int, str, str], ContainerPort] = {}
    for pod in pods:
        for c in pod.containers:
            for p in c.ports:
                seen.setdefault((p.container_port, p.name, p.protocol), p)
    return sorted(seen.values(), key=lambda p: (p.container_port, p.name, p.protocol))


def port_text(p: ContainerPort) -> str:
    return f"{p.name + ':' if p.name else ''}{p.container_port}/{p.protocol}"
