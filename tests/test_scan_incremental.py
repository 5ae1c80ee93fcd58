"""Incremental node analysis (`kpdoctor.dataplane.iptables_delta.DeltaDump`) gives exactly the full analysis' findings.

A scan analyses the first big iptables dump in full and every later node's dump as that reference
plus the chains whose lines differ. These tests build a bundle of a synthetic cluster (bench/synth.py:
200 Services x 5 endpoints, 8 nodes), each node's dumps rendered by the reference proxier (kube-proxy
v1.36 iptables mode for that node), then make several nodes deliberately different - a stale DNAT
target, a missing service chain, a legacy/nft backend split, a different eTP=Local endpoint set, a
stale filter DROP, a missing KUBE-SERVICES rule (the full-extraction fallback), extra chains that shift
every later line number - and scan the bundle twice: incrementally and with `INCREMENTAL = False`
(every dump parsed and extracted in full). The JSON reports must be identical apart from timings, and
the incremental run must really have taken the delta path for the perturbed nodes.

No network, no root: the dumps are text files; the rules are what the reference proxier renders.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kpdoctor.dataplane.iptables_delta as delta_engine
import kpdoctor.node.dumps as dumps
from kpdoctor.dataplane.iptables_save import parse_iptables_save
from kpdoctor.scanner import ScanRequest, scan

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from synth import SynthSpec, synth_cluster, write_snapshot  # noqa: E402

SPEC = SynthSpec(services=200, endpoints=5, nodes=8, seed=3, local_fraction=0.5, nodeport_fraction=0.3)
SYSCTL = "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.route_localnet = 1\n"


def _render(cluster: Any, name: str) -> str:
    from kpdoctor.proxier.context import build_input
    from kpdoctor.proxier.render import render

    return render(build_input(cluster, name))


def _chain_lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.split("\n") if line.startswith(prefix)]


def _stale_dnat(text: str) -> str:
    """One endpoint chain DNATs to a pod IP nothing backs (the seed's stale endpoint)."""
    line = next(x for x in _chain_lines(text, "-A KUBE-SEP-") if "--to-destination" in x)
    return text.replace(line, re.sub(r"--to-destination \S+:", "--to-destination 10.250.9.9:", line), 1)


def _drop_service_chain(text: str) -> str:
    """A service chain missing entirely (declaration and rules); KUBE-SERVICES still jumps to it."""
    jump = next(x for x in _chain_lines(text, "-A KUBE-SERVICES ") if "-j KUBE-SVC-" in x)
    chain = jump.rsplit("-j ", 1)[1].strip()
    return "\n".join(x for x in text.split("\n") if not x.startswith((f":{chain} ", f"-A {chain} ")))


def _other_local_endpoints(text: str) -> str:
    """An eTP=Local service's local chain on this node jumps nowhere (its local endpoint went away)."""
    line = next(x for x in _chain_lines(text, "-A KUBE-SVL-") if "-j KUBE-SEP-" in x)
    return text.replace(line + "\n", "", 1)


def _stale_filter_drop(text: str) -> str:
    """A filter DROP for a NodePort that has endpoints (the node missed an endpoint update)."""
    anchor = next(x for x in _chain_lines(text, "-A KUBE-NODEPORTS ") if "--dport" in x)
    port = re.search(r"--dport (\d+)", anchor)
    assert port is not None
    extra = (f'-A KUBE-EXTERNAL-SERVICES -m comment --comment "stale has no local endpoints" -m addrtype '
             f"--dst-type LOCAL -m tcp -p tcp --dport {port.group(1)} -j DROP")
    lines = text.split("\n")
    at = lines.index(next(x for x in lines if x.startswith(":KUBE-EXTERNAL-SERVICES ")))
    while lines[at + 1].startswith(":"):
        at += 1
    lines.insert(at + 1, extra)  # the first rule after the filter table's chain declarations
    return "\n".join(lines)


def _shift_lines(text: str) -> str:
    """Extra user chains (unrelated to Services) early in the nat table: every later line moves down."""
    lines = text.split("\n")
    at = lines.index("*nat") + 1
    lines[at:at] = [":EXTRA-A - [0:0]", ":EXTRA-B - [0:0]"]
    post = next(i for i, x in enumerate(lines) if x.startswith("-A ") and i > at)
    lines[post:post] = ["-A EXTRA-A -j RETURN", "-A EXTRA-B -s 192.0.2.0/24 -j RETURN"]
    return "\n".join(lines)


def _missing_frontend(text: str) -> str:
    """One KUBE-SERVICES rule gone: the nat entry chain differs, so this node is extracted in full."""
    line = next(x for x in _chain_lines(text, "-A KUBE-SERVICES ") if "-j KUBE-SVC-" in x)
    return text.replace(line + "\n", "", 1)


PERTURB = {
    "node-0001": _stale_dnat,
    "node-0002": _drop_service_chain,
    "node-0004": _other_local_endpoints,
    "node-0005": _stale_filter_drop,
    "node-0006": _shift_lines,
    "node-0007": _missing_frontend,
}
SPLIT = "node-0003"  # kube-proxy's rules in both backends, the legacy copy stale


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("incremental") / "bundle"
    write_snapshot(SPEC, base / "cluster")
    cluster = synth_cluster(SPEC)
    for k in range(SPEC.nodes):
        name = SPEC.node_name(k)
        node_dir = base / "nodes" / name
        node_dir.mkdir(parents=True)
        dump = _render(cluster, name)
        legacy = ""
        if name in PERTURB:
            dump = PERTURB[name](dump)
        if name == SPLIT:
            legacy = _stale_dnat(dump)
        (node_dir / "iptables-save.txt").write_text(dump)
        (node_dir / "iptables-nft-save.txt").write_text(dump)
        (node_dir / "iptables-legacy-save.txt").write_text(legacy)
        (node_dir / "iptables-version.txt").write_text("iptables v1.8.9 (nf_tables)\n")
        (node_dir / "sysctl.txt").write_text(SYSCTL)
    return base


def _report(bundle: Path, incremental: bool = True) -> dict[str, Any]:
    out = scan(ScanRequest(bundle=str(bundle), fail_on=None, incremental=incremental))
    return _strip(out.report)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in ("generated_at", "duration_ms")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_incremental_findings_equal_full(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    compared: list[str] = []
    real_delta = delta_engine.IptablesRefs.delta

    def spy_delta(self: delta_engine.IptablesRefs, text: str, source: str) -> Any:
        found = real_delta(self, text, source)
        if found is not None:
            used.append(source.split("/", 1)[0])
        return found

    import kpdoctor.dataplane.iptables_semantic as sem

    real_view_delta = sem.semantic_view_delta

    def spy_view_delta(*args: Any, **kwargs: Any) -> Any:
        got = real_view_delta(*args, **kwargs)
        if got is not None:
            compared.append("delta")
        return got

    monkeypatch.setattr(delta_engine.IptablesRefs, "delta", spy_delta)
    monkeypatch.setattr(sem, "semantic_view_delta", spy_view_delta)
    incremental = _report(bundle)
    full = _report(bundle, incremental=False)

    assert incremental == full
    # The perturbed nodes really went through the delta (node-0007 only structurally: its nat entry
    # chain differs, so its semantic view is extracted in full), and the comparison was incremental.
    assert {"node-0001", "node-0002", "node-0003", "node-0004", "node-0005", "node-0006", "node-0007"} <= set(used)
    assert len(compared) >= 5
    # ... and the faults are there, with evidence from each node's own file and line numbers.
    findings = [f for c in full["checks"] for f in c.get("groups", ())]
    text = json.dumps(findings)
    assert "10.250.9.9" in text  # the stale DNAT target (node-0001 and node-0003's legacy copy)
    assert "both iptables backends" in text
    split = [g for g in findings if "both iptables backends" in g["message"]]
    assert split and split[0]["nodes"] == [SPLIT]
    stale = [g for g in findings if "10.250.9.9" in g["message"]]
    assert stale and "node-0001" in stale[0]["nodes"]


def _randomly_edited(lines: list[str], *, rounds: int, edits: tuple[int, int],
                     edit: Callable[[list[str], random.Random], list[str]]) -> Iterator[list[str]]:
    """`rounds` copies of `lines`, each after a random count (within `edits`) of `edit`s; seeded, so repeatable."""
    rng = random.Random(11)
    for _ in range(rounds):
        new = list(lines)
        for _ in range(rng.randint(*edits)):
            new = edit(new, rng)
        yield new


def _edit_rule_or_chain(lines: list[str], rng: random.Random) -> list[str]:
    """A rule edited, deleted or duplicated with a source match, or a new KUBE-SEP chain declared."""
    i = rng.randrange(1, len(lines) - 2)
    what = rng.random()
    if what < 0.3 and lines[i].startswith("-A "):
        lines[i] = lines[i] + " -m comment --comment edited"
    elif what < 0.55 and lines[i].startswith("-A "):
        del lines[i]
    elif what < 0.8 and lines[i].startswith("-A "):
        lines.insert(i, lines[i].replace(" -j ", " -s 198.51.100.7 -j ", 1))
    else:
        decl = next((k for k in range(i, 0, -1) if lines[k].startswith(":")), None)
        if decl is not None:
            lines.insert(decl + 1, f":KUBE-SEP-NEW{rng.randrange(10**6)} - [0:0]")
    return lines


def test_delta_structure_view_equals_full_parse() -> None:
    """A delta dump's structure view (`light_of_delta`) answers every structural question exactly as the full parse does, with the
    node's own line numbers, for random edits (substitutions, insertions, deletions, new chains)."""
    cluster = synth_cluster(SynthSpec(services=60, endpoints=3, nodes=3, seed=5))
    base_text = _render(cluster, "node-0000")
    ref_full = parse_iptables_save(base_text, "ref")
    refs = delta_engine.IptablesRefs(min_lines=100)
    refs.offer(base_text, ref_full, "node-0000")
    assert refs.refs
    tried = 0
    for lines in _randomly_edited(base_text.split("\n"), rounds=25, edits=(1, 6), edit=_edit_rule_or_chain):
        text = "\n".join(lines)
        try:
            own = parse_iptables_save(text, "node")
        except Exception:  # noqa: BLE001 - an edit the parser rejects: the delta must refuse it too
            assert refs.delta(text, "node") is None
            continue
        delta = refs.delta(text, "node")
        if delta is None:
            continue
        tried += 1
        want = dumps.light_from_full(own)
        got = dumps.light_of_delta(delta)
        assert {t: dict(p) for t, p in got.policies.items()} == {t: dict(p) for t, p in want.policies.items()}
        assert got.kube_chains() == want.kube_chains()
        assert got.chains() == want.chains() and got.chains("nat") == want.chains("nat")
        for table, chains in own.tables.items():
            for name in chains.chains:
                assert got.chain_rules(table, name) == want.chain_rules(table, name), (table, name)
            assert list(got.rules[table]) == list(want.rules[table])
        for token in (" -j DNAT", "edited", "198.51.100.7", "-m recent", "no such token"):
            node = _fake_parsed(text, refs)
            assert dumps.fact_contains(node, "iptables-save.txt", token) == (token in text)
    assert tried >= 15


def _fake_parsed(text: str, refs: delta_engine.IptablesRefs) -> dumps.SharedParsedNode:
    from kpdoctor.node.state import Fact, NodeState

    state = NodeState("node", "bundle", {"iptables-save.txt": Fact(key="iptables-save.txt", content=text)})
    return dumps.SharedParsedNode(state, dumps=dumps.NodeDumps(state, refs))


def test_align_is_a_valid_common_subsequence() -> None:
    rng = random.Random(7)
    for _ in range(200):
        old = [f"l{rng.randrange(40)}" for _ in range(rng.randint(0, 60))]
        new = list(old)
        for _ in range(rng.randint(0, 8)):
            op = rng.random()
            if op < 0.4 and new:
                del new[rng.randrange(len(new))]
            elif op < 0.8:
                new.insert(rng.randint(0, len(new)), f"l{rng.randrange(50)}")
            elif new:
                new[rng.randrange(len(new))] = f"x{rng.randrange(5)}"
        pos: dict[str, int] = {}
        dups: dict[str, list[int]] = {}
        for i, line in enumerate(old):
            dups.setdefault(line, []).append(i)
        for line, at in list(dups.items()):
            if len(at) == 1:
                pos[line] = at[0]
                del dups[line]
        got = delta_engine.align(new, old, pos, dups, 10**6)
        assert got is not None
        un, ur = got
        kept_new = [x for i, x in enumerate(new) if i not in set(un)]
        kept_old = [x for j, x in enumerate(old) if j not in set(ur)]
        assert kept_new == kept_old
        assert un == sorted(set(un)) and ur == sorted(set(ur))


def test_bundle_loader_decodes_identical_files_once(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming bundle reader shares one decoded text between byte-identical big files and still
    gives exactly the node state the plain reader gives (same facts, same order, same metadata)."""
    import kpdoctor.scanner as scanner

    _, source = scanner.open_bundle(bundle)
    monkeypatch.setattr(scanner, "_DEDUP_MIN_BYTES", 1000)
    shared = {name: source.load(name) for name in source.names()}
    monkeypatch.setattr(scanner, "_DEDUP_MIN_BYTES", 10**12)
    for name, state in shared.items():
        plain = source.load(name)
        assert state == plain and list(state.facts) == list(plain.facts)
        assert state.text("iptables-save.txt") is state.text("iptables-nft-save.txt")


def test_align_text_equals_the_line_by_line_definition() -> None:
    """Scans align a node's raw dump with `_align_text`; it must give `_align`'s result on the split
    lines, for edits anywhere (first/last line, truncation, appended lines, repeated lines)."""
    from kpdoctor.dataplane.iptables_save import parse_iptables_save
    from tests.conftest import GOLDEN

    text = (GOLDEN / "V5-large-cluster" / "iptables" / "iptables-save.txt").read_text()
    ref = delta_engine.IptablesRef(text, parse_iptables_save(text), "ref")
    pos, dups = ref.positions()
    base = text.split("\n")
    differing = 0

    def edit(new: list[str], rng: random.Random) -> list[str]:
        op = rng.random()
        at = rng.randrange(len(new)) if new else 0
        if op < 0.3 and new:
            del new[at]
        elif op < 0.55:
            new.insert(rng.randint(0, len(new)), rng.choice(base))  # a repeated or moved line
        elif op < 0.75 and new:
            new[at] = new[at] + " -j X"
        elif op < 0.85:
            new = new[: rng.randint(0, len(new))]  # truncated dump
        else:
            new.append(f"-A KUBE-SERVICES -j EXTRA{rng.randrange(9)}")
        return new

    for new in _randomly_edited(base, rounds=150, edits=(0, 6), edit=edit):
        node_text = "\n".join(new)
        want = delta_engine.align(node_text.split("\n"), ref.lines, pos, dups, 10**6)
        got = delta_engine.align_text(node_text, ref, pos, dups, 10**6)
        if want is None:
            assert got is None
            continue
        assert got is not None
        assert (got[0], got[1]) == want
        assert [got[2][i] for i in range(len(new))] == new
        differing += bool(want[0] or want[1])
    assert differing > 100  # the edits really made the two sides differ
