"""Local transport and the fact runner on bad input: a command that hangs, a segfaulting iptables-save, non-UTF-8
output, a 50 MB dump, a tool that is not installed. The "tools" are real executables (shell scripts) put first on
PATH; they never touch netfilter."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kpdoctor.node import collectors as C
from kpdoctor.node.gather import Budget, Gatherer
from kpdoctor.node.local import LocalTransport
from kpdoctor.node.state import Fact


def _tool(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


@pytest.fixture()
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return bindir


def _gatherer(deadline: float = 30.0) -> Gatherer:
    return Gatherer(LocalTransport(), C.CollectPlan(), Budget(time.monotonic() + deadline, None))


def test_hanging_command_times_out_others_unaffected(fake_path: Path) -> None:
    _tool(fake_path, "ipset", "exec sleep 30")
    g = _gatherer()
    g.tools = {"ipset", "uname"}
    spec = C.FactSpec("ipset-list.txt", "cmd", ("ipset", "list"), tool="ipset", timeout=0.5)
    start = time.monotonic()
    fact = g.spec_fact(spec)
    assert time.monotonic() - start < 3
    assert not fact.present and fact.error == "timed out after 0.5s"
    assert g.spec_fact(C.PHASE1[0]).present  # uname -r still fine


def test_segfaulting_full_save_falls_back_to_per_table_reads(fake_path: Path) -> None:
    # like iptables-save on a 10k-Service nf_tables ruleset: the full dump crashes, `-t TABLE` works
    _tool(fake_path, "iptables-save", 'if [ -z "$1" ]; then kill -SEGV $$; fi\n'
          'if [ "$2" = raw ]; then echo "table raw does not exist" >&2; exit 1; fi\n'
          'printf "*%s\\n:INPUT ACCEPT [0:0]\\nCOMMIT\\n" "$2"')  # fmt: skip
    g = _gatherer()
    g.tools = {"iptables-save"}
    g.facts["iptables-version.txt"] = Fact("iptables-version.txt", "iptables v1.8.9 (nf_tables)\n")
    fact = g.spec_fact(C.PHASE2[0])
    assert fact.present and fact.content is not None
    assert fact.content.startswith("*filter\n") and "*nat\n" in fact.content and "*raw" not in fact.content
    assert "killed by signal 11 (SIGSEGV)" in fact.error and "could not read: raw" in fact.error
    assert "iptables-save -t filter" in fact.source


def test_legacy_fallback_never_names_a_table_that_is_not_loaded(fake_path: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    _tool(fake_path, "iptables-legacy-save", f'echo "$*" >> {calls}; [ -n "$1" ] || exit 1; echo "*$2"; echo COMMIT')
    g = _gatherer()
    g.tools = {"iptables-legacy-save"}
    g.facts["ip_tables_names.txt"] = Fact("ip_tables_names.txt", "nat\n")
    fact = g.spec_fact(C.PHASE2[2])
    assert fact.content == "*nat\nCOMMIT\n"
    assert calls.read_text().split("\n") == ["", "-t nat", ""]  # -t filter would create the filter table


def test_non_utf8_output_is_kept_and_flagged(fake_path: Path) -> None:
    _tool(fake_path, "ipset", r"printf 'Name: caf\351\n\377\n'")
    g = _gatherer()
    g.tools = {"ipset"}
    fact = g.spec_fact(C.PHASE2[4])
    assert fact.content == "Name: caf\ufffd\n\ufffd\n"
    assert "not valid UTF-8: 2 byte(s)" in fact.stderr


def test_fifty_megabyte_dump(fake_path: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    line = b"-A KUBE-SEP-ABCDEFGHIJKLMNOP -p tcp -m comment --comment \"ns/svc:port\" -j DNAT --to 10.1.2.3:80\n"
    dump.write_bytes(line * (50 * 1024 * 1024 // len(line)))
    _tool(fake_path, "iptables-nft-save", f"cat {dump}")
    g = _gatherer()
    g.tools = {"iptables-nft-save"}
    fact = g.spec_fact(C.PHASE2[1])
    assert fact.present and len(fact.content or "") == dump.stat().st_size and not fact.truncated
    capped = C.FactSpec("x.txt", "cmd", ("iptables-nft-save",), tool="iptables-nft-save", max_bytes=1 << 20)
    small = g.spec_fact(capped)
    assert small.truncated and (small.content or "").endswith("\n") and len(small.content or "") <= 1 << 20


def test_missing_tool_and_missing_file_are_facts() -> None:
    g = _gatherer()
    g.tools = set()
    fact = g.spec_fact(C.IPVSADM)
    assert not fact.present and fact.error == "ipvsadm not installed"
    res = LocalTransport().read_file("/proc/net/no-such-kpd-file", timeout=1, max_bytes=10)
    assert res.error == "no such file"
    assert LocalTransport().run(["kpd-no-such-tool"], timeout=1, max_bytes=10).error == "not installed"


def test_node_deadline_skips_what_is_left() -> None:
    g = _gatherer(deadline=0.0)
    g.tools = {"uname"}
    assert g.spec_fact(C.PHASE1[0]).error == "skipped: the node's --timeout was reached"


def test_modules_builtin_path_only_from_a_plain_release() -> None:
    assert C.modules_builtin_spec("6.1.0-18-amd64\n").path == "/lib/modules/6.1.0-18-amd64/modules.builtin"  # type: ignore[union-attr]
    for bad in ("../../etc", "6.1 ; rm -rf /", "", "a/b"):
        assert C.modules_builtin_spec(bad) is None


def test_conntrack_filter_keeps_only_original_destination_service_ips() -> None:
    from kpdoctor.node.gather import original_in

    line = ("tcp      6 431999 ESTABLISHED src=10.244.0.5 dst=10.96.0.1 sport=40000 dport=443 "
            "src=10.81.0.1 dst=10.244.0.5 sport=6444 dport=40000 [ASSURED] mark=0 use=1")  # fmt: skip
    assert original_in(line, {"10.96.0.1"})
    assert not original_in(line, {"10.81.0.1"})  # only the reply direction's source
    assert C.conntrack_per_ip_argv("fd00::1") == ("conntrack", "-L", "-f", "ipv6", "-d", "fd00::1")
    with pytest.raises(ValueError):
        C.conntrack_per_ip_argv("10.96.0.1; reboot")


def test_kube_proxy_addresses_follow_its_config() -> None:
    t = {x.key: (x.host, x.port) for x in C.kube_proxy_targets("0.0.0.0:10256", "10.81.0.2:10249")}
    assert t["kube-proxy/healthz.json"] == ("127.0.0.1", 10256)
    assert t["kube-proxy/metrics.txt"] == ("10.81.0.2", 10249)
    t = {x.key: (x.host, x.port) for x in C.kube_proxy_targets("", "")}
    assert t["kube-proxy/configz.json"] == ("127.0.0.1", 10249)
    t = {x.key: (x.host, x.port) for x in C.kube_proxy_targets("[::]:9999", "nonsense")}
    assert t["kube-proxy/healthz.json"] == ("::1", 9999) and t["kube-proxy/metrics.txt"] == ("127.0.0.1", 10249)
