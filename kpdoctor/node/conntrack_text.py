"""`conntrack -S` statistics and `conntrack -L` entries as a node printed them; like every small-fact parser in
`kpdoctor.node.parsed`, odd input gives an empty or partial result, never an exception.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

# ------------------------------------------------------------------------ conntrack


def parse_conntrack_stats(text: str | None) -> dict[str, int]:
    """`conntrack -S` per-CPU lines summed per counter (drop, insert_failed, early_drop, ...)."""
    totals: dict[str, int] = defaultdict(int)
    for line in (text or "").splitlines():
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep and key != "cpu":
                try:
                    totals[key] += int(value)
                except ValueError:
                    continue
    return dict(totals)


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    protocol: str  # tcp | udp | sctp | icmp ...
    state: str  # TCP state or ""
    src: str
    dst: str
    sport: int | None
    dport: int | None
    reply_src: str
    reply_dst: str
    reply_sport: int | None
    reply_dport: int | None
    flags: tuple[str, ...]
    line: str

    @property
    def dnat_target(self) -> str:
        """The backend the connection was translated to (reply source), `ip:port`."""
        port = "" if self.reply_sport is None else f":{self.reply_sport}"
        host = f"[{self.reply_src}]" if ":" in self.reply_src else self.reply_src
        return host + port


_PROTOS = {"tcp", "udp", "sctp", "icmp", "icmpv6", "udplite", "dccp", "gre", "unknown"}


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def parse_conntrack_line(line: str) -> ConntrackEntry | None:
    """One `conntrack -L` line (or /proc/net/nf_conntrack line); None when it is not an entry."""
    tokens = line.split()
    proto = next((t for t in tokens[:4] if t in _PROTOS), None)
    if proto is None:
        return None
    groups: list[dict[str, str]] = [{}, {}]
    idx = 0
    state = ""
    flags: list[str] = []
    for token in tokens:
        if token.startswith("[") and token.endswith("]"):
            flags.append(token[1:-1])
            continue
        key, sep, value = token.partition("=")
        if not sep:
            if token.isupper() and token.replace("_", "").isalpha():
                state = token
            continue
        if key == "src" and "src" in groups[idx]:
            idx = 1 if idx == 0 else idx
        if key in ("src", "dst", "sport", "dport") and idx < 2 and key not in groups[idx]:
            groups[idx][key] = value
    orig, reply = groups
    if "src" not in orig or "dst" not in orig:
        return None
    return ConntrackEntry(
        protocol=proto,
        state=state,
        src=orig["src"],
        dst=orig["dst"],
        sport=_int(orig.get("sport")),
        dport=_int(orig.get("dport")),
        reply_src=reply.get("src", ""),
        reply_dst=reply.get("dst", ""),
        reply_sport=_int(reply.get("sport")),
        reply_dport=_int(reply.get("dport")),
        flags=tuple(flags),
        line=line.strip(),
    )


def parse_conntrack_entries(text: str | None) -> list[ConntrackEntry]:
    entries = []
    for line in (text or "").splitlines():
        entry = parse_conntrack_line(line)
        if entry is not None:
            entries.append(entry)
    return entries
