"""The four real bundles (kube-proxy v1.36.2 captures, hand-assembled without manifest.json) load, and their
NodeState says what each README says. Real data, read as-is from tests/fixtures/bundles."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from kpdoctor.errors import InputError
from kpdoctor.node.bundle import read_bundle, write_bundle
from kpdoctor.node.state import Fact, NodeState
from tests.conftest import BUNDLES

SCENARIOS = ("B1-healthy", "B2-stale-endpoint", "B3-backend-split", "B4-ipvs-unavailable")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_bundle_loads_with_cluster_and_both_nodes(scenario: str) -> None:
    bundle = read_bundle(BUNDLES / scenario / "bundle")
    assert bundle.manifest is None
    assert bundle.node_names() == ["edge-1", "edge-2"]
    cluster = bundle.cluster_state()
    assert {n.name for n in cluster.nodes} == {"edge-1", "edge-2"}
    assert len(cluster.services) == 7  # six scenario Services + default/kubernetes
    for state in bundle.node_states().values():
        assert state.transport == "bundle" and state.reachable
        summary = state.summary()
        # kernel without IPVS and without /proc/modules on every node (README "How they were made")
        assert summary.kernel == "6.18.44-fc-v657"
        assert summary.ipvs_available is False
        assert "ipvsadm-save.txt" not in state.facts and "proc-modules.txt" not in state.facts
        assert summary.iptables_backend == "nf_tables"
        # edge-2 runs nftables mode: kube-proxy tables in nft, empty iptables-save
        if state.name == "edge-2":
            assert summary.nft_kube_proxy_tables == ("ip kube-proxy", "ip6 kube-proxy")
            assert state.text("iptables-save.txt") == ""
            assert summary.proxy_mode == "nftables"


def test_b1_both_kube_proxies_answer() -> None:
    states = read_bundle(BUNDLES / "B1-healthy").node_states()
    for state in states.values():
        assert all(state.summary().kube_proxy_surfaces.values())
        assert state.summary().healthz_healthy is True
    assert states["edge-1"].summary().backends_with_kube_proxy_rules == ("nf_tables",)


@pytest.mark.parametrize("scenario", ["B2-stale-endpoint", "B4-ipvs-unavailable"])
def test_kube_proxy_surfaces_missing_where_it_was_down(scenario: str) -> None:
    states = read_bundle(BUNDLES / scenario / "bundle").node_states()
    edge1 = states["edge-1"].summary()
    assert not any(edge1.kube_proxy_surfaces.values())
    assert edge1.proxy_mode is None and edge1.healthz_healthy is None
    assert all(states["edge-2"].summary().kube_proxy_surfaces.values())


def test_b2_edge1_still_has_stale_rules_while_down() -> None:
    edge1 = read_bundle(BUNDLES / "B2-stale-endpoint").node_state("edge-1")
    assert "10.244.53.12" in (edge1.text("iptables-save.txt") or "")
    assert "10.244.53.19" not in (edge1.text("iptables-save.txt") or "")


def test_b3_backend_split_seen_on_edge1_only() -> None:
    states = read_bundle(BUNDLES / "B3-backend-split").node_states()
    edge1 = states["edge-1"].summary()
    assert edge1.backends_with_kube_proxy_rules == ("legacy", "nf_tables")
    assert edge1.legacy_tables_loaded == ("filter", "mangle", "nat")
    assert states["edge-2"].summary().backends_with_kube_chains == ()
    for scenario in ("B1-healthy", "B2-stale-endpoint", "B4-ipvs-unavailable"):
        for state in read_bundle(BUNDLES / scenario).node_states().values():
            assert "legacy" not in state.summary().backends_with_kube_chains


def test_b4_edge1_has_no_service_rules_at_all() -> None:
    edge1 = read_bundle(BUNDLES / "B4-ipvs-unavailable").node_state("edge-1").summary()
    assert edge1.backends_with_kube_chains == () and edge1.nft_tables == ()


def test_absent_and_empty_are_different() -> None:
    edge2 = read_bundle(BUNDLES / "B1-healthy").node_state("edge-2")
    assert edge2.fact("iptables-legacy-save.txt").content == ""  # ran, printed nothing
    assert not edge2.fact("proc-net-ip_vs.txt").present  # absent on the node


def test_unknown_node_is_a_clear_input_error() -> None:
    with pytest.raises(InputError, match="edge-9.*nodes: edge-1, edge-2"):
        read_bundle(BUNDLES / "B1-healthy").node_state("edge-9")


def test_not_a_bundle(tmp_path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="not a kpdoctor bundle"):
        read_bundle(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_bundle(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="tar"):
        read_bundle(tmp_path / "junk.tar.gz")


def _state(name: str, **contents: str | None) -> NodeState:
    facts = {k.replace("_", "-") + ".txt": Fact(k.replace("_", "-") + ".txt", v, "cmd", 0 if v is not None else 127,
                                                  "", 0.5, "" if v is not None else "not installed")
             for k, v in contents.items()}  # fmt: skip
    return NodeState(name=name, transport="local", facts=facts, collected_at="2026-01-01T00:00:00+00:00")


def test_truncated_tar_gz_gives_partial_result_and_clear_error(tmp_path) -> None:
    big = "".join(f"-A KUBE-SVC-{i:06d} -j KUBE-SEP-{i:06d}\n" for i in range(60000))
    nodes = {"a-node": _state("a-node", uname_r="6.1\n"), "z-node": _state("z-node", iptables_save=big)}
    path = write_bundle(tmp_path / "b.tar.gz", nodes=nodes)
    data = path.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    bundle = read_bundle(cut)
    assert "truncated" in bundle.error
    assert bundle.node_state("a-node").reachable  # written before the cut: complete
    z = bundle.node_state("z-node")
    assert not z.reachable and "truncated" in z.error
    assert not z.fact("iptables-save.txt").present


def test_tar_member_paths_cannot_escape(tmp_path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("../evil.txt", b"x"), ("nodes/n1/uname-r.txt", b"6.1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "b.tgz").write_bytes(buf.getvalue())
    bundle = read_bundle(tmp_path / "b.tgz")
    assert set(bundle.files) == {"nodes/n1/uname-r.txt"}


def test_manifest_keeps_command_metadata_and_absent_facts(tmp_path) -> None:
    nodes = {"n1": _state("n1", uname_r="6.1\n", ipvsadm=None)}
    write_bundle(tmp_path / "b", nodes=nodes)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["format"] == "kpdoctor-bundle/v1"
    assert manifest["nodes"]["n1"]["files"]["ipvsadm.txt"]["error"] == "not installed"
    back = read_bundle(tmp_path / "b").node_state("n1")
    assert dict(back.facts) == dict(nodes["n1"].facts)
    assert back.collected_at == "2026-01-01T00:00:00+00:00"


def test_refuses_to_overwrite(tmp_path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    with pytest.raises(InputError, match="exists"):
        write_bundle(tmp_path / "out", nodes={})
