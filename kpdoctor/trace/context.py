"""What the evaluators may ask about the node besides its rules: its own addresses, its ipsets, and the
bound on forks (one per trace, no globals)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from kpdoctor.dataplane.ipset import IPSets
from kpdoctor.trace.ipnet import LocalAddresses, PodRange
from kpdoctor.trace.ipset_match import SetIndex
from kpdoctor.trace.model import Packet, TooManyBranches
from kpdoctor.trace.spec_cache import SpecCache

MAX_FORKS = 512


@dataclass
class TraceContext:
    local: LocalAddresses
    ipsets: IPSets | None = None
    primary: str = ""  # the node's InternalIP (REDIRECT of a packet that did not come from lo)
    max_forks: int = MAX_FORKS
    forks: int = field(default=0)
    specs: SpecCache = field(default_factory=SpecCache)  # compiled rule specs (--matrix shares one between nodes)
    set_indexes: dict[str, SetIndex] = field(default_factory=dict)  # ipsets indexed on first use
    bridges: frozenset[str] | None = None  # interfaces that are another's master (ip-addr.json); None: not known

    def count_fork(self) -> None:
        self.forks += 1
        if self.forks > self.max_forks:
            raise TooManyBranches(f"more than {self.max_forks} forks (unknown matches multiply branches)")

    def primary_address(self) -> str:
        return self.primary

    def ipset_member(self, name: str, dirs: list[str], pkt: Packet) -> bool | None:
        """Whether the packet's (src|dst[,port]...) is in ipset `name`; None when the set is not known or its
        type is not one the trace evaluates (then the rule forks). See kpdoctor.trace.ipset_match."""
        if self.ipsets is None:
            return None
        index = self.set_indexes.get(name)
        if index is None:
            found = self.ipsets.get(name)
            if found is None:
                return None
            index = self.set_indexes[name] = SetIndex(found)
        return index.contains(dirs, pkt)


def local_addresses(interfaces: list[tuple[str, str]] | None, known: list[str] | Mapping[str, str],
                    pod_ranges: tuple[PodRange, ...] = (), outside: Mapping[str, str] | None = None) -> LocalAddresses:
    """`interfaces`: (ifname, address) from ip-addr.json (None when not collected); `known`: addresses that are
    local whatever ip-addr.json says (the Node's API addresses), or address -> the fact that says so (shown in
    the trace when ip-addr.json was not collected); `pod_ranges`: the Nodes' podCIDRs, used only without
    ip-addr.json; `outside`: addresses that are not the node's (address -> why), used only without ip-addr.json."""
    addrs: set[str] = set()
    sources: dict[str, str] = {}
    named = known if isinstance(known, Mapping) else dict.fromkeys(known, "")
    for text, source in [*((a, "") for _, a in interfaces or ()), *named.items()]:
        try:
            addr = str(ipaddress.ip_address(text))
        except ValueError:
            continue
        addrs.add(addr)
        if interfaces is None and source:
            sources.setdefault(addr, source)
    complete = interfaces is not None
    if complete:
        return LocalAddresses(frozenset(addrs), complete, sources)
    return LocalAddresses(frozenset(addrs), complete, sources, pod_ranges, dict(outside or {}))
