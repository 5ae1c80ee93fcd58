"""Throwaway SSH "nodes" for tests and benchmarks: real sshd processes inside network namespaces.

Each node is a network namespace joined to the host by a veth pair addressed
from 198.18.0.0/15 (the benchmarking range, RFC 2544; no 10.x address ever
appears on the host), running Debian's sshd with a throwaway ed25519 host key,
`UsePAM no`, `StrictModes no` and an AuthorizedKeysFile in the lab's own
directory. The login user is a throwaway account with a plain /bin/sh shell
(no rc files, so no per-command shell start-up cost) created with useradd and
removed on close: by default a uid-0 alias (so collection runs privileged
without sudo), or an ordinary user for the sudo / unprivileged paths.
Only the sshd PIDs started here are killed; only the namespaces made here are
deleted. Never touches /root/.ssh or the host's ruleset.

A run that dies without `close()` (SIGKILL, a crashed CI runner) would leave a
uid-0 account and possibly a sudoers drop-in in /etc: `create()` first removes
such leftovers of earlier runs. An account is the lab's only when its name,
shell and home (a `kpd-sshlab-*` directory in the temp dir) all match, and it is
stale only when the process that made it is gone (its PID and start time are
recorded in the home directory) or, for an account without that record, its
home is gone or older than STALE_AFTER; a concurrent run's lab is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_PORT = 22
LISTEN_TIMEOUT = 30.0  # a loaded 2-core CI machine once needed more than 10 s (cause not established)
USER_RE = re.compile(r"^kpd[0-9a-f]{6}$")
WORKDIR_PREFIX = "kpd-sshlab-"
OWNER_FILE = "owner"
STALE_AFTER = 6 * 3600.0  # an account without an owner record is stale when its home is older than this
SUDOERS_DIR = Path("/etc/sudoers.d")
PASSWD = Path("/etc/passwd")


@dataclass
class LabNode:
    name: str
    netns: str
    address: str
    host_address: str
    pid: int | None = None
    host_key_line: str = ""


@dataclass
class SshLab:
    """Build with `SshLab.create()`, add nodes, always `close()` (also on failure)."""

    workdir: Path
    prefix: str
    user: str = ""
    user_key: Path = field(default_factory=Path)
    known_hosts: Path = field(default_factory=Path)
    nodes: dict[str, LabNode] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    sudoers: Path | None = None
    _index: int = 0
    _base: int = 0

    @classmethod
    def create(cls, *, privileged: bool = True, sudo: bool = False) -> SshLab:
        remove_stale_accounts()
        tag = secrets.token_hex(3)
        workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{tag}-"))
        os.chmod(workdir, 0o755)
        (workdir / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        lab = cls(workdir=workdir, prefix=f"kpd-{tag}", _base=secrets.randbelow(400) * 64)
        try:
            lab._make_user(privileged=privileged, sudo=sudo)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "host_ed25519")],
                           check=True, timeout=30)  # fmt: skip
            lab.known_hosts = workdir / "known_hosts"
            lab.known_hosts.write_text("")
        except Exception:
            lab.close()
            raise
        return lab

    def _make_user(self, *, privileged: bool, sudo: bool) -> None:
        self.user = f"kpd{secrets.token_hex(3)}"
        if _passwd_entry(self.user) is not None:  # an existing account (2^24 names) is never taken over
            self.user = ""
            raise RuntimeError("lab account name already in use; try again")
        argv = ["useradd", "-M", "-d", str(self.workdir), "-s", "/bin/sh"]
        if privileged:
            argv += ["-o", "-u", "0", "-g", "0"]
        subprocess.run([*argv, self.user], check=True, timeout=30, capture_output=True)
        # a new account is locked ("!"), and sshd without PAM refuses locked accounts even for keys
        subprocess.run(["usermod", "-p", "*", self.user], check=True, timeout=30, capture_output=True)
        self.user_key = self.workdir / "user_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.user_key)], check=True, timeout=30)
        (self.workdir / "authorized_keys").write_text(self.user_key.with_suffix(".pub").read_text())
        if sudo:
            self.sudoers = Path(f"/etc/sudoers.d/{self.user}")
            self.sudoers.write_text(f"{self.user} ALL=(ALL) NOPASSWD: ALL\n")
            os.chmod(self.sudoers, 0o440)

    def sshd_config(self, port: int, address: str) -> Path:
        conf = self.workdir / f"sshd_{address}.conf"
        conf.write_text(
            f"Port {port}\nListenAddress {address}\nHostKey {self.workdir / 'host_ed25519'}\n"
            f"PidFile none\nUsePAM no\nStrictModes no\nAuthorizedKeysFile {self.workdir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "AllowTcpForwarding yes\nMaxSessions 64\nMaxStartups 200:30:400\nLogLevel ERROR\n"
            "PrintMotd no\nUseDNS no\n"
        )
        return conf

    def add_node(self, name: str, *, sshd: bool = True, drop_all: bool = False) -> LabNode:
        """A namespace with a veth to the host; sshd on port 22 unless `sshd=False`; `drop_all` blackholes it."""
        index = self._base + self._index
        self._index += 1
        netns = f"{self.prefix}-{index}"
        host_if, node_if = f"kh{self.prefix[4:]}{index}"[:15], f"kn{self.prefix[4:]}{index}"[:15]
        n = index * 4
        net = f"198.{18 + n // 65536}.{(n // 256) % 256}"
        host_ip = f"{net}.{n % 256 + 1}"
        node_ip = f"{net}.{n % 256 + 2}"
        node = LabNode(name, netns, node_ip, host_ip)
        _run(["ip", "netns", "add", netns])  # fails if the name exists: never adopt (and later delete) another's
        self.nodes[name] = node
        _run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", node_if, "netns", netns])
        _run(["ip", "addr", "add", f"{host_ip}/30", "dev", host_if])
        _run(["ip", "link", "set", host_if, "up"])
        _run(["ip", "netns", "exec", netns, "ip", "addr", "add", f"{node_ip}/30", "dev", node_if])
        _run(["ip", "netns", "exec", netns, "ip", "link", "set", node_if, "up"])
        _run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"])
        if drop_all:
            _run(["ip", "netns", "exec", netns, "nft", "add table inet kpdlab; add chain inet kpdlab in "
                  "{ type filter hook input priority -300; policy drop; }"])  # fmt: skip
        if sshd:
            self.start_sshd(node)
        return node

    def start_sshd(self, node: LabNode) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        conf = self.sshd_config(SSH_PORT, node.address)
        log = self.workdir / f"sshd_{node.name}.log"
        with open(log, "wb") as log_handle:  # sshd -e logs to stderr: kept for the error below
            proc = subprocess.Popen(
                ["ip", "netns", "exec", node.netns, SSHD, "-D", "-e", "-f", str(conf), "-p", str(SSH_PORT)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_handle,
            )  # fmt: skip
        self.procs[node.name] = proc
        node.pid = proc.pid
        started = time.monotonic()
        last_error = ""
        while time.monotonic() < started + LISTEN_TIMEOUT:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd for {node.name} exited with {proc.returncode}: {_tail(log)}")
            try:
                with socket.create_connection((node.address, SSH_PORT), timeout=1.0):
                    break
            except OSError as exc:
                last_error = str(exc)
                time.sleep(0.1)
        else:
            raise RuntimeError(
                f"sshd for {node.name} did not start listening on {node.address}:{SSH_PORT} within "
                f"{LISTEN_TIMEOUT:.0f} s (last connect error: {last_error}; sshd log: {_tail(log)}; "
                f"sockets in {node.netns}: {self._listening(node)})"
            )
        pub = (self.workdir / "host_ed25519.pub").read_text().split()
        node.host_key_line = f"{node.address} {pub[0]} {pub[1]}\n"
        with open(self.known_hosts, "a", encoding="ascii") as handle:
            handle.write(node.host_key_line)

    def _listening(self, node: LabNode) -> str:
        """What listens in the node's namespace (for the start-up error only)."""
        try:
            out = subprocess.run(["ip", "netns", "exec", node.netns, "ss", "-Hltn"], capture_output=True,
                                 text=True, timeout=10).stdout  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            return f"unknown ({exc})"
        return " | ".join(line.split()[3] for line in out.splitlines() if len(line.split()) > 3) or "none"

    def netns_exec(self, node: str, *argv: str, input_text: str | None = None, timeout: float = 60) -> str:
        proc = subprocess.run(["ip", "netns", "exec", self.nodes[node].netns, *argv], input=input_text,
                              capture_output=True, text=True, timeout=timeout, check=True)  # fmt: skip
        return proc.stdout

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        for node in self.nodes.values():
            subprocess.run(["ip", "netns", "del", node.netns], capture_output=True, timeout=30)
        if self.sudoers is not None:
            self.sudoers.unlink(missing_ok=True)
        left = ""
        if self.user:
            left = _delete_account(self.user)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if left:  # loud: a uid-0 alias left in /etc/passwd must not go unnoticed
            raise RuntimeError(f"could not remove lab account {self.user}: {left}")


def _delete_account(user: str) -> str:
    """userdel with retries (another run's useradd may hold the passwd lock); '' when the account is gone."""
    why = ""
    for attempt in range(3):
        # -f: a uid-0 alias always "is used by" some process; without -r nothing but the account goes
        proc = subprocess.run(["userdel", "-f", user], capture_output=True, text=True, timeout=60)
        if _passwd_entry(user) is None:
            return ""
        why = proc.stderr.strip() or f"userdel exit status {proc.returncode}"
        time.sleep(0.5 * (attempt + 1))
    return why


def _passwd_entry(user: str) -> list[str] | None:
    try:
        lines = PASSWD.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user:
            return fields
    return None


def _start_time(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat): a PID alone may be reused by a later process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19] if ")" in stat else ""


def _is_stale(home: Path) -> bool:
    try:
        pid_text, _, started = (home / OWNER_FILE).read_text().strip().partition(" ")
        pid = int(pid_text)
    except FileNotFoundError:
        if not home.is_dir():
            return True
        try:
            return time.time() - home.stat().st_mtime > STALE_AFTER
        except OSError:
            return True
    except (OSError, ValueError):
        return True
    return _start_time(pid) != started or not started


def _lab_home(fields: list[str]) -> Path | None:
    """The account's home when it has the exact shape of a lab account (name, shell, home), else None."""
    home = Path(fields[5])
    tmp = Path(tempfile.gettempdir())
    if not USER_RE.match(fields[0]) or fields[6] != "/bin/sh" or home.parent != tmp:
        return None
    return home if home.name.startswith(WORKDIR_PREFIX) else None


def remove_stale_accounts() -> list[str]:
    """Remove lab accounts (and their sudoers drop-ins) left by runs that died without close()."""
    try:
        lines = PASSWD.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    removed: list[str] = []
    for line in lines:
        fields = line.split(":")
        if len(fields) < 7:
            continue
        home = _lab_home(fields)
        if home is None or not _is_stale(home):
            continue
        (SUDOERS_DIR / fields[0]).unlink(missing_ok=True)
        if not _delete_account(fields[0]):
            removed.append(fields[0])
            shutil.rmtree(home, ignore_errors=True)
    # drop-ins whose account no longer exists (the account went, the drop-in stayed)
    with contextlib.suppress(OSError):
        for path in SUDOERS_DIR.iterdir():
            if USER_RE.match(path.name) and _passwd_entry(path.name) is None:
                path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def scratch_netns(tag: str = "kpd") -> Iterator[str]:
    """A fresh, uniquely named network namespace (lo up), deleted on exit even when the body fails."""
    name = f"{tag}-{secrets.token_hex(4)}"
    _run(["ip", "netns", "add", name])
    try:
        _run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


_COUNTERS = re.compile(r" \[\d+:\d+\]$|counter packets \d+ bytes \d+")


def ruleset_of(netns: str) -> dict[str, str]:
    """Everything netfilter holds in a namespace (packet counters masked: traffic is not a change)."""
    out: dict[str, str] = {}
    for argv in (["iptables-nft-save"], ["iptables-legacy-save"], ["ip6tables-nft-save"], ["ip6tables-legacy-save"],
                 ["nft", "list", "ruleset"], ["cat", "/proc/net/ip_tables_names"], ["ipset", "list"]):  # fmt: skip
        proc = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=60)
        lines = [_COUNTERS.sub("", ln) for ln in proc.stdout.splitlines() if not ln.startswith("#")]
        out[" ".join(argv)] = "\n".join(lines)
    return out


def _tail(log: Path, limit: int = 400) -> str:
    try:
        text = log.read_text(errors="replace").strip()
    except OSError:
        return "unreadable"
    return text[-limit:].replace("\n", " / ") or "empty"
