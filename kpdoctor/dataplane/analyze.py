"""A pasted dataplane dump, read without a bundle: what it is, what it says, and whether it can be trusted.

`analyze_text` takes the text of one file as people paste it (see `paste.clean_paste`), decides its
format by content (never by the file's name: an `nft -j` saved as `.txt` is JSON), hands it to the one
parser of that format through its lenient front door, and returns an `Analysis`: the per-frontend
semantic view, each endpoint's share of new connections, the notes made on the way, the older kube-proxy
layouts seen, and the `Reliability` of the dump. Without cluster objects the only verdicts drawn are those
the rules alone support (rejects, drops, an unreliable dump); `compare_to` adds the expected view.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kpdoctor.dataplane.iptables_lenient import parse_iptables_lenient
from kpdoctor.dataplane.iptables_save import IptablesDump, tokenize
from kpdoctor.dataplane.paste import MAX_PASTE_BYTES, Paste, clean_paste
from kpdoctor.dataplane.reliability import Reliability, iptables_reliability, layout_notes, nft_reliability
from kpdoctor.dataplane.semantic import DNAT, DROP, REJECT, FrontendDiff, SemanticView, diff
from kpdoctor.errors import InputError

IPTABLES = "iptables"
NFT = "nftables"
IPVS = "ipvs"
IPSET = "ipset"

_LIST_FORM = re.compile(r"^Chain \S+ \((?:policy \w+|\d+ references)", re.MULTILINE)
_NFT_TEXT = re.compile(r"^\s*table (?:ip|ip6|inet|arp|bridge|netdev) \S+ \{", re.MULTILINE)
_NFT_CHAIN = re.compile(r"^\s*chain \S+ \{", re.MULTILINE)
_IPVS = re.compile(r"^(?:IP Virtual Server version|Prot LocalAddress:Port|-A -[tuf] \S+|(?:TCP|UDP|SCTP)\s+\S+:\d+\s+\w+)",
                   re.MULTILINE)
_IPSET = re.compile(r"^(?:Name: \S+\s*$|create \S+ (?:hash|bitmap|list):)", re.MULTILINE)
_IPTABLES = re.compile(r"^(?:\[\d+:\d+\] )?(?:-A|-N|-P) (?!-[tuf] )\S+|^\*(?:nat|filter|mangle|raw)\s*$|^:\S+ \S+ \[\d+:\d+\]"
                       r"|Restoring iptables", re.MULTILINE)


@dataclass
class Analysis:
    """What one pasted file holds. `view` is None for a format that has no frontends by itself (ipset)."""

    source: str
    format: str  # iptables | nftables | ipvs | ipset
    layout: str  # the form it was pasted in (iptables-save, iptables -S, nft -j, ipvsadm -Ln, ...)
    view: SemanticView | None
    reliability: Reliability
    notes: list[str] = field(default_factory=list)
    version_notes: list[str] = field(default_factory=list)
    shares: Mapping[frozenset[str], Mapping[str, float]] = field(default_factory=dict)
    ipset_names: tuple[str, ...] = ()

    def share(self, endpoints: frozenset[str]) -> dict[str, float]:
        """Each endpoint's share of new connections (the dump's probabilities, equal when it has none)."""
        known = self.shares.get(endpoints)
        if known:
            return dict(known)
        return {e: 1 / len(endpoints) for e in endpoints} if endpoints else {}

    def judgments(self) -> list[str]:
        """What the rules alone say is wrong (no cluster objects needed): an unreliable dump, or frontends
        whose connections are refused because the Service has no endpoints."""
        return [j for j in self._read() if not j.startswith("note: ")]

    def observations(self) -> list[str]:
        """What the rules alone show that is not a fault by itself (Local policy dropping where no endpoint
        runs - what the kernel does by design)."""
        return [j[len("note: "):] for j in self._read() if j.startswith("note: ")]

    def _read(self) -> list[str]:
        out: list[str] = []
        if not self.reliability.reliable:
            out.append(self.reliability.summary())
        if self.view is None:
            return out
        if not self.reliability.reliable:
            # a cut or filtered paste: a path that ends in a missing chain reads as "no endpoints" - no verdict
            return out
        for fe in sorted(self.view.frontends):
            v = self.view.frontends[fe]
            if v.verdict == REJECT:
                out.append(f"{v.service or '?'} {fe}: no endpoints - new connections are refused")
            elif v.verdict == DROP and not v.source_ranges:
                out.append(f"note: {v.service or '?'} {fe}: no endpoint on this node (traffic policy Local) - "
                           "new connections are dropped here" + (", pods/node still reach "
                                                                 f"{len(v.internal_targets)} endpoint(s)"
                                                                 if v.internal_targets else ""))
        return out


def detect_format(text: str) -> str:
    """iptables | nftables | ipvs | ipset, by content; InputError (one line) for anything else."""
    body = text.lstrip()
    if body.startswith("{") or re.match(r"\[\s*[{\"\]]", body):  # not `[0:0] -A ...` (iptables-save -c)
        if '"nftables"' in body[:4096]:
            return NFT
        raise InputError("JSON that is not `nft -j list ruleset` output")
    if _LIST_FORM.search(text) and not _IPTABLES.search(text):
        raise InputError("`iptables -L` output hides interfaces, negations and marks and cannot be read exactly: "
                         "paste `iptables-save` (or `iptables-save -t nat` and `iptables-save -t filter`) instead")
    if _NFT_TEXT.search(text):
        return NFT
    if _NFT_CHAIN.search(text) and not _IPTABLES.search(text):
        hint = (" - these KUBE-* chains are iptables-mode rules that nft shows through iptables-nft: paste "
                "`iptables-save` instead" if "KUBE-SVC-" in text or "KUBE-SEP-" in text else "")
        raise InputError("nft chains without their `table <family> <name> {` line: paste the whole "
                         "`nft list ruleset` (or `nft list table ip kube-proxy`)" + hint)
    if _IPSET.search(text) and not _IPTABLES.search(text):
        return IPSET
    if _IPVS.search(text) and not _IPTABLES.search(text):
        return IPVS
    if _IPTABLES.search(text):
        return IPTABLES
    raise InputError("not a dataplane dump kpdoctor reads (iptables-save / iptables -S, nft list ruleset or "
                     "nft -j, ipvsadm -Ln / --save, ipset list / save)")


def iptables_shares(dump: IptablesDump) -> dict[frozenset[str], dict[str, float]]:
    """Per KUBE-SVC/KUBE-SVL/KUBE-XLB chain: each DNAT endpoint's share of new connections, from the
    `-m statistic --probability` rules in chain order (the last rule takes what is left)."""
    nat = dump.table("nat")
    if nat is None:
        return {}
    dnat: dict[str, str] = {}
    for name, chain in nat.chains.items():
        if name.startswith("KUBE-SEP-"):
            for spec in chain.specs:
                if " DNAT" in spec and "--to-destination " in spec:
                    dnat[name] = spec.split("--to-destination ", 1)[1].split()[0]
    out: dict[frozenset[str], dict[str, float]] = {}
    for name, chain in nat.chains.items():
        if not name.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-XLB-")):
            continue
        left = 1.0
        shares: dict[str, float] = {}
        for spec in chain.specs:
            try:
                args = tokenize(spec)
            except ValueError:
                continue
            target = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-j", "-g")), None)
            if target not in dnat or "--rcheck" in args:
                continue
            p = next((float(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "--probability"), 1.0)
            shares[dnat[target]] = shares.get(dnat[target], 0.0) + left * p
            left *= 1 - p
        if shares:
            out[frozenset(shares)] = shares
    return out


def analyze_text(text: str, source: str, *, ipsets_text: str | None = None,
                 node_ips: Iterable[str] = (), expected: SemanticView | None = None) -> Analysis:
    """One pasted file -> Analysis (see the module docstring). Raises InputError naming `source`."""
    if len(text) > MAX_PASTE_BYTES:
        raise InputError(f"larger than {MAX_PASTE_BYTES >> 20} MiB", where=source)
    paste = clean_paste(text)
    try:
        fmt = detect_format(paste.text)
    except InputError as exc:
        raise InputError(str(exc), where=source) from None
    if fmt == IPTABLES:
        return _iptables(paste, source, expected)
    if fmt == NFT:
        return _nft(paste, source, expected)
    if fmt == IPVS:
        return _ipvs(paste, source, ipsets_text, node_ips, expected)
    from kpdoctor.dataplane.ipset import parse_ipset

    lines = paste.lines
    first = next((i for i, line in enumerate(lines) if line.startswith(("Name: ", "create "))), 0)
    notes = list(paste.notes) + ([f"ignored {first} line(s) before the ipset output"] if first else [])
    sets = parse_ipset("\n".join(lines[first:]) + "\n", source)
    return Analysis(source, IPSET, "ipset", None, Reliability(), notes,
                    ipset_names=tuple(sorted(sets.sets)))


def _kinds(expected: SemanticView | None) -> dict[str, str] | None:
    """address -> frontend kind from the expected view (tells load balancers from external IPs)."""
    from kpdoctor.dataplane.iptables_semantic import address_kinds_of

    return address_kinds_of(expected) if expected is not None else None


def _iptables(paste: Paste, source: str, expected: SemanticView | None) -> Analysis:
    from kpdoctor.dataplane.iptables_semantic import semantic_view

    lenient = parse_iptables_lenient(paste.text, source, table_hint=paste.table_hint(), elided=paste.elided,
                                     filtered=paste.filtered)
    reliability = iptables_reliability(lenient.dump, lenient.partial)
    view = semantic_view(lenient.dump, address_kinds=_kinds(expected))
    return Analysis(source, IPTABLES, lenient.layout, view, reliability, paste.notes + lenient.notes,
                    layout_notes(lenient.dump), iptables_shares(lenient.dump))


def _nft(paste: Paste, source: str, expected: SemanticView | None) -> Analysis:
    from kpdoctor.dataplane.nft import parse_nft_lenient
    from kpdoctor.dataplane.nft_semantic import semantic_view

    ruleset, notes = parse_nft_lenient(paste.text, source=source, cut=bool(paste.elided))
    partial = []
    if paste.elided:
        partial.append(f"{paste.elided} '...' line(s): rules were cut out of the paste")
    if paste.filtered:
        partial.append("the command was piped through grep: only matching lines are shown")
    reliability = nft_reliability(ruleset, partial)
    family = "IPv6" if any(t.family == "ip6" for t in ruleset.tables.values()) and not any(
        t.family == "ip" for t in ruleset.tables.values()) else "IPv4"
    view = semantic_view(ruleset, family, address_kinds=_kinds(expected))
    layout = "nft -j" if paste.text.lstrip().startswith(("{", "[")) else "nft list"  # only nft gets here
    return Analysis(source, NFT, layout, view, reliability, paste.notes + notes)


def _ipvs(paste: Paste, source: str, ipsets_text: str | None, node_ips: Iterable[str],
          expected: SemanticView | None) -> Analysis:
    from kpdoctor.dataplane.ipset import parse_ipset
    from kpdoctor.dataplane.ipvs_facts import parse_ipvsadm_lenient
    from kpdoctor.dataplane.ipvs_semantic import (
        api_frontends,
        guess_node_addresses,
        ipvs_semantic_view,
        label_services,
    )

    table, notes = parse_ipvsadm_lenient(paste.text, source)
    ipsets = parse_ipset(ipsets_text, "ipset") if ipsets_text else None
    addresses = set(node_ips)
    if ipsets is None and not addresses:
        addresses = guess_node_addresses(table.virtual_servers)
        if addresses:
            notes.append("no ipset data: node addresses inferred from NodePort-range ports served on several "
                         f"addresses ({', '.join(sorted(addresses)[:4])}{', ...' if len(addresses) > 4 else ''})")
    node_ports, service_ips = api_frontends(expected)
    view = ipvs_semantic_view(table.virtual_servers, ipsets, node_ips=addresses, node_ports=node_ports,
                              service_ips=service_ips)
    if expected is not None:
        view = label_services(view, expected)
    shares: dict[frozenset[str], dict[str, float]] = {}
    for vs in table.virtual_servers:
        total = sum(rs.weight for rs in vs.real_servers)
        if total:
            eps = {rs.key: rs.weight / total for rs in vs.real_servers}
            shares[frozenset(eps)] = eps
    layout = "ipvsadm --save" if re.search(r"^-A -[tuf] ", paste.text, re.MULTILINE) else "ipvsadm -Ln"
    # IPVS has no chains to be missing: a paste is unreliable only when the text says it is cut
    partial = [f"{paste.elided} '...' line(s): virtual servers were cut out"] if paste.elided else []
    return Analysis(source, IPVS, layout, view, Reliability(tuple(partial)), paste.notes + notes, shares=shares)


def compare_to(analysis: Analysis, expected: SemanticView) -> tuple[list[FrontendDiff], str | None]:
    """Expected vs the pasted dump. An unreliable dump yields no stale/missing-endpoint verdicts: the
    diffs returned are only those the dump's state cannot explain away (none), and the reason is given."""
    if analysis.view is None:
        return [], "an ipset listing alone holds no Service frontends"
    if not analysis.reliability.reliable:
        return [], analysis.reliability.summary()
    return diff(expected, analysis.view), None


def summary_rows(analysis: Analysis) -> list[dict[str, object]]:
    """One row per frontend: service, frontend, verdict, endpoints with their share, affinity, Local policy."""
    rows: list[dict[str, object]] = []
    if analysis.view is None:
        return rows
    for fe in sorted(analysis.view.frontends):
        v = analysis.view.frontends[fe]
        rows.append({
            "service": v.service, "kind": fe.kind, "address": fe.address, "port": fe.port,
            "protocol": fe.protocol, "verdict": v.verdict,
            "endpoints": {e: round(s, 4) for e, s in sorted(analysis.share(v.endpoints).items())}
            if v.verdict == DNAT else {},
            "affinity_seconds": v.affinity_seconds,
            "local_policy": v.internal_endpoints is not None or v.verdict == DROP,
            "source_ranges": sorted(v.source_ranges),
        })
    return rows
