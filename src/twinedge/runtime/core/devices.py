"""What the service sends to devices, through an :class:`Outbound` (the MQTT gateway).

* After a commit, the desired state of every feature whose desired properties changed
  (a failure is counted; the device is told again on its next desired change or resync).
* Commands: the service sends one with a fresh correlation id and waits for the device's
  answer, which must come from the thing the command went to.
* When a thing is deleted, its device sessions end with it (its credentials are gone), and
  so does its desired state: a broker's retained copy is removed.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Protocol

from twinedge.errors import InvalidInput, TimedOut, Unavailable
from twinedge.runtime import things
from twinedge.runtime.auth import Principal
from twinedge.runtime.commands import PendingCommands
from twinedge.runtime.core.access import Access
from twinedge.runtime.store.base import Change

log = logging.getLogger("twinedge.service")


class Outbound(Protocol):
    """How the service reaches devices (implemented by the MQTT bridge)."""

    async def publish_desired(
        self, thing_id: str, feature_id: str, desired: dict[str, Any]
    ) -> None: ...

    async def publish_command(
        self, thing_id: str, subject: str, correlation_id: str, payload: Any
    ) -> None: ...

    async def publish_error(self, thing_id: str, problem: dict[str, Any]) -> None: ...


class Devices:
    """The service's side of the device link.

    Parameters:
        access: who may command which thing.
        metrics: the service's counters.
    """

    def __init__(self, access: Access, metrics: Counter[str]):
        self.access = access
        self.metrics = metrics
        self.outbound: Outbound | None = None
        self._pending = PendingCommands()

    async def push_desired(self, ch: Change) -> None:
        """Send the desired state the committed change ``ch`` touched to its device."""
        if self.outbound is None or ch.new is None:
            return
        features = {
            op["path"].split("/")[2]
            for op in ch.ops
            if op["path"].startswith("/features/") and "/desiredProperties" in op["path"]
        }
        features |= {
            op["path"].split("/")[2]
            for op in ch.ops
            if op["path"].count("/") == 2
            and op["path"].startswith("/features/")
            and isinstance(op.get("value"), dict)
            and "desiredProperties" in op["value"]
        }
        if ch.revision == 1:
            features |= {
                f for f, v in ch.new.get("features", {}).items() if v.get("desiredProperties")
            }
        for fid in sorted(features):
            desired = (
                ch.new.get("features", {})
                .get(things.unescape_token(fid), {})
                .get("desiredProperties")
                or {}
            )
            try:
                await self.outbound.publish_desired(
                    ch.thing_id, things.unescape_token(fid), desired
                )
            except Exception:  # the device is told again on its next desired change or resync
                self.metrics["desired_publish_failures_total"] += 1

    async def end_incarnation(self, thing_id: str) -> None:
        """A deleted thing's device sessions end with it (their credentials are gone), and
        so does its desired state (a broker's retained copy included)."""
        forget = getattr(self.outbound, "forget_desired", None)
        if forget is not None:
            forget(thing_id)
        disconnect = getattr(self.outbound, "disconnect_device", None)
        if disconnect is not None:  # also when the batch created the thing again
            try:
                await disconnect(thing_id)
            except Exception:  # the session ends anyway when it next authenticates
                log.exception("could not disconnect the device of deleted thing %s", thing_id)

    async def send_command(
        self, p: Principal, thing_id: str, subject: str, payload: Any, *, timeout_s: float = 10.0
    ) -> Any:
        """Send a command to the device and wait for its response.

        Raises:
            Forbidden: ``p`` cannot write.
            NotFound: the thing does not exist or is not visible to ``p``.
            Unavailable: no device connection is configured.
            InvalidInput: the timeout is outside (0, 300] s, or the subject or the thing
                id cannot be sent.
            TimedOut: the device did not answer within ``timeout_s``.
        """
        await self.access.get_visible(p, thing_id, "write")
        if self.outbound is None:
            raise Unavailable("no device connection (MQTT) is configured")
        if not 0 < timeout_s <= 300:
            raise InvalidInput(f"timeout must lie in (0, 300] s, got {timeout_s}", "/timeout")
        outbound = self.outbound

        async def publish(cid: str) -> None:
            await outbound.publish_command(thing_id, subject, cid, payload)

        try:
            return await self._pending.send(thing_id, publish, timeout_s=timeout_s)
        except TimeoutError:
            self.metrics["command_timeouts_total"] += 1
            raise TimedOut(
                f"device {thing_id} did not answer command {subject!r} within {timeout_s:g} s"
            ) from None

    def command_response(self, thing_id: str, correlation_id: str, payload: Any) -> bool:
        """A device answered; returns False for an unknown or expired correlation id, or
        one that was sent to another thing."""
        return self._pending.answer(thing_id, correlation_id, payload)

    def fail_pending(self, reason: str) -> None:
        """Answer every command still waiting with :class:`~twinedge.errors.Unavailable`."""
        self._pending.fail_all(Unavailable(reason))
