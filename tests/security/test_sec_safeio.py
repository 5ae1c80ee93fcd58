"""kpdoctor/safeio.py, kpdoctor/cluster/bundle_scope.py and kpdoctor/cluster/kubeconfig.py on their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpdoctor.cluster.bundle_scope import needed_configmaps
from kpdoctor.cluster.kubeconfig import check_shape
from kpdoctor.errors import InputError
from kpdoctor.safeio import (
    Limits,
    check_depth,
    load_json,
    load_yaml,
    load_yaml_all,
    read_regular,
    regular_files,
)


def test_read_regular_reads_only_regular_files_within_the_limit(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_bytes(b"x" * 10)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_regular(real) == b"x" * 10
    assert read_regular(link) is None and read_regular(fifo) is None and read_regular(tmp_path) is None
    with pytest.raises(InputError, match="10 bytes, above the 9-byte limit"):
        read_regular(real, lim=Limits(max_file_bytes=9))
    with pytest.raises(InputError, match="cannot read"):
        read_regular(tmp_path / "missing")


def test_regular_files_never_descends_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "a.txt").write_text("a")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "secret.txt").write_text("s")
    (tmp_path / "in" / "escape").symlink_to(tmp_path / "out")
    (tmp_path / "in" / "file-link").symlink_to(tmp_path / "out" / "secret.txt")
    assert [p.relative_to(tmp_path / "in").as_posix() for p in regular_files(tmp_path / "in")] == ["sub/a.txt"]


def test_json_limits() -> None:
    assert load_json('{"a": [1, 2.5]}', "f") == {"a": [1, 2.5]}
    for text, match in (("[1e999]", "out of range"), ("[NaN]", "not a JSON number"), ("[Infinity]", "not a JSON"),
                        ("[" * 101 + "]" * 101, "deeper than 100"), ("[" * 50_000, "deeper than 100"),
                        ('{"a": }', "invalid JSON")):
        with pytest.raises(InputError, match=match):
            load_json(text, "f")
    check_depth([[[]]], "f", Limits(max_depth=3))
    with pytest.raises(InputError):
        check_depth([[[[]]]], "f", Limits(max_depth=3))


def test_yaml_limits() -> None:
    assert load_yaml_all("a: 1\n---\n---\nb: [x]\n", "f") == [{"a": 1}, {"b": ["x"]}]
    assert load_yaml("a: &x [1]\nb: *x\n", "f") == {"a": [1], "b": [1]}  # a few aliases are fine
    with pytest.raises(InputError, match="more than 2 YAML aliases"):
        load_yaml("a: &x 1\nb: [*x, *x, *x]\n", "f", Limits(max_yaml_aliases=2))
    with pytest.raises(InputError, match=r"f:\d+: invalid YAML: nested deeper than 5"):
        load_yaml("a: [[[[[[1]]]]]]\n", "f", Limits(max_depth=5))
    with pytest.raises(InputError, match="recursive YAML alias"):
        load_yaml("a: &x [*x]\n", "f")
    with pytest.raises(InputError, match="invalid YAML"):
        load_yaml("a: [\n", "f")


def test_only_configmaps_a_check_reads_are_kept() -> None:
    def cm(name: str) -> dict:
        return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "kube-system"}}

    ds = {"kind": "DaemonSet", "metadata": {"name": "kube-proxy-pool-b", "labels": {"k8s-app": "kube-proxy"}},
          "spec": {"template": {"spec": {"volumes": [{"name": "c", "configMap": {"name": "proxy-pool-b"}}]}}}}
    other = {"kind": "DaemonSet", "metadata": {"name": "cloud-node-manager"},
             "spec": {"template": {"spec": {"volumes": [{"name": "c", "configMap": {"name": "azure-cloud"}}]}}}}
    kept = needed_configmaps([cm("kube-proxy"), cm("cilium-config"), cm("proxy-pool-b"), cm("azure-cloud"),
                              cm("coredns")], [ds, other])
    assert [c["metadata"]["name"] for c in kept] == ["kube-proxy", "cilium-config", "proxy-pool-b"]


@pytest.mark.parametrize("doc,match", [
    ([1], "must be a mapping"), ({"clusters": 5}, "clusters must be a list"),
    ({"users": [{"user": {}}]}, r"users\[0\] must be a mapping with a name"),
    ({"contexts": [{"name": "x", "context": 7}]}, r"contexts\[0\].context must be a mapping"),
    ({"users": [{"name": "u", "user": {"token": 5}}]}, r"users\[0\].user.token must be a string"),
    ({"users": [{"name": "u", "user": {"exec": "x"}}]}, "exec must be a mapping"),
    ({"current-context": ["x"]}, "current-context must be a string"),
])
def test_malformed_kubeconfig_shapes(doc: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        check_shape(doc, "kc")
