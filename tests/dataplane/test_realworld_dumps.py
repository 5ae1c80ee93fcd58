"""Real dumps from public bug reports (tests/fixtures/realworld/dumps/*/, each with a SOURCE): each is read
(or refused with its intended one-line error), its frontend count matches a count made by hand from the
dump's lines, and the verdicts match the diagnosis its SOURCE gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kpdoctor.dataplane.analyze import analyze_text
from kpdoctor.errors import InputError

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "realworld" / "dumps"
CASES = sorted(p.name for p in ROOT.iterdir() if (p / "dump.txt").is_file())


def test_corpus_is_large_and_sourced() -> None:
    assert len(CASES) >= 20
    for name in CASES:
        source = (ROOT / name / "SOURCE").read_text()
        assert source.startswith("URL: ") and "Diagnosis: " in source, name


@pytest.mark.parametrize("name", CASES)
def test_real_dump(name: str) -> None:
    expect = json.loads((ROOT / name / "expect.json").read_text())
    text = (ROOT / name / "dump.txt").read_text()
    if "error" in expect:
        with pytest.raises(InputError) as exc:
            analyze_text(text, name)
        message = str(exc.value)
        assert expect["error"] in message and "\n" not in message and message.startswith(name)
        return
    a = analyze_text(text, name, node_ips=expect.get("node_ips", ()))
    assert a.format == expect["format"]
    if a.format == "ipset":
        assert len(a.ipset_names) == expect["ipsets"]
        return
    assert a.view is not None
    assert len(a.view.frontends) == expect["frontends"]
    assert a.reliability.reliable is expect["reliable"]
    judgments = a.judgments()
    if not expect["reliable"]:
        # said once, and no verdict drawn from it
        assert len(judgments) == 1 and judgments[0].startswith("unreliable dump:")
    for part in expect.get("judgments_contain", ()):
        assert any(part in j for j in judgments), (part, judgments)
    if "judgments_count" in expect:
        assert len(judgments) == expect["judgments_count"], judgments
    if expect.get("no_judgments"):
        assert judgments == []
    for part in expect.get("version_contain", ()):
        assert any(part in n for n in a.version_notes), (part, a.version_notes)
    if "layout" in expect:
        assert a.layout == expect["layout"]
    if "too_old" in expect:
        assert len(a.reliability.userspace_too_old) == expect["too_old"]
    by_name = {str(fe): v for fe, v in a.view.frontends.items()}
    for fe, kind in expect.get("kinds", {}).items():
        assert by_name[fe].frontend.kind == kind
    for fe, seconds in expect.get("affinity", {}).items():
        assert by_name[fe].affinity_seconds == seconds
    for fe, verdict in expect.get("verdicts", {}).items():
        assert by_name[fe].verdict == verdict


def test_single_node_address_needs_the_node_ip() -> None:
    """Without ipsets, the Node's address or several addresses, a NodePort on one address reads as a ClusterIP
    (the documented limit); with the Node's address it is a NodePort."""
    text = (ROOT / "k8s-75443-ipvs-single-node-ip" / "dump.txt").read_text()
    kinds = {fe.kind for fe in analyze_text(text, "x").view.frontends if fe.port == 31481}  # type: ignore[union-attr]
    assert kinds == {"cluster-ip"}
    kinds = {fe.kind for fe in analyze_text(text, "x", node_ips=["172.16.1.7"]).view.frontends  # type: ignore[union-attr]
             if fe.port == 31481}
    assert kinds == {"node-port"}


def test_cli_reads_stdin_and_refuses_list_form() -> None:
    dump = ROOT / "k8s-55923-ipvs-persistent" / "dump.txt"
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "analyze", "--json", "-"], input=dump.read_text(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc[0]["format"] == "ipvs" and len(doc[0]["frontends"]) == 3
    bad = ROOT / "website-2499-iptables-L-xlb" / "dump.txt"
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "analyze", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "iptables-save" in out.stderr
    unreliable = ROOT / "k8s-114537-dnat-too-old" / "dump.txt"
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "analyze", str(unreliable)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "iptables userspace too old" in out.stdout


def test_ipvs_without_ipsets_uses_the_apis_node_ports() -> None:
    """IPVS without ipset data or interface addresses: a NodePort number the API knows, on an address that is
    no Service IP, is a NodePort (kubeadm#2205's real table, its NodePort 30449 given as the API would)."""
    from kpdoctor.dataplane.ipvs_facts import parse_ipvsadm_lenient
    from kpdoctor.dataplane.ipvs_semantic import ipvs_semantic_view
    from kpdoctor.dataplane.paste import clean_paste

    paste = clean_paste((ROOT / "kubeadm-2205-ipvs-nodeport" / "dump.txt").read_text())
    table, _ = parse_ipvsadm_lenient(paste.text)
    view = ipvs_semantic_view(table.virtual_servers, None, node_ports={(30449, "TCP")},
                              service_ips={"10.96.0.1", "10.96.0.10", "10.103.89.136"})
    kinds = sorted((fe.kind, fe.port) for fe in view.frontends)
    assert kinds == [("cluster-ip", 53), ("cluster-ip", 443), ("cluster-ip", 18080), ("node-port", 30449)]
    # without that knowledge the same addresses would be four ClusterIPs on port 30449 (the old reading)
    blind = ipvs_semantic_view(table.virtual_servers, None)
    assert sum(1 for fe in blind.frontends if fe.port == 30449 and fe.kind == "cluster-ip") == 3
