"""`kpdoctor.destructive`: the one list of command shapes that remove kube-proxy's objects or rules.

The commands are the real ones kpdoctor prints (the gate's cleanup plan, KP-LEFTOVER-RULES, KP-BACKEND-SPLIT,
KP-CILIUM-KPR) plus the harmless ones printed beside them, which must not be caught.
"""

from __future__ import annotations

import pytest

from kpdoctor.destructive import comment_out, is_destructive

DESTRUCTIVE = [
    "kubectl -n kube-system delete daemonset kube-proxy",
    "kubectl -n kube-system delete configmap kube-proxy-nftables",
    "kubectl delete ds -n kube-system kube-proxy",
    "iptables-nft-save | grep -v KUBE | iptables-nft-restore",
    "ip6tables-save | grep -v KUBE | ip6tables-restore   # on edge-1",
    "for t in nat filter mangle; do iptables-legacy -t $t -F; iptables-legacy -t $t -X; done   # on edge-1",
    "nft delete table ip kube-proxy",
    "nft delete table ip kube-proxy; nft delete table ip6 kube-proxy",
    "ipvsadm --clear; ip link delete kube-ipvs0",
    "ip link delete kube-ipvs0   # on edge-1",
    "ipset list -n | grep '^KUBE-' | xargs -r -n1 ipset destroy",
    "kube-proxy --cleanup",
    # as kpdoctor.shellcmd may quote values
    "kubectl -n 'kube-system' delete 'daemonset' 'kube-proxy'",
    "nft 'delete' table ip kube-proxy   # on 'edge-1'",
]
HARMLESS = [
    "kubectl -n kube-system describe pod kube-proxy-76gg5",
    "kubectl -n kube-system logs kube-proxy-76gg5 --previous",
    "kubectl -n kube-system delete pod -l k8s-app=cilium --field-selector spec.nodeName=edge-1",
    "iptables-save > /root/iptables-before-cleanup.txt   # on edge-1",
    "iptables-legacy-save | grep -c KUBE-   # on edge-1: expect 0",
    "nft list table ip kube-proxy > /root/kube-proxy-nft-before-cleanup.txt   # on edge-1",
    "ipvsadm --save -n > /root/ipvs-before-cleanup.txt   # on edge-1",
    "conntrack -D -p tcp --orig-dst 10.96.150.30 --orig-port-dst 80 --dst-nat 10.244.53.12   # on edge-1",
    "update-alternatives --display iptables   # on edge-1",
    "# kube-proxy DaemonSet and ConfigMaps: none left in the input",
    "# kubectl -n kube-system delete daemonset kube-proxy",
    "kubectl cordon edge-1   # never run kube-proxy --cleanup here",
    "iptables -t nat -C KUBE-SERVICES -m comment --comment 'a #x -F' -j ACCEPT",
]


@pytest.mark.parametrize("command", DESTRUCTIVE)
def test_destructive_commands_are_recognised(command: str) -> None:
    assert is_destructive(command)
    assert not is_destructive(comment_out(command))
    assert comment_out(command) == "# " + command


@pytest.mark.parametrize("command", HARMLESS)
def test_harmless_commands_are_not(command: str) -> None:
    assert not is_destructive(command)


def test_argv_form_and_hash_inside_quotes() -> None:
    assert is_destructive(["kubectl", "-n", "kube-system", "delete", "daemonset", "kube-proxy"])
    assert not is_destructive(["kubectl", "-n", "kube-system", "get", "daemonset", "kube-proxy"])
    # a '#' inside a quoted value does not start a comment: what follows it is still read
    assert is_destructive("iptables-save | grep -v 'KUBE#' | iptables-restore")
