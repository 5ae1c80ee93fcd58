"""The exit status of a command run through the Kubernetes exec API, read from the stream's error channel.

The channel carries one `v1.Status` (JSON): `Success`, or `Failure` with reason `NonZeroExitCode` and the exit
code in `details.causes[reason=ExitCode].message`. Any other `Failure` (the kubelet could not start or reach
the container: "error sending request: ...", "container not found") carries only a message. The kubernetes
client's own `WSClient.returncode` reads the first cause's message as an int and raises on that second kind,
which turned the kubelet's own explanation into "invalid literal for int()"; this reads both kinds.
"""

from __future__ import annotations

import json
from typing import Any

ERROR_CHANNEL = 3
_MAX_MESSAGE = 300


def parse_exec_status(text: str) -> tuple[int | None, str]:
    """(exit code, error) from the error channel's text: (0, "") on Success, (N, "") on a non-zero exit,
    (None, the API server's or kubelet's message, one line, bounded) on any other outcome."""
    if not text.strip():
        return None, ""
    try:
        status = json.loads(text)
    except ValueError:
        return None, _one_line(text)
    if not isinstance(status, dict):
        return None, _one_line(text)
    if status.get("status") == "Success":
        return 0, ""
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes if isinstance(causes, list) else ():
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            message = str(cause.get("message", ""))
            if message.isdigit() and len(message) <= 3:
                return int(message), ""
    return None, _one_line(str(status.get("message") or status.get("reason") or "exec failed"))


def exit_status(resp: Any) -> tuple[int | None, str]:
    """The exit status of a finished exec stream (the kubernetes client's WSClient)."""
    read_channel = getattr(resp, "read_channel", None)
    if read_channel is None:  # a stream object without channels: trust what it reports
        return resp.returncode, ""
    return parse_exec_status(read_channel(ERROR_CHANNEL))


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"
