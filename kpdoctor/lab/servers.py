"""Tiny TCP servers and clients that run inside lab namespaces.

A server answers every connection with one line `<pod name> <peer ip>:<peer port>`
and closes, so a test sees *which* pod a Service sent it to and what source
address the pod saw (masquerade or not). Clients run as one short Python
process per batch inside the client namespace: a batch of connects costs one
interpreter start, and timing happens next to the socket, not across
`ip netns exec`.

Servers are subprocesses started here and stopped here, by PID only.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from kpdoctor.lab.netns import LabError, ns_argv, run

_SERVER_CODE = r"""
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(4096)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    try:
        c.sendall(f"{name} {peer[0]}:{peer[1]}\n".encode())
    except OSError:
        pass
    finally:
        c.close()
"""

# One connect per attempt; outcome per attempt as JSON. `mode` "probe" reads the
# answer line; "time" only times connect() (the SYN -> SYN-ACK round trip, which
# is where netfilter's per-new-connection cost is paid).
_CLIENT_CODE = r"""
import errno, json, socket, sys, time
ip, port, count, timeout, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
out = []
for _ in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    t0 = time.perf_counter_ns()
    try:
        s.connect((ip, port))
        dt = time.perf_counter_ns() - t0
        if mode == "time":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            out.append({"outcome": "ok", "ns": dt})
        else:
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
            out.append({"outcome": "ok", "ns": dt, "answer": data.decode().strip()})
    except socket.timeout:
        out.append({"outcome": "timeout", "ns": time.perf_counter_ns() - t0})
    except ConnectionRefusedError:
        out.append({"outcome": "refused", "ns": time.perf_counter_ns() - t0})
    except OSError as exc:
        out.append({"outcome": errno.errorcode.get(exc.errno or 0, "error"), "ns": time.perf_counter_ns() - t0})
    finally:
        s.close()
print(json.dumps(out))
"""


# Timing only, several targets interleaved connect by connect: drift on a busy machine (other
# processes, frequency changes) then hits every target alike, and the medians stay comparable.
_TIMING_CODE = r"""
import json, socket, sys, time
targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sys.argv[3:]]
count, timeout = int(sys.argv[1]), float(sys.argv[2])
linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
out = {f"{ip}:{port}": [] for ip, port in targets}
fails = 0
for _ in range(count):
    for ip, port in targets:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            t0 = time.perf_counter_ns()
            s.connect((ip, port))
            out[f"{ip}:{port}"].append(time.perf_counter_ns() - t0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            fails += 1
        finally:
            s.close()
print(json.dumps({"samples": out, "failures": fails}))
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the lab's process dies, even by SIGKILL (no orphan servers
    keeping a deleted namespace alive). `ip netns exec` execs the server, which keeps the setting."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class Attempt:
    outcome: str  # "ok" | "refused" | "timeout" | errno name (EHOSTUNREACH, ...)
    seconds: float
    answer: str = ""

    @property
    def pod(self) -> str:
        """The pod name the server answered with ("" when nothing answered)."""
        return self.answer.split(" ", 1)[0] if self.answer else ""

    @property
    def peer(self) -> str:
        """The client address as the pod saw it (after any masquerade)."""
        parts = self.answer.split(" ")
        return parts[1] if len(parts) > 1 else ""


@dataclass
class Server:
    """A name server in one namespace; `stop()` kills exactly the PID it started."""

    name: str
    netns: str
    port: int
    proc: subprocess.Popen[str] | None = field(default=None, repr=False)

    def start(self, *, timeout: float = 10.0) -> Server:
        argv = ns_argv(self.netns, [sys.executable, "-c", _SERVER_CODE, self.name, str(self.port)])
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            err = ""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = (self.proc.stderr.read().strip().splitlines() or [""])[-1]
            self.stop()
            raise LabError(f"server {self.name}:{self.port} did not start: {err or 'no ready line'}", where=self.netns)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)  # our own child, by PID (never by name)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        finally:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def connect(
    netns: str, ip: str, port: int, *, count: int = 1, timeout: float = 2.0, mode: str = "probe",
) -> list[Attempt]:
    """`count` sequential TCP connects from inside `netns`, each bounded by `timeout` seconds."""
    if count < 1:
        return []
    budget = count * (timeout + 0.5) + 10.0
    result = run(
        [sys.executable, "-c", _CLIENT_CODE, ip, str(port), str(count), str(timeout), mode],
        netns=netns, timeout=budget,
    )
    try:
        rows = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise LabError(f"client produced no result: {result.stderr.strip()[-200:]}", where=netns) from None
    return [Attempt(r["outcome"], r["ns"] / 1e9, r.get("answer", "")) for r in rows]


def time_connects(
    netns: str, targets: list[tuple[str, int]], *, count: int, timeout: float = 2.0,
) -> tuple[dict[str, list[float]], int]:
    """connect() durations in seconds per "ip:port", `count` per target, interleaved; and the failure count."""
    budget = count * len(targets) * (timeout + 0.1) + 10.0
    argv = [sys.executable, "-c", _TIMING_CODE, str(count), str(timeout), *(f"{ip}:{port}" for ip, port in targets)]
    result = run(argv, netns=netns, timeout=budget)
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise LabError(f"timing client produced no result: {result.stderr.strip()[-200:]}", where=netns) from None
    return {k: [v / 1e9 for v in vals] for k, vals in data["samples"].items()}, int(data["failures"])


def connect_once(netns: str, ip: str, port: int, *, timeout: float = 2.0) -> Attempt:
    return connect(netns, ip, port, count=1, timeout=timeout)[0]


def wait_reachable(netns: str, ip: str, port: int, *, within: float = 5.0) -> Attempt:
    """Retry until one connect succeeds (servers and routes settle in milliseconds; bounded anyway)."""
    deadline = time.monotonic() + within
    attempt = connect_once(netns, ip, port, timeout=1.0)
    while attempt.outcome != "ok" and time.monotonic() < deadline:
        time.sleep(0.05)
        attempt = connect_once(netns, ip, port, timeout=1.0)
    return attempt
