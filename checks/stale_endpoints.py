"""KP-STALE-ENDPOINTS: the node's Service rules match the EndpointSlices, frontend by frontend.

The reference proxier renders what kube-proxy v1.36 would program on this node
from the *current* Services and EndpointSlices; the node's dump (iptables,
nftables or IPVS) is read into the same mode-independent view; the difference
is the finding: DNAT targets that no longer back the Service (the seed's
"connection refused / timeouts after pod deletion"), ready endpoints missing,
Services missing, rules left for deleted Services. UDP conntrack entries that
still point at a dead endpoint keep a flow blackholed after the rules are
fixed (UDP "connections" never end while the client keeps sending), so they
are listed with the `conntrack -D` command that deletes exactly those.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from kpdoctor.api_coverage import missing_for_expectation
from kpdoctor.checks._common import (
    KUBE_PROXY_DOCS,
    KubeProxyModeCheck,
    pod_status_line,
    service_key,
    service_subject,
)
from kpdoctor.cluster.kube_proxy_node import PROXY_MODES, ConfiguredMode, ProxyMode
from kpdoctor.comparison import Comparison, ViewUnavailable, compare, known_mode
from kpdoctor.dataplane.semantic import (
    DNAT,
    DROP,
    LOCALHOST_NODE_PORT,
    NODE_PORT,
    REJECT,
    Frontend,
    FrontendDiff,
    SemanticView,
)
from kpdoctor.findings import Finding, Severity
from kpdoctor.node.dumps import grep_fact
from kpdoctor.node.parsed import ParsedNode
from kpdoctor.node_context import NodeCheckContext
from kpdoctor.service_proxy import presence
from kpdoctor.shellcmd import Lit, Name, command

_KIND_SEVERITY = {
    "stale-endpoints": Severity.ERROR,
    "missing-endpoints": Severity.ERROR,
    "missing-frontend": Severity.ERROR,
    "verdict": Severity.ERROR,
    "extra-frontend": Severity.WARNING,
    "affinity": Severity.WARNING,
}
# The short-circuit path's differences are reported with the outside path's of the same kind: one finding
# per Service port and kind of fault, its frontends saying which path each is.
_KIND_GROUP = {"stale-internal-endpoints": "stale-endpoints", "missing-internal-endpoints": "missing-endpoints"}


DUMP_OF_MODE = {"iptables": "iptables-save.txt", "nftables": "nft-ruleset.json", "ipvs": "ipvsadm-save.txt"}
COLLECT_HINT = {"iptables": "iptables-save", "nftables": "nft -j list ruleset", "ipvs": "ipvsadm -S -n"}


def ipvs_unprogrammed(p: ParsedNode) -> str:
    """Positive evidence that IPVS mode programmed nothing although `ipvsadm-save.txt` is absent: IPVS mode also
    writes iptables chains (KUBE-SERVICES, KUBE-NODE-PORT), and a collected iptables dump holds none of them."""
    pres = presence(p)
    if pres.iptables or pres.iptables_legacy or pres.iptables_ipvs_chains or pres.ipvs:
        return ""
    dumps = [k for k in ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt") if p.has(k)]
    if not dumps:
        return ""
    return f"{', '.join(dumps)}: no KUBE-* chains (IPVS mode writes KUBE-SERVICES there too), no IPVS state"


def _where(d: FrontendDiff) -> str:
    """The frontend and the path a difference is on, as the finding names it."""
    fe = d.frontend
    text = f"localhost NodePort 127.0.0.1:{fe.port}" if fe.kind == LOCALHOST_NODE_PORT else str(fe)
    if d.kind in _KIND_GROUP:
        text += " from pods/node (short-circuit)"
    return text


def _host(endpoint: str) -> str:
    """`10.0.0.1` from `10.0.0.1:80`, `fd00::1` from `[fd00::1]:80`."""
    if endpoint.startswith("["):
        return endpoint[1:].split("]", 1)[0]
    return endpoint.rsplit(":", 1)[0]


def _port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[-1]


def conntrack_delete(fe: Frontend, stale_ip: str, on: str | None = None) -> str:
    """The `conntrack -D` that deletes exactly the entries NATed from this frontend to `stale_ip`."""
    proto = fe.protocol.lower()
    if fe.kind == NODE_PORT:
        return command("conntrack", "-D", "-p", proto, "--orig-port-dst", str(fe.port), "--dst-nat", stale_ip, on=on)
    return command("conntrack", "-D", "-p", proto, "--orig-dst", fe.address, "--orig-port-dst", str(fe.port),
                   "--dst-nat", stale_ip, on=on)


def _verify(mode: str, fe: Frontend, stale: Iterable[str], rules_key: str, node_ip: str = "",
            on: str | None = None) -> str | None:
    """The command that shows the stale targets on the node; None when no real address can be named."""
    ips = sorted({_host(e) for e in stale})
    if mode == "nftables":
        return command("nft", "list", "table", "ip", "kube-proxy", Lit("|"), "grep", "-E", "--",
                       "|".join(re.escape(i) for i in ips), on=on)
    if mode == "ipvs":
        # A NodePort virtual server exists once per node address (the view collapses them, address ""):
        # name it by the node's InternalIP, or give no command rather than a placeholder.
        address = fe.address or node_ip
        if not address:
            return None
        host = f"[{address}]" if ":" in address else address
        return command("ipvsadm", "-Ln", f"-{'u' if fe.protocol == 'UDP' else 't'}", f"{host}:{fe.port}", on=on)
    save = "iptables-legacy-save" if "legacy" in rules_key else "iptables-save"
    needle = "|".join(ips) if ips else (fe.address or str(fe.port))
    return command(save, "-t", "nat", Lit("|"), "grep", "-E", "--", needle, on=on)


def _nft_evidence(text: str | None, endpoint: str) -> list[str]:
    if not text:
        return []
    host, port = _host(endpoint), _port(endpoint)
    chains = sorted(set(re.findall(r'"(endpoint-[^"]*__' + re.escape(host.replace(":", ".")) + "/" + port + ')"',
                                   text)))
    if chains:
        return [f"nft-ruleset.json: chain ip kube-proxy {c}" for c in chains[:2]]
    count = text.count(f'"{host}"')
    return [f"nft-ruleset.json: {host} appears {count} times in the kube-proxy table"] if count else []


class StaleEndpoints(KubeProxyModeCheck):
    id = "KP-STALE-ENDPOINTS"
    title = "Node Service rules match the current EndpointSlices (no stale or missing endpoints)"
    severity = Severity.ERROR
    tags = ("dataplane", "iptables", "nftables", "ipvs", "conntrack", "common")
    reads = ("iptables-save.txt", "iptables-nft-save.txt", "iptables-legacy-save.txt", "nft-ruleset.json", "ipvsadm-save.txt")
    requires = ("Service", "EndpointSlice", "Node", "ConfigMap", "DaemonSet", "Pod")
    rationale = (
        "Rules that still DNAT to a deleted pod's IP send a share of new connections into the void (or to the "
        "wrong pod once the IP is reused); ready endpoints missing from rules get no traffic from this node."
    )
    remediation = (
        "Make kube-proxy on the node sync again (it rewrites the rules from the API); clear conntrack entries "
        "already NATed to removed endpoints. Never hand-edit KUBE-* rules."
    )
    catches = (
        "per Service port, the node's real rules (iptables, nftables or IPVS) vs the reference proxier: "
        "stale DNAT targets, missing endpoints/Services, rules of deleted Services; UDP conntrack to dead"
        " endpoints with the exact `conntrack -D`"
    )
    references = (
        KUBE_PROXY_DOCS,
        "https://kubernetes.io/docs/tasks/debug/debug-application/debug-service/",
        "https://github.com/kubernetes/kubernetes/blob/master/pkg/proxy/conntrack/cleanup.go"
        " (what kube-proxy itself clears)",
    )

    def check_mode(self, ctx: NodeCheckContext, found: ConfiguredMode) -> Iterable[Finding]:
        node = ctx.node
        missing = missing_for_expectation(ctx.cluster, node.name)
        if missing:
            yield self.finding(
                ctx, f"Node {node.name}",
                f"not evaluated: the expected Service rules of node {node.name} cannot be computed: {missing[0]}",
                severity=Severity.INFO, evidence=missing, not_evaluated=True,
                fix="Collect the cluster's Services, EndpointSlices and Nodes (`kpdoctor collect`).",
            )
            return
        p = ctx.parsed
        word = p.proxy_mode if p.proxy_mode in PROXY_MODES else found[0]
        try:
            mode = known_mode(word)
            cmp = compare(ctx, mode)
        except ViewUnavailable as exc:
            yield self.finding(
                ctx, f"Node {node.name}", f"the {word} dataplane of node {node.name} could not be read: {exc}",
                severity=Severity.INFO, evidence=[str(exc)], not_evaluated=True,
            )
            return
        pod = ctx.kube_proxy_pod
        down = not p.has("kube-proxy/healthz.json") and not p.has("kube-proxy/metrics.txt")
        cause_cmds: list[str] = []
        cause = ""
        if pod is not None and (down or not pod.ready):
            cause = f" kube-proxy is not running on {node.name} (pod {pod.key} not ready)."
            cause_cmds = [command("kubectl", "-n", Name(pod.namespace), "describe", "pod", Name(pod.name)),
                          command("kubectl", "-n", Name(pod.namespace), "logs", Name(pod.name), "--previous")]
        elif pod is not None:
            cause = (f" kube-proxy on {node.name} answers but has not applied the change: see KP-SYNC-LAG; "
                     "deleting the pod forces a full resync.")
            cause_cmds = [command("kubectl", "-n", Name(pod.namespace), "logs", Name(pod.name), Lit("|"), "grep", "-E",
                                  "Sync failed|restore|nft"),
                          command("kubectl", "-n", Name(pod.namespace), "delete", "pod", Name(pod.name),
                                  note="the DaemonSet recreates it; full resync on start")]
        if cmp is None:
            shown = ipvs_unprogrammed(p) if mode == "ipvs" else ""
            if not shown:
                yield self._dump_missing(ctx, mode)
                return
            yield from self._no_rules(ctx, mode, found[2].origin, pod, cause, cause_cmds, shown=shown)
            return
        if not cmp.actual.frontends and cmp.expected.frontends:
            yield from self._no_rules(ctx, mode, found[2].origin, pod, cause, cause_cmds, rules_key=cmp.rules_key)
            return
        if cmp.diffs:
            unreliable = self._unreliable(ctx, mode, cmp.rules_key)
            if unreliable is not None:
                yield unreliable
                return
            yield from self._layout_note(ctx, mode, cmp.rules_key)
        if cause.startswith(" kube-proxy is not running"):
            cause = cause[:-1] + ": the rules are frozen at its last sync."
        grouped: dict[tuple[str, str, str], list[FrontendDiff]] = defaultdict(list)
        for d in cmp.diffs:
            grouped[(d.service, d.frontend.protocol, _KIND_GROUP.get(d.kind, d.kind))].append(d)
        for (service, protocol, kind), diffs in sorted(grouped.items()):
            yield self._service_finding(ctx, cmp, service, protocol, kind, diffs, cause, cause_cmds, down)
        yield from self._conntrack(ctx, cmp.expected)

    # ------------------------------------------------------------------------------------------
    def _dump_missing(self, ctx: NodeCheckContext, mode: str) -> Finding:
        """The mode's dump was not collected: nothing is known of the node's Service rules."""
        node = ctx.node
        key = DUMP_OF_MODE.get(mode, mode)
        return self.finding(
            ctx, f"Node {node.name}",
            f"not evaluated: the {mode} Service rules of node {node.name} were not collected ({key} absent)",
            severity=Severity.INFO, evidence=[node.fact(key).evidence()], not_evaluated=True,
            fix=f"Collect {key} from the node (`kpdoctor collect`, or `{COLLECT_HINT.get(mode, key)}` as root).",
        )

    def _unreliable(self, ctx: NodeCheckContext, mode: ProxyMode, rules_key: str) -> Finding | None:
        """One finding instead of stale/missing-endpoint verdicts when the dump cannot be what the kernel
        holds (chains it jumps to are missing: truncated; DNAT without an address: the userspace iptables
        that printed it is older than the kernel's DNAT revision)."""
        from kpdoctor.comparison import dump_reliability
        from kpdoctor.dataplane.reliability import TOO_OLD

        node = ctx.node
        rel = dump_reliability(ctx, mode, rules_key)
        if rel is None or rel.reliable:
            return None
        evidence = [f"{rules_key}: {p}" for p in rel.problems] + [f"{rules_key}: {r[:200]}" for r in
                                                                   rel.userspace_too_old[:3]]
        if rel.userspace_too_old:
            save = "iptables-legacy-save" if "legacy" in rules_key else "iptables-save"
            return self.finding(
                ctx, f"Node {node.name}",
                f"{TOO_OLD} on node {node.name}: {len(rel.userspace_too_old)} DNAT rule(s) in {rules_key} print no "
                "address, so the dump is unreliable and no stale-endpoint verdict is drawn from it.",
                severity=Severity.WARNING, evidence=evidence,
                fix="Collect the rules with the iptables inside kube-proxy's image (same version that wrote them), "
                    "or upgrade the node's iptables package.",
                commands=[command(save, "--version", on=node.name)]
                + ([command("kubectl", "-n", Name(pod.namespace), "exec", Name(pod.name), "--", save, "--version")]
                   if (pod := ctx.kube_proxy_pod) is not None else []),
            )
        return self.finding(
            ctx, f"Node {node.name}",
            f"the {mode} dump {rules_key} of node {node.name} cannot be what the kernel holds ({rel.problems[0]}): "
            "unreliable, so no stale-endpoint verdict is drawn from it; collect it again.",
            severity=Severity.INFO, evidence=evidence, not_evaluated=True,
        )

    def _layout_note(self, ctx: NodeCheckContext, mode: str, rules_key: str) -> Iterable[Finding]:
        """Rules in a layout older than the v1.36 reference (KUBE-XLB, KUBE-MARK-DROP): read by meaning, but
        the differences below may be version skew - said, not silent."""
        if mode != "iptables":
            return
        from kpdoctor.dataplane.reliability import layout_notes
        from kpdoctor.errors import InputError

        node = ctx.node
        try:
            dump = ctx.dumps.full(rules_key)
        except InputError:
            return
        notes = layout_notes(dump) if dump is not None else []
        if notes:
            yield self.finding(
                ctx, f"Node {node.name}",
                f"the rules on node {node.name} were written by a kube-proxy older than the v1.36 reference; they "
                "are compared by meaning, and a difference below may be version skew.",
                severity=Severity.INFO, evidence=[f"{rules_key}: {n}" for n in notes],
            )

    def _no_rules(self, ctx: NodeCheckContext, mode: ProxyMode, origin: str, pod: object, cause: str,
                  cause_cmds: list[str], rules_key: str = "", shown: str = "") -> Iterable[Finding]:
        node = ctx.node
        from kpdoctor.node_context import expected_for

        expected = expected_for(ctx, mode)
        if not expected.frontends:
            return
        services = sorted({v.service for v in expected.frontends.values()})
        where = {"iptables": rules_key or "iptables-save.txt", "nftables": "nft-ruleset.json",
                 "ipvs": "ipvsadm-save.txt"}[mode] if mode in PROXY_MODES else mode
        fact = node.fact(where)
        evidence = [f"{origin}: mode {mode}",
                    f"{where}: " + ("absent (" + (fact.error or "not collected") + ")" if not fact.present
                                    else "holds no kube-proxy Service rules")]
        if shown:
            evidence.append(shown)
        if pod is not None and hasattr(pod, "key"):
            evidence.append(pod_status_line(pod))  # type: ignore[arg-type]
        yield self.finding(
            ctx,
            f"Node {node.name}",
            f"node {node.name} has no {mode} Service rules at all: all {len(services)} Service ports "
            f"({', '.join(services[:4])}{', ...' if len(services) > 4 else ''}) are unreachable through their "
            f"ClusterIPs, NodePorts and load-balancer IPs from this node.{cause}",
            severity=Severity.CRITICAL,
            evidence=evidence,
            fix="Get kube-proxy running and synced on the node (KP-PROXY-HEALTH / KP-PROXIER-MODE say why it is "
            "not); keep the node out of service meanwhile.",
            commands=[*cause_cmds, command("kubectl", "cordon", Name(node.name))],
        )

    def _service_finding(self, ctx: NodeCheckContext, cmp: Comparison, service: str, protocol: str, kind: str,
                         diffs: list[FrontendDiff], cause: str, cause_cmds: list[str], down: bool) -> Finding:
        node = ctx.node
        fronts = ", ".join(_where(d) for d in diffs)
        stale = sorted({e for d in diffs for e in d.stale})
        missing = sorted({e for d in diffs for e in d.missing})
        svc = service_key(service) if service else ""
        exists = svc in ctx.cluster.service_by_key
        evidence: list[str] = []
        for endpoint in stale:
            if cmp.mode == "nftables":
                evidence += _nft_evidence(node.text(cmp.rules_key), endpoint)
            else:
                evidence += grep_fact(node, cmp.rules_key, endpoint, limit=2)
        for sl in ctx.cluster.slices_by_service.get(svc, ()):
            ips = sorted({a for ep in sl.endpoints if ep.ready for a in ep.addresses})
            evidence.append(f"EndpointSlice {sl.namespace}/{sl.name}: ready endpoints {', '.join(ips) or 'none'}")
        if kind == "stale-endpoints":
            first = diffs[0]
            total = len(first.actual.internal_targets if first.kind in _KIND_GROUP else first.actual.endpoints) \
                if first.actual else 0
            message = (
                f"on node {node.name}, {service}/{protocol} ({fronts}) still load-balances to "
                f"{', '.join(stale)}, which no longer back{'s' if len(stale) == 1 else ''} the Service "
                f"({len(stale)} of {total} DNAT targets: that share of new connections from this node goes to a "
                "pod IP that is gone)"
                + (f", and has no rule for ready endpoint(s) {', '.join(missing)}" if missing else "")
                + "."
                + cause
            )
        elif kind == "missing-endpoints":
            message = (f"on node {node.name}, {service}/{protocol} ({fronts}) has no rule for ready endpoint(s) "
                       f"{', '.join(missing)}: they get no traffic from this node.{cause}")
        elif kind == "missing-frontend":
            message = (f"on node {node.name}, {service}/{protocol} has no rule for {fronts}: connections to it "
                       f"from this node are not load-balanced at all"
                       + (f" (expected: DNAT to {', '.join(missing)})" if missing else "") + f".{cause}")
        elif kind == "extra-frontend":
            what = "a Service port that no longer exists" if not exists else "a frontend the Service no longer has"
            message = (f"node {node.name} still has rules for {fronts} ({service or 'unnamed'}): {what}"
                       + (f", DNAT to {', '.join(stale)}" if stale else "") + f".{cause}")
        elif kind == "verdict":
            d = diffs[0]
            want = d.expected.verdict if d.expected else "?"
            have = d.actual.verdict if d.actual else "?"
            # a drop makes clients time out, a reject refuses them; the expected targets may be serving
            # terminating endpoints (kube-proxy's fallback), so "ready" is not said here
            effect = {DROP: "new connections time out", REJECT: "new connections are refused"}.get(have, "")
            message = (f"on node {node.name}, {service}/{protocol} ({fronts}) answers '{have}' where the API "
                       f"says '{want}'"
                       + (f" to {', '.join(missing)}" if want == DNAT and missing else "")
                       + (f" - {effect} although the Service has endpoints" if want == DNAT and effect else "")
                       + (" - clients are refused instead of dropped: the DROP kube-proxy programs for a Local "
                          "traffic policy without local endpoints is gone" if want == DROP and have == REJECT else "")
                       + f".{cause}")
        else:
            d = diffs[0]
            message = (f"on node {node.name}, {service}/{protocol} ({fronts}) has session affinity "
                       f"{d.actual.affinity_seconds if d.actual else '?'} s, expected "
                       f"{d.expected.affinity_seconds if d.expected else '?'} s.{cause}")
        commands = list(cause_cmds)
        if stale:
            api_node = ctx.cluster.node_by_name.get(node.name)
            node_ips = api_node.internal_ips if api_node is not None else ()
            node_ip = next((ip for ip in node_ips if ":" not in ip), node_ips[0] if node_ips else "")
            verify = _verify(cmp.mode, diffs[0].frontend, stale, cmp.rules_key, node_ip, on=node.name)
            if verify:
                commands.append(verify)
            for d in diffs:
                for endpoint in sorted(d.stale):
                    cmd = conntrack_delete(d.frontend, _host(endpoint), on=node.name)
                    if cmd not in commands:
                        commands.append(cmd)
        if kind in ("stale-endpoints", "missing-frontend", "verdict") and down:
            commands.append(command("kubectl", "cordon", Name(node.name)))
        subject = service_subject(service, protocol) if service else f"Frontend {diffs[0].frontend}"
        return self.finding(
            ctx,
            subject,
            message,
            severity=_KIND_SEVERITY.get(kind, Severity.ERROR),
            evidence=[f"{cmp.rules_key}: {cmp.mode} rules of node {node.name}", *evidence],
            commands=commands,
        )

    def _conntrack(self, ctx: NodeCheckContext, expected: SemanticView) -> Iterable[Finding]:
        node = ctx.node
        entries = ctx.parsed.conntrack_entries
        if not entries:
            return
        by_addr = {(fe.address, fe.port, fe.protocol): v for fe, v in expected.frontends.items() if fe.address}
        stale: dict[tuple[Frontend, str, str], list[str]] = defaultdict(list)
        for e in entries:
            if e.protocol != "udp" or e.dport is None:
                continue
            view = by_addr.get((e.dst, e.dport, "UDP"))
            if view is None or view.verdict != DNAT:
                continue
            target = e.dnat_target
            if e.reply_src == e.dst:
                stale[(view.frontend, view.service, "")].append(e.line)  # never NATed: sent before rules existed
            elif target not in view.endpoints:
                stale[(view.frontend, view.service, e.reply_src)].append(e.line)
        for (fe, service, dead_ip), lines in sorted(stale.items(), key=lambda kv: (kv[0][0], kv[0][2])):
            if dead_ip:
                cmd = conntrack_delete(fe, dead_ip, on=node.name)
                what = f"still NATed to {dead_ip}, which no longer backs the Service"
            else:
                cmd = command("conntrack", "-D", "-p", "udp", "--orig-dst", fe.address, "--orig-port-dst", str(fe.port),
                              "--reply-src", fe.address, on=node.name)
                what = "not NATed at all (created before the Service had endpoints)"
            yield self.finding(
                ctx,
                service_subject(service, "UDP"),
                f"on node {node.name}, {len(lines)} UDP conntrack entr{'y' if len(lines) == 1 else 'ies'} for "
                f"{fe} {'is' if len(lines) == 1 else 'are'} {what}: UDP clients that keep sending from the same "
                "port stay blackholed until the entry expires, even with correct rules",
                severity=Severity.WARNING,
                evidence=[f"conntrack-services.txt: {line}" for line in lines[:3]],
                fix="Delete exactly these entries; the next packet creates a new one through the current rules.",
                commands=[cmd],
            )


CHECK = StaleEndpoints()
