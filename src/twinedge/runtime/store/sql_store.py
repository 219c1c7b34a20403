"""Storage of the SQL stores: the schema, and everything written and read by key.

One schema in two dialects (``sqlite.py`` and ``postgres.py`` hold the DDL):

* ``things(thing_id, domain, revision, created, modified, host, host_set, doc, gen)`` —
  the current document as JSON text plus the service fields as typed, indexed columns.
* ``fields(thing_id, path, kind, num, str)`` — every node of every document except the
  service fields, flattened: ``path`` is the JSON Pointer without the leading ``/``,
  ``kind`` the JSON kind (0 null, 1 bool, 2 number, 3 string, 4 object, 5 array), ``num``
  the number (or 0/1 for a bool), ``str`` the string. Three partial indexes, one per
  kind of row: ``(path, kind, num)``, ``(path, str)`` and ``(path, kind)`` for the rest,
  so a changed number touches one index only and an RQL filter
  (:mod:`twinedge.runtime.rql`) is a handful of index range scans:
  ``eq(attributes/kind,"car")`` is ``thing_id IN (SELECT thing_id FROM fields WHERE path
  = 'attributes/kind' AND kind = 3 AND str = 'car')``.
* ``history(thing_id, gen, revision, time, source, actor, ops, created, modified, domain,
  host, host_set, snapshot, deleted)`` — one row per change (with its service fields);
  ``snapshot`` (the full document) at a creation and every
  :data:`~twinedge.runtime.store.sql_commit.SNAPSHOT_EVERY` revisions, so an as-of read
  replays at most that many patches (the event-sourcing "snapshot + replay" of Fowler's
  Event Sourcing pattern, as Ditto's snapshot store does). ``gen`` numbers the
  incarnations of a thing id: a thing deleted and created again starts at revision 1 in
  a new ``gen``.
* ``edge_replica(thing_id, epoch, revision)`` — where the core stands in the replication
  of a twin that lives on an edge host (:mod:`twinedge.runtime.core.replica`): written
  in the transaction of the change that applies a record (:attr:`Change.edge`), so a
  crash never applies a record twice; removed with the thing.
* ``groups``, ``group_members``, ``api_keys``, ``device_secrets``, ``grants``,
  ``namespaces`` — plain tables.
* ``privacy_budgets(owner, consumer, ...)`` — the differential-privacy budget an owner
  domain gives a consumer domain and what it has spent, in whole nano-ε and femto-δ
  (integers, so the accounting is exact); spent by one conditional ``UPDATE``.

:class:`SqlStore` owns the connections (one per thread) and the transactions: it
migrates the schema, commits a batch (the rows come from
:func:`~twinedge.runtime.store.sql_commit.build_plan`, the dialect writes them in one
transaction), loads the twins, reads a thing as of a revision or a time, pages and
prunes history, and keeps groups, API keys, device credentials, namespaces and grants.
A search, a count or an aggregate is one statement planned by
:mod:`twinedge.runtime.store.sql_query`, which the store only runs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from twinedge import jsontext
from twinedge.errors import InvalidInput
from twinedge.runtime import rql
from twinedge.runtime.store.base import (
    ApiKey,
    Change,
    EdgePosition,
    Grant,
    GroupSpec,
    PrivacyBudget,
    Scope,
    SearchPage,
    SearchQuery,
    StoreError,
)
from twinedge.runtime.store.sql_commit import CommitPlan, build_plan
from twinedge.runtime.store.sql_query import (
    decode_cursor,
    encode_cursor,
    plan_aggregate,
    plan_count,
    plan_search,
)
from twinedge.runtime.things import apply_json_patch

SCHEMA_VERSION = 1
_CHUNK = 500
_ENCODE = jsontext.dumps


class SqlStore:
    """The behaviour both SQL stores share; a dialect subclass supplies connections, DDL
    and the bulk writes (:meth:`_apply`)."""

    url: str
    dialect: rql.SqlDialect

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._gens: dict[str, tuple[int, bool]] = {}

    # --- dialect hooks ------------------------------------------------------------------
    def _connect(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql

    @contextlib.contextmanager
    def _tx(self, conn: Any) -> Iterator[None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _apply(self, conn: Any, plan: CommitPlan) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ddl(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _iter_docs(self, conn: Any) -> Iterator[tuple[str, int, str]]:
        cur = conn.execute("SELECT thing_id, gen, doc FROM things")
        while rows := cur.fetchmany(1000):
            yield from rows

    # --- connections --------------------------------------------------------------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"the store {self._safe_url()} is closed; open a new one")
            conn = self._connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _safe_url(self) -> str:
        return self.url

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn().execute(self._sql(sql), list(params))
        return cur.fetchall()

    def _exec(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> int:
        cur = conn.execute(self._sql(sql), list(params))
        return cur.rowcount

    def _many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            conn.cursor().executemany(self._sql(sql), rows)

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()
        self._local = threading.local()

    def migrate(self) -> None:
        conn = self._conn()
        with self._tx(conn):
            for stmt in self._ddl():
                self._exec(conn, stmt)
            rows = conn.execute("SELECT version FROM schema_version").fetchall()
            if not rows:
                self._exec(
                    conn, "INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION]
                )
            elif rows[0][0] > SCHEMA_VERSION:
                raise StoreError(
                    f"the database {self._safe_url()} has schema version {rows[0][0]}, newer "
                    f"than this twinedge understands ({SCHEMA_VERSION}); upgrade twinedge"
                )

    # --- twins --------------------------------------------------------------------------
    def load_things(self) -> Iterator[dict[str, Any]]:
        gens = self._gens
        for tid, gen, doc in self._iter_docs(self._conn()):
            gens.setdefault(tid, (gen, True))  # warms the cache the next commits need
            yield json.loads(doc)

    def commit(
        self, changes: Sequence[Change], namespaces: Sequence[tuple[str, str, float]] = ()
    ) -> None:
        if not changes and not namespaces:
            return
        with self._write_lock:
            conn = self._conn()
            saved = dict(self._gens)
            try:
                with self._tx(conn):
                    self._load_gens(conn, {ch.thing_id for ch in changes})
                    plan = build_plan(changes, self._gens)
                    self._apply(conn, plan)
                    # credentials belong to one incarnation: a deletion takes them along
                    self._many(
                        conn,
                        "DELETE FROM device_secrets WHERE thing_id = ?",
                        [(t,) for t in plan.member_clear],
                    )
                    self._write_edge(conn, plan.edge_delete, plan.edge_upsert)
                    self._many(
                        conn,
                        "INSERT INTO namespaces (ns, domain, created) VALUES (?, ?, ?) "
                        "ON CONFLICT (ns) DO NOTHING",
                        namespaces,
                    )
                self._after_commit()
            except StoreError:
                self._gens = saved
                raise
            except Exception as e:
                self._gens = saved
                if not self._is_db_error(e):
                    raise
                hint = ""
                if "unique" in str(e).lower() or "duplicate" in str(e).lower():
                    hint = " (two changes of one thing with the same revision in the batch, or a revision already stored?)"
                raise StoreError(
                    f"commit of {len(changes)} changes failed and was rolled back, nothing of "
                    f"it was stored: {str(e).strip()}{hint}"
                ) from e

    def _write_edge(
        self, conn: Any, delete: Sequence[str], upsert: Sequence[tuple[str, int, int]]
    ) -> None:
        self._many(conn, "DELETE FROM edge_replica WHERE thing_id = ?", [(t,) for t in delete])
        self._many(
            conn,
            "INSERT INTO edge_replica (thing_id, epoch, revision) VALUES (?, ?, ?) "
            "ON CONFLICT (thing_id) DO UPDATE SET epoch = excluded.epoch, "
            "revision = excluded.revision",
            upsert,
        )

    def load_edge_positions(self) -> dict[str, EdgePosition]:
        rows = self._query("SELECT thing_id, epoch, revision FROM edge_replica")
        return {t: (int(e), int(r)) for t, e, r in rows}

    def set_edge_position(self, thing_id: str, position: EdgePosition | None) -> None:
        with self._write_lock:
            conn = self._conn()
            with self._tx(conn):
                if position is None:
                    self._write_edge(conn, [thing_id], [])
                else:
                    self._write_edge(conn, [], [(thing_id, int(position[0]), int(position[1]))])

    def _is_db_error(self, e: Exception) -> bool:  # pragma: no cover - overridden
        return False

    def _after_commit(self) -> None:
        """Called after each successful commit (SQLite schedules a checkpoint)."""

    def _load_gens(self, conn: Any, ids: set[str]) -> None:
        """Fill the cache of incarnations (from ``things.gen``, else from history)."""
        missing = [i for i in ids if i not in self._gens]
        for k in range(0, len(missing), _CHUNK):
            chunk = missing[k : k + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT thing_id, gen FROM things WHERE thing_id IN ({marks})"
            for tid, gen in conn.execute(self._sql(sql), chunk).fetchall():
                self._gens[tid] = (gen, True)
            rest = [i for i in chunk if i not in self._gens]
            if rest:
                marks = ", ".join("?" * len(rest))
                sql = f"SELECT thing_id, MAX(gen) FROM history WHERE thing_id IN ({marks}) GROUP BY thing_id"
                for tid, gen in conn.execute(self._sql(sql), rest).fetchall():
                    self._gens[tid] = (gen, False)

    def thing_at(
        self, thing_id: str, *, revision: int | None = None, at: float | None = None
    ) -> dict[str, Any] | None:
        if revision is not None and at is not None:
            raise InvalidInput("ask for a revision or a time (at), not both", "/at")
        if revision is None and at is None:
            rows = self._query("SELECT doc FROM things WHERE thing_id = ?", [thing_id])
            return json.loads(rows[0][0]) if rows else None
        conn = self._conn()
        with self._read_tx(conn):
            if at is not None:
                rows = self._query(
                    "SELECT gen, revision, deleted FROM history WHERE thing_id = ? AND time <= ? "
                    "ORDER BY gen DESC, revision DESC LIMIT 1",
                    [thing_id, float(at)],
                )
            else:
                assert revision is not None  # asking for neither was answered above
                rows = self._query(
                    "SELECT gen, revision, deleted FROM history WHERE thing_id = ? AND revision = ? "
                    "AND gen = (SELECT MAX(gen) FROM history WHERE thing_id = ?)",
                    [thing_id, int(revision), thing_id],
                )
            if not rows or rows[0][2]:
                return None
            gen, rev = rows[0][0], rows[0][1]
            snap = self._query(
                "SELECT revision, snapshot FROM history WHERE thing_id = ? AND gen = ? "
                "AND revision <= ? AND snapshot IS NOT NULL ORDER BY revision DESC LIMIT 1",
                [thing_id, gen, rev],
            )
            if not snap:
                return None
            srev, doc = snap[0][0], json.loads(snap[0][1])
            if srev == rev:
                return doc
            rows = self._query(
                "SELECT ops, revision, created, modified, domain, host, host_set FROM history "
                "WHERE thing_id = ? AND gen = ? AND revision > ? AND revision <= ? "
                "ORDER BY revision",
                [thing_id, gen, srev, rev],
            )
        ops: list[dict[str, Any]] = []
        for row in rows:
            ops.extend(json.loads(row[0]))
        doc = apply_json_patch(doc, ops)
        _, revision, created, modified, domain, host, host_set = rows[-1]
        doc.update(_revision=revision, _created=created, _modified=modified, _domain=domain)
        if host_set:
            doc["_host"] = host
        else:
            doc.pop("_host", None)
        return doc

    @contextlib.contextmanager
    def _read_tx(self, conn: Any) -> Iterator[None]:
        """A consistent snapshot for several reads (dialects override)."""
        yield

    def history(
        self,
        thing_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        after_revision: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        # only the current (or last) incarnation: a thing created again after a
        # deletion starts a new history
        where = ["thing_id = ?", "gen = (SELECT MAX(gen) FROM history WHERE thing_id = ?)"]
        params: list[Any] = [thing_id, thing_id]
        if since is not None:
            where.append("time >= ?")
            params.append(float(since))
        if until is not None:
            where.append("time < ?")
            params.append(float(until))
        if after_revision:
            where.append("revision > ?")
            params.append(int(after_revision))
        params.append(max(0, int(limit)))
        rows = self._query(
            "SELECT revision, time, source, actor, ops, deleted FROM history WHERE "
            + " AND ".join(where)
            + " ORDER BY revision LIMIT ?",
            params,
        )
        return [
            {
                "revision": r,
                "time": t,
                "source": s,
                "actor": a,
                "ops": json.loads(o),
                "deleted": bool(d),
            }
            for r, t, s, a, o, d in rows
        ]

    def prune_history(self, before: float) -> int:
        # Per thing, R = its last row before ``before`` (the state as-of reads at or after
        # ``before`` start from). Keep R and what follows; keep the newest snapshot at or
        # before R (in R's incarnation); drop everything older. A thing whose last row
        # before ``before`` is its deletion needs none of those rows.
        sql = """
        WITH r AS (
            SELECT thing_id, gen, revision, deleted FROM (
                SELECT thing_id, gen, revision, deleted, ROW_NUMBER() OVER (
                    PARTITION BY thing_id ORDER BY gen DESC, revision DESC) AS rn
                FROM history WHERE time < ?) x
            WHERE rn = 1),
        b AS (
            SELECT r.thing_id, r.gen, CASE WHEN r.deleted = 1 THEN r.revision + 1 ELSE COALESCE(
                (SELECT MAX(s.revision) FROM history s WHERE s.thing_id = r.thing_id
                 AND s.gen = r.gen AND s.revision <= r.revision AND s.snapshot IS NOT NULL),
                0) END AS rev
            FROM r)
        DELETE FROM history WHERE EXISTS (
            SELECT 1 FROM b WHERE b.thing_id = history.thing_id
            AND (history.gen < b.gen OR (history.gen = b.gen AND history.revision < b.rev)))
        """
        with self._write_lock:
            conn = self._conn()
            with self._tx(conn):
                n = self._exec(conn, sql, [float(before)])
                if n < 0:  # Python's sqlite3 reports no rowcount for WITH ... DELETE
                    n = conn.execute("SELECT changes()").fetchone()[0]
                return n

    # --- search -------------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchPage:
        plan = plan_search(query, self.dialect)
        return plan.page(self._query(plan.sql, plan.params))

    def count(self, filter: str | None, scope: Scope) -> int:
        sql, params = plan_count(filter, scope, self.dialect)
        return int(self._query(sql, params)[0][0])

    def aggregate(
        self, filter: str | None, scope: Scope, group_by: str, fn: str, field: str | None
    ) -> list[dict[str, Any]]:
        plan = plan_aggregate(filter, scope, group_by, fn, field, self.dialect)
        return plan.results(self._query(plan.sql, plan.params))

    # --- groups -------------------------------------------------------------------------
    def put_group(self, spec: GroupSpec, members: Sequence[str]) -> None:
        if spec.filter:
            rql.parse(spec.filter)
        key = f"{spec.domain}/{spec.name}"
        with self._write_lock:
            conn = self._conn()
            with self._tx(conn):
                self._exec(
                    conn,
                    "DELETE FROM groups WHERE domain = ? AND name = ?",
                    [spec.domain, spec.name],
                )
                self._exec(
                    conn,
                    "INSERT INTO groups (domain, name, filter, members, created) VALUES (?, ?, ?, ?, ?)",
                    [
                        spec.domain,
                        spec.name,
                        spec.filter,
                        _ENCODE(list(spec.members)),
                        float(spec.created),
                    ],
                )
                self._exec(conn, "DELETE FROM group_members WHERE gkey = ?", [key])
                self._many(
                    conn,
                    "INSERT INTO group_members (gkey, thing_id) VALUES (?, ?)",
                    [(key, m) for m in dict.fromkeys(members)],
                )

    def delete_group(self, domain: str, name: str) -> bool:
        with self._write_lock:
            conn = self._conn()
            with self._tx(conn):
                n = self._exec(
                    conn, "DELETE FROM groups WHERE domain = ? AND name = ?", [domain, name]
                )
                self._exec(conn, "DELETE FROM group_members WHERE gkey = ?", [f"{domain}/{name}"])
        return n > 0

    def groups(self, domain: str | None = None) -> list[GroupSpec]:
        sql = "SELECT domain, name, filter, members, created FROM groups"
        params: list[Any] = []
        if domain is not None:
            sql += " WHERE domain = ?"
            params.append(domain)
        rows = self._query(sql + " ORDER BY domain, name", params)
        return [GroupSpec(d, n, f, tuple(json.loads(m)), c) for d, n, f, m, c in rows]

    def group_members(
        self, domain: str, name: str, *, limit: int = 1000, cursor: str | None = None
    ) -> tuple[list[str], str | None]:
        if not 1 <= limit <= 100_000:
            raise InvalidInput(f"limit must lie in 1..100000, got {limit}", "/limit")
        after = ""
        if cursor:
            c = decode_cursor(cursor)
            if not isinstance(c, dict) or not isinstance(c.get("m"), str):
                raise InvalidInput("the cursor is not a group-members cursor", "/cursor")
            after = c["m"]  # decode_cursor refused text the store cannot hold
        rows = self._query(
            "SELECT thing_id FROM group_members WHERE gkey = ? AND thing_id > ? ORDER BY thing_id LIMIT ?",
            [f"{domain}/{name}", after, limit + 1],
        )
        ids = [r[0] for r in rows[:limit]]
        nxt = encode_cursor({"m": ids[-1]}) if len(rows) > limit else None
        return ids, nxt

    # --- access -------------------------------------------------------------------------
    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._write_lock:
            conn = self._conn()
            with self._tx(conn):
                return self._exec(conn, sql, params)

    def put_api_key(self, key: ApiKey) -> None:
        self._write(
            "INSERT INTO api_keys (key_id, secret_hash, domain, role, created, extra) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET secret_hash = excluded.secret_hash, domain = excluded.domain, "
            "role = excluded.role, created = excluded.created, extra = excluded.extra",
            [
                key.key_id,
                key.secret_hash,
                key.domain,
                key.role,
                float(key.created),
                _ENCODE(key.extra),
            ],
        )

    def get_api_key(self, key_id: str) -> ApiKey | None:
        rows = self._query(
            "SELECT key_id, secret_hash, domain, role, created, extra FROM api_keys WHERE key_id = ?",
            [key_id],
        )
        if not rows:
            return None
        k, h, d, r, c, e = rows[0]
        return ApiKey(k, h, d, r, c, json.loads(e))

    def put_device_secret(self, thing_id: str, secret_hash: str) -> None:
        self._write(
            "INSERT INTO device_secrets (thing_id, secret_hash) VALUES (?, ?) "
            "ON CONFLICT (thing_id) DO UPDATE SET secret_hash = excluded.secret_hash",
            [thing_id, secret_hash],
        )

    def namespaces(self) -> dict[str, str]:
        return dict(self._query("SELECT ns, domain FROM namespaces ORDER BY ns"))

    def put_namespace(self, ns: str, domain: str, created: float) -> None:
        self._write(
            "INSERT INTO namespaces (ns, domain, created) VALUES (?, ?, ?) "
            "ON CONFLICT (ns) DO UPDATE SET domain = excluded.domain",
            [ns, domain, float(created)],
        )

    def get_device_secret(self, thing_id: str) -> str | None:
        rows = self._query("SELECT secret_hash FROM device_secrets WHERE thing_id = ?", [thing_id])
        return rows[0][0] if rows else None

    def put_grant(self, grant: Grant) -> None:
        rql.parse(grant.filter)
        if grant.role not in ("read", "write", "aggregate"):
            raise InvalidInput(
                f"a grant's role is read, write or aggregate, got {grant.role!r}", "/role"
            )
        self._write(
            "INSERT INTO grants (grantor, grantee, filter, role) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grantor, grantee, filter) DO UPDATE SET role = excluded.role",
            [grant.grantor, grant.grantee, grant.filter, grant.role],
        )

    def delete_grant(self, grant: Grant) -> bool:
        n = self._write(
            "DELETE FROM grants WHERE grantor = ? AND grantee = ? AND filter = ? AND role = ?",
            [grant.grantor, grant.grantee, grant.filter, grant.role],
        )
        return n > 0

    def grants_for(self, grantee: str) -> list[Grant]:
        rows = self._query(
            "SELECT grantor, grantee, filter, role FROM grants WHERE grantee = ? ORDER BY grantor, filter",
            [grantee],
        )
        return [Grant(*r) for r in rows]

    def grants_from(self, grantor: str | None) -> list[Grant]:
        where, params = ("WHERE grantor = ? ", [grantor]) if grantor is not None else ("", [])
        rows = self._query(
            f"SELECT grantor, grantee, filter, role FROM grants {where}"
            "ORDER BY grantor, grantee, filter",
            params,
        )
        return [Grant(*r) for r in rows]

    # --- privacy budgets -------------------------------------------------------------------
    def put_privacy_budget(self, budget: PrivacyBudget) -> PrivacyBudget:
        """Set the budget ``owner`` gives ``consumer``; what was spent stays (a budget
        lowered below it is spent out)."""
        with self._write_lock:
            conn = self._conn()
            with self._tx(conn):
                self._exec(
                    conn,
                    "INSERT INTO privacy_budgets (owner, consumer, epsilon_nano, delta_femto, "
                    "spent_epsilon_nano, spent_delta_femto) VALUES (?, ?, ?, ?, 0, 0) "
                    "ON CONFLICT (owner, consumer) DO UPDATE SET "
                    "epsilon_nano = excluded.epsilon_nano, delta_femto = excluded.delta_femto",
                    [budget.owner, budget.consumer, budget.epsilon_nano, budget.delta_femto],
                )
                rows = conn.execute(
                    self._sql(_BUDGET_SELECT + " WHERE owner = ? AND consumer = ?"),
                    [budget.owner, budget.consumer],
                ).fetchall()
        return PrivacyBudget(*rows[0])

    def privacy_budgets(self, owner: str) -> list[PrivacyBudget]:
        rows = self._query(_BUDGET_SELECT + " WHERE owner = ? ORDER BY consumer", [owner])
        return [PrivacyBudget(*r) for r in rows]

    def privacy_budget(self, owner: str, consumer: str) -> PrivacyBudget | None:
        rows = self._query(_BUDGET_SELECT + " WHERE owner = ? AND consumer = ?", [owner, consumer])
        return PrivacyBudget(*rows[0]) if rows else None

    def delete_privacy_budget(self, owner: str, consumer: str) -> bool:
        n = self._write(
            "DELETE FROM privacy_budgets WHERE owner = ? AND consumer = ?", [owner, consumer]
        )
        return n > 0

    def spend_privacy_budget(
        self, owner: str, consumer: str, epsilon_nano: int, delta_femto: int
    ) -> bool:
        """Spend from the budget in one conditional ``UPDATE`` (atomic in SQLite and
        PostgreSQL alike: two spenders never both pass the check); ``False`` when the
        rest does not cover it (or there is no budget)."""
        n = self._write(
            "UPDATE privacy_budgets SET spent_epsilon_nano = spent_epsilon_nano + ?, "
            "spent_delta_femto = spent_delta_femto + ? WHERE owner = ? AND consumer = ? "
            "AND spent_epsilon_nano + ? <= epsilon_nano AND spent_delta_femto + ? <= delta_femto",
            [epsilon_nano, delta_femto, owner, consumer, epsilon_nano, delta_femto],
        )
        return n > 0


_BUDGET_SELECT = (
    "SELECT owner, consumer, epsilon_nano, delta_femto, spent_epsilon_nano, spent_delta_femto "
    "FROM privacy_budgets"
)
