"""k3s' embedded kube-router beside kube-proxy: a real `iptables -S` (k3s issue #5611, see the SOURCE file beside
the dump) as the iptables-save text a bundle holds, read through kpdoctor's paste reader (`-P`/`-N` become
declarations in the filter table; no rule or chain is added or dropped)."""

from __future__ import annotations

from pathlib import Path

from kpdoctor.dataplane.iptables_lenient import parse_iptables_lenient

K3S_5611 = (Path(__file__).resolve().parents[1] / "fixtures" / "realworld" / "chain-owners"
            / "k3s-5611-kube-router-minus-S" / "dump.txt")
# kube-proxy's chains in that dump (the rest are kube-router's, the kubelet's and Docker's)
KUBE_PROXY_CHAINS = ("KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-CANARY", "KUBE-SERVICES")


def k3s_kube_router_save(*, without_kube_proxy: bool = False) -> str:
    """The dump as iptables-save text; `without_kube_proxy`: every line naming one of kube-proxy's chains dropped
    (the node after kube-proxy's own cleanup, kube-router still running)."""
    text = K3S_5611.read_text()
    if without_kube_proxy:
        text = "\n".join(line for line in text.splitlines()
                         if not any(f" {c}" in f"{line} " and f" {c} " in f"{line} " for c in KUBE_PROXY_CHAINS))
    return parse_iptables_lenient(text, str(K3S_5611), table_hint="filter").dump.to_text()
