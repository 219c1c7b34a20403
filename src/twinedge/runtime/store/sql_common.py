"""What the SQLite and PostgreSQL stores share: the commit plan, search SQL, history.

One schema in two dialects (``sqlite.py`` and ``postgres.py`` hold the DDL):

* ``things(thing_id, domain, revision, created, modified, host, host_set, doc)`` — the
  current document as JSON text plus the service fields as typed, indexed columns.
* ``fields(thing_id, path, kind, num, str)`` — every node of every document except the
  service fields, flattened: ``path`` is the JSON Pointer without the leading ``/``,
  ``kind`` the JSON kind (0 null, 1 bool, 2 number, 3 string, 4 object, 5 array), ``num``
  the number (or 0/1 for a bool), ``str`` the string. Three partial indexes, one per
  kind of row: ``(path, kind, num)``, ``(path, str)`` and ``(path, kind)`` for the rest,
  so a changed number touches one index only and an RQL filter (:mod:`twinedge.runtime.rql`) is a handful of index
  range scans: ``eq(attributes/kind,"car")`` is ``thing_id IN (SELECT thing_id FROM
  fields WHERE path = 'attributes/kind' AND kind = 3 AND str = 'car')``.
* ``history(thing_id, gen, revision, time, source, actor, ops, created, modified, domain,
  host, host_set, snapshot, deleted)`` — one row per change (with its service fields); ``snapshot`` (the full document) at a creation and every
  :data:`SNAPSHOT_EVERY` revisions, so an as-of read replays at most that many patches
  (the event-sourcing "snapshot + replay" of Fowler's Event Sourcing pattern, as Ditto's
  snapshot store does). ``gen`` numbers the incarnations of a thing id: a thing deleted
  and created again starts at revision 1 in a new ``gen``.
* ``groups``, ``group_members``, ``api_keys``, ``device_secrets``, ``grants`` — plain
  tables.

:meth:`SqlStore.commit` turns a batch into a :class:`CommitPlan` (pure Python: rows to
write, and the index rows of the *changed paths only*, taken from each Change's RFC 6902
``ops``), then the dialect applies it in one transaction. Search is one SQL statement:
the compiled filter and scope, keyset paging on the sort key (Winand, "Paging Through
Results", use-the-index-luke.com/no-offset), and a join to fetch the documents.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from twinedge import textinput
from twinedge.errors import InvalidInput, TwinedgeError
from twinedge.runtime import rql
from twinedge.runtime.store.base import (
    ApiKey,
    Change,
    Grant,
    GroupSpec,
    Scope,
    SearchPage,
    SearchQuery,
)
from twinedge.runtime.things import (
    JSON_LIMITS,
    apply_json_patch,
    escape_token,
    get_path,
    set_path,
    split_path,
)

SNAPSHOT_EVERY = 32
SCHEMA_VERSION = 1
MAX_LIMIT = 10_000
_CHUNK = 500

_COLUMN_KEYS = frozenset(rql.COLUMN_FIELDS)


class StoreError(TwinedgeError):
    """The database refused or failed an operation; the message says what to do."""


def dumps(v: Any) -> str:
    return _ENCODE(v)


# --- flattening a document into index rows -------------------------------------------------

FieldRow = tuple[str, str, int, float | None, str | None]


def node_row(thing_id: str, path: str, v: Any) -> FieldRow:
    kind = rql.value_kind(v)
    if kind in (rql.K_NUM, rql.K_BOOL):
        return (thing_id, path, kind, rql.num_value(v), None)
    if kind == rql.K_STR:
        return (thing_id, path, kind, None, v)
    return (thing_id, path, kind, None, None)


def flatten(thing_id: str, path: str, v: Any, out: list[FieldRow]) -> None:
    """Append the rows of ``v`` (at ``path``) and of everything below it (objects only)."""
    out.append(node_row(thing_id, path, v))
    if isinstance(v, dict):
        for k, sub in v.items():
            flatten(thing_id, f"{path}/{escape_token(k)}", sub, out)


def flatten_doc(thing_id: str, doc: dict[str, Any], out: list[FieldRow]) -> None:
    for k, v in doc.items():
        if k not in _COLUMN_KEYS:
            flatten(thing_id, escape_token(k), v, out)


def _changed_node(doc: dict[str, Any], tokens: Sequence[str]) -> tuple[str, ...]:
    """The index node an op at ``tokens`` changes: the path cut where the new document
    stops being an object (arrays are opaque; a missing node is one to delete)."""
    cur: Any = doc
    for i, t in enumerate(tokens):
        if not isinstance(cur, dict):
            return tuple(tokens[:i])
        if t not in cur:
            return tuple(tokens[: i + 1])
        cur = cur[t]
    return tuple(tokens)


# --- the commit plan ---------------------------------------------------------------------


@dataclass
class CommitPlan:
    """Everything one batch writes, already in row form (the dialects only execute it)."""

    things_upsert: list[tuple[Any, ...]] = field(default_factory=list)  # created / re-indexed
    things_update: list[tuple[Any, ...]] = field(default_factory=list)  # same columns, updates
    things_delete: list[str] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    fields_clear: list[str] = field(default_factory=list)  # delete every row of a thing
    fields_insert: list[FieldRow] = field(default_factory=list)  # rows of cleared things
    fields_delete_below: list[tuple[str, str, str]] = field(default_factory=list)  # id, lo, hi
    fields_delete: list[tuple[str, str]] = field(default_factory=list)  # id, path (gone nodes)
    fields_upsert: list[FieldRow] = field(default_factory=list)  # changed subtrees, ancestors
    member_add: list[tuple[str, str]] = field(default_factory=list)
    member_remove: list[tuple[str, str]] = field(default_factory=list)
    member_clear: list[str] = field(default_factory=list)


class _ThingState:
    __slots__ = ("deleted", "doc", "full", "last", "meta", "paths")

    def __init__(self) -> None:
        self.meta: tuple[str, str, Any, int] = ("", "", None, 0)
        self.doc: dict[str, Any] | None = None
        self.last: Change | None = None
        self.full = False
        self.deleted = False  # deleted at some point of the batch (memberships cleared)
        self.paths: dict[tuple[str, ...], bool] = {}  # changed path -> by an add


def _bad_meta(ch: Change, doc: dict[str, Any]) -> StoreError:
    problems = []
    if doc.get("thingId") != ch.thing_id:
        problems.append(f"thingId {doc.get('thingId')!r} != Change.thing_id {ch.thing_id!r}")
    rev = doc.get("_revision")
    if rev != ch.revision or isinstance(rev, bool):
        problems.append(f"_revision {rev!r} != Change.revision {ch.revision}")
    if doc.get("_domain") != ch.domain:
        problems.append(f"_domain {doc.get('_domain')!r} != Change.domain {ch.domain!r}")
    for k in ("_created", "_modified"):
        if not isinstance(doc.get(k), str):
            problems.append(f"{k} must be an RFC 3339 string, got {doc.get(k)!r}")
    host = doc.get("_host")
    if host is not None and not isinstance(host, str):
        problems.append(f"_host must be a string or null, got {host!r}")
    return StoreError(
        f"cannot store thing {ch.thing_id} revision {ch.revision}: "
        + "; ".join(problems or ["bad service fields"])
        + " (the service sets thingId, _revision, _created, _modified, _domain and _host)"
    )


def _meta(ch: Change, doc: dict[str, Any]) -> tuple[str, str, Any, int]:
    """``(created, modified, host, host_set)`` of a document, checked."""
    created, modified = doc.get("_created"), doc.get("_modified")
    host = doc.get("_host")
    if (
        type(created) is not str
        or type(modified) is not str
        or (host is not None and type(host) is not str)
        or doc.get("_revision") != ch.revision
        or doc.get("_domain") != ch.domain
        or doc.get("thingId") != ch.thing_id
        or type(doc.get("_revision")) is bool
    ):
        raise _bad_meta(ch, doc)
    return created, modified, host, 1 if "_host" in doc else 0


def build_plan(changes: Sequence[Change], gens: dict[str, tuple[int, bool]]) -> CommitPlan:
    """The rows a batch writes. ``gens`` (thing id -> (current incarnation number, whether
    the thing exists); absent = no history yet) is updated in place."""
    plan = CommitPlan()
    history = plan.history
    states: dict[str, _ThingState] = {}
    membership: dict[tuple[str, str], bool] = {}
    for ch in changes:
        tid = ch.thing_id
        st = states.get(tid)
        if st is None:
            st = states[tid] = _ThingState()
        doc = ch.new
        creation = doc is not None and (
            ch.revision == 1 or any(op.get("path") == "" for op in ch.ops)
        )
        cur_gen, alive = gens.get(tid, (None, False))
        if ch.revision == 1 and doc is not None and not alive and cur_gen is not None:
            gen = cur_gen + 1  # created again after a deletion: a new incarnation
        else:
            gen = 0 if cur_gen is None else cur_gen
        gens[tid] = (gen, doc is not None)
        if doc is not None:
            created, modified, host, host_set = st.meta = _meta(ch, doc)
            snapshot = _ENCODE(doc) if creation or ch.revision % SNAPSHOT_EVERY == 0 else None
            history.append(
                (tid, gen, ch.revision, float(ch.time), ch.source, ch.actor, _ENCODE(ch.ops),
                 created, modified, ch.domain, host, host_set, snapshot, 0)
            )  # fmt: skip
        else:
            history.append(
                (tid, gen, ch.revision, float(ch.time), ch.source, ch.actor, _ENCODE(ch.ops),
                 None, None, ch.domain, None, 0, None, 1)
            )  # fmt: skip
        if doc is None or creation or (st.doc is None and st.full):
            st.full = True
            st.paths.clear()
        elif not st.full:
            paths = st.paths
            for op in ch.ops:
                p = op.get("path")
                if p is None:
                    continue
                if p == "":
                    st.full = True
                    paths.clear()
                    break
                fast = p[0] == "/" and "~" not in p
                tokens = tuple(p[1:].split("/")) if fast else tuple(split_path(p))
                if op.get("op") not in ("replace", "remove"):
                    paths[tokens] = True  # an add (or move/copy): parents may be new
                elif tokens not in paths:
                    paths[tokens] = False
                src = op.get("from")
                if src:
                    paths[tuple(split_path(src))] = True
        st.doc = doc
        st.last = ch
        if ch.group_joins or ch.group_leaves:
            for key in ch.group_joins:
                membership[(key, tid)] = True
            for key in ch.group_leaves:
                membership[(key, tid)] = False
        if doc is None:
            st.deleted = True
            for k in [k for k in membership if k[1] == tid]:
                del membership[k]
    for tid, st in states.items():
        if st.deleted:
            plan.member_clear.append(tid)
        doc = st.doc
        if doc is None:
            plan.things_delete.append(tid)
            plan.fields_clear.append(tid)
            continue
        last = st.last
        assert last is not None
        created, modified, host, host_set = st.meta
        row = (
            tid,
            last.domain,
            last.revision,
            created,
            modified,
            host,
            host_set,
            _ENCODE(doc),
            gens[tid][0],
        )
        if st.full:
            plan.things_upsert.append(row)
            plan.fields_clear.append(tid)
            flatten_doc(tid, doc, plan.fields_insert)
        else:
            plan.things_update.append(row)
            if st.paths:
                _plan_paths(tid, doc, st.paths, plan)
    for (key, tid), joined in membership.items():
        (plan.member_add if joined else plan.member_remove).append((key, tid))
    return plan


def _plan_paths(
    tid: str, doc: dict[str, Any], paths: dict[tuple[str, ...], bool], plan: CommitPlan
) -> None:
    changed: dict[tuple[str, ...], bool] = {}
    for tokens, added in paths.items():
        node = _changed_node(doc, tokens)
        if not node or node[0] in _COLUMN_KEYS:
            continue
        changed[node] = changed.get(node, False) or added
    if len(changed) > 1:  # keep the topmost of nested paths (ancestors sort first)
        kept: dict[tuple[str, ...], bool] = {}
        for node in sorted(changed):
            if not any(node[:i] in kept for i in range(1, len(node))):
                kept[node] = changed[node]
        changed = kept
    upsert = plan.fields_upsert
    ancestors: dict[str, FieldRow] = {}
    for node, added in changed.items():
        p = (
            "/".join(node)
            if all("/" not in t and "~" not in t for t in node)
            else rql.path_text(node)
        )
        plan.fields_delete_below.append((tid, p + "/", p + "0"))
        v: Any = doc
        for t in node:
            v = v.get(t, _GONE) if isinstance(v, dict) else _GONE
            if v is _GONE:
                break
        if v is _GONE:
            plan.fields_delete.append((tid, p))
            continue
        flatten(tid, p, v, upsert)
        if added:  # a lax "add" may have created the objects on the way
            for i in range(1, len(node)):
                ap = rql.path_text(node[:i])
                ancestors[ap] = (tid, ap, rql.K_OBJ, None, None)
    upsert.extend(ancestors.values())


_GONE = object()
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


# --- cursors ------------------------------------------------------------------------------


def encode_cursor(payload: Any) -> str:
    raw = dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR_CHARS = 50_000


def decode_cursor(cursor: str) -> Any:
    """The JSON value inside a cursor, decoded strictly (:func:`textinput.loads`: no NUL,
    lone surrogate, non-finite or out-of-range number); :class:`InvalidInput` for anything
    else. The caller still checks the value's shape and types."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        pad = "=" * (-len(cursor) % 4)
        return textinput.loads(base64.urlsafe_b64decode(cursor + pad), JSON_LIMITS)
    except (ValueError, TypeError):
        raise InvalidInput(
            "the cursor is not one this service made; pass back the cursor of the previous "
            "page unchanged, or leave it out to start from the first page",
            "/cursor",
        ) from None


# --- sort keys ----------------------------------------------------------------------------


MAX_SORT_KEYS = 16

# What each component of a sort key holds (what a cursor must carry in its place).
_FLAG, _KIND, _NUM, _INT, _STR = "flag", "kind", "num", "int", "str"


@dataclass
class _SortSql:
    joins: list[str]
    join_params: list[Any]
    components: list[tuple[str, bool]]  # (expression, ascending)
    types: list[str]  # per component: _FLAG (0/1), _KIND (0..5), _NUM, _INT or _STR


def _sort_sql(sort: Sequence[tuple[str, bool]]) -> _SortSql:
    if len(sort) > MAX_SORT_KEYS:
        raise InvalidInput(
            f"sort by at most {MAX_SORT_KEYS} fields, got {len(sort)}; things are ordered by "
            "thingId after the last one anyway",
            "/sort",
        )
    joins: list[str] = []
    params: list[Any] = []
    comps: list[tuple[str, bool]] = []
    types: list[str] = []
    for i, (path_s, asc) in enumerate(sort):
        tokens = rql.parse_path(path_s, "/sort")
        col = rql.COLUMN_FIELDS.get(tokens[0])
        if col is not None and len(tokens) == 1:
            c = f"t.{col.column}"
            if col.nullable:  # _host: absent, then null, then strings (missing last)
                comps.append((f"(CASE WHEN t.{col.present} = 1 THEN 0 ELSE 1 END)", True))
                comps.append((f"(CASE WHEN {c} IS NULL THEN 0 ELSE 1 END)", asc))
                comps.append((f"COALESCE({c}, '')", asc))
                types += [_FLAG, _FLAG, _STR]
            else:
                comps.append((c, asc))
                types.append(_INT if col.kind == rql.K_NUM else _STR)
            continue
        if col is not None:  # below a scalar service field: missing everywhere
            continue
        a = f"s{i}"
        joins.append(f"LEFT JOIN fields {a} ON {a}.thing_id = t.thing_id AND {a}.path = ?")
        params.append(rql.path_text(tokens))
        comps.append((f"(CASE WHEN {a}.kind IS NULL THEN 1 ELSE 0 END)", True))
        comps.append((f"COALESCE({a}.kind, 0)", asc))
        comps.append((f"COALESCE({a}.num, 0)", asc))
        comps.append((f"COALESCE({a}.str, '')", asc))
        types += [_FLAG, _KIND, _NUM, _STR]
    comps.append(("t.thing_id", True))
    types.append(_STR)
    return _SortSql(joins, params, comps, types)


def _cursor_key(c: Any, check: str, types: Sequence[str]) -> list[Any]:
    """The sort key a search cursor carries, checked against the query it is used with:
    made for the same filter and sort (``q``), one value per component of the sort key,
    each of that component's type. A cursor fails these checks when it was made for
    another query or altered; no check can be skipped, since the values become SQL
    parameters compared with typed columns.

    A well-formed key that no page ended at is harmless: it only says where the next page
    starts, and the caller's scope applies as always.
    """
    if not (isinstance(c, dict) and c.get("q") == check and isinstance(c.get("k"), list)):
        raise InvalidInput(
            "the cursor belongs to another query (the filter or the sort changed); "
            "repeat the query without a cursor to start again",
            "/cursor",
        )
    key = c["k"]
    if len(key) != len(types):
        raise _bad_cursor(f"it holds {len(key)} values where this sort needs {len(types)}")
    out: list[Any] = []
    for i, (v, t) in enumerate(zip(key, types, strict=True)):
        if t == _STR:
            ok = isinstance(v, str)
        elif t in (_FLAG, _KIND, _INT):
            top = 1 if t == _FLAG else 5 if t == _KIND else 2**53
            ok = type(v) is int and 0 <= v <= top
        else:
            ok = type(v) in (int, float)
            v = float(v) if ok else v
        if not ok:
            raise _bad_cursor(f"value {i} is {json.dumps(v)[:40]}, not a {t} as the sort needs")
        out.append(v)
    return out


def _bad_cursor(why: str) -> InvalidInput:
    return InvalidInput(
        f"the cursor does not fit this query ({why}); pass back the cursor of the previous "
        "page unchanged, or leave it out to start from the first page",
        "/cursor",
    )


def _keyset(comps: list[tuple[str, bool]], values: list[Any]) -> tuple[str, list[Any]]:
    """Rows strictly after ``values`` in the order of ``comps`` (lexicographic)."""
    ors: list[str] = []
    params: list[Any] = []
    for i, (expr, asc) in enumerate(comps):
        ands = []
        for j in range(i):
            ands.append(f"{comps[j][0]} = ?")
            params.append(values[j])
        ands.append(f"{expr} {'>' if asc else '<'} ?")
        params.append(values[i])
        ors.append("(" + " AND ".join(ands) + ")")
    return "(" + " OR ".join(ors) + ")", params


# --- aggregates ---------------------------------------------------------------------------

GROUPABLE_COLUMNS = ("_domain", "_host")


def check_group_by(group_by: str) -> tuple[str, ...]:
    """The tokens of an aggregate's ``group_by`` path, or :class:`InvalidInput` saying why
    it cannot group: of the service fields only ``_domain`` and ``_host`` group things
    (``thingId``, ``_revision``, ``_created`` and ``_modified`` are per-thing counters and
    clocks, and nothing lies below a service field); any document path can.

    Examples:
        >>> check_group_by("attributes/kind")
        ('attributes', 'kind')
        >>> check_group_by("_revision")
        Traceback (most recent call last):
        ...
        twinedge.errors.InvalidInput: cannot group by _revision: ...
    """
    tokens = rql.parse_path(group_by, "/groupBy")
    if tokens[0] in _COLUMN_KEYS and (len(tokens) > 1 or tokens[0] not in GROUPABLE_COLUMNS):
        what = (
            f"{tokens[0]} is a single value, nothing lies below it"
            if len(tokens) > 1
            else f"{tokens[0]} is a service field that differs per thing or per change"
        )
        raise InvalidInput(
            f"cannot group by {group_by}: {what}; group by _domain, _host or a path of the "
            "document such as attributes/kind",
            "/groupBy",
        )
    return tokens


def _key_value(kind: int | None, num: float | None, s: str | None) -> Any:
    if kind == rql.K_BOOL:
        return bool(num)
    if kind == rql.K_NUM:
        assert num is not None
        num = float(num)
        if math.isfinite(num) and num.is_integer() and abs(num) < 2**53:
            return int(num)
        return num
    if kind == rql.K_STR:
        return s
    return None


def project(doc: dict[str, Any], pointers: Sequence[str]) -> dict[str, Any]:
    """Only the parts of ``doc`` at ``pointers`` (nesting kept; missing ones skipped)."""
    out: dict[str, Any] = {}
    for p in pointers:
        tokens = split_path(p)
        if not tokens:
            return doc
        try:
            set_path(out, tokens, get_path(doc, tokens))
        except KeyError:
            continue
    return out


# --- the store ----------------------------------------------------------------------------


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
    def _where(self, filter: str | None, scope: Scope) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if filter:
            sql, ps = rql.compile_sql(rql.parse(filter), self.dialect)
            where.append(sql)
            params += ps
        if scope.domains is not None:
            parts = []
            if scope.domains:
                parts.append(f"t.domain IN ({', '.join('?' * len(scope.domains))})")
                params += list(scope.domains)
            for g in scope.grants:
                sql, ps = rql.compile_sql(rql.parse(g.filter), self.dialect)
                parts.append(f"(t.domain = ? AND {sql})")
                params += [g.grantor, *ps]
            where.append("(" + " OR ".join(parts) + ")" if parts else rql.FALSE)
        return where, params

    def search(self, query: SearchQuery) -> SearchPage:
        if not 1 <= query.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must lie in 1..{MAX_LIMIT}, got {query.limit}", "/limit")
        for p in query.fields or ():
            rql.parse_path(p, "/fields")
        srt = _sort_sql(query.sort)
        where, wparams = self._where(query.filter, query.scope)
        check = hashlib.sha1(dumps([query.filter, query.sort]).encode()).hexdigest()[:8]
        kparams: list[Any] = []
        if query.cursor:
            key = _cursor_key(decode_cursor(query.cursor), check, srt.types)
            ks, kparams = _keyset(srt.components, key)
            where.append(ks)
        cols = ", ".join(f"{e} AS c{i}" for i, (e, _) in enumerate(srt.components))
        order = ", ".join(
            f"c{i} {'ASC' if a else 'DESC'}" for i, (_, a) in enumerate(srt.components)
        )
        korder = ", ".join(
            f"k.c{i} {'ASC' if a else 'DESC'}" for i, (_, a) in enumerate(srt.components)
        )
        inner = (
            f"SELECT {cols} FROM things t {' '.join(srt.joins)}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {order} LIMIT ?"
        )
        n = len(srt.components)
        sql = f"SELECT k.*, d.doc FROM ({inner}) k JOIN things d ON d.thing_id = k.c{n - 1} ORDER BY {korder}"
        rows = self._query(sql, [*srt.join_params, *wparams, *kparams, query.limit + 1])
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = []
        for row in rows:
            doc = json.loads(row[n])
            items.append(project(doc, query.fields) if query.fields else doc)
        cursor = None
        if more and rows:
            cursor = encode_cursor({"q": check, "k": list(rows[-1][:n])})
        return SearchPage(items, cursor)

    def count(self, filter: str | None, scope: Scope) -> int:
        where, params = self._where(filter, scope)
        sql = "SELECT COUNT(*) FROM things t" + (f" WHERE {' AND '.join(where)}" if where else "")
        return int(self._query(sql, params)[0][0])

    def aggregate(
        self, filter: str | None, scope: Scope, group_by: str, fn: str, field: str | None
    ) -> list[dict[str, Any]]:
        if fn not in ("count", "min", "max", "avg"):
            raise InvalidInput(f"aggregate must be count, min, max or avg, got {fn!r}", "/fn")
        if fn != "count" and not field:
            raise InvalidInput(f"{fn} needs a numeric field to aggregate", "/field")
        where, wparams = self._where(filter, scope)
        joins: list[str] = []
        jparams: list[Any] = []
        gtok = check_group_by(group_by)
        gcol = rql.COLUMN_FIELDS.get(gtok[0])
        if gcol is not None:
            c = f"t.{gcol.column}"
            if gcol.nullable:
                gk, gn, gs = (
                    f"(CASE WHEN {c} IS NULL THEN {rql.K_NULL} ELSE {rql.K_STR} END)",
                    "NULL",
                    c,
                )
                where.append(f"t.{gcol.present} = 1")
            else:
                gk, gn, gs = str(rql.K_STR), "NULL", c
        else:
            joins.append(
                f"JOIN fields g ON g.thing_id = t.thing_id AND g.path = ? AND g.kind < {rql.K_OBJ}"
            )
            jparams.append(rql.path_text(gtok))
            gk, gn, gs = "g.kind", "g.num", "g.str"
        vexpr = "NULL"
        if field:
            vtok = rql.parse_path(field, "/field")
            vcol = rql.COLUMN_FIELDS.get(vtok[0])
            if vcol is not None:
                if vcol.kind == rql.K_NUM and len(vtok) == 1:
                    vexpr = f"t.{vcol.column}"
            else:
                joins.append(
                    f"LEFT JOIN fields v ON v.thing_id = t.thing_id AND v.path = ? AND v.kind = {rql.K_NUM}"
                )
                jparams.append(rql.path_text(vtok))
                vexpr = "v.num"
        agg = {
            "count": f"COUNT({vexpr})" if field else "COUNT(*)",
            "min": f"MIN({vexpr})",
            "max": f"MAX({vexpr})",
            "avg": f"AVG({vexpr})",
        }[fn]
        sql = (
            f"SELECT {gk} AS gk, {gn} AS gn, {gs} AS gs, {agg} FROM things t {' '.join(joins)}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" GROUP BY {', '.join(e for e in (gk, gn, gs) if not e.isalnum())} ORDER BY 1, 2, 3"
        )
        out = []
        for k, num, s, value in self._query(sql, [*jparams, *wparams]):
            if value is not None and fn != "count":
                value = float(value)
            out.append({"key": _key_value(k, num, s), "value": value})
        return out

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
                        dumps(list(spec.members)),
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
                dumps(key.extra),
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
        if grant.role not in ("read", "write"):
            raise InvalidInput(f"a grant's role is read or write, got {grant.role!r}", "/role")
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
