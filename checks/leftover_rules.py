"""KP-LEFTOVER-RULES: no kube-proxy state of a mode the node no longer runs.

kube-proxy cleans the other modes' state when it starts, but nothing cleans a
node where kube-proxy stopped running altogether (replaced by Cilium's kube-proxy
replacement, or removed), and a mode switch done by hand can leave IPVS virtual
servers, the kube-ipvs0 dummy interface (which answers ARP for every Service IP),
KUBE-* ipsets, iptables KUBE-* chains or the nftables `kube-proxy` table behind.
Frozen Service rules keep DNATing to whatever the endpoints were: traffic goes
to the wrong place, or is handled twice by two dataplanes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kpdoctor.checks._common import KUBE_PROXY_CLI_DOCS, unknown_kube_proxy
from kpdoctor.comparison import iptables_rules_key
from kpdoctor.dataplane.chain_owners import grep_v_kube_spares, ipset_cleanup_command
from kpdoctor.findings import Finding, Severity
from kpdoctor.node_context import NodeCheck, NodeCheckContext
from kpdoctor.node_only import is_node_only
from kpdoctor.service_proxy import UNKNOWN, presence
from kpdoctor.shellcmd import Lit, command


def iptables_cleanup(node: str, key: str, tables: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """Save, then drop every KUBE-* line; `tables` (the dump's table -> chains): with kube-router's KUBE-* chains
    in it, the grep would delete them too, so it is not offered."""
    save = "iptables-legacy-save" if "legacy" in key else "iptables-save"
    restore = "iptables-legacy-restore" if "legacy" in key else "iptables-restore"
    spares = grep_v_kube_spares(tables or {}, save, restore)
    if spares:
        return [command(save, Lit(">"), "/root/iptables-before-cleanup.txt", on=node), spares]
    return [
        command(save, Lit(">"), "/root/iptables-before-cleanup.txt", on=node),
        command(save, Lit("|"), "grep", "-v", "KUBE", Lit("|"), restore, on=node,
                note=": drops every KUBE-* chain and rule (kubelet re-creates its own "
                "KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY)"),
        command("ip6tables-save", Lit("|"), "grep", "-v", "KUBE", Lit("|"), "ip6tables-restore", on=node),
    ]


class LeftoverRules(NodeCheck):
    id = "KP-LEFTOVER-RULES"
    title = "No kube-proxy rules of a mode the node no longer runs"
    severity = Severity.WARNING
    tags = ("iptables", "nftables", "ipvs", "cilium", "cleanup")
    reads = ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt", "nft-ruleset.json", "ipvsadm-save.txt",
             "ip-addr.json", "ipset-list.txt")
    requires = ("ConfigMap", "DaemonSet", "Pod")
    node_facts_suffice = True  # runs in node-only scans (kpdoctor.node_only)
    rationale = (
        "Service rules nobody maintains keep translating traffic with an old view of the cluster: after a mode "
        "switch both dataplanes act on packets; after replacing kube-proxy they fight the replacement."
    )
    remediation = "Remove the other mode's state (kube-proxy --cleanup, or the commands per dataplane)."
    catches = (
        "KUBE-* chains, the `kube-proxy` nft table, `kube-ipvs0`/IPVS services left by a mode the node no"
        " longer runs, with cleanup commands"
    )
    references = (
        KUBE_PROXY_CLI_DOCS + " (`--cleanup`)",
        "https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/",
    )

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        node = ctx.node
        p = ctx.parsed
        pres = presence(p)
        present = pres.modes()
        if not present:
            return
        found = ctx.kube_proxy_mode
        if found is None and is_node_only(ctx.cluster):  # whether kube-proxy is meant to run here is unknown
            yield unknown_kube_proxy(self, ctx)
            return
        mode = (p.proxy_mode or found[0]) if found is not None else None
        if mode is None and ((shape := ctx.service_proxy).runs_kube_proxy or shape.kind == UNKNOWN):
            return  # kube-proxy runs there but its mode is not known (config not collected): not evaluated
        if mode is None:
            why = f"no kube-proxy runs on {node.name}"
            leftover = present
            severity = Severity.ERROR
        else:
            why = f"kube-proxy on {node.name} runs in {mode} mode"
            leftover = [m for m in present if m != mode]
            severity = Severity.WARNING
        for other in leftover:
            if other == "iptables":
                key = iptables_rules_key(p) or "iptables-save.txt"
                evidence = [e for e in (pres.iptables, pres.iptables_legacy) if e]
                if mode == "ipvs":
                    # IPVS mode writes KUBE-SERVICES & co. itself; only iptables-mode service chains are leftovers.
                    dump = p.iptables(key)
                    chains = sorted(c for c in (dump.chains("nat") if dump else ())
                                    if c.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-")) or c == "KUBE-NODEPORTS")
                    if not chains:
                        continue
                    evidence = [f"{key}: iptables-mode chains {', '.join(chains[:4])} ({len(chains)} in all)"]
                dump = p.iptables(key)
                commands = iptables_cleanup(node.name, key, dump.policies if dump else None)
            elif other == "nftables":
                evidence = [pres.nftables]
                commands = [command("nft", "list", "table", "ip", "kube-proxy", Lit(">"),
                                    "/root/kube-proxy-nft-before-cleanup.txt", on=node.name),
                            command("nft", "delete", "table", "ip", "kube-proxy", on=node.name),
                            command("nft", "delete", "table", "ip6", "kube-proxy", on=node.name, note=" (if present)")]
            else:
                evidence = [pres.ipvs]
                commands = [command("ipvsadm", "--save", "-n", Lit(">"), "/root/ipvs-before-cleanup.txt", on=node.name),
                            command("ipvsadm", "--clear", on=node.name),
                            command("ip", "link", "delete", "kube-ipvs0", on=node.name),
                            ipset_cleanup_command(p.ipsets or (), on=node.name)]
            replacement = ""
            if mode is None and ctx.cluster.cilium_daemonsets:
                replacement = " (Cilium handles Services here; these rules compete with it)"
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"node {node.name} carries leftover kube-proxy {other} state but {why}{replacement}: those rules "
                "are maintained by nobody and still translate traffic with an outdated view of the Services",
                severity=severity,
                evidence=[f"{found[2].origin}: {found[1]}" if found else f"no kube-proxy pod scheduled on {node.name}",
                          *evidence],
                fix="Remove the leftover state (save it first). `kube-proxy --cleanup` run once on the node removes "
                "all of kube-proxy's iptables, IPVS and nftables state - only when kube-proxy is not meant to run "
                "there, or run it before starting kube-proxy in its new mode.",
                commands=commands,
            )


CHECK = LeftoverRules()
