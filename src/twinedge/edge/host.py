"""An edge host: the twins placed on it, served from memory, committed to its own log.

``EdgeHost`` is transport-agnostic and asyncio-native. Whoever wires it to devices (an MQTT
endpoint whose PUBACK awaits :meth:`EdgeHost.apply`), to the core (a replicator that
sends :meth:`EdgeHost.pending` and calls :meth:`EdgeHost.ack_replicated`) and to other
hosts (migration RPCs calling the methods :class:`twinedge.edge.migrate.MigrationPeer`
lists) only calls these methods.

**One writer, group commit.** Every mutation (a report, desired state, a tick, a fence, an
adoption, a release) is queued to one writer task. The writer takes everything queued,
applies it in order on copies of the twins it touches, commits the whole batch to the
log in one SQLite transaction (in a worker thread, so the event loop keeps accepting),
and only then installs the new states and answers the callers: ``await host.apply(...)``
returns the new revision once it is durable, which is what a device's PUBACK may promise.
A commit that fails fails its whole batch and changes nothing in memory.

**Control operations first.** A migration's fence and adoption are on its downtime, a
device report is not: the writer takes every queued control operation (``fence``,
``adopt``) into its next batch, ahead of the reports queued before them, and commits
that batch alone, in the event loop (see :data:`CONTROL_INLINE_MAX_RECORDS`). A fence so
waits for the commit in progress at most, never for the reports queued behind it. This
keeps every promise (see ``_write_loop``): a report queued before the fence and not yet
in a batch was never acknowledged, and is refused after the fence (the device is
redirected and sends it again, to the new owner); a report in the batch being committed
commits before the fence; each twin's commits stay in revision order.

**Ownership and fencing.** Each twin has an epoch. The host serves only the twins it
``owned``; a migration *fences* a twin (a durable record "given to host B at epoch e+1",
in the writer's order: every update committed before the fence is in the state it
exports, every update not committed yet is refused) and the target *adopts* it at e+1. A
refused update raises :class:`~twinedge.edge.errors.NotOwnerError` naming the new owner,
so the device edge can redirect the device; a twin being copied here raises
:class:`~twinedge.edge.errors.TwinNotReadyError` until it is adopted.

**Replication outbox.** Committed records, in ``seq`` order, are the outbox:
:meth:`EdgeHost.pending` reads them after the watermark, :meth:`EdgeHost.ack_replicated`
moves the watermark (cumulative, idempotent) and measures the replication lag (ack time
minus commit time, on the host's injected clock). The watermark reaches the log with the
next commit (or :meth:`EdgeHost.flush`): after a crash some records may be sent again,
which the core ignores (it applies ``(twin, epoch, revision)`` idempotently, see
:class:`twinedge.edge.replica.ReplicaApplier`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from twinedge.edge import phases
from twinedge.edge.behaviour import TwinBehaviour, TwinView, resolve_behaviour
from twinedge.edge.document import (
    MAX_TWIN_BYTES,
    Patch,
    check_patch,
    check_report,
    decode,
    encode,
    new_document,
    patch_changes,
)
from twinedge.edge.errors import (
    BehaviourError,
    EdgeError,
    EdgeLogError,
    EpochError,
    HostClosedError,
    InvalidReportError,
    MigrationError,
    NotOwnerError,
    RevisionError,
    TwinNotReadyError,
    UnknownTwinError,
)
from twinedge.edge.log import (
    EdgeLog,
    LogRecord,
    Ownership,
    RecordKind,
    Synchronous,
    TwinStatus,
)
from twinedge.jsonmerge import merge_patch

__all__ = [
    "ChangeSet",
    "EdgeHost",
    "FenceResult",
    "ReplicationLag",
    "TickResult",
    "TwinChange",
    "TwinSnapshot",
]

Clock = Callable[[], float]

#: Changes kept per exported twin for a migration's catch-up; a migration whose
#: coordinator vanished stops costing memory beyond this (its next catch-up asks for a
#: new snapshot).
MAX_TAP_CHANGES = 10_000

#: Committed records kept in memory for the replicator (older ones are read from the log).
MAX_OUTBOX_RECORDS = 20_000

#: Batches of at most this many records are committed in the event loop (see
#: ``EdgeHost(inline_max_records=...)``).
INLINE_MAX_RECORDS = 8

#: A batch of control operations (fences, adoptions: see "Control operations first" in
#: :class:`EdgeHost`) of at most this many records is committed in the event loop
#: whatever ``inline_max_records`` says: the migration waiting for it is the one caller
#: that matters then, and a hand-off to a thread and back would only add to its downtime.
CONTROL_INLINE_MAX_RECORDS = 64

#: The hooks whose patches need no :func:`check_patch` (see ``EdgeHost._hook``).
_BUILT_IN_HOOKS: dict[str, Any] = {
    "on_report": TwinBehaviour.on_report,
    "on_desired": TwinBehaviour.on_desired,
}


# ---------------------------------------------------------------------------- messages
# What migrations move between hosts: plain values (str, int, bytes), so a transport can
# carry them as they are.


@dataclass(frozen=True, slots=True)
class TwinSnapshot:
    """A twin's committed state, as a source exports it.

    Attributes:
        twin_id: the twin.
        source: the host that exported it.
        epoch: the source's epoch for the twin.
        revision: the revision of ``document``.
        document: UTF-8 JSON of the document.
        behaviour: the behaviour spec; ``behaviour_params``: its JSON parameters.
    """

    twin_id: str
    source: str
    epoch: int
    revision: int
    document: bytes
    behaviour: str = "default"
    behaviour_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes a transport carries (document, ids and behaviour, roughly)."""
        return len(self.document) + len(self.twin_id) + len(self.behaviour) + 32


@dataclass(frozen=True, slots=True)
class TwinChange:
    """One committed change: ``patch`` (UTF-8 JSON merge patch) makes ``revision``."""

    revision: int
    epoch: int
    patch: bytes


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """The changes of one twin after ``after_revision``, in revision order.

    Attributes:
        twin_id: the twin.
        after_revision: the revision the changes start from.
        changes: consecutive changes ``after_revision + 1 ...``.
    """

    twin_id: str
    after_revision: int
    changes: tuple[TwinChange, ...] = ()

    @property
    def revision(self) -> int:
        """The revision after the last change."""
        return self.changes[-1].revision if self.changes else self.after_revision

    @property
    def nbytes(self) -> int:
        return sum(len(c.patch) + 16 for c in self.changes) + len(self.twin_id) + 16

    def __len__(self) -> int:
        return len(self.changes)


@dataclass(frozen=True, slots=True)
class FenceResult:
    """A durable fence: the source will never commit for the twin again.

    Attributes:
        twin_id: the twin.
        source: the fenced host.
        epoch: the new epoch (the new owner's).
        owner: the new owner.
        revision: the source's final revision of the twin.
    """

    twin_id: str
    source: str
    epoch: int
    owner: str
    revision: int


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one :meth:`EdgeHost.tick` did: twins changed, and twins whose hook failed
    (``twin_id -> message``; the other twins' changes are committed regardless)."""

    changed: int
    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplicationLag:
    """Replication lag on the host's clock.

    Attributes:
        acked: records acknowledged since the host opened.
        mean_s, max_s, last_s: commit-to-ack lag of those records.
        pending: committed records not acknowledged yet.
        oldest_pending_s: age of the oldest of them (0 when none).
    """

    acked: int
    mean_s: float
    max_s: float
    last_s: float
    pending: int
    oldest_pending_s: float


# ---------------------------------------------------------------------------- internals


@dataclass(slots=True)
class _Twin:
    own: Ownership
    document: dict[str, Any] | None
    revision: int
    last_seq: int
    behaviour: TwinBehaviour | None = None
    size_bytes: int = -1  # an upper bound of len(encode(document)); -1: unknown


@dataclass(slots=True)
class _Staged:
    snapshot: TwinSnapshot
    document: dict[str, Any]
    revision: int


class _Batch:
    """Tentative states of the twins one batch touches, and what it will commit."""

    __slots__ = ("after", "flush", "host", "now_s", "ownership", "records", "twins")

    def __init__(self, host: EdgeHost, now_s: float):
        self.host = host
        self.now_s = now_s
        self.twins: dict[str, _Twin] = {}
        self.records: list[LogRecord] = []
        self.ownership: dict[str, Ownership] = {}
        self.after: list[Callable[[], None]] = []
        self.flush = False

    def get(self, twin_id: str) -> _Twin | None:
        t = self.twins.get(twin_id)
        return t if t is not None else self.host._twins.get(twin_id)

    def edit(self, t: _Twin) -> _Twin:
        """A copy of ``t`` this batch may change (the same copy for later ops)."""
        mine = self.twins.get(t.own.twin_id)
        if mine is None:
            mine = self.twins[t.own.twin_id] = replace(t)
        return mine

    def record(self, t: _Twin, kind: RecordKind, data: bytes) -> None:
        self.records.append(
            LogRecord(0, t.own.twin_id, t.own.epoch, t.revision, kind, data, self.now_s)
        )

    def own(self, t: _Twin, own: Ownership) -> None:
        t.own = own
        self.ownership[own.twin_id] = own


@dataclass(slots=True)
class _Op:
    prepare: Callable[[_Batch], Any] | None = None
    run: Callable[[], Coroutine[Any, Any, Any]] | None = None  # exclusive: runs alone
    control: bool = False  # a fence or an adoption: ahead of the queued reports


def _resolve(fut: asyncio.Future[Any], value: Any, ok: bool) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class EdgeHost:
    """The twins of one edge host. Use :meth:`open`; ``await close()`` when done.

    Parameters:
        log: the host's open log (the host recovers its twins from it).
        clock: seconds, for record times, hooks' ``now_s`` and replication lag
            (injectable; default ``time.time``).
        max_batch: most operations per commit.
        commit_in_thread: commit in a worker thread (default) or inline in the event
            loop (deterministic interleavings, for tests).
        inline_max_records: with ``commit_in_thread``, a batch of at most this many
            records is still committed inline: handing a small commit to a thread and
            back costs more CPU and latency than the event loop waiting for it (0: every
            commit in the thread).

    Raises:
        EdgeLogError: the log does not add up (see :meth:`EdgeLog.recover`).

    Examples:
        >>> import asyncio, tempfile, pathlib
        >>> async def demo():
        ...     path = pathlib.Path(tempfile.mkdtemp()) / "edge-1.sqlite"
        ...     async with EdgeHost.open(path, "edge-1") as host:
        ...         await host.place("fleet:car-7")
        ...         return await host.apply("fleet:car-7", {"battery": {"level": 71}})
        >>> asyncio.run(demo())
        1
    """

    def __init__(
        self,
        log: EdgeLog,
        *,
        clock: Clock = time.time,
        max_batch: int = 4096,
        commit_in_thread: bool = True,
        inline_max_records: int = INLINE_MAX_RECORDS,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        rec = log.recover()
        self._log = log
        self.host_id: str = log.host_id
        self._clock = clock
        self._max_batch = max_batch
        self._in_thread = commit_in_thread
        self._inline_max = inline_max_records
        self._twins: dict[str, _Twin] = {
            tid: _Twin(r.ownership, r.document, r.revision, r.last_seq)
            for tid, r in rec.twins.items()
        }
        self._snap_seq: dict[str, int] = {}  # twin -> seq of its last snapshot (compaction)
        self._trimmed: dict[str, int] = {}  # twin -> its records are deleted up to this seq
        self._staged: dict[str, _Staged] = {}
        self._expected: dict[str, str] = {}  # twin -> the source it is coming from
        self._taps: dict[str, list[TwinChange]] = {}
        self._behaviours: dict[tuple[str, str], TwinBehaviour] = {}
        self._replicated = rec.replicated_seq
        self._installed = rec.last_seq  # records up to here are committed and answered for
        self._unacked: deque[tuple[int, float]] = deque(rec.unreplicated)
        # the outbox's newest records, as committed (consecutive seqs up to _installed), so
        # the replicator reads them from memory rather than back from the log
        self._outbox: deque[LogRecord] = deque()
        self._lag_n, self._lag_sum, self._lag_max, self._lag_last = 0, 0.0, 0.0, 0.0
        self._queue: deque[tuple[_Op, asyncio.Future[Any]]] = deque()
        self._control: deque[tuple[_Op, asyncio.Future[Any]]] = deque()  # fences, adoptions
        self._inflight: list[asyncio.Future[Any]] = []
        self._wake = asyncio.Event()
        self._committed = asyncio.Event()  # set by every commit that adds records
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        """Transactions committed since open (group-commit effectiveness: records / commits)."""
        self.records_committed = 0
        self.batches = 0
        """Batches the writer ran since open (a batch that changed nothing commits nothing)."""
        self.control_batches = 0
        """Of them, the batches of control operations taken ahead of the queued reports."""

    @classmethod
    def open(
        cls,
        path: str | Path,
        host_id: str | None = None,
        *,
        clock: Clock = time.time,
        max_batch: int = 4096,
        commit_in_thread: bool = True,
        inline_max_records: int = INLINE_MAX_RECORDS,
        check: bool = True,
        synchronous: Synchronous = "FULL",
    ) -> EdgeHost:
        """Open (or create, given ``host_id``) the host whose log is ``path`` and recover
        its twins: owned ones are served again, fenced ones stay fenced. ``check`` and
        ``synchronous`` are :meth:`EdgeLog.open`'s (default: acknowledged = survives
        power loss).

        Raises:
            EdgeLogError: see :meth:`EdgeLog.open` and :meth:`EdgeLog.recover`.
        """
        log = EdgeLog.open(path, host_id, check=check, synchronous=synchronous)
        try:
            return cls(
                log,
                clock=clock,
                max_batch=max_batch,
                commit_in_thread=commit_in_thread,
                inline_max_records=inline_max_records,
            )
        except BaseException:
            log.close()
            raise

    async def __aenter__(self) -> EdgeHost:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        owned = sum(t.own.status is TwinStatus.OWNED for t in self._twins.values())
        return f"EdgeHost({self.host_id!r}, owned={owned}, last_seq={self._installed})"

    @property
    def log(self) -> EdgeLog:
        return self._log

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Commit everything queued (and the replication watermark), then close the log.
        Later calls raise :class:`HostClosedError`. Closing twice is harmless."""
        if self._closed:
            return
        with contextlib.suppress(EdgeError):
            await self.flush()
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._fail_all()
        self._log.close()

    def kill(self) -> None:
        """Stop at once, as SIGKILL would: nothing queued is committed, every waiting
        caller gets :class:`HostClosedError` (not acknowledged), the log is closed as it
        is on disk. A commit already in progress in the worker thread finishes or not as
        SQLite decides (this call waits for it). Reopen with :meth:`open`."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
        self._fail_all()
        self._log.close()

    def _check_open(self) -> None:
        if self._closed:
            raise HostClosedError(f"host {self.host_id!r} is closed; send to the twin's owner")

    def _fail_all(self) -> None:
        err = HostClosedError(f"host {self.host_id!r} closed before acknowledging; resend")
        for fut in self._inflight:
            _resolve(fut, err, False)
        for queue in (self._control, self._queue):
            while queue:
                _resolve(queue.popleft()[1], err, False)

    # ------------------------------------------------------------------ the writer
    async def _submit(self, op: _Op) -> Any:
        self._check_open()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if op.control and not self._inflight and not self._control:
            # The writer is between batches (waiting, or woken and not run yet): the
            # control operation is its next batch, run here at once rather than after two
            # passes of the event loop (one to wake the writer, one to wake this task).
            # `_run_now` does not await: no other batch can start or be in flight.
            self.control_batches += 1
            self._run_now(op, fut)
            return fut.result()
        (self._control if op.control else self._queue).append((op, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        self._wake.set()
        return await fut

    async def _write_loop(self) -> None:
        # Control operations (fences, adoptions) are taken ahead of the queued reports, in
        # a batch of their own. Why that keeps every promise:
        # - only operations nobody has been answered for are reordered (queued, in no
        #   batch yet), so no acknowledged report moves; and operations in flight together
        #   may take effect in either order (a caller learns the order only from answers).
        # - a report for the fenced twin queued before the fence is prepared after it and
        #   refused (NotOwnerError naming the new owner): it was never acknowledged, the
        #   device edge redirects the device, which sends it again to the new owner.
        # - a report already in the batch being committed (or in its worker thread) is
        #   never overtaken: the writer runs one batch at a time, so the fence's batch
        #   starts after that commit finished, and the report is in the state the fence
        #   exports, or, if that commit failed, it was refused (not acknowledged).
        # - per twin, commits stay in revision order: revisions are numbered in the
        #   writer's prepare order on the committed state, one batch at a time; reports
        #   keep their order among themselves, and control operations theirs.
        # - an exclusive operation (compaction) in progress is waited for, as a batch is.
        # `_submit` runs a control operation that finds the writer between batches as the
        # next batch at once, in the caller's task (`_run_now`): the same order as here.
        batch: list[tuple[_Op, asyncio.Future[Any]]]
        try:
            while True:
                if self._control:
                    batch = []
                    while self._control and len(batch) < self._max_batch:
                        batch.append(self._control.popleft())
                    self._inflight = [f for _, f in batch]
                    self.control_batches += 1
                    await self._run_batch(batch, control=True)
                    self._inflight = []
                    continue
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                op, fut = self._queue[0]
                if op.run is not None:
                    self._queue.popleft()
                    self._inflight = [fut]
                    try:
                        _resolve(fut, await op.run(), True)
                    except Exception as e:
                        _resolve(fut, e, False)
                    self._inflight = []
                    continue
                batch = []
                while (
                    self._queue and self._queue[0][0].run is None and len(batch) < self._max_batch
                ):
                    batch.append(self._queue.popleft())
                self._inflight = [f for _, f in batch]
                await self._run_batch(batch)
                self._inflight = []
        except asyncio.CancelledError:
            self._fail_all()
            raise

    async def _run_batch(
        self, batch: list[tuple[_Op, asyncio.Future[Any]]], *, control: bool = False
    ) -> None:
        b, results = self._prepare(batch)
        inline_max = CONTROL_INLINE_MAX_RECORDS if control else self._inline_max
        if not (self._in_thread and len(b.records) > inline_max):
            self._commit_here(b, results)
            return
        try:
            committed = await asyncio.to_thread(
                self._log.append, b.records, b.ownership.values(), replicated_seq=self._replicated
            )
        except EdgeLogError as e:
            for fut, _value, _ok in results:
                _resolve(fut, e, False)
            return
        self._install_batch(b, committed, results)

    def _run_now(self, op: _Op, fut: asyncio.Future[Any]) -> None:
        """Run one control operation as a batch of its own, committed here and now, in
        the caller's task (see :meth:`_submit`). Nothing in it awaits, so no other task
        runs until it is installed and answered: it is the writer's next batch."""
        self._commit_here(*self._prepare([(op, fut)]))

    def _commit_here(self, b: _Batch, results: list[tuple[asyncio.Future[Any], Any, bool]]) -> None:
        """Commit the prepared batch in this thread (the event loop's), then install it."""
        committed: list[LogRecord] = []
        if b.records or b.ownership or b.flush:
            try:
                committed = self._log.append(
                    b.records, b.ownership.values(), replicated_seq=self._replicated
                )
            except EdgeLogError as e:
                for fut, _value, _ok in results:
                    _resolve(fut, e, False)
                return
        self._install_batch(b, committed, results)

    def _prepare(
        self, batch: list[tuple[_Op, asyncio.Future[Any]]]
    ) -> tuple[_Batch, list[tuple[asyncio.Future[Any], Any, bool]]]:
        self.batches += 1
        b = _Batch(self, self._clock())
        results: list[tuple[asyncio.Future[Any], Any, bool]] = []
        for op, fut in batch:
            assert op.prepare is not None
            try:
                results.append((fut, op.prepare(b), True))
            except Exception as e:  # the op's own failure; the others go on
                results.append((fut, e, False))
        return b, results

    def _install_batch(
        self,
        b: _Batch,
        committed: list[LogRecord],
        results: list[tuple[asyncio.Future[Any], Any, bool]],
    ) -> None:
        """After the batch's commit (``committed``: its records with their seqs; nothing
        to commit counts as committed): install the new states and answer the callers."""
        if b.records or b.ownership or b.flush:
            self.commits += 1
            self.records_committed += len(committed)
            if committed:
                self._installed = committed[-1].seq
                self._committed.set()
                outbox = self._outbox
                outbox.extend(committed)
                while len(outbox) > MAX_OUTBOX_RECORDS:
                    outbox.popleft()
            for r in committed:
                b.twins[r.twin_id].last_seq = r.seq
                self._unacked.append((r.seq, r.time_s))
                tap = self._taps.get(r.twin_id)
                if tap is not None and r.kind == "change":
                    if len(tap) >= MAX_TAP_CHANGES:
                        del self._taps[r.twin_id]
                    else:
                        tap.append(TwinChange(r.revision, r.epoch, r.data))
        self._twins.update(b.twins)
        for fn in b.after:
            fn()
        for fut, value, ok in results:
            _resolve(fut, value, ok)

    # ------------------------------------------------------------------ reading
    def status(self, twin_id: str) -> Ownership:
        """What this host knows of the twin (``ABSENT`` / ``STAGED`` when nothing durable).

        Raises:
            HostClosedError: the host is closed.
        """
        self._check_open()
        t = self._twins.get(twin_id)
        if t is not None:
            return t.own
        if twin_id in self._expected and twin_id not in self._staged:
            return Ownership(twin_id, TwinStatus.STAGED, 0, self._expected[twin_id])
        st = self._staged.get(twin_id)
        if st is not None:  # staged: the source is the owner for now
            s = st.snapshot
            return Ownership(
                twin_id,
                TwinStatus.STAGED,
                0,
                s.source,
                s.epoch,
                s.behaviour,
                dict(s.behaviour_params),
            )
        return Ownership(twin_id, TwinStatus.ABSENT)

    async def ownership(self, twin_id: str) -> Ownership:
        """:meth:`status`, as a migration peer asks it."""
        return self.status(twin_id)

    def twin_ids(self, status: TwinStatus = TwinStatus.OWNED) -> list[str]:
        """The twins in ``status`` (default: the ones served here), sorted."""
        return sorted(tid for tid, t in self._twins.items() if t.own.status is status)

    def twin(self, twin_id: str) -> TwinView:
        """The committed state of a twin held here (owned or fenced). The document is
        shared: do not mutate it.

        Raises:
            UnknownTwinError, NotOwnerError (moved away), TwinNotReadyError (arriving),
            HostClosedError.
        """
        self._check_open()
        t = self._twins.get(twin_id)
        if t is None or t.document is None:
            self._refuse(t, twin_id)
        assert t is not None and t.document is not None
        return TwinView(twin_id, t.own.epoch, t.revision, t.document)

    # ------------------------------------------------------------------ serving
    def _refuse(self, t: _Twin | None, twin_id: str) -> None:
        if twin_id in self._staged or twin_id in self._expected:  # arriving (maybe again)
            raise TwinNotReadyError(twin_id, self.host_id)
        if t is None:
            raise UnknownTwinError(twin_id, self.host_id)
        if t.own.status is not TwinStatus.OWNED:
            raise NotOwnerError(twin_id, self.host_id, t.own.owner, t.own.owner_epoch)

    def _serving(self, t: _Twin | None, twin_id: str, epoch: int | None) -> _Twin:
        if t is None or t.own.status is not TwinStatus.OWNED:
            self._refuse(t, twin_id)
        assert t is not None
        if epoch is not None and epoch != t.own.epoch:
            what = (
                "the twin has moved on since that epoch"
                if epoch < t.own.epoch
                else "this host does not know that epoch yet"
            )
            raise EpochError(twin_id, epoch, t.own.epoch, what)
        return t

    def _behaviour(self, t: _Twin) -> TwinBehaviour:
        if t.behaviour is None:
            t.behaviour = self._resolve(t.own.behaviour, t.own.behaviour_params)
        return t.behaviour

    def _resolve(self, spec: str, params: Mapping[str, Any]) -> TwinBehaviour:
        key = (spec, json.dumps(params, sort_keys=True))
        b = self._behaviours.get(key)
        if b is None:
            b = self._behaviours[key] = resolve_behaviour(spec, **params)
        return b

    def _hook(self, t: _Twin, name: str, *args: Any) -> Patch | None:
        beh = self._behaviour(t)
        assert t.document is not None
        view = TwinView(t.own.twin_id, t.own.epoch, t.revision, t.document)
        hook = getattr(beh, name)
        try:
            patch = hook(view, *args)
        except EdgeError:
            raise  # a behaviour may refuse on purpose (InvalidReportError, ...)
        except Exception as e:
            raise BehaviourError(
                f"behaviour {t.own.behaviour!r} of twin {t.own.twin_id!r}: {name} raised "
                f"{type(e).__name__}: {e}"
            ) from e
        if patch is None:
            return None
        if getattr(hook, "__func__", None) is _BUILT_IN_HOOKS.get(name):
            # the default hooks rebuild a report (desired state) that check_report passed as
            # a patch, which check_patch then passes too: feature ids by the same pattern,
            # values already checked, 2 levels added to at most MAX_DEPTH - 3
            return patch
        try:
            return check_patch(patch, f"the patch {name} returned")
        except InvalidReportError as e:
            raise BehaviourError(
                f"behaviour {t.own.behaviour!r} of twin {t.own.twin_id!r}: {e}"
            ) from e

    def _change(self, b: _Batch, t: _Twin, patch: Patch | None) -> int:
        """Apply ``patch`` to the batch's copy of ``t``; returns the twin's revision."""
        if patch is None:
            return t.revision
        assert t.document is not None
        if not patch_changes(t.document, patch):
            return t.revision
        new = merge_patch(t.document, patch)
        data = encode(patch)
        # a merge patch adds at most its own text to the document: measure only near the limit
        size = t.size_bytes + len(data) + 16 if t.size_bytes >= 0 else MAX_TWIN_BYTES + 1
        if size > MAX_TWIN_BYTES:
            size = len(encode(new))
            if size > MAX_TWIN_BYTES:
                raise InvalidReportError(
                    f"twin {t.own.twin_id} would be larger than {MAX_TWIN_BYTES // 1000} kB"
                )
        mine = b.edit(t)
        mine.document = new
        mine.size_bytes = size
        mine.revision += 1
        b.record(mine, "change", data)
        return mine.revision

    async def apply(
        self, twin_id: str, report: Any, *, epoch: int | None = None, values_checked: bool = False
    ) -> int:
        """Apply a device report ``{feature_id: merge patch of its properties}`` through
        the twin's behaviour (``on_report``); return the twin's revision once durable.

        Parameters:
            twin_id: the twin.
            report: the decoded report.
            epoch: the epoch the sender believes current (checked when given).
            values_checked: the report was read by :func:`twinedge.textinput.loads`
                under the runtime's limits (see :func:`~twinedge.edge.document.check_report`).

        Returns:
            The new revision (the current one when the report changed nothing).

        Raises:
            InvalidReportError: a malformed report, or a twin that would grow too large.
            UnknownTwinError: the host never had the twin.
            NotOwnerError: the twin was fenced or moved away (``owner`` says where).
            TwinNotReadyError: the twin is arriving here; retry.
            EpochError: ``epoch`` is not the twin's epoch here.
            BehaviourError: the behaviour failed.
            HostClosedError: the host closed first; not acknowledged.
            EdgeLogError: the commit failed; not acknowledged.

        Examples:
            See :class:`EdgeHost`.
        """
        self._check_open()
        check_report(report, values_checked=values_checked)
        self._serving(self._twins.get(twin_id), twin_id, epoch)  # fail fast

        def prepare(b: _Batch) -> int:
            t = self._serving(b.get(twin_id), twin_id, epoch)
            return self._change(b, t, self._hook(t, "on_report", report, b.now_s))

        return int(await self._submit(_Op(prepare)))

    async def set_desired(self, twin_id: str, desired: Any, *, epoch: int | None = None) -> int:
        """Set desired properties ``{feature_id: merge patch}`` through ``on_desired``;
        return the revision once durable. Raises as :meth:`apply`."""
        self._check_open()
        check_report(desired, "desired state")
        self._serving(self._twins.get(twin_id), twin_id, epoch)

        def prepare(b: _Batch) -> int:
            t = self._serving(b.get(twin_id), twin_id, epoch)
            return self._change(b, t, self._hook(t, "on_desired", desired, b.now_s))

        return int(await self._submit(_Op(prepare)))

    async def write(
        self, twin_id: str, patch: Any, *, if_revision: int | None = None, epoch: int | None = None
    ) -> int:
        """Apply an application's write, forwarded by the core: a JSON merge patch of the
        twin's document (the core has checked access and validated the result). No
        behaviour hook runs: it is the twin's owner writing, not its device. Returns the
        revision once durable.

        Parameters:
            twin_id: the twin.
            patch: merge patch of the document; service fields (``thingId``, ``_*``)
                cannot be written.
            if_revision: apply only if the twin is at this revision here.
            epoch: the epoch the sender believes current (checked when given).

        Raises:
            RevisionError: ``if_revision`` is not the twin's revision (nothing written).
            InvalidReportError: not an object, a service field, or a twin too large.
            UnknownTwinError, NotOwnerError, TwinNotReadyError, EpochError,
            HostClosedError, EdgeLogError: as :meth:`apply`.
        """
        self._check_open()
        if not isinstance(patch, dict):
            raise InvalidReportError(f"a write must be a JSON object, got {type(patch).__name__}")
        for key in patch:
            if not isinstance(key, str) or key.startswith("_") or key == "thingId":
                raise InvalidReportError(
                    f"{key!r} is kept by the service and cannot be written", f"/{key}"
                )
        self._serving(self._twins.get(twin_id), twin_id, epoch)

        def prepare(b: _Batch) -> int:
            t = self._serving(b.get(twin_id), twin_id, epoch)
            if if_revision is not None and t.revision != if_revision:
                raise RevisionError(twin_id, if_revision, t.revision)
            return self._change(b, t, patch)

        return int(await self._submit(_Op(prepare)))

    async def tick(self) -> TickResult:
        """Run every owned twin's ``on_tick`` once and commit the changes in one batch.

        Returns:
            How many twins changed and which hooks failed (their twins are unchanged).
        """

        def prepare(b: _Batch) -> TickResult:
            changed, failed = 0, {}
            for tid in list(self._twins):
                t = b.get(tid)
                if t is None or t.own.status is not TwinStatus.OWNED:
                    continue
                try:
                    if self._change(b, t, self._hook(t, "on_tick", b.now_s)) != t.revision:
                        changed += 1
                except EdgeError as e:
                    failed[tid] = str(e)
            return TickResult(changed, failed)

        result: TickResult = await self._submit(_Op(prepare))
        return result

    async def flush(self) -> None:
        """Commit now, with the replication watermark (returns once durable)."""

        def prepare(b: _Batch) -> None:
            b.flush = True

        await self._submit(_Op(prepare))

    # ------------------------------------------------------------------ placement
    def _install(
        self,
        b: _Batch,
        twin_id: str,
        document: dict[str, Any],
        epoch: int,
        revision: int,
        behaviour: str,
        params: Mapping[str, Any],
    ) -> int:
        old = b.get(twin_id)
        if old is not None:
            if old.own.status is not TwinStatus.MOVED:
                raise MigrationError(
                    f"twin {twin_id!r} is already {old.own.status} on host {self.host_id!r}"
                )
            if epoch <= old.own.latest_epoch:
                raise EpochError(
                    twin_id, epoch, old.own.latest_epoch, "adopting needs a higher epoch"
                )
        own = Ownership(twin_id, TwinStatus.OWNED, epoch, None, 0, behaviour, dict(params))
        data = encode(document)
        t = _Twin(own, document, revision, 0, self._resolve(behaviour, params), len(data))
        b.twins[twin_id] = t
        b.own(t, own)
        b.record(t, "snapshot", data)
        return revision

    async def place(
        self,
        twin_id: str,
        document: Mapping[str, Any] | None = None,
        *,
        epoch: int = 1,
        revision: int = 0,
        behaviour: str = "default",
        behaviour_params: Mapping[str, Any] | None = None,
    ) -> int:
        """Start serving a twin here (its first placement, or a copy the core holds).

        Parameters:
            twin_id: a thing id ``namespace:name``.
            document: the twin's document (service fields are dropped); default empty.
            epoch: its epoch (must be above any this host knew for it).
            revision: its current revision (the core's), changes continue from it.
            behaviour: behaviour spec; ``behaviour_params``: its JSON parameters.

        Returns:
            ``revision``, once durable.

        Raises:
            InvalidReportError: a bad id or document. BehaviourError: unknown behaviour.
            MigrationError: the twin is already here. EpochError: a stale epoch.
        """
        doc = new_document(twin_id, document)
        params = dict(behaviour_params or {})
        encode(params)
        self._resolve(behaviour, params)
        if epoch < 1 or revision < 0:
            raise EpochError(twin_id, epoch, 0, "epochs start at 1 and revisions at 0")
        return int(
            await self._submit(
                _Op(lambda b: self._install(b, twin_id, doc, epoch, revision, behaviour, params))
            )
        )

    # ------------------------------------------------------------------ migration: source
    async def export_snapshot(self, twin_id: str) -> TwinSnapshot:
        """The twin's committed state; from now on its committed changes are also kept
        for :meth:`export_changes` (until :meth:`release` or :meth:`abort_export`). The
        host keeps serving the twin.

        Raises:
            UnknownTwinError, NotOwnerError (moved, released), TwinNotReadyError,
            HostClosedError.
        """
        self._check_open()
        t = self._twins.get(twin_id)
        if t is None or t.document is None:
            self._refuse(t, twin_id)
        assert t is not None and t.document is not None
        self._taps[twin_id] = []
        return TwinSnapshot(
            twin_id,
            self.host_id,
            t.own.epoch,
            t.revision,
            encode(t.document),
            t.own.behaviour,
            dict(t.own.behaviour_params),
        )

    async def export_changes(self, twin_id: str, after_revision: int) -> ChangeSet:
        """The twin's committed changes after ``after_revision`` (which must be at or
        after the snapshot exported).

        Raises:
            MigrationError: no snapshot was exported, or ``after_revision`` is older than
                the changes kept (export a new snapshot).
            UnknownTwinError, NotOwnerError, HostClosedError.
        """
        self._check_open()
        t = self._twins.get(twin_id)
        if t is None or t.document is None:
            self._refuse(t, twin_id)
        assert t is not None
        tap = self._taps.get(twin_id)
        if after_revision == t.revision:
            if tap is not None:
                tap.clear()
            return ChangeSet(twin_id, after_revision)
        if tap is None:
            raise MigrationError(
                f"host {self.host_id!r} keeps no changes of twin {twin_id!r} (no snapshot "
                "exported since it opened); export a snapshot first"
            )
        if tap and tap[0].revision <= after_revision:  # the target has these: drop them
            del tap[: max(0, min(len(tap), after_revision - tap[0].revision + 1))]
        if after_revision > t.revision or (tap and tap[0].revision != after_revision + 1):
            raise MigrationError(
                f"twin {twin_id!r} on host {self.host_id!r} is at revision {t.revision}; "
                f"changes after revision {after_revision} are not kept; export a snapshot again"
            )
        return ChangeSet(twin_id, after_revision, tuple(tap))

    async def abort_export(self, twin_id: str) -> None:
        """Stop keeping the twin's changes for a migration that will not happen."""
        self._taps.pop(twin_id, None)

    async def fence(self, twin_id: str, epoch: int, owner: str) -> FenceResult:
        """Fence the twin: durably give it to ``owner`` at ``epoch``. Every update
        committed before (or in the commit in progress) is in the state the fence leaves;
        every update not committed yet, even one queued before the fence (it goes ahead
        of them, see "Control operations first" in :class:`EdgeHost`), is refused with
        :class:`NotOwnerError`: none of them was acknowledged. Re-fencing a fenced twin
        with a higher epoch (to another owner) is allowed.

        Raises:
            EpochError: ``epoch`` is not above every epoch this host knows for the twin.
            UnknownTwinError, NotOwnerError (moved already), EdgeLogError.
        """

        def prepare(b: _Batch) -> FenceResult:
            t = b.get(twin_id)
            if t is None or t.own.status is TwinStatus.MOVED:
                self._refuse(t, twin_id)
            assert t is not None
            if epoch <= t.own.latest_epoch:
                raise EpochError(twin_id, epoch, t.own.latest_epoch, "a fence must raise the epoch")
            phases.mark("source.fence-batch", twin_id, queued=len(self._queue))
            mine = b.edit(t)
            b.own(mine, replace(t.own, status=TwinStatus.FENCED, owner=owner, owner_epoch=epoch))
            return FenceResult(twin_id, self.host_id, epoch, owner, mine.revision)

        result: FenceResult = await self._submit(_Op(prepare, control=True))
        return result

    async def fence_and_export(
        self, twin_id: str, epoch: int, owner: str, after_revision: int
    ) -> tuple[FenceResult, ChangeSet]:
        """:meth:`fence`, then :meth:`export_changes` after ``after_revision``: the last
        changes of a pre-copy come back with the fence (one round trip between processes).

        Raises:
            As :meth:`fence` and :meth:`export_changes`.
        """
        fence = await self.fence(twin_id, epoch, owner)
        return fence, await self.export_changes(twin_id, after_revision)

    async def release(self, twin_id: str) -> None:
        """After the new owner adopted the twin: drop its state here (durably), keep only
        the redirect. Releasing twice is harmless.

        Raises:
            MigrationError: the twin is not fenced (it is still served here).
            UnknownTwinError.
        """

        def prepare(b: _Batch) -> None:
            t = b.get(twin_id)
            if t is None:
                self._refuse(t, twin_id)
            assert t is not None
            if t.own.status is TwinStatus.MOVED:
                return
            if t.own.status is not TwinStatus.FENCED:
                raise MigrationError(
                    f"twin {twin_id!r} is {t.own.status} here; fence it before releasing"
                )
            mine = b.edit(t)
            b.own(mine, replace(t.own, status=TwinStatus.MOVED))
            mine.document, mine.behaviour = None, None
            b.after.append(lambda: self._forget(twin_id))

        await self._submit(_Op(prepare))

    async def adopt_changes(self, changes: ChangeSet, epoch: int, revision: int) -> int:
        """:meth:`stage_changes`, then :meth:`adopt` at ``revision``: the end of a
        pre-copy in one call. Returns ``revision`` once durable.

        Raises:
            As :meth:`stage_changes` and :meth:`adopt` (a staged copy that does not reach
            ``revision`` is not adopted).
        """
        await self.stage_changes(changes)
        return await self.adopt(changes.twin_id, epoch, revision)

    async def reclaim(self, twin_id: str, epoch: int) -> int:
        """Serve a fenced twin here again, under ``epoch``: the migration was interrupted
        before the host it was fenced to adopted it, and that host is gone (its log shows
        it never adopted; see :func:`~twinedge.edge.migrate.resume`). Returns the twin's
        revision once durable.

        Raises:
            MigrationError: the twin is not fenced here.
            EpochError: ``epoch`` is not above every epoch this host knows for it.
            UnknownTwinError, HostClosedError, EdgeLogError.
        """
        self._check_open()

        def prepare(b: _Batch) -> int:
            t = b.get(twin_id)
            if t is None:
                self._refuse(t, twin_id)
            assert t is not None
            if t.own.status is not TwinStatus.FENCED:
                raise MigrationError(
                    f"twin {twin_id!r} is {t.own.status} here; only a fenced twin is reclaimed"
                )
            if epoch <= t.own.latest_epoch:
                raise EpochError(
                    twin_id, epoch, t.own.latest_epoch, "reclaiming needs a higher epoch"
                )
            mine = b.edit(t)
            b.own(
                mine,
                replace(t.own, status=TwinStatus.OWNED, epoch=epoch, owner=None, owner_epoch=0),
            )
            return mine.revision

        return int(await self._submit(_Op(prepare)))

    async def retire(self, twin_id: str) -> bool:
        """The twin was deleted: stop serving it and drop its state here, durably, with no
        redirect (a report for it is refused as for a twin that moved, to no host). A
        later incarnation of the same id may be placed here again from epoch 1. Returns
        whether this host knew the twin (retiring an unknown twin is harmless).

        Raises:
            HostClosedError, EdgeLogError.
        """
        self._check_open()

        def prepare(b: _Batch) -> bool:
            t = b.get(twin_id)
            self._staged.pop(twin_id, None)
            self._expected.pop(twin_id, None)
            if t is None:
                return False
            mine = b.edit(t)
            b.own(
                mine,
                replace(t.own, status=TwinStatus.MOVED, owner=None, owner_epoch=0, epoch=0),
            )
            mine.document, mine.behaviour = None, None
            b.after.append(lambda: self._forget(twin_id))
            return True

        return bool(await self._submit(_Op(prepare)))

    def _forget(self, twin_id: str, staged: _Staged | None = None) -> None:
        """After a release (no staged copy given) or an adoption of ``staged``."""
        if staged is None:
            self._taps.pop(twin_id, None)
        elif self._staged.get(twin_id) is staged:
            del self._staged[twin_id]
            self._expected.pop(twin_id, None)

    # ------------------------------------------------------------------ migration: target
    async def expect(self, twin_id: str, source: str) -> None:
        """Announce that ``twin_id`` is coming from ``source``: until it is adopted here
        (or :meth:`discard_staged`), updates for it get :class:`TwinNotReadyError`, not
        :class:`UnknownTwinError`, so a device the fenced source redirects here waits.
        Stop-and-copy calls it before fencing (pre-copy stages a copy before).

        Raises:
            MigrationError: the twin is served or fenced here. HostClosedError.
        """
        self._check_open()
        t = self._twins.get(twin_id)
        if t is not None and t.own.status is not TwinStatus.MOVED:
            raise MigrationError(
                f"twin {twin_id!r} is {t.own.status} on host {self.host_id!r}; it cannot arrive here"
            )
        self._expected[twin_id] = source

    async def stage(self, snapshot: TwinSnapshot) -> None:
        """Receive a copy of a twin (not served yet; kept in memory only). Replaces an
        earlier copy of the same twin.

        Raises:
            MigrationError: the twin is served or fenced here.
            InvalidReportError: the document does not decode. BehaviourError: this host
                cannot run the twin's behaviour. HostClosedError.
        """
        self._check_open()
        t = self._twins.get(snapshot.twin_id)
        if t is not None and t.own.status is not TwinStatus.MOVED:
            raise MigrationError(
                f"twin {snapshot.twin_id!r} is {t.own.status} on host {self.host_id!r}; it cannot be staged"
            )
        doc = decode(snapshot.document)
        if not isinstance(doc, dict):
            raise InvalidReportError("a snapshot's document must be a JSON object")
        self._resolve(snapshot.behaviour, snapshot.behaviour_params)
        self._staged[snapshot.twin_id] = _Staged(snapshot, doc, snapshot.revision)

    async def stage_changes(self, changes: ChangeSet) -> int:
        """Apply changes to a staged copy (changes it already has are skipped); returns
        the staged revision.

        Raises:
            MigrationError: nothing staged, or the changes do not continue it.
            InvalidReportError: a patch does not decode. HostClosedError.
        """
        self._check_open()
        st = self._staged.get(changes.twin_id)
        if st is None:
            raise MigrationError(f"twin {changes.twin_id!r} is not staged on host {self.host_id!r}")
        doc, rev = st.document, st.revision
        for c in changes.changes:
            if c.revision <= rev:
                continue
            if c.revision != rev + 1:
                raise MigrationError(
                    f"twin {changes.twin_id!r}: staged at revision {rev}, got change {c.revision}"
                )
            patch = decode(c.patch)
            doc, rev = merge_patch(doc, patch), c.revision
        st.document, st.revision = doc, rev
        return rev

    async def discard_staged(self, twin_id: str) -> None:
        """Forget a staged copy or an expected arrival (a migration abandoned before its
        fence, or to be resumed elsewhere)."""
        self._staged.pop(twin_id, None)
        self._expected.pop(twin_id, None)

    async def adopt(self, twin_id: str, epoch: int, revision: int) -> int:
        """Serve the staged twin from now on, at ``epoch``: durably (a snapshot record
        and the ownership row in one transaction). Returns ``revision`` once durable.

        Parameters:
            twin_id: the staged twin.
            epoch: the fencing epoch the source was fenced with.
            revision: the source's final revision (the staged copy must have reached it).

        Raises:
            MigrationError: nothing staged, or staged at another revision.
            EpochError: ``epoch`` not above the source's epoch and every epoch known here.
        """
        st = self._staged.get(twin_id)
        if st is None:
            raise MigrationError(
                f"twin {twin_id!r} is not staged on host {self.host_id!r}; nothing to adopt"
            )
        if st.revision != revision:
            raise MigrationError(
                f"twin {twin_id!r}: the staged copy is at revision {st.revision}, the source "
                f"ended at {revision}; copy the remaining changes first"
            )
        if epoch <= st.snapshot.epoch:
            raise EpochError(
                twin_id, epoch, st.snapshot.epoch, "adopting needs an epoch above the source's"
            )
        snap = st.snapshot

        def prepare(b: _Batch) -> int:
            if self._staged.get(twin_id) is not st:
                raise MigrationError(
                    f"the staged copy of twin {twin_id!r} was replaced or discarded"
                )
            phases.mark("target.adopt-batch", twin_id, queued=len(self._queue))
            rev = self._install(
                b, twin_id, st.document, epoch, st.revision, snap.behaviour, snap.behaviour_params
            )
            b.after.append(lambda: self._forget(twin_id, st))
            return rev

        return int(await self._submit(_Op(prepare, control=True)))

    # ------------------------------------------------------------------ replication
    @property
    def replicated_seq(self) -> int:
        """The replication watermark: every record up to it is acknowledged by the core."""
        return self._replicated

    @property
    def last_seq(self) -> int:
        """The seq of the last committed record (whose callers have been answered)."""
        return self._installed

    def pending(self, after_seq: int | None = None, limit: int = 1000) -> list[LogRecord]:
        """Committed records not yet replicated, in seq order: those after ``after_seq``
        (default: the watermark), at most ``limit``. Only records whose commit the host
        has finished are listed (not one a worker thread is committing right now). The
        newest ones come from memory (the records as committed), older ones from the log.

        Raises:
            EdgeLogError: the log cannot be read. HostClosedError: the host is closed.
        """
        self._check_open()
        after = self._replicated if after_seq is None else after_seq
        outbox = self._outbox
        if outbox and outbox[0].seq <= after + 1:  # all of them in memory
            start = after + 1 - outbox[0].seq
            return list(itertools.islice(outbox, start, start + max(0, limit)))
        return self._log.read(after, limit, self._installed)

    async def wait_pending(self, timeout_s: float) -> bool:
        """Wait until some committed record is not replicated yet (at once if one is
        already), at most ``timeout_s``; return whether one is. A replicator that has
        sent everything sleeps here instead of polling the log.

        Raises:
            HostClosedError: the host is closed.
        """
        self._check_open()
        if self._installed > self._replicated:
            return True
        self._committed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._committed.wait(), timeout_s)
        return self._installed > self._replicated

    async def wait_commit(self, timeout_s: float) -> None:
        """Wait for the next commit that adds records, or for :meth:`wake_replicator`, at
        most ``timeout_s`` (a replicator lingering for more records to send at once).

        Raises:
            HostClosedError: the host is closed.
        """
        self._check_open()
        self._committed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._committed.wait(), timeout_s)

    def wake_replicator(self) -> None:
        """Wake a replicator waiting in :meth:`wait_pending` or :meth:`wait_commit` (a
        caller wants the pending records sent now)."""
        self._committed.set()

    def ack_replicated(self, seq: int) -> int:
        """The core has applied every record up to ``seq``. Cumulative and idempotent:
        acknowledging ``seq`` again, or a lower one, does nothing.

        Returns:
            How many records this call acknowledged.

        Raises:
            EdgeError: ``seq`` is above the last committed record.
        """
        self._check_open()
        if seq > self._installed:
            raise EdgeError(
                f"host {self.host_id!r}: cannot acknowledge seq {seq}, the last committed is "
                f"{self._installed}"
            )
        if seq <= self._replicated:
            return 0
        now, n = self._clock(), 0
        while self._unacked and self._unacked[0][0] <= seq:
            lag = now - self._unacked.popleft()[1]
            self._lag_n += 1
            self._lag_sum += lag
            self._lag_max = max(self._lag_max, lag)
            self._lag_last = lag
            n += 1
        self._replicated = seq
        outbox = self._outbox
        while outbox and outbox[0].seq <= seq:
            outbox.popleft()
        return n

    def replication_lag(self) -> ReplicationLag:
        """Commit-to-ack lag so far, and how far behind the outbox is now."""
        oldest = self._clock() - self._unacked[0][1] if self._unacked else 0.0
        return ReplicationLag(
            self._lag_n,
            self._lag_sum / self._lag_n if self._lag_n else 0.0,
            self._lag_max,
            self._lag_last,
            len(self._unacked),
            max(0.0, oldest),
        )

    # ------------------------------------------------------------------ compaction
    async def compact(self) -> int:
        """Snapshot every twin held here whose log grew since its last snapshot, drop the
        state of moved twins, and delete the records that made redundant (never one not
        replicated yet). Twins with a migration under way are left alone. Runs alone in
        the writer's order. Returns the number of records deleted.
        """

        async def run() -> int:
            snaps: list[LogRecord] = []
            trim: list[tuple[str, int]] = []
            drop: list[str] = []
            now, wm = self._clock(), self._replicated
            for tid, t in self._twins.items():
                if tid in self._taps:
                    continue
                done = self._trimmed.get(tid, 0)
                if t.own.status is TwinStatus.MOVED:
                    if done < min(t.last_seq, wm) or tid in self._snap_seq:
                        drop.append(tid)
                elif t.document is not None and t.last_seq > self._snap_seq.get(tid, 0):
                    data = encode(t.document)
                    snaps.append(
                        LogRecord(t.last_seq, tid, t.own.epoch, t.revision, "snapshot", data, now)
                    )
                elif min(self._snap_seq.get(tid, 0), wm) > done:
                    trim.append((tid, self._snap_seq[tid]))
            if not (snaps or trim or drop):
                return 0
            if self._in_thread:
                n = await asyncio.to_thread(self._log.compact, snaps, trim, drop, replicated_seq=wm)
            else:
                n = self._log.compact(snaps, trim, drop, replicated_seq=wm)
            for s in snaps:
                self._snap_seq[s.twin_id] = s.seq
                self._trimmed[s.twin_id] = min(s.seq, wm)
            for tid, upto in trim:
                self._trimmed[tid] = min(upto, wm)
            for tid in drop:
                self._trimmed[tid] = min(self._twins[tid].last_seq, wm)
                self._snap_seq.pop(tid, None)
            return n

        n: int = await self._submit(_Op(run=run))
        return n
