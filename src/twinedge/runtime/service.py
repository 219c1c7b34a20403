"""The core of the live service: the twins in memory, one writer, events, groups, access.

Every mutation (an HTTP write, a device report over MQTT, the orchestrator moving a
twin) becomes a small function from the current document to the new one and goes into
one queue. A single writer task drains the queue in batches, applies the functions in
order on top of the in-memory twins, commits the whole batch to the store in one
transaction (group commit) from a dedicated thread, and only then updates the cache,
answers the callers (HTTP 2xx, MQTT PUBACK), publishes events and sends desired state to
devices. One writer means no lost updates and no locks; batching is what makes durable
writes fast.

The service never knows which front end called it: HTTP, WebSocket, MQTT and the
orchestrator all go through the same methods with a :class:`~.auth.Principal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from twinedge.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OperationFailed,
    Overloaded,
    PreconditionFailed,
    ServiceError,
    TimedOut,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from twinedge.runtime import rql, things
from twinedge.runtime.auth import (
    SYSTEM,
    Principal,
    Role,
    check_password,
    check_token_secret,
    hash_password,
    new_token,
    split_token,
)
from twinedge.runtime.store.base import (
    ApiKey,
    Change,
    Grant,
    GroupSpec,
    Scope,
    SearchPage,
    SearchQuery,
    Store,
)

log = logging.getLogger("twinedge.service")
# a mutation: the new document (None: deleted), or it with its own RFC 6902 operations
Mutator = Callable[[dict | None], dict | tuple[dict | None, list[dict]] | None]
EVENT_SOURCE = "/twinedge"


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Outbound(Protocol):
    """How the service reaches devices (implemented by the MQTT bridge)."""

    async def publish_desired(
        self, thing_id: str, feature_id: str, desired: dict[str, Any]
    ) -> None: ...

    async def publish_command(
        self, thing_id: str, subject: str, correlation_id: str, payload: Any
    ) -> None: ...

    async def publish_error(self, thing_id: str, problem: dict[str, Any]) -> None: ...


@dataclass
class _Op:
    thing_id: str
    mutate: Mutator
    principal: Principal
    source: str
    if_match: int | None = None  # expected current revision
    if_none_match: bool = False  # the thing must not exist
    validate: bool = True  # check the whole new document (device reports check what they touch)
    domain: str | None = None  # the owner domain if this op creates the thing
    role: Role = "write"  # what the principal needs on the current document
    # an exclusive step (groups, credentials): runs alone, after everything queued before
    # it is committed and before anything queued after it is applied
    barrier: Callable[[], Awaitable[Any]] | None = None
    future: asyncio.Future[_Result] = field(init=False)  # set by _submit before queueing


@dataclass
class _Result:
    thing: dict | None
    created: bool
    changed: bool

    def document(self) -> dict:
        """The thing after an op whose mutator never deletes it."""
        if self.thing is None:
            raise AssertionError("the mutation deleted the thing")
        return self.thing


class Subscription:
    """A bounded stream of CloudEvents for one client. Too slow a reader is cut off with a
    reason instead of growing memory without bound."""

    def __init__(
        self, service: TwinService, principal: Principal, node: rql.Node | None, max_queue: int
    ):
        self.service, self.principal, self.node = service, principal, node
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self.closed_reason: str | None = None
        self.dropped = 0

    def offer(self, event: dict) -> None:
        if self.closed_reason:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close(
                f"slow consumer: {self.queue.maxsize} events were waiting; reconnect and resume from the latest revision"
            )
            self.service.metrics["events_dropped_total"] += 1

    def close(self, reason: str = "closed") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.service._subscriptions.discard(self)
            if self.queue.full():  # make room for the end marker: the stream ends anyway
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[dict]:
        while True:
            ev = await self.queue.get()
            if ev is None:
                return
            yield ev


class TwinService:
    """The live twin service.

    Parameters:
        store: where everything is kept (see :mod:`twinedge.runtime.store`).
        retention_s: keep history for this long (``None``: forever).
        batch_max: most mutations committed in one transaction.
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
        self.outbound: Outbound | None = None
        self.things: dict[str, dict] = {}
        self.groups: dict[str, tuple[GroupSpec, rql.Node | None, set[str]]] = {}
        self.metrics: Counter[str] = Counter()  # event counts, by name[:label]
        self.commit_seconds_total = 0.0  # time spent in store commits, for /metrics
        self.commit_latency_s: list[float] = []  # recent commit times, for /metrics
        self._queue: asyncio.Queue[_Op] = asyncio.Queue(maxsize=queue_max)
        self._subscriptions: set[Subscription] = set()
        # correlation id -> (the thing the command went to, its answer)
        self._pending_commands: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="twinedge-writer")
        self._reader_pool = ThreadPoolExecutor(4, thread_name_prefix="twinedge-reader")
        self._writer_task: asyncio.Task | None = None
        self._prune_task: asyncio.Task | None = None
        self._stopping = False
        self._grants_cache: dict[str, list[tuple[Grant, rql.Node]]] = {}
        self.namespaces: dict[str, str] = {}  # namespace -> owner domain

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_pool, self.store.migrate)
        docs = await loop.run_in_executor(self._writer_pool, lambda: list(self.store.load_things()))
        self.things = {d["thingId"]: d for d in docs}
        stored = await self._on_writer(self.store.namespaces)
        self.namespaces = dict(stored)
        for tid, d in self.things.items():  # things stored before namespaces were claimed
            ns = tid.split(":", 1)[0]
            owner = self.namespaces.setdefault(ns, d["_domain"])
            if owner != d["_domain"]:
                log.warning(
                    "thing %s of domain %s lies in namespace %s of domain %s; "
                    "it stays, but new things there belong to %s",
                    tid, d["_domain"], ns, owner, owner,
                )  # fmt: skip
        now = self.clock()
        claims = [(ns, d, now) for ns, d in self.namespaces.items() if ns not in stored]
        if claims:
            await self._on_writer(self.store.commit, [], claims)
        specs = await loop.run_in_executor(self._writer_pool, self.store.groups)
        for spec in specs:
            members = await self._read(self._all_members, spec.domain, spec.name)
            self.groups[f"{spec.domain}/{spec.name}"] = (
                spec,
                rql.parse(spec.filter) if spec.filter else None,
                set(members),
            )
        self._writer_task = asyncio.create_task(self._writer(), name="twinedge-writer")
        if self.retention_s:
            self._prune_task = asyncio.create_task(
                self._prune_loop(self.retention_s), name="twinedge-prune"
            )

    def _all_members(self, domain: str, name: str) -> list[str]:
        out, cursor = [], None
        while True:
            page, cursor = self.store.group_members(domain, name, limit=10_000, cursor=cursor)
            out += page
            if not cursor:
                return out

    async def stop(self) -> None:
        """Finish every queued mutation (everything a caller may have been told is
        accepted), close event streams, and release the store."""
        self._stopping = True
        if self._writer_task:
            await self._queue.join()
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        if self._prune_task:
            self._prune_task.cancel()
        for sub in list(self._subscriptions):
            sub.close("server shutting down")
        for _, fut in self._pending_commands.values():
            if not fut.done():
                fut.set_exception(Unavailable("the server is shutting down"))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_pool, self.store.close)
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=False)

    async def _read(self, fn: Callable, *args: Any, **kw: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_pool, lambda: fn(*args, **kw)
        )

    # ------------------------------------------------------------------ the writer
    async def _submit(self, op: _Op) -> _Result:
        if self._stopping:
            raise Unavailable("the server is shutting down; retry later")
        op.future = asyncio.get_running_loop().create_future()
        try:
            # never wait for room: a waiting put could be overtaken and reorder a device's
            # updates; a full queue is back-pressure the caller must see
            self._queue.put_nowait(op)
        except asyncio.QueueFull:
            self.metrics["overload_rejected_total"] += 1
            raise Overloaded("the service is overloaded (write queue full); retry") from None
        return await op.future

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        held: _Op | None = None
        while True:
            op = held if held is not None else await self._queue.get()
            held = None
            if op.barrier is not None:
                try:
                    await self._run_barrier(op)
                finally:
                    self._queue.task_done()
                continue
            batch = [op]
            while len(batch) < self.batch_max and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt.barrier is not None:
                    held = nxt  # runs once this batch is committed
                    break
                batch.append(nxt)
            try:
                await self._commit_isolated(batch, loop)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_barrier(self, op: _Op) -> None:
        assert op.barrier is not None
        try:
            res = await op.barrier()
        except ServiceError as e:
            self.metrics[f"rejected_total:{op.source}"] += 1
            if not op.future.done():
                op.future.set_exception(e)
        except Exception as e:
            self.metrics["commit_failures_total"] += 1
            if not op.future.done():
                op.future.set_exception(
                    Unavailable(f"the store could not commit ({type(e).__name__}: {e}); retry")
                )
        else:
            if not op.future.done():
                op.future.set_result(res)

    async def _commit_isolated(self, batch: list[_Op], loop: asyncio.AbstractEventLoop) -> None:
        """Commit ``batch``; if the store refuses it, split it in halves and commit them
        in order, so one write the store cannot take fails alone instead of failing its
        neighbours.

        A write that fails alone while others of its batch were stored is refused for
        good (:class:`OperationFailed`: retrying would not help, so an MQTT device is
        acknowledged and told); when nothing could be stored the store is failing and
        everybody gets :class:`Unavailable` (retry).
        A budget bounds the failed attempts, so a store that is down is not asked 2n
        times."""
        failed: list[tuple[list[_Op], Exception]] = []
        await self._commit_split(batch, loop, [16], failed)
        if not failed:
            return
        stored_some = sum(len(ops) for ops, _ in failed) < len(batch)
        for ops, exc in failed:
            what = f"{type(exc).__name__}: {exc}"
            if len(ops) == 1 and stored_some:
                log.error("the store refused one write of %s: %s", ops[0].thing_id, what)
                err: ServiceError = OperationFailed(
                    f"the store refused this write ({what}); it was not stored, and sending "
                    "it again will not help"
                )
            else:
                log.warning("commit of %d changes failed: %s", len(ops), what)
                err = Unavailable(f"the store could not commit ({what}); retry")
            for op in ops:
                if not op.future.done():
                    op.future.set_exception(err)

    async def _commit_split(
        self,
        batch: list[_Op],
        loop: asyncio.AbstractEventLoop,
        budget: list[int],
        failed: list[tuple[list[_Op], Exception]],
    ) -> None:
        try:
            await self._apply_batch(batch, loop)
        except Exception as exc:  # the store failed: nobody in this batch is acknowledged
            self.metrics["commit_failures_total"] += 1
            budget[0] -= 1
            if len(batch) > 1 and budget[0] > 0:
                mid = len(batch) // 2
                await self._commit_split(batch[:mid], loop, budget, failed)
                await self._commit_split(batch[mid:], loop, budget, failed)
            else:
                failed.append((batch, exc))

    async def _apply_batch(self, batch: list[_Op], loop: asyncio.AbstractEventLoop) -> None:
        now = self.clock()
        stamp = rfc3339(now)
        work: dict[str, dict | None] = {}
        changes: list[Change] = []
        olds: list[dict | None] = []
        results: list[tuple[_Op, _Result | ServiceError]] = []
        membership: dict[str, set[str]] = {}
        claims: dict[str, str] = {}
        for op in batch:
            cur = work[op.thing_id] if op.thing_id in work else self.things.get(op.thing_id)
            try:
                res, change = self._apply_one(op, cur, now, membership, stamp, claims)
            except ServiceError as e:
                results.append((op, e))
                continue
            except Exception as e:  # a bug in a mutator must not take the writer down
                log.exception("a mutation of %s failed", op.thing_id)
                results.append((op, OperationFailed(f"{type(e).__name__}: {e}")))
                continue
            if change is not None:
                work[op.thing_id] = change.new
                changes.append(change)
                olds.append(cur)
            results.append((op, res))
        if changes:
            t0 = time.perf_counter()
            ns_rows = [(ns, d, now) for ns, d in claims.items()]
            await loop.run_in_executor(self._writer_pool, self.store.commit, changes, ns_rows)
            dt = time.perf_counter() - t0
            self.commit_latency_s.append(dt)
            self.metrics["commits_total"] += 1
            self.commit_seconds_total += dt
            if len(self.commit_latency_s) > 1000:
                del self.commit_latency_s[:500]
            for tid, doc in work.items():
                if doc is None:
                    self.things.pop(tid, None)
                else:
                    self.things[tid] = doc
            for key, members in membership.items():
                self.groups[key][2].clear()
                self.groups[key][2].update(members)
            self.namespaces.update(claims)
        for op, outcome in results:
            if isinstance(outcome, ServiceError):
                self.metrics[f"rejected_total:{op.source}"] += 1
                if not op.future.done():
                    op.future.set_exception(outcome)
            elif not op.future.done():
                op.future.set_result(outcome)
        for ch, old in zip(changes, olds, strict=True):
            self.metrics[f"updates_total:{ch.source}"] += 1
            self._publish(ch, old)
            await self._push_desired(ch)
            if ch.new is None:
                await self._end_incarnation(ch.thing_id)

    async def _end_incarnation(self, thing_id: str) -> None:
        """A deleted thing's device sessions end with it (their credentials are gone)."""
        disconnect = getattr(self.outbound, "disconnect_device", None)
        if disconnect is not None:  # also when the batch created the thing again
            try:
                await disconnect(thing_id)
            except Exception:  # the session ends anyway when it next authenticates
                log.exception("could not disconnect the device of deleted thing %s", thing_id)

    def _apply_one(
        self,
        op: _Op,
        cur: dict | None,
        now: float,
        membership: dict[str, set[str]],
        stamp: str,
        claims: dict[str, str],
    ) -> tuple[_Result, Change | None]:
        # access is decided here, on the document the mutation applies to: a check made
        # before the op was queued may be stale (the thing deleted and created again)
        if cur is not None and not self._visible(op.principal, cur, op.role):
            ns, owner = self._namespace_owner(op.thing_id, claims)
            if op.domain is not None and owner is not None and owner != op.domain:
                # a create-or-replace answers as it would for a free id
                raise self._foreign_namespace(op.principal, ns, owner)
            raise NotFound(
                f"thing {op.thing_id} does not exist or is not visible to key {op.principal.id!r}"
            )
        if op.if_none_match and cur is not None:
            raise PreconditionFailed(f"thing {op.thing_id} already exists (If-None-Match: *)")
        if op.if_match is not None:
            rev = cur["_revision"] if cur else 0
            if rev != op.if_match:
                raise PreconditionFailed(
                    f"thing {op.thing_id} is at revision {rev}, not {op.if_match} (If-Match)"
                )
        # mutators never modify their input: documents in the cache are shared, not copied
        new = op.mutate(cur)
        known_ops = None
        if isinstance(new, tuple):  # the mutator knows its own RFC 6902 operations
            new, known_ops = new
        if new is None and cur is None:
            raise NotFound(f"thing {op.thing_id} does not exist")
        if cur is None:  # a creation: the namespace must be the new owner's
            if op.domain is None or new is None:
                raise NotFound(f"thing {op.thing_id} does not exist")
            ns, owner = self._namespace_owner(op.thing_id, claims)
            if owner is None:
                claims[ns] = op.domain
            elif owner != op.domain:
                raise self._foreign_namespace(op.principal, ns, owner)
            new["_domain"] = op.domain
        if new is not None and op.validate:
            things.validate_thing(
                {k: v for k, v in new.items() if k not in things.META_FIELDS}, op.thing_id
            )
        if known_ops is not None:
            ops = known_ops
            if not ops:
                return _Result(cur, False, False), None
        else:
            old_content = _view(cur)
            new_content = _view(new)
            if cur is not None and new is not None and things.json_equal(old_content, new_content):
                return _Result(cur, False, False), None
            ops = (
                things.json_patch(old_content, new_content)
                if cur is not None and new is not None
                else []
            )
        if new is not None and (cur is None or any(o["op"] == "add" for o in ops)):
            if _json_bytes(new) > MAX_THING_BYTES:
                raise TooLarge(
                    f"thing {op.thing_id} would be larger than {MAX_THING_BYTES // 1000} kB"
                )
        revision = (cur["_revision"] if cur else 0) + 1
        base = cur or new
        assert base is not None  # a mutation of nothing into nothing was refused above
        domain = base["_domain"]
        if new is not None:
            new["_revision"] = revision
            new["_modified"] = stamp
            new["_created"] = cur["_created"] if cur else stamp
            new["_domain"] = domain
            new.setdefault("_host", cur.get("_host") if cur else None)
        joins, leaves = self._group_changes(op.thing_id, domain, new, membership)
        change = Change(
            op.thing_id,
            domain,
            revision,
            now,
            new,
            ops,
            op.source,
            op.principal.id,
            tuple(joins),
            tuple(leaves),
        )
        return _Result(new, cur is None, True), change

    def _group_changes(
        self,
        thing_id: str,
        domain: str,
        new: dict | None,
        membership: dict[str, set[str]],
    ) -> tuple[list[str], list[str]]:
        joins, leaves = [], []
        for key, (spec, node, members) in self.groups.items():
            if spec.domain != domain:
                continue
            cur = membership.get(key, members)
            was = thing_id in cur
            if node is None:  # a fixed list: a deleted thing leaves it for good
                now_in = was and new is not None
            else:
                now_in = new is not None and rql.evaluate(node, new)
            if was != now_in:
                if key not in membership:
                    membership[key] = set(members)
                if now_in:
                    membership[key].add(thing_id)
                    joins.append(key)
                else:
                    membership[key].discard(thing_id)
                    leaves.append(key)
        return joins, leaves

    # ------------------------------------------------------------------ events
    def _event(self, type_: str, ch: Change, data: dict) -> dict:
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

    def _publish(self, ch: Change, old: dict | None = None) -> None:
        if not self._subscriptions:
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
                [{"op": "add", "path": "", "value": _view(ch.new)}]
                if ch.new
                else [{"op": "remove", "path": ""}]
            )
        )
        events = [
            self._event(
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
        for key in ch.group_joins:
            events.append(
                self._event(
                    "group.joined",
                    ch,
                    {"thingId": ch.thing_id, "revision": ch.revision, "group": key},
                )
            )
        for key in ch.group_leaves:
            events.append(
                self._event(
                    "group.left",
                    ch,
                    {"thingId": ch.thing_id, "revision": ch.revision, "group": key},
                )
            )
        # a deletion is judged on the document that was deleted
        doc = ch.new or old or {"thingId": ch.thing_id, "_domain": ch.domain}
        for sub in list(self._subscriptions):
            if not self._visible(sub.principal, doc):
                continue
            if sub.node is not None and not rql.evaluate(sub.node, doc):
                continue
            for ev in events:
                sub.offer(ev)
        self.metrics["events_published_total"] += len(events)

    def subscribe(
        self, principal: Principal, filter: str | None = None, *, max_queue: int = 10_000
    ) -> Subscription:
        """A stream of CloudEvents for the things ``principal`` may see that match
        ``filter`` (RQL)."""
        node = rql.parse(filter) if filter else None
        sub = Subscription(self, principal, node, max_queue)
        self._subscriptions.add(sub)
        return sub

    async def _push_desired(self, ch: Change) -> None:
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

    # ------------------------------------------------------------------ access
    async def authenticate(self, token: str | None) -> Principal:
        """The principal of an API token.

        Raises:
            Unauthenticated: the token is missing, unknown or revoked.
        """
        if not token:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <token>'")
        parts = split_token(token)
        key = await self._read(self.store.get_api_key, parts[0]) if parts else None
        if parts is None or key is None or not check_token_secret(parts[1], key.secret_hash):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(key.key_id, key.domain or None, key.role, "key")

    async def create_api_key(
        self, principal: Principal, domain: str | None, role: Role, key_id: str | None = None
    ) -> str:
        """Create an API key; returns the token (shown once, stored hashed). A domain admin
        creates keys of its own domain; the service admin of any domain."""
        self._require(principal, "admin")
        if principal.domain is not None and domain != principal.domain:
            raise Forbidden(
                f"a domain admin of {principal.domain!r} can only create keys for that domain"
            )
        if role not in ("read", "write", "admin"):
            raise InvalidInput(f"role must be read, write or admin, got {role!r}", "/role")
        if domain:
            things.check_domain(domain)
        if key_id is not None:
            things.check_name(key_id, "a key id", "/keyId")
        key_id = key_id or uuid.uuid4().hex[:12]
        token, digest = new_token(key_id)
        await self._read(
            self.store.put_api_key, ApiKey(key_id, digest, domain or "", role, self.clock())
        )
        return token

    async def ensure_admin_key(self) -> str | None:
        """Create the service admin key on first start; returns its token, or None if it
        exists already."""
        if await self._read(self.store.get_api_key, "admin") is not None:
            return None
        token, digest = new_token("admin")
        await self._read(self.store.put_api_key, ApiKey("admin", digest, "", "admin", self.clock()))
        return token

    async def set_device_secret(self, principal: Principal, thing_id: str, password: str) -> None:
        """Give the device of ``thing_id`` its MQTT password (username = thing id)."""
        await self._get_visible(principal, thing_id, "admin")
        if not isinstance(password, str) or len(password) < 8:
            raise InvalidInput("a device password must have at least 8 characters", "/password")
        things.check_name(password, "the password", "/password")
        digest = await self._read(hash_password, password)

        async def run() -> None:
            # alone in the writer, on the current incarnation: a thing deleted meanwhile
            # takes no credentials into its next life
            doc = self.things.get(thing_id)
            if doc is None or not self._visible(principal, doc, "admin"):
                raise NotFound(
                    f"thing {thing_id} does not exist or is not visible to key {principal.id!r}"
                )
            await self._on_writer(self.store.put_device_secret, thing_id, digest)

        await self._exclusive(principal, thing_id, run)

    async def authenticate_device(self, thing_id: str, password: str | None) -> bool:
        if not password or thing_id not in self.things:
            return False
        stored = await self._read(self.store.get_device_secret, thing_id)
        return stored is not None and await self._read(check_password, password, stored)

    async def grant(self, principal: Principal, grantee: str, filter: str, role: Role) -> Grant:
        """Let domain ``grantee`` read (or write) the caller's things that match ``filter``."""
        self._require(principal, "admin")
        things.check_domain(grantee, "/grantee")
        if principal.domain is None:
            raise InvalidInput(
                "the service admin has no domain to grant from; use a domain admin key"
            )
        rql.parse(filter)
        g = Grant(principal.domain, grantee, filter, role)
        await self._read(self.store.put_grant, g)
        # reload now, so open event streams of the grantee see the granted things at once
        self._grants_cache.pop(grantee, None)
        await self._grants(grantee)
        return g

    def _require(self, p: Principal, role: Role) -> None:
        if not p.can(role):
            raise Forbidden(f"this needs role {role!r}; the key {p.id!r} has role {p.role!r}")

    async def _grants(self, domain: str) -> list[tuple[Grant, rql.Node]]:
        if domain not in self._grants_cache:
            gs = await self._read(self.store.grants_for, domain)
            self._grants_cache[domain] = [(g, rql.parse(g.filter)) for g in gs]
        return self._grants_cache[domain]

    def _visible(self, p: Principal, doc: dict, role: Role = "read") -> bool:
        if p.domain is None or doc.get("_domain") == p.domain:
            return True
        if role == "admin":  # credentials and the like: the owner domain's business only
            return False
        return any(
            g.grantor == doc.get("_domain")
            and (role == "read" or g.role == "write")
            and rql.evaluate(node, doc)
            for g, node in self._grants_cache.get(p.domain, ())
        )

    async def scope(self, p: Principal) -> Scope:
        if p.domain is None:
            return Scope(None)
        return Scope((p.domain,), tuple(g for g, _ in await self._grants(p.domain)))

    async def _get_visible(self, p: Principal, thing_id: str, role: Role = "read") -> dict:
        self._require(p, role)
        things.check_thing_id(thing_id)
        if p.domain is not None:
            await self._grants(p.domain)
        doc = self.things.get(thing_id)
        if doc is None or not self._visible(p, doc, role):
            if doc is not None:
                self.metrics["access_denied_total"] += 1
                log.warning(
                    "refused %s access to %s (domain %s) for key %s of domain %s",
                    role,
                    thing_id,
                    doc.get("_domain"),
                    p.id,
                    p.domain,
                )
            # a thing of another domain is indistinguishable from a missing one
            raise NotFound(f"thing {thing_id} does not exist or is not visible to key {p.id!r}")
        return doc

    # ------------------------------------------------------------------ reading
    async def get_thing(
        self, p: Principal, thing_id: str, *, revision: int | None = None, at: float | None = None
    ) -> dict:
        if revision is None and at is None:
            return await self._get_visible(p, thing_id)
        # an as-of read also works for a thing deleted since: visibility is judged on the
        # document as it was
        if revision is not None and not 0 <= revision <= 2**53:
            raise InvalidInput(f"revision must lie in 0..2^53, got {revision}", "/revision")
        if at is not None and not (
            isinstance(at, int | float) and MIN_TIME_S <= at < MAX_TIME_S
        ):  # 0001-01-01T00:00:00Z up to 5000-01-01T00:00:00Z
            raise InvalidInput(f"at must be a time between the years 1 and 5000, got {at}", "/at")
        self._require(p, "read")
        things.check_thing_id(thing_id)
        if p.domain is not None:
            await self._grants(p.domain)
        old = await self._read(self.store.thing_at, thing_id, revision=revision, at=at)
        if old is None or not self._visible(p, old):
            when = (
                f"revision {revision}"
                if revision is not None or at is None
                else f"time {rfc3339(at)}"
            )
            raise NotFound(
                f"thing {thing_id} did not exist at {when}, its history was pruned, "
                f"or it is not visible to key {p.id!r}"
            )
        return old

    async def get_path(self, p: Principal, thing_id: str, path: str) -> Any:
        doc = await self._get_visible(p, thing_id)
        try:
            return things.get_path(doc, things.split_path(path))
        except KeyError:
            raise NotFound(f"thing {thing_id} has nothing at /{path.strip('/')}") from None

    async def delta(self, p: Principal, thing_id: str) -> dict:
        doc = await self._get_visible(p, thing_id)
        d = things.delta(doc)
        return {"thingId": thing_id, "revision": doc["_revision"], "inSync": not d, "delta": d}

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
        """A page of the changes of the thing's current incarnation, oldest first, and the
        cursor of the next page (``None`` after the last). A key that sees the thing
        through a grant sees only the revisions at which the thing matched the grant."""
        doc = await self._get_visible(p, thing_id)
        for name, v in (("from", since), ("to", until)):
            if v is not None and not MIN_TIME_S <= v < MAX_TIME_S:
                raise InvalidInput(
                    f"{name} must be a time between the years 1 and 5000", f"/{name}"
                )
        if not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must lie in 1..10000, got {limit}", "/limit")
        after = 0
        if cursor is not None:
            if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit()):
                raise InvalidInput("the cursor is not one this service gave out", "/cursor")
            after = int(cursor[:16])
        items = await self._read(
            self.store.history,
            thing_id,
            since=since,
            until=until,
            after_revision=after,
            limit=limit,
        )
        nxt = str(items[-1]["revision"]) if len(items) == limit else None
        if p.domain is not None and doc["_domain"] != p.domain and items:
            items = await self._read(self._granted_history, p, thing_id, items)
        return items, nxt

    def _granted_history(self, p: Principal, thing_id: str, items: list[dict]) -> list[dict]:
        """The entries of ``items`` (consecutive revisions) at which the thing, as it was
        then, was visible to ``p`` (a deletion: when the deleted document was)."""
        first = items[0]["revision"]
        prev = self.store.thing_at(thing_id, revision=first - 1) if first > 1 else None
        out = []
        for item in items:
            if item["deleted"]:
                doc = None
                seen = prev is not None and self._visible(p, prev)
            else:
                if item["revision"] == first or prev is None:
                    doc = self.store.thing_at(thing_id, revision=item["revision"])
                else:
                    doc = things.apply_json_patch(prev, item["ops"])
                    doc["_revision"] = item["revision"]
                seen = doc is not None and self._visible(p, doc)
            if seen:
                out.append(item)
            prev = doc
        return out

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
        self._require(p, "read")
        if filter:
            rql.parse(filter)
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must lie in 1..1000, got {limit}", "/limit")
        q = SearchQuery(
            filter,
            await self.scope(p),
            tuple(sort),
            limit,
            cursor,
            tuple(fields) if fields else None,
        )
        return await self._read(self.store.search, q)

    async def count(self, p: Principal, filter: str | None = None) -> int:
        self._require(p, "read")
        return await self._read(self.store.count, filter, await self.scope(p))

    async def aggregate(
        self, p: Principal, *, filter: str | None, group_by: str, fn: str, field: str | None
    ) -> list[dict]:
        self._require(p, "read")
        if fn not in ("count", "min", "max", "avg"):
            raise InvalidInput(f"aggregate must be count, min, max or avg, got {fn!r}", "/fn")
        if fn != "count" and not field:
            raise InvalidInput(f"{fn} needs a field", "/field")
        return await self._read(
            self.store.aggregate, filter, await self.scope(p), group_by, fn, field
        )

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
    ) -> tuple[dict, bool]:
        """Create or replace a thing. The domain is the caller's (the service admin
        names it with ``domain`` or ``_domain`` in the body)."""
        self._require(p, "write")
        things.check_thing_id(thing_id)
        if isinstance(body, dict) and "_domain" in body:
            domain = domain or body.get("_domain")
        clean = things.validate_thing(
            {k: v for k, v in body.items() if k not in things.META_FIELDS}
            if isinstance(body, dict)
            else body,
            thing_id,
        )
        if p.domain is not None:
            domain = p.domain
        elif domain is not None:
            things.check_domain(domain, "/_domain")
        if not domain or not isinstance(domain, str):
            raise InvalidInput(
                "the service admin must name the owner domain of a new thing (field _domain)",
                "/_domain",
            )
        if p.domain is not None:
            await self._grants(p.domain)
        # read after the last await: both may have changed while it waited
        ns, owner = self._namespace_owner(thing_id)
        doc = self.things.get(thing_id)
        if doc is not None and self._visible(p, doc, "write"):
            pass  # a replacement; re-checked by the writer
        elif owner is not None and owner != domain:
            # a thing that exists but is not visible and a free id answer alike
            if doc is not None:
                self.metrics["access_denied_total"] += 1
            raise self._foreign_namespace(p, ns, owner)
        elif doc is not None:
            await self._get_visible(p, thing_id, "write")  # raises the same NotFound as a GET

        def mutate(cur: dict | None) -> dict:
            new = dict(clean)
            new["_domain"] = cur["_domain"] if cur else domain
            new["_host"] = cur.get("_host") if cur else None
            return new

        op = _Op(thing_id, mutate, p, "http", if_match, if_none_match, domain=domain)
        res = await self._submit(op)
        return res.document(), res.created

    def _namespace_owner(
        self, thing_id: str, claims: dict[str, str] | None = None
    ) -> tuple[str, str | None]:
        """``(namespace, owner domain or None)`` of ``thing_id``, counting the ``claims`` of
        the batch being applied."""
        ns = thing_id.split(":", 1)[0]
        return ns, (claims or {}).get(ns) or self.namespaces.get(ns)

    def _foreign_namespace(self, p: Principal, ns: str, owner: str) -> ServiceError:
        if p.domain is None:
            return Conflict(
                f"namespace {ns!r} belongs to domain {owner!r}; create the thing there, or "
                f"assign the namespace with PUT /api/2/namespaces/{ns}",
                pointer="/_domain",
            )
        return Forbidden(
            f"namespace {ns!r} belongs to another domain; a domain creates things only in "
            f"its own namespaces (the service admin assigns them)",
            pointer="/thingId",
        )

    async def list_namespaces(self, p: Principal) -> list[dict[str, str]]:
        """The namespaces of the caller's domain (every one, for the service admin)."""
        self._require(p, "read")
        return [
            {"namespace": ns, "domain": d}
            for ns, d in sorted(self.namespaces.items())
            if p.domain is None or d == p.domain
        ]

    async def assign_namespace(self, p: Principal, ns: str, domain: str) -> dict[str, str]:
        """The service admin gives namespace ``ns`` to ``domain`` (things already in it
        keep their owner; new ones belong to ``domain``)."""
        self._require(p, "admin")
        if p.domain is not None:
            raise Forbidden("only the service admin assigns namespaces to domains")
        if not things.NAMESPACE_RE.fullmatch(ns or ""):
            raise InvalidInput(f"namespace {ns!r} is not valid", "/namespace")
        things.check_domain(domain)

        async def run() -> dict[str, str]:
            await self._on_writer(self.store.put_namespace, ns, domain, self.clock())
            self.namespaces[ns] = domain
            return {"namespace": ns, "domain": domain}

        return await self._exclusive(p, ns, run)

    async def _exclusive(self, p: Principal, key: str, run: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``run`` through the writer queue, alone (see :attr:`_Op.barrier`)."""
        op = _Op(key, _unchanged, p, "http", barrier=run)
        return await self._submit(op)

    async def _on_writer(self, fn: Callable, *args: Any) -> Any:
        """Run ``fn`` on the writer's thread (store writes, in order with the commits)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._writer_pool, lambda: fn(*args)
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
    ) -> dict:
        """JSON Merge Patch (RFC 7396) of the value at ``path`` (``""`` = the thing)."""
        await self._get_visible(p, thing_id, "write")
        tokens = things.split_path(path)
        _check_writable(tokens)

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            content = _content(cur)
            try:
                old = things.get_path(content, tokens) if tokens else content
            except KeyError:
                old = None
            new_val = things.merge_patch(old, patch)
            if tokens:
                things.set_path(content, tokens, new_val)
            else:
                if not isinstance(new_val, dict):
                    raise InvalidInput("a merge patch of a thing must be a JSON object", "")
                content = new_val
                content["thingId"] = thing_id
            return _with_meta(content, cur)

        return (await self._submit(_Op(thing_id, mutate, p, source, if_match))).document()

    async def put_path(
        self, p: Principal, thing_id: str, path: str, value: Any, *, if_match: int | None = None
    ) -> tuple[dict, bool]:
        """Create or replace the value at ``path``; returns (thing, created_at_path)."""
        await self._get_visible(p, thing_id, "write")
        tokens = things.split_path(path)
        if not tokens:
            raise InvalidInput("use PUT /things/{id} to replace a whole thing")
        _check_writable(tokens)
        created = {"v": False}

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            content = _content(cur)
            try:
                things.get_path(content, tokens)
            except KeyError:
                created["v"] = True
            things.set_path(content, tokens, copy.deepcopy(value))
            return _with_meta(content, cur)

        res = await self._submit(_Op(thing_id, mutate, p, "http", if_match))
        return res.document(), created["v"]

    async def delete(
        self, p: Principal, thing_id: str, path: str = "", *, if_match: int | None = None
    ) -> dict | None:
        await self._get_visible(p, thing_id, "write")
        tokens = things.split_path(path)
        if tokens:
            _check_writable(tokens)

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            if not tokens:
                return None
            content = _content(cur)
            try:
                things.delete_path(content, tokens)
            except KeyError:
                raise NotFound(f"thing {thing_id} has nothing at /{path.strip('/')}") from None
            return _with_meta(content, cur)

        return (await self._submit(_Op(thing_id, mutate, p, "http", if_match))).thing

    async def set_desired(
        self,
        p: Principal,
        thing_id: str,
        feature_id: str,
        patch: dict,
        *,
        if_match: int | None = None,
    ) -> dict:
        """Merge-patch a feature's desired properties; the device gets them over MQTT and
        the twin is pending until the device reports matching values."""
        return await self.patch(
            p,
            thing_id,
            f"features/{things.escape_token(feature_id)}/desiredProperties",
            patch,
            if_match=if_match,
        )

    async def device_report(self, thing_id: str, payload: Any, *, device: str | None = None) -> int:
        """Apply a device's report: ``{feature_id: merge patch of its properties}``.
        Returns the new revision once it is durable."""
        if not isinstance(payload, dict) or not payload:
            raise InvalidInput(
                "a report must be a JSON object of feature id -> properties merge patch", ""
            )
        for fid, props in payload.items():
            if not isinstance(props, dict):
                raise InvalidInput(
                    f"feature {fid!r}: the properties patch must be a JSON object",
                    f"/{things.escape_token(fid)}",
                )
        principal = Principal(device or thing_id, None, "write", "device")
        for fid, props in payload.items():
            things.validate_feature(fid, {"properties": props})
        things.check_json(payload)
        if things.too_deep(payload, things.MAX_DEPTH - 3):
            raise InvalidInput(f"the report nests deeper than {things.MAX_DEPTH - 3} levels", "")

        def mutate(cur: dict | None) -> tuple[dict, list[dict]]:
            if cur is None:
                raise NotFound(f"thing {thing_id} is not registered")
            # copy only what changes: the thing, its features map and the touched features
            new = dict(cur)
            feats = dict(cur.get("features") or {})
            ops: list[dict] = []
            for fid, props in payload.items():
                old_f = feats.get(fid)
                f = dict(old_f or {})
                old_p = f.get("properties") or {}
                f["properties"] = things.merge_patch(old_p, props)
                feats[fid] = f
                if old_f is None:
                    ops.append(
                        {"op": "add", "path": f"/features/{things.escape_token(fid)}", "value": f}
                    )
                elif "properties" not in old_f:
                    ops.append(
                        {
                            "op": "add",
                            "path": f"/features/{things.escape_token(fid)}/properties",
                            "value": f["properties"],
                        }
                    )
                else:
                    ops += things.json_patch(
                        old_p, f["properties"], f"/features/{things.escape_token(fid)}/properties"
                    )
            new["features"] = feats
            return new, ops

        res = await self._submit(_Op(thing_id, mutate, principal, "mqtt", validate=False))
        return res.document()["_revision"]

    async def set_host(self, thing_id: str, host: str | None) -> dict:
        """The orchestrator moved the twin to ``host``."""

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            new = copy.deepcopy(cur)
            new["_host"] = host
            return new

        return (await self._submit(_Op(thing_id, mutate, SYSTEM, "orchestrator"))).document()

    # ------------------------------------------------------------------ commands
    async def send_command(
        self, p: Principal, thing_id: str, subject: str, payload: Any, *, timeout_s: float = 10.0
    ) -> Any:
        """Send a command to the device and wait for its response.

        Raises:
            TimedOut: the device did not answer within ``timeout_s``.
            Unavailable: no device connection is configured.
        """
        await self._get_visible(p, thing_id, "write")
        if self.outbound is None:
            raise Unavailable("no device connection (MQTT) is configured")
        if not 0 < timeout_s <= 300:
            raise InvalidInput(f"timeout must lie in (0, 300] s, got {timeout_s}", "/timeout")
        cid = uuid.uuid4().hex
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending_commands[cid] = (thing_id, fut)
        try:
            await self.outbound.publish_command(thing_id, subject, cid, payload)
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            self.metrics["command_timeouts_total"] += 1
            raise TimedOut(
                f"device {thing_id} did not answer command {subject!r} within {timeout_s:g} s",
            ) from None
        finally:
            self._pending_commands.pop(cid, None)

    def command_response(self, thing_id: str, correlation_id: str, payload: Any) -> bool:
        """A device answered; returns False for an unknown or expired correlation id, or
        one that was sent to another thing."""
        pending = self._pending_commands.get(correlation_id)
        if pending is None:
            return False
        sent_to, fut = pending
        if fut.done() or sent_to != thing_id:
            return False
        fut.set_result(payload)
        return True

    # ------------------------------------------------------------------ groups
    async def put_group(
        self,
        p: Principal,
        name: str,
        *,
        filter: str | None = None,
        members: Sequence[str] | None = None,
    ) -> GroupSpec:
        """Create or replace a named group of the caller's domain: a filter (membership
        kept current as twins change) or an explicit list."""
        self._require(p, "write")
        if p.domain is None:
            raise InvalidInput("groups belong to a domain; use a domain key")
        if not name or "/" in name or len(name) > 128:
            raise InvalidInput(f"group name {name!r} must be 1-128 characters without '/'", "/name")
        if (filter is None) == (members is None):
            raise InvalidInput("give exactly one of filter and members", "")
        things.check_name(name, "a group name", "/name")
        node = rql.parse(filter) if filter else None
        if members is not None:
            if not isinstance(members, list | tuple) or len(members) > MAX_GROUP_MEMBERS:
                raise InvalidInput(
                    f"members must be a list of at most {MAX_GROUP_MEMBERS} thing ids", "/members"
                )
            for i, m in enumerate(members):
                try:
                    things.check_thing_id(m)
                except InvalidInput as e:
                    raise InvalidInput(e.detail, f"/members/{i}") from None
            members = list(dict.fromkeys(members))
        domain = p.domain

        async def run() -> GroupSpec:
            # alone in the writer: no write can slip between the members computed here
            # and the group stored, so the group always matches its filter
            if node is not None:
                initial = [
                    tid
                    for tid, d in self.things.items()
                    if d["_domain"] == domain and rql.evaluate(node, d)
                ]
            else:  # a fixed list holds things of the group's own domain only
                initial = list(members or ())
                for i, m in enumerate(initial):
                    d = self.things.get(m)
                    if d is None or d["_domain"] != domain:
                        raise NotFound(
                            f"member {m} does not exist or is not a thing of domain {domain!r}",
                            pointer=f"/members/{i}",
                        )
            spec = GroupSpec(
                domain, name, filter, tuple(initial if node is None else ()), self.clock()
            )
            await self._on_writer(self.store.put_group, spec, initial)
            self.groups[f"{domain}/{name}"] = (spec, node, set(initial))
            return spec

        return await self._exclusive(p, f"group:{domain}/{name}", run)

    async def get_group(
        self, p: Principal, name: str, *, limit: int = 1000, cursor: str | None = None
    ) -> dict:
        self._require(p, "read")
        key = f"{p.domain}/{name}"
        if key not in self.groups:
            raise NotFound(f"group {name!r} does not exist in domain {p.domain!r}")
        spec = self.groups[key][0]
        members, nxt = await self._read(
            self.store.group_members, spec.domain, name, limit=limit, cursor=cursor
        )
        return {
            "name": name,
            "domain": spec.domain,
            "filter": spec.filter,
            "size": len(self.groups[key][2]),
            "members": members,
            "cursor": nxt,
        }

    async def list_groups(self, p: Principal) -> list[dict]:
        self._require(p, "read")
        return [
            {"name": spec.name, "domain": spec.domain, "filter": spec.filter, "size": len(m)}
            for spec, _, m in self.groups.values()
            if p.domain is None or spec.domain == p.domain
        ]

    async def delete_group(self, p: Principal, name: str) -> None:
        self._require(p, "write")
        key = f"{p.domain}/{name}"
        if key not in self.groups:
            raise NotFound(f"group {name!r} does not exist in domain {p.domain!r}")
        domain = p.domain

        async def run() -> None:
            await self._on_writer(self.store.delete_group, domain, name)
            self.groups.pop(key, None)

        await self._exclusive(p, f"group:{key}", run)

    # ------------------------------------------------------------------ operations
    async def _prune_loop(self, retention_s: float) -> None:
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):
                n = await self._read(self.store.prune_history, self.clock() - retention_s)
                self.metrics["history_pruned_total"] += n

    async def health(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """``{"status": "ok"|"unavailable", "writer", "store", ...}``: the writer task runs
        and the store answers a read within ``timeout_s`` (``detail`` says what is down)."""
        writer = self._writer_task is not None and not self._writer_task.done()
        store, detail = False, None
        try:
            await asyncio.wait_for(self._read(self.store.get_api_key, "admin"), timeout_s)
            store = True
        except TimeoutError:
            detail = f"the store did not answer within {timeout_s:g} s"
        except Exception as e:
            detail = f"the store failed: {type(e).__name__}: {e}"
        if not writer and detail is None:
            detail = "the writer task is not running (service not started, stopped or crashed)"
        doc: dict[str, Any] = {
            "status": "ok" if writer and store else "unavailable",
            "writer": writer,
            "store": store,
            "things": len(self.things),
            "subscribers": self.subscribers,
            "queueDepth": self.queue_depth,
        }
        if detail:
            doc["detail"] = detail
        return doc

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)


MAX_THING_BYTES = 256_000
# the times the service reads and writes, unix seconds: 0001-01-01T00:00:00Z up to (not
# including) 5000-01-01T00:00:00Z
MIN_TIME_S, MAX_TIME_S = -62_135_596_800.0, 95_617_584_000.0
MAX_GROUP_MEMBERS = 100_000


def _unchanged(cur: dict | None) -> dict | None:
    return cur


def _view(doc: dict | None) -> dict:
    """The document without the fields that change with every revision (shares values)."""
    if doc is None:
        return {}
    return {k: v for k, v in doc.items() if k not in ("_revision", "_modified", "_created")}


def _content(doc: dict | None) -> dict:
    """A private, mutable copy of :func:`_view` (for mutators that edit in place)."""
    return copy.deepcopy(_view(doc))


def _with_meta(content: dict, cur: dict) -> dict:
    content["_domain"] = cur["_domain"]
    content.setdefault("_host", cur.get("_host"))
    content["thingId"] = cur["thingId"]
    return content


def _check_writable(tokens: list[str]) -> None:
    if tokens and (tokens[0] in things.META_FIELDS or tokens[0] == "thingId"):
        raise Forbidden(
            f"/{tokens[0]} is kept by the service and cannot be written",
            pointer=f"/{tokens[0]}",
        )
    if tokens and tokens[0] not in ("attributes", "features"):
        raise NotFound(f"a thing has no /{tokens[0]}; write under /attributes or /features")


def _json_bytes(doc: dict) -> int:
    return len(json.dumps(doc, separators=(",", ":")))
