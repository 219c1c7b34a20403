"""The Ditto Protocol over WebSocket (``/ws/2``): twin commands, responses and events.

Eclipse Ditto's WebSocket binding carries one Ditto Protocol message per text frame: a
JSON envelope with ``topic`` (``<namespace>/<name>/things/twin/commands/<action>``),
``headers`` (``correlation-id`` and others), ``path`` (a JSON Pointer into the thing,
``/`` for the whole thing), ``value`` and, in answers, ``status``. Plain-text control
messages switch the stream of change notifications on and off. This module translates
both onto :class:`~twinedge.runtime.service.TwinService`, so Ditto's client SDKs and
tools work against ``twinedge serve``; it holds no logic the HTTP routes do not have.

Commands (twin channel; the action is the last topic segment):

==========  ==========================================  ================================
action      service call                                 answer
==========  ==========================================  ================================
create      ``put_thing(if_none_match=True)`` at ``/``   201 + the thing (409 if it exists)
modify      ``put_thing`` / ``put_path``                 201 + the value, or 204
merge       ``patch`` (``set_desired`` for a feature's   204 (201 + the thing when a merge
            ``desiredProperties``)                       at ``/`` creates it)
retrieve    ``get_thing`` (+ ``fields``)                 200 + the value
delete      ``delete``                                   204
==========  ==========================================  ================================

``<namespace>/_/things/twin/commands/retrieve`` with ``{"thingIds": [...]}`` answers the
visible ones of those things (Ditto's RetrieveThings). Headers understood:
``correlation-id`` (echoed; one is made when absent), ``response-required`` (``false``:
no answer on success; errors are always answered), ``if-match`` / ``if-none-match``
(``"rev:N"``, ``"N"`` or ``*``), ``condition`` (RQL the thing must match, else 412),
``at-historical-revision`` / ``at-historical-timestamp`` (retrieve as of then). Headers
that would change what a write does and that twinedge does not implement (``if-equal``
other than ``update``, ``live-channel-condition``, the ``*-metadata`` headers) are
refused with 400 rather than ignored.

Every failure answers an error envelope (topic ``.../things/twin/errors``, ``status``,
``value`` = ``{"status", "error", "message", "description"}``), never a silent close:
Ditto's error codes where Ditto has one for the case (``things:thing.notfound``,
``things:attribute.notfound``..., ``things:precondition.failed``, ``json.invalid``,
``protocoladapter:unknown.topicpath``...). Ditto says its codes are not a stable API; the
``status`` is, and it is the status the HTTP API gives the same refusal.

Change notifications: ``START-SEND-EVENTS`` (optionally ``?filter=<rql>&namespaces=a,b``,
percent-encoded) is answered ``START-SEND-EVENTS:ACK``; from then on every change to a
thing the key may see (exactly the things :meth:`TwinService.subscribe` delivers) arrives
as a Ditto event: ``created`` at ``/`` with the thing, ``deleted`` at ``/``, and a change
as ``created`` / ``modified`` / ``deleted`` at the one path it touched, or as ``merged``
with a JSON merge patch at the deepest path common to all it touched (one event per
revision, with ``revision`` and ``timestamp``). Service fields (``_host``...) and group
membership are not Ditto's and are not sent. ``STOP-SEND-EVENTS`` ends it
(``STOP-SEND-EVENTS:ACK``). Live commands and events, ``START-SEND-MESSAGES``, policy
announcements and ``JWT-TOKEN`` are answered with an error envelope.

Messages to a thing's inbox (live channel: topic ``<namespace>/<name>/things/live/messages/
<subject>``, path ``/inbox/messages/<subject>``, Ditto's ``timeout`` header, default 10 s)
go to the device as a command, exactly as ``POST /api/2/things/{id}/inbox/messages/
{subject}`` sends them (:meth:`TwinService.send_command`); the device's answer comes back
with status 200 on the message's topic, path and ``correlation-id``, or an error envelope
(``408`` ``messages:message.timeout`` when the device does not answer in time). A message
waits in its own task, so the connection keeps serving other commands meanwhile (at most
:data:`MAX_MESSAGES_IN_FLIGHT` a connection).

Authentication is that of the other event streams: ``Authorization: Bearer <key>`` or
``?token=<key>`` (redacted in logs); a bad key closes the socket with 1008 and the reason.
A client too slow for its events is cut off with 1013, server shutdown closes with 1001.

References:
    Eclipse Ditto documentation: "Protocol specification", "Protocol topic", "Things
    specification", "Errors" and "WebSocket binding" (eclipse.dev/ditto).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from twinedge import textinput
from twinedge.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    ServiceError,
)
from twinedge.runtime import rql, things
from twinedge.runtime.api.common import etag, parse_etags, parse_time, tag_revision, token_from
from twinedge.runtime.api.events import (
    WS_GOING_AWAY,
    WS_POLICY,
    WS_TRY_AGAIN,
    close_reason,
    next_events,
)
from twinedge.runtime.api.problems import ProblemError, ditto_error, problem_of, status_of
from twinedge.runtime.api.routes_things import present
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.events import Subscription
from twinedge.runtime.service import TwinService

__all__ = ["WS_PATH", "DittoError", "ditto_events", "parse_fields", "router"]

router = APIRouter()

WS_PATH = "/ws/2"
ACTIONS = ("create", "modify", "merge", "retrieve", "delete")
# headers that would change what a command does, which twinedge does not implement
UNSUPPORTED_HEADERS = ("live-channel-condition", "put-metadata", "get-metadata", "delete-metadata")
CONTROL_RE = re.compile(r"[A-Z]+(?:-[A-Z]+)+(?=$|[?:])")
MAX_THINGS_PER_RETRIEVE = 200
MAX_MESSAGES_IN_FLIGHT = 100  # messages of one connection waiting for their device
MAX_MESSAGE_TIMEOUT_S = 300.0  # as over HTTP (?timeout=)
DEFAULT_MESSAGE_TIMEOUT_S = 10.0  # Ditto's default
_TIMEOUT_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")


class DittoError(Exception):
    """A refusal in Ditto's terms: ``status`` (HTTP semantics), ``error`` (Ditto's code),
    ``message`` and ``description`` (what to do)."""

    def __init__(self, status: int, error: str, message: str, description: str = ""):
        super().__init__(message)
        self.status, self.error, self.message, self.description = (
            status,
            error,
            message,
            description,
        )

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "error": self.error, "message": self.message}
        if self.description:
            out["description"] = self.description
        return out


# --- commands -----------------------------------------------------------------------------


class Command:
    """One parsed command envelope."""

    def __init__(self, env: dict[str, Any]):
        self.channel = "twin"
        self.is_message = False
        self.headers: dict[str, Any] = {}
        raw_headers = env.get("headers", {})
        if raw_headers is None:
            raw_headers = {}
        if not isinstance(raw_headers, dict):
            raise DittoError(400, "json.invalid", "'headers' must be a JSON object")
        for k, v in raw_headers.items():
            self.headers[str(k).lower()] = v
        cid = self.headers.get("correlation-id")
        self.correlation_id = str(cid) if cid is not None else str(uuid.uuid4())
        self.topic = ""
        self.path = "/"
        topic = env.get("topic")
        if not isinstance(topic, str) or not topic:
            raise DittoError(
                400,
                "json.field.missing",
                "a Ditto Protocol message needs a 'topic' string",
                "send {'topic': '<namespace>/<name>/things/twin/commands/<action>', "
                "'path': '/', 'headers': {...}, 'value': ...}",
            )
        self.topic = topic
        path = env.get("path", "/")
        if path is None:
            path = "/"
        if not isinstance(path, str):
            raise DittoError(400, "json.invalid", "'path' must be a string (a JSON Pointer)")
        self.path = path if path.startswith("/") else "/" + path
        parts = topic.split("/")
        if len(parts) != 6 or parts[2] != "things":
            raise DittoError(
                400,
                "protocoladapter:unknown.topicpath",
                f"the topic {shorten(topic)!r} is not one twinedge serves",
                "use <namespace>/<name>/things/twin/commands/<create|modify|merge|retrieve|delete>",
            )
        ns, name, _, channel, criterion, action = parts
        self.is_message = channel == "live" and criterion == "messages"
        if self.is_message:
            self.channel = "live"
            self._message(ns, name, action, env)
            return
        if channel != "twin":
            raise DittoError(
                400,
                "protocoladapter:unknown.channel",
                f"the {channel!r} channel is served for messages only: twinedge answers "
                "commands from the twin",
                "use the twin channel for commands; send messages to a device on the live "
                "channel (…/things/live/messages/<subject>, path /inbox/messages/<subject>)",
            )
        if criterion != "commands":
            raise DittoError(
                400,
                "protocoladapter:unknown.topicpath",
                f"the criterion {criterion!r} is not served over this WebSocket",
                "send commands (…/things/twin/commands/<action>); receive events with "
                "START-SEND-EVENTS; search over HTTP (GET /api/2/search/things)",
            )
        if action not in ACTIONS:
            raise DittoError(
                400,
                "protocoladapter:unknown.command",
                f"unknown command {shorten(action)!r}",
                f"use one of {', '.join(ACTIONS)}",
            )
        self.action = action
        self.namespace, self.name = ns, name
        self.thing_id = f"{ns}:{name}"
        self.many = name == "_"
        if not self.many:
            try:
                things.check_thing_id(self.thing_id)
            except InvalidInput as e:
                raise DittoError(
                    400, "things:id.invalid", e.detail, "a thing id is namespace:name"
                ) from None
        self.tokens = tokens_of(self.path)
        self.has_value = "value" in env
        self.value = env.get("value")
        fields = env.get("fields")
        if fields is not None and not isinstance(fields, str):
            raise DittoError(400, "json.fieldselector.invalid", "'fields' must be a string")
        self.fields = parse_fields(fields) if fields else None
        rr = self.headers.get("response-required", True)
        self.response_required = rr not in (False, "false")

    def _message(self, ns: str, name: str, subject: str, env: dict[str, Any]) -> None:
        """The fields of a message to the thing's inbox (live channel)."""
        self.action = "message"
        self.namespace, self.name, self.subject = ns, name, subject
        self.thing_id = f"{ns}:{name}"
        self.many = False
        try:
            things.check_thing_id(self.thing_id)
        except InvalidInput as e:
            raise DittoError(
                400, "things:id.invalid", e.detail, "a thing id is namespace:name"
            ) from None
        if not subject:
            raise DittoError(
                400, "messages:subject.invalid", "the message's subject (topic) is empty"
            )
        if self.path != f"/inbox/messages/{subject}":
            raise DittoError(
                400,
                "protocoladapter:unknown.path",
                f"messages are served to a thing's inbox only, at /inbox/messages/{shorten(subject)}"
                f"; got path {shorten(self.path)!r}",
                "send the message to the thing's inbox; twinedge has no outbox and no "
                "feature-level messages",
            )
        self.tokens = []
        self.has_value = "value" in env
        self.value = env.get("value")
        self.fields = None
        rr = self.headers.get("response-required", True)
        self.response_required = rr not in (False, "false")
        self.timeout_s = _message_timeout(self.headers.get("timeout"))

    def answer(
        self, status: int, value: Any = None, *, has_value: bool = False, etag: str = ""
    ) -> dict[str, Any]:
        """The response envelope: this command's topic and path with ``status``."""
        headers: dict[str, Any] = {"correlation-id": self.correlation_id}
        if etag:
            headers["etag"] = etag
        if has_value:
            headers.setdefault("content-type", "application/json")
        env: dict[str, Any] = {
            "topic": self.topic,
            "headers": headers,
            "path": self.path,
            "status": status,
        }
        if has_value:
            env["value"] = value
        return env


def _message_timeout(raw: Any) -> float:
    """Ditto's ``timeout`` header of a message in seconds: ``10``, ``10s``, ``500ms`` or
    ``1m``; absent means :data:`DEFAULT_MESSAGE_TIMEOUT_S`.

    Raises:
        DittoError: 400 ``timeout.invalid`` for another form, for 0 (Ditto's
            fire-and-forget, which twinedge does not offer) and above
            :data:`MAX_MESSAGE_TIMEOUT_S`.

    Examples:
        >>> _message_timeout("500ms"), _message_timeout("2s"), _message_timeout(None)
        (0.5, 2.0, 10.0)
    """
    if raw is None:
        return DEFAULT_MESSAGE_TIMEOUT_S
    m = _TIMEOUT_RE.fullmatch(str(raw).strip())
    seconds = None
    if m and len(m.group(1)) <= 12:
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
    if seconds is None or not 0 < seconds <= MAX_MESSAGE_TIMEOUT_S:
        raise DittoError(
            400,
            "timeout.invalid",
            f"timeout {shorten(str(raw))!r}: give the time to wait for the device's answer, "
            f"more than 0 and at most {MAX_MESSAGE_TIMEOUT_S:g} s (e.g. 10, 10s, 500ms, 1m)",
            "twinedge always waits for the device's answer (no timeout 0)",
        )
    return seconds


def shorten(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def tokens_of(path: str) -> list[str]:
    """The pointer tokens of ``path`` within a thing, or a 400 :class:`DittoError` when
    ``path`` lies outside what a thing has.

    Examples:
        >>> tokens_of("/")
        []
        >>> tokens_of("/features/engine/properties/rpm")
        ['features', 'engine', 'properties', 'rpm']
        >>> tokens_of("/_revision")
        Traceback (most recent call last):
        ...
        twinedge.runtime.api.ditto_ws.DittoError: the path /_revision lies outside a thing
    """
    if path in ("", "/"):
        return []
    tokens = things.split_path(path)
    where = (
        "use /, /attributes[/<path>], /features[/<featureId>[/properties|/desiredProperties"
        "[/<path>]|/definition]], /definition or /policyId"
    )
    if any(t == "" for t in tokens):
        raise DittoError(
            400,
            "json.pointer.invalid",
            f"the path {shorten(path)} has an empty segment",
            "a JSON Pointer has no empty keys here; drop the doubled or trailing '/'",
        )
    head = tokens[0]
    ok = (
        head == "attributes"
        or (head in ("definition", "policyId") and len(tokens) == 1)
        or (
            head == "features"
            and (
                len(tokens) <= 2
                or (tokens[2] in ("properties", "desiredProperties"))
                or (tokens[2] == "definition" and len(tokens) == 3)
            )
        )
    )
    if not ok:
        raise DittoError(
            400,
            "protocoladapter:unknown.path",
            f"the path {shorten(path)} lies outside a thing",
            where,
        )
    return tokens


def parse_fields(text: str) -> list[tuple[str, ...]]:
    """Ditto's field selector -> the paths it selects (:func:`twinedge.runtime.things.parse_fields`,
    the parser of the HTTP API), its refusal as a Ditto error.

    Raises:
        DittoError: unbalanced parentheses, an empty field, a selector too long.

    Examples:
        >>> parse_fields("thingId,attributes(location,model)")
        [('thingId',), ('attributes', 'location'), ('attributes', 'model')]
    """
    try:
        return things.parse_fields(text)
    except InvalidInput as e:
        raise DittoError(
            400,
            "json.fieldselector.invalid",
            e.detail,
            "write fields as a comma-separated list of paths, e.g. thingId,attributes(a,b)",
        ) from None


def not_found_code(doc: dict[str, Any] | None, tokens: list[str]) -> str:
    """Ditto's code for a missing value: named after the first level of ``tokens`` that
    ``doc`` lacks (the thing itself when ``doc`` is None)."""
    return "things:thing.notfound" if doc is None else things.missing_error(doc, tokens)


async def to_ditto_error(
    exc: ServiceError | ProblemError, service: TwinService, p: Principal, cmd: Command | None
) -> DittoError:
    """The Ditto error of a refusal of the service (same status as over HTTP)."""
    prob = problem_of(exc)
    status = prob.status
    detail = prob.detail
    if isinstance(exc, ServiceError):
        status = status_of(exc) or status
    method = {"retrieve": "GET", "delete": "DELETE"}.get(cmd.action if cmd else "", "PUT")
    where = f"/api/2/things/{cmd.thing_id if cmd else '_'}"
    if cmd is not None and cmd.is_message:
        where += cmd.path  # /inbox/messages/<subject>: a timeout is messages:message.timeout
        method = "POST"
    code = prob.extra.get("error") or ditto_error(status, where, prob.pointer, method)
    hint = {
        400: "correct the command as the message says",
        403: "use a key of the thing's domain with the write role",
        404: "check the thing id and path, and that your key's domain may see the thing",
        409: "the request contradicts the thing's state; see the message",
        412: "read the thing again and retry with its current revision",
        413: "send a smaller value",
        503: "retry in a moment",
    }.get(status, "")
    if isinstance(exc, NotFound) and cmd is not None and not cmd.many:
        doc = None
        if cmd.tokens:
            with contextlib.suppress(ServiceError):
                doc = await service.get_thing(p, cmd.thing_id)
        code = not_found_code(doc, cmd.tokens)
    elif isinstance(exc, NotFound) and cmd is not None and cmd.is_message:
        code = "things:thing.notfound"
    elif isinstance(exc, Forbidden) and cmd is not None and cmd.action == "delete":
        code = "things:thing.notdeletable"
    return DittoError(status, code, detail, hint)


# --- events -------------------------------------------------------------------------------


def _pointer(tokens: list[str]) -> str:
    return "/" + "/".join(things.escape_token(t) for t in tokens) if tokens else "/"


def ditto_events(ev: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ditto event envelopes of one of the service's CloudEvents (none for group
    membership, or for a change that touched only service fields).

    Examples:
        >>> ce = {"type": "dev.twinedge.thing.modified", "time": "2024-05-01T12:00:00Z",
        ...       "data": {"thingId": "fleet:car-7", "revision": 4,
        ...                "patch": [{"op": "replace", "path": "/attributes/speed", "value": 9}]}}
        >>> [(e["topic"], e["path"], e["value"]) for e in ditto_events(ce)]
        [('fleet/car-7/things/twin/events/modified', '/attributes/speed', 9)]
    """
    kind = str(ev.get("type", "")).removeprefix("dev.twinedge.")
    data = ev.get("data") or {}
    thing_id = str(data.get("thingId", ""))
    ns, _, name = thing_id.partition(":")
    base = f"{ns}/{name}/things/twin/events/"
    common = {"revision": data.get("revision"), "timestamp": ev.get("time")}

    def event(action: str, tokens: list[str], value: Any = None, has_value: bool = True) -> dict:
        env: dict[str, Any] = {
            "topic": base + action,
            "headers": {
                "content-type": "application/merge-patch+json"
                if action == "merged"
                else "application/json"
            },
            "path": _pointer(tokens),
        }
        if has_value:
            env["value"] = value
        env.update(common)
        return env

    patch = data.get("patch") or []
    if kind == "thing.created":
        doc = patch[0].get("value") if patch else {}
        value = {k: v for k, v in (doc or {}).items() if not k.startswith("_")}
        return [event("created", [], value)]
    if kind == "thing.deleted":
        return [event("deleted", [], has_value=False)]
    if kind != "thing.modified":
        return []
    ops = []
    for op in patch:
        tokens = things.split_path(op.get("path", ""))
        if tokens and tokens[0].startswith("_"):
            continue  # a service field (the twin's host...): not part of Ditto's model
        ops.append((op.get("op"), tokens, op.get("value")))
    if not ops:
        return []

    def single(op: str, tokens: list[str], value: Any) -> dict:
        if op == "remove":
            return event("deleted", tokens, has_value=False)
        return event("created" if op == "add" else "modified", tokens, value)

    if len(ops) == 1:
        return [single(*ops[0])]
    prefix = list(ops[0][1])
    for _, tokens, _ in ops[1:]:
        n = 0
        while n < min(len(prefix), len(tokens)) and prefix[n] == tokens[n]:
            n += 1
        prefix = prefix[:n]
    mergeable = all(
        len(tokens) > len(prefix) and (op == "remove" or things.null_pointer(value) is None)
        for op, tokens, value in ops
    )
    if not mergeable:  # a merge patch cannot say it: one event per change
        return [single(*op) for op in ops]
    merge: dict[str, Any] = {}
    for op, tokens, value in ops:
        things.set_path(merge, tokens[len(prefix) :], None if op == "remove" else value)
    return [event("merged", prefix, merge)]


# --- the session --------------------------------------------------------------------------


class Session:
    """One WebSocket connection speaking the Ditto Protocol for ``principal``."""

    def __init__(self, ws: WebSocket, service: TwinService, principal: Principal):
        self.ws, self.service, self.p = ws, service, principal
        self.state = ws.app.state
        self.lock = asyncio.Lock()
        self.sub: Subscription | None = None
        self.pump: asyncio.Task | None = None
        self.messages: set[asyncio.Task] = set()  # messages waiting for their device
        self.closed = False

    async def send(self, message: str | dict[str, Any]) -> None:
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        async with self.lock:
            if self.closed or self.ws.application_state != WebSocketState.CONNECTED:
                return
            await self.ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code, close_reason(reason))

    async def error(
        self,
        err: DittoError,
        cmd: Command | None = None,
        topic: str = "",
        correlation_id: str | None = None,
    ) -> None:
        """Answer ``err`` as an error envelope (about ``cmd`` when it was parsed; else with
        ``correlation_id``, that of an envelope that is no command twinedge serves, so that
        the client can match the error to what it sent)."""
        headers: dict[str, Any] = {"content-type": "application/json"}
        if correlation_id is not None:
            headers["correlation-id"] = correlation_id
        path = "/"
        if cmd is not None:
            headers["correlation-id"] = cmd.correlation_id
            path = cmd.path
            if cmd.topic.count("/") == 5:
                ns, name = cmd.topic.split("/")[:2]
                topic = f"{ns}/{name}/things/{cmd.channel}/errors"
        await self.send(
            {
                "topic": topic or "_/_/things/twin/errors",
                "headers": headers,
                "path": path,
                "value": err.payload(),
                "status": err.status,
            }
        )

    async def run(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                text = msg.get("text")
                if text is None:
                    raw = msg.get("bytes") or b""
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        await self.error(DittoError(400, "json.invalid", "the frame is not UTF-8"))
                        continue
                await self.handle(text)
        finally:
            self.stop_events()
            for task in list(self.messages):
                task.cancel()

    async def handle(self, text: str) -> None:
        limit = self.state.max_body_bytes
        if len(text) > limit:
            await self.error(
                DittoError(
                    413,
                    "things:thing.toolarge",
                    f"the message has {len(text)} characters; the limit is {limit}",
                    "send a smaller value",
                )
            )
            return
        stripped = text.strip()
        if CONTROL_RE.match(stripped):
            await self.control(stripped)
            return
        try:
            env = textinput.loads(text, things.JSON_LIMITS)
        except textinput.TextInputError as e:
            await self.error(
                DittoError(
                    400,
                    "json.invalid",
                    f"the message is neither Ditto Protocol JSON nor a control message: {e.message}",
                    "send a JSON envelope {topic, headers, path, value} or START-SEND-EVENTS",
                )
            )
            return
        if not isinstance(env, dict):
            await self.error(
                DittoError(400, "json.invalid", "a Ditto Protocol message is a JSON object")
            )
            return
        cmd: Command | None = None
        try:
            cmd = Command(env)
            if cmd.is_message:
                self.start_message(cmd)
                return
            answer = await self.execute(cmd)
        except DittoError as e:
            await self.error(e, cmd, _errors_topic(env), _correlation_id(env))
            return
        except (ServiceError, ProblemError) as e:
            await self.error(await to_ditto_error(e, self.service, self.p, cmd), cmd)
            return
        if cmd.response_required:
            await self.send(answer)

    # --- messages ---------------------------------------------------------------------------

    def start_message(self, cmd: Command) -> None:
        """Send ``cmd`` (a message to the thing's inbox) in its own task, so the connection
        keeps serving while the device answers.

        Raises:
            DittoError: 429 when :data:`MAX_MESSAGES_IN_FLIGHT` messages already wait.
        """
        if len(self.messages) >= MAX_MESSAGES_IN_FLIGHT:
            raise DittoError(
                429,
                "too.many.requests",
                f"{MAX_MESSAGES_IN_FLIGHT} messages of this connection already wait for their "
                "device's answer",
                "wait for answers before sending more messages",
            )
        task = asyncio.create_task(self.message(cmd))
        self.messages.add(task)
        task.add_done_callback(self.messages.discard)

    async def message(self, cmd: Command) -> None:
        """The device's answer to ``cmd``, or the error why there is none."""
        try:
            value = await self.service.send_command(
                self.p,
                cmd.thing_id,
                cmd.subject,
                cmd.value if cmd.has_value else None,
                timeout_s=cmd.timeout_s,
            )
        except (ServiceError, ProblemError) as e:
            await self.error(await to_ditto_error(e, self.service, self.p, cmd), cmd)
            return
        if cmd.response_required:
            await self.send(cmd.answer(200, value, has_value=True))

    # --- control messages ------------------------------------------------------------------

    async def control(self, text: str) -> None:
        word, _, query = text.partition("?")
        if word == "START-SEND-EVENTS":
            try:
                await self.start_events(query)
            except DittoError as e:
                await self.error(e)
                return
            await self.send("START-SEND-EVENTS:ACK")
        elif word == "STOP-SEND-EVENTS":
            self.stop_events()
            await self.send("STOP-SEND-EVENTS:ACK")
        else:
            await self.error(
                DittoError(
                    501,
                    "signal.unsupported",
                    f"{shorten(word)} is not supported by twinedge",
                    "only START-SEND-EVENTS and STOP-SEND-EVENTS are served; send messages to a "
                    "thing's inbox on the live channel (…/things/live/messages/<subject>)",
                )
            )

    async def start_events(self, query: str) -> None:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise DittoError(
                400, "json.invalid", f"cannot read the parameters {shorten(query)!r}"
            ) from None
        params: dict[str, str] = {}
        for k, v in pairs:
            if k not in ("filter", "namespaces"):
                raise DittoError(
                    400,
                    "header.notsupported",
                    f"START-SEND-EVENTS parameter {shorten(k)!r} is not supported",
                    "use filter=<rql> and namespaces=<a,b>",
                )
            if k in params:
                raise DittoError(400, "json.invalid", f"the parameter {k!r} is given twice")
            params[k] = v
        namespaces = {n.strip() for n in params.get("namespaces", "").split(",") if n.strip()}
        filter_ = params.get("filter") or None
        try:
            await self.service.scope(self.p)  # loads the caller's grants (event visibility)
            sub = self.service.subscribe(self.p, filter_, max_queue=self.state.event_queue_max)
        except ServiceError as e:
            raise DittoError(
                400,
                "rql.expression.invalid",
                f"filter: {e.detail}",
                'write the filter in RQL, e.g. eq(attributes/kind,"car")',
            ) from None
        self.stop_events()
        self.sub = sub
        self.pump = asyncio.create_task(self.pump_events(sub, namespaces))

    def stop_events(self) -> None:
        sub, pump = self.sub, self.pump
        self.sub, self.pump = None, None
        if sub is not None:
            sub.close("events stopped")
        if pump is not None and not pump.done():
            pump.cancel()

    async def pump_events(self, sub: Subscription, namespaces: set[str]) -> None:
        async for ev in next_events(sub, self.state.keepalive_s):
            if ev is None:
                continue
            thing_id = str((ev.get("data") or {}).get("thingId", ""))
            if namespaces and thing_id.partition(":")[0] not in namespaces:
                continue
            for env in ditto_events(ev):
                await self.send(env)
            self.state.metrics.observe_event(ev, "ditto-ws")
        reason = sub.closed_reason
        if reason and sub is self.sub:  # cut off by the service, not stopped by the client
            code = WS_GOING_AWAY if "shutting down" in reason else WS_TRY_AGAIN
            await self.close(code, reason)

    # --- commands ---------------------------------------------------------------------------

    async def preconditions(self, cmd: Command, *, creates: bool = False) -> dict[str, Any]:
        """Check ``if-match``, ``if-none-match`` and ``condition`` against the thing now;
        the keyword arguments that make the write atomic with the check."""
        h = cmd.headers
        for name in UNSUPPORTED_HEADERS:
            if name in h:
                raise DittoError(
                    400, "header.notsupported", f"the header {name!r} is not supported"
                )
        if h.get("if-equal", "update") != "update":
            raise DittoError(
                400,
                "header.notsupported",
                f"if-equal: {shorten(str(h['if-equal']))!r} is not supported; only 'update'",
            )
        im, inm, cond = h.get("if-match"), h.get("if-none-match"), h.get("condition")
        if im is None and inm is None and cond is None:
            return {}
        try:
            cur: dict[str, Any] | None = await self.service.get_thing(self.p, cmd.thing_id)
        except NotFound:
            cur = None
        out: dict[str, Any] = {}
        if cond is not None:
            if not isinstance(cond, str):
                raise DittoError(400, "things:condition.invalid", "condition must be RQL text")
            try:
                node = rql.parse(cond)
            except InvalidInput as e:
                raise DittoError(
                    400, "things:condition.invalid", f"condition: {e.detail}"
                ) from None
            if cur is None:
                raise NotFound(f"thing {cmd.thing_id} does not exist")
            if not rql.evaluate(node, cur):
                raise DittoError(
                    412,
                    "things:condition.failed",
                    f"the condition {shorten(cond)!r} does not hold for thing {cmd.thing_id}",
                    "the command was not applied",
                )
            out["if_match"] = cur["_revision"]
        if im is not None:
            tags = _revisions(im, "if-match")
            if cur is None:
                if cmd.tokens:
                    return out  # the service answers 404
                raise PreconditionFailed(f"thing {cmd.thing_id} does not exist (if-match)")
            if tags != "*" and cur["_revision"] not in tags:
                raise PreconditionFailed(
                    f"thing {cmd.thing_id} is at revision {cur['_revision']}, not {shorten(str(im))} (if-match)"
                )
            out["if_match"] = cur["_revision"]
        if inm is not None:
            tags = _revisions(inm, "if-none-match")
            if cur is None:
                if creates and tags == "*":
                    out["if_none_match"] = True
                return out
            exists = True
            if cmd.tokens:
                try:
                    things.get_path(cur, cmd.tokens)
                except KeyError:
                    exists = False
            if (tags == "*" and exists) or (tags != "*" and cur["_revision"] in tags):
                raise PreconditionFailed(
                    f"thing {cmd.thing_id} at revision {cur['_revision']} fails if-none-match: {shorten(str(inm))}"
                )
            out["if_match"] = cur["_revision"]
        return out

    async def execute(self, cmd: Command) -> dict[str, Any]:
        s, p, tid, tokens = self.service, self.p, cmd.thing_id, cmd.tokens
        pointer = "/".join(things.escape_token(t) for t in tokens)
        if cmd.many:
            return await self.retrieve_many(cmd)
        if cmd.action in ("create", "modify", "merge") and not cmd.has_value:
            raise DittoError(400, "json.field.missing", f"a {cmd.action} command needs a 'value'")
        if cmd.action == "retrieve":
            await self.preconditions(cmd)
            revision, at = _historical(cmd.headers)
            doc = await s.get_thing(p, tid, revision=revision, at=at)
            if tokens:
                try:
                    value = things.get_path(doc, tokens)
                except KeyError:
                    raise NotFound(f"thing {tid} has nothing at {cmd.path}") from None
            else:
                value = present(doc)
            if cmd.fields is not None and isinstance(value, dict):
                value = things.project(value, cmd.fields)
            return cmd.answer(200, value, has_value=True, etag=_etag(doc))
        if cmd.action == "create":
            if tokens:
                raise DittoError(
                    400,
                    "protocoladapter:unknown.path",
                    "create applies to a whole thing (path /)",
                    "use modify to create or replace a part of a thing",
                )
            pre = await self.preconditions(cmd, creates=True)
            pre.pop("if_none_match", None)
            try:
                doc, _ = await s.put_thing(
                    p, tid, _thing_body(cmd.value), if_none_match=True, **pre
                )
            except PreconditionFailed:
                raise Conflict(f"thing {tid} exists already; use modify to replace it") from None
            return cmd.answer(201, present(doc), has_value=True, etag=_etag(doc))
        if cmd.action == "modify":
            if tokens:
                pre = await self.preconditions(cmd)
                doc, created = await s.put_path(p, tid, pointer, cmd.value, **pre)
            else:
                pre = await self.preconditions(cmd, creates=True)
                doc, created = await s.put_thing(p, tid, _thing_body(cmd.value), **pre)
            if created:
                value = things.get_path(doc, tokens) if tokens else present(doc)
                return cmd.answer(201, value, has_value=True, etag=_etag(doc))
            return cmd.answer(204, etag=_etag(doc))
        if cmd.action == "merge":
            pre = await self.preconditions(cmd)
            if len(tokens) == 3 and tokens[0] == "features" and tokens[2] == "desiredProperties":
                if not isinstance(cmd.value, dict):
                    raise InvalidInput("a merge patch of desiredProperties must be a JSON object")
                doc = await s.set_desired(p, tid, tokens[1], cmd.value, **pre)
                return cmd.answer(204, etag=_etag(doc))
            try:
                doc = await s.patch(p, tid, pointer, cmd.value, **pre)
            except NotFound as missing:
                if tokens or pre or not isinstance(cmd.value, dict):
                    raise
                # a merge at / creates the thing (Ditto); when that is refused too (a thing
                # the caller may not see, a namespace of another domain) the answer stays
                # the 404 of the merge, as over HTTP
                body = things.merge_patch({}, _thing_body(cmd.value))
                try:
                    doc, _ = await s.put_thing(p, tid, body, if_none_match=True)
                except (Forbidden, NotFound):
                    raise missing from None
                except PreconditionFailed:  # created meanwhile: merge into it
                    doc = await s.patch(p, tid, "", cmd.value)
                else:
                    return cmd.answer(201, present(doc), has_value=True, etag=_etag(doc))
            return cmd.answer(204, etag=_etag(doc))
        # delete
        pre = await self.preconditions(cmd)
        after = await s.delete(p, tid, pointer, **pre)
        return cmd.answer(204, etag=_etag(after) if tokens else "")

    async def retrieve_many(self, cmd: Command) -> dict[str, Any]:
        """RetrieveThings: ``{"thingIds": [...]}`` -> the visible ones, in that order."""
        if cmd.action != "retrieve" or cmd.tokens:
            raise DittoError(
                400,
                "protocoladapter:unknown.topicpath",
                "the thing name '_' is for retrieving several things (retrieve at /)",
            )
        ids = cmd.value.get("thingIds") if isinstance(cmd.value, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DittoError(
                400, "things:things.ids.missing", "value must be {'thingIds': [<thing id>...]}"
            )
        if len(ids) > MAX_THINGS_PER_RETRIEVE:
            raise DittoError(
                400,
                "things:thing.invalid",
                f"{len(ids)} thing ids; at most {MAX_THINGS_PER_RETRIEVE} per command",
            )
        out = []
        for i in ids:
            if cmd.namespace != "_" and not i.startswith(cmd.namespace + ":"):
                raise DittoError(
                    400, "things:id.invalid", f"thing {shorten(i)} is not in {cmd.namespace}"
                )
            try:
                doc = await self.service.get_thing(self.p, things.check_thing_id(i))
            except NotFound:
                continue
            out.append(things.project(present(doc), cmd.fields) if cmd.fields else present(doc))
        return cmd.answer(200, out, has_value=True)


def _correlation_id(env: dict[str, Any]) -> str | None:
    """The ``correlation-id`` header of an envelope, if it has one (any case)."""
    headers = env.get("headers")
    if isinstance(headers, dict):
        for k, v in headers.items():
            if str(k).lower() == "correlation-id" and v is not None:
                return str(v)
    return None


def _errors_topic(env: dict[str, Any]) -> str:
    topic = env.get("topic")
    if isinstance(topic, str) and topic.count("/") >= 2:
        parts = topic.split("/")
        ns, name = parts[:2]
        channel = "live" if parts[3:5] == ["live", "messages"] else "twin"
        if ns and name:
            return f"{ns}/{name}/things/{channel}/errors"
    return ""


def _etag(doc: dict[str, Any] | None) -> str:
    return etag(doc["_revision"]) if doc else ""


def _thing_body(value: Any) -> Any:
    if isinstance(value, dict):
        value = dict(value)
        value.pop("_inSync", None)  # computed; a retrieve -> modify round trip must work
    return value


def _revisions(header: Any, name: str) -> set[int] | str:
    """``"*"`` or the revisions an ``if-match`` / ``if-none-match`` value names
    (``"rev:N"``, ``"N"``, weak or not, comma-separated)."""
    if not isinstance(header, str):
        raise DittoError(400, "header.invalid", f"{name} must be a string")
    if header.strip() == "*":
        return "*"
    out = set()
    for tag in parse_etags(header) or []:
        rev = tag_revision(tag)
        if rev is False:
            raise DittoError(
                400,
                "header.invalid",
                f'{name}: {shorten(tag)!r} is not an entity tag of twinedge; use "rev:N" or *',
            )
        if rev is not None:
            out.add(rev)
    return out


def _historical(h: dict[str, Any]) -> tuple[int | None, float | None]:
    rev, ts = h.get("at-historical-revision"), h.get("at-historical-timestamp")
    if rev is not None and ts is not None:
        raise DittoError(
            400, "header.invalid", "give at-historical-revision or at-historical-timestamp"
        )
    revision = None
    if rev is not None:
        if isinstance(rev, bool) or not str(rev).isdigit() or int(rev) < 1:
            raise DittoError(
                400, "header.invalid", "at-historical-revision must be a revision >= 1"
            )
        revision = int(rev)
    at = None
    if ts is not None:
        try:
            at = parse_time("at-historical-timestamp", str(ts))
        except ProblemError as e:
            raise DittoError(400, "header.invalid", e.detail) from None
    return revision, at


@router.websocket(WS_PATH)
async def ditto_websocket(websocket: WebSocket, token: str | None = None) -> None:
    """The Ditto Protocol over WebSocket (see the module docstring)."""
    service: TwinService = websocket.app.state.service
    await websocket.accept()
    try:
        principal = await service.authenticate(
            token_from(websocket.headers.get("authorization"), token)
        )
    except (ProblemError, ServiceError) as exc:
        e = problem_of(exc)
        await websocket.close(WS_POLICY, close_reason(f"{e.status} {e.title}: {e.detail}"))
        return
    session = Session(websocket, service, principal)
    await session.run()
