"""API-level causes of an unreachable Service, each with its evidence: pure, over a loaded ClusterState.

The order of `api_causes` is the order a user should look: does the Service exist and is it served by
kube-proxy at all, does its selector match pods, are they ready, do the ports line up, do the
EndpointSlices follow the pods, and do traffic policies / topology / affinity leave this client out.
"""

from __future__ import annotations

import shlex
from difflib import get_close_matches

from kpdoctor.cluster.model import (
    ENDPOINTSLICE_CONTROLLER,
    SERVICE_PROXY_NAME_LABEL,
    WORKLOAD_PODS_GAP,
    Pod,
    Service,
    ServicePort,
)
from kpdoctor.cluster.state import ClusterState
from kpdoctor.why.model import Cause, Client, Severity, Target
from kpdoctor.why.pods import (
    container_ports,
    is_serving,
    matches,
    nearest_label_sets,
    not_ready_reason,
    pod_line,
    port_text,
    selector_text,
)

_MAX_LINES = 8


def find_service(cluster: ClusterState, target: Target) -> Service | None:
    return cluster.service_by_key.get(target.key)


def service_ports(service: Service, target: Target) -> list[ServicePort]:
    """The Service ports the user asked about (all when no :PORT); [] when :PORT names none."""
    if target.port is None:
        return list(service.ports)
    return [p for p in service.ports if p.name == target.port or str(p.port) == target.port]


def _kubectl_ns(target: Target) -> str:
    return f"kubectl -n {target.namespace}"


def api_causes(cluster: ClusterState, target: Target, client: Client) -> tuple[list[Cause], list[str]]:
    """(causes, facts not evaluated). Empty causes: the API side of the Service is healthy."""
    service = find_service(cluster, target)
    if service is None:
        return [_not_found(cluster, target)], []
    kind = _not_proxied(service)
    if kind is not None and kind.code != "headless":  # ExternalName has no clusterIP either: not "headless"
        return [kind], []
    causes: list[Cause] = [kind] if kind is not None else []
    ports = service_ports(service, target)
    if not ports and target.port is not None:
        have = ", ".join(f"{p.name or '(unnamed)'}={p.port}/{p.protocol}" for p in service.ports) or "none"
        return [Cause("port-not-found", "blocking", f"Service {target.key} has no port {target.port!r}",
                      fix="Use one of the Service's ports.", evidence=(f"Service ports: {have}",))], []
    not_evaluated: list[str] = []
    if service.selector:
        causes += _selector_causes(cluster, service, target, ports, not_evaluated)
        causes += _foreign_slices(cluster, service)
    else:
        causes += _selectorless_causes(cluster, service, target)
    causes += _policy_causes(cluster, service, target, client)
    return causes, not_evaluated


# ---- the Service itself -----------------------------------------------------------------------------
def _not_found(cluster: ClusterState, target: Target) -> Cause:
    names = sorted(s.name for s in cluster.services if s.namespace == target.namespace)
    near = get_close_matches(target.name, names, n=3, cutoff=0.6)
    others = sorted({s.namespace for s in cluster.services if s.name == target.name})
    evidence = [f"Services in namespace {target.namespace}: {', '.join(names[:10]) or 'none'}"]
    if others:
        evidence.append(f"a Service named {target.name} exists in namespace(s) {', '.join(others)}")
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    return Cause("service-not-found", "blocking", f"Service {target.key} does not exist{hint}",
                 fix="Check the Service name and namespace the client uses (DNS: NAME.NAMESPACE.svc).",
                 evidence=tuple(evidence), commands=(f"{_kubectl_ns(target)} get services",))


def _not_proxied(service: Service) -> Cause | None:
    if service.type == "ExternalName":
        return Cause("external-name", "note",
                     f"Service {service.key} is an ExternalName Service (a DNS CNAME to {service.external_name!r}): "
                     "kube-proxy does not serve it, cluster DNS (CoreDNS) answers with the CNAME",
                     fix=f"Check that {service.external_name!r} resolves and answers from the client; no node rules "
                     "are involved.", evidence=(f"spec.type ExternalName, spec.externalName {service.external_name!r}",))
    if service.is_headless:
        return Cause("headless", "note",
                     f"Service {service.key} is headless (clusterIP: None): kube-proxy does not serve it, cluster DNS "
                     "returns the ready endpoints' pod IPs and clients connect to them directly",
                     fix="Debug it as pod-to-pod traffic (DNS answer, pod readiness, NetworkPolicy); its endpoints are "
                     "checked below.", evidence=("spec.clusterIP None",))
    proxy = service.labels.get(SERVICE_PROXY_NAME_LABEL)
    if proxy:
        return Cause("other-proxy", "note",
                     f"Service {service.key} carries {SERVICE_PROXY_NAME_LABEL}={proxy}: the default kube-proxy ignores "
                     f"it; the proxy named {proxy!r} serves it",
                     fix=f"Debug the {proxy!r} proxy; kube-proxy's rules are not involved.",
                     evidence=(f"label {SERVICE_PROXY_NAME_LABEL}={proxy}",))
    return None


# ---- selector -> pods -> EndpointSlices ------------------------------------------------------------------
def _pods_loaded(cluster: ClusterState, namespace: str) -> str | None:
    """None when the namespace's Pods were read; else why not."""
    gap = next((g for g in cluster.gaps if g.kind == WORKLOAD_PODS_GAP and namespace in g.reason), None)
    if gap is not None:
        return gap.reason
    if namespace not in cluster.workload_namespaces:
        return f"the Pods of namespace {namespace} were not loaded"
    if not cluster.pods and not cluster.workload_pods:
        return "the source holds no Pod objects at all (not collected)"
    return None


def _selector_causes(cluster: ClusterState, service: Service, target: Target, ports: list[ServicePort],
                     not_evaluated: list[str]) -> list[Cause]:
    sel = selector_text(service.selector)
    missing = _pods_loaded(cluster, service.namespace)
    slices = cluster.slices_by_service.get(service.key, ())
    if missing is not None:
        not_evaluated.append(f"pods behind the selector {sel}: {missing}")
        ready = sorted({a for sl in slices for ep in sl.endpoints if ep.ready for a in ep.addresses})
        if not ready:
            return [Cause("no-ready-endpoints", "blocking",
                          f"Service {service.key} has no ready endpoints" + ("" if slices else " (no EndpointSlice at all)")
                          + " and its pods could not be read to say why",
                          fix="Look at the pods behind the selector.", evidence=_slice_lines(slices),
                          commands=(f"{_kubectl_ns(target)} get pods -l {shlex.quote(sel)} -o wide",))]
        return []
    pods = [p for p in cluster.workload_pods if p.namespace == service.namespace]
    matching = [p for p in pods if matches(service.selector, p.labels)]
    if not matching:
        return [_no_pods(service, target, sel, pods)]
    causes: list[Cause] = []
    serving = [p for p in matching if is_serving(p)]
    if not serving:
        causes.append(_none_ready(service, target, sel, matching))
    causes += _port_causes(service, target, ports, serving or matching)
    causes += _slice_causes(service, target, slices, matching, serving)
    return causes


def _no_pods(service: Service, target: Target, sel: str, pods: list[Pod]) -> Cause:
    near = nearest_label_sets(service.selector, pods)
    evidence = [f"selector {sel}; {len(pods)} pod(s) in namespace {service.namespace}, none has these labels"]
    for n in near:
        labels = ",".join(f"{k}={v}" for k, v in n.labels)
        evidence.append(f"nearest: pods {', '.join(n.pods[:3])}{' ...' if len(n.pods) > 3 else ''} have {labels}"
                        + (f" ({'; '.join(n.differences)})" if n.differences else ""))
    best = near[0].differences[0] if near and near[0].differences else ""
    return Cause(
        "selector-matches-no-pods", "blocking",
        f"the selector of {service.key} ({sel}) matches no pod" + (f": {best}" if best else ""),
        fix="Make the Service's selector and the pod template's labels agree (fix whichever is wrong).",
        evidence=tuple(evidence),
        commands=(f"{_kubectl_ns(target)} get pods --show-labels",
                  f"{_kubectl_ns(target)} get service {service.name} -o jsonpath='{{.spec.selector}}'"),
    )


def _none_ready(service: Service, target: Target, sel: str, matching: list[Pod]) -> Cause:
    reasons = [not_ready_reason(p) for p in matching]
    first = matching[0]
    if any(r.startswith("Pending, not scheduled") for r in reasons):
        fix = "Give the scheduler somewhere to put the pods (resources, taints/tolerations, node selectors)."
    elif any("CrashLoopBackOff" in r or "Error" in r for r in reasons):
        fix = "Fix the crashing container (its previous log says why it exits)."
    elif any("readiness probe" in r for r in reasons):
        fix = "Fix the readiness probe or what it checks (path, port, dependency the app waits for)."
    elif any(r.startswith("terminating") for r in reasons):
        fix = "The pods are being deleted; wait for their replacements or see why none is created."
    else:
        fix = "Get at least one pod Running and Ready."
    cmds = [f"{_kubectl_ns(target)} get pods -l {shlex.quote(sel)} -o wide",
            f"{_kubectl_ns(target)} describe pod {shlex.quote(first.name)}"]
    if any("CrashLoopBackOff" in r for r in reasons):
        cmds.append(f"{_kubectl_ns(target)} logs {shlex.quote(first.name)} --previous")
    return Cause(
        "no-ready-pods", "blocking",
        f"{len(matching)} pod(s) match the selector of {service.key} but none is ready ({first.name}: {reasons[0]})",
        fix=fix, evidence=tuple(pod_line(p) for p in matching[:_MAX_LINES]), commands=tuple(cmds),
    )


def _port_causes(service: Service, target: Target, ports: list[ServicePort], pods: list[Pod]) -> list[Cause]:
    declared = container_ports(pods)
    have = ", ".join(port_text(p) for p in declared) or "none declared"
    causes: list[Cause] = []

    def port_cause(code: str, severity: Severity, label: str, text: str, fix: str,
                   commands: tuple[str, ...] = ()) -> None:
        """A cause of one Service port, with the pods' declared container ports as its evidence."""
        causes.append(Cause(code, severity, f"{service.key} {label}: {text}", fix=fix, commands=commands,
                            evidence=(f"container ports of the selected pods: {have}",)))

    for sp in ports:
        tp = sp.target_port if sp.target_port is not None else sp.port
        label = f"port {sp.name or sp.port} ({sp.port}/{sp.protocol} -> targetPort {tp})"
        if isinstance(tp, str) and not tp.isdigit():
            same = [p for p in declared if p.name == tp]
            if not same:
                port_cause(
                    "target-port-name-not-found", "blocking", label,
                    f"no container of its pods has a port named {tp!r}, so the "
                    "EndpointSlice controller publishes no endpoint for this port",
                    f"Name the container port {tp!r} in the pod template, or set the Service's targetPort to the "
                    "number the app listens on.",
                    (f"{_kubectl_ns(target)} get endpointslices -l kubernetes.io/service-name={service.name} -o yaml",))
            elif not any(p.protocol == sp.protocol for p in same):
                port_cause(
                    "protocol-mismatch", "blocking", label,
                    f"the container port named {tp!r} is {same[0].protocol}, the Service port "
                    f"is {sp.protocol}: the port name only matches with the same protocol, so there is no endpoint",
                    "Use the same protocol on the Service port and the container port.")
            continue
        number = int(tp)
        same_no = [p for p in declared if p.container_port == number]
        if same_no and not any(p.protocol == sp.protocol for p in same_no):
            port_cause(
                "protocol-mismatch", "blocking", label,
                f"the pods declare {number} as {same_no[0].protocol} only, the Service forwards {sp.protocol}",
                "Use the protocol the app speaks on the Service port.")
        elif declared and not same_no:
            port_cause(
                "target-port-not-declared", "note", label,
                f"no container declares port {number} (declared: {have}); traffic is still "
                "sent there, and kpdoctor cannot see whether the app listens on it",
                f"Check that the app listens on {number}, e.g. "
                f"`{_kubectl_ns(target)} exec POD -- ss -ltnu`, or point targetPort at a declared port.")
    return causes


def _slice_lines(slices: tuple[object, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for sl in slices[:_MAX_LINES]:
        eps = getattr(sl, "endpoints", ())
        ready = sorted({a for ep in eps if ep.ready for a in ep.addresses})
        other = sorted({a for ep in eps if not ep.ready for a in ep.addresses})
        out.append(f"EndpointSlice {getattr(sl, 'namespace', '')}/{getattr(sl, 'name', '')}"
                   f" (managed-by {getattr(sl, 'managed_by', '') or 'unset'}): ready {', '.join(ready) or 'none'}"
                   + (f"; not ready {', '.join(other)}" if other else ""))
    return tuple(out)


def _slice_causes(service: Service, target: Target, slices: tuple[object, ...], matching: list[Pod],
                  serving: list[Pod]) -> list[Cause]:
    causes: list[Cause] = []
    ready_ips = {a for sl in slices for ep in getattr(sl, "endpoints", ()) if ep.ready for a in ep.addresses}
    pod_by_ip = {p.pod_ip: p for p in matching if p.pod_ip}
    absent = sorted(p.pod_ip for p in serving if p.pod_ip and p.pod_ip not in ready_ips)
    gone = sorted(ip for ip in ready_ips if ip not in pod_by_ip or not is_serving(pod_by_ip[ip]))
    if not absent and not gone:
        return causes
    evidence = list(_slice_lines(slices))
    evidence += [f"ready pod {pod_by_ip[ip].key} {ip} is not a ready endpoint" for ip in absent[:_MAX_LINES]]
    evidence += [f"ready endpoint {ip}: " + (pod_line(pod_by_ip[ip]) if ip in pod_by_ip else
                                             "no pod of the selector has this IP (deleted?)") for ip in gone[:_MAX_LINES]]
    blocking = serving and not (ready_ips - set(gone))
    causes.append(Cause(
        "slices-lag-pods", "blocking" if blocking else "partial",
        f"the EndpointSlices of {service.key} do not follow its pods"
        + (f": ready pod(s) {', '.join(absent[:3])} missing" if absent else "")
        + (f"{';' if absent else ':'} endpoint(s) {', '.join(gone[:3])} listed ready but gone or not ready" if gone
           else "")
        + " (is the EndpointSlice controller in kube-controller-manager running?)",
        fix="Check kube-controller-manager (its endpointslice controller) and its log; the slices catch up once it runs.",
        evidence=tuple(evidence),
        commands=("kubectl -n kube-system get pods -l component=kube-controller-manager",
                  f"{_kubectl_ns(target)} get endpointslices -l kubernetes.io/service-name={service.name} -o wide")))
    return causes


def _foreign_slices(cluster: ClusterState, service: Service) -> list[Cause]:
    slices = cluster.slices_by_service.get(service.key, ())
    foreign = sorted({s.managed_by or "unset" for s in slices if s.managed_by != ENDPOINTSLICE_CONTROLLER})
    if not foreign:
        return []
    return [Cause(
        "slices-not-managed-by-controller", "note",
        f"EndpointSlices of {service.key} are managed by {', '.join(foreign)}, not the EndpointSlice controller "
        "although the Service has a selector: whoever writes them must keep them in step with the pods",
        fix="Let the EndpointSlice controller manage them (remove the foreign slices) or keep the writer healthy.",
        evidence=_slice_lines(slices))]


def _selectorless_causes(cluster: ClusterState, service: Service, target: Target) -> list[Cause]:
    slices = cluster.slices_by_service.get(service.key, ())
    if not slices:
        return [Cause(
            "selector-less-without-slices", "blocking",
            f"Service {service.key} has no selector and no EndpointSlices: nothing tells kube-proxy where to send "
            "its traffic (a selector-less Service needs EndpointSlices written by you or an operator)",
            fix=f"Add a selector, or create an EndpointSlice labelled kubernetes.io/service-name={service.name} "
            "with the backends' addresses.",
            evidence=("spec.selector: none", f"EndpointSlices labelled kubernetes.io/service-name={service.name}: none"),
            commands=(f"{_kubectl_ns(target)} get endpointslices -l kubernetes.io/service-name={service.name}",))]
    ready = {a for sl in slices for ep in sl.endpoints if ep.ready for a in ep.addresses}
    owners = sorted({sl.managed_by or "unset" for sl in slices})
    if not ready:
        return [Cause(
            "selector-less-no-ready-endpoints", "blocking",
            f"Service {service.key} has no selector and its EndpointSlices (managed by {', '.join(owners)}) list no "
            "ready endpoint",
            fix="Whoever writes these EndpointSlices (see managed-by) must list reachable, ready addresses.",
            evidence=_slice_lines(slices))]
    return [Cause(
        "selector-less", "note",
        f"Service {service.key} has no selector: its EndpointSlices (managed by {', '.join(owners)}) are written "
        "by hand or an operator, not derived from pods", evidence=_slice_lines(slices))]


# ---- traffic policy, topology, affinity -------------------------------------------------------------
def _ready_nodes(cluster: ClusterState, service: Service) -> set[str]:
    return {ep.node_name for sl in cluster.slices_by_service.get(service.key, ()) for ep in sl.endpoints
            if ep.ready and ep.node_name}


def _policy_causes(cluster: ClusterState, service: Service, target: Target, client: Client) -> list[Cause]:
    causes: list[Cause] = []
    slices = cluster.slices_by_service.get(service.key, ())
    if not any(ep.ready for sl in slices for ep in sl.endpoints):
        return causes  # no endpoint at all: said above, policies change nothing
    with_eps = _ready_nodes(cluster, service)
    all_nodes = sorted(n.name for n in cluster.nodes)
    without = [n for n in all_nodes if n not in with_eps]
    if service.internal_policy_local and without:
        if client.node is not None and client.kind in ("pod", "node", "ip"):
            if client.node not in with_eps:
                causes.append(Cause(
                    "internal-policy-local", "blocking",
                    f"{service.key} has internalTrafficPolicy: Local and no ready endpoint on {client.node}, the "
                    f"client's node: its connections are dropped there",
                    fix="Run an endpoint on every node that has clients (e.g. a DaemonSet), or set "
                    "internalTrafficPolicy: Cluster.",
                    evidence=(f"nodes with a ready endpoint: {', '.join(sorted(with_eps)) or 'none'}",)))
        else:
            causes.append(Cause(
                "internal-policy-local", "partial",
                f"{service.key} has internalTrafficPolicy: Local: pods on {', '.join(without[:5])} (no ready endpoint "
                "there) cannot reach it",
                fix="Run an endpoint on every node that has clients, or set internalTrafficPolicy: Cluster.",
                evidence=(f"nodes with a ready endpoint: {', '.join(sorted(with_eps)) or 'none'}",)))
    if service.external_policy_local and without:
        severity = "note"
        head = (f"{service.key} has externalTrafficPolicy: Local: its NodePorts / load-balancer IPs drop external "
                f"traffic on {', '.join(without[:5])} (no local endpoint); the load balancer's health check "
                f"(healthCheckNodePort {service.health_check_node_port or '?'}) keeps those nodes out of rotation")
        if client.kind in ("external", "ip", "node") and client.node in without:
            severity = "blocking"
            head = (f"{service.key} has externalTrafficPolicy: Local and no ready endpoint on {client.node}, the node "
                    "the client's traffic enters: its NodePort / load-balancer traffic is dropped there")
        causes.append(Cause("external-policy-local", severity, head,  # type: ignore[arg-type]
                            fix="Send external traffic only to nodes with endpoints (LB health checks), or set "
                            "externalTrafficPolicy: Cluster (loses the client source IP).",
                            evidence=(f"nodes with a ready endpoint: {', '.join(sorted(with_eps)) or 'none'}",)))
    causes += _topology_causes(cluster, service, client)
    if service.session_affinity == "ClientIP":
        terminating = sorted({a for sl in slices for ep in sl.endpoints if ep.terminating for a in ep.addresses})
        if terminating:
            causes.append(Cause(
                "affinity-terminating", "partial",
                f"{service.key} pins clients to one endpoint (sessionAffinity: ClientIP, "
                f"{service.session_affinity_timeout}s) and endpoint(s) {', '.join(terminating[:3])} are terminating: "
                "clients pinned to them move only when their affinity entry expires or the rules drop them",
                evidence=_slice_lines(slices)))
    return causes


def _topology_causes(cluster: ClusterState, service: Service, client: Client) -> list[Cause]:
    eps = [ep for sl in cluster.slices_by_service.get(service.key, ()) for ep in sl.endpoints if ep.ready]
    hinted = [ep for ep in eps if ep.hints_for_zones]
    if not hinted and not service.traffic_distribution:
        return []
    zones = sorted({n.zone for n in cluster.nodes if n.zone})
    covered = {z for ep in hinted for z in ep.hints_for_zones or ()}
    empty = [z for z in zones if z not in covered]
    evidence = [f"trafficDistribution: {service.traffic_distribution or 'unset'}"]
    evidence += [f"endpoint {','.join(ep.addresses)} (zone {ep.zone or '?'}): hints for zones "
                 f"{','.join(ep.hints_for_zones or ()) or 'none'}" for ep in eps[:_MAX_LINES]]
    if hinted and len(hinted) < len(eps):
        return [Cause("topology-hints-ignored", "note",
                      f"only {len(hinted)} of {len(eps)} ready endpoints of {service.key} carry zone hints: kube-proxy "
                      "ignores the hints and uses every endpoint", evidence=tuple(evidence))]
    if not hinted:
        return [Cause("topology-no-hints", "note",
                      f"{service.key} asks for trafficDistribution {service.traffic_distribution} but its endpoints "
                      "carry no hints yet: every node uses every endpoint", evidence=tuple(evidence))]
    if empty:
        mine = client.zone in empty if client.zone else False
        return [Cause("topology-zone-without-endpoints", "partial" if mine else "note",
                      f"the zone hints of {service.key} give zone(s) {', '.join(empty)} no endpoint"
                      + (f" (the client's zone {client.zone})" if mine else "")
                      + ": kube-proxy on those nodes falls back to all endpoints, cross-zone",
                      fix="Add endpoints in every zone with clients, or accept cross-zone traffic there.",
                      evidence=tuple(evidence))]
    return [Cause("topology-aware", "note",
                  f"{service.key} routes by zone hints (each zone's nodes use only that zone's endpoints)",
                  evidence=tuple(evidence))]
