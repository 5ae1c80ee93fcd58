"""Parse `iptables-save` output (both backends) into tables, chains and rules, and normalize it.

Dumps of real nodes run to hundreds of thousands of lines, so the parser does
plain string splitting per line and keeps each rule as its unparsed text;
`Rule.args` tokenizes (honouring iptables-save's quoting) only when a consumer
asks. Every error names `<source>:<line>` and quotes the line, so a user can
find the garbage in a collected file.

`normalize()` defines what "equal to kube-proxy's output" means: it removes only
what kube-proxy or the tools randomize (see `docs/perf/iptables.md` and the
function's docstring).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kpdoctor.errors import InputError
from kpdoctor.gcpause import gc_paused

_POLICIES = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE", "-"})
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}


def _quote_line(line: str, limit: int = 160) -> str:
    shown = line if len(line) <= limit else line[: limit - 3] + "..."
    return repr(shown)


def tokenize(spec: str) -> list[str]:
    """Split a rule spec the way iptables-save quotes it: `"..."` with `\\"` and `\\\\` escapes.

    Raises ValueError on an unterminated quote.
    """
    if '"' not in spec and "\\" not in spec:
        return spec.split()
    if "\\" not in spec:
        fast = _tokenize_quoted_fast(spec)
        if fast is not None:
            return fast
    out: list[str] = []
    cur: list[str] = []
    in_token = False
    i = 0
    n = len(spec)
    while i < n:
        c = spec[i]
        if c == '"':
            in_token = True
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quote")
                c = spec[i]
                if c == "\\" and i + 1 < n and spec[i + 1] in '"\\':
                    cur.append(spec[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                cur.append(c)
                i += 1
        elif c.isspace():
            if in_token:
                out.append("".join(cur))
                cur = []
                in_token = False
            i += 1
        else:
            if c == "\\" and i + 1 < n and spec[i + 1] in '"\\':
                cur.append(spec[i + 1])
                i += 2
            else:
                cur.append(c)
                i += 1
            in_token = True
    if in_token:
        out.append("".join(cur))
    return out


def _tokenize_quoted_fast(spec: str) -> list[str] | None:
    """Fast path for the usual shape: whole arguments in quotes, no escapes. None when it does not apply."""
    parts = spec.split('"')
    if len(parts) % 2 == 0:
        raise ValueError("unterminated quote")
    out: list[str] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if (i > 0 and part and not part[0].isspace()) or (i < last and part and not part[-1].isspace()):
                return None  # a quote glued to other characters: leave it to the exact tokenizer
            out.extend(part.split())
        else:
            out.append(part)
    return out


def quote_arg(arg: str) -> str:
    """Quote one argument as iptables-save does (only when needed)."""
    if arg and not any(c.isspace() or c in "\"\\'" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Rule:
    """One `-A` line: `spec` is everything after `-A <chain> `, unparsed."""

    table: str
    chain: str
    spec: str
    line: int
    counters: str | None = None  # "[packets:bytes]" when saved with -c

    @property
    def text(self) -> str:
        prefix = f"{self.counters} " if self.counters else ""
        return f"{prefix}-A {self.chain} {self.spec}" if self.spec else f"{prefix}-A {self.chain}"

    @property
    def args(self) -> list[str]:
        return tokenize(self.spec)

    def option(self, name: str) -> str | None:
        """The value after the first `name` (e.g. `-j`, `--comment`, `--dport`), or None."""
        args = self.args
        for i, a in enumerate(args[:-1]):
            if a == name:
                return args[i + 1]
        return None

    @property
    def target(self) -> str | None:
        return self.option("-j") or self.option("-g")

    @property
    def comment(self) -> str | None:
        return self.option("--comment")


class Chain:
    """A chain and its rules. Rules are kept as indexes into the dump's lines (no copy per rule),
    which is what makes a 1,000,000-line dump parse in about a second."""

    __slots__ = ("name", "policy", "counters", "line", "src", "idx", "overrides")

    def __init__(self, name: str, policy: str, counters: str, line: int, src: list[str] | None = None) -> None:
        self.name = name
        self.policy = policy  # "-" for user chains
        self.counters = counters
        self.line = line
        self.src: list[str] = src if src is not None else []  # the dump's lines (shared)
        self.idx: list[int] = []  # 0-based line index of each rule
        self.overrides: dict[int, tuple[str, str]] = {}  # rule position -> (counters, spec)

    def __repr__(self) -> str:
        return f"Chain({self.name!r}, {self.policy!r}, rules={len(self.idx)})"

    @property
    def builtin(self) -> bool:
        return self.policy != "-"

    @property
    def specs(self) -> list[str]:
        """Each rule's text after `-A <chain> `."""
        off = len(self.name) + 4
        src = self.src
        out = [src[i][off:] for i in self.idx]
        for pos, (_, spec) in self.overrides.items():
            out[pos] = spec
        return out

    @property
    def lines(self) -> list[int]:
        return [i + 1 for i in self.idx]

    def rules(self, table: str) -> Iterator[Rule]:
        ov = self.overrides
        for pos, (spec, i) in enumerate(zip(self.specs, self.idx, strict=True)):
            yield Rule(table, self.name, spec, i + 1, ov[pos][0] if pos in ov else None)

    def __len__(self) -> int:
        return len(self.idx)


@dataclass(slots=True)
class Table:
    name: str
    line: int
    chains: dict[str, Chain] = field(default_factory=dict)

    def rules(self, chain: str) -> Iterator[Rule]:
        found = self.chains.get(chain)
        if found is not None:
            yield from found.rules(self.name)

    def rule_count(self) -> int:
        return sum(len(c) for c in self.chains.values())


@dataclass(slots=True)
class IptablesDump:
    source: str
    tables: dict[str, Table] = field(default_factory=dict)
    problems: list[InputError] = field(default_factory=list)  # lenient mode: the lines it skipped, and why

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def rules(self, table: str, chain: str) -> Iterator[Rule]:
        t = self.tables.get(table)
        if t is not None:
            yield from t.rules(chain)

    def rule_count(self) -> int:
        return sum(t.rule_count() for t in self.tables.values())

    def to_text(self) -> str:
        """iptables-save syntax (without header comments); parse(to_text()) round-trips."""
        out: list[str] = []
        for table in self.tables.values():
            out.append(f"*{table.name}")
            for chain in table.chains.values():
                out.append(f":{chain.name} {chain.policy} {chain.counters}")
            for chain in table.chains.values():
                name = chain.name
                ov = chain.overrides
                for i, spec in enumerate(chain.specs):
                    prefix = f"{ov[i][0]} " if i in ov else ""
                    out.append(f"{prefix}-A {name} {spec}" if spec else f"{prefix}-A {name}")
            out.append("COMMIT")
        out.append("")
        return "\n".join(out)


def _valid_counters(text: str) -> bool:
    if len(text) < 5 or text[0] != "[" or text[-1] != "]":
        return False
    packets, sep, octets = text[1:-1].partition(":")
    return bool(sep) and packets.isdecimal() and octets.isdecimal()


def _valid_chain_name(name: str) -> bool:
    return 0 < len(name) <= 128 and not any(c in name for c in ' \t"\'') and not name.startswith("-")


def _unterminated_quote(spec: str) -> bool:
    """An odd number of `"` that the tokenizer cannot close (checked only when the count is odd: it is cheap)."""
    if '"' not in spec or not spec.count('"') & 1:
        return False
    try:
        tokenize(spec)
    except ValueError:
        return True
    return False


def line_kind(line: str) -> str:
    """How `_parse` treats a line, for readers that look at single lines (the delta engine,
    `kpdoctor.dataplane.iptables_delta`): "rule" (`-A`), "decl" (`:`), "skip" (empty, comment, blank) or
    "other" (a table line, COMMIT, a rule with counters, anything the parser rejects). `_parse` inlines this
    test in its loop (a call per line would cost a fifth of the parse); tests/dataplane/test_iptables_readers_agree
    checks the two agree."""
    if line.startswith("-A "):
        return "rule"
    if not line or line[0] == "#" or line.isspace():
        return "skip"
    if line[0] == ":":
        return "decl"
    return "other"


def line_chain(line: str, kind: str) -> str:
    """The chain a "rule" or "decl" line (`line_kind`) is about, cut as `_parse` cuts it."""
    if kind == "rule":
        j = line.find(" ", 3)
        return line[3:j] if j > 0 else line[3:]
    return line[1:].split(" ", 1)[0]


def ends_mid_table(text: str) -> bool:
    """True when an iptables-save text stops inside a table: its last line that is not blank or a comment is
    not `COMMIT` (a complete dump, even of no table at all, never does). Reads only the end of the text. An
    output cut short with exit status 0 is how an exec stream loses data (kubernetes/kubernetes#124571)."""
    end = len(text)
    while True:
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end].strip()
        if line and not line.startswith("#"):
            return line != "COMMIT"
        if start == 0:
            return False
        end = start - 1


def parse_iptables_save(text: str, source: str = "<iptables-save>", *, lenient: bool = False,
                        rules: bool = True) -> IptablesDump:
    """Parse iptables-save / ip6tables-save output; see `_parse` (the cyclic GC is paused meanwhile:
    its full passes over hundreds of thousands of fresh chains and lists cost as much as the parse).

    `lenient`: the structure readers' mode (`kpdoctor.node.parsed.parse_iptables_view`): nothing raises; each
    line the strict mode rejects is skipped and its error kept in `IptablesDump.problems` (same message, same
    `source:line`), except a rule for an undeclared chain, which is kept (the chain declared as a user chain,
    policy "-"); lines may be indented; a table without COMMIT is kept (a truncated dump: what it has).
    `rules=False` (with `lenient`): tables and chain declarations only, `-A` lines passed over unread (the node
    summary's fast mode: a 450k-line dump in a third of the time)."""
    with gc_paused():
        return _parse(text, source, lenient, rules)


def _parse(text: str, source: str, lenient: bool = False, rules: bool = True) -> IptablesDump:
    """Parse iptables-save / ip6tables-save output (nft or legacy backend; restore syntax with -A only).

    Raises InputError naming `source:line` and quoting the line for anything
    iptables-save would not print: unknown line types, rules outside a table,
    rules for undeclared chains, bad chain lines, unbalanced quotes, and a table
    without COMMIT (a truncated dump). In `lenient` mode the error is kept in
    `dump.problems` instead and the line skipped (see `parse_iptables_save`).
    """
    dump = IptablesDump(source)
    tables = dump.tables
    table: Table | None = None
    chains: dict[str, Chain] = {}

    def fail(lineno: int, line: str, why: str) -> InputError:
        err = InputError(f"{why}: {_quote_line(line)}", where=f"{source}:{lineno}")
        if not lenient:
            raise err
        dump.problems.append(err)
        return err

    if "\r" in text:
        text = text.replace("\r\n", "\n")
    src = text.split("\n")
    if lenient and (text[:1].isspace() or "\n " in text or "\n\t" in text):
        src = [line.lstrip() for line in src]  # an indented paste: the structure is still readable
    i = -1
    for i, line in enumerate(src):
        if line.startswith("-A "):  # the hot path: ~all lines of a big dump
            if not rules:
                continue
            j = line.find(" ", 3)
            name = line[3:j] if j > 0 else line[3:]
            chain = chains.get(name)
            if chain is None:
                if table is None:
                    fail(i + 1, line, "rule outside a table (no '*table' line before it)")
                    continue
                fail(i + 1, line, f"rule for chain {name!r}, which is not declared in table {table.name!r}")
                chain = chains[name] = Chain(name, "-", "[0:0]", i + 1, src)  # lenient: the rule is kept
            if _unterminated_quote(line):
                fail(i + 1, line, "unterminated quote")
                continue
            chain.idx.append(i)
            continue
        if not line:
            continue
        c = line[0]
        if c == ":":
            if table is None:
                fail(i + 1, line, "chain declaration outside a table")
                continue
            if line.endswith(" - [0:0]"):  # the usual user chain line, checked cheaply
                name, policy, counters = line[1:-8], "-", "[0:0]"
                if not name or " " in name or '"' in name or "'" in name or name[0] == "-" or len(name) > 128:
                    fail(i + 1, line, "bad chain line (expected ':NAME POLICY [packets:bytes]')")
                    continue
            else:
                parts = line[1:].split(" ")
                if len(parts) != 3 or not _valid_chain_name(parts[0]) or parts[1] not in _POLICIES \
                        or not _valid_counters(parts[2]):
                    fail(i + 1, line, "bad chain line (expected ':NAME POLICY [packets:bytes]')")
                    continue
                name, policy, counters = parts
            if name in chains:
                fail(i + 1, line, f"chain {name!r} declared twice")
                continue
            chains[name] = Chain(name, policy, counters, i + 1, src)
        elif c == "#":
            continue
        elif c == "*":
            if table is not None:
                fail(i + 1, line, f"new table before COMMIT of table {table.name!r}")
                tables[table.name] = table  # lenient: the table ends here
                table, chains = None, {}
            name = line[1:].strip()
            if not name or not name.isidentifier():
                fail(i + 1, line, "bad table line")
                continue
            if name in tables:
                fail(i + 1, line, f"table {name!r} appears twice")
                table = tables[name]  # lenient: the second copy adds to the first
            else:
                table = Table(name, i + 1)
            chains = table.chains
        elif line == "COMMIT":
            if table is None:
                fail(i + 1, line, "COMMIT without a table")
                continue
            tables[table.name] = table
            table = None
            chains = {}
        elif c == "[":
            # A rule saved with counters (`iptables-save -c`): "[p:b] -A CHAIN ...".
            if not rules:
                continue
            counters, _, rest = line.partition(" ")
            if table is None or not _valid_counters(counters) or not rest.startswith("-A "):
                fail(i + 1, line, "bad counters or rule")
                continue
            name, _, spec = rest[3:].partition(" ")
            chain = chains.get(name)
            if chain is None:
                fail(i + 1, line, f"rule for chain {name!r}, which is not declared in table {table.name!r}")
                chain = chains[name] = Chain(name, "-", "[0:0]", i + 1, src)  # lenient: the rule is kept
            if _unterminated_quote(spec):
                fail(i + 1, line, "unterminated quote")
                continue
            chain.overrides[len(chain.idx)] = (counters, spec)
            chain.idx.append(i)
        elif line.isspace():
            continue
        elif line.startswith("-"):
            fail(i + 1, line, "unsupported command (iptables-save prints only '-A' rules)")
        else:
            fail(i + 1, line, "not an iptables-save line")
    if table is not None:
        last = next((n for n in range(len(src) - 1, -1, -1) if src[n].strip()), i)
        err = InputError(
            f"table {table.name!r} (from line {table.line}) has no COMMIT: the dump is truncated "
            f"after {_quote_line(src[last])}",
            where=f"{source}:{last + 1}",
        )
        if not lenient:
            raise err
        dump.problems.append(err)
        tables[table.name] = table
    return dump


def load_iptables_save(path: str) -> IptablesDump:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=path) from None
    return parse_iptables_save(text, source=path)


# ----------------------------------------------------------------------------- normalization

# Chains whose per-service rule order comes from Go map iteration in kube-proxy (random per sync).
RANDOM_ORDER_CHAINS: dict[str, tuple[str, ...]] = {
    "nat": ("KUBE-SERVICES", "KUBE-NODEPORTS"),
    "filter": ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL"),
}
_LAST_RULE_MARK = "kubernetes service nodeports"


def _service_key(spec: str) -> str:
    """The service port name a per-service rule is about: its comment up to the first space."""
    i = spec.find("--comment ")
    if i < 0:
        return ""
    rest = spec[i + 10:]
    if rest.startswith('"'):
        rest = rest[1:]
    j = min((k for k in (rest.find(" "), rest.find('"')) if k >= 0), default=len(rest))
    return rest[:j]


def sorted_service_rules(specs: list[str]) -> list[str]:
    """Stable-sort per-service rules by service port name; the 'must be the last rule' jumps go last.

    Rules of one service port keep their relative order (cluster IP, external IPs,
    LB IPs...), which kube-proxy writes deterministically. This is upstream's
    `sortIPTablesRules` with a finer key (`ns/name:port` instead of `ns/name`).
    """
    last = sorted(s for s in specs if _LAST_RULE_MARK in s)
    rest = [s for s in specs if _LAST_RULE_MARK not in s]
    rest.sort(key=_service_key)
    return rest + last


def normalize(dump: IptablesDump, *, tables: tuple[str, ...] | None = None) -> str:
    """Canonical text of a dump, for comparing two rulesets for equality.

    Removes exactly what varies between two kube-proxy runs over the same state:
    - `#` header/footer comment lines (dropped by the parser) and all counters
      (chain `[p:b]` become `[0:0]`, per-rule counters are dropped);
    - table order (legacy prints filter first, nft mangle first): tables sorted by name;
    - chain order: built-in chains in their fixed order, then user chains by name
      (both backends already print it so);
    - the order of per-service rules in nat KUBE-SERVICES / KUBE-NODEPORTS and filter
      KUBE-SERVICES / KUBE-NODEPORTS / KUBE-EXTERNAL-SERVICES / KUBE-PROXY-FIREWALL, which
      kube-proxy emits in Go map order: stable-sorted by service port name
      (`sorted_service_rules`); the nodeports tail-call rules stay last.
    Everything else (every rule's text, rule order in all other chains) is kept.
    """
    out: list[str] = []
    for name in sorted(dump.tables):
        if tables is not None and name not in tables:
            continue
        table = dump.tables[name]
        out.append(f"*{name}")
        builtin_order = BUILTIN_CHAINS.get(name, ())
        builtins = [c for c in builtin_order if c in table.chains]
        builtins += sorted(c for c, ch in table.chains.items() if ch.builtin and c not in builtin_order)
        users = sorted(c for c, ch in table.chains.items() if not ch.builtin)
        ordered = [*builtins, *users]
        for c in ordered:
            out.append(f":{c} {table.chains[c].policy} [0:0]")
        random_chains = RANDOM_ORDER_CHAINS.get(name, ())
        for c in ordered:
            specs = table.chains[c].specs
            if c in random_chains:
                specs = sorted_service_rules(specs)
            out.extend(f"-A {c} {s}" if s else f"-A {c}" for s in specs)
        out.append("COMMIT")
    out.append("")
    return "\n".join(out)


def normalize_text(text: str, source: str = "<iptables-save>") -> str:
    return normalize(parse_iptables_save(text, source))
