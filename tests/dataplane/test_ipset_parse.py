"""ipset parsers (`kpdoctor.dataplane.ipset`) on real ipset 7.17 output captured on this machine (the sets the
reference proxier renders for golden scenario V2, node kpnode1, in IPVS mode; tests/fixtures/ipvs/v2-kpnode1) and on
bad input. Fuzzing and the real-netfilter round trip are in test_ipvs_parse.py with the IPVS parsers.
"""

from __future__ import annotations

import pytest

from kpdoctor.dataplane.ipset import parse_ipset, parse_ipset_list, parse_ipset_save, validate_member
from kpdoctor.errors import InputError
from kpdoctor.proxier.ipvs import ipvs_state
from tests.support.ipvs import SAMPLES, read, v2_input


def test_real_ipset_output_matches_rendered_sets() -> None:
    """Real `ipset list`/`ipset save` (ipset 7.17) of the rendered sets parse back to the same members."""
    state = ipvs_state(v2_input())
    for parsed in (parse_ipset_list(read(SAMPLES / "ipset-list.txt")), parse_ipset_save(read(SAMPLES / "ipset-save.txt")),
                   parse_ipset(read(SAMPLES / "ipset-list.txt"))):
        assert set(parsed.sets) == {s.name for s in state.ipsets}
        for s in state.ipsets:
            assert parsed.sets[s.name].type == s.type
            assert parsed.sets[s.name].members == s.members, s.name
        assert parsed.sets["KUBE-CLUSTER-IP"].option("bucketsize") == "12"  # ipset's own header addition


def test_bad_ipset() -> None:
    text = read(SAMPLES / "ipset-list.txt")
    head = text[: text.index("Members:\n", text.index("KUBE-CLUSTER-IP")) + len("Members:\n")]
    with pytest.raises(InputError, match="declares 7 entries but lists 1") as err:
        parse_ipset_list(head + "10.96.0.1,tcp:443\n", "ipset-list.txt")
    assert err.value.where is not None and err.value.where.startswith("ipset-list.txt:")
    with pytest.raises(InputError, match="malformed member") as err:
        parse_ipset_list(head + "10.96.0.1,tcp\n", "ipset-list.txt")
    assert err.value.where == f"ipset-list.txt:{head.count(chr(10)) + 1}"
    with pytest.raises(InputError, match="not created above"):
        parse_ipset_save("add KUBE-X 1.2.3.4\n")
    with pytest.raises(InputError, match="Type:'/'Header:'"):
        parse_ipset_list("Name: KUBE-X\n")


@pytest.mark.parametrize(("set_type", "member", "ok"), [
    ("hash:ip,port", "10.96.0.1,tcp:443", True),
    ("hash:ip,port", "10.96.0.1,tcp", False),
    ("hash:ip,port,net", "10.96.0.1,tcp:443,10.244.0.0/16", True),
    ("hash:ip,port,net", "10.96.0.1,tcp:443,10.244.0.0/99", False),
    ("bitmap:port", "30080", True),
    ("hash:ip", "not-an-ip", False),
])
def test_validate_member(set_type: str, member: str, ok: bool) -> None:
    assert validate_member(set_type, member) is ok
