"""`kpdoctor trace --matrix`: one Service, every node x frontend x client (the demo bundle; a snapshot whose nodes refuse ssh)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from kpdoctor.cli import main
from kpdoctor.node.bundle import read_bundle
from kpdoctor.node.state import NodeState
from kpdoctor.trace.inputs import trace_cluster_state
from kpdoctor.trace.matrix import matrix, render_matrix
from tests.support.cli import NO_CLUSTER, kpd, kpd_interrupted

DEMO = Path(__file__).resolve().parents[2] / "kpdoctor" / "demo" / "bundle"


def test_etp_local_and_edge2_faults_are_visible_in_one_table() -> None:
    b = read_bundle(DEMO)
    cluster = trace_cluster_state(b)
    assert cluster is not None
    svc = cluster.service_by_key["payments/pay-gateway"]  # LoadBalancer, eTP=Local, its endpoint is on edge-1
    cells = {(c.node, c.frontend.split()[0], c.client): c for c in matrix(cluster, svc, None, b.node_states())}
    assert cells[("edge-1", "nodePort", "external")].summary == "100% -> 10.244.52.31:8080"
    no_local = cells[("edge-2", "nodePort", "external")]  # eTP=Local, no endpoint on edge-2: kube-proxy drops it
    assert no_local.delivered == 0 and "DROP by ip kube-proxy nodeport-endpoints-check" in no_local.summary
    assert "ip_forward = 0" in cells[("edge-2", "clusterIP", "pod")].summary  # the planted sysctl fault
    assert cells[("edge-2", "clusterIP", "node")].delivered == pytest.approx(1.0)  # locally generated: no forward
    assert all(c.complete for c in cells.values())


def test_cli_matrix_json(capsys: pytest.CaptureFixture[str]) -> None:
    main(["trace", "--demo", "--matrix", "--to", "svc/payments/billing:https", "--node", "edge-1", "-o", "json"])
    cells = json.loads(capsys.readouterr().out)
    assert {c["frontend"] for c in cells} == {"clusterIP 10.96.150.31:443/tcp", "nodePort 10.81.0.2:31130/tcp"}
    assert all(c["delivered"] == pytest.approx(1.0) for c in cells)


def test_cli_matrix_needs_a_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["trace", "--demo", "--matrix", "--to", "10.96.150.31:443"])
    assert exit_info.value.code == 2
    assert "--matrix needs --to svc/" in capsys.readouterr().err


def test_a_node_that_could_not_be_read_is_one_row_not_collected() -> None:
    b = read_bundle(DEMO)
    cluster = trace_cluster_state(b)
    assert cluster is not None
    states = b.node_states()
    # hand-made: a NodeState as the collectors leave it for a node they could not reach, its error hostile text
    states["edge-2"] = NodeState("edge-2", "ssh", error="ssh: refused\x1b[31m |\n" + "x" * 1000)
    cells = matrix(cluster, cluster.service_by_key["payments/pay-gateway"], None, states)
    down = [c for c in cells if c.node == "edge-2"]
    assert len(down) == 1 and (down[0].frontend, down[0].client, down[0].complete) == ("-", "-", False)
    assert down[0].summary.startswith("not collected: ssh: refused") and len(down[0].summary) < 400
    assert {c.node for c in cells if c.complete} == {"edge-1"}  # edge-1's rows are still traced
    row = [line for line in render_matrix(cells).splitlines() if line.startswith("| edge-2 |")]
    assert len(row) == 1 and "\x1b" not in row[0] and "\\x1b" in row[0] and "(partial)" not in row[0], row


def _unreachable_snapshot(tmp_path: Path) -> tuple[Path, int]:
    """The demo's cluster/ with every Node's InternalIP 127.0.0.1, and a loopback port nothing listens on."""
    snap = tmp_path / "snapshot"
    shutil.copytree(DEMO / "cluster", snap)
    nodes = json.loads((snap / "nodes.json").read_text())
    for item in nodes["items"]:
        item["status"]["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"}]
    (snap / "nodes.json").write_text(json.dumps(nodes))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return snap, port


def test_snapshot_matrix_over_ssh_nodes_refused_equals_the_bundle_collect_wrote(tmp_path: Path) -> None:
    """Real ssh to a closed loopback port: every node refused. The snapshot matrix is one "not collected" row a
    node (exit 3, as scan when no node could be read); a bundle `kpdoctor collect` wrote the same way gives the
    same matrix, JSON for JSON."""
    snap, port = _unreachable_snapshot(tmp_path)
    ssh = ["--transport", "ssh", "--ssh-port", str(port), "--timeout", "20"]
    live = kpd("trace", "--snapshot", str(snap), *ssh, "--matrix", "--to", "svc/payments/pay-gateway", "-o", "json",
               env=NO_CLUSTER)
    assert live.returncode == 3 and "Traceback" not in live.stderr, live.stderr[-2000:]
    cells = json.loads(live.stdout)
    assert [(c["node"], c["frontend"], c["complete"]) for c in cells] == [("edge-1", "-", False), ("edge-2", "-", False)]
    assert all(c["summary"].startswith("not collected: ") and "refused" in c["summary"] for c in cells), cells
    collected = kpd("collect", "-f", str(tmp_path / "bundle"), "--snapshot", str(snap), *ssh, env=NO_CLUSTER)
    assert "Traceback" not in collected.stderr and (tmp_path / "bundle").is_dir(), collected.stderr[-2000:]
    offline = kpd("trace", "--bundle", str(tmp_path / "bundle"), "--matrix", "--to", "svc/payments/pay-gateway",
                  "-o", "json", env=NO_CLUSTER)
    assert offline.returncode == 3 and json.loads(offline.stdout) == cells, offline.stderr[-2000:]


def test_node_selection_for_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    main(["trace", "--demo", "--matrix", "--to", "svc/payments/pay-gateway", "-l", "kube-proxy-mode=nftables",
          "-o", "json"])
    assert {c["node"] for c in json.loads(capsys.readouterr().out)} == {"edge-2"}
    main(["trace", "--demo", "--matrix", "--to", "svc/payments/pay-gateway", "--node", "edge-*", "-o", "json"])
    assert {c["node"] for c in json.loads(capsys.readouterr().out)} == {"edge-1", "edge-2"}
    with pytest.raises(SystemExit) as exit_info:
        main(["trace", "--demo", "--to", "svc/payments/pay-gateway", "--from", "external", "--node", "edge-1,edge-2"])
    assert exit_info.value.code == 2 and "give --node NAME (one)" in capsys.readouterr().err


def test_ctrl_c_while_nodes_hang_prints_them_as_not_collected(tmp_path: Path) -> None:
    """Real ssh to a loopback listener that accepts and never answers (a hung node); Ctrl-C (SIGINT) once both
    nodes' connections are open: the matrix is still printed, each node one "not collected" row saying so.
    (--timeout 8: the ssh client's banner wait cannot be cut short by Ctrl-C, the process ends when it expires;
    the fan-out marks the nodes interrupted 3 s after Ctrl-C, well before.)"""
    snap, _ = _unreachable_snapshot(tmp_path)
    accepted: list[socket.socket] = []
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        hung.settimeout(30)
        argv = ["trace", "--snapshot", str(snap), "--transport", "ssh", "--ssh-port", str(hung.getsockname()[1]),
                "--timeout", "8", "--matrix", "--to", "svc/payments/pay-gateway", "-o", "json"]

        def both_connected(_child: subprocess.Popen[str]) -> None:  # the collection is under way
            while len(accepted) < 2:
                accepted.append(hung.accept()[0])

        try:
            child = kpd_interrupted(*argv, ready=both_connected, env=NO_CLUSTER)
        finally:
            for conn in accepted:
                conn.close()
    out, err = child.stdout, child.stderr
    assert "Traceback" not in err and child.returncode == 3, err[-2000:]
    cells = json.loads(out)
    assert [c["node"] for c in cells] == ["edge-1", "edge-2"], cells
    assert all(c["summary"].startswith("not collected: ") and "interrupted" in c["summary"] for c in cells), cells


def test_a_reached_node_without_a_dump_is_not_collected_and_the_others_are_traced(tmp_path: Path) -> None:
    """As a kube-exec collection leaves a node whose exec failed for every command (seen on the lab: its
    kube-proxy pod exists, no kubelet answers): reached, but no dump. The demo bundle with edge-2's dumps
    removed: edge-2 is one "not collected" row naming why, edge-1 is traced; without any dump, exit 3."""
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO, bundle)
    dumps = ("iptables-nft-save.txt", "iptables-legacy-save.txt", "iptables-save.txt", "nft-ruleset.json")
    for name in dumps:
        (bundle / "nodes" / "edge-2" / name).unlink()
    args = ["trace", "--bundle", str(bundle), "--matrix", "--to", "svc/payments/pay-gateway", "-o", "json"]
    proc = kpd(*args, env=NO_CLUSTER)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    cells = json.loads(proc.stdout)
    down = [c for c in cells if c["node"] == "edge-2"]
    assert len(down) == 1 and down[0]["summary"].startswith("not collected: edge-2: no iptables or nftables dump")
    assert "(iptables-nft-save.txt: not collected)" in down[0]["summary"], down
    assert len([c for c in cells if c["node"] == "edge-1" and c["complete"]]) == 9
    for name in dumps:
        (bundle / "nodes" / "edge-1" / name).unlink()
    proc = kpd(*args, env=NO_CLUSTER)
    assert proc.returncode == 3 and len(json.loads(proc.stdout)) == 2, proc.stderr[-2000:]
