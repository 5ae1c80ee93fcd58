"""The options of one scan, as the engine hands them to every check and the report shows them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScanOptions:
    """What a scan was asked to do. None: not given (the report leaves it out).

    `probe`: the active probe results KP-NODEPORT-FIREWALL reads (`kpdoctor.node.probe.ProbeRun.results`,
    one mapping per probed port); False when no probe ran. `incremental` is an engine setting: big
    iptables dumps are read as deltas of a reference dump of the scan (False: each parsed in full; the
    findings are the same), not shown in the report.
    """

    source: str | None = None  # the input's kind: bundle, api, snapshot, why, ...
    transport: str | None = None  # how node facts were collected
    probe: Sequence[Mapping[str, Any]] | bool | None = None
    node_findings_omitted: int = 0  # merged per-node results: node findings counted but not sent
    incremental: bool = True

    def probe_results(self) -> Sequence[Mapping[str, Any]] | None:
        """The probe results, None when no probe ran or none were attached."""
        return self.probe if isinstance(self.probe, list | tuple) else None

    def report(self) -> dict[str, str | int | float | bool]:
        """The options as the report lists them (sorted by name; what was not given is left out)."""
        shown: dict[str, Any] = {"source": self.source, "transport": self.transport, "probe": self.probe,
                                 "node_findings_omitted": self.node_findings_omitted or None}
        return {k: v for k, v in sorted(shown.items()) if isinstance(v, str | int | float | bool)}
