"""Small helpers shared by the built-in checks (not a check: the registry skips `_` modules)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from kpdoctor.checks_api import Check
from kpdoctor.cluster.kube_proxy_node import ConfiguredMode
from kpdoctor.cluster.model import Pod
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node_context import NodeCheck, NodeCheckContext
from kpdoctor.node_only import is_node_only

KUBE_PROXY_DOCS = "https://kubernetes.io/docs/reference/networking/virtual-ips/"
KUBE_PROXY_CONFIG_DOCS = "https://kubernetes.io/docs/reference/config-api/kube-proxy-config.v1alpha1/"
KUBE_PROXY_CLI_DOCS = "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/"
KUBE_PROXY_METRICS_DOCS = "https://kubernetes.io/docs/reference/instrumentation/metrics/"
NFTABLES_BLOG = "https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/"


# kube-proxy log lines that say the kernel cannot run a mode (kube-proxy exits; it never falls back).
MODE_UNUSABLE_LOG = {
    "ipvs": ("can't use the IPVS proxier", "ipvs not supported", "Could not get ipvs family information"),
    "nftables": ("can't use the nftables proxier", "nftables is not supported"),
}


def service_subject(service_port_name: str, protocol: str) -> str:
    """`Service payments/ledger:http/TCP` (the ServicePortName plus protocol)."""
    return f"Service {service_port_name}/{protocol.upper()}"


def service_key(service_port_name: str) -> str:
    """`payments/ledger` from `payments/ledger:http`."""
    return service_port_name.split(":", 1)[0]


def unknown_kube_proxy(check: Check, ctx: NodeCheckContext) -> Finding:
    """Node-only scan and kube-proxy did not answer on the node: whether and how it is meant to run there is
    in the cluster, which this scan does not have, so the check is not evaluated (never a pass)."""
    node = ctx.node
    return check.finding(
        ctx, f"Node {node.name}",
        f"not evaluated on node {node.name}: no cluster objects in this scan, and kube-proxy did not answer on "
        "the node (/configz, /proxyMode), so the mode it is meant to run in is unknown",
        severity=Severity.INFO,
        evidence=[node.fact("kube-proxy/configz.json").evidence(), node.fact("kube-proxy/proxyMode.txt").evidence()],
        not_evaluated=True,
    )


class KubeProxyModeCheck(NodeCheck):
    """A node check that judges the kube-proxy meant to run on the node, in the mode its config sets.

    Implements `check_mode`, called with the node's `ctx.kube_proxy_mode` only when one is known. When none
    is meant to run on the node, or its config is not found, there is nothing to judge; in a node-only scan
    that is unknown, so the check says "not evaluated" (`unknown_kube_proxy`), never a pass."""

    def check_node(self, ctx: NodeCheckContext) -> Iterator[Finding]:
        found = ctx.kube_proxy_mode
        if found is None:
            if is_node_only(ctx.cluster):
                yield unknown_kube_proxy(self, ctx)
            return
        yield from self.check_mode(ctx, found)

    def check_mode(self, ctx: NodeCheckContext, found: ConfiguredMode) -> Iterable[Finding]:
        raise NotImplementedError


def pod_status_line(pod: Pod) -> str:
    """One line describing a pod's containers as `kubectl get pod` would summarize them."""
    parts = [f"pod {pod.key} on {pod.node_name or '?'}: phase {pod.phase or '?'}, ready={str(pod.ready).lower()}"]
    for cs in pod.container_statuses:
        state = cs.state + (f" ({cs.reason})" if cs.reason else "")
        last = ""
        if cs.last_exit_code is not None:
            last = f", last terminated exit code {cs.last_exit_code}" + (f" ({cs.last_reason})" if cs.last_reason else "")
        parts.append(f"container {cs.name}: {state}, restartCount {cs.restart_count}{last}")
    return "; ".join(parts)


def exit_code_meaning(code: int | None, reason: str = "") -> str:
    if reason == "OOMKilled":
        return "OOMKilled: the container hit its memory limit"
    if code is None:
        return ""
    if code == 137:
        return "exit 137 = killed by SIGKILL (OOM kill, a failing liveness probe, or something killing the process)"
    if code == 143:
        return "exit 143 = terminated by SIGTERM"
    if code == 1:
        return "exit 1 = kube-proxy stopped on an error (its log says which)"
    if code > 128:
        return f"exit {code} = killed by signal {code - 128}"
    return f"exit {code}"


def tail_lines(lines: Iterable[str], limit: int = 3) -> list[str]:
    out = [line.rstrip() for line in lines if line.strip()]
    return out[-limit:]


def shorten(text: str, limit: int = 240) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def absence_shown(ctx: NodeCheckContext, mode: str, p: ParsedNode) -> list[str]:
    """Evidence that the kernel really lacks what is not found, rather than that we did not look: both module
    lists collected, /proc/net/ip_vs read and missing, or kube-proxy's own log saying the mode is unusable.
    Without it a requirement without evidence is "not evaluated", never an error."""
    node = ctx.node
    out: list[str] = []
    if p.loaded_modules is not None and p.builtin_modules is not None:
        out.append("proc-modules.txt and modules-builtin.txt were both collected")
    ipvs_proc = node.facts.get("proc-net-ip_vs.txt")
    if mode == "ipvs" and ipvs_proc is not None and not ipvs_proc.present:
        out.append(ipvs_proc.evidence())
    markers = MODE_UNUSABLE_LOG.get(mode, ())
    log = ctx.kube_proxy_log if markers else None
    out += [line.strip() for line in (log or "").splitlines() if any(m in line for m in markers)][-2:]
    return out
