"""One line from a Kubernetes API error for a node's reason: the API server's own Status message when the
error carries one (an ApiException's body, or the text of a refused exec websocket handshake, which the
kubernetes client raises with status 0 and the response headers and body folded into its reason), so a
forbidden exec names the missing right instead of dumping headers; else "HTTP <status> <reason>"."""

from __future__ import annotations

import json
from typing import Any

STATUS_MARK = '{"kind":"Status"'
MAX_MESSAGE = 500


def status_of(text: str) -> dict[str, Any] | None:
    """The first Kubernetes Status object in `text` (hostile: anything else is None)."""
    at = text.find(STATUS_MARK)
    if at < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, at)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("message"), str) else None


def api_reason(exc: BaseException) -> str:
    """`exc` with the API server's message on one line (at most MAX_MESSAGE characters of it)."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    for text in (getattr(exc, "body", None), reason, str(exc)):
        doc = status_of(text) if isinstance(text, str) else None
        if doc is not None:
            code = doc.get("code") if isinstance(doc.get("code"), int) else status
            word = doc.get("reason") if isinstance(doc.get("reason"), str) else ""
            message = " ".join(doc["message"].split())[:MAX_MESSAGE]
            return " ".join(f"HTTP {code or '?'} {word}".split()) + f": {message}"
    if status:
        return f"HTTP {status} {reason}"
    return str(exc) or type(exc).__name__  # as before: callers match needles in the runtime's text
