"""kpdoctor.lab.egress: which CONNECT requests the lab's API-server egress proxy serves (the proxy itself
carries every exec/proxy request in tests/test_klab_kubelet.py)."""

from __future__ import annotations

import errno
import os
import socket

import pytest
import yaml

from kpdoctor.lab import egress, relay
from tests.support.checks import netns


def test_connect_to_the_node_segment_only() -> None:
    assert egress.parse_connect(b"CONNECT 10.240.0.10:10250 HTTP/1.1\r\nHost: x\r\n\r\n") == ("10.240.0.10", 10250)
    for head in (
        b"CONNECT kpk-n0:10250 HTTP/1.1\r\n\r\n",  # a hostname: the API server must dial InternalIP
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n",  # the host's loopback
        b"CONNECT 10.240.1.10:10250 HTTP/1.1\r\n\r\n",  # outside the lab segment
        b"CONNECT 10.240.0.10:0 HTTP/1.1\r\n\r\n",
        b"CONNECT 10.240.0.10:70000 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"CONNECT 10.240.0.10:10250\r\n\r\n",
        b"\xff\xfe",
    ):
        assert egress.parse_connect(head) is None, head


def test_egress_selector_config() -> None:
    doc = yaml.safe_load(egress.egress_config("/run/x/egress.sock"))
    assert doc["kind"] == "EgressSelectorConfiguration"
    (sel,) = doc["egressSelections"]
    assert sel["name"] == "cluster"
    assert sel["connection"] == {"proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": "/run/x/egress.sock"}}}


@pytest.mark.root("ip")
def test_sockets_are_made_inside_the_namespace() -> None:
    """relay.in_netns (behind listen_in and egress.socket_in): a real namespace; the sockets stay in it and this
    process is back in its own namespace afterwards."""
    before = os.stat("/proc/self/ns/net").st_ino
    with netns("kpd-egress") as ns:
        server = relay.listen_in(ns, "127.0.0.1", 0)
        port = server.getsockname()[1]
        client = egress.socket_in(ns)
        try:
            client.setblocking(True)
            client.settimeout(5)
            client.connect(("127.0.0.1", port))  # the namespace's own loopback
            server.setblocking(True)
            server.settimeout(5)
            conn, _ = server.accept()
            conn.close()
            outside = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            outside.settimeout(5)
            try:  # made outside the block: the host's loopback, where the namespace's listener is not
                assert outside.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
            finally:
                outside.close()
        finally:
            client.close()
            server.close()
    assert os.stat("/proc/self/ns/net").st_ino == before
