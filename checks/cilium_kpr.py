"""KP-CILIUM-KPR: something serves Services on every node - kube-proxy, or Cilium's kube-proxy replacement.

The seed's own mistake: "remove kube-proxy when using Cilium" without checking
that Cilium replaces it. With `kube-proxy-replacement: false` (or unset) Cilium
leaves Services to kube-proxy; deleting kube-proxy then leaves every ClusterIP,
NodePort and LoadBalancer dead on every node (slowly: existing nodes keep their
frozen rules until they reboot, new nodes have none). The reverse - KPR on and
kube-proxy still running - handles Services twice, and kubeadm re-installs the
kube-proxy addon on upgrade unless its ConfigMap is gone too.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.cilium import (
    KPR_LEGACY_MIGRATION,
    STATUS_FACT,
    CiliumShapeError,
    parse_agent_status,
    parse_cilium_config,
)
from kpdoctor.cluster.state import DEFAULT_KUBE_PROXY_CONFIGMAP, KUBE_SYSTEM
from kpdoctor.findings import Finding, Severity
from kpdoctor.node_context import service_proxy
from kpdoctor.service_proxy import ABSENT, EMBEDDED, HOST_PROCESS, STATIC_POD, UNKNOWN, decide
from kpdoctor.shellcmd import Name, command

CILIUM_KPR_DOCS = "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/"
LEGACY = KPR_LEGACY_MIGRATION  # legacy value -> its 1.14+ replacement (the one table: kpdoctor.cilium.KPR_VALUES)


class CiliumKubeProxyReplacement(Check):
    id = "KP-CILIUM-KPR"
    title = "Services are served: kube-proxy, or Cilium's kube-proxy replacement correctly configured"
    scope = "cluster"
    severity = Severity.CRITICAL
    tags = ("cilium", "kube-proxy", "common")
    requires = ("DaemonSet", "ConfigMap", "Service")
    rationale = (
        "Removing kube-proxy is only safe when Cilium runs with kube-proxy-replacement: true and reaches the API "
        "server directly; otherwise every Service in the cluster stops working."
    )
    remediation = (
        "Either keep (or restore) kube-proxy, or enable Cilium's replacement (kube-proxy-replacement: true, "
        "k8s-service-host/port) before deleting kube-proxy's DaemonSet and ConfigMap and cleaning the nodes."
    )
    catches = (
        "Cilium `kube-proxy-replacement` (legacy values flagged), `k8s-service-host`, kube-proxy left "
        "beside KPR (kubeadm reinstall trap), kube-proxy gone without KPR (cluster-wide outage, critical)"
    )
    references = (
        CILIUM_KPR_DOCS,
        "https://docs.cilium.io/en/stable/operations/upgrade/",
        "https://kubernetes.io/docs/reference/setup-tools/kubeadm/kubeadm-upgrade-phase/",
    )

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cluster = ctx.cluster
        kp_ds = cluster.kube_proxy_daemonsets
        kp_cm = cluster.configmap(KUBE_SYSTEM, DEFAULT_KUBE_PROXY_CONFIGMAP)
        cm = cluster.cilium_config
        cilium_ds = cluster.cilium_daemonsets
        proxied = [s for s in cluster.services if s.proxied]
        cfg = parse_cilium_config(cm) if cm is not None else None
        kpr = cfg.kpr if cfg is not None else ""
        cm_ref = f"ConfigMap {KUBE_SYSTEM}/cilium-config: kube-proxy-replacement: " + (
            repr(cfg.kpr_raw) if cfg is not None and cfg.kpr_raw is not None else "(absent)"
        )
        replaced = cfg is not None and cfg.kpr_enabled and bool(cilium_ds)

        # 1. kube-proxy absent without a working replacement: a full outage. Absent means no node runs kube-proxy
        # in any shape (DaemonSet, static pod, embedded in k3s, host process) and no node's shape is unknown.
        shapes = [decide(cluster, n.name) for n in cluster.nodes]  # from the API alone: cheap
        if shapes and not kp_ds and all(sp.kind == ABSENT for sp in shapes):
            shapes = [service_proxy(ctx, n.name) for n in cluster.nodes]  # the nodes' facts may show kube-proxy
        kube_proxy_seen = bool(kp_ds) or any(sp.runs_kube_proxy or sp.replaced for sp in shapes)
        unknown = not shapes or any(sp.kind == UNKNOWN for sp in shapes)
        if not kube_proxy_seen and not unknown and proxied and not replaced:
            if cm is None and not cilium_ds:
                situation = "no kube-proxy DaemonSet and no Cilium in the cluster"
            elif not cilium_ds:
                situation = "no kube-proxy DaemonSet; cilium-config exists but no Cilium DaemonSet runs"
            else:
                situation = f"no kube-proxy DaemonSet while Cilium's kube-proxy-replacement is '{kpr or 'unset'}'"
            yield self.finding(
                ctx,
                "Cluster",
                f"{situation}: nothing programs Service rules, so all {len(proxied)} Services (ClusterIP, NodePort, "
                "LoadBalancer) stop working on every node - existing nodes keep frozen rules until reboot, new nodes "
                "have none. This is the 'remove kube-proxy when using Cilium' mistake",
                severity=Severity.CRITICAL,
                evidence=[
                    "DaemonSets in kube-system: no kube-proxy DaemonSet",
                    cm_ref if cm is not None else f"ConfigMap {KUBE_SYSTEM}/cilium-config: absent",
                    f"Cilium DaemonSets: {', '.join(d.key for d in cilium_ds) or 'none'}",
                    f"{len(proxied)} proxied Services, e.g. {', '.join(s.key for s in proxied[:3])}",
                ],
                fix=(
                    "Restore kube-proxy now (re-apply its DaemonSet and ConfigMap, e.g. `kubeadm init phase addon "
                    "kube-proxy` on a control-plane node). Remove it again only after Cilium runs with "
                    "kube-proxy-replacement: true and k8s-service-host/k8s-service-port set, and the agents report "
                    "KubeProxyReplacement True. If another replacement (Calico eBPF, kube-router, Antrea proxyAll) "
                    "serves Services here, silence this check in .kpdoctor.yaml with that reason."
                ),
                commands=[
                    "kubeadm init phase addon kube-proxy --kubeconfig /etc/kubernetes/admin.conf   # on a control-plane "
                    "node",
                    "kubectl -n kube-system rollout status daemonset kube-proxy",
                    "kubectl -n kube-system exec ds/cilium -- cilium-dbg status | grep KubeProxyReplacement",
                ],
            )
        if cfg is None:
            return

        # 2. legacy values
        if kpr in LEGACY:
            yield self.finding(
                ctx,
                f"ConfigMap {KUBE_SYSTEM}/cilium-config",
                f"kube-proxy-replacement: {cfg.kpr_raw} is a legacy value (Cilium 1.14 replaced strict/partial/probe "
                f"with true/false; probe is gone since 1.13/1.14 and strict no longer turns features on from 1.15). "
                f"Migrate to {LEGACY[kpr]}",
                severity=Severity.WARNING,
                evidence=[cm_ref],
                fix="Set the new value with the Cilium Helm chart (kubeProxyReplacement=true|false) and restart the "
                "agents; keep kube-proxy until the agents report KubeProxyReplacement True.",
                commands=["helm upgrade cilium cilium/cilium -n kube-system --reuse-values "
                          f"--set kubeProxyReplacement={'true' if kpr == 'strict' else 'false'}",
                          "kubectl -n kube-system rollout restart daemonset cilium"],
            )

        if cfg.kpr_enabled:
            # 3. API server reachable without kube-proxy
            if not cfg.k8s_service_host or not cfg.k8s_service_port:
                yield self.finding(
                    ctx,
                    f"ConfigMap {KUBE_SYSTEM}/cilium-config",
                    "kube-proxy-replacement is on but k8s-service-host/k8s-service-port are not set: the agents reach "
                    "the API server through the 'kubernetes' Service ClusterIP, which only kube-proxy (absent) or "
                    "the agent itself (not yet started) can translate - agents cannot start on new or rebooted nodes",
                    severity=Severity.ERROR if not kp_ds else Severity.WARNING,
                    evidence=[cm_ref, f"k8s-service-host: {cfg.k8s_service_host or '(absent)'}",
                              f"k8s-service-port: {cfg.k8s_service_port or '(absent)'}"],
                    fix="Point the agents at the API server directly (a load balancer or the control-plane IP).",
                    commands=["helm upgrade cilium cilium/cilium -n kube-system --reuse-values "
                              "--set k8sServiceHost=API_SERVER_IP --set k8sServicePort=6443"
                              "   # replace API_SERVER_IP (a `<...>` placeholder would be a shell redirection)"],
                )
            # 4. kube-proxy still present next to KPR
            for ds in kp_ds:
                yield self.finding(
                    ctx,
                    f"DaemonSet {ds.key}",
                    f"kube-proxy (DaemonSet {ds.key}, {ds.ready}/{ds.desired} ready) still runs while Cilium's "
                    "kube-proxy replacement is on: both program Services, kube-proxy's iptables/nftables rules and "
                    "Cilium's eBPF maps disagree as soon as one lags",
                    severity=Severity.WARNING,
                    evidence=[cm_ref, f"DaemonSet {ds.key}: desired {ds.desired}, ready {ds.ready}"],
                    fix=("Delete the kube-proxy DaemonSet and its ConfigMap (kubeadm re-installs the addon on "
                         "upgrade while the ConfigMap exists), then remove its rules on each node."),
                    commands=[command("kubectl", "-n", Name(ds.namespace), "delete", "daemonset", Name(ds.name)),
                              command("kubectl", "-n", KUBE_SYSTEM, "delete", "configmap", DEFAULT_KUBE_PROXY_CONFIGMAP),
                              "iptables-save | grep -v KUBE | iptables-restore   # on every node"],
                )
            # 4b. kube-proxy outside a DaemonSet (embedded in k3s, a static pod, a host process) next to KPR
            others = [sp for sp in (service_proxy(ctx, n.name) for n in cluster.nodes)
                      if sp.kind in (EMBEDDED, STATIC_POD, HOST_PROCESS)]
            if others:
                names = ", ".join(sp.node for sp in others[:8]) + (", ..." if len(others) > 8 else "")
                k3s = any(sp.kind == EMBEDDED for sp in others)
                yield self.finding(
                    ctx,
                    "Cluster",
                    f"kube-proxy still runs on {len(others)} node(s) ({names}) while Cilium's kube-proxy replacement "
                    f"is on: both program Services there ({others[0].implementer})",
                    severity=Severity.WARNING,
                    evidence=[cm_ref, *(sp.line() for sp in others[:8])],
                    fix="Turn the node's own kube-proxy off: k3s/RKE2 `--disable-kube-proxy` on every server AND "
                    "agent (agents keep their embedded kube-proxy otherwise); a static pod: remove its manifest.",
                    commands=["grep -r disable-kube-proxy /etc/rancher/k3s/config.yaml   # on each node"] if k3s
                    else ["ls /etc/kubernetes/manifests/ /var/lib/rancher/rke2/agent/pod-manifests/   # on each node"],
                )
            if not kp_ds and kp_cm is not None:
                yield self.finding(
                    ctx,
                    f"ConfigMap {KUBE_SYSTEM}/{DEFAULT_KUBE_PROXY_CONFIGMAP}",
                    "kube-proxy's DaemonSet is gone but its ConfigMap is still there: `kubeadm upgrade` re-installs "
                    "the kube-proxy addon from it, silently bringing kube-proxy back next to Cilium's replacement",
                    severity=Severity.WARNING,
                    evidence=[cm_ref, f"ConfigMap {KUBE_SYSTEM}/{DEFAULT_KUBE_PROXY_CONFIGMAP}: present"],
                    fix="Delete the ConfigMap too, and skip the addon phase in kubeadm upgrades.",
                    commands=[command("kubectl", "-n", KUBE_SYSTEM, "delete", "configmap", DEFAULT_KUBE_PROXY_CONFIGMAP)],
                )
            # 5. what the agents report
            for name, node in sorted(ctx.nodes.items()):
                text = node.text(STATUS_FACT)
                if not text:
                    continue
                try:
                    status = parse_agent_status(text, node=name, source=STATUS_FACT)
                except CiliumShapeError as exc:
                    yield self.finding(ctx, f"Node {name}", f"cilium status of node {name} unreadable: {exc}",
                                       severity=Severity.INFO, evidence=[f"{name}/{STATUS_FACT}"], not_evaluated=True)
                    continue
                if cfg.kpr == "true" and (not status.kpr_true or not status.features.node_port):
                    yield self.finding(
                        ctx,
                        f"Node {name}",
                        f"cilium-config asks for kube-proxy-replacement: true but the agent on {name} reports "
                        f"mode '{status.kpr_mode or '(empty)'}', nodePort "
                        f"{'enabled' if status.features.node_port else 'disabled'}: Services are not fully handled "
                        "there",
                        severity=Severity.ERROR if not kp_ds else Severity.WARNING,
                        evidence=[cm_ref, f"{name}/{STATUS_FACT}: kube-proxy-replacement.mode "
                                          f"{status.kpr_mode!r}, features.nodePort.enabled {status.features.node_port}"],
                        fix="Restart the agent on that node so it reads the config; check its log for why KPR is off.",
                        commands=[command("kubectl", "-n", "kube-system", "delete", "pod", "-l", "k8s-app=cilium",
                                          "--field-selector", Name(name, prefix="spec.nodeName="))],
                    )


CHECK = CiliumKubeProxyReplacement()
