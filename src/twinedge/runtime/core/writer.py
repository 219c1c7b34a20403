"""The single writer: every change of the twins goes through it, in order.

A mutation is an :class:`Op`: a function from the current document to the new one
(:data:`Mutator`) with the caller, its conditions and the role it needs. Callers put it
on the :class:`WriteQueue` and wait for its :class:`Result`. The :class:`Writer` task
drains the queue in batches: it applies the ops in order on top of the twins in memory,
commits the whole batch to the store in one transaction (group commit) on the writer
thread, and only then updates the cache, answers the callers, and hands each change to
``after_commit`` (events, desired state to devices). One writer means no lost updates
and no locks; batching is what makes durable writes fast.

What the writer decides, nobody decides earlier: access is checked again on the
document an op applies to (a check made before queueing may be stale), a creation checks
and claims its namespace, and a change is detected by comparing JSON values
type-strictly. Steps that are not thing mutations but must not interleave with them
(putting a group, setting a device password, assigning a namespace) are *exclusive*:
they run alone, after everything queued before them is committed. If the store refuses
a batch, the writer splits it in halves and commits them in order, so a write the store
cannot take fails alone.

An op replicating an edge host's record (:attr:`Op.edge`, see :mod:`.replica`) is decided
here too, against the twin's edge position as the batch left it; when it applies, its
change carries the new position, which the store commits in the same transaction.

**Twins served at the edge.** While a twin has an edge position, its edge host is its
single writer and the core's copy a replica; the service sends writes of such a twin to
the host instead of queueing them here. But the service decides the route before the
access checks it awaits, and a twin can be placed on a host meanwhile. So, when edge hosts
serve twins (the service's edge tier is wired, :attr:`Writer.edge_tier`), the writer
refuses a local op of a twin that has an edge position (as the batch left it) with
:class:`~twinedge.errors.ServedAtEdge`, unapplied; the service routes it again, to the
host. Still applied locally on such a twin: the host's replicated records
(:attr:`Op.edge`), the orchestrator's own writes (source ``"orchestrator"``: the
``_host`` that records a move) and the deletion of a twin its host has already retired
(:attr:`Op.edge_retired`). Steps that are not thing mutations (credentials, groups,
namespaces, edge positions, the placement mark) are exclusive steps and not affected;
grants are not written through the writer at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from twinedge.errors import (
    NotFound,
    OperationFailed,
    Overloaded,
    PreconditionFailed,
    ServedAtEdge,
    ServiceError,
    TooLarge,
    Unavailable,
)
from twinedge.runtime import things
from twinedge.runtime.auth import Principal, Role
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.store.base import Change, EdgePosition, Store

if TYPE_CHECKING:
    from twinedge.runtime.core.access import Access
    from twinedge.runtime.core.groups import Groups

log = logging.getLogger("twinedge.service")
# a mutation: the new document (None: deleted), or it with its own RFC 6902 operations
Mutator = Callable[[dict | None], dict | tuple[dict | None, list[dict]] | None]
# a replicated edge record's decision: from the thing and its edge position (as the batch
# left them) to the position after the record, or None when the record changes nothing
EdgeStep = Callable[[dict | None, EdgePosition | None], EdgePosition | None]
MAX_THING_BYTES = 256_000


def rfc3339(t: float) -> str:
    """Unix time ``t`` as the service writes times (``2024-05-01T12:00:00.000Z``)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def view(doc: dict | None) -> dict:
    """The document without the fields that change with every revision (shares values)."""
    if doc is None:
        return {}
    return {k: v for k, v in doc.items() if k not in ("_revision", "_modified", "_created")}


@dataclass
class Op:
    """One mutation of one thing, or an exclusive step (``barrier``)."""

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
    # a record replicated from an edge host (see core/replica.py): decides, on the writer,
    # whether the op applies; one that does always makes a revision and stores the new
    # edge position with it, in the same transaction
    edge: EdgeStep | None = None
    # the twin's edge host has retired it (TwinService.delete): this local write (its
    # deletion) applies although the twin still has an edge position
    edge_retired: bool = False
    future: asyncio.Future[Result] = field(init=False)  # set by WriteQueue.submit


@dataclass
class Result:
    """What an op did: the thing after it, whether it created the thing or changed it."""

    thing: dict | None
    created: bool
    changed: bool

    def document(self) -> dict:
        """The thing after an op whose mutator never deletes it."""
        if self.thing is None:
            raise AssertionError("the mutation deleted the thing")
        return self.thing


def _unchanged(cur: dict | None) -> dict | None:
    return cur


class WriteQueue:
    """How work enters the writer: mutations and exclusive steps, in order, bounded.

    Parameters:
        pools: the store threads (exclusive steps write on the writer thread).
        metrics: the service's counters.
        queue_max: ops waiting at most; one more is refused (back-pressure).
    """

    def __init__(self, pools: StorePools, metrics: Counter[str], queue_max: int = 100_000):
        self.pools = pools
        self.metrics = metrics
        self.queue: asyncio.Queue[Op] = asyncio.Queue(maxsize=queue_max)
        self.stopping = False

    @property
    def depth(self) -> int:
        """Ops waiting for the writer."""
        return self.queue.qsize()

    async def submit(self, op: Op) -> Result:
        """Queue ``op`` and wait until it is committed (or refused).

        Raises:
            Unavailable: the service is shutting down.
            Overloaded: the queue is full.
            ServiceError: the writer refused the op (see :meth:`Writer._apply_one`).
        """
        if self.stopping:
            raise Unavailable("the server is shutting down; retry later")
        op.future = asyncio.get_running_loop().create_future()
        try:
            # never wait for room: a waiting put could be overtaken and reorder a device's
            # updates; a full queue is back-pressure the caller must see
            self.queue.put_nowait(op)
        except asyncio.QueueFull:
            self.metrics["overload_rejected_total"] += 1
            raise Overloaded("the service is overloaded (write queue full); retry") from None
        return await op.future

    def enqueue(self, ops: list[Op]) -> list[asyncio.Future[Result]]:
        """Queue ``ops`` one after the other, with nothing in between, without waiting;
        their futures, in order. When the queue fills up (or the service is stopping),
        the ops that did not fit get a future failed with
        :class:`~twinedge.errors.Overloaded` (or :class:`~twinedge.errors.Unavailable`);
        those queued before them go ahead."""
        loop = asyncio.get_running_loop()
        out: list[asyncio.Future[Result]] = []
        refused: ServiceError | None = None
        if self.stopping:
            refused = Unavailable("the server is shutting down; retry later")
        for op in ops:
            op.future = loop.create_future()
            out.append(op.future)
            if refused is None:
                try:
                    self.queue.put_nowait(op)
                    continue
                except asyncio.QueueFull:
                    self.metrics["overload_rejected_total"] += 1
                    refused = Overloaded("the service is overloaded (write queue full); retry")
            op.future.set_exception(refused)
        return out

    async def exclusive(self, p: Principal, key: str, run: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``run`` through the writer, alone (see :attr:`Op.barrier`); its result.

        Raises:
            ServiceError: ``run`` refused (as it raised), or the store failed
                (:class:`~twinedge.errors.Unavailable`).
        """
        return await self.submit(Op(key, _unchanged, p, "http", barrier=run))

    async def on_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the writer's thread (store writes, in order with the commits)."""
        return await self.pools.on_writer(fn, *args)


class Writer:
    """The writer task: drains the :class:`WriteQueue` in batches and commits them.

    Parameters:
        queue: where the ops come from.
        store: where batches are committed.
        things: the twins in memory (thing id -> document); the writer alone changes it,
            and only after a commit.
        access: decides visibility and namespace ownership on the current documents.
        groups: keeps group membership current with each change.
        after_commit: called with each committed change and the document before it, in
            order, once the callers are answered.
        clock: unix time source.
        metrics: the service's counters.
        batch_max: most ops committed in one transaction.
        edge_tier: whether edge host processes serve twins now; only then is a local op
            of a twin with an edge position refused (see the module docstring). Without
            an edge tier (no host processes, e.g. ``serve --hosts none`` on the data of
            a run that had them) the core serves every twin itself.
    """

    def __init__(
        self,
        queue: WriteQueue,
        store: Store,
        things: dict[str, dict],
        *,
        access: Access,
        groups: Groups,
        after_commit: Callable[[Change, dict | None], Awaitable[None]],
        clock: Callable[[], float],
        metrics: Counter[str],
        batch_max: int = 2000,
        edge_tier: Callable[[], bool] = lambda: False,
    ):
        self.queue = queue
        self.edge_tier = edge_tier
        self.store = store
        self.things = things
        self.access = access
        self.groups = groups
        self.after_commit = after_commit
        self.clock = clock
        self.metrics = metrics
        self.batch_max = batch_max
        self.commit_seconds_total = 0.0  # time spent in store commits, for /metrics
        self.commit_latency_s: list[float] = []  # recent commit times, for /metrics
        # the last failed commit (unix time, "Class: message") and the last good one
        self.last_commit_error: tuple[float, str] | None = None
        self.last_commit_ok_s: float | None = None
        # with tracing on: ``batch(size)`` gives a span (a context manager) per batch
        self.batch_tracer: Any = None
        self.task: asyncio.Task | None = None
        # thing id -> edge replica position; the writer alone changes it, after a commit
        # (or in an exclusive step)
        self.edge_positions: dict[str, EdgePosition] = {}
        # twins being placed on an edge host for the first time: the core's copy is being
        # handed over, so local writes are refused (unacknowledged) until the move ends;
        # changed only in exclusive steps
        self.leaving: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the writer task."""
        self.task = asyncio.create_task(self._run(), name="twinedge-writer")

    @property
    def running(self) -> bool:
        """The writer task runs."""
        return self.task is not None and not self.task.done()

    async def stop(self) -> None:
        """Refuse new ops, finish every queued one (everything a caller may have been told
        is accepted), then end the task."""
        self.queue.stopping = True
        if self.task:
            await self.queue.queue.join()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        queue = self.queue.queue
        held: Op | None = None
        while True:
            op = held if held is not None else await queue.get()
            held = None
            if op.barrier is not None:
                try:
                    await self._run_barrier(op)
                finally:
                    queue.task_done()
                continue
            batch = [op]
            while len(batch) < self.batch_max and not queue.empty():
                nxt = queue.get_nowait()
                if nxt.barrier is not None:
                    held = nxt  # runs once this batch is committed
                    break
                batch.append(nxt)
            try:
                if self.batch_tracer is None:
                    await self._commit_isolated(batch)
                else:
                    with self.batch_tracer.batch(len(batch)) as span:
                        failed = await self._commit_isolated(batch)
                        span.set_attribute("twinedge.batch.failed", failed)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _run_barrier(self, op: Op) -> None:
        assert op.barrier is not None
        try:
            res = await op.barrier()
        except ServiceError as e:
            self.metrics[f"rejected_total:{op.source}"] += 1
            if not op.future.done():
                op.future.set_exception(e)
        except Exception as e:
            self.metrics["commit_failures_total"] += 1
            self.last_commit_error = (self.clock(), f"{type(e).__name__}: {e}")
            if not op.future.done():
                op.future.set_exception(
                    Unavailable(f"the store could not commit ({type(e).__name__}: {e}); retry")
                )
        else:
            if not op.future.done():
                op.future.set_result(res)

    async def _commit_isolated(self, batch: list[Op]) -> int:
        """Commit ``batch``; if the store refuses it, split it in halves and commit them
        in order, so one write the store cannot take fails alone instead of failing its
        neighbours.

        A write that fails alone while others of its batch were stored is refused for
        good (:class:`~twinedge.errors.OperationFailed`: retrying would not help, so an
        MQTT device is acknowledged and told); when nothing could be stored the store is
        failing and everybody gets :class:`~twinedge.errors.Unavailable` (retry). A
        budget bounds the failed attempts, so a store that is down is not asked 2n
        times. Returns how many of the batch's mutations failed this way."""
        failed: list[tuple[list[Op], Exception]] = []
        await self._commit_split(batch, [16], failed)
        if not failed:
            return 0
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
        return sum(len(ops) for ops, _ in failed)

    async def _commit_split(
        self, batch: list[Op], budget: list[int], failed: list[tuple[list[Op], Exception]]
    ) -> None:
        try:
            await self._apply_batch(batch)
        except Exception as exc:  # the store failed: nobody in this batch is acknowledged
            self.metrics["commit_failures_total"] += 1
            self.last_commit_error = (self.clock(), f"{type(exc).__name__}: {exc}")
            budget[0] -= 1
            if len(batch) > 1 and budget[0] > 0:
                mid = len(batch) // 2
                await self._commit_split(batch[:mid], budget, failed)
                await self._commit_split(batch[mid:], budget, failed)
            else:
                failed.append((batch, exc))

    async def _apply_batch(self, batch: list[Op]) -> None:
        now = self.clock()
        stamp = rfc3339(now)
        work: dict[str, dict | None] = {}
        changes: list[Change] = []
        olds: list[dict | None] = []
        results: list[tuple[Op, Result | ServiceError]] = []
        membership: dict[str, set[str]] = {}
        claims: dict[str, str] = {}
        positions: dict[str, EdgePosition | None] = {}  # as the batch leaves them
        for op in batch:
            cur = work[op.thing_id] if op.thing_id in work else self.things.get(op.thing_id)
            pos = (
                positions[op.thing_id]
                if op.thing_id in positions
                else self.edge_positions.get(op.thing_id)
            )
            try:
                res, change = self._apply_one(op, cur, now, membership, stamp, claims, pos)
            except ServiceError as e:
                results.append((op, e))
                continue
            except Exception as e:  # a bug in a mutator must not take the writer down
                log.exception("a mutation of %s failed", op.thing_id)
                results.append((op, OperationFailed(f"{type(e).__name__}: {e}")))
                continue
            if change is not None:
                work[op.thing_id] = change.new
                if change.new is None:
                    positions[op.thing_id] = None  # a deletion takes the position along
                elif change.edge is not None:
                    positions[op.thing_id] = change.edge
                changes.append(change)
                olds.append(cur)
            results.append((op, res))
        if changes:
            t0 = time.perf_counter()
            ns_rows = [(ns, d, now) for ns, d in claims.items()]
            await self.queue.on_writer(self.store.commit, changes, ns_rows)
            dt = time.perf_counter() - t0
            self.commit_latency_s.append(dt)
            self.metrics["commits_total"] += 1
            self.last_commit_ok_s = now
            self.commit_seconds_total += dt
            if len(self.commit_latency_s) > 1000:
                del self.commit_latency_s[:500]
            for tid, doc in work.items():
                if doc is None:
                    self.things.pop(tid, None)
                else:
                    self.things[tid] = doc
            for tid, p in positions.items():
                if p is None:
                    self.edge_positions.pop(tid, None)
                else:
                    self.edge_positions[tid] = p
            self.groups.commit(membership)
            self.access.namespaces.update(claims)
        for op, outcome in results:
            if isinstance(outcome, ServiceError):
                self.metrics[f"rejected_total:{op.source}"] += 1
                if not op.future.done():
                    op.future.set_exception(outcome)
            elif not op.future.done():
                op.future.set_result(outcome)
        for ch, old in zip(changes, olds, strict=True):
            self.metrics[f"updates_total:{ch.source}"] += 1
            await self.after_commit(ch, old)

    def _apply_one(
        self,
        op: Op,
        cur: dict | None,
        now: float,
        membership: dict[str, set[str]],
        stamp: str,
        claims: dict[str, str],
        position: EdgePosition | None = None,
    ) -> tuple[Result, Change | None]:
        """Apply ``op`` to ``cur`` (the thing as the batch left it so far): the result and
        the change to commit (``None`` when nothing changes). ``membership`` and
        ``claims`` collect the batch's group changes and namespace claims; ``position``
        is the thing's edge replica position as the batch left it (for :attr:`Op.edge`,
        and to refuse a local op of a twin served at the edge).

        Raises:
            NotFound: the thing is missing or not visible to the op's principal.
            Forbidden, Conflict: a creation in a namespace of another domain.
            PreconditionFailed: the op's revision condition does not hold.
            ServedAtEdge: a local op of a twin that an edge host serves (see the module
                docstring); nothing is applied.
            Unavailable: the twin is moving to an edge host (see :attr:`leaving`).
            InvalidInput: the new document is not a valid thing.
            TooLarge: the new document would exceed :data:`MAX_THING_BYTES`.
        """
        access = self.access
        # access is decided here, on the document the mutation applies to: a check made
        # before the op was queued may be stale (the thing deleted and created again)
        if cur is not None and not access.visible(op.principal, cur, op.role):
            ns, owner = access.namespace_owner(op.thing_id, claims)
            if op.domain is not None and owner is not None and owner != op.domain:
                # a create-or-replace answers as it would for a free id
                raise access.foreign_namespace(op.principal, ns, owner)
            raise NotFound(
                f"thing {op.thing_id} does not exist or is not visible to key {op.principal.id!r}"
            )
        if op.edge is None and op.source != "orchestrator":  # a local write
            if position is not None and not op.edge_retired and self.edge_tier():
                # the host is the twin's writer (this op was routed here before it got there)
                raise ServedAtEdge(
                    f"twin {op.thing_id} is served by an edge host, its writer; the core did "
                    "not apply this write: send it again (the service sends writes to the "
                    "host, and a device is redirected to it)",
                    thing_id=op.thing_id,
                )
            if op.thing_id in self.leaving:
                raise Unavailable(
                    f"twin {op.thing_id} is moving to an edge host; send the write again (a "
                    "device is redirected to its host)"
                )
        if op.if_none_match and cur is not None:
            raise PreconditionFailed(f"thing {op.thing_id} already exists (If-None-Match: *)")
        if op.if_match is not None:
            rev = cur["_revision"] if cur else 0
            if rev != op.if_match:
                raise PreconditionFailed(
                    f"thing {op.thing_id} is at revision {rev}, not {op.if_match} (If-Match)"
                )
        edge = None
        if op.edge is not None:
            edge = op.edge(cur, position)
            if edge is None:  # a duplicate, or a record of a thing that is gone
                return Result(cur, False, False), None
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
            ns, owner = access.namespace_owner(op.thing_id, claims)
            if owner is None:
                claims[ns] = op.domain
            elif owner != op.domain:
                raise access.foreign_namespace(op.principal, ns, owner)
            new["_domain"] = op.domain
        if new is not None and op.validate:
            things.validate_thing(
                {k: v for k, v in new.items() if k not in things.META_FIELDS}, op.thing_id
            )
        if known_ops is not None:
            ops = known_ops
            if not ops and edge is None:
                return Result(cur, False, False), None
        else:
            old_content = view(cur)
            new_content = view(new)
            if (
                edge is None
                and cur is not None
                and new is not None
                and things.json_equal(old_content, new_content)
            ):
                return Result(cur, False, False), None
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
        joins, leaves = self.groups.changes(op.thing_id, domain, new, membership)
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
            edge if new is not None else None,
        )
        return Result(new, cur is None, True), change


def _json_bytes(doc: dict) -> int:
    return len(json.dumps(doc, separators=(",", ":")))
