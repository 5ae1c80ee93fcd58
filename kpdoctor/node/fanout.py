"""Collect from many nodes at once: bounded pool, per-node timeout, progress, clean Ctrl-C.

One node failing (or hanging) never stops the others: each node's work returns
a NodeState (with `error` set when it could not be reached), a node that
overruns its deadline is reported as timed out while the rest finish, and
Ctrl-C cancels what is running, keeps what was already collected, and returns.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID

from kpdoctor.node.state import NodeState
from kpdoctor.node.transport import CancelToken

GRACE = 5.0  # seconds past a node's deadline before the fan-out stops waiting for it
CANCEL_WAIT = 3.0  # seconds to let running nodes return partial facts after Ctrl-C


class Reporter(Protocol):
    def start(self, total: int) -> None: ...
    def done(self, state: NodeState, seconds: float) -> None: ...
    def stop(self) -> None: ...


class QuietLines:
    """One line per node on stderr: what CI logs should show."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO = stream or sys.stderr
        self.total = 0
        self.count = 0
        self.lock = threading.Lock()

    def start(self, total: int) -> None:
        self.total = total

    def done(self, state: NodeState, seconds: float) -> None:
        with self.lock:
            self.count += 1
            if state.error:
                status = f"FAILED: {state.error}"
            else:
                present = sum(1 for f in state.facts.values() if f.present)
                status = f"ok ({present}/{len(state.facts)} facts)"
            print(f"kpdoctor: [{self.count}/{self.total}] node {state.name}: {status} in {seconds:.2f}s",
                  file=self.stream, flush=True)  # fmt: skip

    def stop(self) -> None:
        return None


class RichProgress:
    """A progress bar for interactive terminals."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("collecting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=self.console, transient=True,
        )  # fmt: skip
        self.task: TaskID | None = None
        self.failed = 0

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("", total=total)

    def done(self, state: NodeState, seconds: float) -> None:
        if state.error:
            self.failed += 1
            self.console.print(f"[red]node {state.name}: {state.error}[/red]")
        assert self.task is not None
        self.progress.update(self.task, advance=1, description=f"{state.name} ({self.failed} failed)")

    def stop(self) -> None:
        self.progress.stop()


class Silent:
    def start(self, total: int) -> None:
        return None

    def done(self, state: NodeState, seconds: float) -> None:
        return None

    def stop(self) -> None:
        return None


def default_reporter() -> Reporter:
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    return RichProgress() if interactive else QuietLines()


def fan_out(
    names: Sequence[str],
    collect: Callable[[str, CancelToken], NodeState],
    *,
    concurrency: int = 32,
    node_timeout: float = 120.0,
    reporter: Reporter | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, NodeState]:
    """Run `collect(name, cancel)` for every node with at most `concurrency` at a time; never raises per node."""
    cancel = cancel or CancelToken()
    reporter = reporter or Silent()
    results: dict[str, NodeState] = {}
    started: dict[str, float] = {}
    lock = threading.Lock()

    def guarded(name: str) -> NodeState:
        with lock:
            started[name] = time.monotonic()
        if cancel.cancelled:
            return NodeState(name=name, transport="", error="interrupted before collection started")
        try:
            return collect(name, cancel)
        except Exception as exc:  # a bug in one node's collection must not take the others down
            return NodeState(name=name, transport="", error=f"internal error: {type(exc).__name__}: {exc}")

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="kpd-node")
    futures: dict[Future[NodeState], str] = {pool.submit(guarded, n): n for n in names}
    pending = set(futures)
    reporter.start(len(names))
    interrupted = False
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted = True
                break
            for fut in done:
                name = futures[fut]
                state = fut.result()
                results[name] = state
                reporter.done(state, time.monotonic() - started.get(name, time.monotonic()))
            now = time.monotonic()
            for fut in list(pending):
                name = futures[fut]
                began = started.get(name)
                if began is not None and now - began > node_timeout + GRACE:
                    pending.discard(fut)
                    state = NodeState(name=name, transport="", error=f"timed out after {node_timeout:g}s")
                    results[name] = state
                    reporter.done(state, now - began)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        cancel.cancel()
        done, pending = wait(pending, timeout=CANCEL_WAIT)
        for fut in done:
            results[futures[fut]] = fut.result()
        for fut in pending:
            name = futures[fut]
            results[name] = NodeState(name=name, transport="", error="interrupted (Ctrl-C) before it finished")
    reporter.stop()
    pool.shutdown(wait=False, cancel_futures=True)
    ordered = {n: results[n] for n in names if n in results}
    if interrupted:
        raise Interrupted(ordered)
    return ordered


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a fan-out; carries the NodeStates gathered so far."""

    def __init__(self, partial: dict[str, NodeState]) -> None:
        super().__init__("interrupted")
        self.partial = partial
