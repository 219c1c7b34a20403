"""The live twin service: one object the front ends call, composed of the core's parts.

:class:`TwinService` holds no logic of its own: each method hands the call to the part of
:mod:`twinedge.runtime.core` whose job it is — the single writer (:mod:`~.core.writer`),
access control (:mod:`~.core.access`), groups (:mod:`~.core.groups`), events
(:mod:`~.core.events`), the device link (:mod:`~.core.devices`), reads
(:mod:`~.core.reads`), writes (:mod:`~.core.writes`), edge replication
(:mod:`~.core.replica`) and health (:mod:`~.core.health`).
Every write goes through the writer. The package docstring of :mod:`twinedge.runtime.core`
tells how the parts fit.

The service never knows which front end called it: HTTP, WebSocket, MQTT and the
orchestrator all go through the same methods with a :class:`~.auth.Principal`, and a
refusal is a :class:`~twinedge.errors.ServiceError` that each front end translates.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from twinedge.errors import (
    InvalidInput,
    NotFound,
    PreconditionFailed,
    ServedAtEdge,
    TimedOut,
    Unavailable,
)
from twinedge.runtime import things
from twinedge.runtime.auth import SYSTEM, Principal, Role
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.devices import Devices, Outbound
from twinedge.runtime.core.edge_writes import (
    AckLevel,
    EdgeForward,
    EdgeWrite,
    check_ack,
    replacement_patch,
)
from twinedge.runtime.core.events import EVENT_SOURCE, Events, Subscription
from twinedge.runtime.core.groups import MAX_GROUP_MEMBERS, GroupIndex, Groups
from twinedge.runtime.core.health import Health
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.core.privacy import PrivateAggregates, SecureSums
from twinedge.runtime.core.reads import MAX_TIME_S, MIN_TIME_S, Reads
from twinedge.runtime.core.replica import HostReplication, Replica
from twinedge.runtime.core.writer import MAX_THING_BYTES, Mutator, WriteQueue, Writer, rfc3339
from twinedge.runtime.core.writes import Writes
from twinedge.runtime.store.base import (
    Change,
    Grant,
    GrantRole,
    GroupSpec,
    Scope,
    SearchPage,
    Store,
)

__all__ = [
    "EVENT_SOURCE",
    "MAX_GROUP_MEMBERS",
    "MAX_THING_BYTES",
    "MAX_TIME_S",
    "MIN_TIME_S",
    "Mutator",
    "Outbound",
    "Subscription",
    "TwinService",
    "rfc3339",
]

T = TypeVar("T")


class TwinService:
    """The live twin service.

    Parameters:
        store: where everything is kept (see :mod:`twinedge.runtime.store`).
        retention_s: keep history for this long (``None``: forever).
        batch_max: most mutations committed in one transaction.
        queue_max: most mutations waiting for the writer; one more is refused
            (:class:`~twinedge.errors.Overloaded`).
        clock: unix time source (tests pass a fake one).
    """

    def __init__(
        self,
        store: Store,
        *,
        retention_s: float | None = None,
        batch_max: int = 2000,
        queue_max: int = 100_000,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.retention_s = retention_s
        self.batch_max = batch_max
        self.clock = clock
        self.metrics: Counter[str] = Counter()  # event counts, by name[:label]
        self.things: dict[str, dict] = {}  # the twins in memory; only the writer changes them
        # the edge tier: (host id, MQTT URL, epoch) of the host process serving a twin, if any
        self.edge_owner: Callable[[str], tuple[str, str, int] | None] | None = None
        # forwards desired state to that host; returns the thing after (see AckLevel)
        self.edge_desired: Callable[[str, dict, AckLevel], Awaitable[dict]] | None = None
        # forwards an application's write (a merge patch) to that host (see EdgeForward)
        self.edge_write: EdgeWrite | None = None
        # sends a command to the device of a twin on that host: (thing id, subject,
        # payload, timeout s) -> the device's answer
        self.edge_command: Callable[[str, str, Any, float], Awaitable[Any]] | None = None
        # the twin was deleted: its host drops it (after replicating what it committed)
        self.edge_retire: Callable[[str], Awaitable[None]] | None = None
        self._pools = StorePools()
        self._queue = WriteQueue(self._pools, self.metrics, queue_max)
        self._access = Access(
            store, self._pools, self.things, self._queue, clock=clock, metrics=self.metrics
        )
        self._groups = Groups(
            store, self._pools, self.things, self._queue, self._access, clock=clock
        )
        self._events = Events(self._access, self.metrics)
        self._devices = Devices(self._access, self.metrics)
        self._writer = Writer(
            self._queue,
            store,
            self.things,
            access=self._access,
            groups=self._groups,
            after_commit=self._after_commit,
            clock=clock,
            metrics=self.metrics,
            batch_max=batch_max,
            edge_tier=lambda: self.edge_owner is not None,
        )
        self._reads = Reads(store, self._pools, self._access)
        # differentially private aggregates across domains, with budgets per consumer
        self.privacy = PrivateAggregates(store, self._pools, self._access, self._reads)
        self.secure_sums = SecureSums(self._access)  # Paillier sums, the service combining
        self._writes = Writes(self._queue, self._access, self.things, self.metrics)
        self._replica = Replica(self._queue, self._writer, store, clock=clock)
        self._health = Health(
            store,
            self._pools,
            self._writer,
            self._events,
            clock=clock,
            metrics=self.metrics,
            retention_s=retention_s,
            replication=self._replica.status,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Create or upgrade the store's schema, load the twins, namespaces and groups,
        and start the writer (and history pruning, with a retention period)."""
        await self._pools.on_writer(self.store.migrate)
        docs = await self._pools.on_writer(lambda: list(self.store.load_things()))
        self.things.clear()
        self.things.update((d["thingId"], d) for d in docs)
        await self._access.load()
        await self._groups.load()
        await self._replica.load()
        self._writer.start()
        self._health.start()

    async def stop(self) -> None:
        """Finish every queued mutation (everything a caller may have been told is
        accepted), close event streams, and release the store."""
        await self._writer.stop()
        self._health.stop()
        self._events.close_all("server shutting down")
        self._devices.fail_pending("the server is shutting down")
        await self._pools.on_writer(self.store.close)
        self._pools.shutdown()

    async def _after_commit(self, ch: Change, old: dict | None) -> None:
        self._events.publish(ch, old)
        await self._devices.push_desired(ch)
        if ch.new is None:
            await self._devices.end_incarnation(ch.thing_id)

    # ------------------------------------------------------------------ state
    @property
    def outbound(self) -> Outbound | None:
        """How the service reaches devices (set by the MQTT front end)."""
        return self._devices.outbound

    @outbound.setter
    def outbound(self, value: Outbound | None) -> None:
        self._devices.outbound = value

    @property
    def groups(self) -> GroupIndex:
        """Every group: ``"domain/name"`` -> (spec, parsed filter, current members)."""
        return self._groups.index

    @property
    def namespaces(self) -> dict[str, str]:
        """Every claimed namespace -> its owner domain."""
        return self._access.namespaces

    @property
    def commit_seconds_total(self) -> float:
        """Time spent in store commits (for ``/metrics``)."""
        return self._writer.commit_seconds_total

    @property
    def commit_latency_s(self) -> list[float]:
        """Recent commit times, seconds (for ``/metrics``)."""
        return self._writer.commit_latency_s

    def trace_batches(self, tracer: Any) -> None:
        """Give each writer batch a trace span: ``tracer.batch(size)`` returns the span's
        context manager (see :mod:`twinedge.runtime.tracing`); ``None``: no spans."""
        self._writer.batch_tracer = tracer

    @property
    def last_commit_error(self) -> tuple[float, str] | None:
        """When the last store commit failed (unix time) and why, if one did."""
        return self._writer.last_commit_error

    @property
    def last_commit_ok_s(self) -> float | None:
        """When the last batch was committed (unix time)."""
        return self._writer.last_commit_ok_s

    @property
    def queue_depth(self) -> int:
        """Mutations waiting for the writer."""
        return self._queue.depth

    @property
    def subscribers(self) -> int:
        """Open event subscriptions."""
        return len(self._events.subscriptions)

    # ------------------------------------------------------------------ access
    async def authenticate(self, token: str | None) -> Principal:
        """The principal of an API token (see :meth:`.Access.authenticate`)."""
        return await self._access.authenticate(token)

    async def create_api_key(
        self, principal: Principal, domain: str | None, role: Role, key_id: str | None = None
    ) -> str:
        """Create an API key; returns the token (see :meth:`.Access.create_api_key`)."""
        return await self._access.create_api_key(principal, domain, role, key_id)

    async def ensure_admin_key(self) -> str | None:
        """Create the service admin key on first start; returns its token, or None if it
        exists already."""
        return await self._access.ensure_admin_key()

    async def set_device_secret(self, principal: Principal, thing_id: str, password: str) -> None:
        """Give the device of ``thing_id`` its MQTT password (see
        :meth:`.Access.set_device_secret`)."""
        await self._access.set_device_secret(principal, thing_id, password)

    async def authenticate_device(self, thing_id: str, password: str | None) -> bool:
        """Whether ``password`` is the device password of the thing ``thing_id``."""
        return await self._access.authenticate_device(thing_id, password)

    async def grant(
        self, principal: Principal, grantee: str, filter: str, role: GrantRole
    ) -> Grant:
        """Let domain ``grantee`` read (or write) the caller's things that match ``filter``
        (see :meth:`.Access.grant`)."""
        return await self._access.grant(principal, grantee, filter, role)

    async def list_grants(self, principal: Principal) -> list[Grant]:
        """The grants the caller's domain gives (see :meth:`.Access.list_grants`)."""
        return await self._access.list_grants(principal)

    async def revoke(self, principal: Principal, grantee: str, filter: str) -> Grant:
        """Take a grant back (see :meth:`.Access.revoke`)."""
        return await self._access.revoke(principal, grantee, filter)

    async def scope(self, p: Principal) -> Scope:
        """What ``p`` may see, for the store's queries."""
        return await self._access.scope(p)

    async def list_namespaces(self, p: Principal) -> list[dict[str, str]]:
        """The namespaces of the caller's domain (every one, for the service admin)."""
        return await self._access.list_namespaces(p)

    async def assign_namespace(self, p: Principal, ns: str, domain: str) -> dict[str, str]:
        """The service admin gives namespace ``ns`` to ``domain`` (see
        :meth:`.Access.assign_namespace`)."""
        return await self._access.assign_namespace(p, ns, domain)

    # ------------------------------------------------------------------ reading
    async def get_thing(
        self, p: Principal, thing_id: str, *, revision: int | None = None, at: float | None = None
    ) -> dict:
        """The thing now, or as of ``revision`` or time ``at`` (see
        :meth:`.Reads.get_thing`)."""
        return await self._reads.get_thing(p, thing_id, revision=revision, at=at)

    async def get_path(self, p: Principal, thing_id: str, path: str) -> Any:
        """The value at ``path`` of the thing (see :meth:`.Reads.get_path`)."""
        return await self._reads.get_path(p, thing_id, path)

    async def delta(self, p: Principal, thing_id: str) -> dict:
        """The desired properties not reported yet (see :meth:`.Reads.delta`)."""
        return await self._reads.delta(p, thing_id)

    async def history(
        self,
        p: Principal,
        thing_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """A page of the thing's changes and the next cursor (see :meth:`.Reads.history`)."""
        return await self._reads.history(
            p, thing_id, since=since, until=until, limit=limit, cursor=cursor
        )

    async def search(
        self,
        p: Principal,
        *,
        filter: str | None = None,
        sort: Sequence[tuple[str, bool]] = (),
        limit: int = 25,
        cursor: str | None = None,
        fields: Sequence[str] | None = None,
    ) -> SearchPage:
        """A page of the things ``p`` may see that match ``filter`` (see
        :meth:`.Reads.search`)."""
        return await self._reads.search(
            p, filter=filter, sort=sort, limit=limit, cursor=cursor, fields=fields
        )

    async def count(self, p: Principal, filter: str | None = None) -> int:
        """How many things ``p`` may see match ``filter``."""
        return await self._reads.count(p, filter)

    async def aggregate(
        self, p: Principal, *, filter: str | None, group_by: str, fn: str, field: str | None
    ) -> list[dict]:
        """``fn`` of ``field`` per value of ``group_by`` (see :meth:`.Reads.aggregate`)."""
        return await self._reads.aggregate(p, filter=filter, group_by=group_by, fn=fn, field=field)

    # ------------------------------------------------------------------ writing
    async def put_thing(
        self,
        p: Principal,
        thing_id: str,
        body: Any,
        *,
        if_match: int | None = None,
        if_none_match: bool = False,
        domain: str | None = None,
        ack: AckLevel = "core",
    ) -> tuple[dict, bool]:
        """Create or replace a thing; returns (thing, created) (see
        :meth:`.Writes.put_thing`; ``ack``: for a twin served by an edge host, see
        :mod:`.core.edge_writes`).

        Raises:
            ServedAtEdge: routed to the core's writer, the write found the twin placed on
                an edge host that does not serve it yet (see :meth:`_rerouted`); nothing
                was applied, send it again.
        """
        return await self._rerouted(
            thing_id,
            lambda: self._writes_for(thing_id, ack).put_thing(
                p, thing_id, body, if_match=if_match, if_none_match=if_none_match, domain=domain
            ),
        )

    async def patch(
        self,
        p: Principal,
        thing_id: str,
        path: str,
        patch: Any,
        *,
        if_match: int | None = None,
        source: str = "http",
        ack: AckLevel = "core",
    ) -> dict:
        """JSON Merge Patch (RFC 7396) of the value at ``path`` (see :meth:`.Writes.patch`).

        Raises:
            ServedAtEdge: as for :meth:`put_thing`.
        """
        return await self._rerouted(
            thing_id,
            lambda: self._writes_for(thing_id, ack).patch(
                p, thing_id, path, patch, if_match=if_match, source=source
            ),
        )

    async def put_path(
        self,
        p: Principal,
        thing_id: str,
        path: str,
        value: Any,
        *,
        if_match: int | None = None,
        ack: AckLevel = "core",
    ) -> tuple[dict, bool]:
        """Create or replace the value at ``path``; returns (thing, created_at_path).

        Raises:
            ServedAtEdge: as for :meth:`put_thing`.
        """
        return await self._rerouted(
            thing_id, lambda: self._put_path(p, thing_id, path, value, if_match, ack)
        )

    async def _put_path(
        self,
        p: Principal,
        thing_id: str,
        path: str,
        value: Any,
        if_match: int | None,
        ack: AckLevel,
    ) -> tuple[dict, bool]:
        parts = path.split("/")
        if (
            self.edge_owner is not None
            and self.edge_desired is not None
            and self.edge_owner(thing_id)
            and len(parts) == 3
            and parts[0] == "features"
            and parts[2] == "desiredProperties"
            and isinstance(value, dict)
        ):  # replacing a feature's desired state: the same merge patch, sent to the host
            await self._edge_precheck(p, thing_id, if_match)
            fid = things.unescape_token(parts[1])
            feature = (self.things.get(thing_id, {}).get("features") or {}).get(fid) or {}
            old = feature.get("desiredProperties") or {}
            patch = {fid: replacement_patch(old, value)}
            return await self.edge_desired(thing_id, patch, ack), not old
        return await self._writes_for(thing_id, ack).put_path(
            p, thing_id, path, value, if_match=if_match
        )

    async def delete(
        self,
        p: Principal,
        thing_id: str,
        path: str = "",
        *,
        if_match: int | None = None,
        ack: AckLevel = "core",
    ) -> dict | None:
        """Delete the thing or the value at ``path`` (see :meth:`.Writes.delete`).

        A twin served by an edge host is first retired there (the host stops taking its
        device's reports and replicates what it committed), then deleted here.

        Raises:
            Unavailable: the host did not retire it (nothing was deleted).
            ServedAtEdge: as for :meth:`put_thing`.
        """
        return await self._rerouted(
            thing_id, lambda: self._delete(p, thing_id, path, if_match, ack)
        )

    async def _delete(
        self, p: Principal, thing_id: str, path: str, if_match: int | None, ack: AckLevel
    ) -> dict | None:
        if self.edge_retire is not None and self._edge_served(thing_id) and not path.strip("/"):
            await self._edge_precheck(p, thing_id, if_match)
            await self.edge_retire(thing_id)
            # the condition held when the host stopped writing: later replicated records
            # of the retired twin do not make it fail
            return await self._writes.delete(p, thing_id, path, edge_retired=True)
        return await self._writes_for(thing_id, ack).delete(p, thing_id, path, if_match=if_match)

    async def set_desired(
        self,
        p: Principal,
        thing_id: str,
        feature_id: str,
        patch: dict,
        *,
        if_match: int | None = None,
        ack: AckLevel = "core",
    ) -> dict:
        """Merge-patch a feature's desired properties; the device gets them over MQTT.

        Raises:
            ServedAtEdge: as for :meth:`put_thing`.
        """
        return await self._rerouted(
            thing_id, lambda: self._set_desired(p, thing_id, feature_id, patch, if_match, ack)
        )

    async def _set_desired(
        self,
        p: Principal,
        thing_id: str,
        feature_id: str,
        patch: dict,
        if_match: int | None,
        ack: AckLevel,
    ) -> dict:
        if self.edge_desired is not None and self._edge_served(thing_id):
            await self._edge_precheck(p, thing_id, if_match)
            return await self.edge_desired(thing_id, {feature_id: patch}, ack)
        return await self._writes.set_desired(p, thing_id, feature_id, patch, if_match=if_match)

    async def _edge_precheck(self, p: Principal, thing_id: str, if_match: int | None) -> None:
        """What the writer checks before a write, for one forwarded to an edge host: the
        caller may write the thing, and its revision is the one ``If-Match`` names."""
        doc = await self._access.get_visible(p, thing_id, "write")
        if if_match is not None and doc["_revision"] != if_match:
            raise PreconditionFailed(
                f"thing {thing_id} is at revision {doc['_revision']}, not {if_match} (If-Match)"
            )

    async def _rerouted(self, thing_id: str, write: Callable[[], Awaitable[T]]) -> T:
        """Run ``write``, a write operation that decides its route when it is called (the
        core's writer, or the twin's edge host); if the core's writer refused it because
        an edge host serves the twin now (placed there after the route was decided and
        before the write reached the writer, see :mod:`.core.writer`), decide and run it
        once more: now it goes to the host. The refused attempt applied nothing.

        Raises:
            ServedAtEdge: the core's writer refused it and no edge host serves the twin
                now (it is being placed, or its host is being recovered): nothing was
                applied; send it again.
        """
        try:
            return await write()
        except ServedAtEdge:
            if not self._edge_served(thing_id):
                raise
            self.metrics["edge_rerouted_total"] += 1
            return await write()

    def _edge_served(self, thing_id: str) -> bool:
        """Whether an edge host process serves the twin now."""
        return self.edge_owner is not None and self.edge_owner(thing_id) is not None

    def _writes_for(self, thing_id: str, ack: AckLevel) -> Writes:
        """The write operations for this twin: through the core's writer, or decided here
        and committed by the edge host that serves it (:class:`.EdgeForward`). Decided
        now, before the operation's awaits: the writer refuses a write routed to it for a
        twin placed on a host meanwhile, and :meth:`_rerouted` routes it again."""
        check_ack(ack)
        if self.edge_write is None or not self._edge_served(thing_id):
            return self._writes
        forward = EdgeForward(self.things, self._access, self.edge_write, self.edge_positions, ack)
        return Writes(forward, self._access, self.things, self.metrics)

    async def device_report(self, thing_id: str, payload: Any, *, device: str | None = None) -> int:
        """Apply a device's report; returns the new revision once it is durable (see
        :meth:`.Writes.device_report`).

        Raises:
            Unavailable: the twin is served by an edge host process; the device is sent
                a redirect to it and the report is not acknowledged (it is re-sent there).
        """
        owner = self.edge_owner(thing_id) if self.edge_owner else None
        if owner is not None:
            host, url, epoch = owner
            publish = getattr(self.outbound, "publish_redirect", None)
            if publish is not None:
                publish(thing_id, {"host": host, "url": url, "epoch": epoch})
            raise Unavailable(f"twin {thing_id} is served by edge host {host} at {url}")
        return await self._writes.device_report(thing_id, payload, device=device)

    async def set_host(self, thing_id: str, host: str | None) -> dict:
        """The orchestrator moved the twin to ``host``; returns the thing after.

        Raises:
            NotFound: the thing does not exist.
        """
        return await self._writes.set_host(thing_id, host)

    # ------------------------------------------------------------------ edge replication
    async def apply_edge_records(
        self, host_id: str, records: Sequence[Any], *, values_checked: bool = False
    ) -> dict[str, Any]:
        """Apply the records an edge host committed, once each and in order; returns
        ``{"applied", "duplicates", "dropped", "acked_seq", "lag_s": {"max", "last"}}``
        (see :meth:`.Replica.apply_edge_records`; ``values_checked``: the records were
        read by :func:`twinedge.textinput.loads` under
        :data:`~twinedge.runtime.things.JSON_LIMITS`, their values are not checked again).

        Raises:
            InvalidInput: a bad host id or record.
            Conflict: a record out of order (``expected_revision``: a gap) or from a
                fenced epoch (``fenced``); ``acked_seq`` says how far the batch got.
            TooLarge: a record would make its thing too large.
            Unavailable: shutting down, overloaded, or the store failed; send again.
        """
        return await self._replica.apply_edge_records(
            host_id, records, values_checked=values_checked
        )

    async def set_edge_position(self, thing_id: str, epoch: int, revision: int) -> None:
        """The orchestrator placed the twin on an edge host: the host's records continue
        from ``(epoch, revision)`` (see :meth:`.Replica.set_edge_position`).

        Raises:
            InvalidInput: a bad thing id, epoch or revision.
            NotFound: the thing does not exist.
        """
        await self._replica.set_edge_position(thing_id, epoch, revision)

    async def begin_edge_move(self, thing_id: str) -> int:
        """Stop the core writing ``thing_id`` itself before it is first placed on an edge
        host; returns the revision every write acknowledged before is in. Runs on the
        writer as an exclusive step: each write queued before it is committed first, and
        each later one (device report, HTTP write) is refused with
        :class:`~twinedge.errors.Unavailable`, unacknowledged, until
        :meth:`end_edge_move`.

        Raises:
            InvalidInput: a bad thing id.
            NotFound: the thing does not exist.
        """
        things.check_thing_id(thing_id)

        async def run() -> int:
            doc = self.things.get(thing_id)
            if doc is None:
                raise NotFound(f"thing {thing_id} does not exist")
            self._writer.leaving.add(thing_id)
            return int(doc["_revision"])

        return int(await self._queue.exclusive(SYSTEM, thing_id, run))

    async def end_edge_move(self, thing_id: str) -> None:
        """The move begun by :meth:`begin_edge_move` ended (the host serves the twin, or
        placing it failed and the core serves it again): writes are taken again."""

        async def run() -> None:
            self._writer.leaving.discard(thing_id)

        await self._queue.exclusive(SYSTEM, thing_id, run)

    async def clear_edge_position(self, thing_id: str) -> None:
        """The twin came back to the core: edge records of it are dropped from now on.

        Raises:
            InvalidInput: a bad thing id.
        """
        await self._replica.clear_edge_position(thing_id)

    @property
    def edge_positions(self) -> dict[str, tuple[int, int]]:
        """Every twin's edge replica position ``(epoch, revision)`` (read only)."""
        return self._replica.positions

    @property
    def replication(self) -> dict[str, HostReplication]:
        """Per edge host that replicated: acked seq, last lag, counts (for ``/metrics``)."""
        return self._replica.hosts

    # ------------------------------------------------------------------ events
    def subscribe(
        self,
        principal: Principal,
        filter: str | None = None,
        *,
        max_queue: int = 10_000,
        interest: Any = None,
        match: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Subscription:
        """A stream of CloudEvents for the things ``principal`` may see that match
        ``filter`` (RQL); with an ``interest`` (:class:`twinedge.attention.Interest`), the
        most valuable of them within its budget (see :meth:`.Events.subscribe`)."""
        return self._events.subscribe(
            principal, filter, max_queue=max_queue, interest=interest, match=match, clock=clock
        )

    def close_subscriptions(self, reason: str) -> int:
        """End every open event stream with ``reason``; returns how many were open."""
        return self._events.close_all(reason)

    # ------------------------------------------------------------------ commands
    async def send_command(
        self, p: Principal, thing_id: str, subject: str, payload: Any, *, timeout_s: float = 10.0
    ) -> Any:
        """Send a command to the device and wait for its response (see
        :meth:`.Devices.send_command`).

        A twin served by an edge host process has its device connected there: the
        command goes through that host (``edge_command``), with the same checks and
        answers.

        Raises:
            Unavailable: (edge) the host did not answer, or the twin was migrating for
                the whole timeout (the command was not sent).
        """
        owner = self.edge_owner(thing_id) if self.edge_owner else None
        if owner is None or self.edge_command is None:
            return await self._devices.send_command(
                p, thing_id, subject, payload, timeout_s=timeout_s
            )
        await self._access.get_visible(p, thing_id, "write")
        if not 0 < timeout_s <= 300:
            raise InvalidInput(f"timeout must lie in (0, 300] s, got {timeout_s}", "/timeout")
        try:
            return await self.edge_command(thing_id, subject, payload, timeout_s)
        except TimedOut:
            self.metrics["command_timeouts_total"] += 1
            raise

    def command_response(self, thing_id: str, correlation_id: str, payload: Any) -> bool:
        """A device answered; returns False for an unknown or expired correlation id, or
        one that was sent to another thing."""
        return self._devices.command_response(thing_id, correlation_id, payload)

    # ------------------------------------------------------------------ groups
    async def put_group(
        self,
        p: Principal,
        name: str,
        *,
        filter: str | None = None,
        members: Sequence[str] | None = None,
    ) -> GroupSpec:
        """Create or replace a group of the caller's domain (see :meth:`.Groups.put_group`)."""
        return await self._groups.put_group(p, name, filter=filter, members=members)

    async def get_group(
        self, p: Principal, name: str, *, limit: int = 1000, cursor: str | None = None
    ) -> dict:
        """A group with a page of its members (see :meth:`.Groups.get_group`)."""
        return await self._groups.get_group(p, name, limit=limit, cursor=cursor)

    async def list_groups(self, p: Principal) -> list[dict]:
        """The groups of the caller's domain."""
        return await self._groups.list_groups(p)

    async def delete_group(self, p: Principal, name: str) -> None:
        """Delete a group of the caller's domain."""
        await self._groups.delete_group(p, name)

    # ------------------------------------------------------------------ operations
    async def health(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """``{"status": "ok"|"unavailable", "writer", "store", ...}`` (see
        :meth:`.Health.report`)."""
        return await self._health.report(timeout_s)
