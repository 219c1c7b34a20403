"""Search, count, aggregate (``/api/2/search/things``) and groups (``/api/2/groups``).

Search speaks Ditto's parameters — ``filter`` (RQL), ``option=size(n),sort(+p,-p),cursor(c)``,
``namespaces=a,b`` and ``fields`` with Ditto's field selector — on ``GET`` and, with the
same names in an ``application/x-www-form-urlencoded`` body, on ``POST`` (count too).
twinedge's own ``sort``, ``limit`` and ``cursor`` query parameters still work; naming one
thing both ways is refused. Namespaces become a filter on ``thingId``, so a cursor is tied
to them as to the filter.

Ditto's older paging, ``option=limit(offset,count)``, answers as Ditto does: the page that
starts at ``offset`` and ``nextPageOffset`` (``offset + count``, or ``-1`` on the last
page) instead of a cursor. The store pages by keyset only, so the route reaches the offset
by walking keyset pages of the same query (a read of ``offset`` things, the cost Ditto
warns of for high offsets) and then reads the page itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from twinedge.runtime import rql, things
from twinedge.runtime.api.common import (
    Caller,
    Service,
    location,
    parse_model,
    read_body,
    read_json,
    shorten,
)
from twinedge.runtime.api.models import (
    COMMON_RESPONSES,
    AggregateResult,
    GroupIn,
    GroupList,
    GroupPage,
    GroupSummary,
    SearchResult,
    problem_responses,
    request_body,
)
from twinedge.runtime.api.problems import ProblemError, invalid_params, problem
from twinedge.runtime.api.routes_things import parse_fields, select
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService
from twinedge.runtime.store.sql_query import MAX_SORT_KEYS

router = APIRouter(prefix="/api/2", responses=COMMON_RESPONSES)

FilterQuery = Annotated[
    str | None,
    Query(
        description='an RQL filter, e.g. `and(eq(attributes/kind,"robot"),gt(_revision,3))`',
    ),
]


#: The top-level fields a sort may start with (anything else names nothing a thing holds).
SORTABLE = (
    "thingId",
    "policyId",
    "definition",
    "attributes",
    "features",
    "_revision",
    "_created",
    "_modified",
    "_domain",
    "_host",
)
MAX_SIZE = 200  # Ditto's largest page (option=size(n))
MAX_OFFSET = 1_000_000_000  # the largest offset of limit(offset,count)
SKIP_PAGE = 1000  # things read a step while walking to the offset of limit(offset,count)
MAX_OPTION_CHARS = 60_000


def _bad(name: str, message: str, error: str, reason: str) -> ProblemError:
    return problem(
        400,
        message,
        error=error,
        **invalid_params({"name": name, "in": "query", "reason": reason}),
    )


def parse_sort(sort: str | None, name: str = "sort") -> list[tuple[str, bool]]:
    """``+attributes/name,-_modified`` -> ``[("attributes/name", True), ("_modified",
    False)]``. A ``+`` that arrived as a space (form encoding) counts as ``+``; a field
    without a sign sorts ascending. The first key of each path must be one a thing has
    (:data:`SORTABLE`)."""
    out: list[tuple[str, bool]] = []
    for raw in (sort or "").split(","):
        if not raw.strip():
            continue
        ascending = not raw.lstrip(" ").startswith("-")
        field = raw.strip().lstrip("+-").strip().strip("/")
        if not field:
            raise _bad(
                name,
                f"{name}: {raw!r} names no field; use +field or -field, comma-separated "
                "(e.g. +attributes/name,-_modified)",
                "thing-search:search.option.invalid",
                "empty field",
            )
        top = field.split("/", 1)[0]
        if top not in SORTABLE:
            raise _bad(
                name,
                f"{name}: unknown sort path {shorten(field)!r}; a sort path starts with one of "
                + ", ".join(SORTABLE),
                "thing-search:search.option.invalid",
                "unknown sort path",
            )
        out.append((field, ascending))
    if len(out) > MAX_SORT_KEYS:
        raise _bad(
            name,
            f"{name}: at most {MAX_SORT_KEYS} fields, got {len(out)}",
            "thing-search:search.option.invalid",
            f"more than {MAX_SORT_KEYS} fields",
        )
    return out


@dataclass
class Options:
    """What Ditto's ``option`` parameter says: ``size(n)``, ``sort(...)``, ``cursor(c)``;
    ``offset`` is set by ``limit(offset,count)`` alone (``count`` goes to ``size``)."""

    size: int | None = None
    sort: list[tuple[str, bool]] | None = None
    cursor: str | None = None
    offset: int | None = None


def _split_top(text: str) -> list[str] | None:
    """``text`` split at the commas outside parentheses (``None``: unbalanced)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        return None
    parts.append(text[start:])
    return parts


def parse_option(values: list[str]) -> Options:
    """Ditto's search ``option``: ``size(n)`` (1..200), ``sort(+path,-path)``,
    ``cursor(c)`` and ``limit(offset,count)`` (Ditto's deprecated paging: offset
    0..:data:`MAX_OFFSET`, count 1..200; not with ``size`` or ``cursor``),
    comma-separated; the parameter may repeat.

    Raises:
        ProblemError: 400 (``thing-search:search.option.invalid``) naming what is wrong.

    Examples:
        >>> parse_option(["size(2),sort(+thingId,-attributes/n)"])
        Options(size=2, sort=[('thingId', True), ('attributes/n', False)], cursor=None, offset=None)
        >>> parse_option(["limit(20,10)"])
        Options(size=10, sort=None, cursor=None, offset=20)
    """
    opts = Options()
    seen: set[str] = set()
    text = ",".join(v for v in values if v.strip())
    if len(text) > MAX_OPTION_CHARS:
        raise _bad(
            "option",
            f"option is longer than {MAX_OPTION_CHARS} characters",
            "thing-search:search.option.invalid",
            "too long",
        )
    parts = _split_top(text) if text else []
    if parts is None:
        raise _bad(
            "option",
            f"option {shorten(text)!r}: unbalanced parentheses; write e.g. "
            "size(10),sort(+thingId),cursor(<cursor>)",
            "thing-search:search.option.invalid",
            "unbalanced parentheses",
        )
    for part in parts:
        item = part.strip()
        m = _OPTION_RE.fullmatch(item)
        if not m:
            raise _bad(
                "option",
                f"option {shorten(item)!r} is not name(arguments); the options are size(n), "
                "sort(+path,-path), cursor(c) and limit(offset,count)",
                "thing-search:search.option.invalid",
                "malformed",
            )
        name, arg = m.group(1), m.group(2)
        if name not in ("size", "sort", "cursor", "limit"):
            raise _bad(
                "option",
                f"unknown option {name!r}; the options are size(n), sort(+path,-path), "
                "cursor(c) and limit(offset,count)",
                "thing-search:search.option.invalid",
                "unknown option",
            )
        key = "size" if name == "limit" else name
        if key in seen:
            raise _bad(
                "option",
                f"option {name} is given twice"
                + (" (limit and size both set the page size)" if key == "size" else ""),
                "thing-search:search.option.invalid",
                "repeated",
            )
        seen.add(key)
        if name == "size":
            opts.size = _page_size(arg, "size")
        elif name == "limit":
            off, comma, count = arg.partition(",")
            o = off.strip()
            if not (comma and o.isascii() and o.isdigit() and len(o) <= 10):
                raise _bad(
                    "option",
                    f"option limit({shorten(arg)}) is not limit(offset,count); e.g. limit(0,25) "
                    "for the first 25, limit(25,25) for the next",
                    "thing-search:search.option.invalid",
                    "malformed limit",
                )
            if int(o) > MAX_OFFSET:
                raise _bad(
                    "option",
                    f"option limit({shorten(arg)}): the offset must be 0..{MAX_OFFSET:,}; page "
                    "further with size(n) and the cursor of each answer (cursor(c))",
                    "thing-search:search.option.invalid",
                    "offset out of range",
                )
            opts.offset = int(o)
            opts.size = _page_size(count, "limit")
        elif name == "sort":
            opts.sort = parse_sort(arg, "option sort")
            if not opts.sort:
                raise _bad(
                    "option",
                    "option sort() names no field; e.g. sort(+thingId)",
                    "thing-search:search.option.invalid",
                    "empty",
                )
        else:
            c = arg.strip()
            if not c:
                raise _bad(
                    "option",
                    "option cursor() is empty; pass the cursor of the previous answer",
                    "thing-search:search.option.invalid",
                    "empty",
                )
            opts.cursor = c
    if opts.offset is not None and opts.cursor is not None:
        raise _bad(
            "option",
            "option limit(offset,count) pages by offset and cursor(c) by cursor; use one of "
            "them (the answer to limit carries nextPageOffset, not a cursor)",
            "thing-search:search.option.invalid",
            "limit with cursor",
        )
    return opts


_OPTION_RE = re.compile(r"([A-Za-z]+)\((.*)\)", re.S)


def _page_size(arg: str, name: str) -> int:
    a = arg.strip()
    if not (a.isascii() and a.isdigit() and len(a) <= 6 and 1 <= int(a) <= MAX_SIZE):
        raise _bad(
            "option",
            f"option {name}({shorten(arg)}): the page size must be a whole number from 1 to "
            f"{MAX_SIZE}",
            "thing-search:search.option.invalid",
            "bad size",
        )
    return int(a)


def namespaces_filter(namespaces: str | None) -> str | None:
    """Ditto's ``namespaces=a,b`` as an RQL filter on ``thingId`` (``None``: no limit).

    Examples:
        >>> namespaces_filter("fleet, city")
        'or(like(thingId,"fleet:*"),like(thingId,"city:*"))'
    """
    names = [n.strip() for n in (namespaces or "").split(",") if n.strip()]
    if not names:
        return None
    for n in names:
        if not things.NAMESPACE_RE.fullmatch(n):
            raise _bad(
                "namespaces",
                f"namespaces: {shorten(n)!r} is not a namespace (letters, digits, '_', '.', '-', "
                "starting with a letter or '_')",
                "thing-search:search.namespaces.invalid",
                "not a namespace",
            )
    likes = [f'like(thingId,"{n}:*")' for n in dict.fromkeys(names)]
    return likes[0] if len(likes) == 1 else f"or({','.join(likes)})"


def combined_filter(filter: str | None, namespaces: str | None) -> str | None:
    """``filter`` and the namespace limit, as one RQL filter."""
    ns = namespaces_filter(namespaces)
    f = filter or None
    if ns is None:
        return f
    if f is None:
        return ns
    rql.parse(f)  # a syntax error names its column in the filter as written
    return f"and({f},{ns})"


async def _search(
    p: Principal,
    service: TwinService,
    *,
    filter: str | None,
    namespaces: str | None,
    options: list[str],
    sort: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    fields: str | None = None,
) -> dict[str, Any]:
    opts = parse_option(options)
    for given, name, opt in (
        (sort, "sort", opts.sort),
        (limit, "limit", opts.size),
        (cursor, "cursor", opts.cursor),
    ):
        if given is not None and opt is not None:
            raise _bad(
                name,
                f"give the {'page size' if name == 'limit' else name} either as ?{name}= or in "
                "option=, not both",
                "thing-search:search.option.invalid",
                "given twice",
            )
    paths = parse_fields(fields)
    where = combined_filter(filter, namespaces)
    order = opts.sort if opts.sort is not None else parse_sort(sort)
    if opts.offset is not None:
        if cursor is not None:
            raise _bad(
                "cursor",
                "option limit(offset,count) pages by offset; it takes no cursor",
                "thing-search:search.option.invalid",
                "limit with cursor",
            )
        assert opts.size is not None  # limit(offset,count) always sets the count
        return await _offset_page(p, service, where, order, opts.offset, opts.size, paths)
    page = await service.search(
        p,
        filter=where,
        sort=order,
        limit=opts.size or limit or 25,
        cursor=(opts.cursor or cursor) or None,
    )
    out: dict[str, Any] = {"items": [select(i, paths) for i in page.items], "cursor": page.cursor}
    if page.total is not None:
        out["total"] = page.total
    return out


async def _offset_page(
    p: Principal,
    service: TwinService,
    where: str | None,
    order: list[tuple[str, bool]],
    offset: int,
    count: int,
    paths: Any,
) -> dict[str, Any]:
    """The answer to ``limit(offset,count)``: the ``count`` things from position
    ``offset`` of the ordered matches and ``nextPageOffset`` (``offset + count`` when a
    thing follows them, else ``-1``), reached by walking keyset pages."""
    after: str | None = None
    skip = offset
    while skip > 0:
        step = await service.search(
            p,
            filter=where,
            sort=order,
            limit=min(skip, SKIP_PAGE),
            cursor=after,
            fields=["thingId"],
        )
        skip -= len(step.items)
        after = step.cursor
        if after is None:
            break
    if offset > 0 and after is None:  # the matches end at or before the offset
        return {"items": [], "nextPageOffset": -1}
    page = await service.search(p, filter=where, sort=order, limit=count, cursor=after)
    return {
        "items": [select(i, paths) for i in page.items],
        "nextPageOffset": offset + count if page.cursor is not None else -1,
    }


OptionQuery = Annotated[
    list[str] | None,
    Query(
        description="Ditto's search options, comma-separated (the parameter may repeat): "
        "`size(n)` (1..200, default 25), `sort(+path,-path)`, `cursor(c)` (from the previous "
        "answer), `limit(offset,count)` (answers `nextPageOffset` instead of a cursor); e.g. "
        "`size(10),sort(+thingId)`"
    ),
]
NamespacesQuery = Annotated[
    str | None,
    Query(description="comma-separated namespaces to search in, e.g. `fleet,city`"),
]
FieldsQuery = Annotated[
    str | None,
    Query(
        description="Ditto's field selector: comma-separated paths, `(...)` groups sub-paths, "
        "`*` stands for every feature id; e.g. `thingId,attributes(name,kind)`"
    ),
]
FORM_TYPES = ("application/x-www-form-urlencoded",)
_FORM_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            FORM_TYPES[0]: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "filter": {"type": "string"},
                        "option": {"type": "string"},
                        "namespaces": {"type": "string"},
                        "fields": {"type": "string"},
                    },
                }
            }
        },
    }
}


async def read_form(request: Request, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (415 for another media type; 400 for
    a field other than ``allowed``, or one given twice other than ``option``)."""
    ctype = request.headers.get("content-type")
    mt = ctype.split(";", 1)[0].strip().lower() if ctype else None
    if mt is not None and mt not in FORM_TYPES:
        raise problem(
            415,
            f"send the search as {FORM_TYPES[0]} (filter=...&option=...), not {mt}",
            accept=list(FORM_TYPES),
        )
    raw = await read_body(request)
    try:
        form = parse_qs(raw.decode("ascii"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise problem(
            400,
            "the form body is not URL-encoded UTF-8 text; percent-encode every byte outside ASCII",
            pointer="",
        ) from None
    for k, vs in form.items():
        if k not in allowed:
            raise problem(
                400,
                f"unknown form field {shorten(k)!r}; this search takes {', '.join(allowed)}",
                pointer="",
                error="twinedge:form.field.unknown",
            )
        if len(vs) > 1 and k != "option":
            raise problem(
                400, f"form field {k!r} is given {len(vs)} times; give it once", pointer=""
            )
    return form


def _one(form: dict[str, list[str]], key: str) -> str | None:
    vs = form.get(key)
    return vs[0] if vs else None


@router.get(
    "/search/things",
    operation_id="searchThings",
    response_model=SearchResult,
    response_model_exclude_unset=True,
)
async def search_things(
    p: Caller,
    service: Service,
    filter: FilterQuery = None,
    option: OptionQuery = None,
    namespaces: NamespacesQuery = None,
    fields: FieldsQuery = None,
    sort: Annotated[
        str | None,
        Query(
            description="comma-separated `+field` / `-field`, e.g. `+attributes/name,-_modified` "
            "(or option=sort(...))"
        ),
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="page size (default 25)")] = None,
    cursor: Annotated[str | None, Query(description="from the previous page")] = None,
) -> dict[str, Any]:
    """Things visible to the caller that match ``filter``, a page at a time."""
    return await _search(
        p,
        service,
        filter=filter,
        namespaces=namespaces,
        options=option or [],
        sort=sort,
        limit=limit,
        cursor=cursor,
        fields=fields,
    )


@router.post(
    "/search/things",
    operation_id="searchThingsPost",
    response_model=SearchResult,
    response_model_exclude_unset=True,
    responses=problem_responses(415),
    openapi_extra=_FORM_BODY,
)
async def search_things_post(request: Request, p: Caller, service: Service) -> dict[str, Any]:
    """The search of ``GET /search/things`` with its parameters in a form body (for
    filters too long for a URL): ``filter``, ``option``, ``namespaces``, ``fields``."""
    form = await read_form(request, ("filter", "option", "namespaces", "fields"))
    return await _search(
        p,
        service,
        filter=_one(form, "filter"),
        namespaces=_one(form, "namespaces"),
        options=form.get("option", []),
        fields=_one(form, "fields"),
    )


@router.get(
    "/search/things/count",
    operation_id="countThings",
    response_model=int,
    responses={200: {"description": "The number of matching things"}},
)
async def count_things(
    p: Caller, service: Service, filter: FilterQuery = None, namespaces: NamespacesQuery = None
) -> int:
    """How many visible things match ``filter``."""
    return await service.count(p, combined_filter(filter, namespaces))


@router.post(
    "/search/things/count",
    operation_id="countThingsPost",
    response_model=int,
    responses={200: {"description": "The number of matching things"}, **problem_responses(415)},
    openapi_extra=_FORM_BODY,
)
async def count_things_post(request: Request, p: Caller, service: Service) -> int:
    """The count of ``GET /search/things/count`` with ``filter`` and ``namespaces`` in a
    form body."""
    form = await read_form(request, ("filter", "namespaces"))
    return await service.count(p, combined_filter(_one(form, "filter"), _one(form, "namespaces")))


@router.get(
    "/search/things/aggregate", operation_id="aggregateThings", response_model=AggregateResult
)
async def aggregate_things(
    p: Caller,
    service: Service,
    groupBy: Annotated[str, Query(description="field to group by, e.g. attributes/kind")],
    fn: Annotated[Literal["count", "min", "max", "avg"], Query()] = "count",
    field: Annotated[str | None, Query(description="the field min/max/avg work on")] = None,
    filter: FilterQuery = None,
) -> dict[str, Any]:
    """``fn(field)`` per value of ``groupBy`` over the visible things matching ``filter``."""
    group_by = groupBy.strip().strip("/")
    fld = field.strip().strip("/") if field else None
    if not group_by:
        raise problem(
            400,
            "query parameter 'groupBy' is empty; name a field such as attributes/kind",
            **invalid_params({"name": "groupBy", "in": "query", "reason": "empty"}),
        )
    rows = await service.aggregate(p, filter=filter or None, group_by=group_by, fn=fn, field=fld)
    return {"groupBy": group_by, "fn": fn, "field": fld, "items": rows}


# --- groups --------------------------------------------------------------------------------

GroupName = Annotated[str, Path(description="1-128 characters, no '/'", examples=["robots"])]


@router.get("/groups", operation_id="listGroups", response_model=GroupList)
async def list_groups(p: Caller, service: Service) -> dict[str, Any]:
    """The groups of the caller's domain (every group for the service admin) with sizes."""
    return {"items": await service.list_groups(p)}


@router.put(
    "/groups/{name}",
    operation_id="putGroup",
    response_model=GroupSummary,
    responses={201: {"description": "Created", "model": GroupSummary}, **problem_responses(415)},
    openapi_extra=request_body(GroupIn),
)
async def put_group(request: Request, name: GroupName, p: Caller, service: Service) -> JSONResponse:
    """Create or replace a group: a filter (members follow the twins as they change; every
    join and leave is an event) or a fixed list of members."""
    body = parse_model(GroupIn, await read_json(request))
    key = f"{p.domain}/{name}"
    existed = key in service.groups
    spec = await service.put_group(p, name, filter=body.filter, members=body.members)
    size = len(service.groups[key][2]) if key in service.groups else 0
    doc = {"name": spec.name, "domain": spec.domain, "filter": spec.filter, "size": size}
    if existed:
        return JSONResponse(doc)
    return JSONResponse(doc, status_code=201, headers={"Location": location(request)})


@router.get("/groups/{name}", operation_id="getGroup", response_model=GroupPage)
async def get_group(
    name: GroupName,
    p: Caller,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """A group and a page of its members."""
    return await service.get_group(p, name, limit=limit, cursor=cursor or None)


@router.delete("/groups/{name}", operation_id="deleteGroup", status_code=204)
async def delete_group(name: GroupName, p: Caller, service: Service) -> Response:
    await service.delete_group(p, name)
    return Response(status_code=204)
