"""kpdoctor.inpod without a cluster: the node side (`kpdoctor node NAME --result-json`, run as the real CLI
on the demo bundle's real kube-proxy nodes) merges into the central scan's report, and what the central side
does with each kind of answer from the pod. The pod itself, on a real kubelet: tests/lab/test_klab_inpod.py.
_Transport below is a hand-made stand-in for PodTransport (the last resort, said so): it pins how the
central side reads exit codes and hostile output, which a real pod cannot be made to produce on demand."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from typing import Any

from kpdoctor import inpod
from kpdoctor.engine import run_checks
from kpdoctor.node import podcollect
from kpdoctor.node.transport import RunResult, TransportError
from kpdoctor.noderesult import FORMAT, Interner, decode, merge
from kpdoctor.registry import discover
from kpdoctor.report.model import SourceInfo, build_report
from kpdoctor.scanner import DEMO_BUNDLE, open_bundle
from tests.support.cli import NO_CLUSTER, kpd

WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return kpd(*args, env=NO_CLUSTER, timeout=300)


def _findings(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted((c["id"], g["severity"], str(g["subject"]), str(g["message"]))
                  for c in report["checks"] for g in c.get("groups", []))  # fmt: skip


def test_result_json_of_each_node_merges_into_the_central_report() -> None:
    reg = discover()
    checks = reg.select()
    cluster, source = open_bundle(DEMO_BUNDLE)
    names = list(source.names())
    docs = []
    for name in names:
        proc = _cli("node", name, "--bundle", str(DEMO_BUNDLE), "--result-json")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
        assert len(proc.stdout.splitlines()) == 1  # one compact JSON document, nothing else on stdout
        docs.append(json.loads(proc.stdout))
    assert {d["format"] for d in docs} == {FORMAT}
    central = run_checks([c for c in checks if c.scope == "cluster"], cluster, node_source=source)
    strings = Interner()
    merged = merge(checks, central, [decode(d, f"node {d['node']['name']}", strings) for d in docs])
    whole = run_checks(checks, cluster, node_source=source)
    info = SourceInfo("demo", str(DEMO_BUNDLE), "bundle")
    want = build_report(whole, source=info, fail_on=None, exit_code=0, generated_at=WHEN)
    got = build_report(merged, source=info, fail_on=None, exit_code=0, generated_at=WHEN)
    assert _findings(want), "the demo's planted faults gave no finding"
    assert _findings(got) == _findings(want)
    assert {c["id"]: c["status"] for c in got["checks"]} == {c["id"]: c["status"] for c in want["checks"]}


def test_result_json_refuses_report_flags() -> None:
    proc = _cli("node", "edge-1", "--bundle", str(DEMO_BUNDLE), "--result-json", "-o", "json")
    assert proc.returncode == 2 and "--result-json" in proc.stderr and "Traceback" not in proc.stderr


def test_scan_analyze_in_pod_needs_pod_transport_and_an_image() -> None:
    for args in (["--analyze-in-pod"], ["--transport", "pod", "--analyze-in-pod"]):
        proc = _cli("scan", "--snapshot", str(DEMO_BUNDLE / "cluster"), *args)
        assert proc.returncode == 2 and "--collector-image" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_pod_runs_as_the_read_only_service_account_with_a_bounded_token() -> None:
    pod = podcollect.with_service_account(podcollect.collector_pod("n1", "img", name="p", namespace=inpod.NAMESPACE,
                                                                   lifetime_s=900), inpod.SERVICE_ACCOUNT, 900)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "kpdoctor" and spec["automountServiceAccountToken"] is False
    (volume,) = [v for v in spec["volumes"] if "projected" in v]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 900
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": "kube-api-access", "mountPath": podcollect.SA_DIR, "readOnly": True}
    assert spec["containers"][0]["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert inpod.node_argv("n 1;x", [], 30) == ["kpdoctor", "node", "n 1;x", "--transport", "local",
                                                "--result-json", "--timeout", "30"]  # argv, never a shell string


class _Transport:
    """Stand-in for PodTransport: connect/run/close and the attributes analyze_node reads."""

    def __init__(self, result: RunResult | None = None, fail: str = "") -> None:
        self.result, self.fail = result, fail
        self.image, self.address, self.closed = "img:1", "pod kpdoctor/p", False
        self.argv: list[str] = []

    def connect(self, timeout: float) -> None:
        if self.fail:
            raise TransportError(self.fail)

    def run(self, argv: list[str], *, timeout: float, max_bytes: int) -> RunResult:
        self.argv = argv
        assert self.result is not None
        return self.result

    def close(self) -> None:
        self.closed = True


def _analyze(transport: _Transport) -> tuple[Any, int]:
    result, received = inpod.analyze_node("n1", transport, check_ids=["KP-SYSCTL"], timeout=30,  # type: ignore[arg-type]
                                          strings=Interner())  # fmt: skip
    assert transport.closed, "the pod is deleted whatever happened"
    return result, received


def test_each_answer_from_the_pod() -> None:
    good = {"format": FORMAT, "node": {"name": "n1", "transport": "local"}, "runs": [{"check": "KP-SYSCTL"}],
            "findings": [{"check": "KP-SYSCTL", "severity": "error", "subject": "s", "message": "m"}]}  # fmt: skip
    cases = [
        (RunResult(json.dumps(good).encode(), b"", 0), ""),
        (RunResult(b"", b"exec: kpdoctor: executable file not found", 127), "has no kpdoctor"),
        (RunResult(b"", b"boom\nlast line\n", 1), "exit 1: last line"),
        (RunResult(b"", b"", None, error="exec stream failed: OCI runtime exec failed: exec: \"kpdoctor\": "
                   "executable file not found in $PATH\n"), "has no kpdoctor"),
        (RunResult(b"", b"", None, error="exec stream failed: invalid literal for int() with base 10: 'Internal error "
                   "occurred: error executing command in container: failed to start exec \"6bfc\": OCI runtime exec f'"),
         "has no kpdoctor"),  # what the lab's kubelet 1.37 + containerd 1.6 gave, through the kubernetes client
        (RunResult(b"{not json", b"", 0), "not JSON"),
        (RunResult(b"[" * 100000, b"", 0), "not JSON"),
        (RunResult(json.dumps({**good, "findings": [{"check": 1}]}).encode(), b"", 0), "findings[0]"),
        (RunResult(json.dumps({**good, "node": {"name": "other"}}).encode(), b"", 0), "for node 'other'"),
        (RunResult(b"{}", b"", None, timed_out=True), "timed out"),
    ]
    for res, error in cases:
        transport = _Transport(res)
        result, received = _analyze(transport)
        assert received == len(res.stdout)
        assert result.node.transport == "pod" and result.node.name == "n1"
        if not error:
            assert result.node.reachable and result.node.address == "pod kpdoctor/p (analyzed in pod)"
            assert [f.message for f in result.findings] == ["m"]
        else:
            assert error in result.node.error and not result.findings, (error, result.node.error)
            assert "\n" not in result.node.error
        assert transport.argv[-2:] == ["--checks", "KP-SYSCTL"]
    result, received = _analyze(_Transport(fail="collector pod kpdoctor/p not running in time (pending)"))
    assert received == 0 and "not running in time" in result.node.error


def test_merge_reports_an_unanalyzed_node_as_unreachable() -> None:
    reg = discover()
    checks = reg.select()
    cluster, _ = open_bundle(DEMO_BUNDLE)
    central = run_checks([c for c in checks if c.scope == "cluster"], cluster, nodes=[])
    failed, _ = _analyze(_Transport(RunResult(b"", b"", 127)))
    node_checks = [c for c in checks if c.scope == "node"]
    merged = merge(checks, central, [inpod.with_unreachable_finding(failed, node_checks)])
    assert [n.name for n in merged.nodes] == ["n1"] and not merged.nodes[0].reachable
    assert all(r.status == "not_evaluated" for r in merged.runs if r.check.scope == "node")
    # as a central scan reports a node it could not reach: the scan's own finding, naming the reason
    (finding,) = [f for f in merged.findings if f.scope == "n1"]
    assert finding.check_id == "kpdoctor.scan" and "has no kpdoctor" in " ".join([finding.message, *finding.evidence])
