"""Walk one nftables base chain for a branch: statements left to right, sets and maps from the dump, verdict
maps, `numgen` (a fork with a probability per element), NAT, marks, jump/goto/return.

Input is the parsed ruleset of `kpdoctor.dataplane.nft` (no second parser); rule text is compiled by
`nft_expr` on first use. A statement the trace cannot evaluate forks ("both branches followed"); a set
the kernel fills at run time (`flags timeout`/`dynamic`: ClientIP affinity) is a fork too unless the
dump lists the packet's key in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.dataplane.nft import NftChain, NftRuleset, NftSet, NftTable
from kpdoctor.trace.ipnet import in_cidr, in_range, ip_int, join_host_port, split_host_port
from kpdoctor.trace.model import Branch, Fork, Packet, base_chain_verdicts, split
from kpdoctor.trace.nft_expr import (
    CompiledRule,
    Lhs,
    MatchStmt,
    NatStmt,
    NoteStmt,
    SetStmt,
    Unknown,
    VerdictStmt,
    VmapStmt,
    compile_rule,
    tokens,
)

MAX_DEPTH = 64
_TERMINAL = {"accept": "accept", "drop": "drop", "reject": "reject", "queue": "queue"}
_PROTO_NUM = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp"}


# A payload expression implies its header: nft adds the dependency (`tcp dport 22` is `meta l4proto tcp tcp dport
# 22`, `ip6 daddr X` in an inet table is `meta nfproto ipv6 ip6 daddr X`), so on a packet without that header the
# match fails whatever its operator (`!=` included). `th` is any transport header with ports.
_HEADER_PROTOS = {"tcp": ("tcp",), "udp": ("udp",), "sctp": ("sctp",), "udplite": ("udplite",),
                  "th": ("tcp", "udp", "sctp", "udplite"), "icmp": ("icmp",), "icmpv6": ("ipv6-icmp",)}
_HEADER_FAMILY = {"ip": 4, "ip6": 6, "icmp": 4, "icmpv6": 6}


def header_absent(key: str, pkt: Packet) -> bool:
    """True when the packet has no header for this payload key (`tcp dport` on UDP, `ip6 daddr` on IPv4)."""
    head = key.split(" ", 1)[0]
    family = _HEADER_FAMILY.get(head)
    if family is not None and family != pkt.family:
        return True
    protos = _HEADER_PROTOS.get(head)
    return protos is not None and pkt.proto not in protos


def _key_value(key: str, pkt: Packet, ctx: Any) -> str | Fork | None:
    """The packet's value for one left-hand side component, as nft prints it; None: not evaluated."""
    if key in ("ip daddr", "ip6 daddr"):
        return pkt.dst
    if key in ("ip saddr", "ip6 saddr"):
        return pkt.src
    if key in ("meta l4proto", "ip protocol", "ip6 nexthdr"):
        return pkt.proto
    if key in ("th dport", "tcp dport", "udp dport", "sctp dport"):
        return str(pkt.dport)
    if key in ("th sport", "tcp sport", "udp sport", "sctp sport"):
        return str(pkt.sport)
    if key == "meta mark":
        return str(pkt.mark)
    if key == "ct mark":
        return str(pkt.ctmark)
    if key == "ct state":
        return "new" if pkt.ctstate == "NEW" else "established"
    if key == "ct status":
        return "dnat" if pkt.dnat else ""
    if key == "meta nfproto":
        return "ipv4" if pkt.family == 4 else "ipv6"
    if key == "meta pkttype":
        return "host"
    if key in ("meta iifname", "meta oifname"):
        name = pkt.iif if key == "meta iifname" else pkt.oif
        return Fork(f"{key} (the packet's interface is not known)") if name is None else f'"{name}"'
    if key in ("fib daddr type", "fib saddr type"):
        addr = pkt.dst if key == "fib daddr type" else pkt.src
        local = ctx.local.is_local(addr)
        if local is None:
            return Fork(f"{key} local (is {addr} a local address of the node? ip-addr.json not collected)")
        return "local" if local else "unicast"
    return None


# Port names `nft list ruleset` prints in the text form (from the node's /etc/services; the JSON form has numbers):
# the IANA names of the ports host firewalls open. A name not here is not guessed: the match forks.
SERVICES = {"ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80,
            "kerberos": 88, "pop3": 110, "sunrpc": 111, "ntp": 123, "netbios-ns": 137, "netbios-dgm": 138,
            "netbios-ssn": 139, "imap": 143, "snmp": 161, "ldap": 389, "https": 443, "microsoft-ds": 445,
            "submission": 587, "ipp": 631, "ldaps": 636, "imaps": 993, "pop3s": 995, "dhcpv6-client": 546,
            "dhcpv6-server": 547, "mdns": 5353, "mysql": 3306, "postgresql": 5432, "ftp": 21, "nfs": 2049,
            "rsync": 873, "syslog": 514, "isakmp": 500, "ipsec-nat-t": 4500, "openvpn": 1194}
_PORT_KEYS = frozenset({"th dport", "tcp dport", "udp dport", "sctp dport", "udplite dport",
                        "th sport", "tcp sport", "udp sport", "sctp sport", "udplite sport"})


def _unknown_service(keys: tuple[str, ...], rhs: str) -> str:
    """A port name in the literal or anonymous set `rhs` that SERVICES does not hold ("" when none)."""
    if not _PORT_KEYS & set(keys):
        return ""
    for word in rhs.strip("{} ").replace(",", " ").split():
        name = word.strip('"')
        if name and name[0].isalpha() and name not in SERVICES:
            return name
    return ""


def _num(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def _component_matches(want: str, have: str) -> bool:
    """One element/literal component against the packet's value (prefixes, ranges, names, numbers)."""
    w, h = want.strip().strip('"'), have.strip('"')
    if w == h:
        return True
    if w.endswith("*"):
        return h.startswith(w[:-1])
    if "/" in w and ip_int(h) is not None:
        return in_cidr(h, w) is True
    if "-" in w:
        low, _, high = w.partition("-")
        lo, hi, v = _num(low.strip()), _num(high.strip()), _num(h)
        if lo is not None and hi is not None and v is not None:
            return lo <= v <= hi
        if ip_int(h) is not None:
            return in_range(h, low.strip(), high.strip()) is True
    wn, hn = SERVICES.get(w) if w in SERVICES else _num(w), _num(h)
    if wn is not None and hn is not None:
        return wn == hn
    a, b = ip_int(w), ip_int(h)
    return a is not None and a == b


def _anon_elements(text: str) -> list[tuple[str, ...]]:
    inner = text.strip()[1:-1]
    return [tuple(part.strip() for part in item.split(" . ")) for item in inner.split(",") if item.strip()]


def _anon_map(text: str) -> list[tuple[tuple[str, ...], str]]:
    out = []
    for item in text.strip()[1:-1].split(","):
        key, sep, value = item.partition(" : ")
        if sep:
            out.append((tuple(k.strip() for k in key.split(" . ")), value.strip()))
    return out


@dataclass
class NftRules:
    ruleset: NftRuleset
    source: str  # the dump file ("edge-2/nft-ruleset.json")
    _compiled: dict[tuple[str, str, str, int], CompiledRule] = field(default_factory=dict)

    def compiled(self, table: NftTable, chain: NftChain, index: int) -> CompiledRule:
        key = (table.family, table.name, chain.name, index)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = compile_rule(chain.rules[index].text)
        return found


class NftWalker:
    def __init__(self, rules: NftRules, ctx: Any) -> None:
        self.r = rules
        self.ctx = ctx

    def run_base(self, table: NftTable, chain: NftChain, branch: Branch) -> list[tuple[Branch, str]]:
        def policy(b: Branch) -> str:  # only a policy that is not accept is recorded
            name = chain.policy or "accept"
            v = _TERMINAL.get(name, "accept")
            if v != "accept":
                b.verdict_by = b.add("policy", f"{table.family} {table.name} {chain.name}", f"policy {name}",
                                     self.r.source, v)
            return v

        return base_chain_verdicts(self._chain(table, chain, branch, 0), policy)

    def _lookup_set(self, table: NftTable, name: str) -> NftSet | None:
        return table.sets.get(name)

    def _values(self, lhs: Lhs, pkt: Packet) -> list[str] | Fork | None:
        values: list[str] = []
        for key in lhs.keys:
            v = _key_value(key, pkt, self.ctx)
            if v is None or isinstance(v, Fork):
                return v
            values.append(v)
        if lhs.mask is not None and len(values) == 1:
            op, operand = lhs.mask
            a, m = _num(values[0]), _num(operand)
            if a is None or m is None:
                return None
            values = [str({"&": a & m, "|": a | m, "^": a ^ m}[op])]
        return values

    def _match(self, table: NftTable, stmt: MatchStmt, pkt: Packet) -> bool | Fork:
        if any(header_absent(key, pkt) for key in stmt.lhs.keys):
            return False
        values = self._values(stmt.lhs, pkt)
        if values is None:
            return Fork(f"unknown match {stmt.text}")
        if isinstance(values, Fork):
            return values
        rhs = stmt.rhs
        name = "" if rhs.startswith("@") else _unknown_service(stmt.lhs.keys, rhs)
        if name:
            return Fork(f"unknown match {stmt.text} (port name {name} not known)")
        if rhs.startswith("@"):
            found = self._lookup_set(table, rhs[1:])
            if found is None:
                return Fork(f"{stmt.text} (set {rhs} not in the dump)")
            hit = any(len(e.key) == len(values) and all(_component_matches(w, h) for w, h in zip(e.key, values,
                                                                                                   strict=True))
                      for e in found.elements)
            if not hit and ("timeout" in found.flags or "dynamic" in found.flags):
                return Fork(f"{' . '.join(stmt.lhs.keys)} in {rhs} (filled at run time: ClientIP affinity?)")
            result = hit
        elif rhs.startswith("{"):
            result = any(len(k) == len(values) and all(_component_matches(w, h) for w, h in zip(k, values,
                                                                                              strict=True))
                         for k in _anon_elements(rhs))
        elif len(values) == 1:
            if stmt.op in ("<", ">", "<=", ">="):
                a, b = _num(values[0]), _num(rhs)
                if a is None or b is None:
                    return Fork(f"unknown match {stmt.text}")
                result = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[stmt.op]
                return result
            if stmt.lhs.keys[0] in ("ct state", "ct status"):
                result = values[0] in rhs.split(",")
            else:
                result = _component_matches(rhs, values[0])
        else:
            return Fork(f"unknown match {stmt.text}")
        return (not result) if stmt.op == "!=" else result

    def _vmap_target(self, table: NftTable, stmt: VmapStmt, pkt: Packet) -> list[tuple[float | None, str, str]] | Fork:
        """[(probability or None, verdict text, label)]: the branches a verdict map leads to ('' = no element)."""
        if stmt.lhs is None:  # numgen random mod N [offset K] vmap { ... }
            items = _anon_map(stmt.data) if stmt.data.startswith("{") else []
            n = stmt.numgen
            return [(1.0 / n, value, f"numgen {key[0]} of {n}") for key, value in items]
        if any(header_absent(key, pkt) for key in stmt.lhs.keys):
            return [(None, "", "no element")]
        values = self._values(stmt.lhs, pkt)
        if values is None:
            return Fork(f"unknown match {stmt.text}")
        if isinstance(values, Fork):
            return values
        if stmt.data.startswith("@"):
            found = self._lookup_set(table, stmt.data[1:])
            if found is None:
                return Fork(f"{stmt.text} (map {stmt.data} not in the dump)")
            pairs = [(e.key, e.value or "") for e in found.elements]
        else:
            pairs = _anon_map(stmt.data)
        for key, value in pairs:
            if len(key) == len(values) and all(_component_matches(w, h) for w, h in zip(key, values, strict=True)):
                return [(None, value, f"{' . '.join(values)} : {value}")]
        return [(None, "", "no element")]

    def _chain(self, table: NftTable, chain: NftChain, branch: Branch, depth: int) -> Iterator[tuple[Branch, str]]:
        where = f"{table.family} {table.name} {chain.name}"
        if depth > MAX_DEPTH:
            branch.add("note", where, f"jump depth over {MAX_DEPTH}: loop? stopped here")
            yield branch, "drop"
            return
        todo: list[tuple[Branch, int, int]] = [(branch, 0, 0)]  # (branch, rule index, statement index)
        while todo:
            b, ri, si = todo.pop()
            ended = False
            while ri < len(chain.rules) and not ended:
                comp = self.r.compiled(table, chain, ri)
                rule = chain.rules[ri]
                text = rule.text + (f' comment "{rule.comment}"' if rule.comment else "")
                source = f"{self.r.source} handle {rule.handle}" if rule.handle is not None else self.r.source
                matched = True
                recorded = len(b.steps)
                stmts = comp.stmts
                k = si
                si = 0
                while k < len(stmts):
                    st = stmts[k]
                    k += 1
                    if isinstance(st, MatchStmt):
                        res = self._match(table, st, b.packet)
                        if res is True:
                            continue
                        if res is False:
                            matched = False
                            break
                        self.ctx.count_fork()
                        yes, no = split(b, res)
                        todo.append((no, ri + 1, 0))
                        b = yes
                        continue
                    if isinstance(st, NoteStmt):
                        continue
                    if isinstance(st, SetStmt):
                        self._set(b, st, where, text, source)
                        continue
                    if isinstance(st, Unknown):
                        self.ctx.count_fork()
                        yes, no = split(b, Fork(f"unknown statement {st.text}"))
                        todo.append((no, ri + 1, 0))
                        b = yes
                        if st.verdict is None:
                            continue
                        st = st.verdict
                    if isinstance(st, NatStmt):
                        self._nat(b, st.kind, st.to, where, text, source)
                        yield b, "accept"
                        ended = True
                        break
                    if isinstance(st, VmapStmt):
                        found = self._vmap_target(table, st, b.packet)
                        if isinstance(found, Fork):  # which verdict is not known: the rule is skipped, and said so
                            b.assumptions += (f"{found.label}: rule skipped",)
                            b.add("unknown", where, text, source, f"{found.label}: verdict map not evaluated, "
                                  "rule skipped")
                            matched = False
                            break
                        if st.is_map:  # dnat to numgen ... map { n : addr . port }
                            for p, value, label in found[1:]:
                                self.ctx.count_fork()
                                other = b.fork(p or 0.0, None)
                                other.add("branch", where, label, source, f"p={p or 0.0:.4g}")
                                self._nat(other, "dnat", value.replace(" . ", ":"), where, text, source)
                                yield other, "accept"
                            if found:
                                p, value, label = found[0]
                                b = b.fork(p or 0.0, None)
                                b.add("branch", where, label, source, f"p={p or 0.0:.4g}")
                                self._nat(b, "dnat", value.replace(" . ", ":"), where, text, source)
                                yield b, "accept"
                            ended = True
                            break
                        if len(found) > 1 or (found and found[0][0] is not None):  # numgen vmap: a branch each
                            for p, value, label in found:
                                self.ctx.count_fork()
                                other = b.fork(p or 0.0, None)
                                other.add("branch", where, label, source, f"p={p or 0.0:.4g}")
                                w, target = _verdict_words(value)
                                yield from self._verdict(table, other, w, target, where, text, source, depth, todo,
                                                         ri)
                            ended = True
                            break
                        p, value, label = found[0] if found else (None, "", "no element")
                        if not value:  # no element: the lookup fails, the rule does not match
                            matched = False
                            break
                        st = VerdictStmt(*_verdict_words(value), text=value)
                    if isinstance(st, VerdictStmt):
                        if st.verdict == "continue":
                            continue
                        yield from self._verdict(table, b, st.verdict, st.target, where, text, source, depth, todo,
                                                 ri)
                        ended = True
                        break
                if ended:
                    break
                if matched and k >= len(stmts) and len(b.steps) == recorded:
                    b.add("rule", where, text, source, "matched (no verdict)")
                ri += 1
            if not ended:
                yield b, ""

    def _verdict(self, table: NftTable, b: Branch, verdict: str, target_name: str, where: str, text: str,
                 source: str, depth: int, todo: list[tuple[Branch, int, int]],
                 ri: int) -> Iterator[tuple[Branch, str]]:
        """Apply one verdict; a jump's return continues after rule `ri` (pushed on `todo`)."""
        if verdict in _TERMINAL:
            b.verdict_by = b.add("rule", where, text, source, verdict)
            yield b, _TERMINAL[verdict]
            return
        if verdict == "return":
            b.add("return", where, text, source, "return")
            yield b, "return"
            return
        if verdict == "continue":
            todo.append((b, ri + 1, 0))
            return
        target = table.chains.get(target_name)
        if verdict not in ("jump", "goto") or target is None:
            b.add("note", where, text, source, f"{verdict} {target_name}: not evaluated (chain not in the dump?)")
            todo.append((b, ri + 1, 0))
            return
        b.add(verdict, where, text, source, f"{verdict} {target_name}")
        for sb, v in self._chain(table, target, b, depth + 1):
            if v in ("", "return"):
                if verdict == "goto":
                    yield sb, "return"
                else:
                    todo.append((sb, ri + 1, 0))
            else:
                yield sb, v

    def _set(self, b: Branch, st: SetStmt, where: str, text: str, source: str) -> None:
        pkt = b.packet
        if st.key not in ("meta mark", "ct mark"):
            return
        current = pkt.mark if st.key == "meta mark" else pkt.ctmark
        val = st.value
        if len(val) == 3 and val[0] in ("meta mark", "ct mark"):
            base = pkt.mark if val[0] == "meta mark" else pkt.ctmark
            operand = _num(val[2]) or 0
            new = {"|": base | operand, "&": base & operand, "^": base ^ operand}.get(val[1], base)
        elif len(val) == 1 and val[0] in ("meta mark", "ct mark"):
            new = pkt.mark if val[0] == "meta mark" else pkt.ctmark
        else:
            parsed = _num(val[0])
            if parsed is None:
                b.add("unknown", where, text, source, f"{st.key} set {' '.join(val)}: value not evaluated")
                return
            new = parsed
        new &= 0xFFFFFFFF
        if st.key == "meta mark":
            b.packet = pkt.evolve(mark=new)
        else:
            b.packet = pkt.evolve(ctmark=new)
        b.add("mark", where, text, source, f"{st.key}: 0x{current:x} -> 0x{new:x}")

    @staticmethod
    def _nat(b: Branch, kind: str, to: str, where: str, text: str, source: str) -> None:
        pkt = b.packet
        if kind == "dnat":
            host, port = split_host_port(to)
            if not host:  # `dnat to :port`
                host = pkt.dst
            new_port = port if port is not None else pkt.dport
            b.packet = pkt.evolve(dst=host, dport=new_port, dnat=True, orig_dst=pkt.orig_dst or pkt.dst,
                                  orig_dport=pkt.orig_dport or pkt.dport)
            b.dnat_to = join_host_port(host, new_port)
            b.add("nat", where, text, source, f"DNAT to {b.dnat_to}")
        elif kind == "masquerade":
            b.masquerade = True
            b.add("nat", where, text, source, "MASQUERADE (source becomes the outgoing interface's address)")
        elif kind == "snat":
            b.snat_to = to
            b.add("nat", where, text, source, f"SNAT to {to}")
        else:
            b.add("nat", where, text, source, f"{kind} {to}".strip())


def _verdict_words(value: str) -> tuple[str, str]:
    words = tokens(value)
    if len(words) >= 2 and words[0] in ("jump", "goto"):
        return words[0], words[1]
    return (words[0] if words else "continue"), ""
