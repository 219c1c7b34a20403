"""Live events: Server-Sent Events (``GET /api/2/events``) and WebSocket
(``/api/2/events/ws``).

Each message is one CloudEvents 1.0 JSON object built by the service (type
``dev.twinedge.thing.created|modified|deleted`` or ``dev.twinedge.group.joined|left``;
``data`` carries ``thingId``, ``revision`` and the RFC 6902 ``patch``).

A subscription has a bounded queue. A client that falls behind is cut off with a reason
rather than letting memory grow: SSE ends with ``event: close`` and ``data:
{"reason": ...}``; WebSocket closes with code 1013 (try again later) and the reason.
Server shutdown closes WebSockets with 1001 (going away). A bad token or filter closes
a WebSocket with 1008 (policy violation) and the problem's detail, after accepting it so
that browsers can read the reason; over SSE it is an ordinary problem response.

SSE sends a ``: keep-alive`` comment every ``keepalive_s`` (15 s) of silence; WebSocket
keep-alive is protocol pings, sent by the ASGI server (uvicorn ``ws_ping_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from twinedge.errors import ServiceError
from twinedge.runtime.api.common import bearer_scheme, get_service, token_from
from twinedge.runtime.api.models import COMMON_RESPONSES
from twinedge.runtime.api.problems import ProblemError, problem_of
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.events import Subscription
from twinedge.runtime.service import TwinService

router = APIRouter(prefix="/api/2")

WS_PATH = "/api/2/events/ws"
WS_POLICY = 1008
WS_TRY_AGAIN = 1013
WS_GOING_AWAY = 1001


def close_reason(text: str, limit: int = 123) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (a close frame's reason)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


async def next_events(sub: Subscription, keepalive_s: float) -> AsyncIterator[dict | None]:
    """The subscription's events; ``None`` after ``keepalive_s`` of silence. Ends as soon
    as the subscription is closed (events still queued then are not delivered: a client
    cut off has to resynchronise anyway)."""
    while True:
        if sub.closed_reason is not None:
            return
        try:
            ev = sub.queue.get_nowait()  # the common case under load: no timer, no task
        except asyncio.QueueEmpty:
            try:
                ev = await asyncio.wait_for(sub.queue.get(), keepalive_s)
            except TimeoutError:
                yield None
                continue
        if ev is None or sub.closed_reason is not None:
            return
        yield ev


async def _open(service: TwinService, principal: Principal, filter: str | None, max_queue: int):
    await service.scope(principal)  # loads the caller's grants, which event visibility uses
    return service.subscribe(principal, filter or None, max_queue=max_queue)


FilterQuery = Annotated[str | None, Query(description="an RQL filter on the things")]
TokenQuery = Annotated[
    str | None,
    Query(description="the API key, for clients that cannot send headers (EventSource)"),
]


@router.get(
    "/events",
    operation_id="streamEvents",
    responses={
        200: {
            "description": "A text/event-stream of CloudEvents (one JSON per `data:`)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **COMMON_RESPONSES,
    },
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    _cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    filter: FilterQuery = None,
    token: TokenQuery = None,
) -> StreamingResponse:
    """Server-Sent Events: every change to the things the key may see (and that match
    ``filter``) as a CloudEvent."""
    service = get_service(request)
    principal = await service.authenticate(token_from(request.headers.get("authorization"), token))
    state = request.app.state
    sub = await _open(service, principal, filter, state.event_queue_max)
    return StreamingResponse(
        _sse(sub, state.keepalive_s, state.metrics),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(sub: Subscription, keepalive_s: float, metrics: Any) -> AsyncIterator[str]:
    try:
        yield "retry: 2000\n: connected\n\n"
        async for ev in next_events(sub, keepalive_s):
            if ev is None:
                yield ": keep-alive\n\n"
                continue
            metrics.observe_event(ev, "sse")
            yield f"id: {ev['id']}\ndata: {json.dumps(ev, separators=(',', ':'))}\n\n"
        if sub.closed_reason is not None:
            yield f"event: close\ndata: {json.dumps({'reason': sub.closed_reason})}\n\n"
    finally:
        sub.close("client disconnected")


@router.websocket(WS_PATH.removeprefix("/api/2"))
async def events_ws(
    websocket: WebSocket, filter: str | None = None, token: str | None = None, batch: bool = False
):
    """WebSocket: one text message per CloudEvent, or with ``?batch=true`` one message per
    burst: a JSON array of the CloudEvents waiting at that moment (the CloudEvents JSON
    batch format), which keeps up with far higher event rates."""
    service: TwinService = websocket.app.state.service
    state = websocket.app.state
    await websocket.accept()
    try:
        principal = await service.authenticate(
            token_from(websocket.headers.get("authorization"), token)
        )
        sub = await _open(service, principal, filter, state.event_queue_max)
    except (ProblemError, ServiceError) as exc:
        e = problem_of(exc)
        await websocket.close(WS_POLICY, close_reason(f"{e.status} {e.title}: {e.detail}"))
        return

    async def pump() -> None:
        async for ev in next_events(sub, state.keepalive_s):
            if ev is None:
                continue
            if not batch:
                await websocket.send_text(json.dumps(ev, separators=(",", ":")))
                state.metrics.observe_event(ev, "ws")
                continue
            burst = [ev]
            while len(burst) < 1000 and not sub.queue.empty():
                nxt = sub.queue.get_nowait()
                if nxt is None:
                    break
                burst.append(nxt)
            await websocket.send_text(json.dumps(burst, separators=(",", ":")))
            for e in burst:
                state.metrics.observe_event(e, "ws")

    async def drain() -> None:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return

    sender = asyncio.create_task(pump())
    receiver = asyncio.create_task(drain())
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (sender, receiver):
            if not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
    reason = sub.closed_reason
    sub.close("client disconnected")
    if sender in done and not sender.cancelled() and sender.exception() is None and reason:
        code = WS_GOING_AWAY if "shutting down" in reason else WS_TRY_AGAIN
        with contextlib.suppress(Exception):
            await websocket.close(code, close_reason(reason))
