"""What every route shares: the caller's principal, JSON bodies, ETags, times."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection

from twinedge import textinput
from twinedge.runtime.api.problems import invalid_params, problem
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import MAX_TIME_S, MIN_TIME_S, TwinService
from twinedge.runtime.things import JSON_LIMITS, escape_token

M = TypeVar("M", bound=BaseModel)
JSON_TYPES = ("application/json",)
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/json")

# Declares the scheme in OpenAPI; the header itself is read by :func:`get_principal` so
# that a malformed header gets a precise message.
bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer te_<keyId>_<secret>` (see docs/api.md).",
)


def get_service(request: Request) -> TwinService:
    return request.app.state.service


def token_from(authorization: str | None, query_token: str | None = None) -> str | None:
    """The bearer token of an ``Authorization`` header (or the ``token`` query parameter)."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise problem(
                401, "the Authorization header must be 'Bearer <token>' (an API key of twinedge)"
            )
        return value.strip()
    return query_token


async def get_principal(
    request: Request,
    _cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` (401 problem otherwise)."""
    token = token_from(request.headers.get("authorization"))
    return await get_service(request).authenticate(token)


Caller = Annotated[Principal, Depends(get_principal)]
Service = Annotated[TwinService, Depends(get_service)]


def location(request: Request) -> str:
    """The request's path for a ``Location`` header (percent-encoded: headers are
    Latin-1)."""
    return quote(request.url.path, safe="/:@!$&'()*+,;=~")


# --- JSON bodies ------------------------------------------------------------------------


async def read_json(
    request: Request, *, media_types: tuple[str, ...] = JSON_TYPES, required: bool = True
) -> Any:
    """The request body as JSON: media type checked (415), size limited (413), malformed
    JSON reported with its line and column (400)."""
    ctype = request.headers.get("content-type")
    if ctype:
        mt = ctype.split(";", 1)[0].strip().lower()
        if mt not in media_types:
            raise problem(
                415,
                f"send the body as {' or '.join(media_types)}, not {mt}",
                accept=list(media_types),
            )
    raw = await read_body(request)
    if not raw.strip():
        if required:
            raise problem(400, f"this request needs a JSON body ({media_types[0]})", pointer="")
        return None
    try:
        return textinput.loads(raw, JSON_LIMITS)
    except textinput.TextInputError as e:
        raise problem(400, e.message, pointer=e.pointer, **e.extra) from None


async def read_body(request: Request) -> bytes:
    """The raw request body, size limited (413)."""
    limit = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise problem(413, f"the body has {declared} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise problem(413, f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_model(model: type[M], data: Any) -> M:
    """Validate ``data`` against ``model``; a 400 problem with a JSON pointer otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(x) for x in err.get("loc", ())]
        pointer = "/" + "/".join(escape_token(x) for x in loc) if loc else ""
        where = f"field {pointer}" if loc else "the body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            msg = f"unknown field; expected {allowed}"
        raise problem(400, f"{where}: {msg}", pointer=pointer) from None


# --- ETags and conditional requests -------------------------------------------------------

_ETAG_RE = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def etag(revision: int) -> str:
    """The ETag of a thing at ``revision``, as Ditto writes it: ``"rev:3"``."""
    return f'"rev:{revision}"'


def parse_etags(header: str | None) -> list[str] | None:
    """``None`` (absent), ``["*"]``, or the opaque tags (weak ``W/`` prefix dropped,
    quotes removed; an unquoted tag is accepted too)."""
    if header is None:
        return None
    header = header.strip()
    if header == "*":
        return ["*"]
    tags = []
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        m = _ETAG_RE.fullmatch(part)
        tags.append(m.group(2) if m else part.removeprefix("W/").strip('"'))
    return tags


MAX_REVISION_DIGITS = 16  # revisions lie in 0..2**53


def tag_revision(tag: str) -> int | bool | None:
    """The revision an ETag names: ``rev:3`` (Ditto's form, as sent) or ``3`` (the form
    of earlier versions) -> 3; ``None`` for a tag of more digits than any revision has
    (it names no revision); ``False`` for a tag this API never sends."""
    t = tag[4:] if tag.startswith("rev:") else tag
    if t.isascii() and t.isdigit():
        return int(t) if len(t) <= MAX_REVISION_DIGITS else None
    return False


def revisions_of(tags: list[str], header: str) -> set[int]:
    """The revisions named by ETags (a 412 problem for a tag this API never sends). A tag of
    more digits than any revision has names no revision: it is left out (so ``If-Match``
    with only such tags fails with 412, and ``If-None-Match`` holds)."""
    out = set()
    for t in tags:
        rev = tag_revision(t)
        if rev is False:
            raise problem(
                412,
                f'{header}: {shorten(t)!r} is not an ETag of this API; use "rev:<revision>" as '
                "sent in the ETag header, or *",
                error="things:precondition.failed",
            )
        if isinstance(rev, int) and not isinstance(rev, bool):
            out.add(rev)
    return out


def shorten(text: str, n: int = 60) -> str:
    """``text`` cut to ``n`` characters (with ``...``) for a message."""
    return text if len(text) <= n else text[: n - 3] + "..."


# --- times --------------------------------------------------------------------------------


def parse_time(name: str, value: str | None) -> float | None:
    """RFC 3339 (``2024-05-01T12:00:00Z``) or unix seconds -> unix seconds, within
    :data:`MIN_TIME_S` .. :data:`MAX_TIME_S` (a 400 problem otherwise)."""
    t = _parse_time(name, value)
    if t is not None and not MIN_TIME_S <= t < MAX_TIME_S:
        raise problem(
            400,
            f"query parameter {name!r}: {shorten(value or '')!r} lies outside the times the service keeps; "
            "use a time from 0001-01-01T00:00:00Z up to 5000-01-01T00:00:00Z",
            **invalid_params({"name": name, "in": "query", "reason": "out of range"}),
        )
    return t


def _parse_time(name: str, value: str | None) -> float | None:
    if value is None or value == "":
        return None
    v = value.strip()
    try:
        t = float(v)
        if not math.isfinite(t):
            raise ValueError
        return t
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise problem(
            400,
            f"query parameter {name!r}: {shorten(value)!r} is not a time; use RFC 3339 "
            "(2024-05-01T12:00:00Z) or unix seconds",
            **invalid_params({"name": name, "in": "query", "reason": "not a time"}),
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, ValueError):  # outside what the platform's time functions take
        return -math.inf if dt.year < 1970 else math.inf


# --- what a request may carry ---------------------------------------------------------------

#: Conditional headers no route evaluates: refused (400) instead of ignored.
UNSUPPORTED_CONDITIONAL_HEADERS = (
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "if-equal",
)
#: The headers only the routes of :data:`CONDITIONAL_OPERATIONS` evaluate.
CONDITIONAL_HEADERS = ("if-match", "if-none-match", "condition")
#: Operation ids of the routes that evaluate ``If-Match``, ``If-None-Match`` and
#: ``condition`` (the levels of a thing); filled as those routes are made.
CONDITIONAL_OPERATIONS: set[str] = set()
_ALLOWED_QUERY: dict[int, frozenset[str]] = {}


def _query_names(dep: Dependant) -> set[str]:
    names = {q.alias for q in dep.query_params}
    for sub in dep.dependencies:
        names |= _query_names(sub)
    return names


def allowed_query(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` declares (its own and its dependencies')."""
    key = id(route)
    if key not in _ALLOWED_QUERY:
        _ALLOWED_QUERY[key] = frozenset(_query_names(route.dependant))
    return _ALLOWED_QUERY[key]


async def check_request(conn: HTTPConnection) -> None:
    """Refuse (400) what a request carries that its route would not read: a query
    parameter it does not declare, a conditional header no route evaluates
    (``If-Modified-Since`` ...), or ``If-Match`` / ``If-None-Match`` / ``condition`` on a
    route that does not evaluate them. Nothing a client sends is silently ignored."""
    if conn.scope.get("type") != "http":
        return
    route = conn.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    refuse_unread(conn, route.path, allowed_query(route), route.operation_id)


def refuse_unread(
    conn: HTTPConnection, path: str, allowed: frozenset[str], operation_id: str | None = None
) -> None:
    """What :func:`check_request` checks, for a route at ``path`` that reads the query
    parameters ``allowed`` (also for routes mounted outside FastAPI's dependencies).

    Raises:
        ProblemError: 400, naming the first parameter or header the route would not read.
    """
    query = conn.scope.get("query_string")
    unknown = sorted({k for k in conn.query_params if k not in allowed}) if query else []
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise problem(
            400,
            f"unknown query parameter {shorten(unknown[0])!r} on {path}; this route takes: {known}",
            error="twinedge:query.parameter.unknown",
            **invalid_params(
                *(
                    {"name": k, "in": "query", "reason": "not a parameter of this route"}
                    for k in unknown
                )
            ),
        )
    headers = conn.headers
    for h in UNSUPPORTED_CONDITIONAL_HEADERS:
        if h in headers:
            raise problem(
                400,
                f"header {h!r} is not supported; use If-Match / If-None-Match with the ETag "
                '("rev:<revision>") or ?condition=<rql> on a thing',
                error="header.notsupported",
                **invalid_params({"name": h, "in": "header", "reason": "not supported"}),
            )
    if operation_id not in CONDITIONAL_OPERATIONS:
        for h in CONDITIONAL_HEADERS:
            if h in headers:
                raise problem(
                    400,
                    f"header {h!r} is not evaluated on {path}; only the levels of a "
                    "thing (/api/2/things/{thingId}/...) take conditions",
                    error="header.notsupported",
                    **invalid_params({"name": h, "in": "header", "reason": "not evaluated here"}),
                )
