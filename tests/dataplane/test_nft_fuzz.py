"""Hypothesis fuzzing of the nft parsers: whatever a node prints, only InputError escapes.

Seeds are the real kube-proxy v1.36.2 dumps (golden fixtures), mutated; plus arbitrary text and
arbitrary JSON documents. A dump that parses must also give a semantic view without crashing,
because checks consume it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpdoctor.dataplane.nft import parse_nft_json, parse_nft_text
from kpdoctor.dataplane.nft_semantic import semantic_view
from kpdoctor.errors import InputError
from tests.support.nft import nft_scenarios

SEED = next(p for p in nft_scenarios() if p.name.startswith("V2")) / "nftables"
SEED_TEXT = (SEED / "nft-ruleset.txt").read_text()
SEED_JSON = (SEED / "nft-ruleset.json").read_text()
SEED_DOC = json.loads(SEED_JSON)
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _consume(parse: Any, text: str) -> None:
    try:
        rs = parse(text, source="fuzz")
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("fuzz")
        return
    for family in ("IPv4", "IPv6"):
        semantic_view(rs, family)


@st.composite
def mutated(draw: Any, seed: str) -> str:
    text = seed
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["cut", "delete", "insert", "dup"]))
        if op == "cut":
            text = text[:pos]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)):]
        elif op == "insert":
            text = text[:pos] + draw(st.sampled_from(["{", "}", '"', ",", " : ", "\n", "[", "]", " . ", "\\", "x"])) + text[pos:]
        else:
            end = min(len(text), pos + draw(st.integers(1, 200)))
            text = text[:end] + text[pos:end] + text[end:]
    return text


@FUZZ
@given(mutated(SEED_TEXT))
def test_text_parser_mutations(text: str) -> None:
    _consume(parse_nft_text, text)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list('table ip kube-proxy{}chain set map "elements=,:.;\n\t#0123456789'))))
def test_text_parser_random(text: str) -> None:
    _consume(parse_nft_text, text)


@FUZZ
@given(mutated(SEED_JSON))
def test_json_parser_mutations(text: str) -> None:
    _consume(parse_nft_json, text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12)
    | st.sampled_from(["ip", "kube-proxy", "goto", "@service-ips", "tcp", "10.0.0.1"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["family", "table", "name", "chain", "expr", "elem", "match", "left", "right", "op", "type",
                         "map", "concat", "payload", "goto", "target", "set", "dnat", "addr", "port", "vmap", "key",
                         "data", "numgen", "prio", "timeout", "size", "flags", "comment", "val", "mangle", "value"]),
        children, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(["table", "chain", "rule", "set", "map", "metainfo", "element"]),
                                json_values, min_size=1, max_size=1), max_size=6))
def test_json_parser_random_objects(objects: list[Any]) -> None:
    _consume(parse_nft_json, json.dumps({"nftables": objects}))


@FUZZ
@given(st.data())
def test_json_parser_seed_objects_with_random_fields(data: Any) -> None:
    objects = [dict(o) for o in SEED_DOC["nftables"]]
    i = data.draw(st.integers(0, len(objects) - 1))
    (kind, body), = objects[i].items()
    if isinstance(body, dict) and body:
        body = dict(body)
        field = data.draw(st.sampled_from(sorted(body)))
        body[field] = data.draw(json_values)
        objects[i] = {kind: body}
    _consume(parse_nft_json, json.dumps({"nftables": objects}))
