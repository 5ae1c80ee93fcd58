"""Address arithmetic for the evaluators: CIDR membership on integers, cached (a trace on a 10,000-Service
dump compares the packet's address with tens of thousands of rule addresses)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol


@lru_cache(maxsize=65536)
def ip_int(text: str) -> tuple[int, int] | None:
    """(family, integer) of an address, None when `text` is not one."""
    v4 = _v4(text.strip())
    if v4 is not None:
        return 4, v4
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    return addr.version, int(addr)


def _v4(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isdecimal() or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = (value << 8) | octet
    return value


@lru_cache(maxsize=65536)
def cidr(text: str) -> tuple[int, int, int] | None:
    """(family, network integer, mask integer) of `a.b.c.d[/n]`, None when not a network."""
    text = text.strip()
    addr, _, plen = text.partition("/")
    v4 = _v4(addr)
    if v4 is not None and (not plen or (plen.isdecimal() and int(plen) <= 32)):  # the common case, fast
        bits = int(plen) if plen else 32
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        return 4, v4 & mask, mask
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.netmask)


def in_cidr(addr: str, network: str) -> bool | None:
    a, n = ip_int(addr), cidr(network)
    if a is None or n is None:
        return None
    return a[0] == n[0] and (a[1] & n[2]) == n[1]


def in_range(addr: str, low: str, high: str) -> bool | None:
    a, lo, hi = ip_int(addr), ip_int(low), ip_int(high)
    if a is None or lo is None or hi is None:
        return None
    return a[0] == lo[0] == hi[0] and lo[1] <= a[1] <= hi[1]


def family_of(addr: str) -> int:
    found = ip_int(addr)
    return found[0] if found else 4


def split_host_port(text: str) -> tuple[str, int | None]:
    """`1.2.3.4:80`, `[fd00::1]:80`, `1.2.3.4`, `fd00::1` -> (address, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdecimal() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port) if port.isdecimal() else None
    return text, None


def join_host_port(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class PodRange(Protocol):
    """A Node's podCIDR (kpdoctor/trace/pod_nets.PodNet)."""

    def reason(self, family: int, value: int) -> str | None: ...


@dataclass(frozen=True)
class LocalAddresses:
    """The node's own addresses (what `addrtype LOCAL` / `fib daddr type local` match).

    `complete` is True when the node's `ip -j addr` was collected: then an address not listed is not
    local. Without it the Node's API addresses (and IPVS VIPs) and loopback are local, an address inside a
    Node's podCIDR is a pod address, not local (`pod_nets`, kpdoctor/trace/pod_nets.py), so is an address of
    `outside` (the trace's stand-in for a client outside the cluster), and any other
    address is "not known" (the evaluators fork on it rather than guess). `sources`: where each listed
    address came from; `assumed`: the addresses the pod CIDRs decided since the last `reset()`, with why."""

    addresses: frozenset[str]
    complete: bool
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    pod_nets: tuple[PodRange, ...] = field(default=(), compare=False, hash=False)
    outside: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)  # not local, and why
    assumed: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    _memo: dict[str, str | None] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def is_local(self, addr: str) -> bool | None:
        found = ip_int(addr)
        if found is None:
            return None
        if found[0] == 4 and (found[1] >> 24) == 127:
            return True
        if found[0] == 6 and found[1] == 1:
            return True
        if _canonical(addr) in self.addresses:
            return True
        if self.complete:
            return False
        if self.pod_nets or self.outside:
            why = self._not_local_reason(addr, found)
            if why is not None:
                self.assumed[addr] = why
                return False
        return None

    def _not_local_reason(self, addr: str, found: tuple[int, int]) -> str | None:
        memo = self._memo
        if addr in memo:
            return memo[addr]
        why = self.outside.get(_canonical(addr)) or next(
            (r for n in self.pod_nets if (r := n.reason(*found)) is not None), None)
        memo[addr] = why
        return why

    def why(self, addr: str) -> str:
        """Which fact decided `is_local(addr)` ("" for ip-addr.json, loopback, or when nothing did)."""
        if self.complete:
            return ""
        found = ip_int(addr)
        if found is None:
            return ""
        source = self.sources.get(_canonical(addr))
        if source:
            return source
        reason = self._not_local_reason(addr, found) if self.pod_nets or self.outside else None
        return f"assumed: {addr} is {reason}" if reason else ""

    def reset(self) -> None:
        """Forget which addresses the last trace assumed (one LocalAddresses serves every trace of a node)."""
        self.assumed.clear()


@lru_cache(maxsize=65536)
def _canonical(addr: str) -> str:
    """The address as `ipaddress` prints it (what `LocalAddresses.addresses` holds); cached: the walk asks
    about the same few addresses hundreds of thousands of times on a big dump."""
    return str(ipaddress.ip_address(addr))
