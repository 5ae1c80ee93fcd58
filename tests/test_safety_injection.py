"""No node-, Service- or cluster-derived string reaches a shell unquoted.

Remote commands are shell text (SSH runs `sh -c` on the node); everything else is an argv list. These
tests feed hostile strings (command substitution, backticks, `;`, quotes, newlines) to every place a
value from outside kpdoctor can enter a command: the batch script and single command lines are run by a
real /bin/sh here, and a real sshd "node" in a network namespace holds an nft table whose name is a
command substitution (the kernel accepts any name through nft's JSON input). A marker file that a
successful injection would create must never appear.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.node import collectors as C
from kpdoctor.node.collect import CollectOptions, collect_node
from kpdoctor.node.ssh import SshOptions, SshTransport, batch_script, parse_batch
from kpdoctor.node.sshlab import SshLab
from kpdoctor.node.transport import BatchItem, RunResult


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / f"pwned-{secrets.token_hex(4)}"
    yield path
    assert not path.exists(), "a hostile string was executed by a shell"


def _hostile(marker: Path) -> list[str]:
    return [f"$(touch {marker})", f"`touch {marker}`", f"x; touch {marker}", f"x' ; touch {marker}; '",
            f'x" ; touch {marker}; "', f"x\ntouch {marker}", f"x && touch {marker} #"]  # fmt: skip


def test_batch_script_keeps_hostile_elements_literal(marker: Path) -> None:
    hostile = _hostile(marker)
    items = [BatchItem(f"k{i}:{h}", "cmd", ("printf", "%s", h), 5.0, 4096) for i, h in enumerate(hostile)]
    items.append(BatchItem(f"file:{hostile[0]}", "file", (f"/nonexistent/{hostile[2]}",), 5.0, 4096))
    items.append(BatchItem("which", "which", ("sh", hostile[1]), 5.0, 4096))
    boundary = "KPD" + secrets.token_hex(12)
    proc = subprocess.run(["sh", "-c", batch_script(items, boundary)], capture_output=True, timeout=30)
    out = parse_batch(RunResult(proc.stdout, proc.stderr, proc.returncode, 0.1), boundary, items)
    for i, h in enumerate(hostile):
        assert out[f"k{i}:{h}"].exit_code == 0 and out[f"k{i}:{h}"].stdout == h.encode()
    assert out[f"file:{hostile[0]}"].error == "no such file"
    assert out["which"].stdout.split() == [b"sh"]


def test_single_command_line_keeps_hostile_elements_literal(marker: Path) -> None:
    t = SshTransport("n1", "192.0.2.1", SshOptions())
    t._prefix = ["env", "LC_ALL=C"]  # what a root login uses (PATH element left out: this host's PATH serves)
    t._timeout_tool = True
    for h in _hostile(marker):
        line = t.command_line(["printf", "%s", h], timeout=5)
        proc = subprocess.run(["sh", "-c", line], capture_output=True, timeout=30)
        assert proc.returncode == 0 and proc.stdout == h.encode(), line


def test_cluster_values_are_validated_before_they_travel(marker: Path) -> None:
    bad = f"10.96.0.10; touch {marker}"
    svc = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"type": "LoadBalancer", "clusterIP": bad, "clusterIPs": [bad, "$(id)"],
                    "externalIPs": ["`id`", "192.0.2.7"], "externalTrafficPolicy": "Local",
                    "healthCheckNodePort": 32000, "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4 -F"}, {"ip": "198.51.100.9"}]}}}  # fmt: skip
    plan = C.plan_for(load_objects([(svc, "test")]), "n1")
    assert plan.service_ips == ("192.0.2.7", "198.51.100.9")
    assert all(C.conntrack_per_ip_argv(ip)[-1] == ip for ip in plan.service_ips)
    with pytest.raises(ValueError):
        C.conntrack_per_ip_argv(bad)
    # kube-proxy bind addresses from a ConfigMap: anything but an IP falls back to loopback
    targets = C.kube_proxy_targets(f"$(touch {marker}):10256", "`id`:10249")
    assert {(t.host, t.port) for t in targets} == {("127.0.0.1", 10256), ("127.0.0.1", 10249)}
    for release in ("../../etc", f"5.10$(touch {marker})", "a b", "..", ""):
        assert C.modules_builtin_spec(release) is None
    assert C.modules_builtin_spec("6.1.0-18-amd64") is not None
    for name in (f"x$(touch {marker})", "a/b", "a;b", "x y", ""):
        assert not C.safe_nft_name("ip", name)
    assert not C.safe_nft_name("ip;id", "kube-proxy") and C.safe_nft_name("inet", "kube-proxy")


@pytest.mark.root("sshd", "ssh-keygen", "useradd", "nft")
def test_hostile_nft_table_name_on_a_real_ssh_node(tmp_path: Path) -> None:
    marker = Path("/tmp") / f"kpd-pwned-{secrets.token_hex(4)}"
    hostile_table = f"x$(touch {marker})"
    svc = {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "ports": [{"port": 80, "protocol": "TCP"}]}}  # fmt: skip
    cluster = load_objects([(svc, "test")])
    lab = SshLab.create()
    try:
        node = lab.add_node("edge-h")
        doc = {"nftables": [{"add": {"table": {"family": "ip", "name": hostile_table}}},
                            {"add": {"table": {"family": "inet", "name": "a;b"}}}]}  # fmt: skip
        lab.netns_exec("edge-h", "nft", "-j", "-f", "-", input_text=json.dumps(doc))
        listed = lab.netns_exec("edge-h", "nft", "-j", "list", "tables")
        assert hostile_table in json.loads(listed)["nftables"][1]["table"]["name"]
        opts = SshOptions(user=lab.user, key_files=(str(lab.user_key),), known_hosts=str(lab.known_hosts))
        state = collect_node(f"edge-h; touch {marker}", cluster=cluster,
                             options=CollectOptions(transport="ssh", address=node.address, ssh=opts, timeout=30))
    finally:
        lab.close()
    try:
        assert not marker.exists(), "the node's nft table name was executed by a shell"
    finally:
        marker.unlink(missing_ok=True)
    assert state.reachable, state.error
    nft = state.fact("nft-ruleset.json")
    assert f"table ip {hostile_table!r}: name not read (unexpected characters)" in nft.error
    assert "table inet 'a;b': name not read" in nft.error
    assert state.fact("conntrack-services.txt").source.startswith("conntrack -L -f <family> -d <Service IP>")
