"""An append-only Merkle log of one domain, persisted in SQLite.

Storage layout (one SQLite file in WAL mode):

* ``entries(idx, data)`` — the canonical JSON bytes of entry ``idx`` (0-based).
* ``nodes(id, level, start, hashes)`` — hashes of *perfect* subtrees: node
  ``(level, k)`` covers leaves ``[k * 2**level, (k+1) * 2**level)``; level 0 holds the
  leaf hashes.  Each append transaction writes, per level, the hashes of the nodes it
  completed (consecutive ``k`` from ``start``) in rows of at most 64 hashes aligned on
  multiples of 64 (``id = level << 48 | start``), so a batch of B entries costs B leaf
  hashes and about B interior hashes (amortised O(1) per entry) and ~B/32 small rows,
  and reading one node is one indexed lookup of a row that fits in a page.
* ``meta(key, value)`` — format version, domain and origin.

Every table refuses ``UPDATE`` and ``DELETE`` through triggers.  Triggers only stop
honest mistakes: someone editing the file can drop them, which is why
:mod:`twinedge.ledger.verify` re-derives every hash from the entries and compares the
result with the *signed* checkpoint.

Proofs follow RFC 9162 §2.1: every range the proof recursion needs is a perfect
subtree (one stored node) or a suffix ``[a, n)`` that folds the O(log n) perfect
subtrees of the tree's right edge, so an inclusion or consistency proof costs
O(log n) indexed reads.  The right edge of the current tree (one hash per set bit
of the size) is kept in memory and reloaded if another process appended.

Durability: ``synchronous=NORMAL`` (default) makes a committed batch survive a crash
of the process (SIGKILL); ``synchronous=FULL`` also survives power loss.  Before a
checkpoint is signed the WAL is checkpointed into the database with a full sync, so
everything a signature covers is on stable storage in both modes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from twinedge.errors import LedgerError
from twinedge.ledger import merkle
from twinedge.ledger.entry import decode_entry, encode_entries

__all__ = ["DEFAULT_ACTOR", "FORMAT", "LedgerLog"]

FORMAT = "twinedge-ledger/1"
#: The ``actor`` written for entries that do not name one.
DEFAULT_ACTOR = "twinedge"
Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries(idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE nodes(
  id INTEGER PRIMARY KEY, level INTEGER NOT NULL, start INTEGER NOT NULL,
  hashes BLOB NOT NULL
);
"""
#: A node row holds at most this many consecutive hashes (2 KiB), aligned on multiples
#: of it, so a row fits in one 4 KiB page and a lookup never walks overflow pages.
CHUNK = 64
_LEVEL_SHIFT = 48  # row id = level << 48 | start
_TABLES = ("meta", "entries", "nodes")
_TRIGGERS = "".join(
    f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} "
    f"BEGIN SELECT RAISE(ABORT, 'ledger table {t} is append-only'); END;\n"
    for t in _TABLES
    for op in ("UPDATE", "DELETE")
)
TRIGGER_NAMES = frozenset(f"{t}_no_{op}" for t in _TABLES for op in ("update", "delete"))

_sha256 = hashlib.sha256


def _as_bytes(data: object) -> bytes:
    """Stored entry data as bytes (a row edited by hand may hold TEXT or a number)."""
    if isinstance(data, bytes):
        return data
    return data.encode() if isinstance(data, str) else repr(data).encode()


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    return con


class LedgerLog:
    """One domain's append-only log.  Use :meth:`create` or :meth:`open`; close when done."""

    def __init__(self, con: sqlite3.Connection, path: Path):
        self._con = con
        self.path = Path(path)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise LedgerError(
                f"{path} is not a twinedge ledger log (format {meta.get('format')!r}, "
                f"expected {FORMAT!r})"
            )
        self.domain: str = meta["domain"]
        self.origin: str = meta["origin"]
        self._size = -1
        self._edge: dict[int, bytes] = {}
        self._refresh()

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        path: str | Path,
        domain: str,
        origin: str,
        *,
        synchronous: Synchronous = "NORMAL",
    ) -> LedgerLog:
        """Create a new, empty log file; refuses to overwrite an existing one."""
        path = Path(path)
        if path.exists():
            raise LedgerError(f"log {path} already exists; open it instead of creating it")
        con = _connect(path, synchronous)
        con.execute("BEGIN")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                con.execute(stmt)
        for stmt in _TRIGGERS.strip().split("\n"):
            con.execute(stmt)
        con.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [("format", FORMAT), ("domain", domain), ("origin", origin)],
        )
        con.execute("COMMIT")
        return cls(con, path)

    @classmethod
    def open(cls, path: str | Path, *, synchronous: Synchronous = "NORMAL") -> LedgerLog:
        """Open an existing log; raises :class:`LedgerError` if it is missing or unreadable."""
        path = Path(path)
        if not path.is_file():
            raise LedgerError(f"log {path} does not exist")
        try:
            con = _connect(path, synchronous)
            return cls(con, path)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"log {path} is unreadable or corrupt (sqlite: {exc}); "
                "run 'twinedge ledger verify' to locate the damage"
            ) from exc

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> LedgerLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LedgerLog(domain={self.domain!r}, size={self._size}, path={str(self.path)!r})"

    # ------------------------------------------------------------------ reading
    def _db_size(self) -> int:
        row = self._con.execute("SELECT MAX(idx) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _refresh(self) -> None:
        """Reload the size and the in-memory right edge if the file has grown."""
        n = self._db_size()
        if n == self._size:
            return
        edge: dict[int, bytes] = {}
        level = 0
        while n >> level:
            if (n >> level) & 1:
                edge[level] = self._node(level, (n >> level) - 1)
            level += 1
        self._size, self._edge = n, edge

    @property
    def size(self) -> int:
        """Number of entries (re-read from the file, so appends by others are seen)."""
        self._refresh()
        return self._size

    def _node(self, level: int, k: int) -> bytes:
        base = level << _LEVEL_SHIFT
        row = self._con.execute(
            "SELECT start, hashes FROM nodes WHERE id BETWEEN ? AND ? ORDER BY id DESC LIMIT 1",
            (base, base | k),
        ).fetchone()
        if row is not None:
            off = (k - row[0]) * 32
            h = row[1][off : off + 32]
            if len(h) == 32:
                return bytes(h)
        raise LedgerError(
            f"log {self.path}: stored hash of node (level {level}, index {k}) is missing; "
            "the file was damaged — run 'twinedge ledger verify'"
        )

    def _range_hasher(self) -> merkle.RangeHash:
        cache: dict[tuple[int, int], bytes] = {}

        def range_hash(start: int, end: int) -> bytes:
            key = (start, end)
            h = cache.get(key)
            if h is None:
                size = end - start
                if size & (size - 1) == 0:
                    level = size.bit_length() - 1
                    h = self._node(level, start >> level)
                else:
                    k = 1 << ((size - 1).bit_length() - 1)
                    h = merkle.node_hash(range_hash(start, start + k), range_hash(start + k, end))
                cache[key] = h
            return h

        return range_hash

    def _check_size(self, size: int | None, what: str) -> int:
        n = self.size
        if size is None:
            return n
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= n:
            raise LedgerError(f"{what} {size!r} is outside 0..{n} (the log's size)")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The Merkle tree hash of the first ``size`` entries (default: all)."""
        n = self.size
        size = self._check_size(size, "tree size")
        if size == 0:
            return merkle.EMPTY_ROOT
        if size == n:
            r: bytes | None = None
            for level in sorted(self._edge):
                h = self._edge[level]
                r = h if r is None else merkle.node_hash(h, r)
            assert r is not None
            return r
        return self._range_hasher()(0, size)

    def leaf_hash(self, index: int) -> bytes:
        """The stored leaf hash of entry ``index``."""
        self._check_index(index)
        return self._node(0, index)

    def _check_index(self, index: int, size: int | None = None) -> None:
        n = self.size if size is None else size
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise LedgerError(f"entry index {index!r} is outside 0..{n - 1} (size {n})")

    def entry_bytes(self, index: int) -> bytes:
        """The stored canonical JSON bytes of entry ``index``."""
        self._check_index(index)
        row = self._con.execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise LedgerError(f"log {self.path}: entry {index} is missing; run verify")
        return _as_bytes(row[0])

    def entry(self, index: int) -> dict[str, Any]:
        """Entry ``index`` parsed from JSON."""
        return decode_entry(self.entry_bytes(index))

    def iter_raw(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(idx, data)`` rows in index order, as stored (gaps are not filled)."""
        if end is None:
            cur = self._con.execute(
                "SELECT idx, data FROM entries WHERE idx >= ? ORDER BY idx", (start,)
            )
        else:
            cur = self._con.execute(
                "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, end),
            )
        for idx, data in cur:
            yield idx, _as_bytes(data)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield parsed entries in index order."""
        for _, data in self.iter_raw(start, end):
            yield decode_entry(data)

    def find_type(self, entry_type: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(idx, entry)`` of the entries whose ``type`` is ``entry_type``."""
        needle = f'"type":{json.dumps(entry_type)}'
        cur = self._con.execute(
            "SELECT idx, data FROM entries WHERE instr(data, ?) > 0 ORDER BY idx",
            (needle.encode(),),
        )
        for idx, data in cur:
            e = decode_entry(_as_bytes(data))
            if e.get("type") == entry_type:
                yield int(idx), e

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of the first ``size``."""
        size = self._check_size(size, "tree size")
        self._check_index(index, size)
        return merkle.inclusion_path(index, size, self._range_hasher())

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of ``old_size`` and ``new_size``."""
        new_size = self._check_size(new_size, "new tree size")
        if isinstance(old_size, bool) or not isinstance(old_size, int):
            raise LedgerError(f"old tree size {old_size!r} is not an integer")
        if not 0 <= old_size <= new_size:
            raise LedgerError(f"old tree size {old_size} is outside 0..{new_size}")
        return merkle.consistency_path(old_size, new_size, self._range_hasher())

    # ------------------------------------------------------------------ writing
    def append(self, entry: Mapping[str, Any]) -> int:
        """Append one entry; returns its index.  Prefer :meth:`append_many` for bulk."""
        return self.append_many([entry]).start

    def append_many(
        self, entries: Iterable[Mapping[str, Any]], *, actor: str = DEFAULT_ACTOR
    ) -> range:
        """Validate and append a batch of entries in one transaction; returns their indices.

        Every entry must carry this log's ``domain``.  A missing ``actor`` is filled with
        ``actor``.  Nothing is written if any entry is invalid.
        """
        return self.append_encoded(self.encode_many(entries, actor=actor))

    def encode_many(
        self,
        entries: Iterable[Mapping[str, Any]],
        *,
        actor: str = DEFAULT_ACTOR,
        positions: list[int] | None = None,
    ) -> list[bytes]:
        """Validate entries for this log and return their canonical bytes (nothing written).

        ``positions`` are the indices named in error messages (default 0, 1, ...).
        """
        return encode_entries(entries, domain=self.domain, actor=actor, positions=positions)

    def append_encoded(self, datas: list[bytes]) -> range:
        """Append entries already produced by :meth:`encode_many`, in one transaction."""
        if not datas:
            n = self.size
            return range(n, n)
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            self._refresh()
            n = self._size
            leaves = [_sha256(b"\x00" + d).digest() for d in datas]
            con.executemany(
                "INSERT INTO entries(idx, data) VALUES (?, ?)",
                zip(range(n, n + len(datas)), datas, strict=True),
            )
            rows, edge = self._grow(n, leaves)
            con.executemany("INSERT INTO nodes(id, level, start, hashes) VALUES (?, ?, ?, ?)", rows)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            self._size = -1  # force a reload next time
            raise
        self._size = n + len(datas)
        self._edge = edge
        return range(n, n + len(datas))

    def _grow(
        self, n: int, leaves: list[bytes]
    ) -> tuple[list[tuple[int, int, int, bytes]], dict[int, bytes]]:
        """Hash the perfect subtrees completed by appending ``leaves`` at index ``n``."""
        rows: list[tuple[int, int, int, bytes]] = []
        edge = dict(self._edge)
        level, a, hashes = 0, n, leaves
        while hashes:
            b = a + len(hashes)
            lo = a
            while lo < b:
                hi = min(b, (lo // CHUNK + 1) * CHUNK)
                rows.append(
                    ((level << _LEVEL_SHIFT) | lo, level, lo, b"".join(hashes[lo - a : hi - a]))
                )
                lo = hi
            if b & 1:
                edge[level] = hashes[-1]
            else:
                edge.pop(level, None)
            seq = [self._edge[level], *hashes] if a & 1 else hashes
            hashes = [
                _sha256(b"\x01" + seq[i] + seq[i + 1]).digest() for i in range(0, len(seq) - 1, 2)
            ]
            level, a = level + 1, a >> 1
        # levels above the last new node keep their old edge hash only if still set in size
        size = n + len(leaves)
        for lv in list(edge):
            if not (size >> lv) & 1:
                del edge[lv]
        return rows, edge

    def sync(self) -> None:
        """Move the WAL into the database file with a full fsync (done before signing)."""
        self._con.execute("PRAGMA wal_checkpoint(FULL)")

    # ------------------------------------------------------------------ verification helpers
    def node_level_bytes(self, level: int) -> list[tuple[int, bytes]]:
        """All stored ``(start, hashes)`` rows of one level, in order (for verification)."""
        return [
            (int(s), bytes(h))
            for s, h in self._con.execute(
                "SELECT start, hashes FROM nodes WHERE level = ? ORDER BY id", (level,)
            )
        ]

    def triggers(self) -> set[str]:
        """Names of the append-only triggers present in the file."""
        return {
            r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
