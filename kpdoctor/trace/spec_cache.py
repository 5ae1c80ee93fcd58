"""Compiled iptables rule specs shared by every dump of one run.

`trace --matrix` walks the dumps of many nodes that hold mostly the same rules (the same Services, the same
chain names): a spec compiled once serves them all. A compiled spec depends on its text only (matches take the
packet and the node's context when called), so sharing it changes no result. Bounded: past `limit` entries
specs are compiled again each time rather than kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kpdoctor.trace.ipt_match import Compiled, compile_spec, quick_dst

LIMIT = 500_000  # entries per table (a rule spec is a few hundred bytes: bounded memory on hostile dumps)


@dataclass
class SpecCache:
    limit: int = LIMIT
    _compiled: dict[str, Compiled] = field(default_factory=dict)
    _quick: dict[str, tuple[int, int, int] | None] = field(default_factory=dict)

    def compile(self, spec: str) -> Compiled:
        found = self._compiled.get(spec)
        if found is None:
            found = compile_spec(spec)
            if len(self._compiled) < self.limit:
                self._compiled[spec] = found
        return found

    def quick_dst(self, spec: str) -> tuple[int, int, int] | None:
        try:
            return self._quick[spec]
        except KeyError:
            found = quick_dst(spec)
            if len(self._quick) < self.limit:
                self._quick[spec] = found
            return found
