"""`kpdoctor node NAME --transport pod --analyze-in-pod`: the node's checks run inside its collector pod
(kpdoctor.inpod, as `scan --analyze-in-pod` does for every node) and only that node's report is shown: the
node checks selected by --checks/--skip, no cluster checks."""

from __future__ import annotations

from typing import Any

import typer

from kpdoctor.commands import optgroups as og
from kpdoctor.commands.nodeflags import NodeFlags, node_collect_options


def refuse_with(*, bundle: Any, snapshot: Any, address: Any, facts_json: bool, result_json: bool, probe: bool) -> None:
    """The flags in-pod analysis cannot honour: exit 2 before anything is contacted."""
    from kpdoctor.errors import InputError

    given = [flag for flag, on in (("--bundle", bundle), ("--snapshot", snapshot), ("--address", address),
                                   ("--facts-json", facts_json), ("--result-json", result_json), ("--probe", probe))
             if on]  # fmt: skip
    if given:
        raise InputError(f"--analyze-in-pod reads the live API's node through its collector pod: not with {', '.join(given)}")


def node_in_pod(name: str, *, pod: og.PodFlags, flags: NodeFlags, api: og.ApiFlags, setup: tuple[list[Any], Any, Any],
                fmt: str, output: str | None) -> None:  # fmt: skip
    """Run `name`'s node checks (setup: the selected node checks, silences, --fail-on threshold) in its collector
    pod, print the report, exit with its code."""
    from kpdoctor.commands.report_output import emit_report
    from kpdoctor.inpod_scan import scan_in_pods
    from kpdoctor.registry import discover
    from kpdoctor.scanner import ScanRequest

    assert pod.collector_image  # pod.validate() refused --analyze-in-pod without it
    selected, silences, threshold = setup
    req = ScanRequest(kubeconfig=api.kubeconfig, context=api.context, transport="pod", node_names=[name],
                      checks=",".join(c.id for c in selected), fail_on=threshold,
                      collect_options=node_collect_options(flags, api, collector_image=pod.collector_image))  # fmt: skip
    outcome, _ = scan_in_pods(req, registry=discover(), silences=silences, image=pod.collector_image)
    emit_report(outcome, fmt, output)
    raise typer.Exit(outcome.exit_code)
