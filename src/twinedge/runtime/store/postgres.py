"""The PostgreSQL store (psycopg 3): the same schema and behaviour as SQLite.

For a service that outgrows one file, or that runs several readers on other machines.
Texts the search compares (ids, paths, string values) use ``COLLATE "C"`` so ordering is
by code point, exactly as in SQLite and in Python, whatever the database's locale. A
batch is written with one statement per table, passing columns as arrays to
``unnest`` (PostgreSQL docs, "Array Functions"), instead of one statement per row.
B-tree entries are limited to about a third of a page, so string values are indexed by
their first 256 characters (``left(str, 256)``); :mod:`twinedge.runtime.rql` adds the
matching prefix condition. JSON documents are kept as ``text`` so they come back
byte-for-byte as stored, like SQLite's (``jsonb`` would reorder keys). PostgreSQL text
cannot hold NUL characters: a document containing ``\\u0000`` is refused at commit.

Needs PostgreSQL 14 or newer. URL: ``postgresql://user:password@host:5432/dbname`` (any libpq connection string, e.g.
``?options=-csearch_path%3Dtwins`` to use a schema).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from twinedge.runtime import rql
from twinedge.runtime.store.base import StoreError
from twinedge.runtime.store.sql_commit import CommitPlan
from twinedge.runtime.store.sql_store import SqlStore

try:
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the dependency
    psycopg = None  # type: ignore[assignment]

C = 'COLLATE "C"'
DDL = [
    "SELECT pg_advisory_xact_lock(7307125)",  # one migrating process at a time
    "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS things (
        thing_id text {C} PRIMARY KEY, domain text {C} NOT NULL, revision bigint NOT NULL,
        created text {C} NOT NULL, modified text {C} NOT NULL, host text {C},
        host_set smallint NOT NULL, doc text NOT NULL, gen integer NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS things_domain ON things (domain)",
    "CREATE INDEX IF NOT EXISTS things_modified ON things (modified)",
    "CREATE INDEX IF NOT EXISTS things_host ON things (host)",
    f"""CREATE TABLE IF NOT EXISTS fields (
        thing_id text {C} NOT NULL, path text {C} NOT NULL, kind smallint NOT NULL,
        num double precision, str text {C}, PRIMARY KEY (thing_id, path))""",
    # partial indexes, one per kind of row, covering thing_id for index-only scans
    "CREATE INDEX IF NOT EXISTS fields_num ON fields (path, kind, num) INCLUDE (thing_id) "
    "WHERE num IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS fields_str ON fields (path, left(str, {rql.POSTGRES.index_prefix})) "
    "INCLUDE (thing_id) WHERE str IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS fields_node ON fields (path, kind) INCLUDE (thing_id) "
    "WHERE num IS NULL AND str IS NULL",
    # path and value are far from independent; without these the planner misjudges how
    # many things match and fetches rows it could have skipped (PostgreSQL 14+)
    f"CREATE STATISTICS IF NOT EXISTS fields_path_str (mcv) ON path, "
    f"(left(str, {rql.POSTGRES.index_prefix})) FROM fields",
    "CREATE STATISTICS IF NOT EXISTS fields_path_num (mcv, dependencies) ON path, kind, num "
    "FROM fields",
    f"""CREATE TABLE IF NOT EXISTS history (
        thing_id text {C} NOT NULL, gen integer NOT NULL, revision bigint NOT NULL,
        time double precision NOT NULL, source text NOT NULL, actor text NOT NULL,
        ops text NOT NULL, created text, modified text, domain text NOT NULL, host text,
        host_set smallint NOT NULL, snapshot text, deleted smallint NOT NULL,
        PRIMARY KEY (thing_id, gen, revision))""",
    f"""CREATE TABLE IF NOT EXISTS groups (
        domain text {C} NOT NULL, name text {C} NOT NULL, filter text, members text NOT NULL,
        created double precision NOT NULL, PRIMARY KEY (domain, name))""",
    f"""CREATE TABLE IF NOT EXISTS group_members (
        gkey text {C} NOT NULL, thing_id text {C} NOT NULL, PRIMARY KEY (gkey, thing_id))""",
    "CREATE INDEX IF NOT EXISTS group_members_thing ON group_members (thing_id)",
    f"""CREATE TABLE IF NOT EXISTS api_keys (
        key_id text {C} PRIMARY KEY, secret_hash text NOT NULL, domain text NOT NULL,
        role text NOT NULL, created double precision NOT NULL, extra text NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS device_secrets (
        thing_id text {C} PRIMARY KEY, secret_hash text NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS grants (
        grantor text {C} NOT NULL, grantee text {C} NOT NULL, filter text {C} NOT NULL,
        role text NOT NULL, PRIMARY KEY (grantor, grantee, filter))""",
    "CREATE INDEX IF NOT EXISTS grants_grantee ON grants (grantee)",
    f"""CREATE TABLE IF NOT EXISTS namespaces (
        ns text {C} PRIMARY KEY, domain text {C} NOT NULL, created double precision NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS edge_replica (
        thing_id text {C} PRIMARY KEY, epoch bigint NOT NULL, revision bigint NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS privacy_budgets (
        owner text {C} NOT NULL, consumer text {C} NOT NULL,
        epsilon_nano bigint NOT NULL, delta_femto bigint NOT NULL,
        spent_epsilon_nano bigint NOT NULL, spent_delta_femto bigint NOT NULL,
        PRIMARY KEY (owner, consumer))""",
]

_FIELD_COLS = "%s::text[], %s::text[], %s::smallint[], %s::float8[], %s::text[]"


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class PostgresStore(SqlStore):
    """The store on a PostgreSQL database (psycopg 3, a connection per thread)."""

    dialect = rql.POSTGRES

    def __init__(self, url: str):
        if psycopg is None:
            raise StoreError(
                "the PostgreSQL store needs psycopg 3: pip install 'psycopg[binary]>=3.1'"
            )
        super().__init__(url)

    def _safe_url(self) -> str:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.url)

    def _connect(self) -> Any:
        try:
            conn = psycopg.connect(self.url, autocommit=True)
            # psycopg prepares repeated statements; a generic plan cannot see how selective
            # a filter's path and value are, so plan each search for its parameters
            conn.execute("SET plan_cache_mode = force_custom_plan")
            return conn
        except psycopg.Error as e:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self._safe_url()}: {str(e).strip()} "
                "(is the server running, and do the user, password and database exist?)"
            ) from e

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _ddl(self) -> list[str]:
        return DDL

    def _is_db_error(self, e: Exception) -> bool:
        return isinstance(e, psycopg.Error)

    @contextlib.contextmanager
    def _tx(self, conn: Any) -> Iterator[None]:
        with conn.transaction():
            yield

    @contextlib.contextmanager
    def _read_tx(self, conn: Any) -> Iterator[None]:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    def _iter_docs(self, conn: Any) -> Iterator[tuple[str, int, str]]:
        with conn.transaction(), conn.cursor(name="twinedge_load_things") as cur:
            cur.itersize = 2000
            cur.execute("SELECT thing_id, gen, doc FROM things")
            yield from cur

    def _apply(self, conn: Any, plan: CommitPlan) -> None:
        x = conn.execute
        if plan.member_clear:
            x("DELETE FROM group_members WHERE thing_id = ANY(%s::text[])", [plan.member_clear])
        if plan.things_delete:
            x("DELETE FROM things WHERE thing_id = ANY(%s::text[])", [plan.things_delete])
        if plan.fields_clear:
            x("DELETE FROM fields WHERE thing_id = ANY(%s::text[])", [plan.fields_clear])
        if plan.fields_delete_below:
            x(
                "DELETE FROM fields f USING unnest(%s::text[], %s::text[], %s::text[]) "
                "AS d(tid, lo, hi) WHERE f.thing_id = d.tid AND f.path >= d.lo AND f.path < d.hi",
                _columns(plan.fields_delete_below, 3),
            )
        if plan.fields_delete:
            x(
                "DELETE FROM fields f USING unnest(%s::text[], %s::text[]) AS d(tid, p) "
                "WHERE f.thing_id = d.tid AND f.path = d.p",
                _columns(plan.fields_delete, 2),
            )
        if plan.fields_insert:
            x(
                f"INSERT INTO fields (thing_id, path, kind, num, str) SELECT * FROM unnest({_FIELD_COLS})",
                _columns(plan.fields_insert, 5),
            )
        if plan.fields_upsert:
            x(
                f"INSERT INTO fields (thing_id, path, kind, num, str) SELECT * FROM unnest({_FIELD_COLS}) "
                "ON CONFLICT (thing_id, path) DO UPDATE SET kind = EXCLUDED.kind, "
                "num = EXCLUDED.num, str = EXCLUDED.str",
                _columns(plan.fields_upsert, 5),
            )
        things = plan.things_upsert + plan.things_update  # PostgreSQL rewrites the row anyway
        if things:
            x(
                "INSERT INTO things (thing_id, domain, revision, created, modified, host, host_set, "
                "doc, gen) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], "
                "%s::text[], %s::text[], %s::smallint[], %s::text[], %s::integer[]) "
                "ON CONFLICT (thing_id) DO UPDATE SET domain = EXCLUDED.domain, "
                "revision = EXCLUDED.revision, created = EXCLUDED.created, "
                "modified = EXCLUDED.modified, host = EXCLUDED.host, host_set = EXCLUDED.host_set, "
                "doc = EXCLUDED.doc, gen = EXCLUDED.gen",
                _columns(things, 9),
            )
        if plan.history:
            x(
                "INSERT INTO history (thing_id, gen, revision, time, source, actor, ops, created, "
                "modified, domain, host, host_set, snapshot, deleted) SELECT * FROM unnest("
                "%s::text[], %s::integer[], %s::bigint[], %s::float8[], %s::text[], %s::text[], "
                "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::smallint[], "
                "%s::text[], %s::smallint[])",
                _columns(plan.history, 14),
            )
        if plan.member_remove:
            x(
                "DELETE FROM group_members g USING unnest(%s::text[], %s::text[]) AS d(k, t) "
                "WHERE g.gkey = d.k AND g.thing_id = d.t",
                _columns(plan.member_remove, 2),
            )
        if plan.member_add:
            x(
                "INSERT INTO group_members (gkey, thing_id) SELECT * FROM unnest(%s::text[], %s::text[]) "
                "ON CONFLICT DO NOTHING",
                _columns(plan.member_add, 2),
            )
