"""`kpdoctor proxier`: the reference proxier on the command line.

`render` prints the ruleset real kube-proxy leaves on a node (iptables-restore
input for iptables mode); `view` prints the mode-independent semantic view
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

if TYPE_CHECKING:
    from kpdoctor.cluster.state import ClusterState
    from kpdoctor.dataplane.semantic import SemanticView
    from kpdoctor.proxier.context import ProxierInput

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?$")
FAMILIES = ("IPv4", "IPv6")


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


def build_proxier_input(
    snapshot: str,
    node: str,
    *,
    mode: str | None = None,
    config: str | None = None,
    version: str | None = None,
    family: str = "IPv4",
) -> ProxierInput:
    """Load the snapshot and resolve everything `render`/`view` need for one node and family."""
    from kpdoctor.cluster.config import load_config_file
    from kpdoctor.cluster.snapshot import load_snapshot
    from kpdoctor.errors import InputError
    from kpdoctor.proxier.context import build_input

    if family not in FAMILIES:
        raise InputError(f"--family {family!r}: choose IPv4 or IPv6")
    if mode is not None and mode not in ("iptables", "nftables", "ipvs"):
        raise InputError(f"--mode {mode!r}: choose iptables, nftables or ipvs")
    cluster = load_snapshot(snapshot)
    check_slices_have_services(cluster)
    cfg = load_config_file(config) if config else None
    return build_input(cluster, node, config=cfg, mode=mode, family=family, version=parse_version(version))


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
                                    "kube-proxy image, else 1.36)."),
        family: str = typer.Option("IPv4", "--family", help="IPv4 | IPv6."),
        output: str = typer.Option(None, "--output", help="Write to FILE instead of stdout."),
    ) -> None:
        """Print the complete ruleset kube-proxy leaves on NODE (iptables mode: iptables-restore input)."""
        from kpdoctor.proxier.render import render

        inp = build_proxier_input(snapshot, node, mode=mode, config=config, version=version, family=family)
        _write(render(inp), output)

    @proxier.command("view")
    def view_cmd(
        snapshot: str = typer.Option(None, "--snapshot", help="Directory of `kubectl get -o json|yaml` files."),
        node: str = typer.Option(None, "--node", help="The Node whose expected view to compute."),
        iptables_save: str = typer.Option(None, "--iptables-save", help="Parse this iptables-save dump instead "
                                          "(with --snapshot/--node: diff expected vs this dump)."),
        config: str = typer.Option(None, "--config", help="KubeProxyConfiguration file (overrides the snapshot)."),
        family: str = typer.Option("IPv4", "--family", help="IPv4 | IPv6."),
        as_json: bool = typer.Option(False, "--json", help="JSON instead of text."),
        output: str = typer.Option(None, "--output", help="Write to FILE instead of stdout."),
    ) -> None:
        """Print per Service frontend where new connections go (expected, parsed, or their diff)."""
        from kpdoctor.errors import InputError

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
            return
        view = expected if expected is not None else actual
        assert view is not None
        _write(json.dumps(view_to_json(view), indent=2) + "\n" if as_json else view_to_text(view), output)

    app.add_typer(proxier, name="proxier")
