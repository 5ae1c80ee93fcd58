"""The gate's conditions: small pure functions over a GateContext, each returning one GateCondition.

Every function names what blocks (the node, the Service, the ConfigMap key)
and says *unknown* where the evidence to decide is missing — the gate never
treats "could not look" as "looked and found nothing wrong".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from kpdoctor.addresses import is_ip
from kpdoctor.cilium import KPR_FAILING, KPR_LEGACY_ACCEPTED, KPR_TRUE, KPR_VALUES, SUPPORTED_RANGE
from kpdoctor.cluster.state import KUBE_SYSTEM
from kpdoctor.gate.context import GateContext
from kpdoctor.gate.model import GateCase, GateCondition, GateReason, blocking, unknown, warning
from kpdoctor.service_proxy import EMBEDDED
from kpdoctor.shellcmd import Lit, Name, command

CILIUM_CM = f"ConfigMap {KUBE_SYSTEM}/cilium-config"


def _cm_gap(ctx: GateContext) -> str:
    gap = ctx.cluster.gap("ConfigMap")
    return f"ConfigMaps could not be read ({gap.reason})" if gap else ""


def _per_agent_node(ctx: GateContext, name: str, title: str,
                    reasons_of: Callable[[GateContext, str], list[GateReason]],
                    no_nodes: str = "the input holds no nodes") -> GateCondition:
    """A condition judged node by node over `ctx.agent_nodes` (one case per node); unknown without nodes."""
    if not ctx.agent_nodes:
        return GateCondition(name, title, (unknown("Nodes", f"cannot prove: {no_nodes}"),))
    cases = [GateCase(f"Node {node}", tuple(reasons_of(ctx, node))) for node in ctx.agent_nodes]
    return GateCondition(name, title, cases=tuple(cases))


def replacement_configured(ctx: GateContext) -> GateCondition:
    """`kube-proxy-replacement` in cilium-config is `true` (legacy `strict` accepted with a warning)."""
    title = "Cilium kube-proxy replacement is configured (cilium-config kube-proxy-replacement=true)"
    cfg = ctx.cilium_config
    if cfg is None:
        gap = _cm_gap(ctx)
        if gap:
            return GateCondition("replacement-configured", title, (unknown(CILIUM_CM, f"cannot prove: {gap}"),))
        if ctx.cluster.cilium_daemonsets or ctx.cluster.cilium_pods:
            return GateCondition("replacement-configured", title, (unknown(
                CILIUM_CM,
                "cannot prove: Cilium runs (DaemonSet/pods found) but ConfigMap kube-system/cilium-config is "
                "missing from the input; collect it (kubectl -n kube-system get configmap cilium-config -o json)",
            ),))
        return GateCondition("replacement-configured", title, (blocking(
            CILIUM_CM,
            "no kube-proxy replacement installed: no cilium-config ConfigMap and no Cilium DaemonSet; "
            "removing kube-proxy would leave every Service unserved",
            critical=True,
        ),))
    evidence = (f"{cfg.source}: kube-proxy-replacement={cfg.kpr_raw!r}",)
    if cfg.kpr == KPR_TRUE:
        return GateCondition("replacement-configured", title, (), evidence=evidence)
    if cfg.kpr in KPR_LEGACY_ACCEPTED:
        return GateCondition("replacement-configured", title, (warning(
            CILIUM_CM,
            f"legacy value kube-proxy-replacement={cfg.kpr_raw!r}: accepted, but since Cilium 1.14 the value is "
            "true/false and 'strict' no longer switches the KPR features on by itself (cilium/cilium#32711); "
            "set it to 'true' (Helm: kubeProxyReplacement=true)",
            evidence=evidence,
        ),), evidence=evidence)
    if cfg.kpr_raw is None:
        message = "kube-proxy-replacement is not set (default false): Cilium does not replace kube-proxy"
    elif cfg.kpr in KPR_FAILING:
        message = (f"kube-proxy-replacement={cfg.kpr_raw!r}: Cilium does not fully replace kube-proxy"
                   + (" (legacy partial/probe modes rely on kube-proxy for what they skip)"
                      if KPR_VALUES[cfg.kpr].relies_on_kube_proxy else ""))
    else:
        message = f"kube-proxy-replacement={cfg.kpr_raw!r} is not a value Cilium {SUPPORTED_RANGE} understands"
    return GateCondition("replacement-configured", title, (blocking(
        CILIUM_CM, message,
        evidence=evidence,
        commands=("helm upgrade cilium cilium/cilium -n kube-system --reuse-values "
                  "--set kubeProxyReplacement=true --set k8sServiceHost=<API server address> "
                  "--set k8sServicePort=<API server port>",),
    ),), evidence=evidence)


def agents_ready(ctx: GateContext) -> GateCondition:
    """A Running+Ready Cilium agent on every node that runs kube-proxy today (every node after removal)."""
    title = "A Cilium agent is Running and Ready on every node that runs kube-proxy today"
    if ctx.cluster.gap("Pod"):
        return GateCondition("agents-ready", title, (unknown("Pods", "cannot prove: Pods could not be read"),))
    return _per_agent_node(ctx, "agents-ready", title, _agent_ready_reasons)


def _agent_ready_reasons(ctx: GateContext, node: str) -> list[GateReason]:
    pods = ctx.agent_pods.get(node, ())
    reasons: list[GateReason] = []
    if not pods:
        reasons.append(blocking(f"Node {node}", f"no Cilium agent pod on {node}"))
    elif not ctx.agent_ready(node):
        states = ", ".join(f"{p.name}: {p.phase or '?'}{'' if p.ready else ' not ready'}"
                           + (f" ({', '.join(c.reason for c in p.container_statuses if c.reason)})"
                              if any(c.reason for c in p.container_statuses) else "")
                           for p in pods)
        reasons.append(blocking(f"Node {node}", f"Cilium agent on {node} is not Running and Ready: {states}",
                                commands=(command("kubectl", "-n", Name(pods[0].namespace), "describe", "pod",
                                                  Name(pods[0].name)),
                                          command("kubectl", "-n", Name(pods[0].namespace), "logs", Name(pods[0].name),
                                                  "-c", "cilium-agent"))))
    return reasons


def agents_kpr_mode(ctx: GateContext) -> GateCondition:
    """Each agent's own status says KubeProxyReplacement True, from a Cilium version kpdoctor knows."""
    title = "Every agent reports kube-proxy replacement mode True (cilium-dbg status -o json)"
    return _per_agent_node(ctx, "agents-kpr-mode", title, _agent_kpr_reasons)


def _agent_kpr_reasons(ctx: GateContext, node: str) -> list[GateReason]:
    subject = f"Node {node}"
    status = ctx.agent_status(node)
    reasons: list[GateReason] = []
    if status is None:
        reasons.append(unknown(subject, f"cannot prove: no agent status for {node}: {ctx.agent_status_error(node)}"))
    elif not status.supported:
        reasons.append(unknown(subject, (
            f"cannot prove: agent status on {node} is from Cilium {status.version_label!s}; kpdoctor knows the "
            f"status of Cilium {SUPPORTED_RANGE} only and will not guess what another version's fields mean"),
            evidence=(f"{status.source}: cilium.msg={status.cilium_msg!r}",)))
    else:
        ev = (f"{status.source}: kube-proxy-replacement.mode={status.kpr_mode!r}, cilium.state="
              f"{status.cilium_state!r}, Cilium {status.version_label}",)
        if status.kpr_mode == "False":
            reasons.append(blocking(subject, f"agent on {node} reports KubeProxyReplacement False", evidence=ev))
        elif status.kpr_mode != "True":
            reasons.append(blocking(subject, (
                f"agent on {node} does not report KubeProxyReplacement True (mode {status.kpr_mode!r}; an empty "
                "mode is what the legacy 'strict' value produces): the agent must be restarted with "
                "kube-proxy-replacement=true"), evidence=ev))
        if status.cilium_state != "Ok":
            reasons.append(blocking(subject, f"agent on {node} is not healthy: cilium state "
                                             f"{status.cilium_state or 'missing'!s} ({status.cilium_msg})",
                                    evidence=ev))
        if status.kubernetes_state not in ("Ok",):
            reasons.append(blocking(subject, f"agent on {node} has no working connection to the API server: "
                                             f"kubernetes state {status.kubernetes_state or 'missing'!s} "
                                             f"({status.kubernetes_msg})", evidence=ev))
    return reasons


def _is_ip(text: str) -> bool:
    return is_ip(text.strip("[]"))


def apiserver_direct(ctx: GateContext) -> GateCondition:
    """Cilium reaches the API server without kube-proxy: k8s-service-host/port set, not a Service ClusterIP."""
    title = "Cilium reaches the API server without kube-proxy (k8s-service-host / k8s-service-port)"
    cfg = ctx.cilium_config
    if cfg is None:
        return GateCondition("apiserver-direct", title, (unknown(
            CILIUM_CM, "cannot prove: cilium-config is not in the input"),))
    host, port = cfg.k8s_service_host, cfg.k8s_service_port
    evidence = (f"{cfg.source}: k8s-service-host={host!r} k8s-service-port={port!r}",)
    reasons: list[GateReason] = []
    if not host:
        reasons.append(blocking(CILIUM_CM, (
            "k8s-service-host is not set: the agent reaches the API server through the `kubernetes` Service "
            "ClusterIP, which kube-proxy serves; once kube-proxy is gone, agents that restart cannot start"),
            evidence=evidence))
    if not port:
        reasons.append(blocking(CILIUM_CM, "k8s-service-port is not set", evidence=evidence))
    elif not port.isdecimal() or not 0 < int(port) < 65536:
        reasons.append(blocking(CILIUM_CM, f"k8s-service-port={port!r} is not a port number", evidence=evidence))
    if host and _is_ip(host):
        normal = str(ipaddress.ip_address(host.strip("[]")))
        kube_svc = ctx.cluster.service_by_key.get("default/kubernetes")
        owners = [s.key for s in ctx.cluster.services if normal in s.cluster_ips]
        if kube_svc is not None and normal in kube_svc.cluster_ips:
            reasons.append(blocking(CILIUM_CM, (
                f"k8s-service-host={host} is the ClusterIP of Service default/kubernetes: that address only works "
                "while kube-proxy (or the replacement itself) serves it; use the API server's own address"),
                evidence=evidence))
        elif owners:
            reasons.append(blocking(CILIUM_CM, f"k8s-service-host={host} is the ClusterIP of Service "
                                               f"{', '.join(owners)}, not the API server's own address",
                                    evidence=evidence))
    if ctx.cluster.service_by_key.get("default/kubernetes") is None and host and _is_ip(host):
        reasons.append(warning("Service default/kubernetes",
                               "Service default/kubernetes is not in the input; the ClusterIP comparison used the "
                               "other Services only"))
    if reasons and any(r.kind == "blocking" for r in reasons):
        reasons = [*reasons]
        first = next(r for r in reasons if r.kind == "blocking")
        reasons[reasons.index(first)] = GateReason(
            first.kind, first.subject, first.message, first.severity, first.evidence,
            ("helm upgrade cilium cilium/cilium -n kube-system --reuse-values --set k8sServiceHost=<API server "
             "address> --set k8sServicePort=<API server port>",),
        )
    return GateCondition("apiserver-direct", title, tuple(reasons), evidence=evidence)


def services_served_now(ctx: GateContext) -> GateCondition:
    """Every node has something serving Services *now*: a running kube-proxy or a proven replacement.

    This is the seed's expensive mistake seen from the cluster: kube-proxy gone,
    replacement off. It is reported as critical, and as a cluster-wide outage
    when it holds on every node.
    """
    title = "Services are served on every node right now (kube-proxy or the replacement)"
    nodes = ctx.all_nodes
    if not nodes:
        return GateCondition("services-served-now", title, (unknown("Nodes", "cannot prove: no nodes in the input"),))
    cfg = ctx.cilium_config
    kpr_configured = cfg is not None and cfg.kpr_enabled
    down: list[str] = []
    cases = []
    for node in nodes:
        subject = f"Node {node}"
        if ctx.kube_proxy_serving(node) or (kpr_configured and ctx.proven_kpr(node)):
            cases.append(GateCase(subject))
            continue
        outside = ctx.kube_proxy_outside_api(node)
        if outside:  # kube-proxy without a pod (k3s, a host process): running is not proven without its facts
            cases.append(GateCase(subject, (unknown(subject, (
                f"cannot prove Services are served on {node}: {outside}; kube-proxy's :10256 was not seen "
                "answering (collect the node's kube-proxy/ facts)")),)))
            continue
        status = ctx.agent_status(node)
        definite_off = (cfg is not None and not cfg.kpr_enabled) or (
            status is not None and status.supported and status.kpr_mode == "False")
        kp = ctx.cluster.kube_proxy_pod_on(node)
        kp_text = f"kube-proxy pod {kp.name} is {kp.phase or '?'}{'' if kp.ready else ' and not ready'}" if kp \
            else "no kube-proxy pod"
        if definite_off or not ctx.agent_pods.get(node):
            down.append(node)
            cases.append(GateCase(subject, (blocking(subject, (
                f"Services are not served on {node} now: {kp_text} and Cilium's kube-proxy replacement is "
                + ("off" if definite_off else "not running") + " there"), critical=True),)))
        else:
            cases.append(GateCase(subject, (unknown(subject, (
                f"cannot prove Services are served on {node}: {kp_text}, and the agent's replacement is not proven "
                f"({ctx.agent_status_error(node) or 'agent not ready or not reporting mode True'})")),)))
    reasons: list[GateReason] = []
    if down and len(down) == len(nodes):
        ds_text = ("kube-proxy DaemonSet is gone" if not ctx.cluster.kube_proxy_daemonsets
                   else "kube-proxy is not running on any node")
        reasons.append(blocking("Cluster", (
            f"cluster-wide Service outage: {ds_text} and Cilium's kube-proxy replacement is "
            f"{'off' if not kpr_configured else 'not active'}: every ClusterIP, NodePort and LoadBalancer Service "
            "is unreachable on every node"), critical=True, commands=(
            "kubeadm init phase addon kube-proxy --config <your kubeadm config>  # bring kube-proxy back now",
            "helm upgrade cilium cilium/cilium -n kube-system --reuse-values --set kubeProxyReplacement=true "
            "--set k8sServiceHost=<API server address> --set k8sServicePort=<API server port>",
        )))
    return GateCondition("services-served-now", title, tuple(reasons), cases=tuple(cases))


def nodes_ready(ctx: GateContext) -> GateCondition:
    """Pre-removal: no node where kube-proxy is the only thing serving Services; Nodes Ready."""
    title = "Every node is ready for the switch (the replacement, not kube-proxy alone, serves Services)"
    return _per_agent_node(ctx, "nodes-ready", title, _node_ready_reasons, no_nodes="no nodes in the input")


def _node_ready_reasons(ctx: GateContext, node: str) -> list[GateReason]:
    subject = f"Node {node}"
    reasons: list[GateReason] = []
    obj = ctx.cluster.node_by_name.get(node)
    if obj is None:
        reasons.append(unknown(subject, f"cannot prove: Node {node} is not in the input"))
    elif obj.ready is False:
        reasons.append(blocking(subject, f"Node {node} is NotReady"))
    elif obj.ready is None:
        reasons.append(unknown(subject, f"cannot prove: Node {node} reports no Ready condition"))
    if ctx.kube_proxy_serving(node) and not ctx.proven_kpr(node):
        if not ctx.agent_pods.get(node):
            why = "no Cilium agent pod"
        elif not ctx.agent_ready(node):
            why = "Cilium agent not Running/Ready"
        else:
            why = ctx.agent_status_error(node) or "agent does not report a healthy replacement (mode True)"
        status = ctx.agent_status(node)
        if ctx.agent_ready(node) and (status is None or not status.supported):
            if status is not None:
                why = f"agent status from Cilium {status.version_label}, outside {SUPPORTED_RANGE}"
            reasons.append(unknown(subject, f"cannot prove the replacement serves Services on {node}: {why}"))
        else:
            reasons.append(blocking(subject, (
                f"kube-proxy's rules are the only thing serving Services on {node} ({why}): removing kube-proxy "
                f"now takes every Service down on {node}"), critical=True))
    return reasons


def kube_proxy_removed(ctx: GateContext) -> GateCondition:
    """Post-removal: no kube-proxy DaemonSet, pod or ConfigMap (kubeadm reinstalls kube-proxy while it exists)."""
    title = "kube-proxy DaemonSet, pods and ConfigMap are gone"
    reasons: list[GateReason] = []
    for kind in ("DaemonSet", "Pod", "ConfigMap"):
        gap = ctx.cluster.gap(kind)
        if gap:
            reasons.append(unknown(f"{kind}s", f"cannot prove: {kind}s could not be read ({gap.reason})"))
    for ds in ctx.cluster.kube_proxy_daemonsets:
        reasons.append(blocking(f"DaemonSet {ds.key}", f"kube-proxy DaemonSet {ds.key} still exists",
                                commands=(command("kubectl", "-n", Name(ds.namespace), "delete", "daemonset",
                                                  Name(ds.name)),)))
    for pod in ctx.cluster.kube_proxy_pods:
        reasons.append(blocking(f"Pod {pod.key}", f"kube-proxy pod {pod.key} still exists on {pod.node_name}"))
    for node in ctx.all_nodes:
        if ctx.service_proxy(node).kind == EMBEDDED:  # k3s without --disable-kube-proxy on this node
            reasons.append(blocking(f"Node {node}", (
                f"{ctx.service_proxy(node).line()}: k3s still runs kube-proxy on {node}"),
                commands=(command("echo", "disable-kube-proxy: true", Lit(">>"), "/etc/rancher/k3s/config.yaml",
                                  on=node, note="then restart k3s"),)))
    for cm in ctx.cluster.configmaps:
        if cm.namespace == KUBE_SYSTEM and cm.name.startswith("kube-proxy"):
            reasons.append(blocking(f"ConfigMap {cm.namespace}/{cm.name}", (
                f"ConfigMap {cm.namespace}/{cm.name} still exists: kubeadm upgrade reinstalls the kube-proxy addon "
                "while kube-system/kube-proxy exists, bringing kube-proxy back next to the replacement"),
                commands=(command("kubectl", "-n", Name(cm.namespace), "delete", "configmap", Name(cm.name)),)))
    return GateCondition("kube-proxy-removed", title, tuple(reasons))


ConditionFn = Callable[[GateContext], GateCondition]
