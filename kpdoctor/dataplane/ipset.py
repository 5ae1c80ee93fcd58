"""ipset as a node prints it: `ipset list` and `ipset save` (ipset 7.x), and the sets' model.

IPVS mode keeps part of a node's Service state in ipsets (`KUBE-CLUSTER-IP`, `KUBE-NODE-PORT-TCP`, ...). The
model is shared by this parser and the reference proxier (`kpdoctor.proxier.ipvs`), so expected and observed sets
compare with `==`. Formats: `Name:`/`Type:`/`Header:`/.../`Members:` blocks, or `create`/`add` lines. Every error
is an `InputError` whose `where` is `source:line`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kpdoctor.addresses import is_ip
from kpdoctor.dataplane.ipvs import line_error
from kpdoctor.errors import InputError


@dataclass(frozen=True)
class IPSet:
    name: str
    type: str  # hash:ip,port | hash:ip | hash:ip,port,ip | hash:ip,port,net | bitmap:port
    header: tuple[tuple[str, str], ...] = ()  # ("family", "inet"), ("hashsize", "1024"), ...
    members: frozenset[str] = frozenset()
    comment: str = ""  # only the reference proxier knows it (kube-proxy writes it into iptables comments)

    def option(self, name: str) -> str | None:
        return next((v for k, v in self.header if k == name), None)


@dataclass(frozen=True)
class IPSets:
    sets: dict[str, IPSet] = field(default_factory=dict)
    source: str = ""

    def get(self, name: str) -> IPSet | None:
        return self.sets.get(name)

    def members(self, name: str) -> frozenset[str]:
        found = self.sets.get(name)
        return found.members if found is not None else frozenset()


# --------------------------------------------------------------------------- ipset
_IPSET_TYPES = {"hash:ip", "hash:ip,port", "hash:ip,port,ip", "hash:ip,port,net", "bitmap:port", "hash:net",
                "hash:ip,mark", "hash:net,port", "hash:net,iface", "hash:net,net", "hash:net,port,net",
                "hash:mac", "hash:ip,mac", "bitmap:ip", "bitmap:ip,mac", "list:set"}
_PROTOS = {"tcp", "udp", "sctp", "udplite", "icmp", "icmpv6", "tcp6", "udp6"}


def _check_net(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _check_proto_port(text: str) -> bool:
    proto, sep, port = text.partition(":")
    return bool(sep) and proto in _PROTOS and port.isdecimal() and int(port) <= 65535


def validate_member(set_type: str, member: str) -> bool:
    """Does `member` have the syntax ipset prints for `set_type`? (kube-proxy's five types are checked.)"""
    parts = member.split(",")
    if set_type == "hash:ip":
        return len(parts) == 1 and is_ip(parts[0])
    if set_type == "hash:ip,port":
        return len(parts) == 2 and is_ip(parts[0]) and _check_proto_port(parts[1])
    if set_type == "hash:ip,port,ip":
        return len(parts) == 3 and is_ip(parts[0]) and _check_proto_port(parts[1]) and is_ip(parts[2])
    if set_type == "hash:ip,port,net":
        return len(parts) == 3 and is_ip(parts[0]) and _check_proto_port(parts[1]) and _check_net(parts[2])
    if set_type == "bitmap:port":
        return len(parts) == 1 and parts[0].isdecimal() and int(parts[0]) <= 65535
    return bool(member)


def _header_pairs(words: list[str]) -> tuple[tuple[str, str], ...]:
    """`family inet hashsize 1024 ...` -> pairs; lone flags (`counters`, `comment`) get ""."""
    flags_without_value = {"counters", "comment", "skbinfo", "forceadd", "nomatch", "-exist"}
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        if words[i] in flags_without_value or i + 1 >= len(words):
            pairs.append((words[i], ""))
            i += 1
        else:
            pairs.append((words[i], words[i + 1]))
            i += 2
    return tuple(pairs)


def parse_ipset_list(text: str, source: str = "ipset-list.txt") -> IPSets:
    """`ipset list` output (also `ipset list -t`, which has no Members section)."""
    sets: dict[str, IPSet] = {}
    block: dict[str, str] = {}
    members: list[str] = []
    in_members = False
    start_line = 0

    def finish(end_line: int) -> None:
        nonlocal block, members, in_members
        if not block:
            return
        name = block.get("Name", "")
        if not name:
            raise InputError("ipset block without 'Name:'", where=f"{source}:{start_line}")
        set_type = block.get("Type", "")
        if not set_type or "Header" not in block:
            raise InputError(f"ipset {name} has no 'Type:'/'Header:' line (truncated output?)",
                             where=f"{source}:{end_line}")
        declared = block.get("Number of entries")
        if declared is not None and in_members and int(declared) != len(members):
            raise InputError(
                f"ipset {name} declares {declared} entries but lists {len(members)} (truncated output?)",
                where=f"{source}:{end_line}",
            )
        if name in sets:
            raise InputError(f"ipset {name} listed twice", where=f"{source}:{start_line}")
        sets[name] = IPSet(name, set_type, _header_pairs(block.get("Header", "").split()), frozenset(members))
        block, members, in_members = {}, [], False

    lines = text.splitlines()
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if not line.strip():
            if in_members:
                finish(lineno - 1)
            continue
        if in_members and not line.startswith("Name: "):
            member = line.split()[0]
            if not validate_member(block.get("Type", ""), member):
                raise line_error(f"malformed member of {block.get('Type')} set {block.get('Name')}", source, lineno, line)
            members.append(member)
            continue
        if line.startswith("Name: "):
            finish(lineno - 1)
            start_line = lineno
        key, sep, value = line.partition(":")
        if not sep:
            raise line_error("expected 'Key: value' in an ipset list header", source, lineno, line)
        key = key.strip()
        if key not in ("Name", "Type", "Revision", "Header", "Size in memory", "References", "Number of entries",
                       "Members"):
            raise line_error(f"unknown ipset list field {key!r}", source, lineno, line)
        if not block and key != "Name":
            raise line_error("ipset list block must start with 'Name:'", source, lineno, line)
        value = value.strip()
        if key == "Type" and value not in _IPSET_TYPES:
            raise line_error(f"unknown ipset type {value!r}", source, lineno, line)
        if key in ("Number of entries", "References", "Revision", "Size in memory") and not value.isdecimal():
            raise line_error(f"{key} is not a number", source, lineno, line)
        if key == "Members":
            in_members = True
            continue
        block[key] = value
    finish(len(lines))  # `ipset list -t` (terse) blocks have no Members section: nothing to count
    return IPSets(sets, source)


def parse_ipset_save(text: str, source: str = "ipset-save.txt") -> IPSets:
    """`ipset save` output (`create NAME TYPE opts` / `add NAME MEMBER [opts]`)."""
    types: dict[str, str] = {}
    headers: dict[str, tuple[tuple[str, str], ...]] = {}
    members: dict[str, list[str]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if tokens[0] in ("create", "add") and len(tokens) < 3:
            raise line_error(f"truncated {tokens[0]} line", source, lineno, line)
        if tokens[0] == "create":
            name, set_type = tokens[1], tokens[2]
            if set_type not in _IPSET_TYPES:
                raise line_error(f"unknown ipset type {set_type!r}", source, lineno, line)
            if name in types:
                raise line_error(f"ipset {name} created twice", source, lineno, line)
            types[name] = set_type
            headers[name] = _header_pairs(tokens[3:])
            members[name] = []
        elif tokens[0] == "add":
            name, member = tokens[1], tokens[2]
            if name not in types:
                raise line_error(f"add to ipset {name} which was not created above", source, lineno, line)
            if not validate_member(types[name], member):
                raise line_error(f"malformed member of {types[name]} set {name}", source, lineno, line)
            members[name].append(member)
        else:
            raise line_error("expected an ipset save line (create/add)", source, lineno, line)
    return IPSets({n: IPSet(n, types[n], headers[n], frozenset(members[n])) for n in types}, source)


def parse_ipset(text: str, source: str = "ipset") -> IPSets:
    """`ipset list` or `ipset save` output, by its first meaningful line."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("create ", "add ")):
            return parse_ipset_save(text, source)
        return parse_ipset_list(text, source)
    return IPSets({}, source)


