"""IPVS and ipset state printed as a node prints it: `ipvsadm --save -n`, `ipvsadm -Ln`, `ipset save`, `ipset list`
(the inverse of the parsers in `kpdoctor.dataplane.ipvs`, used by the reference proxier and the tests).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from kpdoctor.addresses import join_host_port
from kpdoctor.dataplane.ipset import IPSet
from kpdoctor.dataplane.ipvs import (
    FORWARD_FLAG,
    RealServer,
    VirtualServer,
    dest_sort_key,
)


def _table_lines(vss: Iterable[VirtualServer], service: Callable[[VirtualServer], str],
                 dest: Callable[[VirtualServer, RealServer], str]) -> str:
    """One line per virtual server, each followed by its real servers, both in ipvsadm's order."""
    out: list[str] = []
    for vs in sorted(vss, key=VirtualServer.sort_key):
        out.append(service(vs))
        out.extend(dest(vs, rs) for rs in sorted(vs.real_servers, key=dest_sort_key))
    return "".join(line + "\n" for line in out)


def _save_service(vs: VirtualServer) -> str:
    line = f"-A {vs.service_arg} -s {vs.scheduler}"
    if vs.persistent:
        line += f" -p {vs.persistent}"
    if vs.sched_flags:
        line += f" -b {','.join(vs.sched_flags)}"
    return line


def _list_service(vs: VirtualServer) -> str:
    name = f"FWM  {vs.fwmark}" if vs.fwmark else f"{vs.protocol}  {join_host_port(vs.address, vs.port)}"
    line = f"{name} {vs.scheduler}"
    if vs.sched_flags:
        line += f" ({','.join(vs.sched_flags)})"
    if vs.persistent:
        line += f" persistent {vs.persistent}"
    return line


def format_ipvsadm_save(vss: Iterable[VirtualServer]) -> str:
    """What `ipvsadm --save -n` prints for these services (sorted as ipvsadm sorts, see `sort_key`)."""
    return _table_lines(vss, _save_service,
                        lambda vs, rs: f"-a {vs.service_arg} -r {rs.key} {FORWARD_FLAG.get(rs.forward, '-m')} "
                                       f"-w {rs.weight}")


def format_ipvsadm_list(vss: Iterable[VirtualServer], *, size: int = 4096) -> str:
    """What `ipvsadm -Ln` prints (ipvsadm 1.31 column widths, trailing blanks included)."""
    title = (f"IP Virtual Server version 1.2.1 (size={size})\n"
             "Prot LocalAddress:Port Scheduler Flags\n"
             "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
    return title + _table_lines(vss, _list_service,
                                lambda _vs, rs: f"  -> {rs.key:<28} {rs.forward:<7} {rs.weight:<6} {0:<10} {0:<10}")


def format_ipset_save(sets: Iterable[IPSet]) -> str:
    """`ipset save` form (kernel hash order is random; members are sorted here)."""
    out: list[str] = []
    for s in sets:
        opts = " ".join(f"{k} {v}" if v else k for k, v in s.header)
        out.append(f"create {s.name} {s.type}" + (f" {opts}" if opts else ""))
        out.extend(f"add {s.name} {m}" for m in sorted(s.members, key=_member_sort_key))
    return "".join(line + "\n" for line in out)


def format_ipset_list(sets: Iterable[IPSet]) -> str:
    """`ipset list` form (what ipset 7.x prints; memory size / references are not modelled: 0)."""
    blocks: list[str] = []
    for s in sets:
        header = " ".join(f"{k} {v}" if v else k for k, v in s.header)
        lines = [f"Name: {s.name}", f"Type: {s.type}", "Revision: 0", f"Header: {header}", "Size in memory: 0",
                 "References: 0", f"Number of entries: {len(s.members)}", "Members:"]
        lines.extend(sorted(s.members, key=_member_sort_key))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _member_sort_key(member: str) -> tuple[int, str]:
    head = member.split(",")[0]
    if head.isdecimal():
        return (int(head), member)
    try:
        return (int(ipaddress.ip_address(head)), member)
    except ValueError:
        return (0, member)
