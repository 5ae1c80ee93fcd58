"""The node's dataplane compared with the reference proxier's expectation (what KP-STALE-ENDPOINTS and `why` read).

`actual_view` is the one place that knows which parser reads which mode's dump; `compare` gives
expected vs actual for a node once per scan, incrementally (from a reference node's comparison)
when the node's iptables dump is a delta of a reference dump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kpdoctor.checks_api import CheckContext
from kpdoctor.cluster.kube_proxy_node import ProxyMode, is_proxy_mode
from kpdoctor.dataplane.semantic import FrontendDiff, SemanticView, diff
from kpdoctor.node.dumps import NodeDumps, SharedParsedNode
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node.state import IPTABLES_V4_DUMPS, NodeState
from kpdoctor.node_context import expected_detail, expected_for, node_dumps, parsed
from kpdoctor.proxier.shared_expectation import NodeExpectation, address_kinds
from kpdoctor.service_proxy import ipt_evidence


def iptables_rules_key(p: ParsedNode) -> str | None:
    """The dump that holds the kube-proxy rules: the default backend first, then legacy, then nft."""
    for key in ("iptables-save.txt", "iptables-legacy-save.txt", "iptables-nft-save.txt"):
        if ipt_evidence(p, key):
            return key
    for key in IPTABLES_V4_DUMPS:
        if p.has(key):
            return key
    return None


# ---------------------------------------------------------- expected and actual dataplane


class ViewUnavailable(Exception):
    """The view cannot be built (dump unreadable, IPVS state unavailable); the message says why."""


def known_mode(mode: str) -> ProxyMode:
    """`mode` (a configured or reported word) as a ProxyMode; ViewUnavailable for a word no proxier has."""
    if is_proxy_mode(mode):
        return mode
    raise ViewUnavailable(f"unknown proxy mode {mode!r}")


@dataclass
class RecordedComparison:
    """A reference node's comparison: reused for every frontend a delta node has in common with it."""

    expectation: NodeExpectation
    trace: Any  # iptables_semantic.SemanticTrace
    diffs: list[FrontendDiff]


def actual_view(
    node: NodeState, mode: ProxyMode, *, rules_key: str | None = None, expected: SemanticView | None = None,
    family: str = "IPv4", parsed_node: ParsedNode | None = None, dumps: NodeDumps | None = None,
    jump_memo: Any = None,
) -> SemanticView | None:
    """The node's dataplane as a SemanticView for `mode`; None when the node has no dump for it.

    `expected` (the reference proxier's view) only lends names: which address is a
    load balancer vs an external IP, and Service names for IPVS (which stores none).
    Raises ViewUnavailable when a dump exists but cannot be read (the message says why).
    `parsed_node` / `dumps` are the node's already-parsed facts (checks pass theirs, so nothing
    is parsed twice); without them the node is parsed here. `jump_memo` (an iptables_semantic
    JumpMemo shared by a scan) lets identical chains of different nodes be read once.
    """
    from kpdoctor.errors import InputError

    if dumps is None:
        dumps = parsed_node.dumps if isinstance(parsed_node, SharedParsedNode) else None
        dumps = dumps or NodeDumps(node)
    if parsed_node is None:
        parsed_node = SharedParsedNode(node, dumps=dumps)
    try:
        if mode == "iptables":
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of
            from kpdoctor.dataplane.iptables_semantic import semantic_view as ipt_view

            key = rules_key or iptables_rules_key(parsed_node)
            if family == "IPv6":
                key = "ip6tables-save.txt"
            dump = dumps.full(key) if key else None
            if dump is None:
                return None
            kinds = address_kinds_of(expected) if expected is not None else None
            return ipt_view(dump, address_kinds=kinds, memo=jump_memo)
        if mode == "nftables":
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of
            from kpdoctor.dataplane.nft import parse_nft
            from kpdoctor.dataplane.nft_semantic import semantic_view as nft_view

            text = node.text("nft-ruleset.json")
            if text is None:
                return None
            kinds = address_kinds_of(expected) if expected is not None else None
            ruleset = parse_nft(text, source=f"{node.name}/nft-ruleset.json")  # JSON or text: by content
            return nft_view(ruleset, family, address_kinds=kinds)
        if mode == "ipvs":
            from kpdoctor.dataplane.ipvs_facts import read_node_ipvs
            from kpdoctor.dataplane.ipvs_semantic import api_frontends, ipvs_semantic_view, label_services

            if node.text("ipvsadm-save.txt") is None:
                return None
            table, ipsets = read_node_ipvs(node)
            if not table.available:
                raise ViewUnavailable(table.reason)
            p = parsed_node
            node_ports, service_ips = api_frontends(expected)
            view = ipvs_semantic_view(
                table.virtual_servers, ipsets, node.text(iptables_rules_key(p) or "iptables-save.txt"),
                node_ips=p.addresses(6 if family == "IPv6" else 4), node_ports=node_ports, service_ips=service_ips,
            )
            return label_services(view, expected) if expected is not None else view
    except InputError as exc:
        raise ViewUnavailable(str(exc)) from None
    raise ViewUnavailable(f"unknown proxy mode {mode!r}")




@dataclass(frozen=True)
class Comparison:
    mode: ProxyMode
    rules_key: str  # the fact the actual view was read from
    expected: SemanticView
    actual: SemanticView
    diffs: list[FrontendDiff]


def compare(ctx: CheckContext, mode: ProxyMode) -> Comparison | None:
    """Expected vs actual for the node in `mode`; None when the node has no dump for that mode."""
    node = ctx.node
    if node is None:
        raise ValueError("compare() needs a node-scope context")

    def build() -> Comparison | None:
        p = parsed(ctx)
        key = iptables_rules_key(p) if mode == "iptables" else (
            "nft-ruleset.json" if mode == "nftables" else "ipvsadm-save.txt"
        )
        expected = expected_for(ctx, mode)
        from kpdoctor.dataplane.iptables_paths import JumpMemo

        memo = ctx.shared("iptables-jump-memo", JumpMemo) if mode == "iptables" else None
        if mode == "iptables" and key:
            return _compare_iptables(ctx, key, memo)
        actual = actual_view(node, mode, rules_key=key, expected=expected, parsed_node=p, dumps=node_dumps(ctx),
                             jump_memo=memo)
        if actual is None:
            return None
        return Comparison(mode, key or "", expected, actual, diff(expected, actual))

    result: Comparison | None = ctx.derived(f"compare:{mode}", build)
    return result


def _compare_iptables(ctx: CheckContext, key: str, memo: Any) -> Comparison | None:
    """`compare` for iptables mode: what `actual_view` + `diff` give, derived incrementally when the
    node's dump is a delta of a reference dump whose node was compared already.

    The node's diffs are the reference's for every frontend whose expected view and actual view are
    the same on both nodes (its diff is then the same), plus `diff` over the rest: frontends the
    delta re-derived and found different, and the node-dependent expected ones that differ.
    """
    from kpdoctor.dataplane.iptables_semantic import (
        NAT_ENTRY_CHAINS,
        semantic_view_delta,
        semantic_view_traced,
    )
    from kpdoctor.errors import InputError

    dumps = node_dumps(ctx)
    detail = expected_detail(ctx, "iptables")
    # The shared mapping itself (read only): a delta recognises it and skips comparing 12k addresses.
    kinds = detail.kinds if detail.kinds is not None else address_kinds(detail.view.frontends)
    delta = dumps.delta(key)
    if delta is not None and not NAT_ENTRY_CHAINS & delta.changed.keys():
        for rec in delta.ref.recorded:
            expected_changed = detail.differing(rec.expectation)
            if expected_changed is None:
                continue
            got = semantic_view_delta(rec.trace, delta.spec_table("nat"), delta.spec_table("filter"),
                                      delta.changed, kinds, memo)
            if got is None:
                break
            actual, actual_changed = got
            redo = expected_changed | actual_changed
            diffs = rec.diffs
            if redo:
                kept = [d for d in rec.diffs if d.frontend not in redo]
                want, have = detail.view.frontends, actual.frontends
                new = diff(SemanticView.of(want[f] for f in redo if f in want),
                           SemanticView.of(have[f] for f in redo if f in have))
                diffs = sorted(kept + new, key=lambda d: d.frontend) if new else kept
            return Comparison("iptables", key, detail.view, actual, diffs)
    try:
        dump = dumps.full(key)
    except InputError as exc:
        raise ViewUnavailable(str(exc)) from None
    if dump is None:
        return None
    ref = dumps.ref_of(key)
    record = ref is not None and len(ref.recorded) < 2
    actual, trace = semantic_view_traced(dump, address_kinds=kinds, memo=memo, trace=record)
    diffs = diff(detail.view, actual)
    if ref is not None and trace is not None and trace.complete:
        ref.recorded.append(RecordedComparison(detail, trace, diffs))
    return Comparison("iptables", key, detail.view, actual, diffs)


def dump_reliability(ctx: CheckContext, mode: ProxyMode, rules_key: str) -> Any:
    """`kpdoctor.dataplane.reliability.Reliability` of the node's `mode` dump (None for IPVS, which has no
    chains to be missing, or when the dump is absent or unreadable). Worth its cost only when the comparison
    found differences: a dump that cannot be what the kernel holds must not be read as stale endpoints."""
    node = ctx.node
    if node is None:
        raise ValueError("dump_reliability() needs a node-scope context")

    def build() -> Any:
        from kpdoctor.dataplane.reliability import iptables_reliability, nft_reliability
        from kpdoctor.errors import InputError

        try:
            if mode == "iptables":
                dump = node_dumps(ctx).full(rules_key)
                return None if dump is None else iptables_reliability(dump)
            if mode == "nftables":
                from kpdoctor.dataplane.nft import parse_nft

                text = node.text(rules_key)
                return None if text is None else nft_reliability(parse_nft(text, source=f"{node.name}/{rules_key}"))
        except InputError:
            return None
        return None

    return ctx.derived(f"dump-reliability:{mode}:{rules_key}", build)


