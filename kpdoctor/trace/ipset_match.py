"""Whether a packet is in an ipset, compared the way the kernel's set types compare (net/netfilter/ipset/).

Each dimension of the set type is matched against the packet field its `--match-set` flag names (src/dst):
- `ip`: the address equals the member's (a member written as a CIDR or an a-b range covers its addresses);
- `net`: the address is inside the member's prefix (a bare address is a host prefix); a member flagged `nomatch`
  excludes what it covers unless a more specific member covers it too (hash:net* types);
- `port`: hash types store the protocol with the port (`tcp:8080`; a bare port is tcp, as `ipset add`
  defaults); bitmap:port stores the port alone and matches it for any protocol that has ports.

Why this exists: the IPVS kernel proof (tests/lab/test_trace_ipvs_kernel.py) showed kube-proxy's
bitmap:port sets (KUBE-NODE-PORT-TCP, KUBE-NODE-PORT-LOCAL-TCP, KUBE-HEALTH-CHECK-NODE-PORT) and the
hash:ip,port,net source-range set (KUBE-LOAD-BALANCER-SOURCE-CIDR) left undecided or mis-compared (the trace
forked "not in the facts" on every NodePort, and compared a source address as text with a member CIDR).
Types with other dimensions (mac, iface, mark) and list:set are not evaluated: `contains` answers None.
"""

from __future__ import annotations

from kpdoctor.dataplane.ipset import IPSet
from kpdoctor.trace.ipnet import cidr, ip_int
from kpdoctor.trace.model import Packet

PORT_PROTOS = frozenset({"tcp", "udp", "sctp", "udplite"})
_DIMENSIONS = ("ip", "net", "port")

Key = tuple[object, ...]
# one dimension of a member that covers more than one value: ("net", family, network, mask) or
# ("range", family, low, high)
Wide = tuple[object, ...]


def _port(text: str, bitmap: bool) -> object | None:
    proto, sep, port = text.rpartition(":")
    if not port.isdecimal():
        return None
    if bitmap:
        return int(port) if not sep else None
    return (proto.lower() if sep else "tcp", int(port))


def _address(text: str, kind: str) -> tuple[object, bool] | None:
    """(exact value or wide matcher, whether it is exact)."""
    if "-" in text and kind == "ip":
        low, _, high = text.partition("-")
        lo, hi = ip_int(low), ip_int(high)
        if lo is None or hi is None or lo[0] != hi[0]:
            return None
        return ("range", lo[0], lo[1], hi[1]), False
    net = cidr(text)
    if net is None:
        return None
    full = (1 << (32 if net[0] == 4 else 128)) - 1
    if net[2] == full:
        return (net[0], net[1]), True
    return ("net", *net), False


class SetIndex:
    """One ipset, indexed once: exact members in a hash set, wide ones (prefixes, ranges) scanned."""

    def __init__(self, ipset: IPSet) -> None:
        family, _, dims = ipset.type.partition(":")
        self.parts = dims.split(",")
        self.bitmap = family == "bitmap"
        self.supported = family in ("hash", "bitmap") and all(p in _DIMENSIONS for p in self.parts)
        self.exact: set[Key] = set()
        self.wide: list[tuple[object, ...]] = []  # per dimension: an exact value or a Wide matcher
        self.excluded: list[tuple[object, ...]] = []  # `nomatch` members
        self.undecided = False  # a member this index could not read: a miss is not a proof
        if self.supported:
            for member in ipset.members:
                self._add(member)

    def _add(self, member: str) -> None:
        words = member.split()
        values = words[0].split(",") if words else []
        if len(values) != len(self.parts):
            self.undecided = True
            return
        dims: list[object] = []
        exact = True
        for part, text in zip(self.parts, values, strict=True):
            if part == "port":
                port = _port(text, self.bitmap)
                if port is None:
                    self.undecided = True
                    return
                dims.append(port)
                continue
            found = _address(text, part)
            if found is None:
                self.undecided = True
                return
            dims.append(found[0])
            exact = exact and found[1]
        if "nomatch" in words[1:]:
            self.excluded.append(tuple(dims))
        elif exact:
            self.exact.add(tuple(dims))
        else:
            self.wide.append(tuple(dims))

    def _packet_key(self, dirs: list[str], pkt: Packet) -> Key | None:
        key: list[object] = []
        for part, d in zip(self.parts, dirs, strict=True):
            if part == "port":
                if pkt.proto not in PORT_PROTOS:
                    return None
                port = pkt.sport if d == "src" else pkt.dport
                key.append(port if self.bitmap else (pkt.proto, port))
                continue
            addr = ip_int(pkt.src if d == "src" else pkt.dst)
            if addr is None:
                return None
            key.append(addr)
        return tuple(key)

    @staticmethod
    def _covers(member: tuple[object, ...], key: Key) -> bool:
        for want, have in zip(member, key, strict=True):
            if isinstance(want, tuple) and want and want[0] == "net":
                _, fam, net, mask = want
                if not (isinstance(have, tuple) and have[0] == fam and (int(have[1]) & int(mask)) == net):
                    return False
            elif isinstance(want, tuple) and want and want[0] == "range":
                _, fam, low, high = want
                if not (isinstance(have, tuple) and have[0] == fam and low <= have[1] <= high):
                    return False
            elif want != have:
                return False
        return True

    def contains(self, dirs: list[str], pkt: Packet) -> bool | None:
        """True / False; None when the set's type or the rule's flags are not evaluated here."""
        if not self.supported or len(dirs) != len(self.parts):
            return None
        key = self._packet_key(dirs, pkt)
        if key is None:
            return False  # a port dimension and a protocol without ports (or not an address): no match
        excluded = [_specificity(m) for m in self.excluded if self._covers(m, key)]
        if not excluded:
            if key in self.exact or any(self._covers(m, key) for m in self.wide):
                return True
            return None if self.undecided else False
        # the kernel lets the most specific covering entry decide (hash:net* lookups go from the longest prefix)
        matched = [_specificity(m) for m in self.wide if self._covers(m, key)]
        if key in self.exact:
            matched.append(_specificity(key))
        if not matched or max(excluded) > max(matched):
            return False
        return True if max(matched) > max(excluded) else None


def _specificity(member: tuple[object, ...]) -> int:
    """Prefix bits of a member over all its dimensions (a range counts as the widest, 0)."""
    bits = 0
    for want in member:
        if isinstance(want, tuple) and want and want[0] == "net":
            bits += bin(int(want[3])).count("1")
        elif isinstance(want, tuple) and want and want[0] == "range":
            continue
        else:
            bits += 128
    return bits
