"""Collection over real SSH: Debian sshd processes in network namespaces acting as nodes, paramiko as client.

Each node is a namespace with its own sshd (throwaway host key, throwaway login account with /bin/sh,
AuthorizedKeysFile in the lab directory); only those sshd PIDs are stopped and those namespaces deleted.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kpdoctor.node.collect import CollectOptions, collect_node, collect_nodes
from kpdoctor.node.collectors import kube_proxy_targets
from kpdoctor.node.ssh import SshOptions, SshTransport
from kpdoctor.node.sshlab import SshLab, ruleset_of
from kpdoctor.node.transport import TransportError
from tests.conftest import GOLDEN

V1 = GOLDEN / "V1-basic-clusterip"
pytestmark = pytest.mark.root("sshd", "ssh-keygen", "useradd", "iptables-nft-restore", "nft")


@pytest.fixture(scope="module")
def lab() -> Iterator[SshLab]:
    lab = SshLab.create()
    try:
        lab.add_node("edge-a")
        lab.add_node("edge-b")
        lab.add_node("dead", sshd=False, drop_all=True)
        lab.netns_exec("edge-a", "nfacct", "add", "ct_state_invalid_dropped_pkts")
        lab.netns_exec("edge-a", "iptables-nft-restore", input_text=(V1 / "iptables" / "iptables-save.txt").read_text())
        lab.netns_exec("edge-b", "nft", "-f", str(V1 / "nftables" / "nft-ruleset.txt"))
        yield lab
    finally:
        lab.close()


def _opts(lab: SshLab, **kw: object) -> SshOptions:
    base = {"user": lab.user, "key_files": (str(lab.user_key),), "known_hosts": str(lab.known_hosts),
            "connect_timeout": 3.0}  # fmt: skip
    base.update(kw)
    return SshOptions(**base)  # type: ignore[arg-type]


def _connected(lab: SshLab, node: str) -> SshTransport:
    t = SshTransport(node, lab.nodes[node].address, _opts(lab))
    t.connect(5)
    t.which(["timeout"], 5)
    return t


def test_collects_real_rules_over_ssh_and_changes_nothing(lab: SshLab) -> None:
    before = {n: ruleset_of(lab.nodes[n].netns) for n in ("edge-a", "edge-b")}
    names = ["edge-a", "edge-b"]
    states = {n: collect_node(n, options=CollectOptions(transport="ssh", address=lab.nodes[n].address,
                                                        ssh=_opts(lab), timeout=30)) for n in names}  # fmt: skip
    assert before == {n: ruleset_of(lab.nodes[n].netns) for n in names}
    a, b = states["edge-a"], states["edge-b"]
    assert a.reachable and b.reachable and a.transport == "ssh"
    assert "KUBE-SVC-" in (a.text("iptables-nft-save.txt") or "")
    assert a.summary().backends_with_kube_proxy_rules == ("nf_tables",)
    assert b.summary().nft_kube_proxy_tables == ("ip kube-proxy", "ip6 kube-proxy")
    assert b.text("iptables-save.txt") == ""
    assert a.fact("ipvsadm-save.txt").error.startswith("IPVS not loaded")
    assert a.fact("kube-proxy/metrics.txt").error == "connection refused"


def test_fan_out_dead_node_times_out_within_limit_while_others_complete(lab: SshLab) -> None:
    opts = CollectOptions(transport="ssh", ssh=_opts(lab, connect_timeout=2.0), timeout=20, concurrency=8)

    class Cluster:  # only what collect_node reads: node addresses
        node_by_name = {n: _Node(lab.nodes[n].address) for n in ("edge-a", "edge-b", "dead")}
        services = ()

        def proxy_config_for(self, name: str) -> None:
            return None

    start = time.monotonic()
    states = collect_nodes(["dead", "edge-a", "edge-b"], cluster=Cluster(), options=opts)
    took = time.monotonic() - start
    assert "timed out after 2s" in states["dead"].error
    assert states["edge-a"].reachable and states["edge-b"].reachable
    assert took < 2.0 + 5.0


class _Node:
    def __init__(self, address: str) -> None:
        self.address = address

    def address_of(self, kind: str) -> str | None:
        return self.address if kind == "InternalIP" else None


def test_unknown_host_key_refused_by_default_and_accepted_with_flag(lab: SshLab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = SshTransport("edge-a", lab.nodes["edge-a"].address, _opts(lab, known_hosts=str(empty)))
    with pytest.raises(TransportError, match="not in known_hosts"):
        t.connect(5)
    t = SshTransport("edge-a", lab.nodes["edge-a"].address,
                     _opts(lab, known_hosts=str(empty), accept_new_host_keys=True))  # fmt: skip
    t.connect(5)
    t.close()
    assert lab.nodes["edge-a"].address in empty.read_text()  # recorded, like OpenSSH accept-new


def test_wrong_host_key_is_refused_even_with_accept_new(lab: SshLab, tmp_path: Path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{lab.nodes['edge-a'].address} {kind} {blob}\n")
    for accept in (False, True):
        t = SshTransport("edge-a", lab.nodes["edge-a"].address,
                         _opts(lab, known_hosts=str(wrong), accept_new_host_keys=accept))  # fmt: skip
        with pytest.raises(TransportError, match="does not match known_hosts"):
            t.connect(5)


def test_auth_failure_and_unreachable_are_clear_node_errors(lab: SshLab, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
    state = collect_node("edge-a", options=CollectOptions(
        transport="ssh", address=lab.nodes["edge-a"].address, timeout=10,
        ssh=SshOptions(user=lab.user, key_files=(str(stranger),), known_hosts=str(lab.known_hosts))))  # fmt: skip
    assert "authentication failed" in state.error and not state.facts
    # a namespace address with no sshd: refused at once (distinct from the blackholed node's timeout)
    state = collect_node("edge-a", options=CollectOptions(transport="ssh", address=lab.nodes["edge-a"].address,
                                                          ssh=_opts(lab, port=2999), timeout=10))  # fmt: skip
    assert "refused" in state.error


def test_hanging_command_times_out_and_remote_process_is_gone(lab: SshLab) -> None:
    t = _connected(lab, "edge-a")
    try:
        start = time.monotonic()
        res = t.run(["sleep", "37.5"], timeout=1.0, max_bytes=1024)
        assert res.timed_out and time.monotonic() - start < 3
        time.sleep(3.5)  # `timeout -k 2` on the node reaps it
        left = subprocess.run(["pgrep", "-f", "sleep 37.5"], capture_output=True, text=True)
        assert left.stdout.strip() == ""
    finally:
        t.close()


def test_non_utf8_and_big_output(lab: SshLab, tmp_path: Path) -> None:
    from kpdoctor.node.run_fact import to_fact

    t = _connected(lab, "edge-a")
    big = tmp_path / "dump.txt"
    line = b"-A KUBE-SVC-ABCDEFGHIJKLMNOP -m comment --comment \"ns/svc:port\" -j KUBE-SEP-ABCDEFGHIJKLMNOP\n"
    big.write_bytes(line * (50 * 1024 * 1024 // len(line)))
    big.chmod(0o644)
    try:
        res = t.run(["printf", "caf\\351 \\377\\n"], timeout=5, max_bytes=1024)
        fact = to_fact("x.txt", "printf", res)
        assert fact.content == "caf\ufffd \ufffd\n" and "not valid UTF-8" in fact.stderr
        start = time.monotonic()
        res = t.run(["cat", str(big)], timeout=30, max_bytes=512 * 1024 * 1024)
        assert res.ok and len(res.stdout) == big.stat().st_size
        assert time.monotonic() - start < 15
        capped = t.run(["cat", str(big)], timeout=30, max_bytes=1024 * 1024)
        assert capped.truncated and len(capped.stdout) <= 1024 * 1024 and capped.stdout.endswith(b"\n")
    finally:
        t.close()


def test_kube_proxy_http_read_through_forwarded_channel(lab: SshLab) -> None:
    """A real HTTP server on the node's loopback (as kube-proxy's metrics bind) answers through direct-tcpip."""
    netns = lab.nodes["edge-b"].netns
    server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "--bind",
                               "127.0.0.1", "10249", "--directory", str(V1 / "nftables")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.8)
        t = _connected(lab, "edge-b")
        try:
            res = t.http_get("127.0.0.1", 10249, "/proxyMode.txt", timeout=5, max_bytes=1 << 20)
            assert res.exit_code == 200 and res.stdout.strip() == b"nftables"
            missing = t.http_get("127.0.0.1", 10249, "/nope", timeout=5, max_bytes=1 << 20)
            assert missing.exit_code == 404
        finally:
            t.close()
        assert kube_proxy_targets("", "")[1].host == "127.0.0.1"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_remote_command_line_quotes_every_element(lab: SshLab) -> None:
    t = _connected(lab, "edge-a")
    try:
        hostile = ["conntrack", "-L", "-d", "10.0.0.1; touch /tmp/kpd-pwned-$(id -u)"]
        line = t.command_line(hostile, 5)
        assert "'10.0.0.1; touch /tmp/kpd-pwned-$(id -u)'" in line
        res = t.run(["echo", "$(id -u); `id`"], timeout=5, max_bytes=1024)
        assert res.stdout == b"$(id -u); `id`\n"
        assert not Path("/tmp/kpd-pwned-0").exists()
    finally:
        t.close()


def test_cli_node_over_ssh(lab: SshLab) -> None:
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "node", "edge-a", "--transport", "ssh", "--address",
                          lab.nodes["edge-a"].address, "--ssh-user", lab.user, "--ssh-key", str(lab.user_key),
                          "--known-hosts", str(lab.known_hosts), "--timeout", "20", "--facts-json"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"iptables-nft-save.txt"' in out.stdout
    dead = subprocess.run([sys.executable, "-m", "kpdoctor", "node", "dead", "--transport", "ssh", "--address",
                           lab.nodes["dead"].address, "--ssh-user", lab.user, "--ssh-key", str(lab.user_key),
                           "--known-hosts", str(lab.known_hosts), "--timeout", "2"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert dead.returncode == 3
    assert dead.stderr.startswith("kpdoctor: error: node dead:") and "Traceback" not in dead.stderr
