"""kpdoctor.commands.why_run: `kpdoctor why` end to end in-process (the sources loaded through the scanner,
the checks run once, then kpdoctor.why.run.build), on the real B1/B2 captures."""

from __future__ import annotations

import shutil
from pathlib import Path

from kpdoctor.commands.why_run import load, run_why
from kpdoctor.scanner import ScanRequest
from kpdoctor.why.target import parse_from, parse_target

BUNDLES = Path(__file__).parent / "fixtures" / "bundles"


def test_bundle_with_cluster_has_the_api() -> None:
    cluster, nodes, label, has_api = load(ScanRequest(bundle=str(BUNDLES / "B2-stale-endpoint")))
    assert has_api and list(nodes.names()) == ["edge-1", "edge-2"] and label.startswith("bundle ")
    assert cluster.service_by_key.get("payments/ledger") is not None


def test_nodes_only_bundle_has_no_api(tmp_path: Path) -> None:
    shutil.copytree(BUNDLES / "B2-stale-endpoint" / "bundle" / "nodes", tmp_path / "nodes")
    cluster, nodes, label, has_api = load(ScanRequest(bundle=str(tmp_path)))
    assert not has_api and label == f"bundle {tmp_path}" and not cluster.services
    assert sorted(nodes.names()) == ["edge-1", "edge-2"]


def test_run_why_names_the_stale_node() -> None:
    report = run_why(ScanRequest(bundle=str(BUNDLES / "B2-stale-endpoint")), parse_target("svc/payments/ledger"),
                     parse_from(None))
    assert report.service_found is True
    stale = [nb.node for nb in report.nodes if nb.status == "stale"]
    assert stale == ["edge-1"], [(nb.node, nb.status) for nb in report.nodes]
