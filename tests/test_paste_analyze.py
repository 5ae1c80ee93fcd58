"""Pasted-dump front doors (paste.clean_paste, the lenient iptables/nft/ipvs readers), the reliability verdict
and older kube-proxy layouts read by meaning. The small dumps here are hand-made in the shapes kube-proxy
v1.23 wrote (KUBE-XLB, KUBE-MARK-DROP) - a last resort where no public dump shows the whole chain; the real
dumps are in test_realworld_dumps.py."""

from __future__ import annotations

import json

import pytest

from kpdoctor.dataplane.analyze import analyze_text, detect_format
from kpdoctor.dataplane.paste import clean_paste
from kpdoctor.dataplane.semantic import DNAT, DROP, NODE_PORT
from kpdoctor.errors import InputError

SVC = "default/web:http"
XLB_V123 = f"""*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-MARK-DROP - [0:0]
:KUBE-SVC-AAAA - [0:0]
:KUBE-XLB-AAAA - [0:0]
:KUBE-SEP-ONE - [0:0]
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "{SVC}" -m tcp --dport 30080 -j KUBE-XLB-AAAA
-A KUBE-SVC-AAAA -m comment --comment "{SVC}" -j KUBE-SEP-ONE
-A KUBE-SEP-ONE -s 10.244.1.5/32 -m comment --comment "{SVC}" -j KUBE-MARK-MASQ
-A KUBE-SEP-ONE -p tcp -m comment --comment "{SVC}" -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-XLB-AAAA -s 10.244.0.0/16 -m comment --comment "Redirect pods trying to reach external loadbalancer VIP to clusterIP" -j KUBE-SVC-AAAA
-A KUBE-XLB-AAAA -m comment --comment "masquerade LOCAL traffic for {SVC} LB IP" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-XLB-AAAA -m comment --comment "route LOCAL traffic for {SVC} LB IP to service chain" -m addrtype --src-type LOCAL -j KUBE-SVC-AAAA
-A KUBE-XLB-AAAA -m comment --comment "{SVC} has no local endpoints" -j KUBE-MARK-DROP
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"""


def _nodeport(text: str):  # type: ignore[no-untyped-def]
    a = analyze_text(text, "t")
    assert a.view is not None
    return next(v for fe, v in a.view.frontends.items() if fe.kind == NODE_PORT), a


def test_xlb_without_local_endpoints_drops_like_the_kernel() -> None:
    v, a = _nodeport(XLB_V123)
    assert v.verdict == DROP and v.internal_targets == {"10.244.1.5:8080"}
    assert a.reliability.reliable
    assert any("KUBE-XLB" in n for n in a.version_notes) and any("KUBE-MARK-DROP" in n for n in a.version_notes)
    assert a.judgments() == [] and any("traffic policy Local" in j for j in a.observations())


def test_xlb_with_a_local_endpoint_dnats() -> None:
    text = XLB_V123.replace(
        f'-A KUBE-XLB-AAAA -m comment --comment "{SVC} has no local endpoints" -j KUBE-MARK-DROP',
        f'-A KUBE-XLB-AAAA -m comment --comment "Balancing rule 0 for {SVC}" -j KUBE-SEP-ONE')
    v, a = _nodeport(text)
    assert v.verdict == DNAT and v.endpoints == {"10.244.1.5:8080"}
    assert a.judgments() == []


def test_paste_cleaning_crlf_prompt_fence_indent_and_trailing_spaces() -> None:
    body = "\n".join("    " + line + "  " for line in XLB_V123.splitlines())
    text = "```\r\nroot@node-1:~# sudo iptables-save -t nat | grep -v FOO\r\n" + body.replace("\n", "\r\n") + "\r\n```\r\n"
    paste = clean_paste(text)
    assert paste.commands == ["sudo iptables-save -t nat | grep -v FOO"]
    assert paste.filtered and paste.table_hint() == "nat"
    assert paste.lines[0] == "*nat" and not any(line.endswith(" ") for line in paste.lines)
    v, _ = _nodeport(text)
    assert v.verdict == DROP


def test_iptables_minus_s_gets_its_table_from_the_prompt() -> None:
    minus_s = "$ iptables -t nat -S\n-P PREROUTING ACCEPT\n-N KUBE-SERVICES\n-N KUBE-SVC-B\n-N KUBE-SEP-B\n" \
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\n' \
        '-A KUBE-SERVICES -d 10.96.0.9/32 -p tcp -m comment --comment "ns/b:p cluster IP" -m tcp --dport 80 -j KUBE-SVC-B\n' \
        '-A KUBE-SVC-B -m comment --comment "ns/b:p" -j KUBE-SEP-B\n' \
        '-A KUBE-SEP-B -p tcp -m comment --comment "ns/b:p" -m tcp -j DNAT --to-destination 10.244.2.2:80\n'
    a = analyze_text(minus_s, "s")
    assert a.layout == "iptables -S"
    assert a.view is not None and [v.endpoints for v in a.view.frontends.values()] == [{"10.244.2.2:80"}]
    assert a.reliability.reliable  # `iptables -S` never prints the table: its absence is no sign of a cut


def test_probabilities_are_the_dumps() -> None:
    text = XLB_V123.replace(":KUBE-SEP-ONE - [0:0]", ":KUBE-SEP-ONE - [0:0]\n:KUBE-SEP-TWO - [0:0]\n:KUBE-SEP-THREE - [0:0]")
    text = text.replace(f'-A KUBE-SVC-AAAA -m comment --comment "{SVC}" -j KUBE-SEP-ONE', "\n".join([
        f'-A KUBE-SVC-AAAA -m comment --comment "{SVC}" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-ONE',
        f'-A KUBE-SVC-AAAA -m comment --comment "{SVC}" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-TWO',
        f'-A KUBE-SVC-AAAA -m comment --comment "{SVC}" -j KUBE-SEP-THREE',
        f'-A KUBE-SEP-TWO -p tcp -m comment --comment "{SVC}" -m tcp -j DNAT --to-destination 10.244.1.6:8080',
        f'-A KUBE-SEP-THREE -p tcp -m comment --comment "{SVC}" -m tcp -j DNAT --to-destination 10.244.1.7:8080']))
    v, a = _nodeport(text)
    shares = a.share(v.internal_targets)
    assert sorted(round(s, 3) for s in shares.values()) == [0.333, 0.333, 0.333]


def test_restore_input_out_of_a_kube_proxy_log() -> None:
    log = "I0402 07:14:55.286270       1 proxier.go:1592] Restoring iptables rules: " + XLB_V123
    a = analyze_text(log, "log")
    assert a.layout == "restore input (kube-proxy log)" and a.reliability.reliable


def test_format_by_content_not_by_name() -> None:
    nft_json = json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}},
                                        {"table": {"family": "ip", "name": "kube-proxy", "handle": 1}}]})
    assert detect_format(nft_json) == "nftables"
    assert analyze_text(nft_json, "iptables-save.txt").layout == "nft -j"
    assert detect_format("table ip kube-proxy {\n}\n") == "nftables"
    assert detect_format("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 1\n") == "ipvs"
    with pytest.raises(InputError, match="not a dataplane dump"):
        detect_format("hello world\n")
    with pytest.raises(InputError, match="not `nft -j"):
        detect_format('{"kind": "Service"}')


def test_unreliable_dump_withholds_the_comparison() -> None:
    from kpdoctor.dataplane.analyze import compare_to
    from kpdoctor.dataplane.semantic import SemanticView

    cut = XLB_V123.replace("COMMIT\n", "")
    a = analyze_text(cut, "cut")
    diffs, why = compare_to(a, SemanticView())
    assert diffs == [] and why is not None and "no COMMIT" in why
    ok = analyze_text(XLB_V123, "ok")
    diffs, why = compare_to(ok, SemanticView())
    assert why is None and diffs and {d.kind for d in diffs} == {"extra-frontend"}


def test_every_real_v136_dump_is_reliable() -> None:
    """No false 'unreliable' on what real kube-proxy v1.36 wrote (the bundles and the captured fixtures):
    vmap elements (`goto a, 1 : goto b }`), affinity gotos, chains of other owners."""
    from pathlib import Path

    from kpdoctor.dataplane.iptables_save import parse_iptables_save
    from kpdoctor.dataplane.nft import parse_nft
    from kpdoctor.dataplane.reliability import iptables_reliability, nft_reliability

    root = Path(__file__).parent / "fixtures"
    paths = sorted([*root.glob("bundles/*/bundle/nodes/*/iptables-save.txt"),
                    *root.glob("bundles/*/bundle/nodes/*/nft-ruleset.json"),
                    *root.glob("kube-proxy-v1.36/*/*/iptables-save.txt"),
                    *root.glob("kube-proxy-v1.36/*/*/nft-ruleset.json")])
    assert len(paths) >= 25
    for path in paths:
        text = path.read_text()
        if path.suffix == ".json":
            rel = nft_reliability(parse_nft(text, source=str(path)))
        else:
            rel = iptables_reliability(parse_iptables_save(text, str(path)))
        assert rel.reliable, (path, rel.problems)


def test_analyze_with_snapshot_finds_b2_stale_endpoint_and_nothing_on_edge2() -> None:
    import subprocess
    import sys
    from pathlib import Path

    b2 = Path(__file__).parent / "fixtures" / "bundles" / "B2-stale-endpoint" / "bundle"

    def run(node: str, dump: str) -> tuple[int, list[dict[str, object]]]:
        out = subprocess.run([sys.executable, "-m", "kpdoctor", "analyze", "--json", "--snapshot", str(b2 / "cluster"),
                              "--node", node, str(b2 / "nodes" / node / dump)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode in (0, 1), out.stderr
        return out.returncode, json.loads(out.stdout)

    code, doc = run("edge-1", "iptables-save.txt")
    cmp = doc[0]["comparison"]
    assert code == 1 and isinstance(cmp, dict) and cmp["withheld"] is None
    assert [(d["kind"], d["stale"]) for d in cmp["diffs"]] == [("stale-endpoints", ["10.244.53.12:8080"])]
    code, doc = run("edge-2", "nft-ruleset.json")
    cmp = doc[0]["comparison"]
    assert code == 0 and isinstance(cmp, dict) and cmp == {"withheld": None, "diffs": []}
    assert doc[0]["layout"] == "nft -j" and doc[0]["reliable"] is True


def test_hostile_names_are_escaped_in_the_text_output() -> None:
    import subprocess
    import sys

    dump = ('*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 10.0.0.1/32 -p tcp -m comment --comment '
            '"x\x1b]0;evil\x07/y:z has no endpoints" -m tcp --dport 80 -j REJECT\nCOMMIT\n')
    out = subprocess.run([sys.executable, "-m", "kpdoctor", "analyze", "-"], input=dump, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert "x\\x1b]0;evil\\x07/y:z" in out.stdout
