"""iptables rule specs (as `kpdoctor.dataplane.iptables_save` keeps them) compiled into match functions.

Each match function takes (packet, context) and returns True, False or a `Fork`: a probability
(`-m statistic`) or an unknown (`-m recent --rcheck`, `-m physdev`, an interface name the facts do not
give, a module kpdoctor does not evaluate). Nothing is guessed: what cannot be decided forks.

Covered: -s -d -p -i -o -f, and the modules kube-proxy, kubelet, Docker, Calico, Cilium's chaining mode
and host firewalls (ufw, firewalld's iptables backend) use: tcp/udp/sctp ports and flags, multiport,
comment, mark, connmark, conntrack, state, addrtype, statistic, recent, set (ipset), limit, hashlimit,
pkttype, iprange, policy, nfacct, icmp/icmp6, physdev's input side (decided for packets that were not bridged).
Everything else is an "unknown match".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.dataplane.iptables_save import tokenize
from kpdoctor.trace.ipnet import cidr, in_cidr, in_range, ip_int
from kpdoctor.trace.model import Fork, Packet

Result = bool | Fork
Match = Callable[[Packet, Any], Result]
PROTO_NUMBERS = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp", "icmpv6": "ipv6-icmp"}
_BASE_OPTIONS = frozenset({"-s", "--source", "-d", "--destination", "-p", "--protocol", "-i",
                           "--in-interface", "-o", "--out-interface", "-f", "--fragment"})
_ALWAYS = frozenset({"comment", "tcp", "udp", "sctp", "nfacct"})
_LIMITS = frozenset({"limit", "hashlimit"})
# Port options -> the packet port fields they match (any of them): of the tcp/udp/sctp matches, of multiport.
_PORT_OPTIONS = {"--dport": ("dport",), "--destination-port": ("dport",),
                 "--sport": ("sport",), "--source-port": ("sport",)}
_MULTIPORT_OPTIONS = {"--dports": ("dport",), "--destination-ports": ("dport",),
                      "--sports": ("sport",), "--source-ports": ("sport",), "--ports": ("dport", "sport")}
# Targets that do not end the walk of a chain (they log, count, mark the conntrack entry, ...).
NON_TERMINATING = frozenset({
    "LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "TCPMSS", "CHECKSUM", "CLASSIFY", "DSCP", "TOS", "TTL", "HL",
    "SET", "CT", "NOTRACK", "TEE", "SECMARK", "CONNSECMARK", "IDLETIMER", "LED", "RATEEST", "TCPOPTSTRIP",
    "SYNPROXY", "NETMAP",
})


@dataclass(slots=True)
class Compiled:
    """One rule: its matches (all must hold), its target and the target's options."""

    matches: list[tuple[Match, str]] = field(default_factory=list)  # (function, text for an unknown label)
    ordered: list[tuple[Match, str]] = field(default_factory=list)  # the same, in evaluation order (compile_spec)
    target: str | None = None
    goto: bool = False
    options: dict[str, str] = field(default_factory=dict)


def _split_segments(args: list[str]) -> tuple[list[tuple[str | None, list[tuple[str, list[str], bool]]]], list[str]]:
    """[(module or None, [(option, values, negated)])] and the target words (from -j/-g on)."""
    segments: list[tuple[str | None, list[tuple[str, list[str], bool]]]] = [(None, [])]
    neg = False
    i, n = 0, len(args)
    while i < n:
        a = args[i]
        if a == "!":
            neg = True
            i += 1
            continue
        if a in ("-j", "--jump", "-g", "--goto"):
            return segments, args[i:]
        if a in ("-m", "--match") and i + 1 < n:
            segments.append((args[i + 1], []))
            i += 2
            neg = False
            continue
        if a.startswith("-"):
            values: list[str] = []
            i += 1
            if a == "--comment":
                values = args[i:i + 1]
                i += len(values)
            else:
                while i < n and not (args[i].startswith("-") and len(args[i]) > 1 and not _numeric(args[i])) \
                        and args[i] != "!":
                    values.append(args[i])
                    i += 1
            # base options (-s -d -p -i -o -f) may follow a `-m MODULE` (iptables-restore input puts `-m tcp -p tcp
            # -d X` in that order): they always belong to the base segment
            (segments[0] if a in _BASE_OPTIONS else segments[-1])[1].append((a, values, neg))
            neg = False
            continue
        i += 1  # a stray word: kept out of any option
    return segments, []


def _numeric(word: str) -> bool:
    return word[1:].replace(".", "", 1).isdigit()


def _neg(fn: Match) -> Match:
    def inner(p: Packet, c: Any) -> Result:
        r = fn(p, c)
        if isinstance(r, Fork):
            return r
        return not r

    return inner


def _addr_match(field_name: str, value: str) -> Match:
    nets = value.split(",")

    def inner(p: Packet, c: Any) -> Result:
        addr = getattr(p, field_name)
        return any(in_cidr(addr, n) is True for n in nets)

    return inner


def _iface_match(field_name: str, value: str, text: str) -> Match:
    wildcard = value.endswith("+")
    stem = value[:-1] if wildcard else value

    def inner(p: Packet, c: Any) -> Result:
        name = getattr(p, field_name)
        if name is None:
            return Fork(f"interface {text} (the packet's interface is not known)")
        return name.startswith(stem) if wildcard else name == value

    return inner


def _proto_match(value: str) -> Match:
    want = PROTO_NUMBERS.get(value, value).lower()

    def inner(p: Packet, c: Any) -> Result:
        return want == "all" or want == "0" or p.proto == want

    return inner


def _port_set(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        low = int(lo) if lo else 0
        out.append((low, int(hi) if hi else (65535 if _ else low)))
    return out


def _port_match(field_name: str, spec: str) -> Match:
    ranges = _port_set(spec)

    def inner(p: Packet, c: Any) -> Result:
        port = getattr(p, field_name)
        return any(lo <= port <= hi for lo, hi in ranges)

    return inner


def _mark_value(spec: str) -> tuple[int, int]:
    value, _, mask = spec.partition("/")
    return int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF


def _mark_match(field_name: str, spec: str) -> Match:
    value, mask = _mark_value(spec)

    def inner(p: Packet, c: Any) -> Result:
        return (getattr(p, field_name) & mask) == value

    return inner


def _ctstate_match(values: str) -> Match:
    """`--ctstate`: the packet's state, or the virtual states DNAT / SNAT (the connection's destination / source
    was translated). DNAT is known (the trace DNATs the first packet itself, or was told); SNAT is set only at
    nat POSTROUTING, after every iptables filter hook of a new connection: not for NEW, unknown for ESTABLISHED."""
    states = {v.upper() for v in values.split(",")}

    def inner(p: Packet, c: Any) -> Result:
        if p.ctstate in states or ("DNAT" in states and p.dnat):
            return True
        if "SNAT" in states and p.ctstate != "NEW":
            return Fork(f"-m conntrack --ctstate {values} (whether the connection was source-NATed is not known)")
        return False

    return inner


def _ctstatus_match(values: str) -> Match:
    wanted = {v.upper() for v in values.split(",")}

    def inner(p: Packet, c: Any) -> Result:
        have = {"DNAT"} if p.dnat else set()
        if p.ctstate == "ESTABLISHED":
            have |= {"SEEN_REPLY", "ASSURED", "CONFIRMED"}
        return bool(wanted & have) or ("NONE" in wanted and not have)

    return inner


def _addrtype_match(field_name: str, values: str, text: str) -> Match:
    types = {v.upper() for v in values.split(",")}

    def inner(p: Packet, c: Any) -> Result:
        addr = getattr(p, field_name)
        local = c.local.is_local(addr)
        found = ip_int(addr)
        facts: set[str] = set()
        if local is None:
            if types & {"LOCAL", "UNICAST"} and not types <= {"LOCAL", "UNICAST"}:
                return Fork(f"{text} (is {addr} a local address of the node? ip-addr.json not collected)")
            if "LOCAL" in types:
                return Fork(f"{text} (is {addr} a local address of the node? ip-addr.json not collected)")
        if local:
            facts.add("LOCAL")
        elif found is not None:
            facts.add("UNICAST")
        if found is not None and found[0] == 4:
            if (found[1] >> 28) == 0xE:
                facts = {"MULTICAST"}
            elif found[1] == 0xFFFFFFFF:
                facts = {"BROADCAST"}
        return bool(types & facts)

    return inner


def _statistic(opts: dict[str, str]) -> Match:
    mode = opts.get("--mode", "random")
    if mode == "random":
        prob = float(opts.get("--probability", "1"))
        label = f"-m statistic --mode random --probability {opts.get('--probability', '1')}"
        return lambda p, c: Fork(label, prob)
    every = int(opts.get("--every", "1") or "1")
    label = f"-m statistic --mode nth --every {every} (counted per packet: taken as 1/{every})"
    return lambda p, c: Fork(label, 1.0 / every)


def _recent(opts: dict[str, str], text: str) -> Match | None:
    if "--rcheck" in opts or "--update" in opts:
        name = opts.get("--name", "DEFAULT")
        label = f"-m recent --rcheck --name {name} (is this client in the affinity list? depends on earlier connections)"
        return lambda p, c: Fork(label)
    return None  # --set / --remove: always match (the action is recorded by the walker)


def _set_match(values: list[str], text: str) -> Match:
    name = values[0] if values else ""
    dirs = values[1].split(",") if len(values) > 1 else ["src"]

    def inner(p: Packet, c: Any) -> Result:
        found = c.ipset_member(name, dirs, p)
        if found is None:
            return Fork(f"{text} (ipset {name} not in the facts)")
        return found

    return inner


def _iprange(field_name: str, spec: str) -> Match:
    low, _, high = spec.partition("-")

    def inner(p: Packet, c: Any) -> Result:
        return in_range(getattr(p, field_name), low, high or low) is True

    return inner


def _tcp_flags(mask: str, comp: str) -> Match:
    m = {f.upper() for f in mask.split(",")}
    if "ALL" in m:
        m = {"FIN", "SYN", "RST", "PSH", "ACK", "URG"}
    want = {f.upper() for f in comp.split(",")} - {"NONE"}

    def inner(p: Packet, c: Any) -> Result:
        if p.proto != "tcp":
            return False
        have = {"SYN"} if p.ctstate == "NEW" else {"ACK"}
        return (have & m) == (want & m)

    return inner


def _constant(value: bool) -> Match:
    def inner(p: Packet, c: Any) -> Result:
        return value

    return inner


def _either(a: Match, b: Match) -> Match:
    def inner(p: Packet, c: Any) -> Result:
        return a(p, c) is True or b(p, c) is True

    return inner


def _ports_match(fields: tuple[str, ...], values: list[str]) -> Match:
    """The port option's spec (its first value) against `fields` (one field, or either of two)."""
    spec = values[0] if values else ""
    if len(fields) == 1:
        return _port_match(fields[0], spec)
    return _either(_port_match(fields[0], spec), _port_match(fields[1], spec))


def _ct_orig_dst(net: str) -> Match:
    def inner(p: Packet, c: Any) -> Result:
        return in_cidr(p.orig_dst or p.dst, net) is True

    return inner


def _ct_orig_dport(port: int) -> Match:
    def inner(p: Packet, c: Any) -> Result:
        return (p.orig_dport or p.dport) == port

    return inner


def _constant_proto(protos: tuple[str, ...]) -> Match:
    def inner(p: Packet, c: Any) -> Result:
        return p.proto in protos

    return inner


def _icmp_match(text: str) -> Match:
    """`-m icmp --icmp-type T`: no match on another protocol; on an ICMP packet the type is not one the trace
    knows (it follows TCP, UDP and SCTP packets), so it forks rather than guesses."""
    def inner(p: Packet, c: Any) -> Result:
        if p.proto not in ("icmp", "ipv6-icmp"):
            return False
        return Fork(f"unknown match {text} (the packet's ICMP type)")

    return inner


def _physdev(opts: list[tuple[str, list[str], bool]], text: str) -> Match:
    """`-m physdev`: a packet carries bridge-port facts only when it entered through a port of a bridge (with
    br_netfilter), and then its input interface is that bridge. A packet generated on the node, or arriving on an
    interface that is no interface's master in ip-addr.json (so not a bridge with ports), matches none of the
    positive options; anything else forks (which port a bridged packet came through is in no dump)."""
    positive = {o for o, _, neg in opts if not neg}
    negated = {o for o, _, neg in opts if neg}

    def inner(p: Packet, c: Any) -> Result:
        bridges = getattr(c, "bridges", None)
        if p.iif == "" or (p.iif and bridges is not None and p.iif not in bridges):
            # no physdev facts: every positive option fails; a negated one (`! --physdev-is-in`) holds
            return not positive and bool(negated)
        return Fork(f"unknown match {text} (was the packet bridged? its input interface is a bridge or not known)")

    return inner


def unknown(text: str) -> Match:
    return lambda p, c: Fork(f"unknown match {text}")


def _segment_text(module: str | None, opts: list[tuple[str, list[str], bool]]) -> str:
    parts = [f"-m {module}"] if module else []
    for opt, values, neg in opts:
        parts.append(("! " if neg else "") + " ".join([opt, *values]))
    return " ".join(parts)


def _base(opt: str, values: list[str], text: str) -> Match | None:
    v = values[0] if values else ""
    if opt in ("-s", "--source"):
        return _addr_match("src", v)
    if opt in ("-d", "--destination"):
        return _addr_match("dst", v)
    if opt in ("-p", "--protocol"):
        return _proto_match(v)
    if opt in ("-i", "--in-interface"):
        return _iface_match("iif", v, text)
    if opt in ("-o", "--out-interface"):
        return _iface_match("oif", v, text)
    if opt in ("-f", "--fragment"):
        return lambda p, c: False  # the traced packet is a first fragment / unfragmented
    return None


def _module(module: str, opts: list[tuple[str, list[str], bool]], text: str) -> list[Match]:
    """Match functions for one `-m MODULE --opt ...` segment (negations applied)."""
    out: list[Match] = []
    flat = {o: " ".join(v) for o, v, _ in opts}

    def add(fn: Match | None, neg: bool) -> None:
        if fn is not None:
            out.append(_neg(fn) if neg else fn)

    if module in _ALWAYS:
        for opt, values, neg in opts:
            if opt in _PORT_OPTIONS:
                add(_ports_match(_PORT_OPTIONS[opt], values), neg)
            elif opt == "--tcp-flags" and len(values) == 2:
                add(_tcp_flags(values[0], values[1]), neg)
            elif opt == "--syn":
                add(_tcp_flags("SYN,RST,ACK,FIN", "SYN"), neg)
            elif opt in ("--comment",) or module == "nfacct":
                continue
            else:
                out.append(unknown(text))
                break
        return out
    if module == "multiport":
        for opt, values, neg in opts:
            if opt in _MULTIPORT_OPTIONS:
                add(_ports_match(_MULTIPORT_OPTIONS[opt], values), neg)
        return out
    if module in ("mark", "connmark"):
        field_name = "mark" if module == "mark" else "ctmark"
        for opt, values, neg in opts:
            if opt == "--mark":
                add(_mark_match(field_name, values[0]), neg)
        return out
    if module in ("conntrack", "state"):
        for opt, values, neg in opts:
            v = values[0] if values else ""
            if opt in ("--ctstate", "--state"):
                add(_ctstate_match(v), neg)
            elif opt == "--ctstatus":
                add(_ctstatus_match(v), neg)
            elif opt == "--ctorigdst":
                add(_ct_orig_dst(v), neg)
            elif opt == "--ctorigdstport" and v.isdecimal():
                add(_ct_orig_dport(int(v)), neg)
            elif opt == "--ctproto":
                add(_proto_match(v), neg)
            elif opt == "--ctdir":
                add(_constant(v.upper() == "ORIGINAL"), neg)
            else:
                out.append(unknown(text))
                break
        return out
    if module == "addrtype":
        if "--limit-iface-in" in flat or "--limit-iface-out" in flat:
            return [unknown(text)]
        for opt, values, neg in opts:
            if opt == "--src-type":
                add(_addrtype_match("src", values[0], text), neg)
            elif opt == "--dst-type":
                add(_addrtype_match("dst", values[0], text), neg)
        return out
    if module == "statistic":
        stat = _statistic(flat)
        return [_neg(stat) if any(n for _, _, n in opts) else stat]
    if module == "recent":
        recent = _recent(flat, text)
        return [] if recent is None else [recent]
    if module == "set":
        for opt, values, neg in opts:
            if opt == "--match-set":
                add(_set_match(values, text), neg)
            elif opt in ("--return-nomatch", "--update-counters", "--update-subcounters", "! --update-counters"):
                continue
            else:
                out.append(unknown(text))
                break
        return out
    if module in _LIMITS:
        return []  # one packet is within any limit's burst: the rule matches (stated in docs/trace.md)
    if module == "pkttype":
        unicast = _constant(flat.get("--pkt-type", "unicast").lower() == "unicast")  # the traced packet is unicast
        return [_neg(unicast) if any(n for _, _, n in opts) else unicast]
    if module == "iprange":
        for opt, values, neg in opts:
            if opt == "--src-range":
                add(_iprange("src", values[0]), neg)
            elif opt == "--dst-range":
                add(_iprange("dst", values[0]), neg)
        return out
    if module == "policy":
        pol = flat.get("--pol", "")
        neg = any(n for o, _, n in opts if o == "--pol")
        ipsec = _constant(pol == "none")  # the traced packet has no IPsec policy
        return [_neg(ipsec) if neg else ipsec]
    if module in ("icmp", "icmp6", "icmpv6"):
        return [_icmp_match(text) if flat else _constant_proto(("icmp", "ipv6-icmp"))]
    if module == "physdev" and opts and all(o in _PHYSDEV_OPTS for o, _, _ in opts):
        return [_physdev(opts, text)]
    return [unknown(text)]


# the input-side options only: on the way out, a packet bridged at the bridge layer meets the hooks again with
# facts this trace does not follow
_PHYSDEV_OPTS = ("--physdev-in", "--physdev-is-in", "--physdev-is-bridged")


_DECISIVE = ("_port_match.", "_proto_match.")  # closures that return True/False, never a Fork


def compile_spec(spec: str) -> Compiled:
    """Compile one rule spec (the text after `-A CHAIN `)."""
    args = tokenize(spec)
    segments, target_words = _split_segments(args)
    out = Compiled()
    for module, opts in segments:
        text = _segment_text(module, opts)
        if module is None:
            for opt, values, neg in opts:
                piece = ("! " if neg else "") + " ".join([opt, *values])
                fn = _base(opt, values, piece)
                if fn is None:
                    out.matches.append((unknown(piece), piece))
                else:
                    out.matches.append((_neg(fn) if neg else fn, piece))
        else:
            for fn in _module(module, opts, text):
                out.matches.append((fn, text))
    # A side-effect-free conjunction: the cheap matches that always decide (protocol, port) go first, so a rule
    # for another port is dismissed before an address-type or set lookup; the other matches (those that may
    # fork) keep their order among themselves (stable sort), so the branches come out exactly as before.
    out.ordered = sorted(out.matches, key=lambda m: not m[0].__qualname__.startswith(_DECISIVE))
    if target_words:
        out.goto = target_words[0] in ("-g", "--goto")
        out.target = target_words[1] if len(target_words) > 1 else None
        words = target_words[2:]
        i = 0
        while i < len(words):
            if words[i].startswith("--"):
                value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else ""
                out.options[words[i]] = value
                i += 2 if value else 1
            else:
                i += 1
    return out


def quick_dst(spec: str) -> tuple[int, int, int] | None:
    """The rule's un-negated `-d NET` without tokenizing: lets the walker skip most of a 10,000-Service
    KUBE-SERVICES without compiling it. iptables-save prints `-d` early; iptables-restore input (what
    kube-proxy writes) puts it after the quoted comment: both are found, a `-d` inside quotes is not."""
    if spec.startswith("-d "):
        start = 3
    else:
        k = spec.find(" -d ")
        while k >= 0 and spec.count('"', 0, k) % 2:
            k = spec.find(" -d ", k + 1)  # inside a quoted comment: look further
        if k < 0 or spec.endswith("!", 0, k):
            return None
        start = k + 4
    end = spec.find(" ", start)
    return cidr(spec[start:end if end > 0 else len(spec)])


def quick_miss(net: tuple[int, int, int], dst: str) -> bool:
    a = ip_int(dst)
    return a is None or a[0] != net[0] or (a[1] & net[2]) != net[1]
