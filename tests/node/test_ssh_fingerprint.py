"""Host-key fingerprints are shown as OpenSSH shows them (SHA256:base64), checked against the real
`ssh-keygen -l` of the same keys (Ed25519, ECDSA and RSA keys made by the real `ssh-keygen`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from kpdoctor.node.ssh import _describe, openssh_fingerprint

KEY_TYPES = {"ed25519": paramiko.Ed25519Key, "ecdsa": paramiko.ECDSAKey, "rsa": paramiko.RSAKey}


def make_key(tmp: Path, kind: str) -> tuple[paramiko.PKey, str]:
    """A host key made by ssh-keygen, loaded by paramiko, and ssh-keygen's own fingerprint of it."""
    keygen = shutil.which("ssh-keygen")
    assert keygen, "openssh-client is installed by .ci/run"
    path = tmp / f"host_{kind}"
    subprocess.run([keygen, "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, timeout=60)
    listed = subprocess.run([keygen, "-l", "-E", "sha256", "-f", f"{path}.pub"], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()  # fmt: skip
    return KEY_TYPES[kind].from_private_key_file(str(path)), listed[1]


@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path, kind: str) -> None:
    key, expected = make_key(tmp_path, kind)
    assert expected.startswith("SHA256:")
    assert openssh_fingerprint(key) == expected


def test_changed_host_key_message_names_both_fingerprints(tmp_path: Path) -> None:
    for sub in ("got", "known"):
        (tmp_path / sub).mkdir()
    got, got_fp = make_key(tmp_path / "got", "ed25519")
    expected, expected_fp = make_key(tmp_path / "known", "ed25519")
    message = _describe(paramiko.BadHostKeyException("edge-1", got, expected), "edge-1:22", 5.0)
    assert f"ssh-ed25519 {got_fp}, known_hosts has {expected_fp}" in message
    assert "possible man-in-the-middle" in message
    assert got.get_fingerprint().hex() not in message  # not paramiko's MD5 hex, which ssh never shows
