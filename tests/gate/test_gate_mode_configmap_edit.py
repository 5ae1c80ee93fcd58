"""The rollout plan's non-interactive ConfigMap edit (kpdoctor.gate.mode_configmap_edit) on real configurations:
the kube-proxy ConfigMaps of tests/fixtures/mode-switch (the lab's real kube-proxy v1.36.3) and of the demo
bundle. The hostile texts below are hand-made (said at each). The command is run for real against the lab's
kube-apiserver in tests/lab/test_klab_mode_switch_live.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from kpdoctor.gate.mode_configmap_edit import patch_command, set_mode
from kpdoctor.gate.sources import from_bundle

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = [ROOT / "tests" / "fixtures" / "mode-switch" / "1-iptables", ROOT / "kpdoctor" / "demo" / "bundle"]


def real_config(bundle: Path) -> tuple[str, str, str, str]:
    cluster = from_bundle(str(bundle)).cluster
    node = sorted(p.node_name for p in cluster.kube_proxy_pods if p.node_name)[0]
    found = cluster.proxy_config_for(node)
    assert found is not None and found.configmap is not None and found.config_key
    cm = found.configmap
    return cm.namespace, cm.name, found.config_key, cm.data[found.config_key]


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
@pytest.mark.parametrize("target", ["nftables", "iptables", "ipvs"])
def test_real_configs_change_only_mode(bundle: Path, target: str) -> None:
    _ns, _name, _key, text = real_config(bundle)
    new = set_mode(text, target)
    assert new is not None
    assert yaml.safe_load(new) == {**yaml.safe_load(text), "mode": target}
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) <= 1  # one line edited (none when it already said the target)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_patch_command_is_one_shell_line_whose_body_is_the_new_text(bundle: Path) -> None:
    ns, name, key, text = real_config(bundle)
    line = patch_command(ns, name, key, text, "nftables", note="2. set mode")
    assert line is not None and "\n" not in line
    argv = shlex.split(line.split("   # ")[0])
    assert argv[:8] == ["kubectl", "-n", ns, "patch", "configmap", name, "--type", "merge"]
    assert argv[8] == "-p" and len(argv) == 10
    assert json.loads(argv[9]) == {"data": {key: set_mode(text, "nftables")}}


def test_a_missing_mode_line_is_added() -> None:
    text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"  # hand-made
    assert set_mode(text, "nftables") == text + "mode: nftables\n"


@pytest.mark.parametrize("text", [
    '{"kind": "KubeProxyConfiguration", "mode": "iptables"}',  # JSON: not one `mode:` line
    "mode: iptables\nmode: ipvs\n",  # two mode lines
    "mode: &m iptables\nother: *m\n",  # an anchor on the line: the edit would change another field
    "- not a mapping\n",
    "mode: [unclosed\n",
])  # fmt: skip
def test_texts_the_line_edit_cannot_do_exactly_are_refused(text: str) -> None:
    """Hand-made texts; None makes the plan fall back to `kubectl edit`."""
    assert set_mode(text, "nftables") is None
    assert patch_command("kube-system", "kube-proxy", "config.conf", text, "nftables") is None


def test_hostile_text_stays_data() -> None:
    """Hand-made: shell syntax, quotes and a bidi override in the configuration text."""
    text = "kind: KubeProxyConfiguration\nhostnameOverride: \"x'; rm -rf / #$(id)`id`\u202e\"\nmode: iptables\n"
    line = patch_command("kube-system", "kube-proxy", "config.conf", text, "nftables")
    assert line is not None and "\u202e" not in line and line.isascii()
    argv = shlex.split(line)
    assert len(argv) == 10 and json.loads(argv[9])["data"]["config.conf"] == set_mode(text, "nftables")


def test_a_hostile_configmap_name_is_not_offered() -> None:
    line = patch_command("kube-system", "kube-proxy;reboot", "config.conf", "mode: iptables\n", "nftables")
    assert line is not None and line.startswith("# command not offered")
