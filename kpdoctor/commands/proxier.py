"""`kpdoctor proxier`: the reference proxier on the command line.

`render` prints the ruleset real kube-proxy leaves on a node (iptables-restore
input for iptables mode, an `nft -f` transaction for nftables mode: both the
`ip` and `ip6` tables by default, as a dual-stack kube-proxy writes them);
`view` prints the mode-independent semantic view
(what each Service frontend does), either expected from the snapshot or parsed
from a node's `iptables-save` dump, and can diff the two. The renderers and the
cluster loader are imported inside the commands so `kpdoctor --help` stays fast.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any

import typer

from kpdoctor.cluster.kube_proxy_node import ProxyMode, is_proxy_mode
from kpdoctor.commands.options import format_error

if TYPE_CHECKING:
    from kpdoctor.cluster.state import ClusterState
    from kpdoctor.dataplane.semantic import SemanticView
    from kpdoctor.proxier.context import ProxierInput

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?$")
FAMILIES = ("IPv4", "IPv6")
BOTH = "both"


def parse_version(text: str | None) -> tuple[int, int] | None:
    from kpdoctor.errors import InputError

    if not text:
        return None
    match = _VERSION.match(text.strip())
    if not match:
        raise InputError(f"--kube-proxy-version {text!r}: expected MAJOR.MINOR, e.g. 1.36")
    return int(match.group(1)), int(match.group(2))


def check_slices_have_services(cluster: ClusterState) -> None:
    """An EndpointSlice whose Service is missing means an incomplete snapshot: say which file."""
    from kpdoctor.errors import InputError

    services = cluster.service_by_key
    for eps in cluster.endpoint_slices:
        if eps.service_name and eps.service_key not in services:
            raise InputError(
                f"EndpointSlice {eps.namespace}/{eps.name} belongs to Service {eps.service_key}, "
                "which is not in the snapshot (incomplete snapshot? add the Service or remove the slice)",
                where=eps.source or cluster.source or None,
            )


def _cidr(text: str) -> str | None:
    """The canonical form of a CIDR with a prefix length, or None when `text` is not one."""
    import ipaddress

    if "/" not in text:
        return None
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def parse_service_cidrs(values: list[str] | None) -> tuple[str, ...] | None:
    """`--service-cidr` values (repeatable, comma-separated) -> CIDRs without duplicates; None when not given.

    kube-proxy keeps the ServiceCIDRs in a set, so a CIDR given twice is one CIDR (and nft
    would reject the duplicate element in the anonymous set).
    """
    from kpdoctor.errors import InputError

    if not values:
        return None
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not text:
                continue
            cidr = _cidr(text)
            if cidr is None:
                example = "10.96.0.0/16 or fd00:10:96::/112"
                raise InputError(f"--service-cidr {text!r}: expected a CIDR such as {example}")
            if cidr not in out:
                out.append(cidr)
    return tuple(out) or None


def snapshot_service_cidrs(cluster: ClusterState) -> tuple[str, ...]:
    """The `spec.cidrs` of the snapshot's ServiceCIDR objects, deduplicated as kube-proxy's set does."""
    from kpdoctor.errors import InputError

    out: list[str] = []
    for text in cluster.service_cidrs:
        cidr = _cidr(str(text).strip())
        if cidr is None:
            raise InputError(f"ServiceCIDR spec.cidrs holds {text!r}, which is not a CIDR", where=cluster.source or None)
        if cidr not in out:
            out.append(cidr)
    return tuple(out)


def load_render_cluster(snapshot: str) -> ClusterState:
    from kpdoctor.cluster.snapshot import load_snapshot

    cluster = load_snapshot(snapshot)
    check_slices_have_services(cluster)
    return cluster


def primary_family(cluster: ClusterState, node: str) -> str:
    """kube-proxy's primary IP family: that of the node's first InternalIP (else its first address), else IPv4."""
    from kpdoctor.addresses import ip_family

    obj = cluster.node_by_name.get(node)
    if obj is not None:
        ordered = sorted(obj.addresses, key=lambda a: a.type != "InternalIP")
        for address in ordered:
            family = ip_family(address.address) if address.type in ("InternalIP", "ExternalIP") else None
            if family in FAMILIES:
                return family
    return FAMILIES[0]


def build_proxier_inputs(
    cluster: ClusterState,
    node: str,
    *,
    mode: str | None = None,
    config: str | None = None,
    version: str | None = None,
    family: str | None = None,
) -> list[ProxierInput]:
    """One ProxierInput per IP family to render, in kube-proxy's order (IPv4, then IPv6).

    Without `family`, nftables mode renders both families: kube-proxy's nftables mode always
    runs dual-stack on Linux (`platformCheckSupported` assumes both families, so even an
    IPv4-only node gets an empty-ish `ip6 kube-proxy` table; the golden captures show it).
    iptables and IPVS output is one family per restore input, so they default to the node's
    primary family. `both` is accepted for nftables only.
    """
    from kpdoctor.cluster.config import load_config_file
    from kpdoctor.errors import InputError
    from kpdoctor.proxier.context import build_input

    if family is not None and family not in (*FAMILIES, BOTH):
        raise InputError(f"--family {family!r}: choose IPv4, IPv6 or both")
    mode = _check_mode(mode)
    cfg = load_config_file(config) if config else None
    parsed_version = parse_version(version)
    first = build_input(cluster, node, config=cfg, mode=mode, family=family if family in FAMILIES else "IPv4",
                        version=parsed_version)  # fmt: skip
    if first.mode == "nftables" and family in (None, BOTH):
        families: tuple[str, ...] = FAMILIES
    elif family == BOTH:
        raise InputError(f"--family both: only nftables mode writes both families in one transaction; {first.mode} "
                         "mode takes one restore input per family (run with --family IPv4 and --family IPv6)")  # fmt: skip
    else:
        families = (family or primary_family(cluster, node),)
    inputs = []
    for fam in families:
        if fam == first.family:
            inputs.append(first)
        else:
            inputs.append(build_input(cluster, node, config=cfg, mode=mode, family=fam, version=parsed_version))
    return inputs


def build_proxier_input(snapshot: str, node: str, *, mode: str | None = None, config: str | None = None,
                        version: str | None = None, family: str = "IPv4") -> ProxierInput:
    """Load the snapshot (load_render_cluster) and resolve everything `render`/`view` need for one node and
    family; the family and mode are checked before the snapshot is read."""
    from kpdoctor.errors import InputError

    if family not in FAMILIES:
        raise InputError(f"--family {family!r}: choose IPv4 or IPv6")
    mode = _check_mode(mode)
    cluster = load_render_cluster(snapshot)
    return build_proxier_inputs(cluster, node, mode=mode, config=config, version=version, family=family)[0]


def _check_mode(mode: str | None) -> ProxyMode | None:
    from kpdoctor.errors import InputError

    if mode is not None and not is_proxy_mode(mode):
        raise InputError(f"--mode {mode!r}: choose iptables, nftables or ipvs")
    return mode


def _write(text: str, output: str | None) -> None:
    from kpdoctor.errors import InputError

    if output:
        try:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror}", where=output) from None
    else:
        sys.stdout.write(text)


def view_to_json(view: SemanticView) -> list[dict[str, Any]]:
    out = []
    for fe in sorted(view.frontends):
        v = view.frontends[fe]
        out.append({
            "kind": fe.kind, "address": fe.address, "port": fe.port, "protocol": fe.protocol,
            "service": v.service, "verdict": v.verdict, "endpoints": sorted(v.endpoints),
            "affinity_seconds": v.affinity_seconds, "source_ranges": sorted(v.source_ranges),
            "internal_endpoints": sorted(v.internal_endpoints) if v.internal_endpoints is not None else None,
        })
    return out


def view_to_text(view: SemanticView) -> str:
    lines = []
    for fe in sorted(view.frontends):
        v = view.frontends[fe]
        extra = ""
        if v.affinity_seconds:
            extra += f" affinity={v.affinity_seconds}s"
        if v.source_ranges:
            extra += f" sources={','.join(sorted(v.source_ranges))}"
        if v.internal_endpoints is not None:
            extra += f" short-circuit={','.join(sorted(v.internal_endpoints)) or 'none'}"
        eps = " ".join(sorted(v.endpoints))
        lines.append(f"{fe}  {v.service}  {v.verdict}{(' -> ' + eps) if eps else ''}{extra}")
    return "\n".join(lines) + ("\n" if lines else "")


def register(app: typer.Typer) -> None:
    proxier = typer.Typer(
        name="proxier",
        help="The reference proxier: the rules real kube-proxy v1.36 writes for a node.",
        no_args_is_help=True,
    )

    @proxier.command("render")
    def render_cmd(
        snapshot: str = typer.Option(..., "--snapshot", help="Directory of `kubectl get -o json|yaml` files."),
        node: str = typer.Option(..., "--node", help="The Node to render for."),
        mode: str = typer.Option(None, "--mode", help="iptables | nftables | ipvs (default: the node's config)."),
        config: str = typer.Option(None, "--config", help="KubeProxyConfiguration file (overrides the snapshot)."),
        version: str = typer.Option(None, "--kube-proxy-version", help="MAJOR.MINOR (default: from the "
                                    "kube-proxy image tag in the snapshot, else 1.36). nftables mode: 1.31-1.32, "
                                    "1.33-1.35 and 1.36+ write different base chains."),
        family: str = typer.Option(None, "--family", help="IPv4 | IPv6 | both. Default: nftables mode both "
                                   "(`ip` and `ip6` tables, as kube-proxy runs dual-stack); other modes the "
                                   "node's primary family."),
        service_cidr: list[str] = typer.Option([], "--service-cidr", help="nftables mode: the cluster's "  # noqa: B008
                                               "ServiceCIDRs (repeatable or comma-separated; overrides ServiceCIDR "
                                               "objects in the snapshot). Without any, the 'Drop traffic to "
                                               "unallocated ClusterIPs' rule is omitted. Ignored by other modes."),
        output: str = typer.Option(None, "-f", "--output-file", metavar="FILE", help="Write to FILE instead of stdout."),
    ) -> None:
        """Print the complete ruleset kube-proxy leaves on NODE.

        iptables: iptables-restore input. IPVS: ipvsadm, kube-ipvs0, ipset and iptables sections.

        nftables: the `nft -f` transaction, `ip` and `ip6` tables unless --family picks one.

        nftables ServiceCIDRs come from ServiceCIDR objects in the snapshot or from --service-cidr.

        Without either, the "Drop traffic to unallocated ClusterIPs" rule is omitted.
        """
        from kpdoctor.proxier.render import render

        cidrs = parse_service_cidrs(service_cidr)
        cluster = load_render_cluster(snapshot)
        inps = build_proxier_inputs(cluster, node, mode=mode, config=config, version=version, family=family)
        if inps[0].mode == "nftables":
            from kpdoctor.proxier.nftables import render_nftables_families

            if cidrs is None:
                cidrs = snapshot_service_cidrs(cluster)
            _write(render_nftables_families(inps, service_cidrs=cidrs), output)
            return
        _write("".join(render(inp) for inp in inps), output)

    @proxier.command("view")
    def view_cmd(
        snapshot: str = typer.Option(None, "--snapshot", help="Directory of `kubectl get -o json|yaml` files."),
        node: str = typer.Option(None, "--node", help="The Node whose expected view to compute."),
        iptables_save: str = typer.Option(None, "--iptables-save", help="Parse this iptables-save dump instead "
                                          "(with --snapshot/--node: diff expected vs this dump)."),
        config: str = typer.Option(None, "--config", help="KubeProxyConfiguration file (overrides the snapshot)."),
        family: str = typer.Option("IPv4", "--family", help="IPv4 | IPv6."),
        fmt: str = typer.Option("text", "-o", "--output", help="text | json."),
        as_json: bool = typer.Option(False, "--json", help="Same as -o json."),
        output: str = typer.Option(None, "-f", "--output-file", metavar="FILE", help="Write to FILE instead of stdout."),
    ) -> None:
        """Print per Service frontend where new connections go (expected, parsed, or their diff).

        With both --snapshot/--node and --iptables-save it prints their difference and, like diff, exits 1
        when there is one (0 when they agree).
        """
        from kpdoctor.errors import InputError

        if fmt not in ("text", "json"):
            raise InputError(format_error(fmt, ("text", "json")))
        as_json = as_json or fmt == "json"

        expected = None
        if snapshot or node:
            if not (snapshot and node):
                raise InputError("--snapshot and --node go together")
            from kpdoctor.proxier.expected import expected_view

            expected = expected_view(build_proxier_input(snapshot, node, config=config, family=family))
        actual = None
        if iptables_save:
            from kpdoctor.dataplane.iptables_save import load_iptables_save
            from kpdoctor.dataplane.iptables_semantic import address_kinds_of, semantic_view

            kinds = address_kinds_of(expected) if expected is not None else None
            actual = semantic_view(load_iptables_save(iptables_save), address_kinds=kinds)
        if expected is None and actual is None:
            raise InputError("give --snapshot DIR --node NAME, --iptables-save FILE, or both (to diff)")
        if expected is not None and actual is not None:
            from kpdoctor.dataplane.semantic import diff

            diffs = diff(expected, actual)
            if as_json:
                text = json.dumps([{
                    "frontend": str(d.frontend), "service": d.service, "kind": d.kind,
                    "missing": sorted(d.missing), "stale": sorted(d.stale),
                    "expected_verdict": d.expected.verdict if d.expected else None,
                    "actual_verdict": d.actual.verdict if d.actual else None,
                } for d in diffs], indent=2) + "\n"
            else:
                text = "".join(
                    f"{d.frontend}  {d.service}  {d.kind}"
                    + (f" missing={','.join(sorted(d.missing))}" if d.missing else "")
                    + (f" stale={','.join(sorted(d.stale))}" if d.stale else "")
                    + (f" expected={d.expected.verdict} actual={d.actual.verdict}"
                       if d.kind == "verdict" and d.expected and d.actual else "")
                    + "\n"
                    for d in diffs
                ) or "no differences\n"
            _write(text, output)
            if diffs:
                raise typer.Exit(1)
            return
        view = expected if expected is not None else actual
        assert view is not None
        _write(json.dumps(view_to_json(view), indent=2) + "\n" if as_json else view_to_text(view), output)

    app.add_typer(proxier, name="proxier")
