"""KP-BACKEND-SPLIT: kube-proxy's iptables rules live in one backend only (nf_tables or legacy).

iptables 1.8 has two kernels interfaces: x_tables ("legacy") and nf_tables.
Both are hooked into netfilter at once and both are evaluated for every
packet. A kube-proxy image that picked a different backend than the host (or
than the previous kube-proxy) leaves a second copy of KUBE-* rules that nobody
maintains any more: identical on the day of the switch, stale (DNAT to deleted
pods, REJECT for Services that have endpoints again) after the next change.
kubernetes-sigs/iptables-wrappers picks the backend by looking for kubelet's
`KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY` chains; a kube-proxy writing to the
other backend than kubelet's hint is the same fault in the making.
"""

from __future__ import annotations

from collections.abc import Iterable

from kpdoctor.checks._common import KUBE_PROXY_DOCS
from kpdoctor.findings import Finding, Severity
from kpdoctor.iptables_backend import HINT_CHAINS, has_hint, maintained_backend
from kpdoctor.node.parsed import IptablesView
from kpdoctor.node_context import NodeCheck, NodeCheckContext
from kpdoctor.shellcmd import Lit, command


def _summary(key: str, dump: IptablesView) -> str:
    parts = []
    for table, names in sorted(dump.kube_chains().items()):
        prefixes = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-")
        fixed = [c for c in names if not c.startswith(prefixes)]
        hashed = {p: sum(1 for c in names if c.startswith(p)) for p in prefixes}
        # the listed items add up to the count: up to 5 names, "N more", then "N KUBE-SVC-*" per prefix
        more = [f"{len(fixed) - 5} more"] if len(fixed) > 5 else []
        extra = [f"{n} {p}*" for p, n in hashed.items() if n]
        parts.append(f"{table}: {len(names)} ({', '.join(fixed[:5] + more + extra)})")
    return f"{key}: kube-proxy chains per table - " + "; ".join(parts)


_hint = has_hint


def cleanup_commands(backend: str, node: str) -> list[str]:
    """Commands that remove the unmaintained copy in `backend` ("legacy" or "nft"), saving it first."""
    tool = f"iptables-{backend}"
    tool6 = f"ip6tables-{backend}"
    return [
        command(f"{tool}-save", Lit(">"), f"/root/{tool}-backup.txt", on=node),
        command(Lit("for t in nat filter mangle; do"), tool, "-t", Lit("$t"), "-F", Lit(";"),
                tool, "-t", Lit("$t"), "-X", Lit(";"),
                Lit("done"), on=node, note=f", only if nothing else on the node uses {backend} iptables"),
        command(Lit("for t in nat filter mangle; do"), tool6, "-t", Lit("$t"), "-F", Lit(";"),
                tool6, "-t", Lit("$t"), "-X", Lit(";"),
                Lit("done"), on=node, note=", same for IPv6"),
        command(f"{tool}-save", Lit("|"), "grep", "-c", "KUBE-", on=node, note=": expect 0"),
    ]


class BackendSplit(NodeCheck):
    id = "KP-BACKEND-SPLIT"
    title = "kube-proxy's iptables rules are in one backend only (legacy vs nf_tables)"
    severity = Severity.ERROR
    tags = ("iptables", "backend")
    reads = ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt", "iptables-version.txt")
    node_facts_suffice = True  # runs in node-only scans (kpdoctor.node_only)
    rationale = (
        "Rules in both iptables-legacy and iptables-nft are both evaluated; the copy nobody maintains goes stale "
        "on the next change (DNAT to deleted pods, REJECTs for Services with endpoints)."
    )
    remediation = (
        "Make every component on the node use one backend, then remove the unmaintained copy (saved first) or "
        "run `kube-proxy --cleanup` once with that backend's binaries."
    )
    catches = (
        "KUBE-* rules in both iptables-legacy and iptables-nft, or kube-proxy on another backend than "
        "kubelet's hint chains"
    )
    references = (
        KUBE_PROXY_DOCS,
        "https://github.com/kubernetes-sigs/iptables-wrappers",
        "https://kubernetes.io/blog/2022/09/07/iptables-chains-not-api/",
    )

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        node = ctx.node
        p = ctx.parsed
        legacy = p.iptables("iptables-legacy-save.txt")
        default_backend = p.iptables_version.backend if p.iptables_version else ""
        nft_key = "iptables-nft-save.txt"
        nft = p.iptables(nft_key)
        if nft is None and default_backend == "nf_tables":
            nft_key, nft = "iptables-save.txt", p.iptables("iptables-save.txt")
        if legacy is None or nft is None:
            return
        in_legacy, in_nft = bool(legacy.kube_chains()), bool(nft.kube_chains())
        hint_legacy, hint_nft = _hint(legacy), _hint(nft)
        version_line = f"iptables-version.txt: {p.iptables_version.raw}" if p.iptables_version else ""
        names = sorted(p.ip_tables_names or ())
        names_line = f"ip_tables_names.txt: legacy tables loaded: {', '.join(names)}" if names else ""
        if in_legacy and in_nft:
            # The maintained copy: kubelet's hint, else the host's default backend.
            active, how = maintained_backend(legacy, nft, default_backend)
            stale = "nft" if active == "legacy" else "legacy"
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"node {node.name} has kube-proxy rules in both iptables backends (legacy and nf_tables). Both are "
                f"evaluated for every packet; the {active} copy is the maintained one ({how}), the {stale} copy is "
                "frozen at the moment the other kube-proxy stopped: it matches today only if nothing changed since, "
                "and the next endpoint or Service change leaves it DNATing to deleted pods or rejecting Services "
                "that have endpoints. Every Service on this node is affected",
                severity=Severity.ERROR,
                evidence=[e for e in (version_line, _summary("iptables-legacy-save.txt", legacy),
                                      _summary(nft_key, nft), names_line) if e],
                fix=(f"Make everything on {node.name} use the {active} backend (find what ran kube-proxy with "
                     f"iptables-{stale}: an old kube-proxy image without the iptables wrapper, update-alternatives, "
                     f"a custom PATH), then remove the {stale} copy. Alternatively run `kube-proxy --cleanup` once "
                     f"with the {stale} binaries first in PATH."),
                commands=[command("update-alternatives", "--display", "iptables", on=node.name),
                          *cleanup_commands(stale, node.name)],
            )
            return
        if (hint_legacy and not hint_nft and in_nft and not in_legacy) or (
            hint_nft and not hint_legacy and in_legacy and not in_nft
        ):
            hint_backend = "legacy" if hint_legacy else "nf_tables"
            proxy_backend = "nf_tables" if in_nft else "legacy"
            yield self.finding(
                ctx,
                f"Node {node.name}",
                f"on node {node.name} kube-proxy writes its rules with iptables-{proxy_backend} while kubelet's hint "
                f"chains ({'/'.join(HINT_CHAINS)}) are in iptables-{hint_backend}: components that follow the hint "
                "(iptables-wrappers, CNI plugins) write to the other backend, so their rules and kube-proxy's are "
                "evaluated separately and a later kube-proxy image may switch backends (a backend split)",
                severity=Severity.WARNING,
                evidence=[e for e in (version_line, _summary("iptables-legacy-save.txt", legacy),
                                      _summary(nft_key, nft)) if e],
                fix="Use a kube-proxy image whose iptables wrapper follows kubelet's hint (the official image does), "
                "or align the host's iptables alternatives with what kubelet uses.",
                commands=[command("update-alternatives", "--display", "iptables", on=node.name)],
            )


CHECK = BackendSplit()
