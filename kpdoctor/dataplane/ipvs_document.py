"""The reference proxier's IPVS document (`kpdoctor proxier render --mode ipvs`) split into its four `#### <section>`
parts and read back with the node-output parsers of `kpdoctor.dataplane.ipvs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpdoctor.addresses import is_ip
from kpdoctor.dataplane.ipset import IPSets, parse_ipset_save
from kpdoctor.dataplane.ipvs import IPVSTable, line_error, parse_ipvsadm_save
from kpdoctor.errors import InputError

# --------------------------------------------------------------------------- the reference proxier's document
SECTION_MARK = "#### "


@dataclass(frozen=True)
class IPVSDocument:
    """The four parts of `kpdoctor proxier render --mode ipvs` output, each parsed by the node-output parsers."""

    table: IPVSTable
    ipsets: IPSets
    addresses: tuple[str, ...]
    iptables: str


def split_ipvs_document(text: str, source: str = "ipvs-render") -> dict[str, str]:
    """`#### <section>` delimited parts -> {section title: text}."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        if line.startswith(SECTION_MARK):
            title = line[len(SECTION_MARK):].strip()
            if title in sections:
                raise InputError(f"section {title!r} appears twice", where=f"{source}:{lineno}")
            current = sections.setdefault(title, [])
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.startswith("#"):
            raise InputError("text before the first '#### <section>' line", where=f"{source}:{lineno}")
    return {k: "".join(v) for k, v in sections.items()}


def parse_ipvs_document(text: str, source: str = "ipvs-render") -> IPVSDocument:
    parts = split_ipvs_document(text, source)
    for needed in ("ipvsadm --save -n", "kube-ipvs0 addresses", "ipset save", "iptables-restore"):
        if needed not in parts:
            raise InputError(f"missing section '#### {needed}'", where=source)
    addresses: list[str] = []
    for lineno, raw in enumerate(parts["kube-ipvs0 addresses"].splitlines(), 1):
        tokens = raw.split()
        if not tokens or tokens[:3] == ["ip", "link", "add"]:
            continue
        if len(tokens) != 6 or tokens[:3] != ["ip", "addr", "add"] or tokens[4] != "dev":
            raise line_error("expected 'ip addr add IP/LEN dev kube-ipvs0'", f"{source}[addresses]", lineno, raw)
        ip = tokens[3].split("/")[0]
        if not is_ip(ip):
            raise line_error("not an IP address", f"{source}[addresses]", lineno, raw)
        addresses.append(ip)
    return IPVSDocument(
        table=parse_ipvsadm_save(parts["ipvsadm --save -n"], f"{source}[ipvsadm]"),
        ipsets=parse_ipset_save(parts["ipset save"], f"{source}[ipset]"),
        addresses=tuple(addresses),
        iptables=parts["iptables-restore"],
    )
