"""What the kernel must provide for a kube-proxy mode, and the evidence that it does: one definition.

Read by KP-KERNEL-MODULES (checks/kernel_modules.py) and by the mode-switch gate
(`kpdoctor.gate.mode_switch.kernel_ready`). A requirement counts as met when any evidence shows the kernel
has it: loaded (`/proc/modules`), built in (`modules.builtin`), registered (`/proc/net/ip_tables_matches|
targets`), its `/proc/net` file exists, or the node's current rules use it (the kernel accepted them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kpdoctor.comparison import iptables_rules_key
from kpdoctor.node.dumps import fact_contains
from kpdoctor.node.parsed import ParsedNode

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
