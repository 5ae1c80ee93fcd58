"""A command's `RunResult` as a `Fact`: content only when it ran and succeeded, stderr bounded and decoded, undecodable
bytes replaced and counted, and a one-line reason when it did not (not installed, exit status, transport error).
"""

from __future__ import annotations

from kpdoctor.node.state import Fact
from kpdoctor.node.transport import NOT_FOUND, RunResult

STDERR_MAX = 4096


def decode(data: bytes) -> tuple[str, int]:
    """UTF-8 text and the number of undecodable bytes replaced (node output is not always UTF-8)."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")


def _stderr(res: RunResult, replaced: int = 0) -> str:
    text = res.stderr[:STDERR_MAX].decode("utf-8", errors="replace").strip()
    if replaced:
        note = f"[kpdoctor] output was not valid UTF-8: {replaced} byte(s) replaced with U+FFFD"
        text = f"{text}\n{note}" if text else note
    return text


def to_fact(key: str, source: str, res: RunResult, *, http: bool = False) -> Fact:
    """A RunResult as a Fact: content only when the command ran and succeeded (any status for HTTP)."""
    usable = not res.error and not res.timed_out and (res.exit_code is not None if http else res.exit_code == 0)
    if not usable:
        error = res.error or exit_reason(res)
        return Fact(key, None, source, res.exit_code, _stderr(res), round(res.duration, 6), error, res.truncated)
    text, replaced = decode(res.stdout)
    return Fact(key, text, source, res.exit_code, _stderr(res, replaced), round(res.duration, 6), "", res.truncated)


def exit_reason(res: RunResult) -> str:
    if res.exit_code == NOT_FOUND:
        return "not installed"
    last = res.stderr.decode("utf-8", errors="replace").strip().splitlines()
    return f"exit status {res.exit_code}" + (f": {last[-1][:300]}" if last else "")


def missing(key: str, source: str, error: str) -> Fact:
    return Fact(key=key, content=None, source=source, error=error)
