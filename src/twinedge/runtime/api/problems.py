"""Every error as an RFC 7807 problem document (``application/problem+json``).

The service raises transport-neutral :class:`~twinedge.errors.ServiceError` s; the routes
raise :class:`ProblemError` for what only HTTP knows (media types, body sizes, ETags);
FastAPI raises its own validation errors and Starlette its 404/405. All of them leave the
app as one shape::

    {"type": "https://twinedge.dev/problems/bad-request", "title": "Bad Request",
     "status": 400, "detail": "what was wrong and what to do", "instance": "/api/2/...",
     "pointer": "/attributes/x"}      # where in the body, when it is about the body

Beside the RFC 7807 members every problem carries those of Eclipse Ditto's error
(``AdvancedError`` in Ditto's OpenAPI), so that Ditto's clients read it too: ``status``
(shared), ``error`` (Ditto's error code such as ``things:thing.notfound``, or a
``twinedge:`` code where Ditto has none), ``message`` (= ``detail``) and ``description``
(what to do). A raiser names the code with ``error=``; otherwise :func:`ditto_error`
derives it from the status, the path and the pointer.

Query, path and header parameters are named in ``invalid-params`` (RFC 7807 section 3's
example extension): ``[{"name": "limit", "in": "query", "reason": "..."}]``.
A service error becomes the problem of its class in :data:`STATUS_OF` (the one table
from the core's errors to HTTP statuses; a subclass answers as its nearest listed
ancestor), with the error's ``detail``, ``pointer`` and ``extra`` members. A service error
of a class the table does not list, and any unexpected exception, becomes a 500 problem
with an error id that is also in the log; neither its message nor the traceback reaches
the client.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinedge.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OperationFailed,
    PreconditionFailed,
    ServiceError,
    TimedOut,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

PROBLEM_JSON = "application/problem+json"
# The status /metrics counts for a request whose client disconnected before it was read
# (nginx's convention; nothing is sent).
CLIENT_CLOSED_REQUEST = 499
log = logging.getLogger("twinedge.api")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    428: "Precondition Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


#: The HTTP status of each kind of service error (see :func:`problem_of`).
STATUS_OF: dict[type[ServiceError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    TimedOut: 408,
    Conflict: 409,
    PreconditionFailed: 412,
    TooLarge: 413,
    OperationFailed: 500,
    Unavailable: 503,
}


class ProblemError(Exception):
    """An RFC 7807 problem: ``status`` (HTTP), ``title``, ``detail`` and where it was.

    The HTTP edge's own error: the routes raise it (through :func:`problem`) for what only
    HTTP knows, and :func:`problem_of` turns a service error into one; the handlers of
    :func:`install_problem_handlers` render it as ``application/problem+json``.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        pointer: str | None = None,
        type_: str | None = None,
        **extra: Any,
    ):
        super().__init__(detail)
        self.status, self.title, self.detail, self.pointer = status, title, detail, pointer
        self.type = type_ or f"https://twinedge.dev/problems/{title.lower().replace(' ', '-')}"
        self.extra = extra

    def to_json(self, instance: str | None = None, method: str | None = None) -> dict[str, Any]:
        """The problem document; ``instance`` is the request path it answers and
        ``method`` its method (both choose Ditto's error code when none was named)."""
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        if self.pointer is not None:
            doc["pointer"] = self.pointer
        doc.update(self.extra)
        doc["error"] = self.extra.get("error") or ditto_error(
            self.status, instance or "", self.pointer, method
        )
        doc["message"] = self.detail
        doc["description"] = self.extra.get("description") or _DESCRIPTIONS.get(
            self.status, "Correct the request as the message says and send it again."
        )
        return doc


_DESCRIPTIONS = {
    400: "Correct the request as the message says and send it again.",
    401: "Send 'Authorization: Bearer <API key>' with a key of this service.",
    403: "Use a key whose domain and role allow this, or ask a domain admin for a grant.",
    404: "Check the thing id and the path, and that your key may read the thing.",
    405: "Use one of the methods the Allow header lists.",
    408: "The device did not answer in time; check that it is connected, or wait longer.",
    409: "Read the current state and retry.",
    412: "Read the thing again to get its current ETag (or check the condition), then retry.",
    413: "Send a smaller body.",
    415: "Send the body with the media type the message names.",
    429: "Wait and retry.",
    500: "Retry; report the error id if it persists.",
    503: "Retry in a moment.",
}

# (status, path prefix) -> Ditto's error code; the first match wins
_THINGS, _SEARCH = "/api/2/things", "/api/2/search"
_POINTER_ERRORS = {
    "/filter": "rql.expression.invalid",
    "/sort": "thing-search:search.option.invalid",
    "/limit": "thing-search:search.option.invalid",
    "/cursor": "thing-search:search.option.invalid",
    "/option": "thing-search:search.option.invalid",
    "/namespaces": "thing-search:search.namespaces.invalid",
    "/fields": "json.fieldselector.invalid",
    "/thingId": "things:id.invalid",
    "/policyId": "policies:id.invalid",
    "/definition": "things:definition.identifier.invalid",
}


def ditto_error(status: int, path: str, pointer: str | None, method: str | None = None) -> str:
    """Ditto's error code for a problem no raiser named one for.

    Examples:
        >>> ditto_error(404, "/api/2/things/a:b", None)
        'things:thing.notfound'
        >>> ditto_error(400, "/api/2/search/things", "/filter")
        'rql.expression.invalid'
        >>> ditto_error(408, "/api/2/things/a:b/inbox/messages/reboot", None)
        'messages:message.timeout'
    """
    things = path.startswith(_THINGS)
    if status == 400:
        if pointer in _POINTER_ERRORS:
            return _POINTER_ERRORS[pointer]
        return (
            "things:thing.invalid" if things and pointer is not None else "twinedge:request.invalid"
        )
    if status == 403 and things:
        return (
            "things:thing.notmodifiable"
            if method not in (None, "GET", "HEAD")
            else "twinedge:access.forbidden"
        )
    by_status = {
        401: "gateway:authentication.failed",
        403: "twinedge:access.forbidden",
        404: "things:thing.notfound" if things else "twinedge:resource.notfound",
        405: "gateway:method.notallowed",
        406: "twinedge:not.acceptable",
        # a message to a thing's inbox that its device did not answer, as Ditto names it
        408: "messages:message.timeout" if "/inbox/messages/" in path else "command.timeout",
        409: "things:thing.conflict",
        412: "things:precondition.failed",
        413: "things:thing.toolarge" if things else "twinedge:request.toolarge",
        415: "mediatype.unsupported",
        428: "twinedge:precondition.required",
        429: "too.many.requests",
        500: "internalerror",
        503: "things:thing.unavailable" if things else "gateway:service.unavailable",
    }
    return by_status.get(status, f"twinedge:status.{status}")


def status_of(exc: ServiceError) -> int | None:
    """The HTTP status of ``exc``: that of its class in :data:`STATUS_OF` or of its nearest
    listed ancestor; ``None`` when no class of its ancestry is listed."""
    for cls in type(exc).__mro__:
        status = STATUS_OF.get(cls)
        if status is not None:
            return status
    return None


def problem_of(exc: ServiceError | ProblemError) -> ProblemError:
    """The problem that answers ``exc``.

    A service error keeps its ``detail``, ``pointer`` and ``extra`` members under the
    status :func:`status_of` gives it. One of a class nobody mapped is an error in
    twinedge, not in the request: it is logged with an error id, and the client gets a
    500 problem naming only that id (never the error's message).

    Parameters:
        exc: a service error, or a problem already (returned as it is).
    """
    if isinstance(exc, ProblemError):
        return exc
    status = status_of(exc)
    if status is None:
        error_id = uuid.uuid4().hex[:12]
        log.error("unmapped service error %s: %s: %s", error_id, type(exc).__name__, exc.detail)
        return unexpected_problem(error_id)
    return problem(status, exc.detail, pointer=exc.pointer, **exc.extra)


def unexpected_problem(error_id: str) -> ProblemError:
    """The 500 problem of an unexpected error, logged as ``error_id``."""
    return problem(
        500,
        f"an unexpected error occurred (error id {error_id}); it has been logged — "
        "retry, and report the id if it persists",
        errorId=error_id,
    )


def invalid_params(*params: dict[str, str]) -> dict[str, Any]:
    """The ``invalid-params`` member of a problem, as keyword arguments for :func:`problem`:
    each ``{"name", "in", "reason"}``."""
    return {"invalid-params": list(params)}


def problem(status: int, detail: str, *, pointer: str | None = None, **extra: Any) -> ProblemError:
    """A :class:`ProblemError` with the standard title of ``status``."""
    return ProblemError(status, _TITLES.get(status, "Error"), detail, pointer=pointer, **extra)


def problem_response(
    exc: ProblemError,
    instance: str | None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> JSONResponse:
    hdrs = dict(headers or {})
    if exc.status == 401:
        hdrs.setdefault("WWW-Authenticate", 'Bearer realm="twinedge"')
    return JSONResponse(
        _printable(exc.to_json(instance, method)),
        status_code=exc.status,
        media_type=PROBLEM_JSON,
        headers=hdrs,
    )


def _printable(v: Any) -> Any:
    """``v`` with every lone surrogate in its text written as ``\\udXXX``: a problem often
    quotes the bad input (a pointer to a key, a parameter), and a response must be UTF-8."""
    if isinstance(v, str):
        return v if v.isascii() else v.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(v, dict):
        return {_printable(k): _printable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_printable(x) for x in v]
    return v


def _where(loc: tuple[Any, ...]) -> tuple[str, str]:
    """(``in``, name) of a FastAPI error location like ``("query", "limit")``."""
    if not loc:
        return "request", ""
    kind, rest = str(loc[0]), [str(x) for x in loc[1:]]
    return kind, "/".join(rest)


def validation_problem(errors: list[dict[str, Any]]) -> ProblemError:
    """Turn FastAPI / pydantic validation errors (normally a 422) into one 400 problem."""
    params = []
    pointer = None
    for err in errors:
        kind, name = _where(tuple(err.get("loc", ())))
        reason = str(err.get("msg", "invalid"))
        if kind == "body":
            pointer = pointer or ("/" + name if name else "")
        params.append({"name": name, "in": kind, "reason": reason})
    first = params[0] if params else {"name": "", "in": "request", "reason": "invalid"}
    if first["in"] == "body":
        where = f"body field {('/' + first['name']) if first['name'] else '(root)'}"
    else:
        where = f"{first['in']} parameter {first['name']!r}"
    more = f" (and {len(params) - 1} more, see invalid-params)" if len(params) > 1 else ""
    return problem(
        400, f"{where}: {first['reason']}{more}", pointer=pointer, **{"invalid-params": params}
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` as a problem document."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError | ServiceError)
        exc = problem_of(exc)
        if exc.status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.url.path, exc.status, exc.detail)
        return problem_response(exc, request.url.path, method=request.method)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            validation_problem(list(exc.errors())), request.url.path, method=request.method
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        if status == 404:
            path = request.url.path
            if path in getattr(request.app.state, "websocket_paths", ()):
                detail = f"{path} is a WebSocket endpoint; connect with ws:// (or use SSE)"
            elif path.startswith("/api/2/"):
                detail = f"no route {path}; see /openapi.json for the routes of the API"
            else:
                detail = f"no route {path}; the API lives under /api/2 (see /openapi.json)"
        elif status == 405:
            allow = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow") or ""
            detail = f"{request.method} is not allowed on {request.url.path}" + (
                f"; use {allow}" if allow else ""
            )
        else:
            detail = str(exc.detail)
        return problem_response(
            problem(status, detail), request.url.path, dict(exc.headers or {}), request.method
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(ServiceError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


class GuardMiddleware:
    """Outermost safety net: an exception that escaped every handler becomes a logged 500
    problem (with an error id), never a traceback; a client that disconnects before its
    request body was read is logged on one line (info) and counted with status 499; and
    ``on_response`` sees every request's method, route, status and duration (for
    ``/metrics``)."""

    def __init__(
        self,
        app: ASGIApp,
        on_response: Callable[[Scope, int, float], Awaitable[None] | None] | None = None,
    ) -> None:
        self.app = app
        self.on_response = on_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        status = 500
        t0 = time.perf_counter()
        bad = bad_target(scope)
        if bad is not None:
            status = 400
            await _send_problem(send, problem(400, bad), scope.get("path"))
            if self.on_response is not None:
                res = self.on_response(scope, status, time.perf_counter() - t0)
                if res is not None:
                    await res
            return

        async def send_wrapper(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # the client went away before its request was read in full (an aborted upload):
            # nobody to answer, nothing wrong with the service
            if not started:
                status = CLIENT_CLOSED_REQUEST
            log.info(
                "client disconnected during %s %s before the request was read",
                scope.get("method"),
                scope.get("path"),
            )
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception(
                "unhandled error %s in %s %s", error_id, scope.get("method"), scope.get("path")
            )
            if not started:
                status = 500
                await _send_problem(send, unexpected_problem(error_id), scope.get("path"))
        finally:
            if self.on_response is not None:
                res = self.on_response(scope, status, time.perf_counter() - t0)
                if res is not None:
                    await res


async def _send_problem(send: Send, exc: ProblemError, instance: str | None) -> None:
    body = json.dumps(exc.to_json(instance)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bad_target(scope: Scope) -> str | None:
    """Why the request target cannot be read, or None: its path and query must be UTF-8
    once percent-decoded (RFC 3986 section 2.5). The server would otherwise turn every
    invalid byte, a lone surrogate's ``%ED%A0%80`` included, into U+FFFD, and a thing, a
    property or a filter would be named other than the client wrote."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogatepass")
    for what, part in (("path", raw), ("query", scope.get("query_string") or b"")):
        if b"%" not in part and part.isascii():
            continue
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError as e:
            return (
                f"the {what} of the URL is not UTF-8 once percent-decoded (byte {e.start}); "
                "percent-encode the UTF-8 bytes of the text (a lone surrogate has none)"
            )
    return None
