"""Keep secrets out of logs: ``?token=`` values become ``token=***``, the password of a
URL (``postgresql://user:pass@host/db``, ``mqtt://user:pass@host``) becomes ``***``, and
every secret the service was told about (:func:`register_secret`) is masked wherever it
appears.

Browsers cannot send an ``Authorization`` header with ``EventSource`` or ``WebSocket``, so
those clients pass their API key as the ``token`` query parameter (docs/api.md). uvicorn
logs every request line with its query string (the access log, and "WebSocket ...
[accepted]" on ``uvicorn.error``), so without this filter every such key would be in the
log in clear. :class:`RedactTokens` rewrites a record's message and arguments; the key
name is matched after percent-decoding (``%74oken`` is ``token`` to the router too) and
regardless of case.

Database and broker URLs carry passwords and appear in start-up messages, connection
errors and exception text; :func:`redact` masks a URL's password (and ``password=`` in a
query string or a libpq connection string), and :func:`redact_url` is the form to print.
The filter also redacts a record's formatted traceback.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "SECRET_PARAMS",
    "RedactTokens",
    "install_log_redaction",
    "redact",
    "redact_url",
    "register_secret",
]

SECRET_PARAMS = frozenset({"token", "access_token", "password", "passwd", "secret"})
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
    "twinedge.host",
    "twinedge.store",
)

# a query string inside text: from "?" to the first white space or quote
_QUERY = re.compile(r"\?([^\s\"']*)")
# the password of a URL's user information: scheme://user:PASSWORD@ (up to the last "@"
# before the path, as urllib splits it)
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@\"']*):([^\s/\"']*)@")
# libpq's key=value connection strings
_KEYWORD = re.compile(r"(\bpassword\s*=\s*)('[^']*'|[^\s'\"]+)", re.IGNORECASE)
# exact secrets the service holds (a database or broker password, tokens): masked anywhere
_SECRETS: set[str] = set()
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words


def _redact_query(m: re.Match[str]) -> str:
    parts = []
    for part in re.split(r"([&;])", m.group(1)):
        name, eq, _value = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            part = f"{name}=***"
        parts.append(part)
    return "?" + "".join(parts)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in a log line from now on (values shorter than
    :data:`MIN_SECRET_CHARS` are ignored); its percent-encoded form is masked too."""
    if value and len(value) >= MIN_SECRET_CHARS:
        from urllib.parse import quote

        _SECRETS.update({value, quote(value, safe="")})


def redact(text: str) -> str:
    """``text`` with the value of every ``token`` (or ``password``) query parameter, every
    URL password and every registered secret replaced by ``***``.

    Examples:
        >>> redact('127.0.0.1:5 - "GET /api/2/events?filter=x&token=te_a_b HTTP/1.1" 200')
        '127.0.0.1:5 - "GET /api/2/events?filter=x&token=*** HTTP/1.1" 200'
        >>> redact("/api/2/events/ws?%74oken=te_a_b")
        '/api/2/events/ws?%74oken=***'
        >>> redact("cannot reach mqtt://svc:p%40ss@broker:1883 (refused)")
        'cannot reach mqtt://svc:***@broker:1883 (refused)'
    """
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    if "://" in text:
        text = _USERINFO.sub(r"\1:***@", text)
    if "=" in text and "password" in text.lower():
        text = _KEYWORD.sub(r"\1***", text)
    if "?" not in text:
        return text
    return _QUERY.sub(_redact_query, text)


def redact_url(url: str) -> str:
    """``url`` fit to print: its password (and ``password``/``token`` query values) as
    ``***``.

    Examples:
        >>> redact_url("postgresql://twin:s3cret@db:5432/twins?sslmode=require")
        'postgresql://twin:***@db:5432/twins?sslmode=require'
        >>> redact_url("mqtt://twinedge-service@broker:1883")
        'mqtt://twinedge-service@broker:1883'
    """
    return redact(url)


_FORMATTER = logging.Formatter()


class RedactTokens(logging.Filter):
    """A logging filter that redacts ``token`` query parameters in a record (it never
    drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:  # formatted once, here, then redacted
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if not isinstance(record.msg, str):  # an exception or object logged as the message
            record.msg = str(record.msg)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if isinstance(record.args, tuple) and any(
            not isinstance(a, str | int | float | bool | type(None)) for a in record.args
        ):  # an exception or object as an argument: its text may hold a URL
            try:
                record.msg, record.args = redact(record.getMessage()), ()
            except Exception:  # a record that cannot format stays as it was
                pass
        return True


def install_log_redaction(*handlers: logging.Handler) -> None:
    """Put :class:`RedactTokens` on uvicorn's and twinedge's loggers (filters of a logger
    only see records logged on it) and on ``handlers`` (for records that propagate from
    below); idempotent."""
    targets: list[Any] = [logging.getLogger(n) for n in LOGGERS] + list(handlers)
    for t in targets:
        if not any(isinstance(f, RedactTokens) for f in t.filters):
            t.addFilter(RedactTokens())
