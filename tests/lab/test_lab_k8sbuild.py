"""The lab's Kubernetes build: module text derived from the real k8s.io/kubernetes go.mod, cache lookup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kpdoctor.lab import k8sbuild
from tests.conftest import FIXTURES

GOMOD = (FIXTURES / "k8s-build" / "kubernetes-v1.37.2.go.mod").read_text()


def test_staging_replacements_come_from_the_real_gomod() -> None:
    mods = dict(k8sbuild.staging_replacements(GOMOD, "v1.37.2"))
    assert mods["k8s.io/api"] == "v0.37.2"
    assert mods["k8s.io/client-go"] == "v0.37.2"
    assert mods["k8s.io/kube-proxy"] == "v0.37.2"
    # Every ./staging/src line of the go.mod, and nothing else.
    assert len(mods) == GOMOD.count("=> ./staging/src/k8s.io/")


def test_build_module_text_requires_kubernetes_and_replaces_staging() -> None:
    text = k8sbuild.build_module_text("v1.37.2", GOMOD)
    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "\tk8s.io/apimachinery => k8s.io/apimachinery v0.37.2" in text
    assert "./staging" not in text
    assert text.splitlines()[2].startswith("go 1.")


def test_gomod_without_staging_is_refused() -> None:
    with pytest.raises(k8sbuild.BuildError, match="staging"):
        k8sbuild.staging_replacements("module k8s.io/kubernetes\n\ngo 1.25\n", "v1.37.2")


@pytest.mark.parametrize(("given", "want"), [("1.34", "v1.34.4"), ("v1.36", "v1.36.3"), ("1.37", "v1.37.2"),
                                             ("v1.35.4", "v1.35.4")])
def test_resolve_release(given: str, want: str) -> None:
    assert k8sbuild.resolve_release(given) == want


@pytest.mark.parametrize("bad", ["1.2", "latest", "v1.36.3; rm -rf /", ""])
def test_resolve_release_rejects(bad: str) -> None:
    with pytest.raises(k8sbuild.BuildError):
        k8sbuild.resolve_release(bad)


def test_ldflags_stamp_the_version() -> None:
    flags = k8sbuild.ldflags("v1.35.4")
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=35" in flags


def test_cached_binary_is_not_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version whose binary is in the cache builds nothing: no Go toolchain is even looked for."""
    monkeypatch.setenv("KPDOCTOR_LAB_CACHE", str(tmp_path))
    binary = tmp_path / "bin" / "v1.36.3" / "kube-proxy"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    os.chmod(binary, 0o755)
    monkeypatch.setattr(k8sbuild, "find_go", lambda: pytest.fail("a cached build must not look for Go"))
    built = k8sbuild.build("1.36", ["kube-proxy"])
    assert [b.path for b in built] == [binary]


def test_unknown_component_is_refused() -> None:
    with pytest.raises(k8sbuild.BuildError, match="unknown component"):
        k8sbuild.build("1.37", ["kube-no-such-component"])
