"""The trace's data: a packet, one branch of its walk, the steps it took, and the result.

A packet is immutable; a rule that changes it (DNAT, MARK) makes a new one. A walk *forks* where the
outcome depends on chance (`-m statistic`, `numgen`: each side carries its probability) or on something
the dumps cannot tell (a match kpdoctor does not evaluate, an affinity table's content, an unknown
interface name: each side carries the assumption it made, and both are followed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

PROTOCOLS = ("tcp", "udp", "sctp")
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    sport: int
    dport: int
    proto: str = "tcp"
    family: int = 4
    iif: str | None = None  # None: not known; "" : none (locally generated)
    oif: str | None = None
    mark: int = 0
    ctmark: int = 0
    ctstate: str = "NEW"  # NEW | ESTABLISHED
    dnat: bool = False  # ct status DNAT (the first packet was destination-NATed)
    orig_dst: str = ""
    orig_dport: int = 0

    def evolve(self, **changes: Any) -> Packet:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Fork:
    """A match whose result the trace cannot decide alone.

    `p` is the probability that it matches (statistic, numgen); None when unknown: then both branches
    are followed and each records `label` with its assumed result."""

    label: str
    p: float | None = None


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # hook | rule | jump | goto | return | policy | branch | nat | mark | verdict | note | unknown | ipvs
    where: str  # "nat KUBE-SERVICES" / "ip kube-proxy services" / "hook prerouting"
    text: str  # the rule as dumped, or a sentence
    source: str = ""  # "file:line" of the rule in the dump
    detail: str = ""  # what it did: "DNAT to 10.244.1.15:3000", "mark 0x4000", "p=0.333"

    def to_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "where": self.where, "text": self.text}
        if self.source:
            out["source"] = self.source
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(slots=True)
class Branch:
    packet: Packet
    p: float = 1.0
    assumptions: tuple[str, ...] = ()
    steps: list[Step] = field(default_factory=list)
    masquerade: bool = False
    snat_to: str = ""
    dnat_to: str = ""  # "ip:port" decided by DNAT / dnat to / IPVS
    verdict: str = ""  # accept | drop | reject | queue (set once final)
    verdict_by: Step | None = None
    also_blocked_by: list[Step] = field(default_factory=list)  # blockers after a first one (what-if walk)
    ipvs: bool = False  # IPVS took the packet at input and sends it on (output -> postrouting)

    def fork(self, p: float, assumption: str | None) -> Branch:
        return Branch(self.packet, self.p * p, self.assumptions + ((assumption,) if assumption else ()),
                      list(self.steps), self.masquerade, self.snat_to, self.dnat_to, self.verdict, self.verdict_by,
                      list(self.also_blocked_by), self.ipvs)

    def add(self, kind: str, where: str, text: str, source: str = "", detail: str = "") -> Step:
        step = Step(kind, where, text, source, detail)
        self.steps.append(step)
        return step


def split(branch: Branch, fork: Fork) -> tuple[Branch, Branch]:
    """(matching side, non-matching side) of a fork."""
    if fork.p is not None:
        yes = branch.fork(fork.p, None)
        no = branch.fork(1.0 - fork.p, None)
        yes.add("branch", "", fork.label, detail=f"p={fork.p:.4g} taken")
        no.add("branch", "", fork.label, detail=f"p={1.0 - fork.p:.4g} not taken")
        return yes, no
    yes = branch.fork(1.0, f"{fork.label}: yes")
    no = branch.fork(1.0, f"{fork.label}: no")
    yes.add("unknown", "", f"{fork.label}: both branches followed", detail="assumed: matches")
    no.add("unknown", "", f"{fork.label}: both branches followed", detail="assumed: does not match")
    return yes, no


def base_chain_verdicts(outcomes: Iterable[tuple[Branch, str]],
                        policy: Callable[[Branch], str]) -> list[tuple[Branch, str]]:
    """(branch, verdict) for every way out of a base chain (iptables built-in, nft chain with a hook): a
    branch that fell off the end or returned takes `policy(branch)`, the chain policy's verdict, which
    records its own step; a terminal verdict stands."""
    return [(b, policy(b)) if verdict in ("", "return") else (b, verdict) for b, verdict in outcomes]

class TooManyBranches(Exception):
    """The walk forked past its bound (unknown matches on non-terminal rules multiply branches)."""
