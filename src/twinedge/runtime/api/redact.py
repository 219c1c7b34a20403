"""Keep secrets out of logs: ``?token=`` values become ``token=***``.

Browsers cannot send an ``Authorization`` header with ``EventSource`` or ``WebSocket``, so
those clients pass their API key as the ``token`` query parameter (docs/api.md). uvicorn
logs every request line with its query string (the access log, and "WebSocket ...
[accepted]" on ``uvicorn.error``), so without this filter every such key would be in the
log in clear. :class:`RedactTokens` rewrites a record's message and arguments; the key
name is matched after percent-decoding (``%74oken`` is ``token`` to the router too) and
regardless of case.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["SECRET_PARAMS", "RedactTokens", "install_log_redaction", "redact"]

SECRET_PARAMS = frozenset({"token", "access_token"})
# uvicorn's loggers that print request targets, and ours (a logger's filters see only the
# records logged on it, not those of its children, so each is named)
LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "twinedge",
    "twinedge.api",
    "twinedge.service",
    "twinedge.serve",
    "twinedge.mqtt",
)

# a query string inside text: from "?" to the first white space or quote
_QUERY = re.compile(r"\?([^\s\"']*)")


def _redact_query(m: re.Match[str]) -> str:
    parts = []
    for part in re.split(r"([&;])", m.group(1)):
        name, eq, _value = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            part = f"{name}=***"
        parts.append(part)
    return "?" + "".join(parts)


def redact(text: str) -> str:
    """``text`` with the value of every ``token`` query parameter replaced by ``***``.

    Examples:
        >>> redact('127.0.0.1:5 - "GET /api/2/events?filter=x&token=te_a_b HTTP/1.1" 200')
        '127.0.0.1:5 - "GET /api/2/events?filter=x&token=*** HTTP/1.1" 200'
        >>> redact("/api/2/events/ws?%74oken=te_a_b")
        '/api/2/events/ws?%74oken=***'
    """
    if "?" not in text:
        return text
    return _QUERY.sub(_redact_query, text)


class RedactTokens(logging.Filter):
    """A logging filter that redacts ``token`` query parameters in a record (it never
    drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install_log_redaction(*handlers: logging.Handler) -> None:
    """Put :class:`RedactTokens` on uvicorn's and twinedge's loggers (filters of a logger
    only see records logged on it) and on ``handlers`` (for records that propagate from
    below); idempotent."""
    targets: list[Any] = [logging.getLogger(n) for n in LOGGERS] + list(handlers)
    for t in targets:
        if not any(isinstance(f, RedactTokens) for f in t.filters):
            t.addFilter(RedactTokens())
