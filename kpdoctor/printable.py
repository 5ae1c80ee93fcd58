"""Control and bidi characters from outside shown as visible escapes: `printable`, for every text output.

A leaf (standard library only): the report renderers (`kpdoctor.report`) and the `why` renderer both use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Node output (rule dumps, kube-proxy's HTTP answers, logs) reaches findings verbatim. Control characters in it
# would drive the reader's terminal (ESC sequences) and make JUnit XML unparsable (XML 1.0 forbids them), so
# every text renderer gets them as visible escapes; JSON escapes them itself.
# Bidi controls and invisible format characters (U+202E "Trojan Source") are shown escaped too (issue 9).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                      "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> Any:
    """A copy of a report value with control characters (except tab and newline) shown as \\xNN escapes."""
    if isinstance(value, str):
        return _CONTROL.sub(_escape, value) if _CONTROL.search(value) else value
    if isinstance(value, Mapping):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value
