"""The mode-switch baseline file: written from a real capture, read back equal; hostile files refused (exit 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kpdoctor.errors import InputError
from kpdoctor.gate import mode_baseline
from kpdoctor.gate.mode_baseline import make_baseline, read_baseline, to_json, write_baseline
from kpdoctor.gate.sources import from_bundle

ROOT = Path(__file__).resolve().parents[2]
PRE = ROOT / "tests" / "fixtures" / "mode-switch" / "1-iptables"  # real kube-proxy v1.36.3, lab (README)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, mode_baseline.Baseline]:
    src = from_bundle(str(PRE))
    base = make_baseline(src.cluster, src.nodes, "nftables", "bundle 1-iptables")
    path = tmp_path_factory.mktemp("b") / "baseline.json"
    write_baseline(str(path), base)
    return path, base


def test_round_trip_of_a_real_capture(written: tuple[Path, mode_baseline.Baseline]) -> None:
    path, base = written
    back = read_baseline(str(path))
    assert back.target == "nftables" and set(back.nodes) == {"kpk-71f1d6-n0", "kpk-71f1d6-n1"}
    for name, nb in base.nodes.items():
        assert nb.mode == "iptables" == back.nodes[name].mode
        assert back.nodes[name].views == nb.views
        assert len(nb.views["IPv4"].frontends) >= 4  # web (ClusterIP, NodePort, localhost NodePort), api, kubernetes
    assert to_json(back) == path.read_text()


def _write(tmp: Path, doc: object) -> str:
    path = tmp / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _edited(path: Path, edit: str) -> dict:  # type: ignore[type-arg]
    doc = json.loads(path.read_text())
    node = doc["nodes"]["kpk-71f1d6-n0"]
    fe = node["views"]["IPv4"][0]
    if edit == "port":
        fe["port"] = 70000
    elif edit == "endpoints":
        fe["endpoints"] = "10.0.0.1:80"
    elif edit == "mode":
        node["mode"] = "userspace"
    elif edit == "family":
        node["views"]["IPv5"] = []
    elif edit == "format":
        doc["format"] = "something-else"
    elif edit == "bool-port":
        fe["port"] = True
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize("edit", ["port", "endpoints", "mode", "family", "format", "bool-port"])
def test_invalid_fields_are_refused_naming_the_file(edit: str, tmp_path: Path,
                                                    written: tuple[Path, mode_baseline.Baseline]) -> None:
    bad = _write(tmp_path, _edited(written[0], edit))
    with pytest.raises(InputError) as exc:
        read_baseline(bad)
    assert str(exc.value).startswith(bad)


def test_not_json_deep_json_and_symlink(tmp_path: Path, written: tuple[Path, mode_baseline.Baseline]) -> None:
    with pytest.raises(InputError, match="invalid JSON"):
        read_baseline(_write(tmp_path, "{not json"))
    with pytest.raises(InputError, match="nested deeper"):
        read_baseline(_write(tmp_path, "[" * 5000 + "]" * 5000))
    link = tmp_path / "link.json"
    os.symlink(written[0], link)
    with pytest.raises(InputError, match="not a regular file"):
        read_baseline(str(link))


def test_size_and_count_bounds(tmp_path: Path, written: tuple[Path, mode_baseline.Baseline],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mode_baseline, "MAX_FRONTENDS", 2)
    with pytest.raises(InputError, match="at most 2 frontends"):
        read_baseline(str(written[0]))
    monkeypatch.setattr(mode_baseline, "MAX_BYTES", 1000)
    with pytest.raises(InputError, match="larger than"):
        read_baseline(str(written[0]))
