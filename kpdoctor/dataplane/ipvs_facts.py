"""A node's IPVS table and ipsets read from its collected facts, and a pasted ipvsadm output read leniently.

Both end in the one ipvsadm/ipset parser of `kpdoctor.dataplane.ipvs`; a node without IPVS is a fact
(`IPVSTable(available=False)`), not an error.
"""

from __future__ import annotations

import re
from typing import Protocol

from kpdoctor.dataplane.ipset import IPSets, parse_ipset
from kpdoctor.dataplane.ipvs import IPVSTable, absent_table, parse_ipvsadm, unavailable_reason

# --------------------------------------------------------------------------- node facts
IPVSADM_FACT = "ipvsadm-save.txt"
IPSET_FACT = "ipset-list.txt"


class _Fact(Protocol):
    """What `read_node_ipvs` reads of a collected fact (`kpdoctor.node.state.Fact`)."""

    @property
    def content(self) -> str | None: ...
    @property
    def error(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...


class NodeFacts(Protocol):
    """A node's collected facts (`kpdoctor.node.state.NodeState`), without importing the node layer."""

    @property
    def name(self) -> str: ...
    def fact(self, key: str) -> _Fact: ...


def read_node_ipvs(node: NodeFacts) -> tuple[IPVSTable, IPSets | None]:
    """A node's IPVS table and ipsets from its facts; a missing/failed `ipvsadm` is a fact, not an error.

    B4-ipvs-unavailable (tests/fixtures/bundles) is the real case: `ipvsadm-save.txt` absent, `ipset-list.txt`
    empty, because the kernel has no IPVS.
    """
    fact = node.fact(IPVSADM_FACT)
    if fact.content is None:
        table = absent_table(f"{IPVSADM_FACT}: {fact.error or 'not collected'} (no IPVS state known)", fact.source)
    else:
        text = fact.content + ("\n" + fact.stderr if fact.stderr else "")
        reason = unavailable_reason(text)
        if reason is not None:
            table = absent_table(reason, fact.source or IPVSADM_FACT)
        elif fact.exit_code not in (None, 0):
            table = absent_table(f"ipvsadm exited {fact.exit_code}: {fact.stderr.strip()[:200]}", fact.source)
        else:
            table = parse_ipvsadm(fact.content, f"{node.name}/{IPVSADM_FACT}")
    ipset_fact = node.fact(IPSET_FACT)
    ipsets = None if ipset_fact.content is None else parse_ipset(ipset_fact.content, f"{node.name}/{IPSET_FACT}")
    return table, ipsets


_LIST_TITLE = ("Prot LocalAddress:Port Scheduler Flags\n"
               "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def parse_ipvsadm_lenient(text: str, source: str = "<paste>") -> tuple[IPVSTable, list[str]]:
    """A pasted `ipvsadm -Ln` / `ipvsadm --save -n` (cleaned by `kpdoctor.dataplane.paste.clean_paste`), plus
    notes: `#` comment lines of a save file go, and a list whose title lines were not copied gets them back."""
    notes: list[str] = []
    lines = [line for line in text.split("\n") if not line.lstrip().startswith("#")]
    title = next((i for i, line in enumerate(lines)
                  if line.startswith(("IP Virtual Server version", "Prot LocalAddress:Port"))), None)
    if title:  # prose the author wrote above the output ("IPVS output on node-1")
        notes.append(f"ignored {title} line(s) before the ipvsadm output")
        lines = lines[title:]
    if len(lines) != len(text.split("\n")):
        notes.append("ignored comment lines")
    body = "\n".join(lines)
    first = next((line.strip() for line in lines if line.strip()), "")
    if re.match(r"(?:TCP|UDP|SCTP|FWM)\s+\S+", first) and "Prot LocalAddress:Port" not in body:
        notes.append("the `ipvsadm -Ln` title lines were not pasted: assumed the plain -Ln columns")
        body = _LIST_TITLE + body
    return parse_ipvsadm(body, source), notes
