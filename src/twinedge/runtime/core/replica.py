"""The core's side of edge replication: apply the records edge hosts commit, once each.

A twin placed on an edge host (``twinedge host``) is written there; the host logs every
committed revision (:mod:`twinedge.edge.log`) and pushes the records to the core, which
keeps its copy of the twin current for searches, history, events and groups. A record is
``{"seq", "twin", "epoch", "revision", "kind", "data", "time_s"}``: ``kind`` ``"change"``
carries a JSON merge patch (RFC 7396) of the twin document ``{"thingId", "attributes",
"features"}``, ``"snapshot"`` the whole document; ``seq`` numbers the host's records.

**Position.** Per twin the core keeps its *edge position* ``(epoch, revision)``: the
record it applied last. :meth:`Replica.set_edge_position` sets it when the orchestrator
first places the twin on an edge host (``(1, core revision)``: the host's revisions
continue from the core's) and :meth:`Replica.clear_edge_position` removes it when the twin
comes back to the core; deleting the thing removes it too, so a thing created again
starts clean. Both are exclusive steps of the writer with no revision of their own (the
orchestrator's :meth:`~.writes.Writes.set_host` is the revision that records the move):
call ``set_host`` first, then ``set_edge_position`` with the revision it returned.

**Rules** (those of :class:`twinedge.edge.replica.ReplicaApplier`, decided on the writer
against the position as the batch left it; ``(E, R)`` the twin's position):

* the thing does not exist, or has no position (never placed on an edge host, or back in
  the core) -> *dropped*: the core owns it, an edge host's records no longer count;
* ``change`` at ``R + 1`` -> applied (merge patch of the content); at ``R`` or below with
  an epoch ``<= E`` -> *duplicate*; above ``R + 1`` -> a gap
  (:class:`~twinedge.errors.Conflict` with ``expected_revision``);
* ``snapshot`` above ``R`` -> applied (the content replaced); at ``R`` with a newer epoch
  -> applied (the epoch moves on); otherwise a *duplicate*. A snapshot of a newer epoch
  above ``R`` (a migrated twin's new host, before the old host's last records arrived) is
  first *held*: refused with a gap (:class:`~twinedge.errors.Conflict` with
  ``expected_revision``, so its host sends it again) until the old host's records reach
  its revision, so the history keeps every revision; after :data:`HOLD_S` seconds (the old
  host is gone for good) it is applied anyway and the revisions in between are missing
  from the history (the content is complete: the snapshot holds them);
* a record contradicting the epochs (a change from an epoch below ``E`` continuing the
  revisions, a newer epoch starting below ``R``) -> :class:`~twinedge.errors.Conflict`
  (``fenced``): a fenced host wrote after its fence; never applied.

An applied record is a write like any other: one new core revision (even when the content
does not change, so the core's revisions keep following the host's), source ``"edge"``,
actor the host, history, events and group membership; the service fields (``_domain``,
``_host``...) stay as they are. The new position is committed **in the same transaction**
(:attr:`~twinedge.runtime.store.base.Change.edge`), so after a crash of the core the
position says exactly which records it has: a re-sent record is a duplicate, never applied
twice. A batch of records is queued to the writer in one piece, in seq order; the first
record refused stops it (those after it are not applied) and the error says how far the
batch got (``acked_seq``, ``applied``...).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twinedge.errors import Conflict, InvalidInput, NotFound, ServiceError, TooLarge
from twinedge.runtime import things
from twinedge.runtime.auth import SYSTEM, Principal
from twinedge.runtime.core.writer import MAX_THING_BYTES, Op, Result, WriteQueue, Writer
from twinedge.runtime.store.base import EdgePosition, Store

__all__ = ["EDGE_SOURCE", "HOLD_S", "HOST_ID_RE", "MAX_RECORDS", "HostReplication", "Replica"]

EDGE_SOURCE = "edge"
#: The ids edge hosts go by (as :data:`twinedge.edge.log.HOST_ID_RE`).
HOST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
#: Most records in one call of :meth:`Replica.apply_edge_records`.
MAX_RECORDS = 5000
#: Seconds a newer epoch's snapshot waits for the previous epoch's last records.
HOLD_S = 10.0
MAX_INT = 2**53  # seqs, epochs and revisions: exact in every JSON reader
_RECORD_FIELDS = ("seq", "twin", "epoch", "revision", "kind", "data", "time_s")


@dataclass(frozen=True, slots=True)
class _Record:
    index: int
    seq: int
    twin: str
    epoch: int
    revision: int
    kind: str
    data: dict[str, Any]
    time_s: float


LAG_WINDOW = 10_000  # records whose lag the quantiles are taken over, per host


@dataclass
class HostReplication:
    """What the core knows of one host's replication (for ``/healthz`` and ``/metrics``)."""

    acked_seq: int = 0  # the highest seq handled
    lag_s: float | None = None  # the last batch's largest lag
    last_batch_s: float = 0.0  # core clock at the last batch
    records: Counter[str] = field(default_factory=Counter)  # applied / duplicate / dropped
    batches: int = 0  # requests handled (records per batch = sum(records) / batches)
    # the lag of each of the last LAG_WINDOW records handled (host commit -> core commit)
    recent_lags_s: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))

    def lag_quantiles(self) -> dict[str, float | int] | None:
        """p50, p99 and max of the recent records' lag (seconds) and how many there are;
        ``None`` before the first record.

        Examples:
            >>> h = HostReplication()
            >>> h.recent_lags_s.extend([0.01 * i for i in range(1, 101)])
            >>> h.lag_quantiles()["p50_s"], h.lag_quantiles()["p99_s"]
            (0.5, 0.99)
        """
        if not self.recent_lags_s:
            return None
        lags = sorted(self.recent_lags_s)
        n = len(lags)

        def q(f: float) -> float:  # nearest rank
            return round(lags[max(0, math.ceil(f * n) - 1)], 6)

        return {"p50_s": q(0.50), "p99_s": q(0.99), "max_s": round(lags[-1], 6), "window": n}


class _Halt:
    """The first record of a batch that was refused (the ones after it are not applied),
    and what the writer decided for each record it did not apply."""

    __slots__ = ("index", "skipped")

    def __init__(self, n: int) -> None:
        self.index: int | None = None
        self.skipped: list[str] = ["duplicates"] * n  # "duplicates" or "dropped"

    def check(self, rec: _Record) -> None:
        if self.index is not None and rec.index > self.index:
            raise Conflict(
                f"record seq {rec.seq} was not applied: an earlier record of the batch was "
                "refused; send it again",
                f"/records/{rec.index}",
            )

    def refused(self, rec: _Record) -> None:
        if self.index is None or rec.index < self.index:
            self.index = rec.index


class Replica:
    """Edge replication into the core, through the single writer.

    Parameters:
        queue: the writer's queue.
        writer: the writer (its twins and edge positions; only it changes them).
        store: where positions are stored.
        clock: unix time source (lag is this clock minus the records' ``time_s``).
    """

    def __init__(
        self,
        queue: WriteQueue,
        writer: Writer,
        store: Store,
        *,
        clock: Callable[[], float],
        hold_s: float = HOLD_S,
    ):
        self.queue = queue
        self.hold_s = hold_s
        # (thing id, epoch) -> when its snapshot was first held (see the rules)
        self._held: dict[tuple[str, int], float] = {}
        self.writer = writer
        self.store = store
        self.clock = clock
        self.hosts: dict[str, HostReplication] = {}
        # thing id -> (its document, an upper bound of that document's JSON size): lets a
        # change skip encoding the whole twin to check its size (see _apply)
        self._sizes: dict[str, tuple[dict, int]] = {}

    async def load(self) -> None:
        """Read the stored edge positions (at the service's start)."""
        positions = await self.queue.on_writer(self.store.load_edge_positions)
        self.writer.edge_positions.clear()
        self.writer.edge_positions.update(positions)

    @property
    def positions(self) -> dict[str, EdgePosition]:
        """Every twin's edge position (thing id -> ``(epoch, revision)``); read only."""
        return self.writer.edge_positions

    # ------------------------------------------------------------------ positions
    async def set_edge_position(self, thing_id: str, epoch: int, revision: int) -> None:
        """Set the edge position of ``thing_id`` to ``(epoch, revision)``: the
        orchestrator places the twin on an edge host for the first time (``epoch`` 1,
        ``revision`` the core's revision then: the host's revisions continue from it).

        Runs on the writer as an exclusive step (after every write queued before it is
        committed); it makes no revision.

        Raises:
            InvalidInput: a bad thing id, or epoch or revision not a whole number ``>= 0``.
            NotFound: the thing does not exist.
        """
        things.check_thing_id(thing_id)
        await self._put(thing_id, (_int(epoch, "/epoch"), _int(revision, "/revision")))

    async def clear_edge_position(self, thing_id: str) -> None:
        """Remove the edge position of ``thing_id`` (the twin came back to the core: edge
        records of it are dropped from now on). Nothing happens without one.

        Raises:
            InvalidInput: a bad thing id.
        """
        things.check_thing_id(thing_id)
        await self._put(thing_id, None)

    async def _put(self, thing_id: str, position: EdgePosition | None) -> None:
        async def run() -> None:
            if position is not None and thing_id not in self.writer.things:
                raise NotFound(f"thing {thing_id} does not exist")
            if position is None and thing_id not in self.writer.edge_positions:
                return
            await self.queue.on_writer(self.store.set_edge_position, thing_id, position)
            if position is None:
                self.writer.edge_positions.pop(thing_id, None)
                self._sizes.pop(thing_id, None)
            else:
                self.writer.edge_positions[thing_id] = position

        await self.queue.exclusive(SYSTEM, thing_id, run)

    def _hold(self, rec: _Record, pos: EdgePosition) -> None:
        """Refuse (with a gap) a newer epoch's snapshot above the core's revision while the
        previous epoch's records in between may still come, for :attr:`hold_s` at most
        (see the rules); forget it once it is applied."""
        key = (rec.twin, rec.epoch)
        epoch, rev = pos
        if rec.epoch <= epoch or rec.revision <= rev:
            self._held.pop(key, None)
            return
        now = self.clock()
        first = self._held.setdefault(key, now)
        if now - first >= self.hold_s:
            self._held.pop(key, None)
            return
        if len(self._held) > 100_000:  # twins deleted while held: drop the oldest
            for k in list(self._held)[:50_000]:
                del self._held[k]
        raise Conflict(
            f"record seq {rec.seq} of {rec.twin}: the snapshot of epoch {rec.epoch} starts "
            f"at revision {rec.revision}, but the core has revision {rev} of epoch {epoch}: "
            f"the previous host's records up to it have not arrived; send it again (it is "
            f"applied once they have, or {self.hold_s:g} s after it first came)",
            f"/records/{rec.index}/revision",
            expected_revision=rev + 1,
            twin=rec.twin,
            seq=rec.seq,
        )

    # ------------------------------------------------------------------ records
    async def apply_edge_records(
        self, host_id: str, records: Sequence[Any], *, values_checked: bool = False
    ) -> dict[str, Any]:
        """Apply an edge host's records, in seq order (see the module docstring).

        Parameters:
            host_id: the host that sent them (the actor of the writes).
            records: ``{"seq": int, "twin": str, "epoch": int, "revision": int, "kind":
                "change"|"snapshot", "data": object, "time_s": number}`` each, seqs
                increasing; at most :data:`MAX_RECORDS`.
            values_checked: every value of ``records`` was read by
                :func:`twinedge.textinput.loads` under
                :data:`~twinedge.runtime.things.JSON_LIMITS` (the HTTP route reads the
                body so): the check of the records' data against those limits is not
                repeated. Every other check is made.

        Returns:
            ``{"applied", "duplicates", "dropped", "acked_seq", "lag_s": {"max",
            "last"}}``: counts, the highest seq handled (0: none) and the lag (core clock
            now minus ``time_s``) of the records handled (``None`` without records).

        Raises:
            InvalidInput: a bad host id or record (``pointer``: ``/records/<i>/<field>``,
                or into its ``data``); nothing was applied. Also a record whose result is
                not a valid thing (the records before it were applied).
            Conflict: a record out of order: ``expected_revision`` (a gap: the records
                before it are still to come, send it again later) or ``fenced`` (an epoch
                contradiction). The members ``acked_seq``, ``applied``, ``duplicates``,
                ``dropped`` say what happened before it.
            TooLarge: a record would make the thing too large (as above).
            Unavailable: the service is shutting down, overloaded, or the store failed
                (those before may have been applied; sending the batch again is safe).
        """
        if not isinstance(host_id, str) or not HOST_ID_RE.fullmatch(host_id):
            raise InvalidInput(
                f"host {host_id!r} is not a host id (letters, digits, _ . : -, at most 128)",
                "/host",
            )
        if not isinstance(records, Sequence) or isinstance(records, str | bytes):
            raise InvalidInput("records must be a list", "/records")
        if len(records) > MAX_RECORDS:
            raise InvalidInput(
                f"{len(records)} records in one batch; send at most {MAX_RECORDS}", "/records"
            )
        recs = [_parse_record(r, i, values_checked) for i, r in enumerate(records)]
        for a, b in itertools.pairwise(recs):
            if b.seq <= a.seq:
                raise InvalidInput(
                    f"record seqs must increase: seq {b.seq} follows seq {a.seq}",
                    f"/records/{b.index}/seq",
                )
        actor = Principal(host_id, None, "write", "system")
        halt = _Halt(len(recs))
        ops = [
            Op(
                r.twin,
                _mutator(r, halt, self._sizes),
                actor,
                EDGE_SOURCE,
                validate=False,  # the mutator checks the new content itself
                edge=_decider(r, halt, self._hold),
            )
            for r in recs
        ]
        outcomes = await asyncio.gather(*self.queue.enqueue(ops), return_exceptions=True)
        now = self.clock()
        counts = {"applied": 0, "duplicates": 0, "dropped": 0}
        acked, lags = 0, []
        error: BaseException | None = None
        for r, out in zip(recs, outcomes, strict=True):
            if isinstance(out, BaseException):
                error = out
                break
            assert isinstance(out, Result)
            key = "applied" if out.changed else halt.skipped[r.index]
            counts[key] += 1
            acked = r.seq
            lags.append(now - r.time_s)
        stats = self.hosts.setdefault(host_id, HostReplication())
        stats.records.update(
            applied=counts["applied"], duplicate=counts["duplicates"], dropped=counts["dropped"]
        )
        stats.acked_seq = max(stats.acked_seq, acked)
        stats.batches += 1
        stats.recent_lags_s.extend(lags)
        stats.last_batch_s = now
        if lags:
            stats.lag_s = max(lags)
        if error is not None:
            if isinstance(error, ServiceError):
                raise type(error)(
                    error.detail, error.pointer, **error.extra, acked_seq=acked, **counts
                ) from None
            raise error
        return {
            **counts,
            "acked_seq": acked,
            "lag_s": {"max": max(lags) if lags else None, "last": lags[-1] if lags else None},
        }

    def status(self) -> dict[str, dict[str, Any]]:
        """Per host that replicated: ``{"acked_seq", "lag_s", "age_s", "batches",
        "records", "lag"}`` (``age_s``: since its last batch; ``records``: handled in all;
        ``lag``: :meth:`HostReplication.lag_quantiles`), for ``/healthz``."""
        now = self.clock()
        return {
            h: {
                "acked_seq": s.acked_seq,
                "lag_s": s.lag_s,
                "age_s": max(0.0, now - s.last_batch_s),
                "batches": s.batches,
                "records": sum(s.records.values()),
                "lag": s.lag_quantiles(),
            }
            for h, s in sorted(self.hosts.items())
        }


# ---------------------------------------------------------------------- one record


def _int(v: Any, pointer: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_INT:
        raise InvalidInput(f"expected a whole number 0..2**53, got {_show(v)}", pointer)
    return v


def _show(v: Any) -> str:
    text = json.dumps(v, default=repr) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_record(r: Any, i: int, values_checked: bool = False) -> _Record:
    """A record checked field by field (``InvalidInput`` with a pointer into it)."""
    at = f"/records/{i}"
    if not isinstance(r, dict):
        raise InvalidInput(f"a record must be a JSON object, got {_show(r)}", at)
    for k in r:
        if k not in _RECORD_FIELDS:
            raise InvalidInput(
                f"unknown field {k!r}; a record has {', '.join(_RECORD_FIELDS)}",
                f"{at}/{things.escape_token(str(k))}",
            )
    for k in _RECORD_FIELDS:
        if k not in r:
            raise InvalidInput(f"the record has no {k}", f"{at}/{k}")
    seq = _int(r["seq"], f"{at}/seq")
    epoch = _int(r["epoch"], f"{at}/epoch")
    revision = _int(r["revision"], f"{at}/revision")
    twin = r["twin"]
    if not isinstance(twin, str):
        raise InvalidInput(f"twin must be a thing id, got {_show(twin)}", f"{at}/twin")
    try:
        things.check_thing_id(twin)
    except InvalidInput as e:
        raise InvalidInput(e.detail, f"{at}/twin") from None
    kind = r["kind"]
    if kind not in ("change", "snapshot"):
        raise InvalidInput(f"kind must be change or snapshot, got {_show(kind)}", f"{at}/kind")
    t = r["time_s"]
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise InvalidInput(
            f"time_s must be a number of unix seconds, got {_show(t)}", f"{at}/time_s"
        )
    data = r["data"]
    if not isinstance(data, dict):
        raise InvalidInput(
            f"data must be a JSON object (a merge patch or a document), got {_show(data)}",
            f"{at}/data",
        )
    for k in data:
        if k in things.META_FIELDS:
            raise InvalidInput(
                f"{k} is kept by the core; a record carries thingId, attributes and features",
                f"{at}/data/{things.escape_token(k)}",
            )
    try:
        if not values_checked:
            things.check_json(data)
        if kind == "snapshot":
            things.validate_thing(data, twin)
    except InvalidInput as e:
        raise InvalidInput(e.detail, f"{at}/data{e.pointer or ''}") from None
    return _Record(i, seq, twin, epoch, revision, kind, data, float(t))


def _decider(
    rec: _Record, halt: _Halt, hold: Callable[[_Record, EdgePosition], None]
) -> Callable[[dict | None, EdgePosition | None], EdgePosition | None]:
    """The record's :data:`~.writer.EdgeStep`: the position after it, or None (dropped or
    a duplicate)."""

    def decide(cur: dict | None, pos: EdgePosition | None) -> EdgePosition | None:
        halt.check(rec)
        if cur is None or pos is None:
            halt.skipped[rec.index] = "dropped"  # the thing is gone, or not on an edge host
            return None
        try:
            out = _decide(rec, pos)
            if out is not None and rec.kind == "snapshot":
                hold(rec, pos)
        except ServiceError:
            halt.refused(rec)
            raise
        if out is None:
            halt.skipped[rec.index] = "duplicates"
        return out

    return decide


def _decide(rec: _Record, pos: EdgePosition) -> EdgePosition | None:
    epoch, rev = pos
    at = f"/records/{rec.index}"
    if rec.kind == "change":
        if rec.revision <= rev:
            if rec.epoch <= epoch:
                return None  # a duplicate
            raise _fenced(rec, pos, f"epoch {rec.epoch} writes revision {rec.revision}")
        if rec.revision != rev + 1:
            raise Conflict(
                f"record seq {rec.seq} of {rec.twin} has revision {rec.revision}, but the core "
                f"has revision {rev}: the records in between have not arrived; send them "
                "first (or this one again later)",
                f"{at}/revision",
                expected_revision=rev + 1,
                twin=rec.twin,
                seq=rec.seq,
            )
        if rec.epoch < epoch:
            raise _fenced(rec, pos, f"revision {rec.revision} comes from a fenced epoch")
        return (rec.epoch, rec.revision)
    # a snapshot
    if rec.revision < rev or (rec.revision == rev and rec.epoch <= epoch):
        if rec.epoch > epoch:
            raise _fenced(rec, pos, f"epoch {rec.epoch} starts at revision {rec.revision}")
        return None  # a duplicate
    if rec.epoch < epoch:
        raise _fenced(rec, pos, "a snapshot from a fenced epoch")
    return (rec.epoch, rec.revision)


def _fenced(rec: _Record, pos: EdgePosition, what: str) -> Conflict:
    return Conflict(
        f"record seq {rec.seq} of {rec.twin} contradicts the epochs: {what}, but the core is "
        f"at epoch {pos[0]} revision {pos[1]} (a fenced host wrote after its fence); it is "
        "not applied",
        f"/records/{rec.index}/epoch",
        fenced=True,
        twin=rec.twin,
        seq=rec.seq,
        epoch=pos[0],
        revision=pos[1],
    )


#: Bytes a stored document may grow by beyond its content (the service fields the writer
#: sets after the size check: a revision with one more digit); kept generous.
_META_SLACK = 64


def _mutator(
    rec: _Record, halt: _Halt, sizes: dict[str, tuple[dict, int]]
) -> Callable[[dict | None], dict]:
    """The record's mutator: the thing with its content patched or replaced (service
    fields kept), checked as any thing."""

    def mutate(cur: dict | None) -> dict:
        assert cur is not None  # the decider drops records of a missing thing
        try:
            return _apply(rec, cur, sizes)
        except ServiceError:
            halt.refused(rec)
            raise

    return mutate


def _apply(rec: _Record, cur: dict, sizes: dict[str, tuple[dict, int]]) -> dict:
    """The thing after ``rec``: the same checks and result as validating the whole new
    document, made on what the record touched (:func:`~.things.validate_patched`; the
    current document is valid, as every stored one is), and its size checked against
    :data:`MAX_THING_BYTES` without encoding the whole twin while an upper bound of it
    is far enough below the limit (a merge patch adds at most its own JSON text)."""
    at = f"/records/{rec.index}/data"
    bound: int | None = None
    try:
        if rec.kind == "change":
            content = {k: v for k, v in cur.items() if k not in things.META_FIELDS}
            body = things.merge_patch(content, rec.data)
            # the record's data passed check_json when it was read (_parse_record)
            new = things.validate_patched(body, rec.data, rec.twin, values_checked=True)
            known = sizes.get(rec.twin)
            if known is not None and known[0] is cur:
                bound = known[1] + len(json.dumps(rec.data, separators=(",", ":")))
        else:
            new = things.validate_thing(rec.data, rec.twin, values_checked=True)
    except InvalidInput as e:
        raise InvalidInput(
            f"record seq {rec.seq} makes no valid thing: {e.detail}", f"{at}{e.pointer or ''}"
        ) from None
    for k in things.META_FIELDS:
        if k in cur:
            new[k] = cur[k]
    if bound is None or bound > MAX_THING_BYTES:
        bound = len(json.dumps(new, separators=(",", ":")))
        if bound > MAX_THING_BYTES:
            raise TooLarge(
                f"record seq {rec.seq} would make thing {rec.twin} larger than "
                f"{MAX_THING_BYTES // 1000} kB",
                at,
            )
    sizes[rec.twin] = (new, bound + _META_SLACK)
    return new
