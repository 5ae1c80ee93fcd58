"""`kpdoctor lab ...`: real-packet experiments in network namespaces kpdoctor creates and deletes itself.

This is the one command group that changes network state, and only its own:
every namespace it builds has a fresh unique name, all rules are loaded inside
those namespaces, and they are deleted when the command ends (also on Ctrl-C
or SIGTERM). The host's own ruleset is never read or written.
"""

from __future__ import annotations

import json
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from kpdoctor.lab.bench import BenchResult

BENCH_HELP = """Measure what kube-proxy's rules cost a NEW connection on this machine's kernel.

For each Service count and variant (iptables mode on the iptables-nft backend,
iptables mode on iptables-legacy, nftables mode) it CREATES its own network
namespaces (a node, two pods, a client; names kpd-<random>-*), loads the rules
kpdoctor's reference proxier renders for that many Services into the node
namespace, times connect() from a pod to the FIRST and the LAST Service of nat
KUBE-SERVICES and to a pod IP directly (median of --rounds x --per-round
connects), then DELETES the namespaces. Needs root, ip, nfacct, nft and the
iptables-*-restore tools. It never touches the host's own rules or interfaces.

iptables walks KUBE-SERVICES rule by rule, so the last Service (and any
non-Service traffic) pays for every rule before it; nftables mode uses a map
lookup and stays flat. Loading many Services with iptables-nft-restore is slow
(minutes above a few thousand), so by default that variant stops at
--nft-backend-limit Services.
"""


def _parse_counts(text: str) -> list[int]:
    from kpdoctor.errors import InputError

    counts = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        scale = 1000 if part.endswith("k") else 1
        try:
            value = int(float(part[:-1] if scale > 1 else part) * scale)
        except ValueError:
            raise InputError(f"--services {text!r}: not a comma-separated list of counts (e.g. 1000,5k,10k)") from None
        if not 1 <= value <= 60000:
            raise InputError(f"--services: {value} is out of range (1..60000)")
        counts.append(value)
    if not counts:
        raise InputError("--services: give at least one count")
    return counts


def _parse_variants(text: str) -> list[str]:
    from kpdoctor.errors import InputError
    from kpdoctor.lab.bench import VARIANTS

    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise InputError(f"--variants: unknown {', '.join(unknown) or '(empty)'} (choose from {', '.join(VARIANTS)})")
    return variants


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _terminate_cleanly(signum: int, frame: FrameType | None) -> None:
    """SIGTERM -> KeyboardInterrupt, so the lab's context managers delete their namespaces."""
    raise KeyboardInterrupt


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Real-packet experiments in network namespaces that kpdoctor creates and deletes itself "
        "(root only; never touches the host's rules).",
        no_args_is_help=True,
    )
    app.add_typer(group, name="lab")
    from kpdoctor.commands import lab_cluster

    lab_cluster.register(group)

    @group.command("cleanup")
    def cleanup_cmd() -> None:
        """Delete namespaces left by lab runs whose process died (killed outright), and nothing else.

        Each lab records its creator PID and its namespaces under /run/kpdoctor-lab/; only labs whose
        creator is no longer running are removed. Namespaces of running labs are never touched.
        """
        from kpdoctor.lab.netns import require_tools
        from kpdoctor.lab.topology import cleanup_stale

        require_tools()
        removed = cleanup_stale()
        typer.echo(f"removed {len(removed)} namespace(s) of dead lab runs" + (": " + ", ".join(removed) if removed else ""))

    @group.command("bench", help=BENCH_HELP)
    def bench_cmd(
        services: str = typer.Option("1000,5000,10000", "--services", "-n",
                                     help="Comma-separated Service counts (1000,5k,10k)."),
        variants: str = typer.Option("iptables-nft,iptables-legacy,nftables", "--variants",
                                     help="Comma-separated: iptables-nft, iptables-legacy, nftables."),
        rounds: int = typer.Option(10, "--rounds", min=1, max=100, help="Rounds; each times every target once."),
        per_round: int = typer.Option(50, "--per-round", min=1, max=10000, help="Connects per target per round."),
        endpoints: int = typer.Option(1, "--endpoints-per-service", min=1, max=200,
                                      help="Endpoints per Service (pods in the lab); the chain walk does not "
                                      "depend on it, the load time does."),
        client: str = typer.Option("pod", "--from", help="pod (PREROUTING/FORWARD) or node (OUTPUT)."),
        nft_backend_limit: int = typer.Option(5000, "--nft-backend-limit", min=0,
                                              help="Skip iptables-nft above this many Services."),
        apply_timeout: float = typer.Option(900.0, "--apply-timeout", min=1.0,
                                            help="Seconds allowed for loading one ruleset."),
        fmt: str = typer.Option("table", "-o", "--output", "--format", help="table | json"),
    ) -> None:
        import os
        import platform
        import shutil
        import time

        from kpdoctor.errors import InputError
        from kpdoctor.lab.bench import TOOLS, BenchCase, BenchResult, measure_case, plan
        from kpdoctor.lab.netns import LabError, require_tools

        if fmt not in ("table", "json"):
            raise InputError(f"--format {fmt!r}: choose table or json")
        if client not in ("pod", "node"):
            raise InputError(f"--from {client!r}: choose pod or node")
        counts = _parse_counts(services)
        chosen = _parse_variants(variants)
        require_tools("nfacct")
        previous = signal.signal(signal.SIGTERM, _terminate_cleanly)
        results: list[BenchResult] = []

        def progress(msg: str) -> None:
            print(f"kpdoctor lab bench: {msg}", file=sys.stderr, flush=True)

        try:
            for case, reason in plan(counts, chosen, nft_backend_limit=nft_backend_limit):
                case = BenchCase(case.variant, case.services, endpoints)
                if not reason and shutil.which(TOOLS[case.variant]) is None:
                    reason = f"{TOOLS[case.variant]} is not installed"
                if reason:
                    results.append(BenchResult(case.variant, case.services, skipped=reason))
                    continue
                try:
                    results.append(measure_case(case, rounds=rounds, per_round=per_round, client=client,
                                                apply_timeout=apply_timeout, progress=progress))
                except LabError as exc:
                    results.append(BenchResult(case.variant, case.services, error=str(exc)))
                    progress(f"{case.variant} {case.services}: failed: {exc}")
        finally:
            signal.signal(signal.SIGTERM, previous)

        machine = {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "client": client,
            "rounds": rounds,
            "per_round": per_round,
            "endpoints_per_service": endpoints,
        }
        if fmt == "json":
            sys.stdout.write(json.dumps({"machine": machine, "results": [r.as_dict() for r in results]}, indent=2)
                             + "\n")
        else:
            _print_table(results, machine)
        failed = [r for r in results if r.error]
        if failed:
            raise LabError(f"{len(failed)} of {len(results)} bench cases failed (see above)")


def _print_table(results: list[BenchResult], machine: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, show_edge=False, pad_edge=False,
                  title="New-connection latency through kube-proxy's rules (median connect(), µs)")
    for col in ("VARIANT", "SERVICES", "LINES", "LOAD s", "FIRST", "LAST", "LAST-FIRST", "POD IP", "NOTE"):
        table.add_column(col, overflow="fold", justify="left" if col in ("VARIANT", "NOTE") else "right")
    for r in results:
        note = r.skipped or r.error or (f"{r.failures} failed connects" if r.failures else "")
        table.add_row(r.variant, str(r.services), str(r.rules_lines or "-"), _fmt(r.apply_seconds or None, 2),
                      _fmt(r.first_us), _fmt(r.last_us), _fmt(r.delta_us), _fmt(r.direct_us), note)
    from kpdoctor.commands.terminal import rich_color_args

    con = Console(highlight=False, **rich_color_args())  # type: ignore[arg-type]
    con.print(table)
    con.print(f"kernel {machine['kernel']}, {machine['cpus']} CPUs, load average {machine['load_average']}, "
              f"{machine['date']}; client: {machine['client']}; {machine['rounds']} x {machine['per_round']} "
              f"connects per target; {machine['endpoints_per_service']} endpoint(s) per Service.")
    con.print("FIRST/LAST: the first and last Service in nat KUBE-SERVICES (nftables: a map, no order). "
              "POD IP: a connection to a pod address, which walks the whole chain without matching.")
