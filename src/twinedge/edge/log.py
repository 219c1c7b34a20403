"""The durable local log of an edge host: committed twin changes, snapshots, ownership.

One SQLite file per host, WAL journal, ``synchronous=FULL`` by default (a commit
survives power loss, not only a crash of the process; every commit costs an fsync).
``synchronous="NORMAL"`` is allowed: a commit then survives a crash of the process
(SIGKILL) but not of the machine, and costs no fsync (the WAL is synced at checkpoints).
Tables:

* ``records(seq, twin_id, epoch, revision, kind, data, time_s)`` — the committed changes,
  ``seq`` global per host and never reused. ``kind`` is ``"change"`` (``data``: a JSON
  merge patch of the twin document, making revision ``revision`` from ``revision - 1``)
  or ``"snapshot"`` (``data``: the whole document at ``revision``; written when a twin is
  placed on or migrated to this host). Records are also the replication outbox: those
  with ``seq`` above ``meta.replicated_seq`` are still to be sent to the core.
* ``snapshots(twin_id, seq, epoch, revision, data, time_s)`` — compaction: the document
  of a twin as of record ``seq``; replicated records at or below it may be deleted.
* ``twins(twin_id, status, epoch, owner, owner_epoch, behaviour, params)`` — ownership:
  ``owned`` (served here at ``epoch``), ``fenced`` (a migration gave it to ``owner`` at
  ``owner_epoch``; this host refuses writes but still holds the state) or ``moved``
  (released: state dropped, only the redirect is kept). A fence is durable before it is
  acknowledged, so a host that restarts never serves a twin it gave away.
* ``meta`` — format, host id, the last ``seq`` ever assigned, the replicated watermark.

**Group commit.** :meth:`EdgeLog.append` writes any number of records (many devices'
updates) and ownership changes in one transaction and returns once it is durable; the
host batches concurrent requests into one call (see :mod:`twinedge.edge.host`).

**Recovery.** :meth:`EdgeLog.recover` rebuilds every owned or fenced twin: its latest
snapshot (a ``snapshots`` row or a ``snapshot`` record, the newer one) plus the change
records after it, which must carry consecutive revisions. A torn tail cannot happen
(SQLite commits atomically); anything else that does not add up — a file that is not
SQLite, a damaged page (``PRAGMA quick_check``), a record that does not decode, a revision
gap, a record without an owner row, an epoch above the owner's — raises
:class:`~twinedge.edge.errors.EdgeLogError` naming the file and the record, so nothing is
ever lost silently. (A deleted *newest* record leaves no trace without a checksum chain;
the replica's revision check catches it if it was already replicated.)

One process (one :class:`EdgeLog`) at a time: the file ``<log>.lock`` is locked
(``flock``) while the log is open, so two hosts can never write one log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from twinedge.edge.document import decode
from twinedge.edge.errors import EdgeLogError, InvalidReportError
from twinedge.jsonmerge import merge_patch

try:  # POSIX; elsewhere the single-writer lock is not enforced
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT",
    "HOST_ID_RE",
    "EdgeLog",
    "LogRecord",
    "Ownership",
    "RecordKind",
    "RecoveredTwin",
    "Recovery",
    "Synchronous",
    "TwinStatus",
]

FORMAT = "twinedge-edge-log/1"
HOST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
RecordKind = Literal["change", "snapshot"]

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records(
  seq INTEGER PRIMARY KEY, twin_id TEXT NOT NULL, epoch INTEGER NOT NULL,
  revision INTEGER NOT NULL, kind TEXT NOT NULL, data BLOB NOT NULL, time_s REAL NOT NULL);
CREATE INDEX records_twin ON records(twin_id, seq);
CREATE TABLE snapshots(
  twin_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, epoch INTEGER NOT NULL,
  revision INTEGER NOT NULL, data BLOB NOT NULL, time_s REAL NOT NULL);
CREATE TABLE twins(
  twin_id TEXT PRIMARY KEY, status TEXT NOT NULL, epoch INTEGER NOT NULL, owner TEXT,
  owner_epoch INTEGER NOT NULL, behaviour TEXT NOT NULL, params BLOB NOT NULL);
"""


class TwinStatus(StrEnum):
    """Where a twin stands on one host (see :mod:`twinedge.edge.migrate` for the moves)."""

    ABSENT = "absent"
    """The host has never had it."""
    STAGED = "staged"
    """A migration is copying it here; not served, kept in memory only."""
    OWNED = "owned"
    """Served here at ``epoch``."""
    FENCED = "fenced"
    """Given to ``owner`` at ``owner_epoch``; writes refused, state kept for the copy."""
    MOVED = "moved"
    """Released after the new owner adopted it; only the redirect is kept."""


@dataclass(frozen=True, slots=True)
class Ownership:
    """One host's durable knowledge of one twin.

    Attributes:
        twin_id: the twin.
        status: see :class:`TwinStatus`.
        epoch: the epoch under which this host serves (or served) the twin; 0 if never.
        owner: ``fenced``/``moved``: the host the twin went to.
        owner_epoch: ``fenced``/``moved``: the epoch of that owner (else 0).
        behaviour: the behaviour spec (name or ``module:attr``).
        behaviour_params: its JSON parameters.
    """

    twin_id: str
    status: TwinStatus
    epoch: int = 0
    owner: str | None = None
    owner_epoch: int = 0
    behaviour: str = "default"
    behaviour_params: dict[str, Any] = field(default_factory=dict)

    @property
    def latest_epoch(self) -> int:
        """The highest epoch this host knows for the twin (its own or its successor's)."""
        return max(self.epoch, self.owner_epoch)


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One committed record (also the unit of replication).

    Attributes:
        seq: position in the host's log (global per host, increasing, never reused).
        twin_id: the twin.
        epoch: the fencing epoch under which it was committed.
        revision: the twin's revision after it.
        kind: ``"change"`` (``data`` = merge patch) or ``"snapshot"`` (``data`` = document).
        data: UTF-8 JSON.
        time_s: when it was committed (the host's clock, when its batch was assembled).
    """

    seq: int
    twin_id: str
    epoch: int
    revision: int
    kind: RecordKind
    data: bytes
    time_s: float

    def value(self) -> Any:
        """``data`` decoded (strict JSON).

        Raises:
            InvalidReportError: ``data`` is not strict JSON.
        """
        return decode(self.data)


@dataclass(slots=True)
class RecoveredTwin:
    """A twin as the log rebuilt it. ``document`` is ``None`` for a moved twin."""

    ownership: Ownership
    document: dict[str, Any] | None
    revision: int
    last_seq: int


@dataclass(slots=True)
class Recovery:
    """What :meth:`EdgeLog.recover` found.

    Attributes:
        twins: every twin with an ownership row.
        last_seq: the last seq ever assigned.
        replicated_seq: the durable replication watermark.
        unreplicated: ``(seq, time_s)`` of records above the watermark, in seq order.
    """

    twins: dict[str, RecoveredTwin]
    last_seq: int
    replicated_seq: int
    unreplicated: list[tuple[int, float]]


Synchronous = Literal["FULL", "NORMAL"]


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


class EdgeLog:
    """The durable log of one edge host. Use :meth:`open`; :meth:`close` when done.

    Thread-safe: one connection writes (under a lock; the host calls :meth:`append` from
    a worker thread), another reads (:meth:`read`), so reading the outbox never waits
    for a commit in progress.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> log = EdgeLog.open(d / "edge.sqlite", "edge-1")
        >>> own = Ownership("fleet:car-7", TwinStatus.OWNED, epoch=1)
        >>> snap = LogRecord(0, "fleet:car-7", 1, 0, "snapshot", b'{"features":{}}', 0.0)
        >>> [r.seq for r in log.append([snap], [own])]
        [1]
        >>> log.close()
        >>> log = EdgeLog.open(d / "edge.sqlite")
        >>> rec = log.recover()
        >>> rec.twins["fleet:car-7"].document, rec.last_seq
        ({'features': {}}, 1)
        >>> log.close()
    """

    def __init__(
        self,
        path: Path,
        host_id: str,
        write: sqlite3.Connection,
        read: sqlite3.Connection,
        lock_fd: int | None,
    ):
        self.path = path
        self.host_id = host_id
        self._w, self._r = write, read
        self._wlock, self._rlock = threading.Lock(), threading.Lock()
        self._lock_fd = lock_fd
        self._closed = False
        meta = dict(read.execute("SELECT key, value FROM meta").fetchall())
        self.last_seq = int(meta.get("last_seq", 0))
        self.replicated_seq = int(meta.get("replicated_seq", 0))

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(
        cls,
        path: str | Path,
        host_id: str | None = None,
        *,
        check: bool = True,
        synchronous: Synchronous = "FULL",
    ) -> EdgeLog:
        """Open the log at ``path``, creating it (for ``host_id``) when it does not exist.

        Parameters:
            path: the SQLite file.
            host_id: the host the log belongs to; required to create it, and when given
                for an existing log it must match the one stored.
            check: run ``PRAGMA quick_check`` (a full read of the file) before use.
            synchronous: ``"FULL"`` (survives power loss) or ``"NORMAL"`` (survives a
                crash of the process only; no fsync per commit).

        Raises:
            EdgeLogError: the file is not SQLite or is damaged, is not an edge log, belongs
                to another host, is open in another process, or cannot be created.
        """
        path = Path(path)
        if synchronous not in ("FULL", "NORMAL"):
            raise EdgeLogError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        exists = path.exists()
        if not exists and host_id is None:
            raise EdgeLogError(f"edge log {path} does not exist; give a host id to create it")
        if host_id is not None and not (isinstance(host_id, str) and HOST_ID_RE.fullmatch(host_id)):
            raise EdgeLogError(
                f"host id {host_id!r} is not valid: 1-128 letters, digits, '_', '.', ':', '-'"
            )
        lock_fd = cls._lock(path)
        write = read = None
        try:
            write = _connect(path, synchronous)
            if not exists:
                write.execute("BEGIN IMMEDIATE")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        write.execute(stmt)
                write.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("host_id", str(host_id)),
                        ("last_seq", "0"),
                        ("replicated_seq", "0"),
                    ],
                )
                write.execute("COMMIT")
            if check:
                bad = [r[0] for r in write.execute("PRAGMA quick_check").fetchall()]
                if bad != ["ok"]:
                    raise EdgeLogError(
                        f"edge log {path} is damaged (sqlite quick_check: {'; '.join(map(str, bad[:3]))}); "
                        "restore it from a copy or recover its twins from the core"
                    )
            tables = {
                r[0] for r in write.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            meta = (
                dict(write.execute("SELECT key, value FROM meta").fetchall())
                if "meta" in tables
                else {}
            )
            if meta.get("format") != FORMAT or not {"records", "snapshots", "twins"} <= tables:
                raise EdgeLogError(
                    f"{path} is not a twinedge edge log (format {meta.get('format')!r}, expected {FORMAT!r})"
                )
            if host_id is not None and meta.get("host_id") != host_id:
                raise EdgeLogError(
                    f"edge log {path} belongs to host {meta.get('host_id')!r}, not {host_id!r}"
                )
            read = _connect(path, synchronous)
            read.execute("PRAGMA query_only=1")
            return cls(path, meta["host_id"], write, read, lock_fd)
        except (sqlite3.Error, ValueError, KeyError) as exc:
            for con in (write, read):
                if con is not None:
                    con.close()
            cls._unlock(lock_fd)
            raise EdgeLogError(
                f"edge log {path} is unreadable or corrupt (sqlite: {exc}); restore it from a "
                "copy or recover its twins from the core"
            ) from exc
        except EdgeLogError:
            for con in (write, read):
                if con is not None:
                    con.close()
            cls._unlock(lock_fd)
            raise

    @staticmethod
    def _lock(path: Path) -> int | None:
        if fcntl is None:  # pragma: no cover
            return None
        try:
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EdgeLogError(f"cannot open edge log {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f"process {holder}" if holder.isdigit() else "another host process"
            raise EdgeLogError(
                f"edge log {path} is open elsewhere ({who} holds {path}.lock); "
                "one log has one writer"
            ) from None
        try:  # the holder's pid, for the message of whoever finds the log taken
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        return fd

    @staticmethod
    def _unlock(fd: int | None) -> None:
        if fd is not None:
            os.close(fd)  # releases the flock

    def close(self) -> None:
        """Close both connections and release the lock (waits for a commit in progress).
        Closing twice is harmless."""
        with self._wlock, self._rlock:
            if self._closed:
                return
            self._closed = True
            self._w.close()
            self._r.close()
            self._unlock(self._lock_fd)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EdgeLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"EdgeLog(host_id={self.host_id!r}, last_seq={self.last_seq}, path={str(self.path)!r})"
        )

    def _fail(self, what: str, exc: BaseException) -> EdgeLogError:
        return EdgeLogError(f"edge log {self.path}: {what}: {exc}")

    # ------------------------------------------------------------------ writing
    def append(
        self,
        records: Sequence[LogRecord],
        ownership: Iterable[Ownership] = (),
        *,
        replicated_seq: int | None = None,
    ) -> list[LogRecord]:
        """Commit ``records`` (their ``seq`` is ignored and assigned here, in order) and
        the ownership rows in one transaction; return the records with their ``seq`` once
        the transaction is durable.

        Parameters:
            records: the new records, in the order they happened.
            ownership: rows to insert or replace in the same transaction.
            replicated_seq: also store this replication watermark (if higher).

        Raises:
            EdgeLogError: the log is closed or SQLite refused the transaction (nothing of
                it was committed).
        """
        with self._wlock:
            if self._closed:
                raise EdgeLogError(f"edge log {self.path} is closed")
            seq = self.last_seq
            rows = []
            for r in records:
                seq += 1
                rows.append((seq, r.twin_id, r.epoch, r.revision, r.kind, r.data, r.time_s))
            own = [_own_row(o) for o in ownership]
            wm = (
                replicated_seq
                if replicated_seq is not None and replicated_seq > self.replicated_seq
                else None
            )
            con = self._w
            try:
                con.execute("BEGIN IMMEDIATE")
                con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                con.executemany("INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?, ?, ?)", own)
                if rows:
                    con.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(seq),))
                if wm is not None:
                    con.execute(
                        "UPDATE meta SET value = ? WHERE key = 'replicated_seq'", (str(wm),)
                    )
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise self._fail(f"cannot commit {len(rows)} records", exc) from exc
            self.last_seq = seq
            if wm is not None:
                self.replicated_seq = wm
        first = seq - len(rows)
        return [
            LogRecord(first + i + 1, r.twin_id, r.epoch, r.revision, r.kind, r.data, r.time_s)
            for i, r in enumerate(records)
        ]

    def compact(
        self,
        snapshots: Sequence[LogRecord],
        trim: Sequence[tuple[str, int]] = (),
        drop: Sequence[str] = (),
        *,
        replicated_seq: int,
    ) -> int:
        """Store twin snapshots and delete what they make redundant, in one transaction.

        Parameters:
            snapshots: per twin, a ``snapshot``-kind record whose ``seq`` is the last record
                already folded into its ``data`` (the host's state of the twin); its
                records up to that seq are deleted.
            trim: ``(twin_id, seq)``: delete the twin's records up to ``seq`` (covered by the
                snapshot stored earlier).
            drop: twins whose state is no longer needed (moved away): their snapshot row
                and replicated records go.
            replicated_seq: the replication watermark; no record above it is deleted (the
                outbox still needs it). Stored too.

        Returns:
            The number of records deleted.

        Raises:
            EdgeLogError: SQLite refused the transaction (nothing changed).
        """
        with self._wlock:
            if self._closed:
                raise EdgeLogError(f"edge log {self.path} is closed")
            con = self._w
            wm = max(replicated_seq, self.replicated_seq)
            deleted = 0
            try:
                con.execute("BEGIN IMMEDIATE")
                for s in snapshots:
                    con.execute(
                        "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                        (s.twin_id, s.seq, s.epoch, s.revision, s.data, s.time_s),
                    )
                    cur = con.execute(
                        "DELETE FROM records WHERE twin_id = ? AND seq <= ?",
                        (s.twin_id, min(s.seq, wm)),
                    )
                    deleted += cur.rowcount
                for t, upto in trim:
                    cur = con.execute(
                        "DELETE FROM records WHERE twin_id = ? AND seq <= ?", (t, min(upto, wm))
                    )
                    deleted += cur.rowcount
                for t in drop:
                    con.execute("DELETE FROM snapshots WHERE twin_id = ?", (t,))
                    cur = con.execute("DELETE FROM records WHERE twin_id = ? AND seq <= ?", (t, wm))
                    deleted += cur.rowcount
                con.execute("UPDATE meta SET value = ? WHERE key = 'replicated_seq'", (str(wm),))
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise self._fail("cannot compact", exc) from exc
            self.replicated_seq = wm
            return deleted

    # ------------------------------------------------------------------ reading
    def read(self, after_seq: int, limit: int, upto_seq: int | None = None) -> list[LogRecord]:
        """Committed records with ``after_seq < seq <= upto_seq`` (no upper bound by
        default), in seq order, at most ``limit``.

        Raises:
            EdgeLogError: the log is closed or cannot be read.
        """
        with self._rlock:
            if self._closed:
                raise EdgeLogError(f"edge log {self.path} is closed")
            try:
                rows = self._r.execute(
                    "SELECT seq, twin_id, epoch, revision, kind, data, time_s FROM records "
                    "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (after_seq, (1 << 62) if upto_seq is None else upto_seq, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("cannot read records", exc) from exc
        return [LogRecord(*r) for r in rows]

    def size_bytes(self) -> int:
        """Size of the database file plus its WAL."""
        wal = Path(f"{self.path}-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def recover(self) -> Recovery:
        """Rebuild every twin this host knows from the log (see the module docstring).

        Raises:
            EdgeLogError: the log does not add up (names the file, the record and why).
        """
        with self._rlock:
            if self._closed:
                raise EdgeLogError(f"edge log {self.path} is closed")
            try:
                return self._recover()
            except sqlite3.Error as exc:
                raise self._fail("cannot be read (damaged?)", exc) from exc

    def _decode(self, data: Any, where: str) -> Any:
        try:
            if not isinstance(data, bytes | str):
                raise InvalidReportError(f"stored as {type(data).__name__}, not JSON text")
            return decode(data)
        except InvalidReportError as e:
            raise EdgeLogError(f"edge log {self.path}: {where} does not decode: {e}") from None

    def _recover(self) -> Recovery:
        con = self._r
        owns: dict[str, Ownership] = {}
        for tid, status, epoch, owner, owner_epoch, beh, params in con.execute(
            "SELECT * FROM twins"
        ):
            try:
                status_ = TwinStatus(status)
                if status_ not in (TwinStatus.OWNED, TwinStatus.FENCED, TwinStatus.MOVED):
                    raise ValueError(status)
            except ValueError:
                raise EdgeLogError(
                    f"edge log {self.path}: twin {tid!r} has unknown status {status!r}"
                ) from None
            p = self._decode(params, f"the behaviour parameters of twin {tid!r}")
            if not isinstance(p, dict):
                raise EdgeLogError(
                    f"edge log {self.path}: behaviour parameters of twin {tid!r} are not an object"
                )
            owns[tid] = Ownership(tid, status_, int(epoch), owner, int(owner_epoch), str(beh), p)
        # the base of each twin: its newest snapshot (table row or snapshot record)
        base: dict[str, tuple[int, int, Any]] = {}  # twin -> (seq, revision, data)
        for tid, seq, _epoch, rev, data, _t in con.execute("SELECT * FROM snapshots"):
            base[tid] = (int(seq), int(rev), data)
        newest = dict(
            con.execute(
                "SELECT twin_id, MAX(seq) FROM records WHERE kind = 'snapshot' GROUP BY twin_id"
            ).fetchall()
        )
        for tid, seq in newest.items():
            if tid not in base or seq > base[tid][0]:
                row = con.execute(
                    "SELECT revision, data FROM records WHERE seq = ?", (seq,)
                ).fetchone()
                base[tid] = (int(seq), int(row[0]), row[1])
        state: dict[str, list[Any]] = {}  # twin -> [document, revision, last_seq]
        for tid, (seq, rev, data) in base.items():
            if tid in owns and owns[tid].status is not TwinStatus.MOVED:
                doc = self._decode(data, f"the snapshot of twin {tid!r} (seq {seq})")
                if not isinstance(doc, dict):
                    raise EdgeLogError(
                        f"edge log {self.path}: the snapshot of twin {tid!r} is not an object"
                    )
                state[tid] = [doc, rev, seq]
        replicated = self.replicated_seq
        unreplicated: list[tuple[int, float]] = []
        last = 0
        last_of: dict[str, int] = {}  # twin -> its newest record
        cur = con.execute(
            "SELECT seq, twin_id, epoch, revision, kind, data, time_s FROM records ORDER BY seq"
        )
        for seq, tid, epoch, rev, kind, data, time_s in cur:
            last = seq
            where = f"record seq {seq} (twin {tid!r}, revision {rev})"
            own = owns.get(tid)
            if own is None:
                raise EdgeLogError(
                    f"edge log {self.path}: {where} belongs to no twin this host knows"
                )
            if kind not in ("change", "snapshot"):
                raise EdgeLogError(f"edge log {self.path}: {where} has unknown kind {kind!r}")
            retired = own.status is TwinStatus.MOVED and own.owner is None
            superseded = retired or (tid in base and seq < base[tid][0])
            if epoch > own.latest_epoch and not superseded:
                raise EdgeLogError(
                    f"edge log {self.path}: {where} has epoch {epoch}, above the twin's epoch {own.latest_epoch}"
                )
            value = self._decode(data, where)
            last_of[tid] = seq
            if seq > replicated:
                unreplicated.append((seq, float(time_s)))
            st = state.get(tid)
            if st is None or seq <= st[2]:
                continue  # moved away, or folded into the base already
            if kind != "change" or rev != st[1] + 1 or not isinstance(value, dict):
                raise EdgeLogError(
                    f"edge log {self.path}: {where} does not follow revision {st[1]} of its twin "
                    "(records are missing or were altered)"
                )
            st[0] = merge_patch(st[0], value)
            st[1], st[2] = rev, seq
        twins: dict[str, RecoveredTwin] = {}
        for tid, own in owns.items():
            st = state.get(tid)
            if own.status is TwinStatus.MOVED:
                twins[tid] = RecoveredTwin(
                    own, None, 0, max(last_of.get(tid, 0), base.get(tid, (0,))[0])
                )
            elif st is None:
                raise EdgeLogError(
                    f"edge log {self.path}: twin {tid!r} is {own.status} but its state is missing"
                )
            else:
                twins[tid] = RecoveredTwin(own, st[0], st[1], st[2])
        if last > self.last_seq:
            raise EdgeLogError(
                f"edge log {self.path}: record seq {last} is above the last seq assigned ({self.last_seq})"
            )
        return Recovery(twins, self.last_seq, replicated, unreplicated)


def _own_row(o: Ownership) -> tuple[Any, ...]:
    params = json.dumps(o.behaviour_params, separators=(",", ":")).encode()
    return (o.twin_id, str(o.status), o.epoch, o.owner, o.owner_epoch, o.behaviour, params)
