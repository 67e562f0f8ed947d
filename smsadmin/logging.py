"""Logging filters.

``ForbiddenOneLine``, on the ``django.request`` logger: a permission refusal (403) is an
expected answer, not an error, so it is logged as one line saying who asked for what and
why, without the traceback Django attaches to PermissionDenied. Other records, 500s with
their tracebacks first of all, pass unchanged.
"""

from __future__ import annotations

import logging


def _plain(text: str) -> str:
    # As Django's log_response does: no line breaks or control characters from a URL.
    return text.encode("unicode_escape").decode("ascii")


def _who(request: object) -> str:
    try:
        user = request.user  # type: ignore[attr-defined]
        if user.is_authenticated:
            return _plain(user.get_username())
    except Exception:  # noqa: BLE001 - a log filter must never raise
        return "unknown"
    return "anonymous"


def _why(record: logging.LogRecord) -> str:
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None:
        return "refused"
    return _plain(str(exc)) or "no permission"


class ForbiddenOneLine(logging.Filter):
    """``Forbidden: GET /compose/ user=sam (no permission)``, one line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if getattr(record, "status_code", None) != 403 or request is None:
            return True
        method = getattr(request, "method", "?")
        path = _plain(getattr(request, "path", "?"))
        record.msg = "Forbidden: %s %s user=%s (%s)"
        record.args = (method, path, _who(request), _why(record))
        record.exc_info = None
        record.exc_text = None
        return True
