"""Capture kpdoctor's reports on every bundle and fixture, for the restructuring guard (issue 11).

`python3 -m tests.golden.capture DIR` writes one file per (command, input, format) into DIR, named
`<case>.golden` (Go's convention: captured output is fixture data, not a source file of its format);
tests/test_reports_unchanged.py runs the same list and compares with tests/fixtures/golden-reports/.
Only run-to-run noise is normalised (timestamps, durations, the kpdoctor version string); every other
byte of every report is compared.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "tests" / "fixtures" / "bundles"
DUMPS = ROOT / "tests" / "fixtures" / "realworld" / "dumps"
SHAPES = ROOT / "tests" / "fixtures" / "realworld" / "shapes"

SUFFIX = ".golden"
FORMATS = ("console", "json", "markdown", "junit", "html")
_NOISE = (
    (re.compile(r'"generated_at": "[^"]*"'), '"generated_at": "T"'),
    (re.compile(r'timestamp="[^"]*"'), 'timestamp="T"'),
    (re.compile(r'time="[0-9.]+"'), 'time="0"'),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "T"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"), "T"),
    (re.compile(r'"duration_(m?s)": [0-9.e-]+'), r'"duration_\1": 0'),
    (re.compile(r"\b\d+(\.\d+)? ?ms\b"), "0 ms"),
)


def cases() -> list[tuple[str, list[str]]]:
    """(file name, kpdoctor argv) for every report the guard compares."""
    out: list[tuple[str, list[str]]] = []
    sources = [("demo", ["--demo"])] + [
        (b.name, ["--bundle", str(b)]) for b in sorted(BUNDLES.iterdir()) if b.is_dir()]
    for name, src in sources:
        for fmt in FORMATS:
            out.append((f"scan-{name}.{fmt}", ["scan", *src, "-o", fmt, "--no-config-file"]))
        if name != "demo":
            out.append((f"gate-removal-{name}.json", ["gate", "kube-proxy-removal", *src, "-o", "json"]))
        for to in ("nftables", "iptables", "ipvs"):
            out.append((f"gate-mode-{to}-{name}.json", ["gate", "mode-switch", "--to", to, *src, "-o", "json"]))
    demo_traces = {
        "trace-edge2-pod-ip.txt": ["--node", "edge-2", "--from", "external", "--to", "10.244.52.21:8443", "--explain"],
        "trace-edge1-ledger.txt": ["--node", "edge-1", "--from", "external", "--to", "svc/payments/ledger", "--explain"],
        "trace-edge1-ledger.json": ["--node", "edge-1", "--from", "external", "--to", "svc/payments/ledger", "-o", "json"],
        "trace-matrix-pay-gateway.txt": ["--matrix", "--to", "svc/payments/pay-gateway"],
    }
    for fname, args in demo_traces.items():
        out.append((fname, ["trace", "--demo", *args]))
    for svc in ("svc/payments/ledger", "svc/payments/pay-gateway", "svc/payments/audit-udp"):
        for fmt in ("console", "json"):
            out.append((f"why-demo-{svc.replace('/', '-')}.{fmt}", ["why", svc, "--demo", "-o", fmt]))
    for b in ("B1-healthy", "B2-stale-endpoint"):
        bundle = str(BUNDLES / b / "bundle") if (BUNDLES / b / "bundle").is_dir() else str(BUNDLES / b)
        out.append((f"why-{b}-ledger.json", ["why", "svc/payments/ledger", "--bundle", bundle, "-o", "json"]))
    for shape in sorted(p for p in SHAPES.iterdir() if (p / "cluster").is_dir()):
        out.append((f"scan-shape-{shape.name}.json",
                    ["scan", "--snapshot", str(shape / "cluster"), "-o", "json", "--no-config-file"]))
    for dump in sorted(p for p in DUMPS.iterdir() if (p / "dump.txt").is_file()):
        out.append((f"analyze-{dump.name}.json", ["analyze", str(dump / "dump.txt"), "-o", "json"]))
    return out


def normalise(text: str) -> str:
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    return text.replace(str(ROOT), "<ROOT>")


def run(argv: list[str]) -> str:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120", TERM="dumb")
    proc = subprocess.run([sys.executable, "-m", "kpdoctor", "--color", "never", *argv],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    return normalise(f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}")


def golden_path(folder: Path, name: str) -> Path:
    """Where case `name` (e.g. `scan-demo.html`) is stored: `scan-demo.html.golden`."""
    return folder / (name + SUFFIX)


def first_difference(golden: bytes, actual: bytes) -> str | None:
    """None when the two are the same byte for byte, else where they first differ (1-based line)."""
    if golden == actual:
        return None
    at = next((i for i, (g, a) in enumerate(zip(golden, actual, strict=False)) if g != a), min(len(golden), len(actual)))
    line = golden.count(b"\n", 0, at) + 1
    start = golden.rfind(b"\n", 0, at) + 1
    return (f"byte {at} (line {line}) differs: golden {golden[start:at + 40]!r} "
            f"vs now {actual[start:at + 40]!r} (lengths {len(golden)} / {len(actual)})")


def main() -> None:
    dest = Path(sys.argv[1])
    dest.mkdir(parents=True, exist_ok=True)
    for name, argv in cases():
        golden_path(dest, name).write_bytes(run(argv).encode())


if __name__ == "__main__":
    main()
