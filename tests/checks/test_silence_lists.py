"""Silences per Service on KP-NODEPORT-FIREWALL's one eTP=Local note per node (kpdoctor.silence_lists), on the
real B1-healthy bundle (storefront/gateway: eTP=Local, its one endpoint on edge-1, so it drops on edge-2) with
generated copies of that Service (tests/support/checks.with_service_copies: a hand-made shape from the real
one) so that edge-2's note lists several Services; through the engine, through the in-pod merge, and through
`kpdoctor scan --bundle` with a `.kpdoctor.yaml`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kpdoctor.engine import run_checks
from kpdoctor.findings import Finding
from kpdoctor.noderesult import decode, encode, merge
from kpdoctor.registry import discover
from kpdoctor.silences import SilenceSet, parse_silences
from tests.support.checks import BUNDLES, load_bundle, with_service_copies
from tests.support.klab import REPO

CHECK = "KP-NODEPORT-FIREWALL"
COPIES = 3  # edge-2's note lists storefront/gateway and its 3 copies


def _silences(*services: str, namespace: str = "") -> SilenceSet:
    entries = [f"  - check: {CHECK}\n    service: {s}\n    reason: {s.split('/')[1]} is retired (T-{i})\n"
               for i, s in enumerate(services)]  # fmt: skip
    if namespace:
        entries.append(f"  - check: {CHECK}\n    namespace: {namespace}\n    reason: team {namespace} accepts it\n")
    return parse_silences("version: 1\nsilences:\n" + "".join(entries), "k.yaml")


def _note(findings: list[Finding]) -> Finding:
    [note] = [f for f in findings if f.check_id == CHECK and f.scope == "edge-2"]
    return note


def _scan(silences: SilenceSet | None) -> list[Finding]:
    cluster, nodes = load_bundle("B1-healthy")
    many = with_service_copies(cluster, "storefront/gateway", COPIES)
    checks = discover(entry_points=False).select(CHECK, None)
    return run_checks(checks, many, nodes=list(nodes.values()), silences=silences).findings


def test_without_silences_the_note_lists_every_service() -> None:
    note = _note(_scan(None))
    assert note.subject == "Node edge-2" and not note.silenced_reason
    assert len(json.loads(dict(note.labels)["services"])) == COPIES + 1


def test_a_silence_for_one_service_removes_it_from_the_note() -> None:
    silences = _silences("storefront/gateway-copy-1")
    before = _note(_scan(None))
    note = _note(_scan(silences))
    assert not note.silenced_reason  # the other three still drop, unsilenced
    labels = dict(note.labels)
    assert "storefront/gateway-copy-1:http/TCP" not in json.loads(labels["services"])
    assert len(json.loads(labels["services"])) == COPIES
    assert json.loads(labels["silenced_services"]) == ["storefront/gateway-copy-1:http/TCP"]
    assert note.evidence[:-1] == before.evidence and note.message == before.message
    assert note.evidence[-1] == ("silenced: 1 of the 4 listed Services (storefront/gateway-copy-1:http/TCP): "
                                 "gateway-copy-1 is retired (T-0) (k.yaml:3)")
    assert [s.used for s in silences.silences] == [1]


def test_the_note_is_silenced_when_every_service_it_lists_is() -> None:
    names = ["storefront/gateway", *(f"storefront/gateway-copy-{i}" for i in range(COPIES))]
    silences = _silences(*names[:2], namespace="storefront")  # two by name, the rest by their namespace
    note = _note(_scan(silences))
    assert note.silenced_reason == ("gateway is retired (T-0) (k.yaml:3); gateway-copy-0 is retired (T-1) (k.yaml:6); "
                                    "team storefront accepts it (k.yaml:9)")
    assert len(json.loads(dict(note.labels)["services"])) == COPIES + 1  # the report still shows what was silenced
    assert [s.used for s in silences.silences] == [1, 1, 1]


def test_a_glob_for_every_listed_service_silences_the_note() -> None:
    note = _note(_scan(_silences("storefront/gateway*")))
    assert note.silenced_reason == "gateway* is retired (T-0) (k.yaml:3)"


def test_a_silence_for_another_check_or_node_leaves_the_note_alone() -> None:
    other = parse_silences("silences:\n  - check: KP-STALE-ENDPOINTS\n    service: storefront/gateway\n    reason: r\n"
                           f"  - check: {CHECK}\n    node: edge-1\n    service: storefront/gateway*\n    reason: r\n",
                           "k.yaml")  # fmt: skip
    assert _note(_scan(other)) == _note(_scan(None))
    assert [s.used for s in other.silences] == [0, 0]


def test_the_in_pod_merge_applies_them_the_same_way() -> None:
    """scan --analyze-in-pod: node findings arrive in node results and are silenced centrally by merge()."""
    cluster, nodes = load_bundle("B1-healthy")
    many = with_service_copies(cluster, "storefront/gateway", COPIES)
    checks = discover(entry_points=False).select(CHECK, None)
    central = run_checks([], many, nodes=[])
    node_side = run_checks(checks, many, nodes=[nodes["edge-2"]])  # what `kpdoctor node --result-json` runs
    result = decode(json.loads(json.dumps(encode(node_side, "edge-2"))), "edge-2")
    merged = merge(checks, central, [result], silences=_silences("storefront/gateway-copy-1"))
    assert _note(merged.findings) == _note(_scan(_silences("storefront/gateway-copy-1")))


@pytest.mark.parametrize("label", ['["storefront/a:http/TCP", 3]', "not json", '{"a": 1}', "[[[[[[]]]]]]"])
def test_a_label_that_is_not_a_list_of_names_is_not_split(label: str) -> None:
    finding = Finding(CHECK, _note(_scan(None)).severity, "edge-2", "Node edge-2", "m", labels=(("services", label),))
    assert _silences("storefront/a").apply([finding]) == [finding]


def test_the_cli_on_the_bundle_with_a_kpdoctor_yaml(tmp_path: Path) -> None:
    """The same on disk: B1-healthy with the copies written into its services.json / endpointslices.json."""
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLES / "B1-healthy" / "bundle", bundle)
    for kind, key in (("services", "metadata"), ("endpointslices", "metadata")):
        path = bundle / "cluster" / f"{kind}.json"
        doc = json.loads(path.read_text())
        base = [o for o in doc["items"] if (o[key]["name"] == "gateway" if kind == "services" else
                o[key].get("labels", {}).get("kubernetes.io/service-name") == "gateway")]  # fmt: skip
        for i in range(COPIES):
            for obj in base:
                copy = json.loads(json.dumps(obj))
                copy["metadata"]["name"] = f"gateway-copy-{i}" + ("" if kind == "services" else f"-{obj['metadata']['name']}")
                if kind == "services":
                    copy["spec"]["clusterIP"] = copy["spec"]["clusterIPs"][0] = f"10.96.250.{i + 1}"
                    copy["spec"]["healthCheckNodePort"] = 32000 + i
                    copy["spec"].pop("externalIPs", None)
                    copy.get("status", {}).pop("loadBalancer", None)
                    for j, port in enumerate(copy["spec"]["ports"]):
                        port["nodePort"] = 31500 + 10 * i + j
                else:
                    copy["metadata"]["labels"]["kubernetes.io/service-name"] = f"gateway-copy-{i}"
                doc["items"].append(copy)
        path.write_text(json.dumps(doc))
    (tmp_path / ".kpdoctor.yaml").write_text(f"version: 1\nsilences:\n  - check: {CHECK}\n    service: "
                                             "storefront/gateway-copy-1\n    reason: retired next week\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(bundle), "-o", "json",
                           "--checks", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    occ = [o for c in report["checks"] if c["id"] == CHECK for g in c["groups"] for o in g["occurrences"]
           if o["subject"] == "Node edge-2"]  # fmt: skip
    assert len(occ) == 1, occ
    assert json.loads(occ[0]["labels"]["silenced_services"]) == ["storefront/gateway-copy-1:http/TCP"]
    assert len(json.loads(occ[0]["labels"]["services"])) == COPIES
    assert occ[0]["evidence"][-1].endswith(f"retired next week ({tmp_path / '.kpdoctor.yaml'}:3)")
    assert [s["used"] for s in report["silences"]] == [1]
