"""Read-only collection where nothing was loaded: a fresh network namespace with no legacy x_tables tables.

Legacy iptables creates a table the moment anything asks for it (`iptables-legacy-save -t nat` or
`iptables-legacy -L` in a namespace without a nat table instantiates one), so a collector that reads
"each table" changes the node it inspects. These tests run kpdoctor's real local collector (under
`ip netns exec`, against the real kernel) in a brand-new namespace and assert that the legacy table lists
(`/proc/net/ip_tables_names`, `/proc/net/ip6_tables_names`) and the nft ruleset are exactly as before —
also when every full `*-save` fails and the per-table fallback runs (forced with wrapper scripts that fail
a full dump and hand `-t TABLE` reads to the real binaries).

python-iptables (the local transport's reader for legacy tables when iptables-legacy-save is missing) is
checked too: it reads only loaded tables and changes nothing; and importing it no longer runs `modprobe`.
This kernel has no /proc/modules, so python-iptables' import-time module loading cannot happen here for
real: that test pretends /proc/modules exists and records (never runs) the modprobe calls it would make.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kpdoctor.node.sshlab import ruleset_of, scratch_netns
from tests.conftest import GOLDEN

V1 = GOLDEN / "V1-basic-clusterip"
REPO = Path(__file__).resolve().parents[2]
SAVES = ("iptables-save", "iptables-legacy-save", "iptables-nft-save",
         "ip6tables-save", "ip6tables-legacy-save", "ip6tables-nft-save")  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _ns(netns: str, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=120,
                          **kw)  # type: ignore[call-overload]  # fmt: skip


def _kernel_tables(netns: str) -> dict[str, str]:
    """What the kernel holds in the namespace: legacy table lists and the nft ruleset (incl. iptables-nft's)."""
    return {
        "ip_tables_names": _ns(netns, "cat", "/proc/net/ip_tables_names").stdout,
        "ip6_tables_names": _ns(netns, "cat", "/proc/net/ip6_tables_names").stdout,
        "nft": _ns(netns, "nft", "list", "ruleset").stdout,
    }


def _failing_full_saves(bindir: Path) -> None:
    """Wrappers that fail a full dump (like the segfaulting iptables-save of a 10k-Service node) so the
    collector falls back to per-table reads, which go to the real binaries."""
    for tool in SAVES:
        real = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout.strip()  # fmt: skip
        assert real, f"{tool} not installed"
        script = bindir / tool
        script.write_text(f'#!/bin/sh\nif [ $# -eq 0 ]; then echo "simulated crash" >&2; exit 139; fi\n'
                          f'exec {real} "$@"\n')  # fmt: skip
        script.chmod(0o755)


def _collect(netns: str, env: dict[str, str]) -> dict[str, dict[str, object]]:
    proc = _ns(netns, sys.executable, "-m", "kpdoctor", "node", "kpnode1", "--transport", "local", "--snapshot",
               str(V1 / "cluster"), "--facts-json", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    facts: dict[str, dict[str, object]] = json.loads(proc.stdout)["facts"]
    return facts


@pytest.mark.root("iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "nft", "conntrack")
def test_collection_in_fresh_netns_creates_no_table(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _failing_full_saves(bindir)
    with scratch_netns("kpd-ro") as netns:
        before = _kernel_tables(netns)
        full = ruleset_of(netns)
        assert before["ip_tables_names"] == "" and before["ip6_tables_names"] == ""  # really nothing loaded
        plain = _collect(netns, _env())
        assert _kernel_tables(netns) == before
        fallback = _collect(netns, _env(PATH=f"{bindir}:{os.environ.get('PATH', '')}"))
        after = _kernel_tables(netns)
        assert ruleset_of(netns) == full
    assert after == before
    # the collector did run what the test is about: the full dumps, then the per-table fallback
    assert plain["iptables-legacy-save.txt"]["content"] == ""
    assert plain["ip_tables_names.txt"]["content"] == ""
    assert "read per table" in str(fallback["iptables-nft-save.txt"]["error"])
    assert "-t nat" in str(fallback["iptables-nft-save.txt"]["source"])
    # no legacy table was loaded, so the legacy fallback read nothing per table (that would create tables)
    legacy = fallback["iptables-legacy-save.txt"]
    assert legacy["content"] is None and "-t" not in str(legacy["source"]) and "simulated crash" in str(legacy["error"])


@pytest.mark.root("iptables-legacy-restore", "iptables-legacy-save", "nfacct")
def test_python_iptables_reader_reads_loaded_tables_only_and_changes_nothing() -> None:
    code = ("import sys, time, json; from kpdoctor.node import iptc_reader; "
            "from kpdoctor.node.gather import Gatherer, Budget; from kpdoctor.node.local import LocalTransport; "
            "from kpdoctor.node.collectors import CollectPlan, PHASE1; "
            "g = Gatherer(LocalTransport(), CollectPlan(), Budget(time.monotonic() + 60, None), "
            "legacy_reader=iptc_reader.dump_legacy_tables); "
            "spec = [s for s in PHASE1 if s.key == 'ip_tables_names.txt'][0]; g.facts[spec.key] = g.spec_fact(spec); "
            "f = g.iptc_fact(); print(json.dumps({'content': f.content, 'error': f.error, 'source': f.source}))")
    with scratch_netns("kpd-iptc") as netns:
        before = _kernel_tables(netns)
        empty = json.loads(_ns(netns, sys.executable, "-c", code, env=_env()).stdout)
        assert _kernel_tables(netns) == before == {**before, "ip_tables_names": "", "ip6_tables_names": ""}
        assert empty["content"] is None and "no legacy tables loaded" in empty["error"]

        _ns(netns, "nfacct", "add", "ct_state_invalid_dropped_pkts", check=True)
        _ns(netns, "iptables-legacy-restore", input=(V1 / "iptables-legacy" / "iptables-legacy-save.txt").read_text(),
            check=True)  # fmt: skip
        loaded = _kernel_tables(netns)
        full = ruleset_of(netns)
        proc = _ns(netns, sys.executable, "-c", code, env=_env())
        assert proc.returncode == 0, proc.stderr
        read = json.loads(proc.stdout)
        assert _kernel_tables(netns) == loaded and ruleset_of(netns) == full
    assert sorted(loaded["ip_tables_names"].split()) == ["filter", "mangle", "nat"]
    assert loaded["ip6_tables_names"] == ""  # ip6 legacy tables were not created by the reader
    tables = json.loads(read["content"])
    assert sorted(tables) == ["filter", "mangle", "nat"]
    assert "KUBE-SERVICES" in tables["nat"] and read["source"].endswith("nat,mangle,filter")


PROBE = r"""
import io, json, os, subprocess, sys
calls = []
real_exists, real_popen = os.path.exists, subprocess.Popen
os.path.exists = lambda p: True if p == "/proc/modules" else real_exists(p)  # pretend a modular kernel

class Recorder:  # records modprobe (never runs it); every other process runs for real
    def __new__(cls, argv, *a, **kw):
        if "modprobe" not in str(argv[0]):
            return real_popen(argv, *a, **kw)
        calls.append([str(x) for x in argv])
        return super().__new__(cls)

    def __init__(self, argv, *a, **kw):
        self.returncode, self.stdout, self.stderr = 0, io.BytesIO(b""), io.BytesIO(b"")

    def wait(self, *a, **kw):
        return 0

subprocess.Popen = Recorder
if sys.argv[1] == "plain":
    import iptc  # noqa: F401
else:
    from kpdoctor.node import iptc_reader
    assert iptc_reader.available()
    iptc_reader.import_iptc().Table
print(json.dumps(calls))
"""


def test_python_iptables_is_imported_without_loading_kernel_modules() -> None:
    plain = subprocess.run([sys.executable, "-c", PROBE, "plain"], capture_output=True, text=True, timeout=60,
                           env=_env())  # fmt: skip
    ours = subprocess.run([sys.executable, "-c", PROBE, "kpdoctor"], capture_output=True, text=True, timeout=60,
                          env=_env())  # fmt: skip
    assert plain.returncode == 0 and ours.returncode == 0, plain.stderr + ours.stderr
    # the unguarded import would load both modules; kpdoctor's import loads none
    assert [c[-1] for c in json.loads(plain.stdout)] == ["ip_tables", "ip6_tables"]
    assert json.loads(ours.stdout) == []
