"""KP-PROXY-HEALTH: every kube-proxy DaemonSet ready, no pod crash-looping, no failed syncs in the logs.

A node whose kube-proxy is not running keeps the rules of its last sync: the
node does not go dark, it goes *stale*, and the first symptom users see is a
Service that works from some nodes and not from others. So the DaemonSet count,
each pod's restarts and exit reason, and the log lines of failed syncs are the
first things a sig-network engineer reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from kpdoctor.checks._common import KUBE_PROXY_CLI_DOCS, exit_code_meaning, pod_status_line, shorten
from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.cluster.model import Pod
from kpdoctor.findings import Finding, Severity
from kpdoctor.shellcmd import Lit, Name, command

# Log lines that mean a sync failed or kube-proxy cannot run (kube-proxy v1.2x-v1.36 wording).
_FAILURES: tuple[tuple[re.Pattern[str], str, Severity], ...] = (
    (re.compile(r"Failed to execute iptables-restore"), "iptables-restore failed", Severity.ERROR),
    (re.compile(r"holding the xtables lock|xtables lock"), "xtables lock contention", Severity.WARNING),
    (re.compile(r'"Sync failed"'), "sync failed (retried after syncPeriod)", Severity.ERROR),
    (re.compile(r"nftables sync failed|Failed to run nft\b|\"nft\" failed", re.I), "nft failed", Severity.ERROR),
    (re.compile(r'"Error running ProxyServer"|"command failed"'), "kube-proxy exited on an error", Severity.ERROR),
    (re.compile(r"Failed to ensure chain exists|Failed to ensure that .* chain"), "chain setup failed",
     Severity.ERROR),
)
# Known-harmless lines that look like failures (see tests/fixtures/bundles/README.md).
_HARMLESS = (
    re.compile(r"Failed to list existing nftables objects"),
    re.compile(r"oom_score_adj|Failed to apply OOMScore"),
)


def scan_log(text: str) -> list[tuple[str, str, Severity]]:
    """(what, line, severity) per failure line, in log order; continuation lines of a harmless error skipped."""
    out: list[tuple[str, str, Severity]] = []
    skip_continuation = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        if raw[:1] in ("\t", " ") and skip_continuation:
            continue
        skip_continuation = False
        if any(h.search(line) for h in _HARMLESS):
            skip_continuation = True
            continue
        for pattern, what, severity in _FAILURES:
            if pattern.search(line):
                out.append((what, shorten(line), severity))
                break
    return out


class KubeProxyHealth(Check):
    id = "KP-PROXY-HEALTH"
    title = "kube-proxy DaemonSets ready, pods not crash-looping, no failed syncs"
    scope = "cluster"
    severity = Severity.ERROR
    tags = ("kube-proxy", "iptables", "nftables", "ipvs", "common")
    requires = ("DaemonSet", "Pod")
    rationale = (
        "A node without a running kube-proxy keeps the rules of its last sync: Services break on that node only, "
        "and get worse with every endpoint change. Several DaemonSets (one per pool or mode, each with its own "
        "ConfigMap) are normal; each must be fully ready."
    )
    remediation = (
        "Read why the pod stopped (describe, previous log), fix the cause (memory limit, config, kernel support), "
        "and keep the node out of service until kube-proxy has synced again."
    )
    catches = (
        "every kube-proxy DaemonSet (one per node pool or mode is normal) desired vs ready, crash-looping"
        " pods, failed syncs in logs (`iptables-restore` failures, xtables lock)"
    )
    references = (
        KUBE_PROXY_CLI_DOCS,
        "https://kubernetes.io/docs/tasks/debug/debug-application/debug-service/#is-the-kube-proxy-working",
    )

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        cluster = ctx.cluster
        for ds in cluster.kube_proxy_daemonsets:
            if ds.desired and ds.ready < ds.desired:
                pods = [p for p in cluster.kube_proxy_pods if p.owner_name == ds.name and p.namespace == ds.namespace]
                bad = [p for p in pods if not p.ready]
                nodes = ", ".join(sorted(p.node_name or "?" for p in bad)) or "unknown nodes"
                yield self.finding(
                    ctx,
                    f"DaemonSet {ds.key}",
                    f"DaemonSet {ds.key} has {ds.ready} of {ds.desired} kube-proxy pods ready: "
                    f"Service rules on {nodes} are not being updated",
                    severity=Severity.ERROR,
                    evidence=[
                        f"DaemonSet {ds.key}: desired {ds.desired}, current {ds.current}, ready {ds.ready}, "
                        f"available {ds.available}, updated {ds.updated}",
                        *(pod_status_line(p) for p in bad[:5]),
                    ],
                    fix="Fix the pods that are not ready (see the pod findings); until then the nodes listed "
                    "serve Service traffic from frozen rules.",
                    commands=[
                        command("kubectl", "-n", Name(ds.namespace), "rollout", "status", "daemonset", Name(ds.name)),
                        command("kubectl", "-n", Name(ds.namespace), "get", "pods", "-o", "wide", "-l",
                                "k8s-app=kube-proxy"),
                    ],
                )
        for pod in cluster.kube_proxy_pods:
            yield from self._pod(ctx, pod)

    def _pod(self, ctx: CheckContext, pod: Pod) -> Iterator[Finding]:
        log = ctx.cluster.logs.get(pod.key)
        failures = scan_log(log) if log else []
        statuses = pod.container_statuses
        waiting = next((c for c in statuses if c.state == "waiting" and c.reason), None)
        restarts = pod.restart_count
        last = next((c for c in statuses if c.last_exit_code is not None), None)
        ns, name, node = pod.namespace, pod.name, pod.node_name or "?"
        log_cmd = command("kubectl", "-n", Name(ns), "logs", Name(name), *(["--previous"] if restarts or waiting else []))
        meaning = exit_code_meaning(last.last_exit_code, last.last_reason) if last else ""
        evidence = [pod_status_line(pod)]
        evidence += [f"cluster/logs/{pod.key}.log: {line}" for _what, line, _sev in failures[-3:]]
        if (waiting is not None and waiting.reason in ("CrashLoopBackOff", "Error", "CreateContainerConfigError",
                                                        "ImagePullBackOff", "ErrImagePull")) or (
            pod.phase not in ("Running", "") or (statuses and not pod.ready)
        ):
            state = waiting.reason if waiting is not None else (pod.phase or "not ready")
            cause = f" ({meaning})" if meaning else ""
            logged = f"; its log ends with: {failures[-1][1]}" if failures else ""
            exited = any(what == "kube-proxy exited on an error" for what, _l, _s in failures)
            impact = (
                "kube-proxy exits before programming anything, so the node has no up-to-date Service rules"
                if exited
                else "The node keeps the rules of its last successful sync; every Service or endpoint change "
                "since then is missing there"
            )
            yield self.finding(
                ctx,
                f"Pod {pod.key}",
                f"kube-proxy on node {node} is not running: pod {name} is {state}, restarted {restarts} times"
                f"{cause}{logged}. {impact}",
                severity=Severity.ERROR,
                evidence=evidence,
                fix=(
                    "Find out why kube-proxy stops and fix that cause; kube-proxy does a full resync when it "
                    "starts and stays up. Until then take the node out of service. Do not hand-edit KUBE-* rules."
                ),
                commands=[
                    command("kubectl", "-n", Name(ns), "describe", "pod", Name(name)),
                    log_cmd,
                    command("kubectl", "cordon", Name(node)),
                    command("curl", "-s", "http://127.0.0.1:10256/healthz", on=node, note=", once the pod runs"),
                ],
            )
            return
        if restarts > 0:
            cause = f" ({meaning})" if meaning else ""
            yield self.finding(
                ctx,
                f"Pod {pod.key}",
                f"kube-proxy pod {name} on node {node} is running but has restarted {restarts} times{cause}",
                severity=Severity.WARNING,
                evidence=evidence,
                fix="Read the previous container's log and the pod events for the cause of the restarts.",
                commands=[command("kubectl", "-n", Name(ns), "describe", "pod", Name(name)),
                          command("kubectl", "-n", Name(ns), "logs", Name(name), "--previous")],
            )
        if failures:
            worst = max(sev for _w, _l, sev in failures)
            kinds = sorted({what for what, _l, _s in failures})
            yield self.finding(
                ctx,
                f"Pod {pod.key}",
                f"kube-proxy on node {node} logged {len(failures)} failed-sync line(s) ({', '.join(kinds)}): "
                "rules on that node may lag behind the API until a sync succeeds",
                severity=worst,
                evidence=evidence,
                fix=(
                    "iptables-restore failures: read the failing line in the error (a rule the kernel rejects, a "
                    "missing module or nfacct object); xtables lock: find the other writer (a CNI, a firewall "
                    "daemon) holding /run/xtables.lock. kube-proxy retries after syncPeriod."
                ),
                commands=[
                    command("kubectl", "-n", Name(ns), "logs", Name(name), Lit("|"), "grep", "-E",
                            "iptables-restore|Sync failed|xtables|nft"),
                    command("curl", "-s", "http://127.0.0.1:10249/metrics", Lit("|"), "grep", "-E",
                            "restore_failures|last_timestamp", on=node),
                ],
            )


CHECK = KubeProxyHealth()
