"""Cross-mode property: one cluster, three kube-proxy modes, one meaning.

Hypothesis generates small clusters (ClusterIP / NodePort / LoadBalancer Services with ingress IPs,
externalIPs, source ranges, eTP/iTP=Local, ClientIP affinity, ready / serving-terminating / not-ready
endpoints spread over three nodes). For node n1 each mode is rendered and parsed back with that mode's
own node-output parser:

- iptables: `render_iptables` -> `parse_iptables_save` -> `iptables_semantic.semantic_view`;
- nftables: `render_nftables` -> real `nft -f` in a scratch network namespace -> `nft -j list ruleset`
  -> `parse_nft_json` -> `nft_semantic.semantic_view` (root: needs nft);
- IPVS: `render_ipvs` -> `parse_ipvs_document` (ipvsadm-save / ipset-save / iptables parsers) ->
  `ipvs_semantic_view`. No IPVS kernel here, so this one is not applied.

iptables and nftables must equal `expected_view(inp)` exactly. IPVS must equal it after normalizing
only what kube-proxy's IPVS proxier does differently on purpose (`expected_ipvs_view`, citing
kube-proxy): a Local traffic policy without local endpoints falls back to the cluster endpoints
(`syncEndpoint`, kubernetes/kubernetes#97081) instead of DROP, and a frontend left without real
servers is refused; LoadBalancer source ranges are programmed even when the Service has no
endpoints. The test also checks that every frontend where the IPVS view and the iptables view differ
is one of those documented cases. Differences that do not show in a semantic view (nftables' default
nodePortAddresses "primary"; IPVS NodePorts only on node addresses) need no normalization: a NodePort
frontend has address "" in every mode.

Two paths of the view differ between modes because kube-proxy's modes differ, so `expected_view` is
mode-dependent there (`kpdoctor.proxier.expected.view_options`) and the modes are compared without them:
- localhost NodePorts (`localhost-node-port` frontends) exist only in iptables mode: its KUBE-SERVICES
  tail rule lets 127.0.0.1 reach KUBE-NODEPORTS unless localhostNodePorts=false (iptables/proxier.go),
  while the nftables proxier always matches node ports with `ip daddr != 127.0.0.0/8` / `ip6 daddr != ::1`
  (nftables/proxier.go, `noLocalhost`; seen in every golden nftables fixture) and the IPVS proxier makes
  node-port virtual servers only on the node's non-loopback addresses;
- the eTP=Local short-circuit (`internal_endpoints`) exists in iptables (KUBE-EXT's `-s <clusterCIDR>` /
  `--src-type LOCAL` jumps to KUBE-SVC) and nftables (the `external-` chain's "short-circuit pod/local
  traffic" gotos to `service-`), not in IPVS: `syncEndpoint` fills each virtual server with one endpoint
  set for every source (ipvs/proxier.go).
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.cluster.config import KubeProxyConfig
from kpdoctor.cluster.snapshot import load_objects
from kpdoctor.dataplane.ipvs_document import parse_ipvs_document
from kpdoctor.dataplane.ipvs_semantic import ipvs_semantic_view
from kpdoctor.dataplane.semantic import DROP, LOAD_BALANCER, LOCALHOST_NODE_PORT, REJECT, SemanticView, diff
from kpdoctor.proxier.context import ProxierInput, build_input
from kpdoctor.proxier.ipvs import expected_ipvs_view, render_ipvs
from tests.support.proxier_lab import service_ports

NODES = ("n1", "n2", "n3")
NODE_IP = {"n1": "10.77.0.1", "n2": "10.77.0.2", "n3": "10.77.0.3"}


# ----------------------------------------------------------------- cluster generator
@st.composite
def endpoint(draw: st.DrawFn, svc_index: int, k: int) -> dict[str, Any]:
    node = draw(st.sampled_from(NODES))
    state = draw(st.sampled_from(["ready", "ready", "terminating", "not-ready"]))
    conditions = {"ready": {"ready": True, "serving": True, "terminating": False},
                  "terminating": {"ready": False, "serving": True, "terminating": True},
                  "not-ready": {"ready": False, "serving": False, "terminating": False}}[state]
    return {"addresses": [f"10.244.{NODES.index(node) + 1}.{svc_index * 10 + k}"], "nodeName": node,
            "conditions": conditions}


@st.composite
def service(draw: st.DrawFn, i: int) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    ports = draw(service_ports(kind, i))
    spec: dict[str, Any] = {"type": kind, "clusterIP": f"10.96.{i}.1", "clusterIPs": [f"10.96.{i}.1"],
                            "ports": ports, "ipFamilies": ["IPv4"]}
    if draw(st.booleans()):
        spec["externalIPs"] = [f"198.51.100.{i + 1}"]
    if kind != "ClusterIP" and draw(st.booleans()):
        spec["externalTrafficPolicy"] = "Local"
        if kind == "LoadBalancer":
            spec["healthCheckNodePort"] = 32000 + i
    if draw(st.booleans()):
        spec["internalTrafficPolicy"] = "Local"
    if draw(st.booleans()):
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.sampled_from([10, 300, 10800]))}}
    obj: dict[str, Any] = {"kind": "Service", "metadata": {"namespace": "ns", "name": f"svc{i}"}, "spec": spec}
    if kind == "LoadBalancer":
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": f"192.0.2.{i + 1}"}]}}
        ranges = draw(st.sampled_from([None, ["203.0.113.0/24"], ["10.77.0.0/16", "203.0.113.0/24"]]))
        if ranges:
            spec["loadBalancerSourceRanges"] = ranges
    eps = [draw(endpoint(i, k)) for k in range(draw(st.integers(0, 4)))]
    slice_ = {
        "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"namespace": "ns", "name": f"svc{i}-abc", "labels": {"kubernetes.io/service-name": f"svc{i}"}},
        "endpoints": eps,
        "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in ports],
    }
    return [obj, slice_]


@st.composite
def cluster_objects(draw: st.DrawFn) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"kind": "Node", "metadata": {"name": n},
         "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP[n]}]}} for n in NODES
    ]
    for i in range(draw(st.integers(1, 4))):
        objects.extend(draw(service(i)))
    return objects


def inputs(objects: list[dict[str, Any]]) -> dict[str, ProxierInput]:
    cluster = load_objects([(o, "generated") for o in objects])
    base = KubeProxyConfig(cluster_cidr="10.244.0.0/16")
    return {m: build_input(cluster, "n1", config=base, mode=m) for m in ("iptables", "nftables", "ipvs")}


# ----------------------------------------------------------------- each mode: render -> parse -> view
def iptables_view(inp: ProxierInput, kinds: dict[str, str]) -> SemanticView:
    from kpdoctor.dataplane.iptables_save import parse_iptables_save
    from kpdoctor.dataplane.iptables_semantic import semantic_view
    from kpdoctor.proxier.iptables import render_iptables

    return semantic_view(parse_iptables_save(render_iptables(inp), "iptables-render"), address_kinds=kinds)


def nftables_view(inp: ProxierInput, kinds: dict[str, str]) -> SemanticView:
    from kpdoctor.dataplane.nft import parse_nft_json
    from kpdoctor.dataplane.nft_semantic import semantic_view
    from kpdoctor.proxier.nftables import render_nftables

    ns = f"kpd-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        def nft(*args: str, stdin: str | None = None) -> str:
            out = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin, text=True,
                                 capture_output=True, timeout=60)
            assert out.returncode == 0, f"nft {' '.join(args)}: {out.stderr[:2000]}"
            return out.stdout

        nft("-f", "-", stdin=render_nftables(inp))
        listed = nft("-j", "list", "ruleset")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    return semantic_view(parse_nft_json(listed, source="nft -j list ruleset"), inp.family, address_kinds=kinds)


def ipvs_view(inp: ProxierInput, names: dict[Any, str]) -> SemanticView:
    doc = parse_ipvs_document(render_ipvs(inp))
    return ipvs_semantic_view(doc.table.virtual_servers, doc.ipsets, doc.iptables, node_ips=inp.node_ips,
                              names=names)


def without_mode_paths(view: SemanticView, *, short_circuit: bool = True) -> SemanticView:
    """`view` without localhost NodePorts (iptables only) and, unless `short_circuit`, without the
    short-circuit path (not in IPVS): see the module docstring."""
    from dataclasses import replace

    return SemanticView.of(v if short_circuit else replace(v, internal_endpoints=None)
                           for fe, v in view.frontends.items() if fe.kind != LOCALHOST_NODE_PORT)


def explain(want: SemanticView, got: SemanticView) -> str:
    return "\n".join(f"{d.kind} {d.frontend}: want={d.expected} got={d.actual}" for d in diff(want, got)) or (
        "views differ outside diff() (service names / source ranges): "
        + str({fe: (want.frontends.get(fe), got.frontends.get(fe))
               for fe in set(want.frontends) | set(got.frontends)
               if want.frontends.get(fe) != got.frontends.get(fe)})
    )


@pytest.mark.root("nft")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cluster_objects())
def test_same_cluster_same_meaning_in_all_modes(objects: list[dict[str, Any]]) -> None:
    from kpdoctor.dataplane.iptables_semantic import address_kinds_of
    from kpdoctor.proxier.expected import expected_view

    inp = inputs(objects)
    expected = expected_view(inp["iptables"])
    # mode-independent but for the paths only some modes have (module docstring)
    assert without_mode_paths(expected) == expected_view(inp["nftables"])
    assert without_mode_paths(expected, short_circuit=False) == expected_view(inp["ipvs"])
    kinds = address_kinds_of(expected)
    names = {fe: v.service for fe, v in expected.frontends.items()}

    ipt = iptables_view(inp["iptables"], kinds)
    assert ipt == expected, "iptables:\n" + explain(expected, ipt)
    nft = nftables_view(inp["nftables"], kinds)
    assert nft == expected_view(inp["nftables"]), "nftables:\n" + explain(expected_view(inp["nftables"]), nft)
    ipvs = ipvs_view(inp["ipvs"], names)
    want_ipvs = expected_ipvs_view(inp["ipvs"])
    assert ipvs == want_ipvs, "ipvs:\n" + explain(want_ipvs, ipvs)

    # Only the documented, kube-proxy-intended IPVS differences separate IPVS from the other two modes.
    ipt_common = without_mode_paths(ipt, short_circuit=False)
    for fe in set(ipt_common.frontends) | set(ipvs.frontends):
        a, b = ipt_common.frontends.get(fe), ipvs.frontends.get(fe)
        if a == b:
            continue
        assert a is not None and b is not None, f"{fe}: present in one mode only ({a} / {b})"
        local_fallback = a.verdict == DROP  # Local policy, no local endpoints (kubernetes#97081)
        rejected_lb_firewall = (fe.kind == LOAD_BALANCER and a.verdict == REJECT == b.verdict
                                and not a.source_ranges and a.endpoints == b.endpoints)
        assert local_fallback or rejected_lb_firewall, f"undocumented difference at {fe}: {a} vs {b}"
