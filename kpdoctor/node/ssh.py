"""SSH transport (paramiko): one connection per node, many channels, host keys verified by default.

Security rules this module keeps:
- host keys are checked against known_hosts; an unknown host is refused unless
  `--accept-new-host-keys` (which still refuses a *changed* key, like
  OpenSSH's accept-new);
- the remote command line is built only from fixed argv lists, each element
  passed through shlex.quote, so no Node, Service or nft name reaches a shell
  unquoted;
- kube-proxy's HTTP ports are read through a direct-tcpip channel: nothing
  listens on the node that was not there before;
- `sudo -n` is used only when the login user is not root and sudo works without
  a password; otherwise commands run unprivileged and their failures are facts.
"""

from __future__ import annotations

import bisect
import contextlib
import getpass
import logging
import os
import secrets
import shlex
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpdoctor.node.hostaddr import is_host
from kpdoctor.node.local import http_request, http_result
from kpdoctor.node.transport import NOT_FOUND, BatchItem, RunResult, TransportError, cut_at_line

# paramiko logs every refused forward at WARNING; refused kube-proxy ports are facts, not log noise
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

REMOTE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_POLL = 0.25


@dataclass(frozen=True)
class SshOptions:
    user: str | None = None
    key_files: tuple[str, ...] = ()
    port: int | None = None
    config_path: str | None = None  # default ~/.ssh/config when it exists
    jump_host: str | None = None  # [user@]host[:port]
    known_hosts: str | None = None  # default ~/.ssh/known_hosts (+ /etc/ssh/ssh_known_hosts)
    accept_new_host_keys: bool = False
    connect_timeout: float = 10.0
    sudo: bool = True  # use `sudo -n` when not root and it works
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    key_files: tuple[str, ...]
    jump: str | None
    known_hosts: str


def _ssh_config(path: str | None) -> Any:
    import paramiko

    candidate = Path(path).expanduser() if path else Path("~/.ssh/config").expanduser()
    if path and not candidate.is_file():
        raise TransportError(f"--ssh-config {path}: no such file")
    if candidate.is_file():
        try:
            return paramiko.SSHConfig.from_path(str(candidate))
        except (OSError, ValueError) as exc:
            raise TransportError(f"cannot read ssh config {candidate}: {exc}") from None
    return paramiko.SSHConfig()


def resolve_endpoint(node_name: str, address: str, options: SshOptions) -> Endpoint:
    """Flags win over ~/.ssh/config (looked up by node name and by address), which wins over defaults."""
    # ssh_config `Match exec` expands %h through a shell: only an IP address or a DNS name is looked up. A node
    # name that is neither is not looked up (its explicit address still serves) and is never connected to.
    if address and not is_host(address):
        raise TransportError(f"refusing to ssh: the address {address!r} is neither an IP address nor a DNS name")
    if not address and not is_host(node_name):
        raise TransportError(f"refusing to ssh: the node name {node_name!r} is neither an IP address nor a DNS name")
    config = _ssh_config(options.config_path)
    by_name = config.lookup(node_name) if is_host(node_name) else {}
    by_addr = config.lookup(address) if address else {}
    merged: dict[str, Any] = {**by_name, **{k: v for k, v in by_addr.items() if k != "hostname"}}
    host = address or str(by_name.get("hostname") or node_name)
    user = options.user or merged.get("user") or getpass.getuser()
    port = options.port or int(merged.get("port") or 22)
    keys = options.key_files or tuple(str(Path(k).expanduser()) for k in merged.get("identityfile") or ())
    jump = options.jump_host or merged.get("proxyjump")
    known = options.known_hosts or str(merged.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0]
    return Endpoint(host, port, str(user), tuple(keys), jump or None, str(Path(known).expanduser()))


def _parse_jump(spec: str, default_user: str) -> tuple[str, str, int]:
    user, _, rest = spec.rpartition("@")
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else 22
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
        port = int(port_text)
    return user or default_user, host, port


def _accept_new_policy(path: str, lock: threading.Lock) -> Any:
    """A paramiko policy accepting and recording unknown host keys (a changed key is still refused)."""
    import paramiko

    class AcceptNew(_AcceptNew, paramiko.MissingHostKeyPolicy):
        pass

    return AcceptNew(path, lock)


class _AcceptNew:
    """Accept and record unknown host keys (a changed key is still refused by paramiko itself)."""

    def __init__(self, path: str, lock: threading.Lock) -> None:
        self.path = path
        self.lock = lock

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        with self.lock:
            client.get_host_keys().add(hostname, key.get_name(), key)
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="ascii") as handle:
                    handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            except OSError:
                pass  # accepted for this run even when the file is read-only


_KNOWN_HOSTS_LOCK = threading.Lock()


def _client(endpoint: Endpoint, options: SshOptions) -> Any:
    import paramiko

    client = paramiko.SSHClient()
    if options.known_hosts is None:
        with contextlib.suppress(OSError, paramiko.SSHException):
            client.load_system_host_keys()
    if Path(endpoint.known_hosts).is_file():
        try:
            client.load_host_keys(endpoint.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"cannot read known_hosts {endpoint.known_hosts}: {exc}") from None
    elif options.known_hosts is not None and not options.accept_new_host_keys:
        raise TransportError(f"--known-hosts {options.known_hosts}: no such file")
    if options.accept_new_host_keys:
        client.set_missing_host_key_policy(_accept_new_policy(endpoint.known_hosts, _KNOWN_HOSTS_LOCK))
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def openssh_fingerprint(key: Any) -> str:
    """A host key's fingerprint as OpenSSH prints it (`ssh-keygen -l`, ssh's prompts): SHA256:<base64, unpadded>."""
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _describe(exc: BaseException, where: str, timeout: float) -> str:
    import paramiko

    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"host key of {where} does not match known_hosts ({exc.key.get_name()} {openssh_fingerprint(exc.key)}"
                f", known_hosts has {openssh_fingerprint(exc.expected_key)}): refusing to connect (possible "
                "man-in-the-middle)")  # fmt: skip
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication failed for {where} ({exc})"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"host key of {where} is not in known_hosts: refusing (add it, or pass --accept-new-host-keys)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"connect to {where} timed out after {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError | paramiko.ssh_exception.NoValidConnectionsError):
        return f"connection to {where} refused"
    if isinstance(exc, paramiko.ChannelException):
        return f"jump host could not reach {where}: {exc.text if hasattr(exc, 'text') else exc}"
    if isinstance(exc, OSError):
        return f"cannot connect to {where}: {exc.strerror or exc}"
    return f"ssh to {where} failed: {exc}"


class SshTransport:
    name = "ssh"

    def __init__(self, node_name: str, address: str, options: SshOptions | None = None) -> None:
        self.node_name = node_name
        self.options = options or SshOptions()
        self.address = address
        self.endpoint: Endpoint | None = None
        self._client: Any = None
        self._jump: Any = None
        self._prefix: list[str] = []
        self._timeout_tool = False
        self.privilege = ""  # "root" | "sudo" | "unprivileged (...)"

    # ---- connection -----------------------------------------------------------------
    def connect(self, timeout: float) -> None:
        opts = self.options
        endpoint = resolve_endpoint(self.node_name, self.address, opts)
        self.endpoint = endpoint
        self.address = endpoint.host
        where = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
        limit = min(timeout, opts.connect_timeout)
        sock = None
        try:
            if endpoint.jump:
                juser, jhost, jport = _parse_jump(endpoint.jump, endpoint.user)
                jump_ep = Endpoint(jhost, jport, juser, endpoint.key_files, None, endpoint.known_hosts)
                self._jump = _client(jump_ep, opts)
                try:
                    self._jump.connect(jhost, jport, username=juser, key_filename=list(endpoint.key_files) or None,
                                       timeout=limit, banner_timeout=limit, auth_timeout=limit)  # fmt: skip
                except Exception as exc:
                    raise TransportError("jump host: " + _describe(exc, f"{juser}@{jhost}:{jport}", limit)) from None
                sock = self._jump.get_transport().open_channel(
                    "direct-tcpip", (endpoint.host, endpoint.port), ("127.0.0.1", 0), timeout=limit
                )
            client = _client(endpoint, opts)
            client.connect(
                endpoint.host, endpoint.port, username=endpoint.user,
                key_filename=list(endpoint.key_files) or None, timeout=limit, banner_timeout=limit,
                auth_timeout=limit, sock=sock,
            )  # fmt: skip
            self._client = client
        except TransportError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise TransportError(_describe(exc, where, limit)) from None
        self._setup_privilege(limit)

    def _setup_privilege(self, timeout: float) -> None:
        uid = self._exec(["id", "-u"], timeout, 1024, prefix=False)
        if uid.ok and uid.stdout.strip() == b"0":
            self.privilege = "root"
            self._prefix = ["env", "LC_ALL=C", REMOTE_PATH]
            return
        if self.options.sudo:
            probe = self._exec(["sudo", "-n", "true"], timeout, 1024, prefix=False)
            if probe.ok:
                self.privilege = "sudo"
                self._prefix = ["sudo", "-n", "env", "LC_ALL=C", REMOTE_PATH]
                return
            why = probe.stderr.decode(errors="replace").strip().splitlines() or [probe.error or "sudo failed"]
            self.privilege = f"unprivileged (sudo -n not usable: {why[-1][:200]})"
        else:
            self.privilege = "unprivileged"
        self._prefix = ["env", "LC_ALL=C", REMOTE_PATH]

    def close(self) -> None:
        for client in (self._client, self._jump):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._client = None
        self._jump = None

    # ---- commands ---------------------------------------------------------------------
    def command_line(self, argv: Sequence[str], timeout: float | None = None) -> str:
        """The exact remote command line: fixed prefix + argv, every element shell-quoted."""
        parts = list(self._prefix)
        if timeout is not None and self._timeout_tool:
            parts += ["timeout", "-k", "2", f"{max(1, int(timeout + 1))}"]
        parts += list(argv)
        return " ".join(shlex.quote(p) for p in parts)

    def which(self, tools: Sequence[str], timeout: float) -> set[str]:
        script = 'for t in "$@"; do command -v "$t" >/dev/null 2>&1 && echo "$t"; done; exit 0'
        res = self._exec(["sh", "-c", script, "sh", *tools], timeout, 65536)
        found = set(res.stdout.decode(errors="replace").split()) & set(tools)
        self._timeout_tool = "timeout" in found
        return found

    def run(self, argv: Sequence[str], *, timeout: float, max_bytes: int) -> RunResult:
        return self._exec(argv, timeout, max_bytes, remote_timeout=True)

    def run_batch(self, items: Sequence[BatchItem], *, timeout: float) -> dict[str, RunResult]:
        """Many commands/files in ONE session (each SSH session costs a fork on the node and CPU here).

        The script is built only from shell-quoted fixed elements. Each item's stdout AND stderr are framed by
        a random boundary (stderr frames travel on the channel's stderr, in the same order), so command output
        cannot forge a frame and every item keeps its own exit code and stderr. Each command runs under its
        own `timeout` when the node has it (decided in the script: the first batch carries the `which`), so
        one hanging command costs its own fact, not the batch. A "which" item also sets this transport's
        knowledge of `timeout` for later single commands.
        """
        boundary = "KPD" + secrets.token_hex(12)
        script = batch_script(items, boundary)
        argv = ["sh", "-c", script]
        if not self._timeout_tool:
            # `timeout` not known to exist yet (this batch carries the `which`): bound the batch when it does
            secs = f"{max(1, int(timeout + 1))}"
            argv = ["sh", "-c", 'if command -v timeout >/dev/null 2>&1; then exec timeout -k 2 "$1" sh -c "$2"; '
                    'fi; exec sh -c "$2"', "sh", secs, script]  # fmt: skip
        timeline: list[tuple[int, float]] = []
        total = sum(i.max_bytes for i in items) + 4096 * len(items)
        res = self._exec(argv, timeout, total, remote_timeout=True, timeline=timeline,
                         max_stderr=65536 + 16384 * len(items), keep_partial=True)  # fmt: skip
        out = parse_batch(res, boundary, items, timeline)
        for item in items:
            if item.kind == "which":
                found = out[item.key]
                self._timeout_tool = "timeout" in set(found.stdout.decode(errors="replace").split())
        return out

    def read_file(self, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        res = self._exec(["cat", "--", path], timeout, max_bytes, remote_timeout=True)
        if res.exit_code == 1 and b"No such file" in res.stderr:
            return RunResult(exit_code=1, stderr=res.stderr, duration=res.duration, error="no such file")
        return res

    def _exec(
        self, argv: Sequence[str], timeout: float, max_bytes: int, *, prefix: bool = True, remote_timeout: bool = False,
        timeline: list[tuple[int, float]] | None = None, max_stderr: int = 65536, keep_partial: bool = False,
    ) -> RunResult:  # fmt: skip
        start = time.monotonic()
        deadline = start + timeout
        if self._client is None or self._client.get_transport() is None:
            return RunResult(error="not connected")
        line = self.command_line(argv, timeout if remote_timeout else None) if prefix else \
            " ".join(shlex.quote(a) for a in argv)  # fmt: skip
        try:
            chan = self._client.get_transport().open_session(timeout=timeout)
        except Exception as exc:
            return RunResult(duration=time.monotonic() - start, error=f"cannot open channel: {exc}")
        out = bytearray()
        err = bytearray()
        try:
            chan.exec_command(line)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return RunResult(bytes(out) if keep_partial else b"", bytes(err), None, time.monotonic() - start,
                                     True, False, f"timed out after {timeout:g}s")  # fmt: skip
                chan.settimeout(min(_POLL, left))
                try:
                    chunk = chan.recv(1 << 20)
                except TimeoutError:
                    chunk = None
                while chan.recv_stderr_ready():
                    piece = chan.recv_stderr(65536)
                    if len(err) < max_stderr:
                        err.extend(piece)
                if chunk == b"":
                    break
                if chunk:
                    out.extend(chunk)
                    if timeline is not None:
                        timeline.append((len(out), time.monotonic()))
                    if len(out) > max_bytes:
                        return RunResult(cut_at_line(bytes(out[:max_bytes])), bytes(err), 0,
                                         time.monotonic() - start, False, True)  # fmt: skip
            left = deadline - time.monotonic()
            if not chan.status_event.wait(max(left, 0.0)):
                return RunResult(bytes(out) if keep_partial else b"", bytes(err), None, time.monotonic() - start,
                                 True, False, f"timed out after {timeout:g}s")  # fmt: skip
            while chan.recv_stderr_ready():
                piece = chan.recv_stderr(65536)
                if len(err) < max_stderr:
                    err.extend(piece)
            code = chan.recv_exit_status()
        except (OSError, EOFError) as exc:
            return RunResult(bytes(out), bytes(err), None, time.monotonic() - start, False, False,
                             f"connection lost: {exc}")  # fmt: skip
        finally:
            chan.close()
        duration = time.monotonic() - start
        error = ""
        if code == -1:
            error = "terminated by a signal (no exit status)"
        elif code == 124 and remote_timeout and self._timeout_tool:
            error = f"timed out after {timeout:g}s"
        elif code == NOT_FOUND:
            error = "not installed"
        return RunResult(bytes(out), bytes(err[:max_stderr]), code, duration, False, False, error)

    # ---- kube-proxy's HTTP surfaces through a forwarded channel --------------------------
    def http_get(self, host: str, port: int, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        import paramiko

        start = time.monotonic()
        if self._client is None or self._client.get_transport() is None:
            return RunResult(error="not connected")
        try:
            chan = self._client.get_transport().open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout
            )
        except paramiko.ChannelException as exc:
            reason = "connection refused" if exc.code == 2 else f"forwarding refused ({exc})"
            return RunResult(duration=time.monotonic() - start, error=reason)
        except paramiko.SSHException as exc:
            if "Unable to open channel" in str(exc):  # paramiko's message for a refused open under concurrency
                return RunResult(duration=time.monotonic() - start, error="connection refused")
            return RunResult(duration=time.monotonic() - start, error=f"cannot open forwarded channel: {exc}")
        except (OSError, EOFError) as exc:
            return RunResult(duration=time.monotonic() - start, error=f"cannot open forwarded channel: {exc}")
        buf = bytearray()
        try:
            chan.sendall(http_request(host, port, path))
            while len(buf) <= max_bytes + 65536:
                left = start + timeout - time.monotonic()
                if left <= 0:
                    return RunResult(duration=time.monotonic() - start, timed_out=True,
                                     error=f"timed out after {timeout:g}s")  # fmt: skip
                chan.settimeout(left)
                try:
                    chunk = chan.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buf.extend(chunk)
        except (OSError, EOFError) as exc:
            return RunResult(duration=time.monotonic() - start, error=f"connection lost: {exc}")
        finally:
            chan.close()
        return http_result(bytes(buf), time.monotonic() - start, max_bytes)


def batch_script(items: Sequence[BatchItem], boundary: str) -> str:
    """The `sh -c` text of a batch: fixed shell glue plus shell-quoted items, nothing else."""
    q = shlex.quote
    lines = ['if command -v timeout >/dev/null 2>&1; then kpd_t() { timeout -k 2 "$@"; }; '
             'else kpd_t() { shift; "$@"; }; fi']  # fmt: skip
    for item in items:
        begin, end = q(f"{boundary} BEGIN {item.key}"), q(f"{boundary} END {item.key}")
        lines.append(f"printf '%s\\n' {begin}; printf '%s\\n' {begin} >&2")
        if item.kind == "file":
            path = q(item.argv[0])
            lines.append(f"if [ -e {path} ]; then cat -- {path}; rc=$?; else rc=200; fi")
        elif item.kind == "which":
            tools = " ".join(q(t) for t in item.argv)
            lines.append(f'for t in {tools}; do command -v "$t" >/dev/null 2>&1 && echo "$t"; done; rc=0')
        else:
            guard = f"kpd_t {max(1, int(item.timeout + 0.999))} " if item.guard else ""
            lines.append(f"{guard}{' '.join(q(a) for a in item.argv)} </dev/null; rc=$?")
        lines.append(f"printf '\\n%s %s\\n' {end} \"$rc\"; printf '\\n%s\\n' {end} >&2")
    return "\n".join(lines)


def parse_batch(res: RunResult, boundary: str, items: Sequence[BatchItem],
                timeline: Sequence[tuple[int, float]] = ()) -> dict[str, RunResult]:  # fmt: skip
    """Split a framed batch output back into one RunResult per item (a missing frame: the batch's error).

    Durations come from when each frame's first and last bytes arrived here (`timeline`: cumulative byte
    count, arrival time), which is the item's run time on the node plus nothing but streaming.
    """
    out: dict[str, RunResult] = {}
    data = res.stdout
    errs = res.stderr
    share = res.duration / max(1, len(items))
    offsets = [n for n, _ in timeline]
    pos = 0
    for item in items:
        key = item.key
        begin = f"{boundary} BEGIN {key}\n".encode()
        end_prefix = f"\n{boundary} END {key} ".encode()
        start = data.find(begin, pos)
        stop = data.find(end_prefix, start + len(begin)) if start >= 0 else -1
        if start < 0 or stop < 0:
            out[key] = RunResult(duration=share, timed_out=res.timed_out,
                                 error=res.error or "batch output incomplete")  # fmt: skip
            continue
        line_end = data.find(b"\n", stop + len(end_prefix))
        pos = line_end if line_end >= 0 else len(data)
        rc_line = data[stop + len(end_prefix) : pos]
        code = int(rc_line) if rc_line.strip().isdigit() else None  # bytes.isdigit: ASCII digits only
        # BEGIN is printed (a shell builtin) right before the item starts, END right after it exits
        duration = _arrival(offsets, timeline, stop) - _arrival(offsets, timeline, start) if timeline else share
        body = data[start + len(begin) : stop]
        stderr = _frame(errs, boundary, key)
        truncated = False
        if len(body) > item.max_bytes:
            body, truncated = cut_at_line(body[: item.max_bytes]), True
        duration = max(0.0, duration)
        if code == 200 and item.kind == "file":
            out[key] = RunResult(exit_code=1, duration=duration, error="no such file")
        elif code == NOT_FOUND:
            out[key] = RunResult(exit_code=code, stderr=stderr, duration=duration, error="not installed")
        elif code == 124 and item.kind == "cmd" and item.guard:  # `timeout` (kpd_t) stopped it
            out[key] = RunResult(b"", stderr, None, duration, True, False, f"timed out after {item.timeout:g}s")
        elif code is not None and 128 < code < 128 + 65 and item.kind == "cmd" and not truncated:
            out[key] = RunResult(b"", stderr, code, duration, False, False,
                                 f"killed by signal {code - 128} ({_signame(code - 128)})")  # fmt: skip
        else:
            out[key] = RunResult(body, stderr, 0 if truncated else code, duration, False, truncated)
    return out


def _arrival(offsets: Sequence[int], timeline: Sequence[tuple[int, float]], offset: int) -> float:
    """When byte `offset` of the batch output arrived (the chunk that carried it)."""
    index = bisect.bisect_right(offsets, offset)
    return timeline[min(index, len(timeline) - 1)][1]


def _frame(errs: bytes, boundary: str, key: str) -> bytes:
    begin = f"{boundary} BEGIN {key}\n".encode()
    start = errs.find(begin)
    if start < 0:
        return b""
    stop = errs.find(f"\n{boundary} END {key}\n".encode(), start + len(begin))
    return errs[start + len(begin) : stop if stop >= 0 else len(errs)]


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"


def default_key_files() -> tuple[str, ...]:
    home = Path(os.path.expanduser("~/.ssh"))
    return tuple(str(home / n) for n in ("id_ed25519", "id_ecdsa", "id_rsa") if (home / n).is_file())
