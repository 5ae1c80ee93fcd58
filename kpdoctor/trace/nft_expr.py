"""nft rule text (as `kpdoctor.dataplane.nft` keeps it, from either dump form) compiled into statements.

A rule is a sequence of statements run left to right: matches (`ip daddr @cluster-ips`, `meta mark & 0x4000
!= 0`, `ct state new`, `fib daddr type local`, concatenations `ip daddr . meta l4proto . th dport`), verdict
maps (`... vmap @service-ips`, `numgen random mod 3 vmap { ... }`), packet changes (`meta mark set ...`,
`dnat to`, `masquerade`, `snat`, `redirect`) and verdicts (accept, drop, reject, jump, goto, return,
continue). Text this module does not understand becomes an `Unknown` statement: the walker forks on it
("unknown match X: both branches followed") and never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# left-hand sides: the words that start one, and how many words it takes
_PAYLOAD = {"ip": {"saddr", "daddr", "protocol"}, "ip6": {"saddr", "daddr", "nexthdr"},
            "th": {"sport", "dport"}, "tcp": {"sport", "dport", "flags"}, "udp": {"sport", "dport"},
            "sctp": {"sport", "dport"}, "udplite": {"sport", "dport"},
            "icmp": {"type", "code"}, "icmpv6": {"type", "code"}}
_META_BARE = {"iifname", "oifname", "iif", "oif", "mark", "skuid", "skgid", "iiftype", "oiftype", "pkttype",
              "nfproto", "l4proto", "cgroup", "ibrname", "obrname", "iifgroup", "oifgroup", "cpu", "rtclassid"}
_VERDICTS = {"accept", "drop", "return", "continue", "queue"}
_OPS = {"==": "==", "!=": "!=", "eq": "==", "ne": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_IGNORED_ACTIONS = {"counter", "log", "limit", "notrack", "quota"}


@dataclass(frozen=True, slots=True)
class Lhs:
    keys: tuple[str, ...]  # one per concatenation component: "ip daddr", "meta l4proto", "th dport", ...
    mask: tuple[str, str] | None = None  # ("&", "0x00004000")


@dataclass(frozen=True, slots=True)
class MatchStmt:
    lhs: Lhs
    op: str  # == != < > <= >=
    rhs: str  # one token: value, range, prefix, `@set`, `{ ... }`
    text: str


@dataclass(frozen=True, slots=True)
class VmapStmt:
    lhs: Lhs | None  # None: numgen
    data: str  # `@map` or `{ k : v, ... }`
    numgen: int = 0  # `numgen random mod N`
    offset: int = 0
    text: str = ""
    is_map: bool = False  # `dnat ip to numgen ... map { ... }`: data are addresses, not verdicts


@dataclass(frozen=True, slots=True)
class SetStmt:
    key: str  # "meta mark" / "ct mark" / "meta nftrace"
    value: tuple[str, ...]  # "meta mark | 0x4000" -> ("meta mark", "|", "0x4000"), or ("0x4000",)
    text: str


@dataclass(frozen=True, slots=True)
class NatStmt:
    kind: str  # dnat | snat | masquerade | redirect
    to: str = ""  # "10.244.1.5:8080", ":8080", "" ; numgen maps are a VmapStmt(is_map=True)
    text: str = ""


@dataclass(frozen=True, slots=True)
class VerdictStmt:
    verdict: str  # accept drop reject return continue jump goto queue
    target: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class NoteStmt:
    text: str  # counter / log / update @set / limit: no effect on the path


@dataclass(frozen=True, slots=True)
class Unknown:
    text: str
    verdict: VerdictStmt | None = None  # a verdict found at the end of what could not be read


Stmt = MatchStmt | VmapStmt | SetStmt | NatStmt | VerdictStmt | NoteStmt | Unknown


@dataclass(slots=True)
class CompiledRule:
    stmts: list[Stmt] = field(default_factory=list)


def tokens(text: str) -> list[str]:
    """Split on blanks, keeping `{ ... }` groups and quoted strings whole."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "{":
            depth, j = 0, i
            while j < n:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                elif text[j] == '"':
                    j = text.find('"', j + 1)
                    if j < 0:
                        j = n
                        break
                j += 1
            out.append(text[i:j + 1])
            i = j + 1
            continue
        if c == '"':
            j = text.find('"', i + 1)
            j = n - 1 if j < 0 else j
            out.append(text[i:j + 1])
            i = j + 1
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        out.append(text[i:j])
        i = j
    return out


class _Parser:
    def __init__(self, toks: list[str]) -> None:
        self.t = toks
        self.i = 0

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.t[j] if j < len(self.t) else ""

    def take(self) -> str:
        tok = self.peek()
        self.i += 1
        return tok

    def key(self) -> str | None:
        """One left-hand side component, or None when the next words are not one."""
        a, b = self.peek(), self.peek(1)
        if a in _PAYLOAD and b in _PAYLOAD[a]:
            self.i += 2
            return f"{a} {b}"
        if a == "meta" and b:
            self.i += 2
            return f"meta {b}"
        if a in _META_BARE:
            self.i += 1
            return f"meta {a}"
        if a == "ct":
            j = 1
            parts = ["ct"]
            if b in ("original", "reply"):
                parts.append(b)
                j = 2
            parts.append(self.peek(j))
            self.i += j + 1
            return " ".join(parts)
        if a == "fib":
            j = 1
            flags = []
            while self.peek(j) in ("saddr", "daddr", "mark", "iif", "oif", "."):
                if self.peek(j) != ".":
                    flags.append(self.peek(j))
                j += 1
            result = self.peek(j)
            self.i += j + 1
            return f"fib {'.'.join(flags)} {result}"
        return None

    def lhs(self) -> Lhs | None:
        start = self.i
        first = self.key()
        if first is None:
            return None
        keys = [first]
        while self.peek() == ".":
            self.i += 1
            nxt = self.key()
            if nxt is None:
                self.i = start
                return None
            keys.append(nxt)
        mask = None
        if self.peek() in ("&", "|", "^") and self.peek(1):
            mask = (self.take(), self.take())
        return Lhs(tuple(keys), mask)

    def rest(self, start: int) -> str:
        return " ".join(self.t[start:])


def _trailing_verdict(toks: list[str]) -> VerdictStmt | None:
    if toks and toks[-1] in _VERDICTS | {"reject"}:
        return VerdictStmt(toks[-1], "", toks[-1])
    if len(toks) >= 2 and toks[-2] in ("jump", "goto"):
        return VerdictStmt(toks[-2], toks[-1], " ".join(toks[-2:]))
    return None


def compile_rule(text: str) -> CompiledRule:
    toks = tokens(text)
    p = _Parser(toks)
    out = CompiledRule()
    while p.i < len(toks):
        start = p.i
        word = p.peek()
        if word in _VERDICTS:
            p.take()
            out.stmts.append(VerdictStmt(word, "", word))
            continue
        if word in ("jump", "goto"):
            p.take()
            out.stmts.append(VerdictStmt(word, p.take(), " ".join(toks[start:p.i])))
            continue
        if word == "reject":
            p.take()
            if p.peek() == "with":
                p.i += 1
                while p.peek() and p.peek() not in _VERDICTS and p.peek() not in ("comment",):
                    p.i += 1
            out.stmts.append(VerdictStmt("reject", "", " ".join(toks[start:p.i])))
            continue
        if word in _IGNORED_ACTIONS:
            p.take()
            while p.peek() and (p.peek() in ("packets", "bytes", "prefix", "level", "flags", "rate", "over",
                                               "burst", "name", "group", "snaplen", "queue-threshold")
                                or p.peek(-1) in ("packets", "bytes", "prefix", "level", "flags", "rate", "over",
                                                  "burst", "name", "group", "snaplen", "queue-threshold")):
                p.take()
            out.stmts.append(NoteStmt(" ".join(toks[start:p.i])))
            continue
        if word in ("update", "add", "delete") and p.peek(1).startswith("@"):
            p.i += 3 if p.peek(2).startswith("{") else 2
            out.stmts.append(NoteStmt(" ".join(toks[start:p.i])))
            continue
        if word in ("masquerade", "snat", "dnat", "redirect"):
            p.take()
            if p.peek() in ("ip", "ip6"):
                p.take()
            to = ""
            if p.peek() == "to":
                p.take()
                if p.peek() == "numgen" and p.peek(1) == "random" and p.peek(2) == "mod":
                    mod = int(p.t[p.i + 3])
                    p.i += 4
                    off = 0
                    if p.peek() == "offset":
                        off = int(p.t[p.i + 1])
                        p.i += 2
                    if p.peek() == "map" and p.peek(1).startswith("{"):
                        data = p.t[p.i + 1]
                        p.i += 2
                        out.stmts.append(VmapStmt(None, data, mod, off, " ".join(toks[start:p.i]), is_map=True))
                        _skip_flags(p)
                        continue
                    out.stmts.append(Unknown(p.rest(start)))
                    break
                to = p.take()
            _skip_flags(p)
            out.stmts.append(NatStmt(word, to, " ".join(toks[start:p.i])))
            continue
        if word == "numgen" and p.peek(1) == "random" and p.peek(2) == "mod":
            mod = int(p.t[p.i + 3]) if p.t[p.i + 3].isdigit() else 0
            p.i += 4
            off = 0
            if p.peek() == "offset":
                off = int(p.t[p.i + 1])
                p.i += 2
            if p.peek() == "vmap" and mod:
                data = p.t[p.i + 1]
                p.i += 2
                out.stmts.append(VmapStmt(None, data, mod, off, " ".join(toks[start:p.i])))
                continue
            out.stmts.append(Unknown(p.rest(start), _trailing_verdict(toks[start:])))
            break
        lhs = p.lhs()
        if lhs is None:
            out.stmts.append(Unknown(p.rest(start), _trailing_verdict(toks[start:])))
            break
        nxt = p.peek()
        if nxt == "set":
            p.take()
            value = [p.take()]
            if value[0] in ("meta", "ct"):
                value = [f"{value[0]} {p.take()}"]
            if p.peek() in ("|", "&", "^"):
                value += [p.take(), p.take()]
            out.stmts.append(SetStmt(" ".join(lhs.keys), tuple(value), " ".join(toks[start:p.i])))
            continue
        if nxt in ("vmap", "map"):
            p.take()
            data = p.take()
            if nxt == "map":  # `... map @m` as a value: only inside nat/mark statements (not handled)
                out.stmts.append(Unknown(p.rest(start), _trailing_verdict(toks[start:])))
                break
            out.stmts.append(VmapStmt(lhs, data, text=" ".join(toks[start:p.i])))
            continue
        op = "=="
        if nxt in _OPS:
            op = _OPS[p.take()]
        rhs = p.take()
        if not rhs or (rhs in _VERDICTS and op == "==" and lhs.keys[0] != "ct state"):
            out.stmts.append(Unknown(p.rest(start), _trailing_verdict(toks[start:])))
            break
        out.stmts.append(MatchStmt(lhs, op, rhs, " ".join(toks[start:p.i])))
    return out


def _skip_flags(p: _Parser) -> None:
    while p.peek() in ("fully-random", "random", "persistent") or p.peek().startswith(("fully-random,", "random,",
                                                                                        "persistent,")):
        p.take()
