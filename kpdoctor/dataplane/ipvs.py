"""IPVS as a node prints it: `ipvsadm --save -n`, `ipvsadm -Ln [--stats]` (ipset: `kpdoctor.dataplane.ipset`).

IPVS mode keeps a node's Service state in three places (kernel IPVS table,
ipsets, and a small iptables ruleset), and a doctor must read all of them from
text a node printed, possibly cut short by a timeout. The model here is shared
by the parsers and by the reference proxier (`kpdoctor.proxier.ipvs`), so the
expected and the observed state are the same Python objects and compare with
`==`.

Formats follow ipvsadm 1.31 (`print_service_entry` / `print_title` in
ipvsadm.c: `-A -t ADDR:PORT -s SCHED [-p T [-M MASK]] [-b FLAGS]`,
`-a -t ADDR:PORT -r ADDR:PORT -m|-g|-i -w W`; the list form
`TCP  ADDR:PORT SCHED [persistent T]` / `  -> ADDR:PORT Masq W Act InAct`) and
ipset 7.x (`Name:`/`Type:`/`Header:`/.../`Members:` blocks; `create`/`add`
lines). Every error is an `InputError` whose `where` is `source:line`.

A node without IPVS is a fact, not a parse error: ipvsadm then prints
"Can't initialize ipvs: Protocol not available" (seen with kube-proxy v1.36.2
on this kernel, tests/fixtures/kube-proxy-v1.36/ipvs-unavailable), which
`parse_ipvsadm` turns into an `IPVSTable(available=False, reason=...)`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from kpdoctor.addresses import canonical_ip, join_host_port
from kpdoctor.errors import InputError

# ipvsadm protocol spellings: save form flag -> API protocol, list form word -> API protocol
_SAVE_PROTO = {"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP", "--sctp-service": "SCTP"}
_SAVE_FLAG = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}
_LIST_PROTO = {"TCP": "TCP", "UDP": "UDP", "SCTP": "SCTP"}
_FORWARD_SAVE = {"-m": "Masq", "--masquerading": "Masq", "-g": "Route", "--gatewaying": "Route",
                 "-i": "Tunnel", "--ipip": "Tunnel"}
FORWARD_FLAG = {"Masq": "-m", "Route": "-g", "Tunnel": "-i", "Local": "-g"}
_FORWARD_NAMES = {"Masq", "Route", "Tunnel", "Local", "Bypass"}
_PROTO_NUMBER = {"TCP": 6, "UDP": 17, "SCTP": 132}
UNAVAILABLE_MARKERS = ("Can't initialize ipvs", "Protocol not available", "IP Virtual Server is built")


# --------------------------------------------------------------------------- model
@dataclass(frozen=True, slots=True, order=True)
class RealServer:
    address: str
    port: int
    weight: int = 1
    forward: str = "Masq"  # kube-proxy leaves ConnectionFlags 0 = IP_VS_CONN_F_MASQ

    @property
    def key(self) -> str:
        return join_host_port(self.address, self.port)


@dataclass(frozen=True, slots=True)
class VirtualServer:
    protocol: str  # TCP | UDP | SCTP ("" for fwmark services)
    address: str
    port: int
    scheduler: str = "rr"
    persistent: int | None = 0  # persistence timeout in seconds; 0 = not persistent; None = not shown (stats form)
    sched_flags: tuple[str, ...] = ()  # e.g. ("mh-port",) for kube-proxy's "mh" scheduler
    fwmark: int = 0
    real_servers: tuple[RealServer, ...] = ()

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.protocol, self.address, self.port)

    @property
    def service_arg(self) -> str:
        """How ipvsadm names this service in its save form: `-t 10.0.0.1:80`."""
        if self.fwmark:
            return f"-f {self.fwmark}"
        return f"{_SAVE_FLAG.get(self.protocol, '-t')} {join_host_port(self.address, self.port)}"

    def sort_key(self) -> Any:
        """ipvsadm's `ipvs_cmp_services` order: fwmark, family, protocol, address, port.

        ipvsadm subtracts addresses as unsigned 32-bit words into an int, which wraps for
        addresses more than 2^31 apart (192.0.2.1 sorts before 10.0.0.1); reproduced here. For
        sets where that comparison is not transitive qsort's result is arbitrary: order
        carries no meaning for IPVS, so compare tables as sets.
        """
        return _SERVICE_ORDER(self)


@dataclass(frozen=True)
class IPVSTable:
    """The kernel IPVS table of a node, or why it could not be read."""

    virtual_servers: tuple[VirtualServer, ...] = ()
    available: bool = True
    reason: str = ""  # why not available (kernel without IPVS, ipvsadm missing, not collected)
    source: str = ""

    def by_key(self) -> dict[tuple[str, str, int], VirtualServer]:
        return {vs.key: vs for vs in self.virtual_servers}


# --------------------------------------------------------------------------- helpers
def line_error(message: str, source: str, lineno: int, line: str) -> InputError:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return InputError(f"{message}: {shown!r}", where=f"{source}:{lineno}")


def _split_host_port(text: str, source: str, lineno: int, line: str) -> tuple[str, int]:
    """`10.0.0.1:80` or `[fd00::1]:80` -> (address, port); numeric only (ipvsadm -n)."""
    if text.startswith("["):
        host, sep, port_s = text[1:].partition("]:")
        if not sep:
            raise line_error("malformed [IPv6]:port", source, lineno, line)
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep:
            raise line_error("expected ADDRESS:PORT", source, lineno, line)
    address = canonical_ip(host)
    if address is None:
        raise line_error(f"not a numeric IP address {host!r} (was ipvsadm run with -n?)", source, lineno, line)
    if not port_s.isdecimal() or int(port_s) > 65535:
        raise line_error(f"not a port number {port_s!r} (was ipvsadm run with -n?)", source, lineno, line)
    return address, int(port_s)


def _int(text: str, what: str, source: str, lineno: int, line: str) -> int:
    if not text.isdecimal():
        raise line_error(f"{what} is not a number {text!r}", source, lineno, line)
    return int(text)


def unavailable_reason(text: str) -> str | None:
    """ipvsadm's own words when the kernel has no IPVS (kept as the reason)."""
    if any(marker in text for marker in UNAVAILABLE_MARKERS):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("modprobe")]
        return "IPVS not available in the kernel: " + (" ".join(lines[:2]) or "ipvsadm failed")
    return None


def absent_table(reason: str, source: str = "") -> IPVSTable:
    """A node where ipvsadm output is missing (not installed, not collected, kernel without IPVS)."""
    return IPVSTable(available=False, reason=reason, source=source)


class _Builder:
    """Collects services in input order and attaches real servers to the right one."""

    def __init__(self) -> None:
        self.order: list[tuple[str, str, int] | tuple[str, int]] = []
        self.services: dict[object, VirtualServer] = {}
        self.dests: dict[object, list[RealServer]] = {}

    def add_service(self, key: object, vs: VirtualServer, source: str, lineno: int, line: str) -> None:
        if key in self.services:
            raise line_error("duplicate virtual service", source, lineno, line)
        self.services[key] = vs
        self.dests[key] = []
        self.order.append(key)  # type: ignore[arg-type]

    def table(self, source: str) -> IPVSTable:
        out = []
        for key in self.order:
            vs = self.services[key]
            out.append(VirtualServer(
                protocol=vs.protocol, address=vs.address, port=vs.port, scheduler=vs.scheduler,
                persistent=vs.persistent, sched_flags=vs.sched_flags, fwmark=vs.fwmark,
                real_servers=tuple(sorted(self.dests[key], key=dest_sort_key)),
            ))
        return IPVSTable(virtual_servers=tuple(out), source=source)


def _wrapped(a: int, b: int) -> int:
    """C's `int r = (uint32)a - (uint32)b` on a two's-complement machine."""
    r = (a - b) & 0xFFFFFFFF
    return r - (1 << 32) if r & 0x80000000 else r


@functools.lru_cache(maxsize=1 << 18)
def _words(address: str) -> tuple[int, ...]:
    """32-bit words of an address; cached because a sort compares each address ~log(n) times."""
    ip = ipaddress.ip_address(address)
    value = int(ip)
    if ip.version == 4:
        return (value,)
    return tuple((value >> shift) & 0xFFFFFFFF for shift in (96, 64, 32, 0))


def _cmp_addr(a: str, b: str) -> int:
    for wa, wb in zip(_words(a), _words(b), strict=False):
        r = _wrapped(wa, wb)
        if r:
            return r
    return 0


def _cmp_services(s1: VirtualServer, s2: VirtualServer) -> int:
    r = s1.fwmark - s2.fwmark
    if r:
        return r
    v1 = 6 if ":" in s1.address else 4
    v2 = 6 if ":" in s2.address else 4
    if v1 != v2:
        return v1 - v2
    r = _PROTO_NUMBER.get(s1.protocol, 0) - _PROTO_NUMBER.get(s2.protocol, 0)
    if r:
        return r
    if s1.address and s2.address:
        r = _cmp_addr(s1.address, s2.address)
        if r:
            return r
    return s1.port - s2.port


def _cmp_dests(d1: RealServer, d2: RealServer) -> int:
    v1 = 6 if ":" in d1.address else 4
    v2 = 6 if ":" in d2.address else 4
    if v1 != v2:
        return v1 - v2
    return _cmp_addr(d1.address, d2.address) or d1.port - d2.port


_SERVICE_ORDER = functools.cmp_to_key(_cmp_services)
dest_sort_key = functools.cmp_to_key(_cmp_dests)


# --------------------------------------------------------------------------- ipvsadm --save -n
def _save_service_key(tokens: list[str], i: int, source: str, lineno: int, line: str) -> tuple[object, str, str, int, int]:
    """Parse `-t ADDR:PORT` / `-f MARK` at tokens[i]; returns (key, proto, addr, port, fwmark)."""
    if i + 1 >= len(tokens):
        raise line_error("truncated line: service address missing", source, lineno, line)
    flag, value = tokens[i], tokens[i + 1]
    if flag in ("-f", "--fwmark-service"):
        mark = _int(value, "fwmark", source, lineno, line)
        return (("FWM", mark), "", "", 0, mark)
    proto = _SAVE_PROTO.get(flag)
    if proto is None:
        raise line_error(f"expected -t/-u/--sctp-service/-f, found {flag!r}", source, lineno, line)
    address, port = _split_host_port(value, source, lineno, line)
    return ((proto, address, port), proto, address, port, 0)


def parse_ipvsadm_save(text: str, source: str = "ipvsadm-save.txt") -> IPVSTable:
    """`ipvsadm --save -n` (alias `-S -n`) output -> IPVSTable."""
    reason = unavailable_reason(text)
    if reason is not None:
        return absent_table(reason, source)
    builder = _Builder()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        cmd = tokens[0]
        if cmd in ("-A", "--add-service"):
            key, proto, address, port, mark = _save_service_key(tokens, 1, source, lineno, line)
            scheduler, persistent = "", 0
            flags: tuple[str, ...] = ()
            i = 3
            while i < len(tokens):
                opt = tokens[i]
                if opt in ("-s", "--scheduler", "-p", "--persistent", "-M", "--netmask", "-b", "--sched-flags", "pe"):
                    if i + 1 >= len(tokens):
                        raise line_error(f"truncated line: {opt} without a value", source, lineno, line)
                    value = tokens[i + 1]
                    if opt in ("-s", "--scheduler"):
                        scheduler = value
                    elif opt in ("-p", "--persistent"):
                        persistent = _int(value, "persistence timeout", source, lineno, line)
                    elif opt in ("-b", "--sched-flags"):
                        flags = tuple(value.split(","))
                    i += 2
                elif opt in ("ops", "-o", "--ops"):
                    i += 1
                else:
                    raise line_error(f"unknown virtual service option {opt!r}", source, lineno, line)
            if not scheduler:
                raise line_error("virtual service without a scheduler (-s)", source, lineno, line)
            builder.add_service(key, VirtualServer(proto, address, port, scheduler, persistent, flags, mark),
                                source, lineno, line)
        elif cmd in ("-a", "--add-server"):
            key, *_ = _save_service_key(tokens, 1, source, lineno, line)
            if key not in builder.services:
                raise line_error("real server for a virtual service not defined above", source, lineno, line)
            rs_addr: tuple[str, int] | None = None
            weight, forward = 1, "Route"  # ipvsadm's default forwarding method is gatewaying
            i = 3
            while i < len(tokens):
                opt = tokens[i]
                if opt in _FORWARD_SAVE:
                    forward = _FORWARD_SAVE[opt]
                    i += 1
                    continue
                if opt in ("-r", "--real-server", "-w", "--weight", "-x", "--u-threshold", "-y", "--l-threshold",
                           "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum"):
                    if i + 1 >= len(tokens):
                        raise line_error(f"truncated line: {opt} without a value", source, lineno, line)
                    value = tokens[i + 1]
                    if opt in ("-r", "--real-server"):
                        rs_addr = _split_host_port(value, source, lineno, line)
                    elif opt in ("-w", "--weight"):
                        weight = _int(value, "weight", source, lineno, line)
                    i += 2
                    continue
                raise line_error(f"unknown real server option {opt!r}", source, lineno, line)
            if rs_addr is None:
                raise line_error("truncated line: real server without -r ADDRESS:PORT", source, lineno, line)
            builder.dests[key].append(RealServer(rs_addr[0], rs_addr[1], weight, forward))
        else:
            raise line_error("expected an ipvsadm --save line (-A or -a)", source, lineno, line)
    return builder.table(source)


# --------------------------------------------------------------------------- ipvsadm -Ln [--stats]
_VERSION_RE = re.compile(r"^IP Virtual Server version \d+\.\d+\.\d+ \(size=\d+\)$")
_NUM_RE = re.compile(r"^\d+[KMGT]?$")


def parse_ipvsadm_list(text: str, source: str = "ipvsadm-list.txt") -> IPVSTable:
    """`ipvsadm -Ln` output (also `-Ln --stats`, `--rate`, `--thresholds`: only addresses are read there)."""
    reason = unavailable_reason(text)
    if reason is not None:
        return absent_table(reason, source)
    builder = _Builder()
    lines = text.splitlines()
    detailed = True  # plain -Ln shows scheduler, flags, forward and weight
    seen_title = False
    current: object | None = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if _VERSION_RE.match(stripped):
            continue
        if stripped.startswith("Prot LocalAddress:Port"):
            seen_title = True
            detailed = stripped.split()[2:4] == ["Scheduler", "Flags"]
            continue
        if stripped.startswith("-> RemoteAddress:Port"):
            continue
        if stripped.startswith("IP Virtual Server"):
            raise line_error("malformed ipvsadm header", source, lineno, line)
        if not seen_title:
            raise line_error("expected the ipvsadm -Ln title line 'Prot LocalAddress:Port ...'", source, lineno, line)
        tokens = stripped.split()
        if tokens[0] == "->":
            if current is None:
                raise line_error("real server line before any virtual service", source, lineno, line)
            if len(tokens) < 2:
                raise line_error("truncated real server line", source, lineno, line)
            address, port = _split_host_port(tokens[1], source, lineno, line)
            weight, forward = 1, "Masq"
            if detailed:
                if len(tokens) != 6:
                    raise line_error("truncated real server line (want address, Forward, Weight, ActiveConn, InActConn)",
                               source, lineno, line)
                if tokens[2] not in _FORWARD_NAMES:
                    raise line_error(f"unknown forwarding method {tokens[2]!r}", source, lineno, line)
                forward = tokens[2]
                weight = _int(tokens[3], "weight", source, lineno, line)
                for t in tokens[4:]:
                    _int(t, "connection count", source, lineno, line)
            else:
                for t in tokens[2:]:
                    if not _NUM_RE.match(t) and not _is_rate(t):
                        raise line_error(f"not a counter {t!r}", source, lineno, line)
            builder.dests[current].append(RealServer(address, port, weight, forward))
            continue
        # a virtual service line
        if tokens[0] == "FWM":
            if len(tokens) < 2:
                raise line_error("truncated FWM line", source, lineno, line)
            mark = _int(tokens[1], "fwmark", source, lineno, line)
            key: object = ("FWM", mark)
            proto, address, port = "", "", 0
            rest = tokens[2:]
        elif tokens[0] in _LIST_PROTO:
            if len(tokens) < 2:
                raise line_error("truncated virtual service line", source, lineno, line)
            proto = _LIST_PROTO[tokens[0]]
            address, port = _split_host_port(tokens[1], source, lineno, line)
            mark = 0
            key = (proto, address, port)
            rest = tokens[2:]
        else:
            raise line_error("expected a virtual service (TCP/UDP/SCTP/FWM) or a '->' real server line", source, lineno, line)
        scheduler = ""
        persistent: int | None = 0 if detailed else None
        flags: tuple[str, ...] = ()
        if detailed:
            if not rest:
                raise line_error("truncated virtual service line: scheduler missing", source, lineno, line)
            scheduler = rest[0]
            i = 1
            while i < len(rest):
                word = rest[i]
                if word.startswith("(") and word.endswith(")"):
                    flags = tuple(word[1:-1].split(","))
                    i += 1
                elif word in ("persistent", "mask", "pe"):
                    if i + 1 >= len(rest):
                        raise line_error(f"truncated line: {word} without a value", source, lineno, line)
                    if word == "persistent":
                        persistent = _int(rest[i + 1], "persistence timeout", source, lineno, line)
                    i += 2
                elif word == "ops":
                    i += 1
                else:
                    raise line_error(f"unknown virtual service flag {word!r}", source, lineno, line)
        else:
            for t in rest:
                if not _NUM_RE.match(t) and not _is_rate(t):
                    raise line_error(f"not a counter {t!r}", source, lineno, line)
        builder.add_service(key, VirtualServer(proto, address, port, scheduler, persistent, flags, mark),
                            source, lineno, line)
        current = key
    return builder.table(source)


def _is_rate(token: str) -> bool:
    return bool(re.match(r"^\d+(\.\d+)?[KMGT]?$", token))


def parse_ipvsadm(text: str, source: str = "ipvsadm") -> IPVSTable:
    """Either form, by its first meaningful line."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-A", "-a", "--add-service", "--add-server")):
            return parse_ipvsadm_save(text, source)
        return parse_ipvsadm_list(text, source)
    return IPVSTable(source=source)
