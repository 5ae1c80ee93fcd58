"""Fan-out: bounded concurrency, per-node timeout, failure isolation, and a real SIGINT (Ctrl-C) that stops
cleanly with the nodes already collected. Node work is plain Python callables here (the SSH tests run the
fan-out against real sshd nodes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kpdoctor.node.fanout import fan_out
from kpdoctor.node.state import Fact, NodeState
from kpdoctor.node.transport import CancelToken

REPO = Path(__file__).resolve().parents[2]


def _ok(name: str) -> NodeState:
    return NodeState(name=name, transport="test", facts={"uname-r.txt": Fact("uname-r.txt", "6.1\n")})


def test_bounded_concurrency_and_one_failure_never_stops_the_others() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(name: str, cancel: CancelToken) -> NodeState:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        if name == "n3":
            raise RuntimeError("boom")
        return _ok(name)

    names = [f"n{i}" for i in range(20)]
    out = fan_out(names, work, concurrency=4, node_timeout=10)
    assert list(out) == names and peak <= 4
    assert out["n3"].error == "internal error: RuntimeError: boom"
    assert all(s.reachable for n, s in out.items() if n != "n3")


def test_a_node_past_its_deadline_is_reported_while_the_rest_finish(monkeypatch) -> None:
    monkeypatch.setattr("kpdoctor.node.fanout.GRACE", 0.2)
    release = threading.Event()

    def work(name: str, cancel: CancelToken) -> NodeState:
        if name == "stuck":
            release.wait(10)
        return _ok(name)

    start = time.monotonic()
    out = fan_out(["stuck", "a", "b"], work, concurrency=3, node_timeout=0.5)
    release.set()
    assert time.monotonic() - start < 3
    assert out["stuck"].error == "timed out after 0.5s"
    assert out["a"].reachable and out["b"].reachable


SCRIPT = r"""
import json, sys, time
from kpdoctor.node.fanout import fan_out, Interrupted
from kpdoctor.node.state import NodeState
def work(name, cancel):
    if name.startswith("fast"):
        return NodeState(name=name, transport="test")
    while not cancel.cancelled:
        time.sleep(0.02)
    return NodeState(name=name, transport="test", error="interrupted (Ctrl-C): partial facts")
print("ready", flush=True)
try:
    fan_out(["fast1", "slow1", "fast2", "slow2"], work, concurrency=4, node_timeout=60)
except Interrupted as exc:
    print(json.dumps({n: s.error for n, s in exc.partial.items()}), flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_cleanly_with_what_it_had() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    partial = json.loads(out)
    assert partial == {"fast1": "", "slow1": "interrupted (Ctrl-C): partial facts", "fast2": "",
                       "slow2": "interrupted (Ctrl-C): partial facts"}  # fmt: skip
    assert "Traceback" not in err
