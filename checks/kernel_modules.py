"""KP-KERNEL-MODULES: the kernel provides what the node's configured proxier mode needs.

"Is the module loaded?" is the wrong question: a kernel can build everything in
(no `/proc/modules` at all, as on this machine), and a modular kernel loads
netfilter extensions on first use. So each requirement counts as met when any
evidence shows the kernel has it: loaded (`/proc/modules`), built in
(`modules.builtin`), registered (`/proc/net/ip_tables_matches|targets`), its
`/proc/net` file exists (`/proc/net/ip_vs`), or the node's current rules use it
(the kernel accepted them). Only a requirement with no evidence at all fails.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpdoctor.checks._common import KUBE_PROXY_DOCS, KubeProxyModeCheck, absence_shown
from kpdoctor.cluster.kube_proxy_node import ConfiguredMode
from kpdoctor.findings import Finding, Severity
from kpdoctor.kernel_requirements import Requirement, evaluate, requirements
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node_context import NodeCheckContext
from kpdoctor.shellcmd import Lit, command


def _has_kernel_facts(p: ParsedNode) -> bool:
    keys = ("uname-r.txt", "sysctl.txt", "proc-modules.txt", "modules-builtin.txt", "ip_tables_matches.txt")
    return any(p.has(k) for k in keys)


class KernelModules(KubeProxyModeCheck):
    id = "KP-KERNEL-MODULES"
    title = "The kernel provides what the configured proxier mode needs"
    severity = Severity.ERROR
    tags = ("kernel", "iptables", "nftables", "ipvs")
    reads = ("uname-r.txt", "sysctl.txt", "proc-modules.txt", "modules-builtin.txt", "ip_tables_matches.txt")
    requires = ("ConfigMap", "DaemonSet", "Pod")
    node_facts_suffice = True  # runs in node-only scans (kpdoctor.node_only)
    rationale = (
        "IPVS mode needs ip_vs and the scheduler's module; iptables mode the tables, matches and targets its "
        "rules use; nftables mode nf_tables. A kernel may build them in (no /proc/modules), so built-ins and "
        "/proc/net probes count as present."
    )
    remediation = "Load the missing modules at boot (modules-load.d) or choose a mode the kernel supports."
    catches = (
        "what the mode needs, counting built-ins (`modules.builtin`, `/proc/net/*`): a kernel with "
        "everything built in passes"
    )
    references = (
        KUBE_PROXY_DOCS,
        "https://github.com/kubernetes/kubernetes/blob/master/pkg/proxy/ipvs/README.md",
        "https://www.kernel.org/doc/html/latest/admin-guide/kernel-parameters.html",
    )

    def check_mode(self, ctx: NodeCheckContext, found: ConfiguredMode) -> Iterable[Finding]:
        node = ctx.node
        mode, why, origin = found
        p = ctx.parsed
        if not _has_kernel_facts(p):
            yield self.finding(
                ctx, f"Node {node.name}", f"kernel facts of node {node.name} were not collected",
                severity=Severity.INFO, evidence=[node.fact("uname-r.txt").evidence()], not_evaluated=True,
            )
            return
        scheduler = origin.config.ipvs_scheduler
        missing_hard: list[Requirement] = []
        missing_soft: list[Requirement] = []
        for req in requirements(mode, p, scheduler):
            if evaluate(req, p):
                continue
            (missing_hard if req.hard else missing_soft).append(req)
        sources = [
            node.fact(k).evidence() if p.has(k) else f"{k}: absent"
            for k in ("proc-modules.txt", "modules-builtin.txt", "proc-net-ip_vs.txt")
        ]
        kernel = (node.text("uname-r.txt") or "?").strip()
        modules = sorted({m for r in missing_hard + missing_soft for m in r.modules[:1]})
        load = command("modprobe", "-a", *modules, on=node.name)
        persist = command("printf", "%s\\n", *modules, Lit(">"), "/etc/modules-load.d/kube-proxy.conf", on=node.name)
        shown = absence_shown(ctx, mode, p) if missing_hard else []
        if missing_hard and not shown:
            names = ", ".join(r.what for r in missing_hard)
            yield self.finding(
                ctx, f"Node {node.name}",
                f"not evaluated: no evidence that node {node.name} (kernel {kernel}) has {names} for {mode} mode, "
                "and none that it lacks it (the facts that would show it were not collected)",
                severity=Severity.INFO, evidence=[f"{origin.origin}: {why}", *sources], not_evaluated=True,
                fix="Collect proc-modules.txt and modules-builtin.txt (and, for IPVS, proc-net-ip_vs.txt) from the "
                "node: `kpdoctor collect` gathers them.",
            )
        elif missing_hard:
            names = ", ".join(r.what for r in missing_hard)
            advice = (
                " kube-proxy cannot run in this mode here; use nftables (or iptables) mode, or a kernel with IPVS."
                if mode == "ipvs"
                else ""
            )
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"node {node.name} (kernel {kernel}) lacks what {mode} mode needs: {names} - not loaded, not built "
                f"in, and no /proc/net or rule evidence of it.{advice}",
                severity=Severity.ERROR,
                evidence=[f"{origin.origin}: {why}", f"uname-r.txt: {kernel}", *sources, *shown],
                fix="Load the modules (and persist them), or switch the node's kube-proxy to a mode the kernel "
                "supports.",
                commands=[load, persist, command("ls", "/proc/net/ip_vs", Lit("/lib/modules/$(uname -r)/modules.builtin"), on=node.name)]
                if mode == "ipvs"
                else [load, persist],
            )
        if missing_soft:
            modular = p.loaded_modules is not None
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"node {node.name}: no evidence of {', '.join(r.what for r in missing_soft)} used by {mode} mode"
                + ("; a modular kernel loads them on first use if the module files exist" if modular else ""),
                severity=Severity.INFO,  # no evidence is not proof of absence: the kernel may build it in
                evidence=[f"{origin.origin}: {why}", *sources],
                fix="Make sure the modules exist for this kernel (modprobe -n) or are built in.",
                commands=[command("modprobe", "-n", "-v", *modules, on=node.name)],
            )


CHECK = KernelModules()
