"""KP-STALE-ENDPOINTS on a dump that cannot be what the kernel holds: one finding saying so, no stale or
missing-endpoint verdict. The dumps are B1-healthy's real edge-1 dump, changed the way real ones break:
the DNAT address printed by an iptables older than the kernel's DNAT revision (as in kubernetes#114537,
tests/fixtures/realworld/dumps/k8s-114537-dnat-too-old) and a dump cut before a KUBE-SEP chain."""

from __future__ import annotations

import re

import kpdoctor.checks.stale_endpoints as stale
from kpdoctor.dataplane.reliability import TOO_OLD
from kpdoctor.findings import Severity
from tests.support.checks import describe, load_bundle, run_check, with_facts

SEP = "KUBE-SEP-2NXD6PWWNKTRFDHC"


def _edge1() -> tuple[object, dict[str, object], str]:
    cluster, nodes = load_bundle("B1-healthy")
    text = nodes["edge-1"].text("iptables-save.txt")
    assert text is not None and SEP in text
    return cluster, dict(nodes), text


def test_dnat_without_address_is_userspace_too_old_not_stale() -> None:
    cluster, nodes, text = _edge1()
    broken = text.replace("-j DNAT --to-destination 10.244.50.41:53",
                          "-j DNAT --to-destination :0 --persistent --to-destination 0.0.0.0:0")
    assert broken != text
    nodes["edge-1"] = with_facts(nodes["edge-1"], **{"iptables-save.txt": broken})  # type: ignore[arg-type]
    found = run_check(stale.CHECK, cluster, nodes, node="edge-1")  # type: ignore[arg-type]
    assert [(f.severity, f.subject) for f in found] == [(Severity.WARNING, "Node edge-1")], describe(found)
    assert TOO_OLD in found[0].message
    assert any("0.0.0.0:0" in e for e in found[0].evidence)


def test_dump_cut_before_a_chain_is_not_evaluated() -> None:
    cluster, nodes, text = _edge1()
    cut = "\n".join(line for line in text.split("\n") if not re.match(rf"^(:|-A ){SEP}\b", line))
    nodes["edge-1"] = with_facts(nodes["edge-1"], **{"iptables-save.txt": cut})  # type: ignore[arg-type]
    found = run_check(stale.CHECK, cluster, nodes, node="edge-1")  # type: ignore[arg-type]
    assert [(f.severity, f.not_evaluated) for f in found] == [(Severity.INFO, True)], describe(found)
    assert "unreliable" in found[0].message and SEP in " ".join(found[0].evidence)


def test_healthy_dump_is_untouched() -> None:
    cluster, nodes, _ = _edge1()
    assert run_check(stale.CHECK, cluster, nodes, node="edge-1") == []  # type: ignore[arg-type]


def test_older_layout_is_noted_beside_the_differences() -> None:
    """B1's real edge-1 dump with one eTP=Local chain renamed the way kube-proxy before v1.24 named it
    (KUBE-EXT-* -> KUBE-XLB-*) and a stale endpoint planted: the stale endpoint is still found, and the
    version skew is said once at info level."""
    cluster, nodes, text = _edge1()
    ext = sorted(set(re.findall(r"KUBE-EXT-[A-Z0-9]{16}", text)))
    assert ext
    older = text.replace(ext[0], "KUBE-XLB-" + ext[0][len("KUBE-EXT-"):])
    older = older.replace("--to-destination 10.244.50.41:53", "--to-destination 10.244.50.99:53")
    nodes["edge-1"] = with_facts(nodes["edge-1"], **{"iptables-save.txt": older})  # type: ignore[arg-type]
    found = run_check(stale.CHECK, cluster, nodes, node="edge-1")  # type: ignore[arg-type]
    notes = [f for f in found if f.subject == "Node edge-1"]
    assert [(f.severity, "KUBE-XLB" in " ".join(f.evidence)) for f in notes] == [(Severity.INFO, True)], describe(found)
    assert any(f.severity == Severity.ERROR and "10.244.50.99:53" in f.message for f in found), describe(found)
