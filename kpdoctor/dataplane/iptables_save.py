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

import re
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


def parse_iptables_save(text: str, source: str = "<iptables-save>") -> IptablesDump:
    """Parse iptables-save / ip6tables-save output; see `_parse` (the cyclic GC is paused meanwhile:
    its full passes over hundreds of thousands of fresh chains and lists cost as much as the parse)."""
    with gc_paused():
        return _parse(text, source)


def _parse(text: str, source: str) -> IptablesDump:
    """Parse iptables-save / ip6tables-save output (nft or legacy backend; restore syntax with -A only).

    Raises InputError naming `source:line` and quoting the line for anything
    iptables-save would not print: unknown line types, rules outside a table,
    rules for undeclared chains, bad chain lines, unbalanced quotes, and a table
    without COMMIT (a truncated dump).
    """
    dump = IptablesDump(source)
    tables = dump.tables
    table: Table | None = None
    chains: dict[str, Chain] = {}

    def fail(lineno: int, line: str, why: str) -> InputError:
        return InputError(f"{why}: {_quote_line(line)}", where=f"{source}:{lineno}")

    if "\r" in text:
        text = text.replace("\r\n", "\n")
    src = text.split("\n")
    i = -1
    for i, line in enumerate(src):
        if line.startswith("-A "):  # the hot path: ~all lines of a big dump
            j = line.find(" ", 3)
            name = line[3:j] if j > 0 else line[3:]
            chain = chains.get(name)
            if chain is None:
                if table is None:
                    raise fail(i + 1, line, "rule outside a table (no '*table' line before it)")
                raise fail(i + 1, line, f"rule for chain {name!r}, which is not declared in table {table.name!r}")
            if '"' in line and line.count('"') & 1:
                try:
                    tokenize(line)
                except ValueError:
                    raise fail(i + 1, line, "unterminated quote") from None
            chain.idx.append(i)
            continue
        if not line:
            continue
        c = line[0]
        if c == ":":
            if table is None:
                raise fail(i + 1, line, "chain declaration outside a table")
            if line.endswith(" - [0:0]"):  # the usual user chain line, checked cheaply
                name, policy, counters = line[1:-8], "-", "[0:0]"
                if not name or " " in name or '"' in name or "'" in name or name[0] == "-" or len(name) > 128:
                    raise fail(i + 1, line, "bad chain line (expected ':NAME POLICY [packets:bytes]')")
            else:
                parts = line[1:].split(" ")
                if len(parts) != 3 or not _valid_chain_name(parts[0]) or parts[1] not in _POLICIES \
                        or not _valid_counters(parts[2]):
                    raise fail(i + 1, line, "bad chain line (expected ':NAME POLICY [packets:bytes]')")
                name, policy, counters = parts
            if name in chains:
                raise fail(i + 1, line, f"chain {name!r} declared twice")
            chains[name] = Chain(name, policy, counters, i + 1, src)
        elif c == "#":
            continue
        elif c == "*":
            if table is not None:
                raise fail(i + 1, line, f"new table before COMMIT of table {table.name!r}")
            name = line[1:].strip()
            if not name or not name.isidentifier():
                raise fail(i + 1, line, "bad table line")
            if name in tables:
                raise fail(i + 1, line, f"table {name!r} appears twice")
            table = Table(name, i + 1)
            chains = table.chains
        elif line == "COMMIT":
            if table is None:
                raise fail(i + 1, line, "COMMIT without a table")
            tables[table.name] = table
            table = None
            chains = {}
        elif c == "[":
            # A rule saved with counters (`iptables-save -c`): "[p:b] -A CHAIN ...".
            counters, _, rest = line.partition(" ")
            if table is None or not _valid_counters(counters) or not rest.startswith("-A "):
                raise fail(i + 1, line, "bad counters or rule")
            name, _, spec = rest[3:].partition(" ")
            chain = chains.get(name)
            if chain is None:
                raise fail(i + 1, line, f"rule for chain {name!r}, which is not declared in table {table.name!r}")
            if '"' in spec and spec.count('"') & 1:
                try:
                    tokenize(spec)
                except ValueError:
                    raise fail(i + 1, line, "unterminated quote") from None
            chain.overrides[len(chain.idx)] = (counters, spec)
            chain.idx.append(i)
        elif line.isspace():
            continue
        elif line.startswith("-"):
            raise fail(i + 1, line, "unsupported command (iptables-save prints only '-A' rules)")
        else:
            raise fail(i + 1, line, "not an iptables-save line")
    if table is not None:
        last = next((n for n in range(len(src) - 1, -1, -1) if src[n].strip()), i)
        raise InputError(
            f"table {table.name!r} (from line {table.line}) has no COMMIT: the dump is truncated "
            f"after {_quote_line(src[last])}",
            where=f"{source}:{last + 1}",
        )
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


# ----------------------------------------------------------------------------- pasted input

# Where a chain lives when a paste has no `*table` line (a grep of iptables-save, `iptables -S` without
# `-t`): kube-proxy's own chain names say it; KUBE-SERVICES / KUBE-NODEPORTS exist in both nat and
# filter and are told apart by the rule's target.
_NAT_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-", "KUBE-MARK-",
                 "KUBE-POSTROUTING", "PREROUTING", "POSTROUTING", "DOCKER", "cali-nat", "cali-fip")
_FILTER_PREFIXES = ("KUBE-FORWARD", "KUBE-FIREWALL", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL",
                    "KUBE-SOURCE-RANGES-FIREWALL", "KUBE-PROXY-CANARY", "INPUT", "FORWARD", "DOCKER-USER",
                    "DOCKER-ISOLATION")
_FILTER_TARGETS = frozenset({"REJECT", "DROP", "ACCEPT", "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-EXTERNAL-SERVICES",
                             "KUBE-PROXY-FIREWALL"})
_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s+\S+:\d+\]\s?(.*)$")


@dataclass
class LenientDump:
    """A pasted iptables ruleset: the strict parse of what it became, what was changed on the way, and why
    it may not be the whole ruleset the kernel holds (`partial`)."""

    dump: IptablesDump
    notes: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    layout: str = "iptables-save"  # iptables-save | iptables -S | restore input (kube-proxy log)


def infer_table(chain: str, target: str | None) -> str:
    """The table of a rule whose paste does not say (see `_NAT_PREFIXES`)."""
    if chain in ("KUBE-SERVICES", "KUBE-NODEPORTS", "OUTPUT"):
        return "filter" if target in _FILTER_TARGETS else "nat"
    if chain.startswith(_FILTER_PREFIXES):
        return "filter"
    return "nat"


def _rule_target(spec: str) -> str | None:
    m = re.search(r"\s-[jg]\s+(\S+)", " " + spec)
    return m.group(1) if m else None


def parse_iptables_lenient(text: str, source: str = "<paste>", *, table_hint: str | None = None,
                           elided: int = 0, filtered: bool = False) -> LenientDump:
    """A pasted `iptables-save` (with or without -c), `iptables -S`, or kube-proxy's restore input (its
    `-v=9` log) -> the strict parser's model. The text should have gone through
    `kpdoctor.dataplane.paste.clean_paste` (prompts, fences, CRLF). Tables are rebuilt: a rule outside
    `*table` lands in the table `table_hint` (a prompt's `-t nat`) or `infer_table` says, undeclared chains
    are declared, restore-only lines (`-X`, `-F`) are dropped, a missing final COMMIT is added - each said in
    `notes`; what makes the text less than the kernel's whole ruleset is said in `partial`."""
    notes: list[str] = []
    partial: list[str] = []
    layout = "iptables-save"
    lines = _restore_lines(text.split("\n"), notes)
    if lines is not None:
        layout = "restore input (kube-proxy log)"
    else:
        lines = text.split("\n")
    order: list[str] = []
    decls: dict[str, dict[str, str]] = {}
    rules: dict[str, list[str]] = {}
    current: str | None = None
    seen_tables: set[str] = set()
    dropped: dict[str, int] = {}
    ignored = truncated_quote = 0
    opened = committed = 0
    minus_s = False

    def table(name: str) -> None:
        if name not in decls:
            order.append(name)
            decls[name] = {}
            rules[name] = []

    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name = line[1:].strip()
            if name in seen_tables:  # a second dump of the same table (a log with two restores): the last wins
                notes.append(f"table {name!r} appears twice: the last copy is read")
                decls.pop(name, None)
                rules.pop(name, None)
                order.remove(name)
            seen_tables.add(name)
            current = name
            opened += 1
            table(name)
            continue
        if line == "COMMIT":
            current = None
            committed += 1
            continue
        counters = ""
        if line.startswith("[") and "] " in line:
            counters, line = line.split(" ", 1)
            counters += " "
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            where = current or table_hint or infer_table(name, None)
            table(where)
            decls[where].setdefault(name, line)
            continue
        if line.startswith(("-P ", "-N ")):
            minus_s = True
            parts = line.split()
            if len(parts) >= 2:
                name = parts[1]
                where = current or table_hint or infer_table(name, None)
                table(where)
                policy = parts[2] if line.startswith("-P ") and len(parts) > 2 else "-"
                decls[where][name] = f":{name} {policy} [0:0]"
            continue
        if line.startswith("-A "):
            if '"' in line and line.count('"') & 1:
                try:
                    tokenize(line)
                except ValueError:
                    if i == len(lines) - 1 or not any(x.strip() for x in lines[i + 1:]):
                        truncated_quote += 1
                        continue
            name = line[3:].split(" ", 1)[0]
            where = current or table_hint or infer_table(name, _rule_target(line[3 + len(name):]))
            table(where)
            rules[where].append(counters + line)
            continue
        if line.split(" ", 1)[0] in ("-X", "-F", "-Z", "-D", "-I", "-R", "-E"):
            key = line.split(" ", 1)[0]
            dropped[key] = dropped.get(key, 0) + 1
            continue
        ignored += 1
    total = sum(len(r) for r in rules.values()) + sum(len(d) for d in decls.values())
    if ignored and (not total or ignored > max(3, total // 5)):
        # mostly not iptables lines: let the strict parser name the first bad one
        return LenientDump(parse_iptables_save(text, source), notes, partial, layout)
    if ignored:
        notes.append(f"ignored {ignored} line(s) that are not iptables rules")
    if minus_s:
        layout = "iptables -S"
        if not table_hint and not opened:
            notes.append("`iptables -S` does not print the table: inferred from kube-proxy's chain names "
                         "(`iptables-save` prints it)")
    for key, n in sorted(dropped.items()):
        notes.append(f"dropped {n} restore-only `{key}` line(s)")
    if not opened and not minus_s:
        partial.append("no `*table` line: a filtered excerpt (e.g. `iptables-save | grep`), tables inferred")
    elif not opened and filtered:
        partial.append("the command was piped through grep: only matching lines are shown")
    elif opened > committed:
        partial.append("the last table has no COMMIT: the paste is cut short")
    if truncated_quote:
        partial.append("the last rule is cut in the middle")
    if elided:
        partial.append(f"{elided} '...' line(s): rules were cut out of the paste")
    if filtered and opened:
        partial.append("the command was piped through grep: only matching lines are shown")
    out: list[str] = []
    undeclared = 0
    for name in order:
        declared = decls[name]
        for rule in rules[name]:
            chain = rule.split("-A ", 1)[1].split(" ", 1)[0]
            if chain not in declared:
                declared[chain] = f":{chain} - [0:0]"
                undeclared += 1
        out.append(f"*{name}")
        out.extend(declared.values())
        out.extend(rules[name])
        out.append("COMMIT")
    if undeclared and opened:
        partial.append(f"{undeclared} chain(s) have rules but no declaration line (lines are missing)")
    return LenientDump(parse_iptables_save("\n".join(out) + "\n", source), notes, partial, layout)


def _restore_lines(lines: list[str], notes: list[str]) -> list[str] | None:
    """kube-proxy's restore input out of its log (`Restoring iptables rules: *filter ...` at -v=5..9, or the
    structured `"Restoring iptables" rules=<...>`); None when the text is no such log."""
    if not any("Restoring iptables" in line for line in lines):
        return None
    out: list[str] = []
    inside = False
    for line in lines:
        m = _KLOG.match(line.strip())
        if m:
            msg = m.group(1)
            inside = False
            k = msg.find("Restoring iptables rules: ")
            if k >= 0:
                out.append(msg[k + len("Restoring iptables rules: "):])
                inside = True
            elif "Restoring iptables" in msg and "rules=" in msg:
                rest = msg.split("rules=", 1)[1]
                if rest.startswith('"'):
                    out.extend(rest.strip('"').encode().decode("unicode_escape").split("\n"))
                else:
                    out.append(rest.lstrip("<").strip())
                    inside = True
            continue
        if inside:
            if line.strip() == ">":
                inside = False
                continue
            out.append(line.strip())
    notes.append("read kube-proxy's iptables-restore input out of its log: what kube-proxy asked for, "
                 "not necessarily what the kernel holds")
    return out
