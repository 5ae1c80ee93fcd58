"""`.kpdoctor.yaml` silences: matching by node/namespace/Service, mandatory reasons, file:line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kpdoctor.errors import InputError
from kpdoctor.findings import Finding, Severity
from kpdoctor.silences import load_silences, parse_silences, subject_parts
from tests.support.errors import input_error_at

B1 = Path(__file__).resolve().parents[1] / "fixtures" / "bundles" / "B1-healthy" / "bundle"


def _f(subject: str, scope: str = "cluster", check: str = "KP-X") -> Finding:
    return Finding(check_id=check, severity=Severity.ERROR, scope=scope, subject=subject, message="m")


GOOD = """\
version: 1
silences:
  - check: KP-X
    node: edge-*
    reason: edge pool is being drained (OPS-1)
  - check: kp-y
    service: payments/ledger
    reason: ledger is migrating
  - check: "*"
    namespace: legacy
    reason: legacy namespace is unsupported
  - check: KP-Z
    node: edge-9
    reason: long gone
    expires: 2001-01-01
"""


def test_matching_by_node_service_namespace_and_expiry() -> None:
    s = parse_silences(GOOD, "k.yaml")
    out = s.apply([
        _f("Node edge-1", scope="edge-1"),
        _f("Node core-1", scope="core-1"),
        _f("Service payments/ledger:80/TCP", check="KP-Y"),
        _f("Service payments/billing:443/TCP", check="KP-Y"),
        _f("Service legacy/old:80/TCP", check="ANY"),
        _f("Node edge-9", scope="edge-9", check="KP-Z"),
    ])
    assert [bool(f.silenced_reason) for f in out] == [True, False, True, False, True, False]
    assert out[0].silenced_reason == "edge pool is being drained (OPS-1) (k.yaml:3)"
    assert [x.used for x in s.silences] == [1, 1, 1, 0]
    assert s.silences[3].expired


def test_subject_parts_prefers_labels() -> None:
    f = Finding("A", Severity.INFO, "edge-1", "iptables rule", "m", labels=(("service", "ns1/svc"),))
    assert subject_parts(f) == ("edge-1", "ns1", "ns1/svc")
    assert subject_parts(_f("EndpointSlice shop/cart-abc")) == ("", "shop", "")


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("silences:\n  - check: KP-X\n    node: a\n", 2, "no 'reason'"),
        ("silences:\n  - check: KP-X\n    reason: r\n    nod: a\n", 4, "unknown key 'nod'"),
        ("silences:\n  - reason: r\n", 2, "no 'check'"),
        ("silences: [\n  {check: A, reason: r\n", 3, "invalid YAML"),
        ("silence:\n  - check: A\n", 1, "unknown key 'silence'"),
        ("silences:\n  - check: A\n    reason: r\n    service: nons\n", 4, "namespace/name"),
        ("silences:\n  - check: A\n    reason: r\n    expires: soon\n", 2, "not a date"),
        ("silences:\n  - just a string\n", 2, "must be a mapping"),
        ("version: 2\n", 1, "unsupported version"),
    ],
)
def test_malformed_file_names_file_and_line(text: str, line: int, needle: str) -> None:
    input_error_at(parse_silences, text, "/x/.kpdoctor.yaml", line, needle)


def test_unknown_check_in_silence_is_refused() -> None:
    s = parse_silences("silences:\n  - check: KP-TYPO\n    reason: r\n", "f.yaml")
    with pytest.raises(InputError) as err:
        s.validate_checks(["KP-A", "KP-B"])
    assert err.value.where == "f.yaml:2" and "KP-TYPO" in str(err.value)


def test_default_file_is_read_from_cwd(tmp_path: Path) -> None:
    assert load_silences(None, default_dir=tmp_path).silences == []
    (tmp_path / ".kpdoctor.yaml").write_text(GOOD)
    assert len(load_silences(None, default_dir=tmp_path).silences) == 4


def test_cli_malformed_kpdoctor_yaml_exits_2_naming_file_line(tmp_path: Path) -> None:
    (tmp_path / ".kpdoctor.yaml").write_text("silences:\n  - check: KP-X\n    node: edge-1\n")
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "scan", "--bundle", str(B1)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"kpdoctor: error: {tmp_path / '.kpdoctor.yaml'}:2: ")
    assert "reason" in lines[0]
