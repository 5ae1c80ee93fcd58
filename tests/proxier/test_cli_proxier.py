"""`kpdoctor proxier render|view` through the real console script (subprocess), good and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kpdoctor.proxier.iptables import render_iptables
from tests.support.iptables import GOLDEN, kernel_round_trip, scenario_input

V2 = GOLDEN / "V2-nodeport-lb"
KPDOCTOR = shutil.which("kpdoctor")
# no skip when the console script is missing: `pip install -e .` provides it, and a missing one is a failure


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert KPDOCTOR is not None, "the kpdoctor console script is not installed (pip install -e .)"
    return subprocess.run([KPDOCTOR, *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kpdoctor: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_render_to_file_equals_the_library(tmp_path: Path) -> None:
    out = tmp_path / "rules.txt"
    proc = run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1", "--output-file", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == render_iptables(scenario_input(V2))


def test_render_stdout_ipv6_and_version() -> None:
    proc = run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1", "--family", "IPv6",
               "--kube-proxy-version", "1.36")
    assert proc.returncode == 0, proc.stderr
    assert "! -d ::1/128" in proc.stdout and "*nat" in proc.stdout


def test_render_with_config_override(tmp_path: Path) -> None:
    cfg = tmp_path / "kp.yaml"
    cfg.write_text("kind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.244.0.0/16\n"
                   "iptables:\n  masqueradeBit: 10\n  masqueradeAll: true\n")
    proc = run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "--or-mark 0x00000400" in proc.stdout
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" not in proc.stdout  # masqueradeAll: no local detection


@pytest.mark.root("iptables-nft-restore", "nfacct")
def test_render_output_restores_as_the_real_node(tmp_path: Path) -> None:
    proc = run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1")
    assert proc.returncode == 0
    from kpdoctor.dataplane.iptables_save import normalize_text

    saved = kernel_round_trip(proc.stdout)
    assert normalize_text(saved) == normalize_text((V2 / "iptables" / "iptables-save.txt").read_text())


def test_view_expected_json_and_diff_against_real_dump() -> None:
    proc = run("proxier", "view", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {r["kind"] for r in rows} == {"cluster-ip", "external-ip", "load-balancer", "node-port",
                                         "localhost-node-port"}  # iptables mode: localhost NodePorts by default
    site = next(r for r in rows if r["service"] == "web/site-np:http" and r["kind"] == "node-port")
    assert site["port"] == 30100 and len(site["endpoints"]) == 4
    proc = run("proxier", "view", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1",
               "--iptables-save", str(V2 / "iptables" / "iptables-save.txt"))
    assert proc.returncode == 0 and proc.stdout == "no differences\n"
    proc = run("proxier", "view", "--iptables-save", str(V2 / "iptables" / "iptables-save.txt"))
    assert proc.returncode == 0 and "load-balancer 192.0.2.102:443/TCP" in proc.stdout


def test_other_modes_dispatch() -> None:
    proc = run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "kpnode2", "--mode", "nftables")
    if proc.returncode == 0:
        assert "kube-proxy" in proc.stdout
    else:
        assert_one_line_error(proc, "mode nftables not supported yet")


# ---- bad input: one line on stderr naming file/line, exit 2, no traceback ---------------------


def _snapshot_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "snap"
    shutil.copytree(V2 / "cluster", dest)
    return dest


def test_malformed_json(tmp_path: Path) -> None:
    snap = _snapshot_copy(tmp_path)
    (snap / "nodes.json").write_text('{"kind": "List", "items": [\n  {"kind": "Node" "metadata": {}}\n]}\n')
    proc = run("proxier", "render", "--snapshot", str(snap), "--node", "kpnode1")
    assert_one_line_error(proc, f"{snap / 'nodes.json'}:2", "invalid JSON")


def test_malformed_yaml(tmp_path: Path) -> None:
    snap = _snapshot_copy(tmp_path)
    (snap / "more.yaml").write_text("kind: Service\nmetadata: {name: a\nspec: {}\n")
    proc = run("proxier", "render", "--snapshot", str(snap), "--node", "kpnode1")
    line = assert_one_line_error(proc, str(snap / "more.yaml") + ":", "invalid YAML")
    assert line.split(str(snap / "more.yaml") + ":")[1].split(":")[0].isdigit()


def test_no_node_of_that_name() -> None:
    proc = run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "ghost")
    assert_one_line_error(proc, "no Node named 'ghost'", str(V2 / "cluster"))


def test_endpointslice_for_missing_service(tmp_path: Path) -> None:
    snap = _snapshot_copy(tmp_path)
    services = json.loads((snap / "services.json").read_text())
    services["items"] = [s for s in services["items"] if s["metadata"]["name"] != "site-np"]
    (snap / "services.json").write_text(json.dumps(services))
    proc = run("proxier", "render", "--snapshot", str(snap), "--node", "kpnode1")
    assert_one_line_error(proc, str(snap / "endpointslices.json"), "Service web/site-np, which is not in the snapshot")


def test_garbage_iptables_save_line(tmp_path: Path) -> None:
    dump = tmp_path / "iptables-save.txt"
    lines = (V2 / "iptables" / "iptables-save.txt").read_text().splitlines()
    lines.insert(99, "iptables-save: error while loading shared libraries")
    dump.write_text("\n".join(lines) + "\n")
    proc = run("proxier", "view", "--iptables-save", str(dump))
    assert_one_line_error(proc, f"{dump}:100", "not an iptables-save line",
                          "'iptables-save: error while loading shared libraries'")


def test_bad_flag_values(tmp_path: Path) -> None:
    assert_one_line_error(run("proxier", "render", "--snapshot", str(V2 / "cluster"), "--node", "kpnode1",
                              "--family", "IPv7"), "--family")
    assert_one_line_error(run("proxier", "render", "--snapshot", str(tmp_path / "nope"), "--node", "kpnode1"),
                          "snapshot is not a directory")
    assert_one_line_error(run("proxier", "view"), "--snapshot")
