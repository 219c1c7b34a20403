"""Query planning for the SQL stores: a search, a count or an aggregate as one SQL
statement with its parameters, and the rows it returns as the answer.

* The filter and the caller's scope become WHERE clauses over the index tables
  (:func:`twinedge.runtime.rql.compile_sql`; the tables are described in
  :mod:`twinedge.runtime.store.sql_store`).
* A sort becomes the components of a sort key: a typed column for a service field, a
  ``LEFT JOIN fields`` for a document path (missing values last); things are ordered by
  ``thingId`` after the last key.
* Paging is keyset paging on the sort key (Winand, "Paging Through Results",
  use-the-index-luke.com/no-offset): a cursor carries the key of the last row and a
  check of the query it was made for, and is checked value by value before its values
  become SQL parameters.
* ``fields`` projects the documents of a page; an aggregate groups by a service field or
  a document path.

Everything here is pure: no connection and no state. Statements use ``?`` placeholders;
the store (:class:`~twinedge.runtime.store.sql_store.SqlStore`) adapts them to its
dialect and runs them. Every refusal is an :class:`~twinedge.errors.InvalidInput` naming
the parameter (``/limit``, ``/sort``, ``/cursor``, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twinedge import jsontext, textinput
from twinedge.errors import InvalidInput
from twinedge.runtime import rql
from twinedge.runtime.store.base import Scope, SearchPage, SearchQuery
from twinedge.runtime.things import JSON_LIMITS, get_path, set_path, split_path

MAX_LIMIT = 10_000
MAX_SORT_KEYS = 16
MAX_CURSOR_CHARS = 50_000
GROUPABLE_COLUMNS = ("_domain", "_host")
AGGREGATES = ("count", "min", "max", "avg")

_COLUMN_KEYS = frozenset(rql.COLUMN_FIELDS)


# --- filter and scope ---------------------------------------------------------------------


def where_clauses(
    filter: str | None, scope: Scope, dialect: rql.SqlDialect
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (to be joined with AND) and their parameters that keep the things
    matching ``filter`` (RQL text) within ``scope``, over ``things t``.

    Raises:
        InvalidInput: the filter, or the filter of a grant, is not RQL.
    """
    where: list[str] = []
    params: list[Any] = []
    if filter:
        sql, ps = rql.compile_sql(rql.parse(filter), dialect)
        where.append(sql)
        params += ps
    if scope.domains is not None:
        parts = []
        if scope.domains:
            parts.append(f"t.domain IN ({', '.join('?' * len(scope.domains))})")
            params += list(scope.domains)
        for g in scope.grants:
            sql, ps = rql.compile_sql(rql.parse(g.filter), dialect)
            parts.append(f"(t.domain = ? AND {sql})")
            params += [g.grantor, *ps]
        where.append("(" + " OR ".join(parts) + ")" if parts else rql.FALSE)
    return where, params


# --- cursors ------------------------------------------------------------------------------


def encode_cursor(payload: Any) -> str:
    """An opaque cursor holding the JSON value ``payload`` (URL-safe base64, unpadded)."""
    raw = jsontext.dumps_bytes(payload)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The JSON value inside a cursor, decoded strictly (:func:`textinput.loads`: no NUL,
    lone surrogate, non-finite or out-of-range number). The caller still checks the
    value's shape and types.

    Raises:
        InvalidInput: ``cursor`` is not one :func:`encode_cursor` made.
    """
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


# --- searching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPlan:
    """One page of a search as one statement: each row holds the ``width`` components of
    the sort key, then the document."""

    sql: str
    params: list[Any]
    width: int
    check: str  # ties a cursor to the filter and sort it was made for
    limit: int
    fields: tuple[str, ...] | None

    def page(self, rows: Sequence[Sequence[Any]]) -> SearchPage:
        """The page the statement's ``rows`` make (it asks for one row more than
        ``limit``, which tells whether a next page exists)."""
        n = self.width
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        items = []
        for row in rows:
            doc = json.loads(row[n])
            items.append(project(doc, self.fields) if self.fields else doc)
        cursor = None
        if more and rows:
            cursor = encode_cursor({"q": self.check, "k": list(rows[-1][:n])})
        return SearchPage(items, cursor)


def plan_search(query: SearchQuery, dialect: rql.SqlDialect) -> SearchPlan:
    """The statement of one page of ``query``.

    Parameters:
        query: filter, scope, sort, limit, cursor and fields of the search.
        dialect: how RQL compiles for the store's database.

    Raises:
        InvalidInput: the limit lies outside 1..:data:`MAX_LIMIT`; a field, a sort path or
            the filter is not valid; there are more than :data:`MAX_SORT_KEYS` sort keys;
            the cursor was not made for this query.
    """
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must lie in 1..{MAX_LIMIT}, got {query.limit}", "/limit")
    for p in query.fields or ():
        rql.parse_path(p, "/fields")
    srt = _sort_sql(query.sort)
    where, wparams = where_clauses(query.filter, query.scope, dialect)
    check = hashlib.sha1(jsontext.dumps_bytes([query.filter, query.sort])).hexdigest()[:8]
    kparams: list[Any] = []
    if query.cursor:
        key = _cursor_key(decode_cursor(query.cursor), check, srt.types)
        ks, kparams = _keyset(srt.components, key)
        where.append(ks)
    cols = ", ".join(f"{e} AS c{i}" for i, (e, _) in enumerate(srt.components))
    order = ", ".join(f"c{i} {'ASC' if a else 'DESC'}" for i, (_, a) in enumerate(srt.components))
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
    params = [*srt.join_params, *wparams, *kparams, query.limit + 1]
    return SearchPlan(sql, params, n, check, query.limit, query.fields)


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


def plan_count(filter: str | None, scope: Scope, dialect: rql.SqlDialect) -> tuple[str, list[Any]]:
    """The statement counting the things that match ``filter`` within ``scope``.

    Raises:
        InvalidInput: the filter is not RQL.
    """
    where, params = where_clauses(filter, scope, dialect)
    sql = "SELECT COUNT(*) FROM things t" + (f" WHERE {' AND '.join(where)}" if where else "")
    return sql, params


# --- aggregates ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class AggregatePlan:
    """An aggregate as one statement: each row holds a group's key (kind, number,
    string) and the function's value."""

    sql: str
    params: list[Any]
    fn: str

    def results(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """``[{"key": value_of_group_by, "value": fn(field)}]`` from the statement's rows."""
        out = []
        for k, num, s, value in rows:
            if value is not None and self.fn != "count":
                value = float(value)
            out.append({"key": _key_value(k, num, s), "value": value})
        return out


def plan_aggregate(
    filter: str | None,
    scope: Scope,
    group_by: str,
    fn: str,
    field: str | None,
    dialect: rql.SqlDialect,
) -> AggregatePlan:
    """The statement applying ``fn`` to ``field`` over the matching things of ``scope``,
    per value of ``group_by``.

    Parameters:
        filter: RQL text, or ``None`` for every thing of the scope.
        scope: what the caller may see.
        group_by: a path (see :func:`check_group_by`).
        fn: one of :data:`AGGREGATES`.
        field: the numeric path ``fn`` applies to (``count`` may go without).
        dialect: how RQL compiles for the store's database.

    Raises:
        InvalidInput: an unknown function, a missing field, a path that cannot group, or
            a filter that is not RQL.
    """
    if fn not in AGGREGATES:
        raise InvalidInput(f"aggregate must be count, min, max or avg, got {fn!r}", "/fn")
    if fn != "count" and not field:
        raise InvalidInput(f"{fn} needs a numeric field to aggregate", "/field")
    where, wparams = where_clauses(filter, scope, dialect)
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
    return AggregatePlan(sql, [*jparams, *wparams], fn)
