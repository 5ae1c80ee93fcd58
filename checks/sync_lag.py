"""KP-SYNC-LAG: how long a change takes to reach the node's rules, from config, metrics and scale.

What the settings mean (kube-proxy v1.36, `pkg/proxy/runner.go` + proxiers):
an endpoint or Service change is applied on the next sync, no sooner than
`minSyncPeriod` after the previous one (default 1 s). `syncPeriod` is the retry
interval after a failure and the cap between syncs; the *forced full* resync
is hourly and is skipped entirely above 1,000 endpoints ("large cluster mode").
So the advice, repeated in many guides, to lower syncPeriod to 10 s to fix
stale routing does nothing for stale routing and costs CPU on every node.

What makes changes late in practice is the sync itself: measured with real
kube-proxy v1.36.2 on a 2-core machine, the first full sync in iptables mode on
the iptables-nft backend took 4.4 s at 1,000 Services x 10 endpoints and 173 s
at 5,000 (not finished after 10.5 min at 10,000) while /healthz said 200;
iptables-legacy took 7.2 s at 10,000, nftables mode 0.28 / 3.3 / 13.1 s at
1k / 5k / 10k.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpdoctor.checks._common import (
    KUBE_PROXY_CONFIG_DOCS,
    KUBE_PROXY_METRICS_DOCS,
    NFTABLES_BLOG,
    KubeProxyModeCheck,
)
from kpdoctor.cluster.config import format_duration
from kpdoctor.cluster.kube_proxy_node import ConfiguredMode
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.kube_proxy_http import Metrics
from kpdoctor.node_context import NodeCheckContext
from kpdoctor.shellcmd import Lit, Name, Part, command

DURATION = "kubeproxy_sync_proxy_rules_duration_seconds"
LAST_SYNC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
LAST_QUEUED = "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"
PENDING_EP = "kubeproxy_sync_proxy_rules_endpoint_changes_pending"
PENDING_SVC = "kubeproxy_sync_proxy_rules_service_changes_pending"
RESTORE_FAILURES = (
    "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
)
RULES_TOTAL = "kubeproxy_sync_proxy_rules_iptables_total"
LARGE_CLUSTER_ENDPOINTS = 1000

# First full sync of real kube-proxy v1.36.2 here (N Services x 10 endpoints): seconds.
MEASURED = {
    ("iptables", "nf_tables"): {1000: 4.4, 5000: 173.0},
    ("iptables", "legacy"): {10000: 7.2},
    ("nftables", ""): {1000: 0.28, 5000: 3.3, 10000: 13.1},
}


def estimate_first_sync(mode: str, backend: str, services: int) -> float | None:
    """Seconds, from the measured curve (iptables-nft grows ~N^2.3; the others ~linearly)."""
    if mode == "iptables" and backend == "nf_tables":
        return 4.4 * (services / 1000) ** 2.3
    if mode == "iptables" and backend == "legacy":
        return 7.2 * services / 10000
    if mode == "nftables":
        return 13.1 * services / 10000
    return None


def _by_family(metrics: Metrics, name: str) -> dict[str, float]:
    return {s.labels.get("ip_family", ""): s.value for s in metrics.get(name)}


class SyncLag(KubeProxyModeCheck):
    id = "KP-SYNC-LAG"
    title = "Changes reach the node's rules promptly (sync settings, sync metrics, cost at this scale)"
    severity = Severity.WARNING
    tags = ("kube-proxy", "iptables", "nftables", "ipvs", "performance", "common")
    reads = ("kube-proxy/", "iptables-version.txt")
    requires = ("ConfigMap", "DaemonSet", "Pod", "Service", "EndpointSlice")
    node_facts_suffice = True  # runs in node-only scans (kpdoctor.node_only)
    rationale = (
        "Stale routing after a pod is deleted is a sync that has not happened yet: a hung proxier, failing "
        "restores, or a backend whose full sync takes minutes at this cluster's size. syncPeriod is not the knob."
    )
    remediation = (
        "Fix what delays syncs (failures, lock contention, ruleset size: nftables mode at scale); do not lower "
        "syncPeriod."
    )
    catches = (
        'what `syncPeriod`/`minSyncPeriod` really mean (the "lower syncPeriod" myth), p99 sync time, '
        "queued-vs-synced gap (hung proxier), restore failures, the backend's cost at this size"
    )
    references = (KUBE_PROXY_CONFIG_DOCS, KUBE_PROXY_METRICS_DOCS, NFTABLES_BLOG,
                  "https://github.com/kubernetes/kubernetes/blob/master/pkg/proxy/iptables/proxier.go"
                  " (largeClusterEndpointsThreshold, forceSyncProxyRules)")

    def check_mode(self, ctx: NodeCheckContext, found: ConfiguredMode) -> Iterable[Finding]:
        node = ctx.node
        mode, _why, origin = found
        p = ctx.parsed
        config = (p.configz or origin.config).with_defaults()
        raw = origin.config.active_sync
        sync = config.active_sync
        src = "kube-proxy/configz.json" if p.configz else origin.origin
        pod = ctx.kube_proxy_pod
        ds = origin.daemonset.name if origin.daemonset else "kube-proxy"
        cm = origin.configmap.name if origin.configmap else "kube-proxy"
        # node-only scan: the cluster's size is unknown (0 keeps the size-dependent advice quiet)
        services, endpoints = ctx.service_load

        # --- configuration against its meaning ---
        if raw.sync_period and raw.sync_period < 30:
            large = endpoints > LARGE_CLUSTER_ENDPOINTS
            yield self.finding(
                ctx,
                f"ConfigMap kube-system/{cm}",
                f"{mode}.syncPeriod is {format_duration(raw.sync_period)}: lowering syncPeriod does not make "
                "endpoint changes apply sooner - they are applied on the next sync, no sooner than minSyncPeriod "
                f"({format_duration(sync.min_sync_period)}) after the previous one. syncPeriod is the retry "
                "interval and the cap between syncs; the forced full resync is hourly"
                + (f" and skipped here ({endpoints} endpoints > 1,000: large cluster mode)" if large else "")
                + ". A low value only adds CPU load on every node",
                severity=Severity.INFO,
                evidence=[f"{src}: {mode}.syncPeriod {format_duration(sync.sync_period)}, minSyncPeriod "
                          f"{format_duration(sync.min_sync_period)}"],
                fix="Leave syncPeriod at 30s; if changes are late, look at sync duration and failures.",
                commands=[command("kubectl", "-n", "kube-system", "edit", "configmap", Name(cm),
                                  note=f"{mode}.syncPeriod: 30s")],
            )
        if sync.min_sync_period > 10:
            yield self.finding(
                ctx,
                f"ConfigMap kube-system/{cm}",
                f"{mode}.minSyncPeriod is {format_duration(sync.min_sync_period)}: every endpoint change (a pod "
                "deleted, a rollout) waits up to that long before node rules follow, so connections keep going to "
                "removed pods meanwhile",
                severity=Severity.WARNING,
                evidence=[f"{src}: {mode}.minSyncPeriod {format_duration(sync.min_sync_period)}"],
                fix="Use the default 1s unless the ruleset is so large that syncs must be batched; then prefer "
                "nftables mode, whose syncs are cheap.",
                commands=[command("kubectl", "-n", "kube-system", "edit", "configmap", Name(cm),
                                  note=f"{mode}.minSyncPeriod: 1s"),
                          command("kubectl", "-n", "kube-system", "rollout", "restart", "daemonset", Name(ds))],
            )

        # --- metrics ---
        metrics = p.metrics
        if metrics is not None:
            yield from self._metrics(ctx, metrics, p.healthz.current_time.timestamp()
                                     if p.healthz and p.healthz.current_time else None,
                                     sync.sync_period, pod.key if pod else None)

        # --- cost of the backend at this size ---
        backend = p.iptables_version.backend if (mode == "iptables" and p.iptables_version) else ""
        est = estimate_first_sync(mode, backend, services)
        if mode == "iptables" and backend == "nf_tables" and services > 1000 and est is not None:
            rules = metrics.value(RULES_TOTAL) if metrics is not None else None
            p99 = metrics.histogram_quantile(0.99, DURATION) if metrics is not None else None
            severity = Severity.ERROR if services >= 5000 else Severity.WARNING
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"iptables mode on the iptables-nft backend with {services} Services: a full sync (first start, "
                f"restart, or after a failed partial sync) is expected to take ~{est:.0f} s here (real kube-proxy "
                "v1.36.2 measured 4.4 s at 1,000 and 173 s at 5,000 Services x 10 endpoints; at 10,000 it had not "
                "finished after 10.5 minutes while /healthz said 200). Endpoint changes queued behind such a sync "
                "wait minutes: stale routing after pod deletion is expected at this size",
                severity=severity,
                evidence=[f"cluster: {services} Services, {endpoints} endpoints",
                          f"iptables-version.txt: {(node.text('iptables-version.txt') or '').strip()}",
                          f"kube-proxy/proxyMode.txt: {p.proxy_mode or '(not answering)'}"]
                + ([f"kube-proxy/metrics.txt: {RULES_TOTAL} = {rules:.0f}"] if rules is not None else [])
                + ([f"kube-proxy/metrics.txt: p99 {DURATION} = {p99:.2f} s"] if p99 is not None else []),
                fix="Switch this node pool to nftables mode (13 s for a full sync at 10,000 Services measured "
                "here), or at least to the iptables-legacy backend (7.2 s at 10,000); do not lower syncPeriod.",
                commands=[command("kubectl", "-n", "kube-system", "edit", "configmap", Name(cm), note="mode: nftables"),
                          command("kubectl", "-n", "kube-system", "rollout", "restart", "daemonset", Name(ds))],
            )

    def _metrics(self, ctx: NodeCheckContext, metrics: Metrics, now: float | None, sync_period: float,
                 pod_key: str | None) -> Iterable[Finding]:
        node = ctx.node
        logs_argv: tuple[Part, ...] = ("kubectl", "-n", "kube-system", "logs", *([Name(pod_key.split("/", 1)[-1])] if pod_key else []))
        logs = command(*logs_argv)
        curl = command("curl", "-s", "http://127.0.0.1:10249/metrics", Lit("|"), "grep", "sync_proxy_rules", on=node.name)
        p99 = metrics.histogram_quantile(0.99, DURATION)
        if p99 is not None and p99 > 10:
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"kube-proxy on node {node.name}: p99 sync duration {p99:.1f} s - every change waits at least "
                "this long, more when changes queue behind a running sync",
                severity=Severity.ERROR if p99 > 60 else Severity.WARNING,
                evidence=[f"kube-proxy/metrics.txt: histogram_quantile(0.99, {DURATION}) = {p99:.2f} s"],
                fix="Shrink the cost of a sync: nftables mode at scale, fewer Services per node pool, no other "
                "process contending for the xtables lock.",
                commands=[curl],
            )
        synced = _by_family(metrics, LAST_SYNC)
        queued = _by_family(metrics, LAST_QUEUED)
        pending = (metrics.value(PENDING_EP) or 0) + (metrics.value(PENDING_SVC) or 0)
        threshold = max(60.0, 2 * sync_period)
        for family, q in sorted(queued.items()):
            s = synced.get(family)
            if s is None or s <= 0 or q <= s or now is None:
                continue
            waiting = now - q
            if waiting > threshold:
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"kube-proxy on node {node.name} ({family or 'all families'}) has had an update queued for "
                    f"{waiting:.0f} s without completing a sync (last sync {now - s:.0f} s ago, pending changes "
                    f"{pending:.0f}): the proxier is hung or its syncs keep failing",
                    severity=Severity.ERROR,
                    evidence=[f"kube-proxy/metrics.txt: {LAST_QUEUED}{{ip_family=\"{family}\"}} {q:.3f}",
                              f"kube-proxy/metrics.txt: {LAST_SYNC}{{ip_family=\"{family}\"}} {s:.3f}",
                              f"kube-proxy/healthz.json currentTime: {now:.3f}"],
                    fix="Read the log for failing or endless syncs; a restart of the pod forces a full resync.",
                    commands=[logs, curl],
                )
        for name in RESTORE_FAILURES:
            value = metrics.value(name)
            if value:
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"kube-proxy on node {node.name} counted {value:.0f} failed iptables-restore runs ({name}): "
                    "each failure leaves the rules at the previous state until a retry after syncPeriod succeeds",
                    severity=Severity.WARNING,
                    evidence=[f"kube-proxy/metrics.txt: {s.render()}" for s in metrics.get(name)],
                    fix="Find the failing rule or the lock holder in the log (KP-PROXY-HEALTH quotes it).",
                    commands=[command(*logs_argv, Lit("|"), "grep", "-E", "iptables-restore|Sync failed|xtables"), curl],
                )


CHECK = SyncLag()
