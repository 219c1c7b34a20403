"""Subscriptions and the CloudEvents the service publishes after each commit.

Each committed change becomes one CloudEvents 1.0 event (``dev.twinedge.thing.created``,
``.modified`` or ``.deleted``, with the RFC 6902 patch) plus one per group the thing
joined or left (``dev.twinedge.group.joined`` / ``.left``). An event goes to every
subscription whose principal may see the thing and whose filter (RQL) matches it; a
deletion is judged on the document that was deleted. A subscription holds a bounded
queue: a reader too slow to keep up is cut off with a reason instead of growing memory
without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from twinedge.errors import InvalidInput
from twinedge.runtime import rql
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.writer import rfc3339, view
from twinedge.runtime.store.base import Change

if TYPE_CHECKING:
    from twinedge.attention import Interest

EVENT_SOURCE = "/twinedge"


class Subscription:
    """A bounded stream of CloudEvents for one client. Too slow a reader is cut off with a
    reason instead of growing memory without bound."""

    def __init__(self, events: Events, principal: Principal, node: rql.Node | None, max_queue: int):
        self.events, self.principal, self.node = events, principal, node
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self.closed_reason: str | None = None
        self.dropped = 0

    def offer(self, event: dict, doc: dict | None = None) -> None:
        """Queue ``event`` (about ``doc``), or cut the subscription off if its queue is
        full."""
        if self.closed_reason:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close(
                f"slow consumer: {self.queue.maxsize} events were waiting; reconnect and resume from the latest revision"
            )
            self.events.metrics["events_dropped_total"] += 1

    def close(self, reason: str = "closed") -> None:
        """End the stream with ``reason`` (the reader gets the events queued before)."""
        if self.closed_reason is None:
            self.closed_reason = reason
            self.events.subscriptions.discard(self)
            if self.queue.full():  # make room for the end marker: the stream ends anyway
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[dict]:
        while True:
            ev = await self.queue.get()
            if ev is None:
                return
            yield ev


class Events:
    """The open subscriptions and the publishing of committed changes.

    Parameters:
        access: who may see which thing.
        metrics: the service's counters.
    """

    def __init__(self, access: Access, metrics: Counter[str]):
        self.access = access
        self.metrics = metrics
        self.subscriptions: set[Subscription] = set()

    def subscribe(
        self,
        principal: Principal,
        filter: str | None = None,
        *,
        max_queue: int = 10_000,
        interest: Interest | None = None,
        match: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Subscription:
        """A stream of CloudEvents for the things ``principal`` may see that match
        ``filter`` (RQL); with an ``interest``, an attention stream
        (:class:`~twinedge.runtime.core.attention.AttentionSubscription`: the most
        valuable events within its budget; ``match`` its soft filter, ``clock`` the clock
        its budget reads).

        Raises:
            InvalidInput: the filter or ``match`` is not RQL.
        """
        node = rql.parse(filter) if filter else None
        sub: Subscription
        if interest is not None:
            from twinedge.runtime.core.attention import AttentionSubscription

            try:
                soft = rql.parse(match) if match else None
            except InvalidInput as e:
                raise InvalidInput(e.detail, pointer="/match", **e.extra) from None
            sub = AttentionSubscription(
                self, principal, node, max_queue, interest, soft, clock or time.monotonic
            )
        elif match:
            raise InvalidInput(
                "match is a filter of attention streams: give budget_bps or region too",
                pointer="/match",
            )
        else:
            sub = Subscription(self, principal, node, max_queue)
        self.subscriptions.add(sub)
        return sub

    def close_all(self, reason: str) -> int:
        """End every open subscription with ``reason``; returns how many were open."""
        subs = list(self.subscriptions)
        for sub in subs:
            sub.close(reason)
        return len(subs)

    def publish(self, ch: Change, old: dict | None = None) -> None:
        """Send the events of the committed change ``ch`` (``old``: the thing before it)."""
        if not self.subscriptions:
            self.metrics["events_published_total"] += 1 + len(ch.group_joins) + len(ch.group_leaves)
            return
        if ch.new is None:
            kind = "thing.deleted"
        elif ch.revision == 1:
            kind = "thing.created"
        else:
            kind = "thing.modified"
        ops = (
            ch.ops
            if ch.new is not None and ch.revision > 1
            else (
                [{"op": "add", "path": "", "value": view(ch.new)}]
                if ch.new
                else [{"op": "remove", "path": ""}]
            )
        )
        events = [
            cloud_event(
                kind,
                ch,
                {
                    "thingId": ch.thing_id,
                    "revision": ch.revision,
                    "patch": ops,
                    "source": ch.source,
                },
            )
        ]
        group_events: list[dict] = []
        for key in ch.group_joins:
            group_events.append(
                cloud_event(
                    "group.joined",
                    ch,
                    {"thingId": ch.thing_id, "revision": ch.revision, "group": key},
                )
            )
        for key in ch.group_leaves:
            group_events.append(
                cloud_event(
                    "group.left",
                    ch,
                    {"thingId": ch.thing_id, "revision": ch.revision, "group": key},
                )
            )
        # a deletion is judged on the document that was deleted
        doc = ch.new or old or {"thingId": ch.thing_id, "_domain": ch.domain}
        for sub in list(self.subscriptions):
            if not self.access.visible(sub.principal, doc):
                continue
            if sub.node is not None and not rql.evaluate(sub.node, doc):
                continue
            for ev in events:
                sub.offer(ev, doc)
            # groups belong to the thing's domain: a grant shows the thing, not the
            # groups of the domain that granted it (their names and memberships)
            if sub.principal.domain in (None, ch.domain):
                for ev in group_events:
                    sub.offer(ev, doc)
        self.metrics["events_published_total"] += len(events) + len(group_events)


def cloud_event(type_: str, ch: Change, data: dict) -> dict:
    """The CloudEvents 1.0 JSON of event ``type_`` (``thing.modified``...) about ``ch``."""
    return {
        "specversion": "1.0",
        "id": f"{ch.thing_id}:{ch.revision}:{type_.rsplit('.', 1)[-1]}",
        "source": f"{EVENT_SOURCE}/{ch.domain}",
        "type": f"dev.twinedge.{type_}",
        "subject": ch.thing_id,
        "time": rfc3339(ch.time),
        "datacontenttype": "application/json",
        "data": data,
    }
