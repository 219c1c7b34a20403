"""Search, count, aggregate (``/api/2/search/things``) and groups (``/api/2/groups``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from twinedge.runtime import things
from twinedge.runtime.api.common import Caller, Service, location, parse_model, read_json
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
from twinedge.runtime.api.problems import invalid_params, problem
from twinedge.runtime.store.sql_query import MAX_SORT_KEYS

router = APIRouter(prefix="/api/2", responses=COMMON_RESPONSES)

FilterQuery = Annotated[
    str | None,
    Query(
        description='an RQL filter, e.g. `and(eq(attributes/kind,"robot"),gt(_revision,3))`',
    ),
]


def parse_sort(sort: str | None) -> list[tuple[str, bool]]:
    """``+attributes/name,-_modified`` -> ``[("attributes/name", True), ("_modified",
    False)]``. A ``+`` that arrived as a space (form encoding) counts as ``+``."""
    out: list[tuple[str, bool]] = []
    for raw in (sort or "").split(","):
        if not raw.strip():
            continue
        ascending = not raw.lstrip(" ").startswith("-")
        field = raw.strip().lstrip("+-").strip().strip("/")
        if not field:
            raise problem(
                400,
                f"query parameter 'sort': {raw!r} names no field; use +field or -field, "
                "comma-separated (e.g. +attributes/name,-_modified)",
                **invalid_params({"name": "sort", "in": "query", "reason": "empty field"}),
            )
        out.append((field, ascending))
    if len(out) > MAX_SORT_KEYS:
        raise problem(
            400,
            f"query parameter 'sort': at most {MAX_SORT_KEYS} fields, got {len(out)}",
            **invalid_params(
                {"name": "sort", "in": "query", "reason": f"more than {MAX_SORT_KEYS} fields"}
            ),
        )
    return out


def parse_fields(fields: str | None) -> list[str] | None:
    if not fields:
        return None
    out = [f.strip().strip("/") for f in fields.split(",") if f.strip().strip("/")]
    return out or None


def _with_sync(item: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if fields is None or "features" in fields:
        item = dict(item)
        item["_inSync"] = things.in_sync(item)
    return item


@router.get("/search/things", operation_id="searchThings", response_model=SearchResult)
async def search_things(
    p: Caller,
    service: Service,
    filter: FilterQuery = None,
    sort: Annotated[
        str | None,
        Query(
            description="comma-separated `+field` / `-field`, e.g. `+attributes/name,-_modified`"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 25,
    cursor: Annotated[str | None, Query(description="from the previous page")] = None,
    fields: Annotated[
        str | None,
        Query(description="comma-separated JSON pointers to return, e.g. `thingId,attributes`"),
    ] = None,
) -> dict[str, Any]:
    """Things visible to the caller that match ``filter``, a page at a time."""
    fl = parse_fields(fields)
    page = await service.search(
        p,
        filter=filter or None,
        sort=parse_sort(sort),
        limit=limit,
        cursor=cursor or None,
        fields=fl,
    )
    out: dict[str, Any] = {"items": [_with_sync(i, fl) for i in page.items], "cursor": page.cursor}
    if page.total is not None:
        out["total"] = page.total
    return out


@router.get(
    "/search/things/count",
    operation_id="countThings",
    response_model=int,
    responses={200: {"description": "The number of matching things"}},
)
async def count_things(p: Caller, service: Service, filter: FilterQuery = None) -> int:
    """How many visible things match ``filter``."""
    return await service.count(p, filter or None)


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
