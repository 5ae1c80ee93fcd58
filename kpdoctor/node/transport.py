"""The one interface every way of reaching a node implements: run a fixed argv, read a file, GET a URL.

Collectors only ever speak this interface, so a fact means the same thing
whether it came from a local subprocess, an SSH channel, a `kubectl exec`-style
stream or a bundle file. Every call carries a timeout and a byte cap: a node
that hangs or prints 500 MB must cost bounded time and memory, and the caller
gets a result describing what happened instead of an exception.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Exit code shells use for "command not found"; transports normalise to it.
NOT_FOUND = 127


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one command, file read or HTTP GET produced; never raises for node-side failures."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None  # process exit code, or the HTTP status for a GET
    duration: float = 0.0
    timed_out: bool = False
    truncated: bool = False  # stdout was cut at max_bytes
    error: str = ""  # why there is no usable output (not installed, refused, timed out, ...)

    @property
    def ok(self) -> bool:
        return not self.error and not self.timed_out and self.exit_code == 0


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One command, file or tool probe inside a batched session (`run_batch` on transports that offer it).

    Batching exists because every remote session costs a fork on the node and a channel round trip here;
    each item keeps its own timeout, byte cap, exit code and stderr, so a batched fact is the same Fact a
    single command would have produced.
    """

    key: str
    kind: str  # cmd | file | which (argv = the tools to look up)
    argv: tuple[str, ...]  # the command, or (path,) for a file
    timeout: float = 10.0
    max_bytes: int = 16 << 20
    # run under its own `timeout` on the node (a fork + exec more): for anything that may be slow; the cheap
    # facts (proc files, uname, sysctl) are bounded by the batch's own timeout, as single commands were
    guard: bool = True


class TransportError(Exception):
    """The node cannot be reached at all (connect, auth, host key): the whole node fails, not one fact."""


@runtime_checkable
class Transport(Protocol):
    """A way to reach one node. Implementations must be safe to call from several threads at once."""

    name: str  # local | ssh | kube-exec
    address: str

    def connect(self, timeout: float) -> None:
        """Open the connection (no-op for local); raise TransportError when the node cannot be reached."""

    def which(self, tools: Sequence[str], timeout: float) -> set[str]:
        """The subset of `tools` installed (on the privileged PATH the commands will run with)."""

    def run(self, argv: Sequence[str], *, timeout: float, max_bytes: int) -> RunResult:
        """Run a fixed argv (never through a shell unquoted)."""

    def read_file(self, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        """Read a file; a missing file is `error="no such file"`, not an exception."""

    def http_get(self, host: str, port: int, path: str, *, timeout: float, max_bytes: int) -> RunResult:
        """GET http://host:port/path as seen from the node (exit_code = HTTP status)."""

    def close(self) -> None: ...


class Cancelled(Exception):
    """Raised inside a collection when the user pressed Ctrl-C (the fan-out's cancel event is set)."""


class CancelToken:
    """A shared flag checked between commands so Ctrl-C stops every node promptly."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        """Set the flag and run the hooks (transports close their connections / kill their processes)."""
        self._event.set()
        with self._lock:
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            with contextlib.suppress(Exception):
                hook()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._hooks.append(hook)
                return
        hook()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def cut_at_line(data: bytes) -> bytes:
    """Trim a capped buffer back to its last complete line, so a parser never sees half a rule."""
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut >= 0 else data


def parse_http_response(raw: bytes) -> tuple[int | None, bytes]:
    """Split a raw HTTP/1.x response (as read from a forwarded channel) into status and body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, b""
    status_line = head.split(b"\r\n", 1)[0].split()
    try:
        status = int(status_line[1])
    except (IndexError, ValueError):
        return None, b""
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(body):
        end = body.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(body[pos:end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)
