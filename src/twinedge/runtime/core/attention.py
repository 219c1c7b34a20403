"""Attention subscriptions: an event stream under a bandwidth budget
(:mod:`twinedge.attention`, docs/attention.md).

An :class:`AttentionSubscription` receives the same events as a plain one, but instead of
queueing every event it keeps the newest per thing (per thing and group for group
events) in an :class:`~twinedge.attention.AttentionQueue`, scored by the subscriber's
interest; the stream takes what :meth:`AttentionSubscription.due` hands out. A coalesced
``thing.modified`` event carries the whole thing (one ``replace`` of the root in its
``patch``): a client that skipped versions still ends up with the right state. A thing's
position is ``features/position/properties/x_m`` and ``y_m``; an event's size is the
length of its JSON in bits. The clock that the budget reads is injected (``clock``), so
that tests and simulations control it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Hashable
from typing import Any

from twinedge.attention import AttentionQueue, Interest
from twinedge.errors import InvalidInput
from twinedge.runtime import rql
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.events import Events, Subscription
from twinedge.runtime.core.writer import view

__all__ = ["AttentionSubscription", "position_of"]


def position_of(doc: dict | None) -> tuple[float, float] | None:
    """``(x_m, y_m)`` of a thing's ``position`` feature, or ``None`` without one.

    Examples:
        >>> position_of({"features": {"position": {"properties": {"x_m": 3, "y_m": 4.5}}}})
        (3.0, 4.5)
        >>> position_of({"attributes": {}}) is None
        True
    """
    try:
        p = doc["features"]["position"]["properties"]  # type: ignore[index]
        x, y = p["x_m"], p["y_m"]
    except (KeyError, TypeError):
        return None
    if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, int | float):
        return None
    if not isinstance(y, int | float) or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return (float(x), float(y))


class AttentionSubscription(Subscription):
    """A subscription whose stream sends the most valuable events within a budget.

    Parameters:
        events: the service's publisher.
        principal: whose visibility applies.
        node: the hard filter (RQL): events of things that do not match never come.
        max_queue: the most things waiting at once before the reader is cut off.
        interest: the interest and budget.
        match: the soft filter (RQL): things that match get filter factor 1, the others
            ``interest.miss_factor``; ``None``: every thing matches.
        clock: seconds, monotonic (``time.monotonic`` by default).
    """

    def __init__(
        self,
        events: Events,
        principal: Principal,
        node: rql.Node | None,
        max_queue: int,
        interest: Interest,
        match: rql.Node | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(events, principal, node, max_queue)
        self.attention = AttentionQueue(interest)
        self.match, self.clock = match, clock
        self.max_things = max_queue
        self.wakeup = asyncio.Event()

    def offer(self, event: dict, doc: dict | None = None) -> None:
        """Keep ``event`` (about ``doc``) as the newest of its thing, scored later."""
        if self.closed_reason:
            return
        data = event.get("data") or {}
        key: Hashable = (event.get("subject"), data.get("group"))
        if event.get("type") == "dev.twinedge.thing.modified" and doc is not None:
            event = {
                **event,
                "data": {**data, "patch": [{"op": "replace", "path": "", "value": view(doc)}]},
            }
        if key not in self.attention.pending and len(self.attention) >= self.max_things:
            self.close(
                f"slow consumer: {self.max_things} things were waiting; reconnect and resume from the latest revision"
            )
            return
        bits = 8.0 * len(json.dumps(event, separators=(",", ":")).encode())
        matches = True
        if self.match is not None and doc is not None:
            matches = bool(rql.evaluate(self.match, doc))
        self.attention.offer(
            key, event, bits=bits, now_s=self.clock(), xy_m=position_of(doc), matches=matches
        )
        self.wakeup.set()

    def due(self) -> list[dict]:
        """The events to send now, most valuable first, within the budget."""
        return [p.payload for p in self.attention.due(self.clock())]

    def reconfigure(self, interest: Interest, match: str | None = None) -> None:
        """Replace the interest (and the soft filter): waiting events stay, scored anew;
        the bits sent in the current window still count against the new budget.

        Raises:
            InvalidInput: ``match`` is not RQL.
        """
        try:
            soft = rql.parse(match) if match else None
        except InvalidInput as e:
            raise InvalidInput(e.detail, pointer="/match", **e.extra) from None
        old, new = self.attention, AttentionQueue(interest)
        new.sent_xy_m = old.sent_xy_m
        new.oversize_skipped = old.oversize_skipped
        for key, p in old.pending.items():
            if p.bits <= new.budget.capacity_bits:
                new.pending[key] = p
            else:
                new.oversize_skipped += 1
        new.budget.carry(old.budget)
        self.attention, self.match = new, soft
        self.wakeup.set()

    def close(self, reason: str = "closed") -> None:
        super().close(reason)
        self.wakeup.set()

    def stats(self) -> dict[str, Any]:
        """Waiting things, bits sent and updates too large for the budget's window."""
        return {
            "pending": len(self.attention),
            "sent_bits": self.attention.budget.sent_bits_total,
            "oversize_skipped": self.attention.oversize_skipped,
        }
