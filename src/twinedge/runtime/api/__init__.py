"""The HTTP / WebSocket / SSE front end of the live service (Eclipse Ditto's layout).

:func:`create_app` turns a :class:`~twinedge.runtime.service.TwinService` into a FastAPI
app. The app holds no state of its own: every route authenticates the caller
(``Authorization: Bearer <token>``) and calls one service method with the resulting
:class:`~twinedge.runtime.auth.Principal`. docs/api.md is the reference; the OpenAPI
document is served at ``/openapi.json``.

Modules: :mod:`.problems` (RFC 7807 errors), :mod:`.common` (auth, bodies, ETags,
times), :mod:`.models` (typed shapes for OpenAPI), :mod:`.routes_things`,
:mod:`.routes_search`, :mod:`.routes_access`, :mod:`.events` (SSE, WebSocket),
:mod:`.ditto_ws` (the Ditto Protocol over WebSocket),
:mod:`.ops` (health, metrics, dashboard), :mod:`.routes_internal` (edge hosts).

Why a hand-read JSON body instead of FastAPI's body parameters: a thing body is checked
by the same validator as an MQTT report (:func:`~twinedge.runtime.things.validate_thing`),
and reading the body ourselves gives the size limit (413), the media type check (415,
``application/merge-patch+json`` for PATCH) and malformed-JSON errors with line and
column. The request bodies are still declared in OpenAPI (``openapi_extra``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from twinedge import __version__
from twinedge.runtime.api import (
    ditto_ws,
    events,
    ops,
    routes_access,
    routes_internal,
    routes_orchestrator,
    routes_privacy,
    routes_search,
    routes_things,
)
from twinedge.runtime.api.common import check_request
from twinedge.runtime.api.models import REQUEST_MODELS
from twinedge.runtime.api.problems import GuardMiddleware, install_problem_handlers
from twinedge.runtime.api.redact import install_log_redaction
from twinedge.runtime.service import TwinService

__all__ = ["close_event_streams", "create_app"]

DESCRIPTION = """\
Live digital twins: things with attributes and features (reported `properties` and
`desiredProperties`), revisions, history, search, groups, commands and events.
Every `/api/2` route needs `Authorization: Bearer <token>`. Errors are RFC 7807
problem documents (`application/problem+json`) that also carry Eclipse Ditto's
`status`, `error`, `message` and `description`. See docs/api.md.
"""


def close_event_streams(service: TwinService, reason: str = "server shutting down") -> int:
    """End every open event stream with ``reason`` (WebSocket close 1001, SSE ``event:
    close``); returns how many were open.

    Call it when shutdown begins, before the server waits for open connections: an SSE
    response only ends when its stream does, so without this a graceful shutdown waits
    for every SSE client (or for uvicorn's ``timeout_graceful_shutdown``).
    """
    return service.close_subscriptions(reason)


def create_app(
    service: TwinService,
    *,
    title: str = "twinedge",
    manage_service: bool = False,
    max_body_bytes: int = 1_000_000,
    event_queue_max: int = 10_000,
    keepalive_s: float = 15.0,
    live: Any = None,
    hosts_token: str | None = None,
    mqtt: Any = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The HTTP API, event streams, health, metrics and dashboard of ``service``.

    Parameters:
        service: the twin service; the app only calls its public methods.
        title: the OpenAPI title.
        manage_service: start the service when the app starts and stop it when the app
            stops (for running the app on its own, e.g. in tests). Without it the caller
            starts and stops the service around the server.
        max_body_bytes: request bodies larger than this are refused with 413.
        event_queue_max: events buffered per subscriber before a slow client is cut off.
        keepalive_s: seconds of silence before an SSE keep-alive comment.
        live: the live orchestrator (:class:`twinedge.orchestrator.live.LiveNetwork`) when
            the service runs one (``/api/2/orchestrator``, host gauges in ``/metrics``).
        hosts_token: the secret edge hosts present to the internal routes
            (:mod:`.routes_internal`: replication, device passwords, twins to place);
            ``None``: no internal routes.
        mqtt: the MQTT front end (embedded broker or external bridge) whose state
            ``/healthz`` and ``/metrics`` report; ``None``: not reported.
        clock: the monotonic clock, in seconds, that the budgets of attention streams
            read (docs/attention.md); tests inject their own.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await service.start()
        try:
            yield
        finally:
            close_event_streams(service)
            if manage_service:
                await service.stop()

    app = FastAPI(
        title=title,
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # interactive docs would load assets from a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        separate_input_output_schemas=False,
        dependencies=[Depends(check_request)],  # unknown parameters and headers: 400
    )
    app.state.service = service
    app.state.max_body_bytes = max_body_bytes
    app.state.event_queue_max = event_queue_max
    app.state.keepalive_s = keepalive_s
    app.state.clock = clock
    app.state.metrics = ops.ApiMetrics(service)
    app.state.websocket_paths = {events.WS_PATH, ditto_ws.WS_PATH}
    app.state.live = live
    app.state.mqtt = mqtt
    app.state.metrics.mqtt = mqtt
    if live is not None:
        app.state.metrics.registry.register(routes_orchestrator.OrchestratorCollector(live))

    install_log_redaction()
    install_problem_handlers(app)
    app.add_middleware(GuardMiddleware, on_response=app.state.metrics.observe_http)

    app.include_router(routes_things.router, tags=["things"])
    app.include_router(routes_search.router, tags=["search and groups"])
    app.include_router(routes_access.router, tags=["access"])
    app.include_router(routes_privacy.router, tags=["privacy"])
    app.include_router(events.router, tags=["events"])
    app.include_router(ditto_ws.router)  # the Ditto Protocol over WebSocket (/ws/2)
    app.include_router(routes_orchestrator.router)
    app.include_router(ops.router)
    routes_internal.install(app, hosts_token)
    app.mount("/dashboard", StaticFiles(directory=ops.DASHBOARD_DIR), name="dashboard")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                separate_input_output_schemas=False,
            )
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in REQUEST_MODELS.items():
                s = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for k, v in s.pop("$defs", {}).items():
                    comps.setdefault(k, v)
                comps.setdefault(name, s)
            # validation errors are 400 problem documents here, never FastAPI's 422
            for ops_ in schema.get("paths", {}).values():
                for op in ops_.values():
                    if isinstance(op, dict):
                        op.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
