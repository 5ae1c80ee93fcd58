"""Who stopped a packet, for `--explain`: the host firewall (ufw, firewalld, Docker, ...) or kube-proxy.

A packet dropped by a built-in chain's policy (`filter FORWARD: policy DROP`) was stopped by whoever set that
policy, and the only trace of them on the path is the chains they hooked into that base chain: ufw's
`ufw-before-forward`, `ufw-user-forward`, ... which the packet went through without being accepted. This module
reads one outcome's steps (as `kpdoctor.trace.run.outcomes` gives them) and names that owner and those chains.
Owners of iptables chains come from the one list, `kpdoctor.dataplane.chain_owners`; an nftables table is its
own owner (`table inet firewalld` is firewalld's, `ip kube-proxy` kube-proxy's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kpdoctor.dataplane.chain_owners import KUBE_PROXY, KUBELET, owner

MAX_CHAINS = 8  # chains named in one sentence (ufw hooks 6 into each base chain)
_NFT_TABLE_OWNERS = {"kube-proxy": KUBE_PROXY, "firewalld": "firewalld"}
_NOT_FIREWALL = frozenset({KUBE_PROXY, KUBELET})


@dataclass(frozen=True, slots=True)
class FirewallCause:
    owner: str  # "ufw", "firewalld", "Docker", an nft table "inet filter"
    chains: tuple[str, ...]  # that owner's chains the packet went through in the deciding base chain, in order


def _owner_of(where: str) -> tuple[str | None, str]:
    """(owner, chain) of a step's `where`: "filter ufw-user-input" (iptables) or "inet firewalld filter_INPUT"."""
    words = where.split()
    if len(words) == 2:
        return owner(words[0], words[1]), words[1]
    if len(words) == 3:
        family, table, chain = words
        return _NFT_TABLE_OWNERS.get(table, f"nft table {family} {table}"), chain
    return None, ""


def firewall_cause(steps: Sequence[Mapping[str, str]], decided_by: Mapping[str, str] | None) -> FirewallCause | None:
    """The host firewall that stopped the packet, or None (kube-proxy, the kubelet, routing, or not known).

    A rule in a firewall's chain names that firewall. A base chain's policy names the firewall whose chains the
    packet went through in that base chain (after its last `hook` step) without being accepted."""
    if not decided_by:
        return None
    who, chain = _owner_of(decided_by.get("where", ""))
    if decided_by.get("kind") != "policy":
        if who is None or who in _NOT_FIREWALL:
            return None
        return FirewallCause(who, (chain,))
    start = max((i for i, s in enumerate(steps) if s.get("kind") == "hook"), default=-1) + 1
    found: dict[str, list[str]] = {}
    for step in steps[start:]:
        if step.get("kind") not in ("jump", "goto"):
            continue
        target = step.get("detail", "").partition(" ")[2]
        table = step.get("where", "").split()
        if not target or not table:
            continue
        callee = " ".join([*table[:-1], target])
        who, name = _owner_of(callee)
        if who is not None and who not in _NOT_FIREWALL and name not in found.setdefault(who, []):
            found[who].append(name)
    if not found:
        return None
    who = max(found, key=lambda k: len(found[k]))  # the firewall with the most chains on this base chain
    return FirewallCause(who, tuple(found[who][:MAX_CHAINS]))


def sentence(cause: FirewallCause, policy: bool) -> str:
    """`; the host firewall is ufw: its chains ufw-before-forward, ... accepted nothing` (or `: a ufw chain`)."""
    chains = ", ".join(cause.chains)
    if policy:
        return f"; host firewall {cause.owner}: its chains {chains} did not accept it"
    return f"; host firewall {cause.owner} (its chain {chains})"
