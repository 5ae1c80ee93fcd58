"""KP-PROXY-NODE-HEALTH: on each node, kube-proxy answers, is healthy, and has synced at least once.

`/healthz` alone is not evidence of a programmed node: real kube-proxy v1.36.2
answered 200 half a second after start, before any rule existed, and stayed 200
through a 173 s first sync (5,000 Services, iptables-nft) and an unfinished
10-minute one. Only `kubeproxy_sync_proxy_rules_last_timestamp_seconds > 0`
proves rules were written. A 503 means a queued update has not been applied
for longer than twice syncPeriod; its `lastUpdated` age says how stale the node is.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpdoctor.checks._common import (
    KUBE_PROXY_CLI_DOCS,
    KUBE_PROXY_METRICS_DOCS,
    pod_status_line,
    unknown_kube_proxy,
)
from kpdoctor.findings import Finding, Severity
from kpdoctor.node_context import NodeCheck, NodeCheckContext
from kpdoctor.node_only import is_node_only
from kpdoctor.service_proxy import K3S_DISABLED
from kpdoctor.shellcmd import Lit, Name, command

LAST_SYNC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
LAST_QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"


class KubeProxyNodeHealth(NodeCheck):
    id = "KP-PROXY-NODE-HEALTH"
    title = "kube-proxy answers on the node, /healthz is 200 and rules were synced"
    severity = Severity.ERROR
    tags = ("kube-proxy", "iptables", "nftables", "ipvs", "common")
    reads = ("kube-proxy/",)
    requires = ("Pod", "DaemonSet")
    node_facts_suffice = True  # runs in node-only scans (kpdoctor.node_only)
    rationale = (
        "A kube-proxy that is down, unhealthy or has never completed a sync leaves the node's Service rules "
        "frozen or absent. healthz=200 is not enough: it is 200 before the first sync finishes."
    )
    remediation = "Restart or fix kube-proxy on the node; confirm with healthz and the last-sync timestamp."
    catches = (
        "`/healthz` 503 with its `lastUpdated` age; `sync_proxy_rules_last_timestamp_seconds == 0` (never"
        " synced, although `/healthz` says 200)"
    )
    references = (
        KUBE_PROXY_CLI_DOCS,
        KUBE_PROXY_METRICS_DOCS,
        "https://github.com/kubernetes/kubernetes/blob/master/pkg/proxy/healthcheck/proxy_health.go",
    )

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        node = ctx.node
        p = ctx.parsed
        pod = ctx.kube_proxy_pod
        expected = ctx.kube_proxy_expected
        answered = p.has("kube-proxy/healthz.json") or p.has("kube-proxy/metrics.txt")
        pod_ref = f"pod {pod.key}" if pod else "kube-proxy"
        cmds_pod = (
            [command("kubectl", "-n", Name(pod.namespace), "describe", "pod", Name(pod.name)),
             command("kubectl", "-n", Name(pod.namespace), "logs", Name(pod.name))]
            if pod
            else []
        )
        shape = ctx.service_proxy
        if not answered and (shape.replaced or shape.implementer == K3S_DISABLED):
            # No kube-proxy by design: its checks do not apply here (KP-CILIUM-KPR still judges Cilium's KPR).
            yield self.finding(
                ctx, f"Node {node.name}",
                f"kube-proxy checks not applicable on node {node.name}: "
                + (f"Services are implemented by {shape.implementer}" if shape.replaced
                   else "kube-proxy is disabled in k3s (--disable-kube-proxy)"),
                severity=Severity.INFO, evidence=[shape.line()], not_evaluated=True,
            )
            return
        asked = any(k in node.facts for k in ("kube-proxy/healthz.json", "kube-proxy/metrics.txt"))
        if not answered and expected and not asked and (pod is None or pod.ready):
            # Nothing was collected from kube-proxy's ports (a bundle without kube-proxy/): unknown, not down.
            yield self.finding(
                ctx, f"Node {node.name}",
                f"not evaluated: kube-proxy's /healthz and /metrics on node {node.name} were not collected"
                + (f" ({pod_ref} is ready)" if pod is not None else ""),
                severity=Severity.INFO,
                evidence=[node.fact("kube-proxy/healthz.json").evidence(),
                          *([pod_status_line(pod)] if pod is not None else [])],
                fix="Collect kube-proxy/healthz.json and kube-proxy/metrics.txt (`kpdoctor collect`, or curl "
                "127.0.0.1:10256/healthz and :10249/metrics on the node).",
                commands=[command("curl", "-s", "http://127.0.0.1:10256/healthz", on=node.name)],
                not_evaluated=True,
            )
            return
        if not answered:
            if is_node_only(ctx.cluster):  # nothing answered, and whether kube-proxy should run here is unknown
                yield unknown_kube_proxy(self, ctx)
            elif expected:
                evidence = [
                    node.fact("kube-proxy/healthz.json").evidence(),
                    node.fact("kube-proxy/metrics.txt").evidence(),
                ]
                if pod is not None:
                    evidence.append(pod_status_line(pod))
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"kube-proxy is not answering on node {node.name} (nothing on 127.0.0.1:10256/healthz or "
                    f":10249/metrics) although {pod_ref} is scheduled there: the node's Service rules are not "
                    "maintained",
                    severity=Severity.ERROR,
                    evidence=evidence,
                    fix="Get kube-proxy running on the node (see the pod's events and previous log).",
                    commands=[*cmds_pod, command("curl", "-s", "http://127.0.0.1:10256/healthz", on=node.name)],
                )
            return
        hz = p.healthz
        metrics = p.metrics
        if hz is None and (metrics is None or LAST_SYNC not in metrics):
            # Something answered, but neither surface says anything we can read (truncated or garbled
            # output, a proxy in front, another program on the port): unknown is not healthy.
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"kube-proxy's health on node {node.name} could not be evaluated: /healthz is not kube-proxy's "
                f"JSON and /metrics has no {LAST_SYNC}",
                severity=Severity.WARNING,
                evidence=[
                    node.fact("kube-proxy/healthz.json").evidence(),
                    node.fact("kube-proxy/metrics.txt").evidence(),
                ],
                fix="Read kube-proxy's endpoints on the node directly and check what answers on those ports.",
                commands=[
                    command("curl", "-s", "http://127.0.0.1:10256/healthz", on=node.name),
                    command("curl", "-s", "http://127.0.0.1:10249/metrics", Lit("|"), "grep", LAST_SYNC, on=node.name),
                    command("ss", "-ltnp", "sport = :10256 or sport = :10249", on=node.name),
                ],
                not_evaluated=True,
            )
            return
        if hz is not None and hz.healthy is False:
            age = hz.age_seconds
            age_txt = f"{age:.0f} s" if age is not None else "unknown time"
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"kube-proxy on node {node.name} reports unhealthy (/healthz 503): its last successful update was "
                f"{age_txt} ago, so changes queued since then are not in the node's rules",
                severity=Severity.ERROR,
                evidence=[f"kube-proxy/healthz.json: {hz.raw}"],
                fix="kube-proxy is running but cannot apply updates: read its log for failed syncs "
                "(iptables-restore / nft errors, xtables lock) and its sync metrics.",
                commands=[
                    *cmds_pod,
                    command("curl", "-s", "http://127.0.0.1:10249/metrics", Lit("|"), "grep", "-E",
                            "sync_proxy_rules_(last|duration)", on=node.name),
                ],
            )
        if metrics is not None and LAST_SYNC in metrics:
            never = [s for s in metrics.get(LAST_SYNC) if s.value == 0]
            if never:
                families = ", ".join(s.labels.get("ip_family", "all") for s in never)
                healthy = hz is not None and hz.healthy is not False
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"kube-proxy on node {node.name} has never completed a sync ({families}): "
                    + ("/healthz still says healthy, which " if healthy else "")
                    + ("proves nothing before the first sync. " if healthy else "")
                    + "Either the first full sync is still running (minutes on iptables-nft at thousands of "
                    "Services: 173 s measured at 5,000) or it keeps failing",
                    severity=Severity.ERROR,
                    evidence=[f"kube-proxy/metrics.txt: {s.render()}" for s in never]
                    + ([f"kube-proxy/healthz.json: {hz.raw}"] if hz else []),
                    fix="Wait for the first sync to finish or read the log for why it fails; at large scale on "
                    "iptables-nft switch to nftables mode (see KP-SYNC-LAG).",
                    commands=[*cmds_pod, command("curl", "-s", "http://127.0.0.1:10249/metrics", Lit("|"), "grep",
                                                 LAST_SYNC, on=node.name)],
                )
        if hz is not None and hz.node_eligible is False:
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"kube-proxy on node {node.name} reports nodeEligible=false: load balancers are told not to send "
                "traffic here (node being deleted or tainted ToBeDeletedByClusterAutoscaler); expected while "
                "draining",
                severity=Severity.INFO,
                evidence=[f"kube-proxy/healthz.json: {hz.raw}"],
            )


CHECK = KubeProxyNodeHealth()
