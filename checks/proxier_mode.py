"""KP-PROXIER-MODE: the mode the node's own config asks for is the one kube-proxy runs and the node shows.

Three sources must agree: the ConfigMap the node's kube-proxy pod mounts (pod ->
DaemonSet -> ConfigMap; clusters often run several), what the running process
says (`/proxyMode`, the "Using ... Proxier" log line), and the dataplane the
node actually carries. On top, two modes have hard preconditions (IPVS: the
kernel's IPVS; nftables: kernel >= 5.13, nft >= 1.0.1) and iptables mode has a
scale ceiling worth saying out loud, with the cluster's own numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpdoctor.checks._common import (
    KUBE_PROXY_CONFIG_DOCS,
    KUBE_PROXY_DOCS,
    MODE_UNUSABLE_LOG,
    NFTABLES_BLOG,
    KubeProxyModeCheck,
    absence_shown,
)
from kpdoctor.cluster.kube_proxy_node import ConfiguredMode, logged_mode
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node_context import NodeCheckContext
from kpdoctor.service_proxy import presence
from kpdoctor.shellcmd import Lit, Name, command

SCALE_SERVICES = 1000
NFT_MIN_KERNEL = (5, 13)
NFT_MIN_NFT = (1, 0, 1)
_IPVS_FAILED = MODE_UNUSABLE_LOG["ipvs"]


class ProxierMode(KubeProxyModeCheck):
    id = "KP-PROXIER-MODE"
    title = "kube-proxy runs the configured proxier mode, and the mode fits the node and the cluster"
    severity = Severity.ERROR
    tags = ("kube-proxy", "iptables", "nftables", "ipvs", "common")
    reads = ("kube-proxy/", "iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt", "nft-ruleset.json", "ipvsadm-save.txt",
             "proc-modules.txt", "modules-builtin.txt", "proc-net-ip_vs.txt", "uname-r.txt")
    requires = ("ConfigMap", "DaemonSet", "Pod")
    rationale = (
        "A ConfigMap edit without a pod restart, a kernel without IPVS, or nftables mode on an old kernel all "
        "leave the node running something other than what the cluster's config says - or nothing at all."
    )
    remediation = "Set a mode the node supports in the node's own kube-proxy ConfigMap and restart its DaemonSet."
    catches = (
        "configured (the node's own ConfigMap; `\"\"` = iptables in v1.36) vs `/proxyMode` vs log vs dataplane; "
        "IPVS configured but unusable; nftables preconditions; scale advice with the cluster's counts"
    )
    references = (KUBE_PROXY_DOCS, KUBE_PROXY_CONFIG_DOCS, NFTABLES_BLOG,
                  "https://github.com/kubernetes/kubernetes/pull/111806 (IPVS: no fallback)")

    def check_mode(self, ctx: NodeCheckContext, found: ConfiguredMode) -> Iterable[Finding]:
        node = ctx.node
        mode, why, origin = found
        p = ctx.parsed
        log = ctx.kube_proxy_log
        used = logged_mode(log)
        cm = origin.configmap
        cm_name = cm.name if cm else "kube-proxy"
        ds_name = origin.daemonset.name if origin.daemonset else "kube-proxy"
        cm_ref = f"{origin.origin}: {why}"
        version = ctx.kube_proxy_version
        restart = command("kubectl", "-n", "kube-system", "rollout", "restart", "daemonset", Name(ds_name))
        edit = command("kubectl", "-n", "kube-system", "edit", "configmap", Name(cm_name))

        # 1. configured vs what the process reports
        actual = p.proxy_mode or (used[0] if used else None)
        if p.proxy_mode and p.proxy_mode != mode:
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"kube-proxy on node {node.name} runs in {p.proxy_mode} mode but its ConfigMap {cm_name} says "
                f"{mode}: the pod was not restarted after the ConfigMap changed, or a flag overrides it",
                severity=Severity.WARNING,
                evidence=[cm_ref, f"kube-proxy/proxyMode.txt: {p.proxy_mode}"]
                + ([f"log: {used[1]}"] if used else []),
                fix="Restart the DaemonSet so the pods read the ConfigMap again (and remove any --proxy-mode "
                "flag that disagrees); expect a full resync and leftover rules of the old mode (KP-LEFTOVER-RULES).",
                commands=[restart, command("curl", "-s", "http://127.0.0.1:10249/proxyMode", on=node.name)],
            )

        # 2. IPVS configured but unusable
        if mode == "ipvs":
            yield from self._ipvs(ctx, p, log, cm_ref, edit, restart, version)

        # 3. nftables preconditions
        if mode == "nftables":
            if p.kernel is not None and p.kernel[:2] < NFT_MIN_KERNEL:
                kernel = ".".join(map(str, p.kernel))
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"node {node.name} runs kernel {kernel}, older than the 5.13 that kube-proxy's nftables mode "
                    "needs: kube-proxy cannot program its rules there",
                    severity=Severity.ERROR,
                    evidence=[cm_ref, f"uname-r.txt: {(node.text('uname-r.txt') or '').strip()}"],
                    fix="Upgrade the node's kernel to >= 5.13, or use mode iptables for this node pool "
                    "(a separate DaemonSet/ConfigMap per pool is fine).",
                    commands=[edit, restart],
                )
            if p.nft_version is not None and p.nft_version < NFT_MIN_NFT:
                nft = ".".join(map(str, p.nft_version))
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"nft on node {node.name} is {nft}, older than the 1.0.1 kube-proxy's nftables mode needs",
                    severity=Severity.ERROR,
                    evidence=[cm_ref, f"nft version {nft}"],
                    fix="Use a kube-proxy image with nft >= 1.0.1 (the official image ships one).",
                )

        # 4. dataplane of another mode while kube-proxy answers
        if actual and p.has("kube-proxy/proxyMode.txt"):
            pres = presence(p)
            shows = pres.modes()
            if shows and actual not in shows:
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"kube-proxy on node {node.name} runs in {actual} mode but the node carries only "
                    f"{', '.join(shows)} kube-proxy state: its own rules are missing",
                    severity=Severity.ERROR,
                    evidence=[e for e in (f"kube-proxy/proxyMode.txt: {actual}", pres.iptables,
                                          pres.iptables_legacy, pres.nftables, pres.ipvs) if e],
                    fix="Check kube-proxy's log for failed syncs; see KP-STALE-ENDPOINTS and KP-LEFTOVER-RULES.",
                )

        # 5. scale advice for iptables mode
        if mode == "iptables":
            services, endpoints = ctx.service_load
            if services > SCALE_SERVICES:
                new_enough = version is None or version >= (1, 31)
                target = "nftables" if new_enough else "IPVS (nftables is GA from v1.33, beta from v1.31)"
                backend = p.iptables_version.backend if p.iptables_version else ""
                yield self.finding(
                    ctx,
                    f"Node {node.name}",
                    f"iptables mode with {services} Services and {endpoints} endpoints: above ~1,000 Services "
                    "every sync rewrites a ruleset that grows with the cluster and every new connection walks "
                    "KUBE-SERVICES linearly. Measured with real kube-proxy v1.36.2: first full sync 4.4 s at 1,000 "
                    "Services and 173 s at 5,000 on iptables-nft; nftables mode 0.28 s / 3.3 s / 13.1 s at "
                    f"1k / 5k / 10k. Consider {target}",
                    severity=Severity.WARNING,
                    evidence=[cm_ref, f"cluster: {services} proxied Services, {endpoints} endpoints"]
                    + ([f"iptables-version.txt: {p.iptables_version.raw}"] if p.iptables_version and backend else []),
                    fix=f"Plan a move to {target}: set mode in ConfigMap {cm_name}, roll the DaemonSet node pool "
                    "by node pool, and let kube-proxy clean the old mode's rules (it does on start).",
                    commands=[edit, restart],
                )

    def _ipvs(self, ctx: NodeCheckContext, p: ParsedNode, log: str | None, cm_ref: str, edit: str, restart: str,
              version: tuple[int, int] | None) -> Iterable[Finding]:
        node = ctx.node
        failure_lines = [line.strip() for line in (log or "").splitlines() if any(s in line for s in _IPVS_FAILED)]
        # Positive evidence of IPVS wins over a missing fact: virtual servers listed, kube-ipvs0, the module.
        has_ipvs = p.has("proc-net-ip_vs.txt") or bool(p.ipvs_services) or bool(
            (p.loaded_modules or set()) & {"ip_vs"} or (p.builtin_modules or set()) & {"ip_vs"}
        ) or any(i.name == "kube-ipvs0" for i in p.interfaces or ())
        if has_ipvs and not failure_lines:
            return
        if not failure_lines and not absence_shown(ctx, "ipvs", p):
            yield self.finding(
                ctx, f"Node {node.name}",
                f"not evaluated: whether node {node.name}'s kernel has IPVS for the configured IPVS mode (no "
                "/proc/net/ip_vs, module list or kube-proxy log was collected)",
                severity=Severity.INFO, evidence=[cm_ref, node.fact("proc-net-ip_vs.txt").evidence()],
                fix="Collect proc-net-ip_vs.txt, proc-modules.txt and modules-builtin.txt (`kpdoctor collect`).",
                not_evaluated=True,
            )
            return
        exits = version is None or version >= (1, 26)
        consequence = (
            "kube-proxy >= 1.26 does not fall back to iptables: it exits (status 1) on every start, so the node "
            "has no Service rules at all and the pod crash-loops"
            if exits
            else "kube-proxy < 1.26 silently falls back to iptables mode (the 'IPVS not activating' symptom)"
        )
        evidence = [cm_ref]
        evidence += [f"kube-proxy log: {line}" for line in failure_lines[-3:]]
        if not p.has("proc-net-ip_vs.txt") and "proc-net-ip_vs.txt" in node.facts:
            evidence.append("proc-net-ip_vs.txt: absent (/proc/net/ip_vs does not exist: no IPVS in the kernel)")
        elif not p.has("proc-net-ip_vs.txt"):
            evidence.append("proc-net-ip_vs.txt: not collected")
        if p.loaded_modules is not None and "ip_vs" not in p.loaded_modules:
            evidence.append("proc-modules.txt: no ip_vs loaded")
        if p.builtin_modules is not None and "ip_vs" not in p.builtin_modules:
            evidence.append("modules-builtin.txt: ip_vs not built in")
        if p.proxy_mode:
            evidence.append(f"kube-proxy/proxyMode.txt: {p.proxy_mode}")
        yield self.finding(
            ctx,
            f"Node {node.name}",
            f"kube-proxy on node {node.name} is configured for IPVS but the node's kernel has no usable IPVS: "
            + consequence,
            severity=Severity.CRITICAL if exits else Severity.ERROR,
            evidence=evidence,
            fix=(
                "Use a mode this kernel supports: nftables (recommended on v1.31+; IPVS is deprecated upstream) "
                "or iptables. Only if IPVS is really required: a kernel with CONFIG_IP_VS and its schedulers, "
                "modules ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack loaded at boot, /proc/net/ip_vs present."
            ),
            commands=[
                f"{edit}   # set mode: nftables",
                restart,
                command("curl", "-s", "http://127.0.0.1:10249/proxyMode", on=node.name, note=": expect nftables"),
                command("ls", "/proc/net/ip_vs", Lit("&&"), "modprobe", "-n", "-v", "ip_vs", "ip_vs_rr", on=node.name,
                        note=", only if IPVS is required"),
            ],
        )


CHECK = ProxierMode()
