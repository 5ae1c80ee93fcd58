"""kpdoctor/node/exec_status.py: the exec API's error channel, as the API server and kubelet write it.

SUCCESS and EXIT_3 are the v1.Status shapes the API server documents for exec (reason NonZeroExitCode, cause
ExitCode); UNREACHABLE is written after the error the lab's kube-apiserver v1.37.2 returned for an exec to a
node whose kubelet does not answer (tests/lab/test_klab_kubelet.py, the matrix test), where the kubernetes
client's WSClient.returncode raised "invalid literal for int() with base 10: 'error sending request: ...'"
(the cause's message is text, not an exit code). The lab test checks the real stream end to end.
"""

from __future__ import annotations

import json

import pytest

from kpdoctor.node.exec_status import exit_status, parse_exec_status

SUCCESS = '{"metadata":{},"status":"Success"}'
EXIT_3 = json.dumps({"metadata": {}, "status": "Failure", "message": "command terminated with non-zero exit code: "
                     "error executing command [sh -c exit 3], exit code 3", "reason": "NonZeroExitCode",
                     "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}})
UNREACHABLE = json.dumps({"metadata": {}, "status": "Failure", "message": "error sending request: Post "
                          "\"https://10.99.0.3:10250/exec/kube-system/kube-proxy-x/kube-proxy\": dial tcp "
                          "10.99.0.3:10250: connect: connection refused", "reason": "InternalError",
                          "details": {"causes": [{"message": "error sending request: Post ..."}]}, "code": 500})


@pytest.mark.parametrize(("text", "code", "error"), [
    (SUCCESS, 0, ""),
    (EXIT_3, 3, ""),
    (UNREACHABLE, None, "error sending request: Post \"https://10.99.0.3:10250/exec/kube-system/kube-proxy-x/"
     "kube-proxy\": dial tcp 10.99.0.3:10250: connect: connection refused"),
    ("", None, ""),
    ("not json\nat all", None, "not json at all"),
    ("[1, 2]", None, "[1, 2]"),
    (json.dumps({"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "1e9999"}]}}),
     None, "exec failed"),
])
def test_parse_exec_status(text: str, code: int | None, error: str) -> None:
    assert parse_exec_status(text) == (code, error)


def test_a_hostile_message_is_one_bounded_line() -> None:
    code, error = parse_exec_status(json.dumps({"status": "Failure", "message": "x\n\r\x1b[31m" + "y" * 10_000}))
    assert code is None and "\n" not in error and len(error) == 300 and error.endswith("…")


class _Channels:
    def __init__(self, text: str) -> None:
        self.text = text

    def read_channel(self, channel: int) -> str:
        assert channel == 3
        return self.text


class _NoChannels:
    returncode = 7


def test_exit_status_reads_the_error_channel_or_trusts_a_plain_stream() -> None:
    assert exit_status(_Channels(UNREACHABLE))[0] is None
    assert exit_status(_Channels(EXIT_3)) == (3, "")
    assert exit_status(_NoChannels()) == (7, "")
