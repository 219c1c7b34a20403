"""The internal routes edge hosts call (``/internal``), kept out of the OpenAPI document.

Authenticated with the *hosts token* (``Authorization: Bearer <token>``), a secret of its
own that ``twinedge serve --network`` writes to ``DATA_DIR/hosts.token``, never an API key;
compared in constant time. An app made without one has no such routes (404, as any
unknown route); a missing or wrong token gets a 401 problem.

* ``POST /internal/replicate`` ``{"host": str, "records": [record, ...]}`` (at most
  :data:`~twinedge.runtime.core.replica.MAX_RECORDS`): applies an edge host's committed
  records (:meth:`~twinedge.runtime.service.TwinService.apply_edge_records`); 200 with
  ``{"applied", "duplicates", "dropped", "acked_seq", "lag_s": {"max", "last"}}``, 409 for
  a gap (``expected_revision``) or a fenced epoch (``fenced``), 400 for a malformed body
  (``pointer`` says where).
* ``POST /internal/authenticate-device`` ``{"thingId": str, "password": str}``: 200
  ``{"ok": bool}`` (a host checks the MQTT password of a device it serves).
* ``GET /internal/things/{thingId}``: the stored document with its service fields
  (``_revision``...), what the orchestrator hands a host when it places a twin there.

``/metrics`` gets ``twinedge_replication_records_total{host,result}`` (applied, duplicate,
dropped), ``twinedge_replication_batches_total{host}`` and
``twinedge_replication_lag_seconds{host}`` (the largest lag of the host's
last batch); ``/healthz`` gets ``replication`` (from the service's health report).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.routing import Match, Route
from starlette.types import Scope

from twinedge.runtime.api.common import (
    Service,
    etag,
    read_json,
    refuse_unread,
    shorten,
    token_from,
)
from twinedge.runtime.api.problems import problem
from twinedge.runtime.auth import SYSTEM
from twinedge.runtime.core.replica import MAX_RECORDS
from twinedge.runtime.service import TwinService
from twinedge.runtime.things import escape_token

__all__ = ["ReplicationCollector", "install", "router"]


async def require_host(request: Request) -> None:
    """The caller holds the hosts token (401 problem otherwise); 404 when the app has
    none."""
    expected: str | None = getattr(request.app.state, "hosts_token", None)
    if expected is None:
        path = request.url.path
        raise problem(404, f"no route {path}; the API lives under /api/2 (see /openapi.json)")
    given = token_from(request.headers.get("authorization"))
    if given is None:
        raise problem(401, "this route needs 'Authorization: Bearer <hosts token>'")
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode()):
        raise problem(401, "the hosts token is wrong (see DATA_DIR/hosts.token of the core)")


router = APIRouter(
    prefix="/internal", include_in_schema=False, dependencies=[Depends(require_host)]
)


def _object(body: Any, fields: dict[str, type]) -> dict[str, Any]:
    """``body`` as an object with exactly ``fields`` of those types (400 problem
    otherwise)."""
    if not isinstance(body, dict):
        raise problem(400, "the body must be a JSON object", pointer="")
    for k in body:
        if k not in fields:
            raise problem(
                400,
                f"unknown field {shorten(str(k))!r}; expected {', '.join(fields)}",
                pointer=f"/{escape_token(str(k))}",
            )
    for k, t in fields.items():
        if k not in body:
            raise problem(400, f"the body has no {k}", pointer=f"/{k}")
        if not isinstance(body[k], t):
            raise problem(400, f"{k} must be a JSON {_JSON_NAME[t]}", pointer=f"/{k}")
    return body


_JSON_NAME: dict[type, str] = {str: "string", list: "array"}


REPLICATE_PATH = "/internal/replicate"


async def replicate(request: Request) -> JSONResponse:
    """Apply an edge host's records (see the module docstring).

    The hot route of edge replication, so it is a plain Starlette route ahead of FastAPI's
    (see :class:`LeanRoute`): no dependency solving and no response encoding by
    ``jsonable_encoder`` per request. It checks what the FastAPI routes check, in the
    same order: parameters and headers it would not read (400), the hosts token (401),
    then the body (415, 413, 400); errors leave as the same problem documents. The body
    is read once, by the validating JSON reader, so the service does not check its
    values again.
    """
    refuse_unread(request, REPLICATE_PATH, frozenset())
    await require_host(request)
    body = _object(await read_json(request), {"host": str, "records": list})
    if len(body["records"]) > MAX_RECORDS:
        raise problem(
            400,
            f"{len(body['records'])} records in one request; send at most {MAX_RECORDS}",
            pointer="/records",
        )
    service: TwinService = request.app.state.service
    out = await service.apply_edge_records(body["host"], body["records"], values_checked=True)
    return JSONResponse(out)


class LeanRoute(Route):
    """A Starlette route that, like FastAPI's, names itself in the scope (``route``), so
    ``/metrics`` labels its requests with its path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child


@router.post("/authenticate-device")
async def authenticate_device(request: Request, service: Service) -> dict[str, bool]:
    """Whether a device's MQTT password is right: ``{"ok": bool}``."""
    body = _object(await read_json(request), {"thingId": str, "password": str})
    return {"ok": await service.authenticate_device(body["thingId"], body["password"])}


@router.get("/things/{thing_id}")
async def get_thing(thing_id: str, service: Service) -> JSONResponse:
    """The stored document with its service fields, and its revision as the ETag."""
    doc = await service.get_thing(SYSTEM, thing_id)
    return JSONResponse(doc, headers={"ETag": etag(doc["_revision"])})


class ReplicationCollector:
    """Edge replication in ``/metrics``: records per host and result, each host's lag."""

    def __init__(self, service: TwinService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        hosts = dict(self.service.replication)
        records = CounterMetricFamily(
            "twinedge_replication_records",
            "Records replicated from edge hosts, by host and result (applied, duplicate, "
            "dropped: the twin is gone or back in the core)",
            labels=["host", "result"],
        )
        batches = CounterMetricFamily(
            "twinedge_replication_batches",
            "Replication requests handled, by host (records per request: records / batches)",
            labels=["host"],
        )
        lag = GaugeMetricFamily(
            "twinedge_replication_lag_seconds",
            "Largest lag (core clock minus the record's time) of each host's last batch",
            labels=["host"],
        )
        quantiles = GaugeMetricFamily(
            "twinedge_replication_lag_quantile_seconds",
            "Lag of each host's recent records (host commit to core commit), by quantile "
            "(0.5, 0.99, 1 = max) over the last 10,000 records",
            labels=["host", "quantile"],
        )
        for host, st in sorted(hosts.items()):
            for result in ("applied", "duplicate", "dropped"):
                records.add_metric([host, result], st.records[result])
            batches.add_metric([host], st.batches)
            if st.lag_s is not None:
                lag.add_metric([host], st.lag_s)
            q = st.lag_quantiles()
            if q is not None:
                for name, key in (("0.5", "p50_s"), ("0.99", "p99_s"), ("1", "max_s")):
                    quantiles.add_metric([host, name], float(q[key]))
        yield records
        yield batches
        yield lag
        yield quantiles


def install(app: FastAPI, hosts_token: str | None) -> None:
    """Mount the internal routes on ``app`` when there is a ``hosts_token`` (without one
    there are none: ``/internal/...`` answers as any unknown route, 404) and add
    replication to its ``/metrics``."""
    app.state.hosts_token = hosts_token
    if hosts_token is not None:
        app.include_router(router)
        # first in line: the replication route is matched before every FastAPI route
        app.router.routes.insert(
            0, LeanRoute(REPLICATE_PATH, replicate, methods=["POST"], include_in_schema=False)
        )
        mark = getattr(app.router, "_mark_routes_changed", None)
        if mark is not None:
            mark()
    app.state.metrics.registry.register(ReplicationCollector(app.state.service))
