"""Bundle round trip and read-only collection on real netfilter.

A scratch network namespace gets real kube-proxy v1.36 rules (the golden V1 dumps) loaded with
iptables-nft-restore, iptables-legacy-restore and nft -f; kpdoctor collects there with the local transport
(run under `ip netns exec`), writes a bundle, and reading the bundle back gives the same facts. The full
ruleset of the namespace is identical before and after collection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kpdoctor.node.bundle import read_bundle, write_bundle
from kpdoctor.node.sshlab import ruleset_of, scratch_netns
from tests.conftest import GOLDEN

V1 = GOLDEN / "V1-basic-clusterip"
REPO = Path(__file__).resolve().parents[2]

COLLECT_AND_WRITE = r"""
import json, sys
from kpdoctor.node.collect import collect_node, CollectOptions
from kpdoctor.node.bundle import write_bundle
from kpdoctor.commands.node import state_to_dict
from kpdoctor.cluster.snapshot import load_snapshot
cluster = load_snapshot(sys.argv[3])
state = collect_node("kpnode1", cluster=cluster, options=CollectOptions(transport="local", timeout=60))
write_bundle(sys.argv[1], nodes={"kpnode1": state})
json.dump(state_to_dict(state), open(sys.argv[2], "w"))
"""


def _load_rules(netns: str) -> None:
    def run(*argv: str, stdin: Path | None = None) -> None:
        subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, timeout=60, capture_output=True,
                       input=stdin.read_bytes() if stdin else None)  # fmt: skip

    run("nfacct", "add", "ct_state_invalid_dropped_pkts")
    run("iptables-nft-restore", stdin=V1 / "iptables" / "iptables-save.txt")
    run("iptables-legacy-restore", stdin=V1 / "iptables-legacy" / "iptables-legacy-save.txt")
    run("nft", "-f", str(V1 / "nftables" / "nft-ruleset.txt"))
    run("conntrack", "-I", "-s", "10.244.0.5", "-d", "10.96.0.1", "-p", "tcp", "--sport", "40000", "--dport", "443",
        "--state", "ESTABLISHED", "-t", "120", "-u", "ASSURED")  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _rules_only(save: str) -> dict[str, list[str]]:
    """iptables-save text per table, without comments and counters (legacy prints tables in load order)."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in save.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("*"):
            current = out.setdefault(line, [])
        current.append(line.split(" [", 1)[0] if line.startswith(":") else line)
    return out


@pytest.mark.root("iptables-nft-restore", "iptables-legacy-restore", "nft", "nfacct", "conntrack")
def test_local_collection_round_trip_and_read_only(tmp_path: Path) -> None:
    with scratch_netns("kpd-rt") as netns:
        _load_rules(netns)
        before = ruleset_of(netns)
        bundle_dir = tmp_path / "bundle"
        live_json = tmp_path / "live.json"
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", COLLECT_AND_WRITE, str(bundle_dir),
                        str(live_json), str(V1 / "cluster")], check=True, timeout=120, env=_env())  # fmt: skip
        tarball = tmp_path / "cli.tar.gz"
        cli = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "kpdoctor", "collect", "-f",
                              str(tarball), "--transport", "local", "--snapshot", str(V1 / "cluster"),
                              "--node", "kpnode1"], capture_output=True, text=True, timeout=120, env=_env())  # fmt: skip
        after = ruleset_of(netns)
    assert cli.returncode == 0, cli.stderr
    # read-only: every backend's rules (and the legacy table list) unchanged by two collections
    assert before == after
    assert "KUBE-SERVICES" in before["iptables-legacy-save"] and "kube-proxy" in before["nft list ruleset"]

    live = json.loads(live_json.read_text())
    back = read_bundle(bundle_dir).node_state("kpnode1")
    assert {k: {"content": f.content, "source": f.source, "exit_code": f.exit_code, "stderr": f.stderr,
                "duration": f.duration, "error": f.error, "truncated": f.truncated}
            for k, f in back.facts.items()} == live["facts"]  # fmt: skip
    # the CLI reading the bundle prints the same NodeState facts
    shown = subprocess.run([sys.executable, "-m", "kpdoctor", "node", "kpnode1", "--bundle", str(bundle_dir),
                            "--facts-json"], capture_output=True, text=True, timeout=60, env=_env())  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["facts"] == live["facts"]

    # what was collected is what the kernel holds: the golden rules, in both backends, and nft's table
    facts = live["facts"]
    assert _rules_only(facts["iptables-nft-save.txt"]["content"]) == _rules_only(
        (V1 / "iptables" / "iptables-save.txt").read_text())
    assert _rules_only(facts["iptables-legacy-save.txt"]["content"]) == _rules_only(
        (V1 / "iptables-legacy" / "iptables-legacy-save.txt").read_text())
    nft = json.loads(facts["nft-ruleset.json"]["content"])
    tables = {(o["table"]["family"], o["table"]["name"]) for o in nft["nftables"] if "table" in o}
    assert ("ip", "kube-proxy") in tables and ("ip", "nat") in tables
    summary = back.summary()
    assert summary.backends_with_kube_proxy_rules == ("legacy", "nf_tables")
    assert summary.legacy_tables_loaded == ("nat", "mangle", "filter")
    assert summary.ipvs_available is False
    # the Service-IP conntrack entry inserted above is found (and only Service-IP entries are kept)
    assert "dst=10.96.0.1 " in facts["conntrack-services.txt"]["content"]
    # the CLI's tarball holds the same node
    cli_state = read_bundle(tarball).node_state("kpnode1")
    assert _rules_only(cli_state.text("iptables-legacy-save.txt") or "") == _rules_only(
        facts["iptables-legacy-save.txt"]["content"])
    assert read_bundle(tarball).cluster_state().services


@pytest.mark.root("nft")
def test_per_table_nft_listing_equals_list_ruleset(tmp_path: Path) -> None:
    """nft-ruleset.json is built table by table (a huge table cannot hide the others); same objects as
    `nft -j list ruleset` on a real ruleset."""
    with scratch_netns("kpd-nft") as netns:
        subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", str(V1 / "nftables" / "nft-ruleset.txt")],
                       check=True, timeout=60)  # fmt: skip
        whole = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "ruleset"], capture_output=True,
                               check=True, timeout=60).stdout  # fmt: skip
        code = ("import sys, time; from kpdoctor.node.gather import *; from kpdoctor.node.local import *;"
                "from kpdoctor.node.collectors import *; g = Gatherer(LocalTransport(), CollectPlan(), "
                "Budget(time.monotonic() + 60, None)); g.tools = {'nft'}; "
                "g.facts['nft-ruleset.json'] = g.nft_tables_fact(); t = g._nft_table_list(); "
                "sys.stdout.write(g.nft_ruleset_fact(t).content)")  # fmt: skip
        ours = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True,
                              check=True, timeout=60, env=_env()).stdout  # fmt: skip
    assert json.loads(ours) == json.loads(whole)


def test_secrets_never_enter_a_bundle(tmp_path: Path) -> None:
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6InNlY3JldCJ9.eyJzdWIiOiJzeXN0ZW06a3ViZS1wcm94eSJ9.c2lnbmF0dXJlLXNlY3JldA"
    key_data = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Foa2lHOXcwQkFRRUZBQVNDQktnd2dnU2tBZ0VBQW9JQkFRQwo="
    kubeconfig = (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: CADATA1234567890\n"
        "    server: https://10.81.0.1:6444\n  name: default\nusers:\n- name: default\n  user:\n"
        f"    token: {token}\n    client-key-data: {key_data}\n    client-certificate-data: CERTDATA1234567890\n"
    )
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC\n-----END PRIVATE KEY-----"
    configmap = {"kind": "ConfigMap", "apiVersion": "v1",
                 "metadata": {"name": "kube-proxy", "namespace": "kube-system", "annotations": {
                     "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"data": {"t": token}})}},
                 "data": {"config.conf": "mode: iptables\nclusterCIDR: 10.244.0.0/16\n", "kubeconfig.conf": kubeconfig,
                          "extra.pem": pem}}  # fmt: skip
    secret = {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s", "namespace": "kube-system"},
              "data": {"token": "U0VDUkVUU0VDUkVU"}}  # fmt: skip
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "kube-proxy-x", "namespace": "kube-system"},
           "spec": {"nodeName": "n1", "containers": [{"name": "kube-proxy", "image": "k8s/kube-proxy:v1.36.2",
                    "env": [{"name": "API_TOKEN", "value": "PODENVSECRET123"}, {"name": "NODE", "value": "n1"}]}]}}  # fmt: skip
    logs = {"kube-system/kube-proxy-x": f"I0101 started\nAuthorization: Bearer {token}\n{pem}\n"}
    out = write_bundle(tmp_path / "b.tar.gz", nodes={},
                       cluster_objects={"configmaps": [configmap, secret], "pods": [pod]}, logs=logs)  # fmt: skip
    bundle = read_bundle(out)
    everything = b"\n".join(bundle.files.values()).decode() + json.dumps(bundle.manifest)
    for secret_text in (token, key_data, "CERTDATA1234567890", "CADATA1234567890", "MIIEvgIBADANBgkqhkiG9w0BAQEFAASC",
                        "U0VDUkVUU0VDUkVU", "PODENVSECRET123", "c2lnbmF0dXJlLXNlY3JldA"):  # fmt: skip
        assert secret_text not in everything
    cluster = bundle.cluster_state()
    cm = cluster.configmap("kube-system", "kube-proxy")
    assert cm is not None and cm.data["config.conf"] == "mode: iptables\nclusterCIDR: 10.244.0.0/16\n"
    assert "server: https://10.81.0.1:6444" in cm.data["kubeconfig.conf"]  # the non-secret parts stay useful
    assert "<redacted by kpdoctor>" in cm.data["kubeconfig.conf"]
    assert cluster.pods[0].containers[0].name == "kube-proxy"
    assert "started" in cluster.logs["kube-system/kube-proxy-x"]
