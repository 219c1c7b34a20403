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

Attention streams (docs/attention.md): any of ``budget_bps``, ``region``, ``weights``,
``window_s``, ``max_staleness_s``, ``falloff_m``, ``miss_factor``, ``change_scale``,
``staleness_scale_s``, ``temperature`` or ``match`` among the query parameters makes the
stream send the most valuable events within the budget, with the staleness bound
(:class:`~twinedge.runtime.core.attention.AttentionSubscription`); the budget reads the
app's clock (``app.state.clock``). A bad value is a 400 problem over SSE; over WebSocket
it closes the socket with 1008 and the problem. On an open attention WebSocket, a text
message with a JSON object of the same parameters (``{"budget_bps": 8000, "region":
"circle:0,0,100"}``) replaces the interest; a bad one is answered with ``{"error":
{problem}}`` and the stream goes on as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from twinedge.attention import AttentionError, Interest, parse_interest
from twinedge.attention.interest import PARAMETERS
from twinedge.errors import InvalidInput, ServiceError
from twinedge.runtime.api.common import bearer_scheme, get_service, token_from
from twinedge.runtime.api.models import COMMON_RESPONSES
from twinedge.runtime.api.problems import ProblemError, problem_of
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.attention import AttentionSubscription
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


#: the query parameters (and message keys) of an attention stream
ATTENTION_PARAMETERS = (*PARAMETERS, "match")
#: how often an attention stream with events waiting looks again at its budget, s
ATTENTION_POLL_S = 0.02


def attention_of(params: Mapping[str, Any]) -> tuple[Interest, str | None] | None:
    """The interest and soft filter (``match``) of a stream's parameters, or ``None``
    when none of :data:`ATTENTION_PARAMETERS` is given.

    Raises:
        InvalidInput: a value is malformed or out of range (``pointer``: ``/name``).
    """
    given = {k: params[k] for k in ATTENTION_PARAMETERS if params.get(k) is not None}
    if not given:
        return None
    match = given.pop("match", None)
    if match is not None and not isinstance(match, str):
        raise InvalidInput("match: expected an RQL filter (a string)", pointer="/match")
    try:
        return parse_interest(given), match
    except AttentionError as e:
        raise InvalidInput(str(e), pointer="/" + e.field.split(".")[0]) from None


async def _open(
    service: TwinService,
    principal: Principal,
    filter: str | None,
    max_queue: int,
    attention: tuple[Interest, str | None] | None = None,
    clock: Any = None,
):
    await service.scope(principal)  # loads the caller's grants, which event visibility uses
    if attention is None:
        return service.subscribe(principal, filter or None, max_queue=max_queue)
    interest, match = attention
    return service.subscribe(
        principal, filter or None, max_queue=max_queue, interest=interest, match=match, clock=clock
    )


async def next_due(
    sub: AttentionSubscription, keepalive_s: float, poll_s: float = ATTENTION_POLL_S
) -> AsyncIterator[list[dict] | None]:
    """The attention stream's batches as the budget lets them go; ``None`` after
    ``keepalive_s`` of silence. Wakes on every new event, and every ``poll_s`` while
    events wait for budget. Ends when the subscription is closed."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        if sub.closed_reason is not None:
            return
        sub.wakeup.clear()
        batch = sub.due()
        if batch:
            last = loop.time()
            yield batch
            continue
        waiting = len(sub.attention) > 0
        timeout = poll_s if waiting else max(keepalive_s - (loop.time() - last), 0.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wakeup.wait(), timeout)
        if loop.time() - last >= keepalive_s and sub.closed_reason is None:
            last = loop.time()
            yield None


FilterQuery = Annotated[str | None, Query(description="an RQL filter on the things")]
TokenQuery = Annotated[
    str | None,
    Query(description="the API key, for clients that cannot send headers (EventSource)"),
]


BudgetQuery = Annotated[
    str | None,
    Query(description="attention: the bandwidth budget, bits per second (docs/attention.md)"),
]
RegionQuery = Annotated[
    str | None,
    Query(
        description="attention: circle:x_m,y_m,radius_m or box:x0_m,y0_m,x1_m,y1_m (docs/attention.md)"
    ),
]
WeightsQuery = Annotated[
    str | None,
    Query(description="attention: weights of distance,filter,change,staleness (docs/attention.md)"),
]
WindowQuery = Annotated[
    str | None,
    Query(
        description="attention: the budget holds over every window of this many seconds (docs/attention.md)"
    ),
]
StaleQuery = Annotated[
    str | None,
    Query(
        description="attention: an event whose copy is this many seconds old goes first (docs/attention.md)"
    ),
]
FalloffQuery = Annotated[
    str | None,
    Query(
        description="attention: relevance falls by e every this many metres out of the region (docs/attention.md)"
    ),
]
MissQuery = Annotated[
    str | None,
    Query(
        description="attention: the filter factor of a thing that does not match `match` (docs/attention.md)"
    ),
]
ChangeQuery = Annotated[
    str | None,
    Query(description="attention: the change (m) that doubles the change term (docs/attention.md)"),
]
StaleScaleQuery = Annotated[
    str | None,
    Query(
        description="attention: the staleness (s) that doubles the staleness term (docs/attention.md)"
    ),
]
TemperatureQuery = Annotated[
    str | None, Query(description="attention: the softmax temperature (docs/attention.md)")
]
MatchQuery = Annotated[
    str | None,
    Query(
        description="attention: an RQL filter whose things score as matching (docs/attention.md)"
    ),
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
    budget_bps: BudgetQuery = None,
    region: RegionQuery = None,
    weights: WeightsQuery = None,
    window_s: WindowQuery = None,
    max_staleness_s: StaleQuery = None,
    falloff_m: FalloffQuery = None,
    miss_factor: MissQuery = None,
    change_scale: ChangeQuery = None,
    staleness_scale_s: StaleScaleQuery = None,
    temperature: TemperatureQuery = None,
    match: MatchQuery = None,
) -> StreamingResponse:
    """Server-Sent Events: every change to the things the key may see (and that match
    ``filter``) as a CloudEvent; with attention parameters, the most valuable changes
    within ``budget_bps`` (docs/attention.md)."""
    service = get_service(request)
    principal = await service.authenticate(token_from(request.headers.get("authorization"), token))
    state = request.app.state
    attention = attention_of(request.query_params)
    sub = await _open(service, principal, filter, state.event_queue_max, attention, state.clock)
    return StreamingResponse(
        _sse(sub, state.keepalive_s, state.metrics),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(sub: Subscription, keepalive_s: float, metrics: Any) -> AsyncIterator[str]:
    try:
        yield "retry: 2000\n: connected\n\n"
        if isinstance(sub, AttentionSubscription):
            async for batch in next_due(sub, keepalive_s):
                if batch is None:
                    yield ": keep-alive\n\n"
                    continue
                for one in batch:
                    metrics.observe_event(one, "sse")
                    yield f"id: {one['id']}\ndata: {json.dumps(one, separators=(',', ':'))}\n\n"
        else:
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
        attention = attention_of(websocket.query_params)
        sub = await _open(service, principal, filter, state.event_queue_max, attention, state.clock)
    except (ProblemError, ServiceError) as exc:
        e = problem_of(exc)
        await websocket.close(WS_POLICY, close_reason(f"{e.status} {e.title}: {e.detail}"))
        return

    async def send_batch(events: list[dict]) -> None:
        if batch:
            await websocket.send_text(json.dumps(events, separators=(",", ":")))
        else:
            for ev in events:
                await websocket.send_text(json.dumps(ev, separators=(",", ":")))
        for ev in events:
            state.metrics.observe_event(ev, "ws")

    async def pump() -> None:
        if isinstance(sub, AttentionSubscription):
            async for due in next_due(sub, state.keepalive_s):
                if due is not None:
                    await send_batch(due)
            return
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
            if msg.get("text") is not None:
                error = reconfigure(msg["text"])
                if error is not None:
                    await websocket.send_text(json.dumps({"error": error}, separators=(",", ":")))

    def reconfigure(text: str) -> dict | None:
        """Apply a subscription message; the problem (a dict) if it is refused."""
        try:
            try:
                body = json.loads(text)
            except ValueError:
                raise InvalidInput("a subscription message is a JSON object") from None
            if not isinstance(body, dict):
                raise InvalidInput("a subscription message is a JSON object")
            unknown = sorted(set(body) - set(ATTENTION_PARAMETERS))
            if unknown:
                raise InvalidInput(
                    f"unknown key {unknown[0]!r}; a subscription message takes: "
                    + ", ".join(ATTENTION_PARAMETERS),
                    pointer=f"/{unknown[0]}",
                )
            if not isinstance(sub, AttentionSubscription):
                raise InvalidInput(
                    "this stream was opened without attention parameters; reconnect with "
                    "budget_bps (or another attention parameter) in the query"
                )
            got = attention_of({k: v for k, v in body.items() if v is not None})
            if got is None:
                raise InvalidInput("the message gives no attention parameter")
            sub.reconfigure(*got)
        except (ProblemError, ServiceError) as exc:
            e = problem_of(exc)
            out = {"status": e.status, "title": e.title, "detail": e.detail}
            pointer = getattr(exc, "pointer", None)
            if pointer:
                out["pointer"] = pointer
            return out
        return None

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
