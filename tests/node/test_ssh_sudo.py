"""Non-root logins over real SSH: `sudo -n` when it works without a password, unprivileged facts when not.

A throwaway ordinary account (plain /bin/sh) logs into a real sshd in a namespace; for the sudo case a
sudoers drop-in for that account only is written and removed with the lab."""

from __future__ import annotations

import pytest

from kpdoctor.node.collect import CollectOptions, collect_node
from kpdoctor.node.ssh import SshOptions
from kpdoctor.node.sshlab import SshLab

pytestmark = pytest.mark.root("sshd", "ssh-keygen", "useradd", "sudo", "iptables-nft")


@pytest.mark.parametrize("sudo", [True, False])
def test_non_root_login(sudo: bool) -> None:
    lab = SshLab.create(privileged=False, sudo=sudo)
    try:
        node = lab.add_node("edge-s")
        lab.netns_exec("edge-s", "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
        state = collect_node("edge-s", options=CollectOptions(
            transport="ssh", address=node.address, timeout=30,
            ssh=SshOptions(user=lab.user, key_files=(str(lab.user_key),), known_hosts=str(lab.known_hosts))))  # fmt: skip
    finally:
        lab.close()
    assert state.reachable and state.fact("uname-r.txt").present  # unprivileged facts always work
    save = state.fact("iptables-nft-save.txt")
    if sudo:
        assert save.present and ":KUBE-SERVICES" in (save.content or "")
    else:
        assert not save.present and save.error  # a clear per-fact reason (permission), not a crash
        assert state.fact("sysctl.txt").present
