"""IP address helpers: validate, canonicalise, tell the family. A leaf module (standard library only).

The proxier, the dataplane parsers, the node collectors and the gate all read addresses; they import
these from here instead of from each other (which made `dataplane` <-> `proxier` a package cycle).
"""

from __future__ import annotations

import ipaddress
import re

IPV4 = "IPv4"
IPV6 = "IPv6"

# Canonical dotted-quad IPv4 (no leading zeros): the common case, checked without `ipaddress`
# (which costs ~3 us per address; a 100,000-endpoint cluster parses every address).
CANONICAL_V4 = re.compile(r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")


def join_host_port(address: str, port: int) -> str:
    """`ip:port`, IPv6 as `[ip]:port` (the form of endpoint keys in every SemanticView)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address, exactly as `ipaddress.ip_address` accepts it (no surrounding spaces)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def canonical_ip(address: str) -> str | None:
    """The canonical text of an IP address (as Go's net.IP.String() prints it), or None if invalid."""
    if CANONICAL_V4.fullmatch(address):
        return address
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def ip_family(address: str) -> str | None:
    if CANONICAL_V4.fullmatch(address):
        return IPV4
    try:
        return IPV6 if ipaddress.ip_address(address.strip()).version == 6 else IPV4
    except ValueError:
        return None


def cidr_family(cidr: str) -> str | None:
    try:
        return IPV6 if ipaddress.ip_network(cidr.strip(), strict=False).version == 6 else IPV4
    except ValueError:
        return None
