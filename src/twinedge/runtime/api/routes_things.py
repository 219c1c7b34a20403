"""``/api/2/things/...``: the thing tree (URLs mirror the JSON), delta, history,
commands and device credentials.

Every level of a thing — the thing, ``attributes``, one attribute path, ``features``, one
feature, its ``properties`` / ``desiredProperties`` and any path below them — answers
``GET``, ``PUT``, ``PATCH`` (JSON Merge Patch, RFC 7396) and ``DELETE``:

* ``PUT`` creates (``201`` with the created value, ``Location`` and ``ETag``) or replaces
  (``204`` with ``ETag``; ``200`` with the new value when the request says
  ``Prefer: return=representation``).
* ``PATCH`` answers ``204`` (or ``200`` with ``Prefer: return=representation``).
* ``DELETE`` answers ``204``.
* Reads accept ``?revision=N`` or ``?at=<RFC 3339 | unix seconds>`` for the value as it
  was, ``?fields=`` (Ditto's field selector, relative to the level) and
  ``If-None-Match`` (``304``).
* Reads of a thing, its features, a feature, its properties or one property accept
  ``?estimate=report|prediction``: the last report alone, or with ``predicted`` (the
  value predicted for now from a predictive-sync report, see
  :mod:`twinedge.sync.properties`).
* Writes accept ``If-Match: "rev:<revision>"`` / ``*`` and ``If-None-Match: *``.
* Every method accepts ``?condition=<rql>`` (or a ``condition`` header), evaluated on
  the current thing as Ditto does: ``412`` when false. A precondition or condition is
  evaluated against the current revision N and a write is then sent to the service with
  ``if_match=N``, so check and write are atomic.

The levels are Ditto's: besides attributes and features, ``/policyId`` (no DELETE, as in
Ditto), ``/definition`` and ``/features/{featureId}/definition``. ``GET /api/2/things?ids=``
lists the visible things of a list of ids.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from twinedge.errors import InvalidInput, NotFound
from twinedge.runtime import rql, things
from twinedge.runtime.api.common import (
    CONDITIONAL_OPERATIONS,
    MERGE_PATCH_TYPES,
    Caller,
    Service,
    etag,
    location,
    parse_etags,
    parse_model,
    parse_time,
    read_json,
    revisions_of,
    shorten,
    tag_revision,
)
from twinedge.runtime.api.models import (
    COMMON_RESPONSES,
    DEFINITION_SCHEMA,
    FEATURE_DEFINITION_SCHEMA,
    POLICY_ID_SCHEMA,
    THING_ID_PATTERN,
    CredentialsIn,
    Delta,
    Feature,
    History,
    Thing,
    ThingIn,
    problem_responses,
    request_body,
)
from twinedge.runtime.api.problems import invalid_params, problem
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService

router = APIRouter(prefix="/api/2/things", responses=COMMON_RESPONSES)

ThingIdParam = Annotated[
    str,
    Path(
        description="`namespace:name`",
        examples=["fleet:car-7"],
        json_schema_extra={"pattern": THING_ID_PATTERN},
    ),
]
FeatureIdParam = Annotated[str, Path(description="a feature id", examples=["battery"])]
PathParam = Annotated[
    str,
    Path(description="a JSON pointer below this level, '/'-separated (`~1` escapes '/')"),
]
RevisionQuery = Annotated[
    int | None, Query(ge=1, description="read the value as it was at this revision")
]
AckQuery = Annotated[
    Literal["edge", "core"],
    Query(
        description="for a twin served by an edge host: answer once the host has committed "
        "the write (edge) or once the core's copy has it (core, the default)"
    ),
]
AtQuery = Annotated[
    str | None,
    Query(description="read the value as it was at this time (RFC 3339 or unix seconds)"),
]
FieldsQuery = Annotated[
    str | None,
    Query(
        description="Ditto's field selector, relative to this level: comma-separated paths, "
        "`(...)` groups sub-paths, `*` stands for every feature id; e.g. "
        "`thingId,attributes(model,location),features/*/properties/on`"
    ),
]
EstimateQuery = Annotated[
    Literal["report", "prediction"] | None,
    Query(
        description="for a feature whose device follows predictive sync (docs/sync.md): "
        "`report` gives the last report alone, `prediction` adds `predicted` (the value "
        "predicted for now, with `age_s` and `error_bound_m`) to its properties; "
        "default: the properties as stored"
    ),
]
_ESTIMATE_LEVELS = {"Thing", "Features", "Feature", "Properties", "Property"}
ConditionQuery = Annotated[
    str | None,
    Query(
        description="an RQL condition on the current thing (as Ditto's `condition`); "
        "412 when false, e.g. `gt(features/battery/properties/level,20)`"
    ),
]
MAX_IDS = 200


def present(doc: dict[str, Any]) -> dict[str, Any]:
    """A thing as the API shows it: the document plus ``_inSync``."""
    out = dict(doc)
    out["_inSync"] = things.in_sync(doc)
    return out


def parse_fields(text: str | None) -> list[tuple[str, ...]] | None:
    """The paths of a ``fields`` query parameter (``None`` when absent or empty)."""
    if text is None or not text.strip():
        return None
    return things.parse_fields(text)


def select(doc: dict[str, Any], paths: list[tuple[str, ...]] | None) -> dict[str, Any]:
    """A thing as the API shows it, projected on ``paths``. ``_inSync`` comes with the
    whole thing, with ``features`` whole, or when selected by name."""
    if paths is None:
        return present(doc)
    out = things.project(doc, paths)
    if ("features",) in paths or ("_inSync",) in paths:
        out["_inSync"] = things.in_sync(doc)
    return out


def condition_of(request: Request, query: str | None) -> rql.Node | None:
    """The parsed ``condition`` (query parameter or header; not both)."""
    header = request.headers.get("condition")
    if header is not None and query is not None:
        raise problem(
            400,
            "give the condition either as ?condition= or as the condition header, not both",
            error="things:condition.invalid",
        )
    text = query if query is not None else header
    if text is None:
        return None
    try:
        return rql.parse(text)
    except InvalidInput as e:
        raise problem(
            400,
            f"condition: {e.detail}",
            error="things:condition.invalid",
            **invalid_params({"name": "condition", "in": "query", "reason": "not RQL"}),
        ) from None


def check_condition(doc: dict[str, Any], cond: rql.Node, text: str) -> None:
    """412 (``things:condition.failed``) unless ``cond`` holds on the current ``doc``."""
    if not rql.evaluate(cond, doc):
        raise problem(
            412,
            f"the condition {shorten(text)!r} does not hold on thing {doc.get('thingId')} "
            f"at revision {doc['_revision']}; nothing was done",
            error="things:condition.failed",
            currentRevision=doc["_revision"],
        )


def pointer_of(tokens: list[str]) -> str:
    return "/".join(things.escape_token(t) for t in tokens)


def value_at(
    doc: dict[str, Any], tokens: list[str], paths: list[tuple[str, ...]] | None = None
) -> Any:
    """The value at ``tokens`` of ``doc`` (projected on ``paths``); 404 when missing."""
    if not tokens:
        return select(doc, paths)
    try:
        value = things.get_path(doc, tokens)
    except KeyError:
        raise problem(
            404,
            f"thing {doc.get('thingId')} has nothing at /{pointer_of(tokens)}",
            error=things.missing_error(doc, tokens),
        ) from None
    if paths is None:
        return value
    if not isinstance(value, dict):
        raise problem(
            400,
            f"fields selects inside an object, and /{pointer_of(tokens)} of "
            f"{doc.get('thingId')} is not one; leave out ?fields=",
            error="json.fieldselector.invalid",
            **invalid_params({"name": "fields", "in": "query", "reason": "not an object"}),
        )
    return things.project(value, paths)


def _exists(doc: dict[str, Any], tokens: list[str]) -> bool:
    try:
        things.get_path(doc, tokens)
    except KeyError:
        return False
    return True


async def preconditions(
    service: TwinService,
    p: Principal,
    request: Request,
    thing_id: str,
    tokens: list[str],
    *,
    creates_thing: bool = False,
    condition: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``If-Match`` / ``If-None-Match``, then the ``condition`` (query or header),
    and return the keyword arguments for the service (``if_match`` = the revision the
    checks were made against)."""
    im_header = request.headers.get("if-match")
    inm_header = request.headers.get("if-none-match")
    im, inm = parse_etags(im_header), parse_etags(inm_header)
    cond = condition_of(request, condition)
    if im is None and inm is None and cond is None:
        return {}
    try:
        cur: dict[str, Any] | None = await service.get_thing(p, thing_id)
    except NotFound:
        cur = None
    out = _etag_checks(cur, im, im_header, inm, thing_id, tokens, creates_thing)
    if cond is not None:
        if cur is None:
            raise problem(
                404,
                f"thing {thing_id} does not exist (or is not visible to this key); a "
                "condition is evaluated on the current thing",
                error="things:thing.notfound",
            )
        check_condition(cur, cond, condition or request.headers.get("condition", ""))
        out["if_match"] = cur["_revision"]
    return out


def _etag_checks(
    cur: dict[str, Any] | None,
    im: list[str] | None,
    im_header: str | None,
    inm: list[str] | None,
    thing_id: str,
    tokens: list[str],
    creates_thing: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if im is not None and im_header is not None:  # the one implies the other
        if cur is None:
            if tokens:
                return {}  # the service answers 404
            raise problem(412, f"thing {thing_id} does not exist (If-Match: {shorten(im_header)})")
        rev = cur["_revision"]
        if im != ["*"] and rev not in revisions_of(im, "If-Match"):
            raise problem(
                412,
                f"thing {thing_id} is at revision {rev}, not {shorten(im_header.strip())} (If-Match); "
                "read it again and retry with the new ETag",
                currentRevision=rev,
            )
        out["if_match"] = rev
    if inm is not None:
        if cur is None:
            if creates_thing and inm == ["*"]:
                out["if_none_match"] = True
            return out
        rev = cur["_revision"]
        if inm == ["*"]:
            if _exists(cur, tokens):
                where = f"a value at /{pointer_of(tokens)}" if tokens else "the thing"
                raise problem(
                    412,
                    f"{where} of {thing_id} exists already (If-None-Match: *); "
                    "drop the header to replace it",
                    currentRevision=rev,
                )
        elif rev in revisions_of(inm, "If-None-Match"):
            raise problem(412, f"thing {thing_id} is at revision {rev} (If-None-Match)")
        out["if_match"] = rev
    return out


def _wants_representation(request: Request) -> bool:
    return "return=representation" in request.headers.get("prefer", "").replace(" ", "")


def _written(
    request: Request, doc: dict[str, Any] | None, tokens: list[str], created: bool
) -> Response:
    headers = {}
    if doc is not None and "_revision" in doc:  # not yet numbered: a write at ack=edge
        headers["ETag"] = etag(doc["_revision"])
    if created and doc is not None:
        headers["Location"] = location(request)
        return JSONResponse(value_at(doc, tokens), status_code=201, headers=headers)
    if doc is not None and _wants_representation(request):
        headers["Preference-Applied"] = "return=representation"
        return JSONResponse(value_at(doc, tokens), status_code=200, headers=headers)
    return Response(status_code=204, headers=headers)


# --- the levels of a thing ----------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    suffix: str  # URL below /api/2/things/{thingId}
    name: str  # for operation ids: getThing, putAttributes, ...
    label: str  # for summaries
    head: tuple[str, ...] = ()  # pointer tokens before {featureId}
    feature: bool = False
    tail: tuple[str, ...] = ()  # pointer tokens after {featureId}
    rest: bool = False  # ends with {path:path}
    put_schema: dict[str, Any] | None = None
    put_model: type | None = None
    patch_object: bool = True  # the merge patch document is an object
    delete: bool = True  # answers DELETE (Ditto has no DELETE of the policy id)

    def tokens(self, kw: dict[str, Any]) -> list[str]:
        out = list(self.head)
        if self.feature:
            out.append(kw["featureId"])
        out += self.tail
        if self.rest:
            out += things.split_path(kw["path"])
        return out


_OBJECT = {"type": "object", "additionalProperties": True}
_ANY: dict[str, Any] = {}
_FEATURES = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Feature"}}

LEVELS = [
    Level("", "Thing", "a thing", put_model=ThingIn),
    Level(
        "/policyId",
        "PolicyId",
        "the policy id (stored; access is decided by domains and grants)",
        ("policyId",),
        put_schema=POLICY_ID_SCHEMA,
        patch_object=False,
        delete=False,
    ),
    Level(
        "/definition",
        "Definition",
        "the thing's definition",
        ("definition",),
        put_schema=DEFINITION_SCHEMA,
        patch_object=False,
    ),
    Level("/attributes", "Attributes", "the attributes", ("attributes",), put_schema=_OBJECT),
    Level(
        "/attributes/{path:path}",
        "Attribute",
        "one attribute",
        ("attributes",),
        rest=True,
        put_schema=_ANY,
        patch_object=False,
    ),
    Level("/features", "Features", "the features", ("features",), put_schema=_FEATURES),
    Level(
        "/features/{featureId}",
        "Feature",
        "one feature",
        ("features",),
        feature=True,
        put_model=Feature,
    ),
    Level(
        "/features/{featureId}/definition",
        "FeatureDefinition",
        "a feature's definition",
        ("features",),
        True,
        ("definition",),
        put_schema=FEATURE_DEFINITION_SCHEMA,
        patch_object=False,
    ),
    Level(
        "/features/{featureId}/properties",
        "Properties",
        "a feature's reported properties",
        ("features",),
        True,
        ("properties",),
        put_schema=_OBJECT,
    ),
    Level(
        "/features/{featureId}/properties/{path:path}",
        "Property",
        "one reported property",
        ("features",),
        True,
        ("properties",),
        rest=True,
        put_schema=_ANY,
        patch_object=False,
    ),
    Level(
        "/features/{featureId}/desiredProperties",
        "DesiredProperties",
        "a feature's desired properties (sent to the device)",
        ("features",),
        True,
        ("desiredProperties",),
        put_schema=_OBJECT,
    ),
    Level(
        "/features/{featureId}/desiredProperties/{path:path}",
        "DesiredProperty",
        "one desired property (sent to the device)",
        ("features",),
        True,
        ("desiredProperties",),
        rest=True,
        put_schema=_ANY,
        patch_object=False,
    ),
]


def _params(level: Level, *extra: inspect.Parameter) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    ps = [
        inspect.Parameter("request", kw, annotation=Request),
        inspect.Parameter("service", kw, annotation=Service),
        inspect.Parameter("p", kw, annotation=Caller),
        inspect.Parameter("thingId", kw, annotation=ThingIdParam),
    ]
    if level.feature:
        ps.append(inspect.Parameter("featureId", kw, annotation=FeatureIdParam))
    if level.rest:
        ps.append(inspect.Parameter("path", kw, annotation=PathParam))
    return ps + list(extra)


def _endpoint(fn: Any, params: list[inspect.Parameter], name: str) -> Any:
    async def endpoint(**kw: Any) -> Response:
        return await fn(**kw)

    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = name
    return endpoint


def _add_level(level: Level) -> None:
    kw_only = inspect.Parameter.KEYWORD_ONLY

    async def get_(request: Request, service: TwinService, p: Principal, thingId: str, **kw: Any):
        revision, at = kw.pop("revision", None), parse_time("at", kw.pop("at", None))
        paths = parse_fields(kw.pop("fields", None))
        cond = condition_of(request, condition := kw.pop("condition", None))
        estimate = kw.pop("estimate", None)
        if revision is not None and at is not None:
            raise problem(400, "give either ?revision= or ?at=, not both")
        if estimate == "prediction" and (revision is not None or at is not None):
            raise problem(
                400, "?estimate=prediction predicts for now; drop ?revision= / ?at= or it"
            )
        tokens = level.tokens(kw)
        doc = await service.get_thing(p, thingId, revision=revision, at=at)
        tag = etag(doc["_revision"])
        headers = {"ETag": tag}
        inm = parse_etags(request.headers.get("if-none-match"))
        if estimate == "prediction":  # changes with the clock at one revision: never 304
            headers["Cache-Control"] = "no-store"
        elif inm and ("*" in inm or any(tag_revision(t) == doc["_revision"] for t in inm)):
            return Response(status_code=304, headers={"ETag": tag})
        if cond is not None:  # on the current thing, also for an as-of read (as Ditto)
            cur = doc if revision is None and at is None else await service.get_thing(p, thingId)
            check_condition(cur, cond, condition or request.headers.get("condition", ""))
        if estimate is not None:
            from twinedge.sync.properties import estimate_document

            doc = estimate_document(doc, estimate, time.time())
        return JSONResponse(value_at(doc, tokens, paths), headers=headers)

    async def put_(request: Request, service: TwinService, p: Principal, thingId: str, **kw: Any):
        condition = kw.pop("condition", None)
        ack = kw.pop("ack", "core")
        tokens = level.tokens(kw)
        body = await read_json(request)
        if tokens:
            pre = await preconditions(service, p, request, thingId, tokens, condition=condition)
            doc, created = await service.put_path(
                p, thingId, pointer_of(tokens), body, ack=ack, **pre
            )
        else:
            if isinstance(body, dict):
                body.pop("_inSync", None)  # computed; a GET -> PUT round trip must work
            pre = await preconditions(
                service, p, request, thingId, tokens, creates_thing=True, condition=condition
            )
            doc, created = await service.put_thing(p, thingId, body, ack=ack, **pre)
        return _written(request, doc, tokens, created)

    async def patch_(request: Request, service: TwinService, p: Principal, thingId: str, **kw: Any):
        condition = kw.pop("condition", None)
        ack = kw.pop("ack", "core")
        tokens = level.tokens(kw)
        body = await read_json(request, media_types=MERGE_PATCH_TYPES)
        if level.patch_object and not isinstance(body, dict):
            raise problem(
                400,
                f"a merge patch of {level.label} must be a JSON object, got {type(body).__name__}",
                pointer="",
            )
        pre = await preconditions(service, p, request, thingId, tokens, condition=condition)
        if level.name == "DesiredProperties":
            doc = await service.set_desired(p, thingId, kw["featureId"], body, ack=ack, **pre)
        else:
            doc = await service.patch(p, thingId, pointer_of(tokens), body, ack=ack, **pre)
        return _written(request, doc, tokens, False)

    async def delete_(request: Request, service: TwinService, p: Principal, thingId: str, **kw):
        condition = kw.pop("condition", None)
        ack = kw.pop("ack", "core")
        tokens = level.tokens(kw)
        pre = await preconditions(service, p, request, thingId, tokens, condition=condition)
        await service.delete(p, thingId, pointer_of(tokens), ack=ack, **pre)
        doc = service.things.get(thingId) if tokens else None
        return _written(request, doc, [], False) if doc else Response(status_code=204)

    url = "/{thingId}" + level.suffix
    cond_param = inspect.Parameter("condition", kw_only, annotation=ConditionQuery, default=None)
    read_params = _params(
        level,
        inspect.Parameter("revision", kw_only, annotation=RevisionQuery, default=None),
        inspect.Parameter("at", kw_only, annotation=AtQuery, default=None),
        inspect.Parameter("fields", kw_only, annotation=FieldsQuery, default=None),
        cond_param,
    )
    if level.name in _ESTIMATE_LEVELS:
        read_params.append(
            inspect.Parameter("estimate", kw_only, annotation=EstimateQuery, default=None)
        )
    write_params = _params(
        level, cond_param, inspect.Parameter("ack", kw_only, annotation=AckQuery, default="core")
    )
    CONDITIONAL_OPERATIONS.update(
        f"{verb}{level.name}" for verb in ("get", "put", "patch", "delete")
    )
    get_responses: dict[int | str, Any] = {304: {"description": "Not modified (If-None-Match)"}}
    if level.name == "Thing":
        get_responses[200] = {"model": Thing, "description": "The thing"}
    router.add_api_route(
        url,
        _endpoint(get_, read_params, f"get{level.name}"),
        methods=["GET"],
        operation_id=f"get{level.name}",
        summary=f"Read {level.label}",
        responses=get_responses,
    )
    if level.put_model is not None:
        put_body = request_body(level.put_model)
    else:
        put_body = request_body(None, schema=level.put_schema)
    router.add_api_route(
        url,
        _endpoint(put_, write_params, f"put{level.name}"),
        methods=["PUT"],
        operation_id=f"put{level.name}",
        summary=f"Create or replace {level.label}",
        status_code=204,
        responses={
            201: {"description": "Created; the body is the new value"},
            200: {"description": "Replaced (Prefer: return=representation)"},
            **problem_responses(412, 413, 415),
        },
        openapi_extra=put_body,
    )
    patch_schema = _OBJECT if level.patch_object else _ANY
    router.add_api_route(
        url,
        _endpoint(patch_, write_params, f"patch{level.name}"),
        methods=["PATCH"],
        operation_id=f"patch{level.name}",
        summary=f"Merge-patch {level.label} (RFC 7396; null deletes)",
        status_code=204,
        responses={
            200: {"description": "Patched (Prefer: return=representation)"},
            **problem_responses(412, 413, 415),
        },
        openapi_extra=request_body(None, MERGE_PATCH_TYPES, schema=patch_schema),
    )
    if not level.delete:
        return
    router.add_api_route(
        url,
        _endpoint(delete_, write_params, f"delete{level.name}"),
        methods=["DELETE"],
        operation_id=f"delete{level.name}",
        summary=f"Delete {level.label}",
        status_code=204,
        responses=problem_responses(412),
    )


@router.get(
    "",
    operation_id="getThings",
    response_model=list[Thing],
    responses=problem_responses(400),
)
async def get_things(
    p: Caller,
    service: Service,
    ids: Annotated[
        str | None,
        Query(description=f"comma-separated thing ids (at most {MAX_IDS}), e.g. `fleet:a,fleet:b`"),
    ] = None,
    fields: FieldsQuery = None,
) -> JSONResponse:
    """The things of ``ids`` that exist and are visible to the caller, in the order of
    ``ids`` (as Ditto: the others are left out, without an error)."""
    if ids is None or not ids.strip():
        raise problem(
            400,
            "name the things with ?ids=<id>,<id>,...; to list things by content use "
            "/api/2/search/things",
            error="things:things.ids.missing",
            **invalid_params({"name": "ids", "in": "query", "reason": "missing"}),
        )
    wanted = list(dict.fromkeys(i.strip() for i in ids.split(",") if i.strip()))
    if len(wanted) > MAX_IDS:
        raise problem(
            400,
            f"ids names {len(wanted)} things; at most {MAX_IDS} at once (use search for more)",
            **invalid_params({"name": "ids", "in": "query", "reason": "too many"}),
        )
    for i in wanted:
        try:
            things.check_thing_id(i)
        except InvalidInput as e:
            raise problem(
                400,
                f"ids: {e.detail}",
                error="things:id.invalid",
                **invalid_params({"name": "ids", "in": "query", "reason": "not a thing id"}),
            ) from None
    paths = parse_fields(fields)
    out = []
    for i in wanted:
        try:
            doc = await service.get_thing(p, i)
        except NotFound:
            continue
        out.append(select(doc, paths))
    return JSONResponse(out)


# Fixed sub-resources first, so that e.g. /{thingId}/delta never reaches a level route.
@router.get("/{thingId}/delta", operation_id="getDelta", response_model=Delta)
async def get_delta(thingId: ThingIdParam, p: Caller, service: Service) -> JSONResponse:
    """What the device still has to do: desired values it has not reported yet."""
    d = await service.delta(p, thingId)
    return JSONResponse(d, headers={"ETag": etag(d["revision"])})


@router.get("/{thingId}/history", operation_id="getHistory", response_model=History)
async def get_history(
    thingId: ThingIdParam,
    p: Caller,
    service: Service,
    from_: Annotated[
        str | None, Query(alias="from", description="RFC 3339 or unix seconds (inclusive)")
    ] = None,
    to: Annotated[str | None, Query(description="RFC 3339 or unix seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[
        str | None, Query(description="from the previous page; omit for the first page")
    ] = None,
) -> dict[str, Any]:
    """The changes of the thing's current incarnation in revision order, each with its
    RFC 6902 patch; a page at a time (follow ``cursor`` until it is null)."""
    since, until = parse_time("from", from_), parse_time("to", to)
    items, nxt = await service.history(
        p, thingId, since=since, until=until, limit=limit, cursor=cursor
    )
    return {"thingId": thingId, "items": items, "cursor": nxt}


@router.post(
    "/{thingId}/inbox/messages/{subject}",
    operation_id="sendCommand",
    responses={
        200: {"description": "The device's response payload"},
        **problem_responses(408, 503),
    },
    openapi_extra=request_body(
        None, required=False, schema=_ANY, description="the command payload (any JSON)"
    ),
)
async def send_command(
    request: Request,
    thingId: ThingIdParam,
    subject: Annotated[str, Path(description="the command name", examples=["reboot"])],
    p: Caller,
    service: Service,
    timeout: Annotated[
        float, Query(gt=0, le=300, description="seconds to wait for the device's answer")
    ] = 10.0,
) -> JSONResponse:
    """Send a command to the device and wait for its answer (408 when it does not come)."""
    payload = await read_json(request, required=False)
    answer = await service.send_command(p, thingId, subject, payload, timeout_s=timeout)
    return JSONResponse(answer)


@router.put(
    "/{thingId}/credentials",
    operation_id="putCredentials",
    status_code=204,
    openapi_extra=request_body(CredentialsIn),
)
async def put_credentials(
    request: Request, thingId: ThingIdParam, p: Caller, service: Service
) -> Response:
    """Set the password the device uses to log in to MQTT (username = thing id)."""
    body = parse_model(CredentialsIn, await read_json(request))
    await service.set_device_secret(p, thingId, body.password)
    return Response(status_code=204)


for _level in LEVELS:
    _add_level(_level)
