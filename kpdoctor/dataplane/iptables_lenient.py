"""A pasted iptables ruleset (`iptables-save` with or without -c, `iptables -S`, kube-proxy's restore input in its
`-v=9` log) rebuilt into what the one strict parser (`kpdoctor.dataplane.iptables_save`) reads, with notes on
what was changed and why the result may be partial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kpdoctor.dataplane.iptables_save import IptablesDump, parse_iptables_save, tokenize

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
