"""The SQLite store: the default, a single file next to the service.

WAL journal (readers never block the writer, https://sqlite.org/wal.html) with
``synchronous=FULL``, so a commit is on stable storage when :meth:`SQLiteStore.commit`
returns; a busy timeout so a second process waits instead of failing; one connection per
thread (``threading.local``). The schema and the behaviour are those of
:mod:`twinedge.runtime.store.sql_store`; this module holds the DDL and the bulk writes
(``executemany`` of prepared statements, which SQLite caches per connection).

URLs: ``sqlite:///abs/path.db`` (an absolute path), ``sqlite://rel/path.db`` or a bare
path (relative to the working directory), ``sqlite://:memory:`` (one in-memory database
shared by the store's connections, gone when the store closes).
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twinedge.runtime import rql
from twinedge.runtime.store.base import StoreError
from twinedge.runtime.store.sql_commit import CommitPlan
from twinedge.runtime.store.sql_store import SqlStore

BUSY_TIMEOUT_MS = 10_000
MMAP_BYTES = 1 << 30
SAFETY_CHECKPOINT_PAGES = 100_000  # ~400 MB of WAL
RESTART_CHECKPOINT_PAGES = 50_000
#: Least time between two checkpoints: the commits of that time share one (a checkpoint
#: syncs the database file; one per commit costs a commit's CPU again at low rates).
CHECKPOINT_INTERVAL_S = 0.1
_memory_ids = itertools.count()

DDL = [
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS things (
        thing_id TEXT PRIMARY KEY, domain TEXT NOT NULL, revision INTEGER NOT NULL,
        created TEXT NOT NULL, modified TEXT NOT NULL, host TEXT, host_set INTEGER NOT NULL,
        doc TEXT NOT NULL, gen INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS things_domain ON things (domain)",
    "CREATE INDEX IF NOT EXISTS things_modified ON things (modified)",
    "CREATE INDEX IF NOT EXISTS things_host ON things (host)",
    """CREATE TABLE IF NOT EXISTS fields (
        thing_id TEXT NOT NULL, path TEXT NOT NULL, kind INTEGER NOT NULL, num REAL, str TEXT,
        PRIMARY KEY (thing_id, path)) WITHOUT ROWID""",
    # partial indexes, one per kind of row, so a changed number touches one index only
    "CREATE INDEX IF NOT EXISTS fields_num ON fields (path, kind, num) WHERE num IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS fields_str ON fields (path, str) WHERE str IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS fields_node ON fields (path, kind) WHERE num IS NULL AND str IS NULL",
    """CREATE TABLE IF NOT EXISTS history (
        thing_id TEXT NOT NULL, gen INTEGER NOT NULL, revision INTEGER NOT NULL,
        time REAL NOT NULL, source TEXT NOT NULL, actor TEXT NOT NULL, ops TEXT NOT NULL,
        created TEXT, modified TEXT, domain TEXT NOT NULL, host TEXT, host_set INTEGER NOT NULL,
        snapshot TEXT, deleted INTEGER NOT NULL,
        PRIMARY KEY (thing_id, gen, revision)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS groups (
        domain TEXT NOT NULL, name TEXT NOT NULL, filter TEXT, members TEXT NOT NULL,
        created REAL NOT NULL, PRIMARY KEY (domain, name))""",
    """CREATE TABLE IF NOT EXISTS group_members (
        gkey TEXT NOT NULL, thing_id TEXT NOT NULL, PRIMARY KEY (gkey, thing_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS group_members_thing ON group_members (thing_id)",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, domain TEXT NOT NULL,
        role TEXT NOT NULL, created REAL NOT NULL, extra TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS device_secrets (
        thing_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS grants (
        grantor TEXT NOT NULL, grantee TEXT NOT NULL, filter TEXT NOT NULL, role TEXT NOT NULL,
        PRIMARY KEY (grantor, grantee, filter))""",
    "CREATE INDEX IF NOT EXISTS grants_grantee ON grants (grantee)",
    """CREATE TABLE IF NOT EXISTS namespaces (
        ns TEXT PRIMARY KEY, domain TEXT NOT NULL, created REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS edge_replica (
        thing_id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, revision INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS privacy_budgets (
        owner TEXT NOT NULL, consumer TEXT NOT NULL,
        epsilon_nano INTEGER NOT NULL, delta_femto INTEGER NOT NULL,
        spent_epsilon_nano INTEGER NOT NULL, spent_delta_femto INTEGER NOT NULL,
        PRIMARY KEY (owner, consumer))""",
]

UPSERT_FIELD = (
    "INSERT INTO fields (thing_id, path, kind, num, str) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (thing_id, path) DO UPDATE SET kind = excluded.kind, num = excluded.num, "
    "str = excluded.str"
)
UPSERT_THING = (
    "INSERT INTO things (thing_id, domain, revision, created, modified, host, host_set, doc, gen) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (thing_id) DO UPDATE SET "
    "domain = excluded.domain, revision = excluded.revision, created = excluded.created, "
    "modified = excluded.modified, host = excluded.host, host_set = excluded.host_set, "
    "doc = excluded.doc, gen = excluded.gen"
)

UPDATE_THING = (
    "INSERT INTO things (thing_id, domain, revision, created, modified, host, host_set, doc, gen) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (thing_id) DO UPDATE SET "
    "revision = excluded.revision, modified = excluded.modified, doc = excluded.doc"
)
UPDATE_THING_RARE = (
    "UPDATE things SET domain = ?, created = ?, host = ?, host_set = ? WHERE thing_id = ? "
    "AND NOT (domain = ? AND created = ? AND host IS ? AND host_set = ?)"
)


def sqlite_path(url: str) -> str:
    """The file path (or ``:memory:``) a SQLite URL or a bare path names."""
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if rest.startswith("//"):
            rest = rest[2:]
        if not rest:
            raise StoreError(
                f"the SQLite URL {url!r} names no file; use sqlite:///path/to/twins.db"
            )
        return ":memory:" if rest in (":memory:", "/:memory:") else rest
    return url


class _Checkpointer:
    """Copies the WAL back into the database on a thread of its own after commits.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, which
    for batches of random updates (thousands of pages each) is most commits and doubles
    their latency. A PASSIVE checkpoint from another connection runs concurrently with
    the writer and readers (https://sqlite.org/wal.html#ckpt); durability is unaffected,
    since a commit is durable once its WAL frames are synced. The commits of
    :data:`CHECKPOINT_INTERVAL_S` after a checkpoint share the next one.
    """

    def __init__(self, store: SQLiteStore):
        self._store = store
        self._event = threading.Event()
        self._halt = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="twinedge-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def kick(self) -> None:
        self._event.set()

    def stop(self) -> None:
        self._stopping = True
        self._halt.set()
        self._event.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = self._store._open()
        try:
            while not self._stopping:
                self._event.wait(1.0)
                self._event.clear()
                if self._stopping:
                    break
                with contextlib.suppress(sqlite3.Error):
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames > RESTART_CHECKPOINT_PAGES:  # let the WAL start over
                        conn.execute("PRAGMA wal_checkpoint(RESTART)")
                self._halt.wait(CHECKPOINT_INTERVAL_S)  # commits meanwhile: one checkpoint
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()


class SQLiteStore(SqlStore):
    """The store on one SQLite file (WAL, ``synchronous=FULL``, a connection per thread)."""

    dialect = rql.SQLITE

    def __init__(self, path_or_url: str | Path):
        url = str(path_or_url)
        super().__init__(url if url.startswith("sqlite:") else f"sqlite://{url}")
        self.path = sqlite_path(url)
        self._keeper: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None
        self._checkpointer_lock = threading.Lock()
        if self.path == ":memory:":
            self._target = f"file:twinedge-mem-{next(_memory_ids)}?mode=memory&cache=shared"
            self._keeper = self._open()  # keeps the shared in-memory database alive
        else:
            p = Path(self.path)
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder of the SQLite database {p}: {e}") from e
            self._target = str(p)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
                uri=self._target.startswith("file:"),
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # checkpoints run on a thread of their own (see _Checkpointer); this is only the
            # safety net should it fall far behind
            conn.execute(f"PRAGMA wal_autocheckpoint = {SAFETY_CHECKPOINT_PAGES}")
            if self.path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(
                        f"SQLite refused WAL mode for {self.path} (got {mode}); put the database "
                        "on a local file system"
                    )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")  # reads share the OS page cache
            return conn
        except sqlite3.Error as e:
            raise StoreError(
                f"cannot open the SQLite database {self.path}: {e} (is the folder writable?)"
            ) from e

    def _connect(self) -> sqlite3.Connection:
        return self._open()

    def _after_commit(self) -> None:
        if self.path == ":memory:":
            return
        cp = self._checkpointer  # read once: close() may clear it from another thread
        if cp is None:
            with self._checkpointer_lock:
                if self._checkpointer is None and not self._closed:
                    self._checkpointer = _Checkpointer(self)
                cp = self._checkpointer
        if cp is not None:  # None: the store is closed
            cp.kick()

    def close(self) -> None:
        with self._checkpointer_lock:
            cp, self._checkpointer = self._checkpointer, None
        if cp is not None:
            cp.stop()
        super().close()
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    def _ddl(self) -> list[str]:
        return DDL

    def _is_db_error(self, e: Exception) -> bool:
        return isinstance(e, sqlite3.Error)

    @contextlib.contextmanager
    def _tx(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read_tx(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def _apply(self, conn: Any, plan: CommitPlan) -> None:
        m = self._many
        m(conn, "DELETE FROM group_members WHERE thing_id = ?", [(t,) for t in plan.member_clear])
        m(conn, "DELETE FROM things WHERE thing_id = ?", [(t,) for t in plan.things_delete])
        m(conn, "DELETE FROM fields WHERE thing_id = ?", [(t,) for t in plan.fields_clear])
        m(
            conn,
            "DELETE FROM fields WHERE thing_id = ? AND path >= ? AND path < ?",
            plan.fields_delete_below,
        )
        m(conn, "DELETE FROM fields WHERE thing_id = ? AND path = ?", plan.fields_delete)
        m(
            conn,
            "INSERT INTO fields (thing_id, path, kind, num, str) VALUES (?, ?, ?, ?, ?)",
            plan.fields_insert,
        )
        m(conn, UPSERT_FIELD, plan.fields_upsert)
        m(conn, UPSERT_THING, plan.things_upsert)
        if plan.things_update:
            # an update sets only what every change changes, so SQLite leaves the indexes
            # of the other columns alone; the rare change of those is a second statement
            m(conn, UPDATE_THING, plan.things_update)
            m(
                conn,
                UPDATE_THING_RARE,
                [
                    (r[1], r[3], r[5], r[6], r[0], r[1], r[3], r[5], r[6])
                    for r in plan.things_update
                ],
            )
        m(
            conn,
            "INSERT INTO history (thing_id, gen, revision, time, source, actor, ops, created, "
            "modified, domain, host, host_set, snapshot, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            plan.history,
        )
        m(conn, "DELETE FROM group_members WHERE gkey = ? AND thing_id = ?", plan.member_remove)
        m(
            conn,
            "INSERT INTO group_members (gkey, thing_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            plan.member_add,
        )
