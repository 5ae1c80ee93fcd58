"""Can this dump be what the kernel holds? And which kube-proxy layout wrote it?

A verdict drawn from a dump that the kernel cannot hold is worse than none: a
stale-endpoint finding on a paste cut short, or on DNAT targets that the
userspace `iptables` printed as `0.0.0.0:0` because it is older than the
kernel's DNAT revision, sends an operator after a fault that is not there. So
a dump is *unreliable* when
- a rule jumps / goes to (or an nft verdict map names) a Service-path chain the
  dump does not hold (the kernel refuses such a ruleset: the paste is truncated
  or filtered);
- a DNAT rule has no usable address: `--to-destination` missing, empty, `:0`,
  `0.0.0.0:0`, or `--random` / `--persistent` where the address belongs (the
  userspace `iptables` is too old to decode the kernel's DNAT revision: itself
  worth a finding);
- the text around it says so (`partial`: no COMMIT, `...` elisions, a grep).

`layout_notes` names rules written by kube-proxy versions older than the
reference (v1.36): KUBE-XLB-* chains (externalTrafficPolicy=Local before
v1.24), KUBE-MARK-DROP for "no local endpoints" (before v1.25), the userspace
proxier's KUBE-PORTALS-* chains. They are read by meaning; the note makes the
version skew visible instead of silent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kpdoctor.dataplane.iptables_save import IptablesDump, tokenize
from kpdoctor.dataplane.nft import NftRuleset

# Chains whose absence changes where a Service's packets go (a KUBE-MARK-* chain only sets a mark whose
# meaning is known; other projects' chains are not kube-proxy's path)
_PATH_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-XLB-", "KUBE-FW-", "KUBE-NODEPORTS",
                  "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES")
_BAD_DNAT = re.compile(r"^(?:|:0|0\.0\.0\.0:0|0\.0\.0\.0|\[::\]:0|:)$")
TOO_OLD = "iptables userspace too old to read these rules"


@dataclass(frozen=True)
class Reliability:
    """`problems`: why the dump cannot be the kernel's ruleset (empty: reliable). `userspace_too_old`: the
    DNAT rules that an `iptables` older than the kernel's DNAT revision printed without their address."""

    problems: tuple[str, ...] = ()
    userspace_too_old: tuple[str, ...] = ()
    missing_chains: tuple[str, ...] = ()

    @property
    def reliable(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One sentence, said once."""
        return "unreliable dump: " + "; ".join(self.problems) + " - no stale-endpoint verdict is drawn from it"


def _dnat_problem(spec: str) -> str | None:
    try:
        args = tokenize(spec)
    except ValueError:
        return None
    values = [args[i + 1] if i + 1 < len(args) else "" for i, a in enumerate(args) if a == "--to-destination"]
    if not values:
        return "DNAT without --to-destination"
    for value in values:
        if _BAD_DNAT.match(value) or value.startswith("--") or value.startswith(":"):
            return f"DNAT --to-destination {value or '(empty)'}"
    return None


def iptables_reliability(dump: IptablesDump, partial: Iterable[str] = ()) -> Reliability:
    problems = list(partial)
    missing: dict[str, str] = {}
    bad_dnat: list[str] = []
    for table in dump.tables.values():
        for chain in table.chains.values():
            for spec in chain.specs:
                target = _target(spec)
                if target is None:
                    continue
                if target == "DNAT":
                    why = _dnat_problem(spec)
                    if why:
                        bad_dnat.append(f"-A {chain.name} {spec}")
                elif target not in table.chains and target.startswith(_PATH_PREFIXES):
                    missing.setdefault(target, chain.name)
    if missing:
        first = sorted(missing)[:3]
        problems.append(f"{len(missing)} chain(s) that rules jump to are missing from the dump ("
                        + ", ".join(f"{c} from {missing[c]}" for c in first)
                        + (", ..." if len(missing) > 3 else "") + "): a truncated or filtered paste")
    if bad_dnat:
        problems.append(f"{len(bad_dnat)} DNAT rule(s) print no usable address (e.g. `{_short(bad_dnat[0])}`): "
                        f"{TOO_OLD} (compare `iptables -V` with the one inside kube-proxy's image)")
    return Reliability(tuple(problems), tuple(bad_dnat), tuple(sorted(missing)))


def _target(spec: str) -> str | None:
    """The rule's `-j` / `-g` target, cut from the text (tokenized only when a quote could hide it)."""
    padded = " " + spec
    j = max(padded.rfind(" -j "), padded.rfind(" -g "))
    if j < 0:
        return None
    if j > padded.rfind('"'):
        return padded[j + 4:].split(" ", 1)[0] or None
    try:
        args = tokenize(spec)
    except ValueError:
        return None
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-j", "-g", "--jump", "--goto")]
    return found[-1] if found else None


def nft_reliability(ruleset: NftRuleset, partial: Iterable[str] = ()) -> Reliability:
    problems = list(partial)
    missing: dict[str, str] = {}
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                for m in re.finditer(r"\b(?:jump|goto)\s+(\S+)", rule.text):
                    name = m.group(1).rstrip(",;}").strip('"')  # `vmap { 0 : goto a, 1 : goto b }`
                    if not name.startswith("@") and name not in table.chains:
                        missing.setdefault(name, f"chain {chain.name}")
        for s in table.sets.values():
            for el in s.elements:
                if el.value:
                    vm = re.match(r"(?:jump|goto)\s+(\S+)", el.value)
                    target = vm.group(1).rstrip(",;}").strip('"') if vm else ""
                    if target and target not in table.chains:
                        missing.setdefault(target, f"map {s.name}")
    if missing:
        first = sorted(missing)[:3]
        problems.append(f"{len(missing)} chain(s) that rules or verdict maps send packets to are missing from "
                        "the dump (" + ", ".join(f"{c} from {missing[c]}" for c in first)
                        + (", ..." if len(missing) > 3 else "") + "): a truncated or filtered paste")
    return Reliability(tuple(problems), (), tuple(sorted(missing)))


def layout_notes(dump: IptablesDump) -> list[str]:
    """Which older kube-proxy layout the rules show (empty for v1.25+ layouts)."""
    notes: list[str] = []
    nat = dump.table("nat")
    chains = set(nat.chains) if nat is not None else set()
    if any(c.startswith("KUBE-XLB-") for c in chains):
        notes.append("KUBE-XLB-* chains: written by kube-proxy before v1.24 (externalTrafficPolicy=Local); read by "
                     "meaning against the v1.36 reference, where they are KUBE-EXT-*")
    marked_drop = nat is not None and any(
        "-j KUBE-MARK-DROP" in spec for name, ch in nat.chains.items()
        if name.startswith(("KUBE-XLB-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")) for spec in ch.specs)
    if marked_drop:
        notes.append("KUBE-MARK-DROP in Service chains: kube-proxy before v1.25 marks packets it drops (filter "
                     "KUBE-FIREWALL drops mark 0x8000); v1.25+ writes a filter DROP rule instead - same verdict")
    if any(c.startswith("KUBE-PORTALS-") for c in chains):
        notes.append("KUBE-PORTALS-* chains: the userspace proxier (kube-proxy v1.0-v1.25 `--proxy-mode=userspace`), "
                     "whose REDIRECTs to kube-proxy's own ports are not Service DNAT rules: not read")
    return notes


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
