"""The core cluster loader and kube-proxy config on bad input: one clear error naming file:line.

These are the errors `kpdoctor proxier render` surfaces (see tests/proxier/test_cli_proxier.py for the
same cases through the real console script).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kpdoctor.cluster.config import load_config_file, parse_config_text
from kpdoctor.cluster.snapshot import load_snapshot
from kpdoctor.commands.proxier import build_proxier_input, check_slices_have_services
from kpdoctor.errors import InputError
from kpdoctor.proxier.context import build_input
from tests.support.iptables import GOLDEN

V1_CLUSTER = GOLDEN / "V1-basic-clusterip" / "cluster"


def _copy(tmp_path: Path) -> Path:
    dest = tmp_path / "snap"
    shutil.copytree(V1_CLUSTER, dest)
    return dest


def test_golden_snapshot_loads() -> None:
    cluster = load_snapshot(V1_CLUSTER)
    assert len(cluster.services) == 10
    assert {n.name for n in cluster.nodes} == {"kpnode1", "kpnode2", "kpnode3", "kpworker-a", "kpworker-b"}
    found = cluster.proxy_config_for("kpnode1")
    assert found is not None and found.config.cluster_cidr == "10.244.0.0/16"
    check_slices_have_services(cluster)  # every slice has its Service


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    (snap / "services.json").write_text('{\n  "kind": "List",\n  "items": [\n    {"kind": "Service",,}\n  ]\n}\n')
    with pytest.raises(InputError) as info:
        load_snapshot(snap)
    assert info.value.where == f"{snap / 'services.json'}:4"
    assert "invalid JSON" in str(info.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    (snap / "extra.yaml").write_text("kind: Service\nmetadata:\n  name: x\n  labels: [unclosed\n")
    with pytest.raises(InputError) as info:
        load_snapshot(snap)
    assert info.value.where is not None and info.value.where.startswith(f"{snap / 'extra.yaml'}:")
    assert "invalid YAML" in str(info.value)


def test_malformed_kube_proxy_config(tmp_path: Path) -> None:
    bad = tmp_path / "kp.yaml"
    bad.write_text("kind: KubeProxyConfiguration\nmode: iptables\n  clusterCIDR: [\n")
    with pytest.raises(InputError) as info:
        load_config_file(str(bad))
    assert info.value.where is not None and info.value.where.startswith(f"{bad}:")
    with pytest.raises(InputError):
        parse_config_text("kind: Pod\n", source="cm")


def test_no_node_of_that_name() -> None:
    cluster = load_snapshot(V1_CLUSTER)
    with pytest.raises(InputError) as info:
        build_input(cluster, "kpnode9")
    assert "no Node named 'kpnode9'" in str(info.value)
    assert "kpnode1" in str(info.value)  # the known nodes are listed
    assert info.value.where == str(V1_CLUSTER)


def test_endpointslice_for_missing_service_names_the_slice_file(tmp_path: Path) -> None:
    snap = _copy(tmp_path)
    services = json.loads((snap / "services.json").read_text())
    services["items"] = [s for s in services["items"] if s["metadata"]["name"] != "frontend"]
    (snap / "services.json").write_text(json.dumps(services))
    with pytest.raises(InputError) as info:
        build_proxier_input(str(snap), "kpnode1")
    assert "Service shop/frontend, which is not in the snapshot" in str(info.value)
    assert info.value.where == str(snap / "endpointslices.json")


def test_snapshot_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_snapshot(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        load_snapshot(tmp_path / "empty")


def test_bad_flags_of_the_proxier_input() -> None:
    with pytest.raises(InputError, match="--family"):
        build_proxier_input(str(V1_CLUSTER), "kpnode1", family="IPv5")
    with pytest.raises(InputError, match="--kube-proxy-version"):
        build_proxier_input(str(V1_CLUSTER), "kpnode1", version="latest")
    with pytest.raises(InputError, match="--mode"):
        build_proxier_input(str(V1_CLUSTER), "kpnode1", mode="userspace")
    assert build_proxier_input(str(V1_CLUSTER), "kpnode1", version="v1.33.2").version == (1, 33)


def test_config_with_unknown_fields_is_refused_like_kube_proxy_does(tmp_path: Path) -> None:
    """kube-proxy decodes its config strictly; a file that is not a KubeProxyConfiguration must not render as defaults."""
    bad = tmp_path / "random.json"
    bad.write_text('{"foo": 1, "mode": "iptables"}')
    with pytest.raises(InputError, match=r"random\.json: unknown KubeProxyConfiguration field\(s\) foo"):
        load_config_file(str(bad))
    # every real config of the golden data (stored, as run, and /configz) still loads
    for path in sorted(GOLDEN.glob("*/kube-proxy-config.yaml")) + sorted(GOLDEN.glob("*/*/configz.json")):
        assert load_config_file(str(path)).source == str(path)
