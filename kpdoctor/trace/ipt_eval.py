"""Walk one iptables table's built-in chain for a branch: rules in order, jumps, gotos, returns, forks.

Input is the parsed dump of `kpdoctor.dataplane.iptables_save` (no second parser); rules are compiled
on first use and cached per dump. Only rules that match are recorded as steps (with `file:line`), plus
every jump, return, fork and policy.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kpdoctor.dataplane.iptables_save import IptablesDump, Table
from kpdoctor.trace.ipnet import ip_int, join_host_port, split_host_port
from kpdoctor.trace.ipt_lazy import LazyDump, LazyTable
from kpdoctor.trace.ipt_match import NON_TERMINATING, Compiled, quick_miss
from kpdoctor.trace.model import Branch, Fork, base_chain_verdicts, split
from kpdoctor.trace.spec_cache import SpecCache

MAX_DEPTH = 64
TERMINAL = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "reject", "QUEUE": "queue", "NFQUEUE": "queue"}


@dataclass(slots=True)
class _Rule:
    spec: str
    index: int  # position in its chain
    lines: Sequence[int]  # the chain's line numbers (a lazily read dump computes one when it is asked for)
    pre: tuple[int, int, int] | None
    compiled: Compiled | None = None

    @property
    def line(self) -> int:
        return self.lines[self.index]


SKIP_INDEX_MIN = 32  # a chain this long gets a destination index (KUBE-SERVICES has one rule per Service port)


class _DstIndex:
    """Lets the walk jump over the rules of a long chain whose `-d` is one host address other than the
    packet's: `hosts` maps (family, address) to the positions of its `-d HOST/32` rules, `next_other[i]` is
    the first position >= i of any other rule. Exactly what `quick_miss` would skip one rule at a time."""

    __slots__ = ("hosts", "next_other")

    def __init__(self, rules: list[_Rule]) -> None:
        self.hosts: dict[tuple[int, int], list[int]] = {}
        n = len(rules)
        self.next_other = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            pre = rules[i].pre
            host = pre is not None and pre[2] == (0xFFFFFFFF if pre[0] == 4 else (1 << 128) - 1)
            self.next_other[i] = self.next_other[i + 1] if host else i
        for i, rule in enumerate(rules):
            pre = rule.pre
            if pre is not None and self.next_other[i] != i:
                self.hosts.setdefault((pre[0], pre[1]), []).append(i)

    def next(self, i: int, dst: str) -> int:
        """The first position >= i whose rule may match a packet to `dst`."""
        j = self.next_other[i]
        a = ip_int(dst)
        found = self.hosts.get(a) if a is not None else None
        if found:
            k = bisect_left(found, i)
            if k < len(found) and found[k] < j:
                return found[k]
        return j


@dataclass
class IptablesRules:
    """One dump, compiled lazily: (table, chain) -> rules."""

    dump: IptablesDump | LazyDump
    label: str = ""  # "iptables-nft" / "iptables-legacy": how steps name the tables
    specs: SpecCache = field(default_factory=SpecCache)  # compiled specs (shared between dumps by --matrix)
    _cache: dict[tuple[str, str], list[_Rule]] = field(default_factory=dict)
    _index: dict[tuple[str, str], _DstIndex | None] = field(default_factory=dict)

    def table(self, name: str) -> Table | LazyTable | None:
        return self.dump.tables.get(name)

    def rules(self, table: str, chain: str) -> list[_Rule] | None:
        key = (table, chain)
        found = self._cache.get(key)
        if found is None:
            t = self.dump.tables.get(table)
            c = t.chains.get(chain) if t is not None else None
            if c is None:
                return None
            lines = c.lines
            quick = self.specs.quick_dst
            found = [_Rule(spec, i, lines, quick(spec)) for i, spec in enumerate(c.specs)]
            self._cache[key] = found
        return found

    def dst_index(self, table: str, chain: str) -> _DstIndex | None:
        key = (table, chain)
        if key not in self._index:
            rules = self.rules(table, chain)
            self._index[key] = _DstIndex(rules) if rules is not None and len(rules) >= SKIP_INDEX_MIN else None
        return self._index[key]

    def policy(self, table: str, chain: str) -> str | None:
        t = self.dump.tables.get(table)
        c = t.chains.get(chain) if t is not None else None
        return c.policy if c is not None else None

    def chain_line(self, table: str, chain: str) -> int:
        t = self.dump.tables.get(table)
        c = t.chains.get(chain) if t is not None else None
        return c.line if c is not None else 0

    def source(self, line: int) -> str:
        return f"{self.dump.source}:{line}"


def _mark(value: int, opts: dict[str, str]) -> tuple[int, str]:
    def vm(spec: str) -> tuple[int, int]:
        v, _, m = spec.partition("/")
        return int(v, 0), int(m, 0) if m else 0xFFFFFFFF

    if "--set-xmark" in opts:
        v, m = vm(opts["--set-xmark"])
        return (value & ~m & 0xFFFFFFFF) ^ v, f"xmark {opts['--set-xmark']}"
    if "--set-mark" in opts:
        v, m = vm(opts["--set-mark"])
        return (value & ~m & 0xFFFFFFFF) | v, f"set {opts['--set-mark']}"
    if "--or-mark" in opts:
        return value | int(opts["--or-mark"], 0), f"or {opts['--or-mark']}"
    if "--and-mark" in opts:
        return value & int(opts["--and-mark"], 0), f"and {opts['--and-mark']}"
    if "--xor-mark" in opts:
        return value ^ int(opts["--xor-mark"], 0), f"xor {opts['--xor-mark']}"
    return value, "unchanged"


class IptablesWalker:
    """Evaluates chains of one dump for branches; `ctx` answers local-address and ipset questions."""

    def __init__(self, rules: IptablesRules, ctx: Any) -> None:
        self.r = rules
        self.ctx = ctx

    def run_builtin(self, table: str, chain: str, branch: Branch) -> list[tuple[Branch, str]]:
        """[(branch, verdict)] with verdict accept | drop | reject | queue for a built-in chain."""
        def policy(b: Branch) -> str:  # every branch that reaches the policy records it, ACCEPT too
            name = self.r.policy(table, chain) or "ACCEPT"
            v = TERMINAL.get(name, "accept")
            step = b.add("policy", f"{table} {chain}", f"policy {name}", self.r.source(self.r.chain_line(table, chain)), v)
            if v != "accept":
                b.verdict_by = step
            return v

        return base_chain_verdicts(self._chain(table, chain, branch, 0), policy)

    def _chain(self, table: str, chain: str, branch: Branch, depth: int) -> Iterator[tuple[Branch, str]]:
        """Yields (branch, verdict) for each way out of `chain`: '' (fell off the end) or 'return', or a
        terminal verdict."""
        if depth > MAX_DEPTH:
            branch.add("note", f"{table} {chain}", f"jump depth over {MAX_DEPTH}: loop? stopped here")
            yield branch, "drop"
            return
        rules = self.r.rules(table, chain)
        if rules is None:
            branch.add("note", f"{table} {chain}", "chain not in the dump")
            yield branch, ""
            return
        where = f"{table} {chain}"
        todo: list[tuple[Branch, int]] = [(branch, 0)]
        ctx = self.ctx
        index = self.r.dst_index(table, chain)
        while todo:
            b, start = todo.pop()
            pkt = b.packet
            ended = False
            i = start
            n = len(rules)
            while i < n:
                if index is not None:
                    i = index.next(i, pkt.dst)
                    if i >= n:
                        break
                rule = rules[i]
                i += 1
                if rule.pre is not None and quick_miss(rule.pre, pkt.dst):
                    continue
                comp = rule.compiled
                if comp is None:
                    comp = rule.compiled = self.r.specs.compile(rule.spec)
                matched = True
                forks: list[Fork] = []
                for fn, _text in comp.ordered:
                    res = fn(pkt, ctx)
                    if res is True:
                        continue
                    if res is False:
                        matched = False
                        break
                    assert isinstance(res, Fork)
                    forks.append(res)
                if not matched:
                    continue  # a definite mismatch: whatever the undecided matches say, the rule does not match
                for res in forks:  # matches are a side-effect-free conjunction: deciding the sure ones first is exact
                    ctx.count_fork()
                    yes, no = split(b, res)
                    todo.append((no, i))
                    b = yes
                source = self.r.source(rule.line)
                text = f"-A {chain} {rule.spec}"
                target = comp.target
                if target is None:
                    b.add("rule", where, text, source, "matched (no target)")
                    continue
                if target in TERMINAL:
                    detail = target + (f" {comp.options['--reject-with']}" if "--reject-with" in comp.options else "")
                    b.verdict_by = b.add("rule", where, text, source, detail)
                    yield b, TERMINAL[target]
                    ended = True
                    break
                if target == "RETURN":
                    b.add("return", where, text, source, "RETURN")
                    yield b, "return"
                    ended = True
                    break
                verdict = self._target(b, table, chain, comp, text, source)
                if verdict is not None:
                    yield b, verdict
                    ended = True
                    break
                if self.r.rules(table, target) is None:  # a target that changed the packet (MARK, LOG, ...)
                    pkt = b.packet
                    continue
                # a jump or goto into a user chain
                kind = "goto" if comp.goto else "jump"
                b.add(kind, where, text, source, f"{kind} {target}")
                subs = list(self._chain(table, target, b, depth + 1))
                for sb, v in subs:
                    if v in ("", "return"):
                        if comp.goto:
                            yield sb, "return"
                        else:
                            todo.append((sb, i))
                    else:
                        yield sb, v
                ended = True
                break
            if not ended:
                yield b, ""

    def _target(self, b: Branch, table: str, chain: str, comp: Compiled, text: str, source: str) -> str | None:
        """Apply a non-jump target; return a verdict when it ends the chain, else None (continue)."""
        where = f"{table} {chain}"
        target = comp.target or ""
        opts = comp.options
        pkt = b.packet
        if target == "MARK":
            new, how = _mark(pkt.mark, opts)
            b.packet = pkt.evolve(mark=new)
            b.add("mark", where, text, source, f"mark {how}: 0x{pkt.mark:x} -> 0x{new:x}")
            return None
        if target == "CONNMARK":
            if "--restore-mark" in opts:
                b.packet = pkt.evolve(mark=pkt.ctmark)
                b.add("mark", where, text, source, f"mark restored from conntrack: 0x{pkt.ctmark:x}")
            elif "--save-mark" in opts:
                b.packet = pkt.evolve(ctmark=pkt.mark)
                b.add("mark", where, text, source, f"conntrack mark saved: 0x{pkt.mark:x}")
            else:
                new, how = _mark(pkt.ctmark, opts)
                b.packet = pkt.evolve(ctmark=new)
                b.add("mark", where, text, source, f"conntrack mark {how}: 0x{new:x}")
            return None
        if target == "DNAT":
            to = opts.get("--to-destination", "")
            host, port = split_host_port(to.split("-")[0] if to.count(".") == 3 else to)
            new_port = port if port is not None else pkt.dport
            b.packet = pkt.evolve(dst=host, dport=new_port, dnat=True,
                                  orig_dst=pkt.orig_dst or pkt.dst, orig_dport=pkt.orig_dport or pkt.dport)
            b.dnat_to = join_host_port(host, new_port)
            b.add("nat", where, text, source, f"DNAT to {b.dnat_to}")
            return "accept"
        if target == "REDIRECT":
            first = opts.get("--to-ports", "").split("-")[0]
            to_port = int(first) if first.isdecimal() else pkt.dport
            local = "127.0.0.1" if pkt.iif in ("", "lo") else (self.ctx.primary_address() or pkt.dst)
            b.packet = pkt.evolve(dst=local, dport=to_port, dnat=True, orig_dst=pkt.dst, orig_dport=pkt.dport)
            b.dnat_to = join_host_port(local, to_port)
            b.add("nat", where, text, source, f"REDIRECT to {b.dnat_to} (the node itself)")
            return "accept"
        if target == "SNAT":
            b.snat_to = opts.get("--to-source", "")
            b.add("nat", where, text, source, f"SNAT to {b.snat_to}")
            return "accept"
        if target == "MASQUERADE":
            b.masquerade = True
            b.add("nat", where, text, source, "MASQUERADE (source becomes the outgoing interface's address)")
            return "accept"
        if target in NON_TERMINATING:
            b.add("rule", where, text, source, f"{target} (does not end the chain)")
            return None
        if self.r.rules(table, target) is None:
            b.add("unknown", where, text, source, f"unknown target {target}: treated as not ending the chain")
            return None
        return None
