"""The checks, validated against the reference proxier on real netfilter (issue 5, "What it must show").

Property, over generated clusters (tests/proxier_lab_support.py: ClusterIP / NodePort / LoadBalancer with
ingress IPs and sometimes source ranges, externalIPs, eTP/iTP=Local, ClientIP affinity, ready /
serving-terminating / not-ready endpoints on 2-3 nodes, plus default/kubernetes and kube-proxy's DaemonSet,
pods and ConfigMap in the mode under test):

1. the reference proxier renders node n1's rules (`build_input` + `render`);
2. they are loaded into a fresh network namespace standing for n1 with the real iptables-nft-restore
   (iptables mode) or `nft -f` (nftables mode);
3. kpdoctor's own collector (`collect_node`, local transport) runs inside that namespace;
4. the whole check registry runs through the scan engine (`run_checks`) on n1: nothing at warning or
   above, and the dataplane read back from the collected dump means exactly what the proxier expected;
5. exactly one fault is planted in that live dataplane with real iptables / nft / sysctl commands, drawn
   from every fault the live rules allow (a DNAT rule or KUBE-SEP jump / vmap entry deleted, a stale DNAT
   to a dead pod IP added, a Service's chain or its KUBE-SERVICES / map entry deleted, a sysctl flipped);
6. collection and scan again: the findings at warning or above are exactly the fault's - the right check
   id and subject (the Service port, or the node for a sysctl), and their message/evidence name the
   perturbed endpoint, frontend or sysctl.

One fault can show on several frontends of the same Service port (deleting KUBE-SVC-X loses the cluster
IP's rule and leaves its node port without a target); the check may report such a Service port as one
finding per kind of difference, so the assertion is on the (check id, subject) set, which the report
shows as one entry.

Only kube-proxy's process does not run in the lab: its HTTP surfaces are the recorded real ones of
kube-proxy v1.36.2 (bundle B1), see tests/proxier_lab_support.py. No IPVS here: this kernel has none.

Faults outside the SemanticView's model (traffic that short-circuits: pods and the node itself reaching
external frontends of an eTP=Local Service; localhost NodePorts; an eTP/iTP=Local "no local endpoints"
DROP whose nat path still exists) are not drawn; `test_known_model_gaps` pins them down.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxier_lab_support import (
    LAB_NODE,
    Perturbation,
    collect,
    describe,
    iptables_perturbations,
    lab_node,
    nftables_perturbations,
    run,
    scan,
    sysctl_perturbations,
    to_cluster,
)
from proxier_lab_support import cluster_objects as clusters

from kpdoctor.analysis import actual_view
from kpdoctor.dataplane.semantic import diff
from kpdoctor.findings import Severity
from kpdoctor.lab.apply import apply_rendered
from kpdoctor.proxier.context import build_input
from kpdoctor.proxier.expected import expected_view
from kpdoctor.proxier.render import render

# Reproducible on CI: derandomized (fixed seed), no example database, no deadline (namespaces take time).
LAB = settings(max_examples=10, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DATAPLANE_KINDS = ("drop-dnat", "drop-sep-jump", "drop-endpoint", "stale-dnat", "delete-frontend-rule",
                   "delete-frontend-element", "delete-service-chain")


def _candidates(mode: str, ns: str) -> list[Perturbation]:
    found = iptables_perturbations(run(["iptables-nft-save"], ns)) if mode == "iptables" else (
        nftables_perturbations(ns))
    return found + sysctl_perturbations(mode)


def _repro(objects: list[dict[str, Any]]) -> str:
    """The Services and slices of a failing example (nodes and kube-proxy objects are always the same)."""
    return json.dumps([o for o in objects if o["kind"] in ("Service", "EndpointSlice")])


def check_against_proxier(mode: str, objects: list[dict[str, Any]], data: st.DataObject) -> Perturbation:
    cluster = to_cluster(objects)
    inp = build_input(cluster, LAB_NODE)
    assert inp.mode == mode
    expected = expected_view(inp)
    with lab_node(mode) as ns:
        apply_rendered(ns, render(inp), mode=mode)
        clean = collect(ns, objects, mode)
        found = scan(cluster, clean).at_least(Severity.WARNING)
        assert found == [], f"clean render of\n{_repro(objects)}\n-> findings:\n{describe(found)}"
        seen = actual_view(clean, mode, expected=expected)
        assert seen is not None and seen.frontends, "no Service rules read back from the lab node"
        assert seen == expected, "read back: " + "; ".join(
            f"{d.kind} {d.frontend}" for d in diff(expected, seen))

        candidates = _candidates(mode, ns)
        # the kind first, so every kind of fault is drawn about as often (there are far more rules than sysctls)
        kind = data.draw(st.sampled_from(sorted({c.kind for c in candidates})), label="kind")
        fault = data.draw(st.sampled_from([c for c in candidates if c.kind == kind]), label="fault")
        fault.apply(ns)
        broken = collect(ns, objects, mode)
    if fault.kind in DATAPLANE_KINDS:  # the planted fault changed what the node does (else: not a fault)
        assert actual_view(broken, mode, expected=expected) != expected, f"{fault}: no visible change"
    found = scan(cluster, broken).at_least(Severity.WARNING)
    where = f"\nfault: {fault}\ncluster: {_repro(objects)}\nfindings:\n{describe(found)}"
    assert found, "fault not detected" + where
    assert {(f.check_id, f.subject) for f in found} == {(fault.check_id, fault.subject)}, "wrong findings" + where
    said = " ".join(x for f in found for x in (f.message, *f.evidence))
    for needle in fault.needles:
        assert needle in said, f"findings do not name {needle!r}" + where
    return fault


@pytest.mark.root("iptables-restore", "nft", "nfacct")
@LAB
@given(objects=clusters("iptables"), data=st.data())
def test_checks_vs_proxier_iptables(objects: list[dict[str, Any]], data: st.DataObject) -> None:
    check_against_proxier("iptables", objects, data)


@pytest.mark.root("iptables-restore", "nft", "nfacct")
@LAB
@given(objects=clusters("nftables"), data=st.data())
def test_checks_vs_proxier_nftables(objects: list[dict[str, Any]], data: st.DataObject) -> None:
    check_against_proxier("nftables", objects, data)
