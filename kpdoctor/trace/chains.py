"""Which base chains a node has, from its dumps: the iptables tables of each backend (iptables-save output)
and every nftables table (nft-ruleset.json / nft-ruleset.txt), as `BaseChain`s for the path walker.

The iptables-nft backend keeps its tables in nf_tables too (`table ip filter` with chains `FORWARD` ...):
when that backend's iptables dump is walked, those tables are not walked a second time from the nft dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kpdoctor.dataplane.iptables_save import IptablesDump
from kpdoctor.dataplane.ipvs import parse_ipvsadm
from kpdoctor.dataplane.nft import NftChain, NftTable, parse_nft
from kpdoctor.errors import InputError
from kpdoctor.node.state import NodeState
from kpdoctor.trace.ipt_eval import IptablesRules, IptablesWalker
from kpdoctor.trace.ipt_lazy import LazyDump, read_dump
from kpdoctor.trace.ipvs_eval import IPVS_LOCAL_OUT_PRIORITY, IPVS_PRIORITY, IpvsRunner
from kpdoctor.trace.model import Branch
from kpdoctor.trace.nft_eval import NftRules, NftWalker
from kpdoctor.trace.walk import IPT_HOOKS, BaseChain, ipt_priority

IPTABLES_NFT_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
NFT_FAMILIES = {4: ("ip", "inet"), 6: ("ip6", "inet")}
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")


@dataclass
class NodeChains:
    chains: list[BaseChain] = field(default_factory=list)
    walked: list[str] = field(default_factory=list)  # "iptables-nft", "nft ip kube-proxy", ...
    notes: list[str] = field(default_factory=list)
    has_nft_dump: bool = False
    iptables_dumps: int = 0  # dumps present (an empty one is "no rules", not "unknown")
    ipvs_vips: list[str] = field(default_factory=list)


def _iptables_dumps(state: NodeState, backend: str | None,
                    family: int) -> list[tuple[str, IptablesDump | LazyDump]]:
    """(backend, dump) per backend that printed something (empty = ran and printed nothing = no rules)."""
    if family == 6:
        text = state.text("ip6tables-save.txt")
        name = "legacy" if backend == "legacy" else "nf_tables"
        return [] if text is None else [(name, read_dump(text, f"{state.name}/ip6tables-save.txt"))]
    nft = state.text("iptables-nft-save.txt")
    legacy = state.text("iptables-legacy-save.txt")
    default = state.text("iptables-save.txt")
    files = {"nf_tables": "iptables-nft-save.txt", "legacy": "iptables-legacy-save.txt"}
    if nft is None and backend != "legacy" and default is not None:
        nft, files["nf_tables"] = default, "iptables-save.txt"
    if legacy is None and backend == "legacy" and default is not None:
        legacy, files["legacy"] = default, "iptables-save.txt"
    return [(name, read_dump(text, f"{state.name}/{files[name]}"))
            for name, text in (("nf_tables", nft), ("legacy", legacy)) if text is not None]


def _ipt_runner(walker: IptablesWalker, table: str, chain: str) -> Any:
    def run(b: Branch) -> list[tuple[Branch, str]]:
        return walker.run_builtin(table, chain, b)

    return run


def _nft_runner(walker: NftWalker, table: NftTable, chain: NftChain) -> Any:
    def run(b: Branch) -> list[tuple[Branch, str]]:
        return walker.run_base(table, chain, b)

    return run


def node_chains(state: NodeState, backend: str | None, family: int, ctx: Any) -> NodeChains:
    out = NodeChains()
    labels = {"nf_tables": "iptables-nft", "legacy": "iptables-legacy"}
    ipt_nft_walked = False
    with_rules = 0
    for name, dump in _iptables_dumps(state, backend, family):
        out.iptables_dumps += 1
        label = labels[name] if family == 4 else labels[name].replace("iptables", "ip6tables")
        rules = IptablesRules(dump, label, ctx.specs)
        walker = IptablesWalker(rules, ctx)
        if name == "nf_tables":
            ipt_nft_walked = True
        if dump.tables:
            out.walked.append(label)
            with_rules += 1
        for table, hooks in IPT_HOOKS.items():
            for hook in hooks:
                chain = hook.upper()
                found = rules.rules(table, chain)
                if found is None or (not found and (rules.policy(table, chain) or "ACCEPT") == "ACCEPT"):
                    continue  # an absent or empty ACCEPT chain decides nothing
                out.chains.append(BaseChain(hook, ipt_priority(table, hook), f"{label} {table} {chain}",
                                            table == "nat", _ipt_runner(walker, table, chain)))
    if with_rules == 2:
        out.notes.append("rules in both iptables backends: both run at each hook; no dump tells their order at "
                         "equal priority, iptables-nft is walked first")
    ipvs_text = state.text("ipvsadm-save.txt")
    if ipvs_text and ipvs_text.strip():
        try:
            ipvs_table = parse_ipvsadm(ipvs_text, f"{state.name}/ipvsadm-save.txt")
        except InputError as exc:
            out.notes.append(f"ipvsadm-save.txt not usable ({exc}): IPVS not evaluated")
        else:
            if ipvs_table.virtual_servers:
                runner = IpvsRunner(ipvs_table, f"{state.name}/ipvsadm-save.txt")
                out.chains.append(BaseChain("input", IPVS_PRIORITY, "IPVS", False, runner.run))
                out.chains.append(BaseChain("output", IPVS_LOCAL_OUT_PRIORITY, "IPVS", False, runner.run_local_out))
                out.walked.append("ipvs")
                out.ipvs_vips = [vs.address for vs in ipvs_table.virtual_servers if not vs.fwmark]
    fact = "nft-ruleset.json" if state.text("nft-ruleset.json") is not None else "nft-ruleset.txt"
    text = state.text(fact)
    if text is None or not text.strip():
        return out
    out.has_nft_dump = True
    try:
        ruleset = parse_nft(text, source=f"{state.name}/{fact}")
    except InputError as exc:
        out.notes.append(f"{fact} not usable ({exc}): nftables tables not walked")
        return out
    walker_nft = NftWalker(NftRules(ruleset, f"{state.name}/{fact}"), ctx)
    for (fam, tname), nft_table in ruleset.tables.items():
        if fam not in NFT_FAMILIES[family]:
            continue
        if fam in ("ip", "ip6") and tname in IPTABLES_NFT_TABLES and ipt_nft_walked:
            continue  # iptables-nft's own table: walked from its iptables dump
        hooked = [c for c in nft_table.chains.values() if c.hook]
        for base in hooked:
            if base.hook not in HOOKS:
                out.notes.append(f"nft {fam} {tname} chain {base.name} (hook {base.hook}) not walked")
                continue
            out.chains.append(BaseChain(str(base.hook), base.priority or 0, f"nft {fam} {tname} {base.name}",
                                        base.type == "nat", _nft_runner(walker_nft, nft_table, base),
                                        registered=len(out.chains)))  # dump order = creation order
        if hooked:
            out.walked.append(f"nft {fam} {tname}")
    return out
