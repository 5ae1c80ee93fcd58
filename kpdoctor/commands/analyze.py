"""`kpdoctor analyze FILE...`: read dataplane dumps as people paste them, without a bundle.

Each FILE (or `-` for stdin) is one dump: iptables-save (with or without -c), iptables -S, kube-proxy's
restore input out of its log, nft list ruleset / nft -a / nft -j, ipvsadm -Ln / --save, ipset list /
save. The format is decided by content. Without cluster objects it reports structure and what the rules
alone say; with --snapshot DIR --node NAME it compares against the reference proxier (no stale-endpoint
verdict from a dump that cannot be what the kernel holds). Exit 1 when a judgment was made, 2 on bad input.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from kpdoctor.report import printable as safe_text


def _read(path: str) -> str:
    from kpdoctor.dataplane.paste import MAX_PASTE_BYTES
    from kpdoctor.errors import InputError

    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_PASTE_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_PASTE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=path) from None
    if len(data) > MAX_PASTE_BYTES:
        raise InputError(f"larger than {MAX_PASTE_BYTES >> 20} MiB", where=path)
    return data.decode("utf-8", errors="replace")


def _text(analysis: Any, diffs: list[Any] | None, withheld: str | None) -> str:
    from kpdoctor.dataplane.analyze import summary_rows

    a = analysis
    out = [f"== {safe_text(a.source)}: {a.format} ({a.layout})"]
    out += [f"  note: {safe_text(n)}" for n in a.notes]
    out += [f"  version: {safe_text(n)}" for n in a.version_notes]
    if a.ipset_names:
        out.append(f"  ipsets: {', '.join(safe_text(n) for n in a.ipset_names)}")
    rows = summary_rows(a)
    services = sorted({str(r["service"]) for r in rows})
    if a.view is not None:
        out.append(f"  {len(services)} Service port(s), {len(rows)} frontend(s)")
    for service in services:
        out.append(f"  {safe_text(service or '(unnamed)')}")
        for r in (r for r in rows if r["service"] == service):
            addr = r["address"] or "*"
            eps = r["endpoints"]
            assert isinstance(eps, dict)
            line = f"    {r['kind']} {safe_text(str(addr))}:{r['port']}/{r['protocol']}  {r['verdict']}"
            if eps:
                line += " -> " + ", ".join(f"{safe_text(e)} ({s:.0%})" for e, s in eps.items())
            if r["affinity_seconds"]:
                line += f"  affinity {r['affinity_seconds']}s"
            if r["local_policy"]:
                line += "  traffic policy Local"
            if r["source_ranges"]:
                line += "  sources " + ",".join(safe_text(str(s)) for s in r["source_ranges"])  # type: ignore[attr-defined]
            out.append(line)
    judgments = a.judgments()
    out += [f"  ! {safe_text(j)}" for j in judgments]
    out += [f"  i {safe_text(j)}" for j in a.observations()]
    if diffs is not None:
        if withheld:
            out.append(f"  comparison withheld: {safe_text(withheld)}")
        elif not diffs:
            out.append("  matches the snapshot: no differences")
        for d in diffs or []:
            out.append(f"  diff {d.kind}: {safe_text(d.service)} {d.frontend}"
                       + (f" missing={','.join(sorted(d.missing))}" if d.missing else "")
                       + (f" stale={','.join(sorted(d.stale))}" if d.stale else ""))
    if not judgments and not diffs and a.view is not None and a.reliability.reliable:
        out.append("  nothing wrong can be seen in the rules alone" if diffs is None else "")
    return "\n".join(line for line in out if line) + "\n"


def _json(analysis: Any, diffs: list[Any] | None, withheld: str | None) -> dict[str, Any]:
    from kpdoctor.dataplane.analyze import summary_rows

    a = analysis
    return {
        "source": a.source, "format": a.format, "layout": a.layout, "notes": a.notes,
        "version_notes": a.version_notes, "reliable": a.reliability.reliable,
        "unreliable_because": list(a.reliability.problems),
        "userspace_too_old": list(a.reliability.userspace_too_old), "ipsets": list(a.ipset_names),
        "frontends": summary_rows(a), "judgments": a.judgments(), "observations": a.observations(),
        "comparison": None if diffs is None else {
            "withheld": withheld,
            "diffs": [{"frontend": str(d.frontend), "service": d.service, "kind": d.kind,
                       "missing": sorted(d.missing), "stale": sorted(d.stale)} for d in diffs],
        },
    }


def register(app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze_cmd(
        files: list[str] = typer.Argument(..., help="Pasted dumps (`-` reads stdin); format by content."),  # noqa: B008
        snapshot: str = typer.Option(None, "--snapshot", help="Directory of `kubectl get -o json|yaml` files: "
                                     "compare each dump with what kube-proxy v1.36 would program."),
        node: str = typer.Option(None, "--node", help="The Node the dumps come from (with --snapshot)."),
        family: str = typer.Option("IPv4", "--family", help="IPv4 | IPv6 (with --snapshot)."),
        node_ip: list[str] = typer.Option([], "--node-ip", help="IPVS without ipsets: the node's addresses "  # noqa: B008
                                          "(tell NodePort virtual servers from ClusterIPs)."),
        fmt: str = typer.Option("text", "-o", "--output", help="text | json."),
        as_json: bool = typer.Option(False, "--json", help="Same as -o json."),
    ) -> None:
        """Read pasted dataplane dumps (no bundle needed) and say what they hold and what can be judged."""
        from kpdoctor.dataplane.analyze import IPSET, analyze_text, compare_to, detect_format
        from kpdoctor.dataplane.paste import clean_paste
        from kpdoctor.errors import InputError

        if fmt not in ("text", "json"):
            from kpdoctor.commands.options import format_error

            raise InputError(format_error(fmt, ("text", "json")))
        as_json = as_json or fmt == "json"
        if bool(snapshot) != bool(node):
            raise InputError("--snapshot and --node go together")
        texts = [(path, _read(path)) for path in files]
        ipsets = [t for _, t in texts if _is_ipset(t, detect_format, clean_paste)]
        expected = None
        if snapshot:
            from kpdoctor.commands.proxier import build_proxier_input
            from kpdoctor.proxier.expected import expected_view

            expected = expected_view(build_proxier_input(snapshot, node, family=family))
        results = []
        judged = False
        for path, text in texts:
            a = analyze_text(text, "<stdin>" if path == "-" else path,
                             ipsets_text="\n".join(ipsets) if ipsets else None, node_ips=node_ip, expected=expected)
            diffs = withheld = None
            if expected is not None and a.format != IPSET:
                diffs, withheld = compare_to(a, expected)
            judged = judged or bool(a.judgments()) or bool(diffs)
            results.append((a, diffs, withheld))
        if as_json:
            sys.stdout.write(json.dumps([_json(*r) for r in results], indent=2) + "\n")
        else:
            sys.stdout.write("".join(_text(*r) for r in results))
        if judged:
            raise typer.Exit(1)


def _is_ipset(text: str, detect: Any, clean: Any) -> bool:
    try:
        return bool(detect(clean(text).text) == "ipset")
    except Exception:  # noqa: BLE001 - a file that is no ipset is told about by its own analysis
        return False
