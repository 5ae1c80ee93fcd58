"""The check registry: discovery of built-ins and entry-point plugins, metadata validation, selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kpdoctor.checks_api import Check
from kpdoctor.errors import InputError
from kpdoctor.findings import Severity
from kpdoctor.registry import build_registry, discover, entry_point_checks, validate_check
from tests.support.checks import hand_made_check
from tests.support.scan import fake_distribution, plugin_module

REPO = Path(__file__).resolve().parents[2]


IpvsCheck = hand_made_check("T-IPVS", scope="node", severity=Severity.ERROR, title="ipvs thing",
                            tags=("ipvs", "kernel"))
ClusterCheck = hand_made_check("T-CLUSTER", title="cluster thing", tags=("seed",))
NftCheck = hand_made_check("T-NFT", scope="node", severity=Severity.INFO, title="nft thing", tags=("nftables",))


def _reg():
    return build_registry([(IpvsCheck(), "test"), (ClusterCheck(), "test"), (NftCheck(), "test")])


def test_select_by_id_tag_scope_and_skip() -> None:
    reg = _reg()
    assert [c.id for c in reg.select()] == ["T-CLUSTER", "T-IPVS", "T-NFT"]
    assert [c.id for c in reg.select("t-nft,T-IPVS")] == ["T-IPVS", "T-NFT"]  # registry order, case-insensitive
    assert [c.id for c in reg.select("tag:ipvs")] == ["T-IPVS"]
    assert [c.id for c in reg.select("scope:node", skip="tag:nftables")] == ["T-IPVS"]
    assert [c.id for c in reg.select(skip="T-CLUSTER")] == ["T-IPVS", "T-NFT"]


def test_unknown_id_or_tag_is_input_error_listing_known() -> None:
    reg = _reg()
    with pytest.raises(InputError) as err:
        reg.select("T-NOPE")
    assert "T-NOPE" in str(err.value) and "T-CLUSTER, T-IPVS, T-NFT" in str(err.value)
    with pytest.raises(InputError, match="no check has tag 'cilium'"):
        reg.select("tag:cilium")
    with pytest.raises(InputError, match="--skip"):
        reg.select(skip="T-X")


def test_duplicate_builtin_ids_and_bad_metadata_fail_loudly() -> None:
    with pytest.raises(RuntimeError, match="duplicate check id"):
        build_registry([(IpvsCheck(), "a"), (IpvsCheck(), "b")])

    BadScope = hand_made_check("T-BAD", scope="pod", severity=Severity.INFO, title="x")  # type: ignore[arg-type]

    class NoRun(Check):
        id = "T bad id"
        title = ""
        scope = "node"
        severity = 3  # type: ignore[assignment]

    assert any("scope" in p for p in validate_check(BadScope()))
    problems = validate_check(NoRun())
    assert any("stable identifier" in p for p in problems)
    assert any("title" in p for p in problems)
    assert any("severity" in p for p in problems)
    assert any("run(ctx)" in p for p in problems)
    with pytest.raises(RuntimeError, match="invalid built-in"):
        build_registry([(BadScope(), "x")])


def test_invalid_or_duplicate_plugin_is_a_load_error_not_a_crash() -> None:
    class Dup(IpvsCheck):
        pass

    reg = build_registry([(IpvsCheck(), "builtin")], [(Dup(), "entry-point:dup"), (object(), "entry-point:junk")])
    assert reg.ids() == ["T-IPVS"]
    messages = [e.message for e in reg.load_errors]
    assert any("already registered" in m for m in messages)
    assert any("not a kpdoctor.checks_api.Check" in m for m in messages)


def test_builtin_checks_are_valid_unique_and_documented() -> None:
    """Every module in checks/ exports a valid CHECK with a docs page in docs/checks/."""
    reg = discover(entry_points=False, require_docs=True)
    ids = reg.ids()
    assert len(ids) == len({i.lower() for i in ids})
    for check in reg.checks:
        assert reg.origins[check.id].startswith("builtin:checks.")
        assert (REPO / "docs" / "checks" / (check.docs_page or f"{check.id}.md")).is_file()


PLUGIN = plugin_module("PluginCheck", "ACME-PLUGIN", "A third-party check", tags=("acme",),
                       run='yield self.finding(ctx, f"Cluster {len(ctx.cluster.services)} services", "plugin ran")')


def test_entry_point_plugin_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = fake_distribution(tmp_path, "kpd_fake_plugin", PLUGIN,
                              "acme = kpd_fake_plugin:PluginCheck\nbroken = kpd_fake_plugin:Missing")
    monkeypatch.syspath_prepend(str(site))
    loaded, errors = entry_point_checks()
    assert [c.id for c, _ in loaded] == ["ACME-PLUGIN"]
    assert "kpd-fake-pack" in loaded[0][1]
    assert len(errors) == 1 and errors[0].name == "broken" and "failed to load" in errors[0].message


def test_cli_lists_plugin_and_shows_builtin(tmp_path: Path) -> None:
    site = fake_distribution(tmp_path, "kpd_fake_plugin", PLUGIN, "acme = kpd_fake_plugin:PluginCheck")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "list", "-o", "json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ACME-PLUGIN" in out.stdout
    shown = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "show", "acme-plugin"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "ACME-PLUGIN: A third-party check" in shown.stdout and "scope:     cluster" in shown.stdout
    bad = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "show", "NOPE"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown check id 'NOPE'" in bad.stderr


def test_checks_show_prints_docs_page_of_a_builtin() -> None:
    reg = discover(entry_points=False)
    assert reg.checks, "no built-in checks discovered"
    check = reg.checks[0]
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "checks", "show", check.id],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    page = (REPO / "docs" / "checks" / (check.docs_page or f"{check.id}.md")).read_text()
    assert page.strip().splitlines()[0] in out.stdout
