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

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kpdoctor.analysis import fact_contains, iptables_rules_key, parsed
from kpdoctor.checks._common import KUBE_PROXY_DOCS, absence_shown, expected_mode, unknown_kube_proxy
from kpdoctor.checks_api import Check, CheckContext
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node_only import is_node_only
from kpdoctor.shellcmd import Lit, command

Probe = Callable[[ParsedNode], str]


@dataclass(frozen=True)
class Requirement:
    what: str  # human name
    modules: tuple[str, ...]  # any of these module names satisfies it
    probes: tuple[Probe, ...] = ()
    hard: bool = True  # False: an extension a modular kernel loads on first use


def _fact(key: str, why: str) -> Probe:
    return lambda p: f"{key}: {why}" if p.has(key) else ""


def _sysctl(key: str) -> Probe:
    return lambda p: f"sysctl.txt: {key} exists" if key in p.sysctl else ""


def _listed(attr: str, name: str, key: str) -> Probe:
    def probe(p: ParsedNode) -> str:
        values = getattr(p, attr)
        return f"{key}: lists {name}" if values is not None and name in values else ""

    return probe


def _rule_uses(token: str) -> Probe:
    def probe(p: ParsedNode) -> str:
        key = iptables_rules_key(p)
        if key is None:
            return ""
        return f"{key}: the kernel holds rules using '{token.strip()}'" if fact_contains(p, key, token) else ""

    return probe


def _nft_ok(p: ParsedNode) -> str:
    if p.nft is not None and p.nft.valid and p.state.text("nft-ruleset.json"):
        return "nft-ruleset.json: nft listed the ruleset (nf_tables answers)"
    return ""


def _nft_table(p: ParsedNode) -> str:
    if p.nft is not None and p.nft.has_table("ip", "kube-proxy"):
        return "nft-ruleset.json: table ip kube-proxy is loaded"
    return ""


def _ipvsadm_sched(sched: str) -> Probe:
    def probe(p: ParsedNode) -> str:
        hits = [s for s in p.ipvs_services or () if f"-s {sched}" in s]
        return f"ipvsadm-save.txt: virtual servers use scheduler {sched}" if hits else ""

    return probe


CONNTRACK = Requirement("connection tracking", ("nf_conntrack",),
                        (_sysctl("net.netfilter.nf_conntrack_max"), _fact("conntrack-stats.txt", "conntrack -S works")))


def _xt(kind: str, name: str, modules: tuple[str, ...], token: str) -> Requirement:
    attr = "ip_tables_matches" if kind == "match" else "ip_tables_targets"
    key = "ip_tables_matches.txt" if kind == "match" else "ip_tables_targets.txt"
    return Requirement(f"iptables {kind} {name}", modules, (_listed(attr, name, key), _rule_uses(token)), hard=False)


IPTABLES_EXTENSIONS = (
    _xt("match", "comment", ("xt_comment",), "-m comment"),
    _xt("match", "conntrack", ("xt_conntrack",), "-m conntrack"),
    _xt("match", "statistic", ("xt_statistic",), "-m statistic"),
    _xt("match", "mark", ("xt_mark",), "-m mark"),
    _xt("match", "addrtype", ("xt_addrtype",), "-m addrtype"),
    _xt("match", "recent", ("xt_recent",), "-m recent"),
    _xt("target", "DNAT", ("xt_nat", "ipt_DNAT"), "-j DNAT"),
    _xt("target", "MASQUERADE", ("xt_MASQUERADE", "ipt_MASQUERADE"), "-j MASQUERADE"),
    _xt("target", "MARK", ("xt_mark", "xt_MARK"), "-j MARK"),
    _xt("target", "REJECT", ("ipt_REJECT", "nft_reject_ipv4"), "-j REJECT"),
)


def requirements(mode: str, p: ParsedNode, scheduler: str) -> list[Requirement]:
    if mode == "ipvs":
        sched = scheduler or "rr"
        return [
            Requirement("IPVS (ip_vs)", ("ip_vs",),
                        (_fact("proc-net-ip_vs.txt", "/proc/net/ip_vs exists"),
                         _fact("ipvsadm-save.txt", "ipvsadm could talk to IPVS"))),
            Requirement(f"IPVS scheduler {sched} (ip_vs_{sched})", (f"ip_vs_{sched}",), (_ipvsadm_sched(sched),)),
            CONNTRACK,
            Requirement("ipset (ip_set)", ("ip_set",), (_fact("ipset-list.txt", "ipset list answered (ip_set)"),),
                        hard=False),
        ]
    if mode == "nftables":
        return [
            Requirement("nf_tables", ("nf_tables",), (_nft_ok,)),
            CONNTRACK,
            Requirement("nftables NAT (nft_nat)", ("nft_nat",), (_nft_table,), hard=False),
            Requirement("nftables random numbers (nft_numgen)", ("nft_numgen",), (_nft_table,), hard=False),
            Requirement("nftables conntrack expression (nft_ct)", ("nft_ct",), (_nft_table,), hard=False),
        ]
    backend = p.iptables_version.backend if p.iptables_version else ""
    reqs: list[Requirement] = []
    if backend == "legacy":
        reqs.append(Requirement("legacy iptables (ip_tables)", ("ip_tables",),
                                (_fact("ip_tables_names.txt", "/proc/net/ip_tables_names exists"),)))
        reqs.append(Requirement("legacy nat table (iptable_nat)", ("iptable_nat",),
                                (_listed("ip_tables_names", "nat", "ip_tables_names.txt"),), hard=False))
    else:
        reqs.append(Requirement("nf_tables (iptables-nft backend)", ("nf_tables",),
                                (_nft_ok, _fact("iptables-nft-save.txt", "iptables-nft-save works"))))
        reqs.append(Requirement("x_tables compatibility (nft_compat)", ("nft_compat",),
                                (_fact("ip_tables_matches.txt", "x_tables registry present"),), hard=False))
    reqs.append(CONNTRACK)
    reqs.extend(IPTABLES_EXTENSIONS)
    return reqs


def evaluate(req: Requirement, p: ParsedNode) -> str:
    """Evidence that the kernel has it, or "" when none was found."""
    for module in req.modules:
        if p.loaded_modules is not None and module in p.loaded_modules:
            return f"proc-modules.txt: {module} loaded"
        if p.builtin_modules is not None and module in p.builtin_modules:
            return f"modules-builtin.txt: {module} built in"
    for probe in req.probes:
        found = probe(p)
        if found:
            return found
    return ""


def _has_kernel_facts(p: ParsedNode) -> bool:
    keys = ("uname-r.txt", "sysctl.txt", "proc-modules.txt", "modules-builtin.txt", "ip_tables_matches.txt")
    return any(p.has(k) for k in keys)


class KernelModules(Check):
    id = "KP-KERNEL-MODULES"
    title = "The kernel provides what the configured proxier mode needs"
    scope = "node"
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
    references = (
        KUBE_PROXY_DOCS,
        "https://github.com/kubernetes/kubernetes/blob/master/pkg/proxy/ipvs/README.md",
        "https://www.kernel.org/doc/html/latest/admin-guide/kernel-parameters.html",
    )

    def run(self, ctx: CheckContext) -> Iterable[Finding]:
        node = ctx.node
        assert node is not None
        found = expected_mode(ctx)
        if found is None:
            if is_node_only(ctx.cluster):
                yield unknown_kube_proxy(self, ctx)
            return
        mode, why, origin = found
        p = parsed(ctx)
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
