"""What both MQTT modes share: the topic layout, the payloads, the ACL, and the gateway
that turns device messages into service calls and service calls into device messages.

Topic layout (``{thingId}`` is the thing id, ':' included; see docs/mqtt.md)::

    device  -> service  twinedge/{thingId}/reported              {feature: properties patch}
    device  -> service  twinedge/{thingId}/responses/{cid}       command response (any JSON)
    service -> device   twinedge/{thingId}/desired               desired state (QoS 1, retained)
    service -> device   twinedge/{thingId}/commands/{subject}    {"correlationId", "payload"}
    service -> device   twinedge/{thingId}/errors                RFC 7807 problem

A :class:`Gateway` never raises out of :meth:`Gateway.handle`: every bad message becomes
a counted, logged problem on the sender's ``errors`` topic, and ingestion goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from twinedge import textinput
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
from twinedge.runtime.things import JSON_LIMITS

log = logging.getLogger("twinedge.mqtt")

ROOT = "twinedge"
REDIRECT = "redirect"
REPORTED, RESPONSES, DESIRED, COMMANDS, ERRORS = (
    "reported",
    "responses",
    "desired",
    "commands",
    "errors",
)
PROBLEM_BASE = "https://twinedge.dev/problems/mqtt/"

#: reason -> (status, title); the reason is also the last segment of the problem type.
REASONS: dict[str, tuple[int, str]] = {
    "forbidden-topic": (403, "Forbidden"),
    "forbidden-subscription": (403, "Forbidden"),
    "malformed-topic": (400, "Bad Request"),
    "malformed-json": (400, "Bad Request"),
    "not-an-object": (400, "Bad Request"),
    "payload-too-large": (413, "Payload Too Large"),
    "unknown-thing": (404, "Not Found"),
    "invalid-report": (400, "Bad Request"),
    "unknown-correlation-id": (404, "Not Found"),
    "service-unavailable": (503, "Service Unavailable"),
    "internal-error": (500, "Internal Server Error"),
    "bad-credentials": (401, "Unauthorized"),
    "unsupported-protocol": (400, "Bad Request"),
}

#: How a device hears of a service error: the reason and status of its problem (a
#: subclass answers as its nearest listed ancestor; see :func:`rejection_of`). The
#: statuses are the HTTP API's, so a device and an application read one vocabulary.
#: Only ``service-unavailable`` leaves the message unacknowledged (the device resends).
REASON_OF: dict[type[ServiceError], tuple[str, int]] = {
    InvalidInput: ("invalid-report", 400),
    Unauthenticated: ("invalid-report", 401),
    Forbidden: ("invalid-report", 403),
    NotFound: ("unknown-thing", 404),
    TimedOut: ("invalid-report", 408),
    Conflict: ("invalid-report", 409),
    PreconditionFailed: ("invalid-report", 412),
    TooLarge: ("invalid-report", 413),
    OperationFailed: ("internal-error", 500),
    Unavailable: ("service-unavailable", 503),
}


MAX_LEVEL_CHARS = 256  # a thing id, a correlation id or a subject: at most this long


def topic(thing_id: str, kind: str, *rest: str) -> str:
    return "/".join((ROOT, thing_id, kind, *rest))


def mqtt_safe(thing_id: str) -> bool:
    """A thing id can be a topic level (no wildcard or separator characters)."""
    return bool(thing_id) and not any(c in thing_id for c in "/+#\0")


def check_subject(subject: Any) -> str:
    if not isinstance(subject, str) or not mqtt_safe(subject) or len(subject) > 256:
        raise InvalidInput(
            f"command subject {subject!r} must be 1-256 characters without '/', '+', '#'",
            "/subject",
        )
    return subject


def check_topic(topic_name: str) -> None:
    """Refuse a topic name that is not one MQTT allows or that no twinedge id fits in:
    NUL, a lone surrogate, a wildcard character, or a level over 256 characters."""
    why = None
    if "\0" in topic_name:
        why = f"the topic holds a NUL character at position {topic_name.index(chr(0))}"
    elif any(c in topic_name for c in "+#"):
        why = "a topic name may not hold the wildcard characters '+' or '#'"
    else:
        try:
            topic_name.encode("utf-8")
        except UnicodeEncodeError as e:
            why = f"the topic holds a lone surrogate at position {e.start}"
        else:
            longest = max(len(level) for level in topic_name.split("/"))
            if longest > MAX_LEVEL_CHARS:
                why = f"a topic level has {longest} characters; at most {MAX_LEVEL_CHARS}"
    if why:
        raise Rejection("malformed-topic", f"{why}; the message was dropped")


def readable(text: str) -> str:
    """``text`` with lone surrogates escaped, so that it can be sent as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def may_subscribe(thing_id: str, topic_filter: str) -> bool:
    """The embedded ACL for SUBSCRIBE. Only these filters under the device's own prefix:
    ``desired``, ``errors``, ``redirect``, ``+``, ``#``, and ``commands/`` followed by
    ``#``, ``+`` or a subject. (The delivery path relies on this short list; see
    ``EmbeddedBroker._send``.)"""
    parts = topic_filter.split("/")
    if len(parts) < 3 or parts[0] != ROOT or parts[1] != thing_id:
        return False
    if len(parts) == 3:
        return parts[2] in (DESIRED, ERRORS, REDIRECT, "+", "#")
    return (
        len(parts) == 4
        and parts[2] == COMMANDS
        and (parts[3] in ("+", "#") or (mqtt_safe(parts[3]) and len(parts[3]) <= 256))
    )


def may_receive(thing_id: str | None, topic_name: str) -> bool:
    """The embedded ACL for delivery: a device only ever receives its own topics."""
    return thing_id is not None and topic_name.startswith(f"{ROOT}/{thing_id}/")


def matches(topic_name: str, topic_filter: str) -> bool:
    """MQTT topic filter matching (``+`` one level, ``#`` the rest)."""
    f, t = topic_filter.split("/"), topic_name.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def desired_document(thing_id: str, doc: dict | None, feature_id: str, desired: dict) -> dict:
    """The desired-state message: every feature's desired properties (one retained
    message per thing can then hold the whole desired state)."""
    if doc is None:
        return {"thingId": thing_id, "features": {feature_id: {"desiredProperties": desired}}}
    feats = {
        fid: {"desiredProperties": f["desiredProperties"]}
        for fid, f in (doc.get("features") or {}).items()
        if isinstance(f, dict) and f.get("desiredProperties")
    }
    return {"thingId": thing_id, "revision": doc.get("_revision"), "features": feats}


class Rejection(Exception):
    """A device message that cannot be applied; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str, *, status: int | None = None, **extra: Any):
        super().__init__(detail)
        self.reason, self.detail, self.extra = reason, detail, extra
        self.status = status or REASONS[reason][0]

    def problem(self, topic_name: str) -> dict[str, Any]:
        doc = {
            "type": PROBLEM_BASE + self.reason,
            "title": REASONS[self.reason][1],
            "status": self.status,
            "detail": self.detail,
            "instance": topic_name,
            "reason": self.reason,
            "topic": topic_name,
        }
        doc.update(self.extra)
        return doc


def rejection_of(exc: ServiceError) -> Rejection:
    """The rejection that tells a device of ``exc`` (see :data:`REASON_OF`).

    A refusal of the message itself carries the error's ``pointer``; a failure of the
    service (``service-unavailable``, ``internal-error``) does not. A service error of a
    class nobody mapped is an error in twinedge: it is logged with an error id and the
    device gets an ``internal-error`` naming only that id, never the error's message.
    """
    for cls in type(exc).__mro__:
        if cls in REASON_OF:
            reason, status = REASON_OF[cls]
            break
    else:
        error_id = uuid.uuid4().hex[:12]
        log.error("unmapped service error %s: %s: %s", error_id, type(exc).__name__, exc.detail)
        return Rejection(
            "internal-error",
            f"an unexpected error occurred (error id {error_id}); it has been logged",
        )
    if reason in ("service-unavailable", "internal-error"):
        return Rejection(reason, exc.detail)
    extra = {"pointer": exc.pointer} if exc.pointer is not None else {}
    return Rejection(reason, exc.detail, status=status, **extra)


def loads(data: bytes | bytearray) -> Any:
    """Strict JSON (see :mod:`twinedge.textinput`); a :class:`Rejection` otherwise."""
    try:
        return textinput.loads(data, JSON_LIMITS)
    except textinput.TextInputError as e:
        raise Rejection("malformed-json", e.message) from None


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class Gateway:
    """Device messages in, service messages out; the half both modes share.

    Subclasses implement :meth:`_send` (enqueue one outgoing message without blocking:
    the service calls the ``publish_*`` methods from its writer). An instance is the
    service's :class:`~twinedge.runtime.core.devices.Outbound`.
    """

    def __init__(self, service: Any, *, max_payload_bytes: int = 65536):
        self.service = service
        self.metrics = service.metrics
        self.max_payload_bytes = max_payload_bytes
        self._last_desired: tuple[str, Any] | None = None
        self._log_times: dict[str, float] = {}
        self._log_suppressed: dict[str, int] = {}
        self._tasks: set[asyncio.Task] = set()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background; failures are counted, the task is kept until
        it ends and cancelled by :meth:`_cancel_tasks`."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.metrics["mqtt_delivery_failures_total"] += 1
            log.debug("MQTT background task failed: %r", task.exception())

    async def _cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ----------------------------------------------------------------- to devices
    def _send(self, topic_name: str, data: bytes, retain: bool) -> None:
        raise NotImplementedError

    async def publish_desired(
        self, thing_id: str, feature_id: str, desired: dict[str, Any]
    ) -> None:
        doc = self.service.things.get(thing_id)
        key = (thing_id, doc.get("_revision") if doc else None)
        if doc is not None and key == self._last_desired:
            return  # one change of several features: the whole desired state went once
        self._last_desired = key
        payload = desired_document(thing_id, doc, feature_id, desired)
        self._send(topic(thing_id, DESIRED), dumps(payload), True)
        self.metrics["mqtt_desired_sent_total"] += 1

    def forget_desired(self, thing_id: str) -> None:
        """``thing_id`` was deleted: its desired state ended with that incarnation. A
        thing created later with the same id starts again at revision 1, and its desired
        state must go out even though the key of the last message sent looks the same."""
        if self._last_desired is not None and self._last_desired[0] == thing_id:
            self._last_desired = None

    async def publish_command(
        self, thing_id: str, subject: str, correlation_id: str, payload: Any
    ) -> None:
        check_subject(subject)
        if not mqtt_safe(thing_id):
            raise InvalidInput(
                f"thing {thing_id} has a '+' in its id and cannot be reached over MQTT"
            )
        data = dumps({"correlationId": correlation_id, "payload": payload})
        self._send(topic(thing_id, COMMANDS, subject), data, False)
        self.metrics["mqtt_commands_sent_total"] += 1

    def publish_redirect(self, thing_id: str, doc: dict[str, Any]) -> None:
        """Tell a device that its twin moved: ``{"host", "url", "epoch"}`` on
        ``twinedge/{thingId}/redirect`` (QoS 1, not retained; the device reconnects to
        ``url`` and re-sends what was not acknowledged)."""
        self._send(topic(thing_id, REDIRECT), dumps(doc), False)

    async def publish_error(self, thing_id: str, problem: dict[str, Any]) -> None:
        self._error(thing_id, problem)

    def _error(self, thing_id: str, problem: dict[str, Any]) -> None:
        if mqtt_safe(thing_id):
            self._send(topic(thing_id, ERRORS), dumps(problem), False)

    # --------------------------------------------------------------- from devices
    def route(self, sender: str | None, topic_name: str) -> tuple[str, str, str | None]:
        """``(kind, thing_id, correlation_id)`` of a device topic, or a Rejection.
        ``sender`` is the authenticated thing id (``None``: trust the topic, as behind an
        external broker that enforces the ACL)."""
        check_topic(topic_name)
        parts = topic_name.split("/")
        if len(parts) >= 3 and parts[0] == ROOT and (sender is None or parts[1] == sender):
            if parts[2] == REPORTED and len(parts) == 3:
                return REPORTED, parts[1], None
            if parts[2] == RESPONSES and len(parts) == 4 and parts[3]:
                return RESPONSES, parts[1], parts[3]
        who = f"device {sender}" if sender else "a device"
        raise Rejection(
            "forbidden-topic",
            f"{who} may publish only to twinedge/{sender or '{thingId}'}/reported and "
            f"twinedge/{sender or '{thingId}'}/responses/{{correlationId}}; "
            f"the message to {topic_name!r} was dropped",
        )

    async def handle(
        self,
        sender: str | None,
        topic_name: str,
        data: bytes | bytearray,
        topic_problem: str | None = None,
    ) -> bool:
        """Apply one device message. Returns True when it may be acknowledged (applied
        durably, or rejected for good with the reason on the errors topic) and False when
        the service could not take it now (503: do not acknowledge; the device resends).
        ``topic_problem``: the transport could not read the topic (``topic_name`` is then
        a readable rendering of its bytes); the message is rejected as malformed-topic.

        Everything up to the service's queue runs without suspending, so messages that
        arrive in order are applied in order."""
        self.metrics["mqtt_messages_total"] += 1
        reply_to = sender
        try:
            if topic_problem is not None:
                raise Rejection("malformed-topic", f"{topic_problem}; the message was dropped")
            kind, thing_id, cid = self.route(sender, topic_name)
            reply_to = thing_id
            if len(data) > self.max_payload_bytes:
                raise Rejection(
                    "payload-too-large",
                    f"the payload has {len(data)} bytes; the limit is {self.max_payload_bytes}",
                )
            payload = loads(data)
            if kind == REPORTED:
                if not isinstance(payload, dict):
                    raise Rejection(
                        "not-an-object",
                        "a report must be a JSON object of feature id -> properties merge patch,"
                        f" got {type(payload).__name__}",
                    )
                await self.service.device_report(thing_id, payload, device=sender or thing_id)
                self.metrics["mqtt_reports_applied_total"] += 1
            elif not self.service.command_response(thing_id, cid, payload):
                raise Rejection(
                    "unknown-correlation-id",
                    f"no command with correlation id {cid!r} is waiting (it timed out or was answered)",
                )
            return True
        except Rejection as r:
            self.reject(reply_to, topic_name, r)
            return True
        except ServiceError as e:
            rejection = rejection_of(e)
            self.reject(reply_to, topic_name, rejection)
            # transient (store down, overloaded, shutting down): not acknowledged, resent;
            # anything else failed for good and would fail again
            return rejection.reason != "service-unavailable"
        except Exception as e:  # a bug must not stop ingestion; acknowledge to avoid a poison loop
            log.exception("MQTT message on %s from %s failed", topic_name, sender)
            self.reject(
                reply_to, topic_name, Rejection("internal-error", f"{type(e).__name__}: {e}")
            )
            return True

    def reject(self, thing_id: str | None, topic_name: str, r: Rejection) -> None:
        """Count, log (at most once a second per reason) and tell the device."""
        topic_name = readable(topic_name)
        self.metrics[f"mqtt_rejected_total:{r.reason}"] += 1
        now = time.monotonic()
        if now - self._log_times.get(r.reason, 0.0) >= 1.0:
            more = self._log_suppressed.pop(r.reason, 0)
            log.warning(
                "MQTT %s from %s on %s: %s%s",
                r.reason,
                thing_id or "?",
                topic_name,
                r.detail,
                f" (and {more} more since the last such line)" if more else "",
            )
            self._log_times[r.reason] = now
        else:
            self._log_suppressed[r.reason] = self._log_suppressed.get(r.reason, 0) + 1
        if thing_id:
            self._error(thing_id, r.problem(topic_name))
