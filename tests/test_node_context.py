"""kpdoctor.node_context: a node's facts and kube-proxy, computed once per node per scan, on real bundles."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from kpdoctor.checks_api import CheckContext
from kpdoctor.findings import Finding, Severity
from kpdoctor.node_context import (
    NodeCheck,
    NodeCheckContext,
    configured_mode,
    count_services,
    expected_for,
    kube_proxy_expected,
    kube_proxy_pod,
    log_of,
    node_dumps,
    parsed,
    service_proxy,
)
from kpdoctor.scan_options import ScanOptions
from tests.support.checks import load_bundle, with_facts


def _ctx(bundle: str, node: str | None, incremental: bool = True) -> CheckContext:
    cluster, nodes = load_bundle(bundle)
    return CheckContext(cluster=cluster, node=nodes[node] if node else None, nodes=nodes,
                        options=ScanOptions(incremental=incremental))


def test_views_are_memoized_and_share_one_parse() -> None:
    ctx = _ctx("B1-healthy", "edge-1")
    p = parsed(ctx)
    assert parsed(ctx) is p and node_dumps(ctx) is node_dumps(ctx)
    assert p.iptables("iptables-save.txt") is node_dumps(ctx).light("iptables-save.txt")
    assert expected_for(ctx, "iptables") is expected_for(ctx, "iptables")


def test_incremental_option_decides_whether_dumps_have_scan_references() -> None:
    assert node_dumps(_ctx("B1-healthy", "edge-1")).refs is not None
    assert node_dumps(_ctx("B1-healthy", "edge-1", incremental=False)).refs is None


def test_kube_proxy_of_each_node() -> None:
    ctx1, ctx2 = _ctx("B1-healthy", "edge-1"), _ctx("B1-healthy", "edge-2")
    for ctx, mode in ((ctx1, "iptables"), (ctx2, "nftables")):
        assert kube_proxy_expected(ctx)
        found = configured_mode(ctx)
        assert found is not None and found.mode == mode and found.source.origin
        pod = kube_proxy_pod(ctx)
        assert pod is not None and pod.node_name == ctx.node.name  # type: ignore[union-attr]
        log = log_of(ctx, pod)
        assert log is not None and f'"Using {mode} Proxier"' in log
    # a cluster-scope context asks about any node by name, with the same answer
    cluster_ctx = _ctx("B1-healthy", None)
    assert service_proxy(cluster_ctx, "edge-2").line() == service_proxy(ctx2).line()


def test_log_falls_back_to_the_nodes_own_log_fact() -> None:
    ctx = _ctx("B1-healthy", "edge-1")
    assert ctx.node is not None
    node = with_facts(ctx.node, **{"kube-proxy__log.txt": 'I1 server.go:1] "Using ipvs Proxier"'})
    ctx = CheckContext(cluster=ctx.cluster, node=node, nodes=ctx.nodes)
    assert log_of(ctx, None) == 'I1 server.go:1] "Using ipvs Proxier"'


def test_node_views_need_a_node() -> None:
    with pytest.raises(ValueError, match="node-scope"):
        parsed(_ctx("B1-healthy", None))


def test_typed_context_shares_the_views_of_its_scan() -> None:
    plain = _ctx("B2-stale-endpoint", "edge-1")
    ctx = NodeCheckContext(plain)
    assert ctx.node is plain.node
    assert ctx.parsed is parsed(plain) and ctx.dumps is node_dumps(plain)
    assert ctx.service_proxy is service_proxy(plain)
    assert ctx.kube_proxy_expected and ctx.kube_proxy_pod is kube_proxy_pod(plain)
    assert ctx.configured_mode == configured_mode(plain) and ctx.kube_proxy_mode == ctx.configured_mode
    assert ctx.kube_proxy_log == log_of(plain, ctx.kube_proxy_pod)
    assert ctx.service_load == count_services(plain.cluster) and ctx.service_load[0] > 0
    assert NodeCheckContext(plain).service_load is ctx.service_load  # once per scan
    with pytest.raises(ValueError, match="node-scope"):
        NodeCheckContext(_ctx("B2-stale-endpoint", None))


class _Seen(NodeCheck):
    id = "TEST-SEEN"
    title = "test"
    scope = "node"
    severity = Severity.INFO

    def check_node(self, ctx: NodeCheckContext) -> Iterable[Finding]:
        mode = ctx.kube_proxy_mode
        yield self.finding(ctx, f"Node {ctx.node.name}", f"mode {mode.mode if mode else None}")


def test_node_check_gets_the_typed_context() -> None:
    ctx = _ctx("B1-healthy", "edge-2")
    found = list(_Seen().run(ctx))
    assert [(f.scope, f.message) for f in found] == [("edge-2", "mode nftables")]
    assert list(_Seen().run(NodeCheckContext(ctx)))[0].message == "mode nftables"
