"""Local transport: run the fixed commands as subprocesses on this host (or inside `ip netns exec`).

This is what `kpdoctor node --transport local` and an in-cluster DaemonSet use.
Each process gets its own process group so a timeout kills the whole tree,
and stdout is read with a byte cap so a 500 MB dump cannot exhaust memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from kpdoctor.node.transport import NOT_FOUND, RunResult, cut_at_line, parse_http_response

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CHUNK = 1 << 20


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Tools print locale-dependent text; the parsers expect the C locale. sbin must be on PATH
    # even when kpdoctor runs as a user whose PATH lacks it.
    env["LC_ALL"] = "C"
    env["PATH"] = env.get("PATH", "") + ":" + _SBIN_PATH
    return env


class LocalTransport:
    name = "local"

    def __init__(self, address: str = "localhost") -> None:
        self.address = address
        self._env = _env()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def connect(self, timeout: float) -> None:  # nothing to open
        return None

    def which(self, tools: Sequence[str], timeout: float) -> set[str]:
        return {t for t in tools if shutil.which(t, path=self._env["PATH"]) is not None}

    def run(self, argv: Sequence[str], *, timeout: float, max_bytes: int) -> RunResult:
        return run_capped(list(argv), timeout=timeout, max_bytes=max_bytes, env=self._env, track=self._track)

    def _track(self, proc: subprocess.Popen[bytes], add: bool) -> None:
        with self._lock:
            if add:
                self._procs.add(proc)
            else:
                self._procs.discard(proc)

    def read_file(self, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        start = time.monotonic()
        try:
            with open(path, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            return RunResult(exit_code=1, duration=time.monotonic() - start, error="no such file")
        except OSError as exc:
            return RunResult(exit_code=1, duration=time.monotonic() - start, error=exc.strerror or str(exc))
        truncated = len(data) > max_bytes
        if truncated:
            data = cut_at_line(data[:max_bytes])
        return RunResult(stdout=data, exit_code=0, duration=time.monotonic() - start, truncated=truncated)

    def http_get(self, host: str, port: int, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        return http_get_socket(host, port, path, timeout=timeout, max_bytes=max_bytes)

    def close(self) -> None:
        """Kill commands still running (Ctrl-C): their facts become 'killed by signal'."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill(proc)


def run_capped(
    argv: list[str],
    *,
    timeout: float,
    max_bytes: int,
    env: dict[str, str] | None = None,
    track: Callable[[subprocess.Popen[bytes], bool], None] | None = None,
) -> RunResult:
    """Run argv with a hard timeout (whole process group killed) and a stdout byte cap."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except FileNotFoundError:
        return RunResult(exit_code=NOT_FOUND, error="not installed")
    except OSError as exc:
        return RunResult(exit_code=NOT_FOUND, error=f"cannot run: {exc.strerror or exc}")
    assert proc.stdout is not None and proc.stderr is not None
    if track is not None:
        track(proc, True)
    out = bytearray()
    err = bytearray()
    truncated = threading.Event()

    def read_out() -> None:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read1(_CHUNK)  # type: ignore[attr-defined]
            if not chunk:
                return
            out.extend(chunk)
            if len(out) > max_bytes:
                truncated.set()
                _kill(proc)
                return

    def read_err() -> None:
        assert proc.stderr is not None
        while True:
            chunk = proc.stderr.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                return
            if len(err) < 65536:
                err.extend(chunk)

    threads = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in threads:
        t.start()
    timed_out = False
    try:
        proc.wait(timeout=max(timeout, 0.01))
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
        proc.wait()
    for t in threads:
        t.join(timeout=2)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    if track is not None:
        track(proc, False)
    duration = time.monotonic() - start
    data = bytes(out)
    if truncated.is_set():
        return RunResult(cut_at_line(data[:max_bytes]), bytes(err), 0, duration, False, True)
    if timed_out:
        return RunResult(b"", bytes(err), None, duration, True, False, f"timed out after {timeout:g}s")
    code = proc.returncode
    error = ""
    if code < 0:
        error = f"killed by signal {-code} ({_signame(-code)})"
    return RunResult(data, bytes(err), code, duration, False, False, error)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "unknown"


def http_get_socket(host: str, port: int, path: str, *, timeout: float, max_bytes: int) -> RunResult:
    """A minimal HTTP/1.0 GET over a plain socket, so the same parser serves local and SSH channels."""
    start = time.monotonic()
    deadline = start + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_request(host, port, path))
            raw = _recv_all(sock, deadline, max_bytes)
    except TimeoutError:
        return RunResult(duration=time.monotonic() - start, timed_out=True, error=f"timed out after {timeout:g}s")
    except ConnectionRefusedError:
        return RunResult(duration=time.monotonic() - start, error="connection refused")
    except OSError as exc:
        return RunResult(duration=time.monotonic() - start, error=exc.strerror or str(exc))
    return http_result(raw, time.monotonic() - start, max_bytes)


def _request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kpdoctor\r\nAccept: */*\r\n\r\n".encode()


def _recv_all(sock: socket.socket, deadline: float, max_bytes: int) -> bytes:
    buf = bytearray()
    while len(buf) <= max_bytes + 65536:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(_CHUNK)
        if not chunk:
            break
        buf.extend(chunk)
    return bytes(buf)


def http_result(raw: bytes, duration: float, max_bytes: int) -> RunResult:
    status, body = parse_http_response(raw)
    if status is None:
        return RunResult(duration=duration, error="no HTTP response")
    truncated = len(body) > max_bytes
    if truncated:
        body = cut_at_line(body[:max_bytes])
    return RunResult(stdout=body, exit_code=status, duration=duration, truncated=truncated)


http_request = _request
