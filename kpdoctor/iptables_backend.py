"""Which iptables backend (legacy or nf_tables) holds the copy of kube-proxy's rules that is maintained.

One definition, used by KP-BACKEND-SPLIT and by `kpdoctor.withhold`:
kubernetes-sigs/iptables-wrappers picks the backend by kubelet's
`KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY` chains, so when exactly one
backend holds them that one is maintained; otherwise the host's default
iptables (`iptables -V`) is.
"""

from __future__ import annotations

from kpdoctor.dataplane.chain_owners import HINT_CHAINS
from kpdoctor.node.parsed import IptablesView, ParsedNode


def has_hint(dump: IptablesView | None) -> bool:
    return dump is not None and any(c in dump.chains() for c in HINT_CHAINS)


def maintained_backend(legacy: IptablesView | None, nft: IptablesView | None, default_backend: str) -> tuple[str, str]:
    """("legacy" | "nft", how it was decided) from the two dumps and the host's default backend."""
    hint_legacy, hint_nft = has_hint(legacy), has_hint(nft)
    if hint_legacy != hint_nft:
        active = "legacy" if hint_legacy else "nft"
        return active, f"kubelet's {'/'.join(HINT_CHAINS)} chains are in the {active} backend"
    active = "legacy" if default_backend == "legacy" else "nft"
    return active, f"the host's default iptables is {default_backend or 'nf_tables'}"


def node_maintained_backend(p: ParsedNode) -> str:
    """The maintained backend of a node ("legacy" | "nft"), "" when no dump or version says."""
    default = p.iptables_version.backend if p.iptables_version else ""
    legacy = p.iptables("iptables-legacy-save.txt")
    nft = p.iptables("iptables-nft-save.txt")
    if nft is None and default == "nf_tables":
        nft = p.iptables("iptables-save.txt")
    if legacy is None and default == "legacy":
        legacy = p.iptables("iptables-save.txt")
    if not (has_hint(legacy) or has_hint(nft)) and not default:
        return ""
    return maintained_backend(legacy, nft, default)[0]
