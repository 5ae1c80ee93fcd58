"""Load a rendered ruleset into a lab namespace, and dump a namespace's whole ruleset.

kube-proxy's iptables rules match two nfacct counters; the kernel refuses such
rules where the counters do not exist (`iptables-restore --test` does not
notice), so `apply_iptables` creates them first, as kube-proxy does at start-up.
nfacct objects are per network namespace, so this never touches the host's.

`dump_ruleset` reads every place rules can hide (both iptables backends, both
families, and the nftables ruleset): a node with rules in both backends is a
classic fault, and the read-only test needs to see *everything* unchanged.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from kpdoctor.lab.netns import LabError, run

NFACCT_COUNTERS = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")
BACKENDS = ("nft", "legacy")
RESTORE_BINARIES = {"nft": "iptables-nft-restore", "legacy": "iptables-legacy-restore"}
APPLY_TIMEOUT = 900.0  # iptables-nft-restore of 10k services takes minutes on this kind of machine
_NFACCT_NAME = re.compile(r"\}\s*=\s*(\S+?);")


def ensure_nfacct(netns: str) -> None:
    """Create kube-proxy's nfacct counters in `netns` unless they already exist there."""
    listed = nfacct_names(netns)
    for name in NFACCT_COUNTERS:
        if name not in listed:
            run(["nfacct", "add", name], netns=netns)


def nfacct_names(netns: str) -> set[str]:
    """Counter names in `netns` (`nfacct list` prints `{ pkts = N, bytes = N } = NAME;`)."""
    listed = run(["nfacct", "list"], netns=netns, check=False).stdout
    return {m.group(1) for m in _NFACCT_NAME.finditer(listed)}


def restore_binary(backend: str) -> str:
    if backend not in RESTORE_BINARIES:
        raise LabError(f"unknown iptables backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    binary = RESTORE_BINARIES[backend]
    if shutil.which(binary) is None:
        raise LabError(f"{binary} is not installed")
    return binary


def apply_iptables(netns: str, rules: str, *, backend: str = "nft", timeout: float = APPLY_TIMEOUT) -> None:
    """iptables-restore `rules` (iptables-save syntax) into `netns` on the chosen backend.

    Tables named in `rules` are replaced (no --noflush), so applying twice gives the same state.
    """
    binary = restore_binary(backend)
    ensure_nfacct(netns)
    run([binary], netns=netns, input=rules, timeout=timeout)


def apply_nft(netns: str, rules: str, *, timeout: float = APPLY_TIMEOUT) -> None:
    """`nft -f -` the rendered nftables ruleset into `netns`."""
    run(["nft", "-f", "-"], netns=netns, input=rules, timeout=timeout)


def apply_rendered(netns: str, rules: str, *, mode: str, backend: str = "nft", timeout: float = APPLY_TIMEOUT) -> None:
    """Apply what the reference proxier rendered for `mode` (iptables -> backend, nftables -> nft)."""
    if mode == "iptables":
        apply_iptables(netns, rules, backend=backend, timeout=timeout)
    elif mode == "nftables":
        apply_nft(netns, rules, timeout=timeout)
    else:
        raise LabError(f"the lab cannot apply mode {mode!r} (iptables or nftables; this kernel has no IPVS)")


# (label, command) read by dump_ruleset; a missing binary is recorded, not fatal.
DUMP_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("iptables-nft-save", ("iptables-nft-save",)),
    ("ip6tables-nft-save", ("ip6tables-nft-save",)),
    ("iptables-legacy-save", ("iptables-legacy-save",)),
    ("ip6tables-legacy-save", ("ip6tables-legacy-save",)),
    ("nft list ruleset", ("nft", "list", "ruleset")),
    ("nfacct list", ("nfacct", "list")),
)

_COUNTERS = re.compile(r"\[\d+:\d+\]")
_NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_NFACCT = re.compile(r"pkts = \d+, bytes = \d+")


@dataclass(frozen=True)
class RulesetDump:
    """Everything a namespace's netfilter holds, per source, as text."""

    parts: tuple[tuple[str, str], ...]

    def get(self, label: str) -> str:
        return dict(self.parts).get(label, "")

    def normalized(self) -> RulesetDump:
        """Drop what changes without anyone changing rules: header timestamps and packet counters."""
        out = []
        for label, text in self.parts:
            lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
            body = "\n".join(lines)
            body = _COUNTERS.sub("[0:0]", body)
            body = _NFT_COUNTER.sub("counter packets N bytes N", body)
            body = _NFACCT.sub("pkts = N, bytes = N", body)
            out.append((label, body))
        return RulesetDump(tuple(out))

    def text(self) -> str:
        return "".join(f"==> {label} <==\n{body.rstrip()}\n" for label, body in self.parts)


def dump_ruleset(netns: str, *, timeout: float = 120.0) -> RulesetDump:
    """The full ruleset of `netns` (both iptables backends and families, nft, nfacct names)."""
    parts = []
    for label, argv in DUMP_COMMANDS:
        if shutil.which(argv[0]) is None:
            parts.append((label, f"<{argv[0]} not installed>"))
            continue
        result = run(list(argv), netns=netns, timeout=timeout, check=False)
        body = result.stdout if result.returncode == 0 else f"<exit {result.returncode}: {result.stderr.strip()}>"
        parts.append((label, body))
    return RulesetDump(tuple(parts))
