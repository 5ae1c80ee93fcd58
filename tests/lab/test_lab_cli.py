"""`kpdoctor lab bench`: its promise in --help, its input errors, and a small real run that leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kpdoctor.lab import netns
from kpdoctor.lab.bench import plan
from kpdoctor.lab.cluster import bench_service_ip, bench_services
from kpdoctor.lab.rules import kube_services_order


def _kpdoctor(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdoctor", *args], capture_output=True, text=True, timeout=timeout)


def test_help_says_it_creates_and_deletes_its_own_namespaces() -> None:
    out = _kpdoctor("lab", "bench", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "CREATES its own network namespaces" in text and "DELETES the namespaces" in text
    assert "never touches the host's own rules" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--services", "lots"], "--services 'lots'"),
        (["--services", "0"], "out of range"),
        (["--variants", "ipvs"], "unknown ipvs"),
        (["--format", "xml"], "--format 'xml'"),
        (["--from", "moon"], "--from 'moon'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = _kpdoctor("lab", "bench", *args)
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kpdoctor: error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_plan_skips_the_slow_backend_above_its_limit() -> None:
    cases = plan([1000, 10000], ["iptables-nft", "nftables"], nft_backend_limit=5000)
    skipped = {(c.variant, c.services) for c, reason in cases if reason}
    assert skipped == {("iptables-nft", 10000)}
    assert len(cases) == 4


def test_bench_service_ips_are_unique_and_in_the_service_cidr() -> None:
    ips = [bench_service_ip(i) for i in range(20000)]
    assert len(set(ips)) == len(ips)
    assert all(ip.startswith("10.96.") and ip != "10.96.0.1" for ip in ips)
    assert all(0 < int(ip.rsplit(".", 1)[1]) < 255 for ip in ips)
    svcs = bench_services(5, ["10.244.1.10", "10.244.1.11"], target_port=8080)
    assert [s.endpoints for s in svcs[:2]] == [["10.244.1.10"], ["10.244.1.11"]]


def test_kube_services_order_reads_kube_proxy_and_iptables_save_forms() -> None:
    text = "\n".join([
        "*filter",
        "-A KUBE-SERVICES -d 10.96.0.9/32 -p tcp -m tcp --dport 80 -j REJECT",
        "COMMIT",
        "*nat",
        '-A KUBE-SERVICES -m comment --comment "a/b:p cluster IP" -m tcp -p tcp -d 10.96.0.5 --dport 80 -j KUBE-SVC-A',
        '-A KUBE-SERVICES -d 10.96.0.4/32 -p tcp -m comment --comment "a/c:p cluster IP" -m tcp --dport 443 '
        "-j KUBE-SVC-B",
        "-A KUBE-SERVICES -d 192.0.2.1/32 -p tcp -m tcp --dport 80 -j KUBE-EXT-C",
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        "COMMIT",
    ])
    assert kube_services_order(text) == [("10.96.0.5", 80), ("10.96.0.4", 443)]


@pytest.mark.root("ip", "iptables-nft-restore", "iptables-legacy-restore", "nft", "nfacct")
def test_small_real_bench_run_reports_every_variant_and_cleans_up() -> None:
    out = _kpdoctor("lab", "bench", "--services", "300", "--rounds", "1", "--per-round", "30", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    rows = {r["variant"]: r for r in report["results"]}
    assert set(rows) == {"iptables-nft", "iptables-legacy", "nftables"}
    for row in rows.values():
        assert row["services"] == 300 and not row["error"] and not row["skipped"]
        assert row["samples"] == 30 and row["failures"] == 0
        assert row["first_us"] > 0 and row["last_us"] > 0 and row["direct_us"] > 0
        assert row["first_service"] != row["last_service"]
    assert report["machine"]["kernel"]
    # nothing left behind: none of the namespaces each case used still exists
    prefixes = {row["lab_prefix"] for row in rows.values()}
    assert len(prefixes) == 3 and all(p.startswith("kpd-") for p in prefixes)
    assert not [n for n in netns.list_namespaces() if any(n.startswith(p + "-") for p in prefixes)]


def test_without_root_the_bench_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from kpdoctor.cli import main

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "bench", "--services", "10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kpdoctor: error: the lab needs root (it creates network namespaces and loads netfilter rules)"]
