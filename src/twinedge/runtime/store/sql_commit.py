"""The commit plan of the SQL stores: a batch of changes as the rows it writes.

:func:`build_plan` turns a batch of :class:`~twinedge.runtime.store.base.Change` s into a
:class:`CommitPlan`, pure Python, before the store opens its transaction: the current
documents to insert, update or delete, one ``history`` row per change (with a snapshot of
the whole document at a creation and every :data:`SNAPSHOT_EVERY` revisions), group
membership, edge replica positions (set by a change, removed with the thing), and the rows of the ``fields`` search index of the *changed paths only*,
taken from each change's RFC 6902 ``ops`` (a creation or a whole replacement re-indexes
the thing). The dialects only execute the plan (``sqlite.py``, ``postgres.py``); the tables
are described in :mod:`twinedge.runtime.store.sql_store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twinedge import jsontext
from twinedge.runtime import rql
from twinedge.runtime.store.base import Change, StoreError
from twinedge.runtime.things import escape_token, split_path

SNAPSHOT_EVERY = 32

_COLUMN_KEYS = frozenset(rql.COLUMN_FIELDS)


# --- flattening a document into index rows -------------------------------------------------

FieldRow = tuple[str, str, int, float | None, str | None]


def node_row(thing_id: str, path: str, v: Any) -> FieldRow:
    """The index row of the value ``v`` at ``path``: ``(thing_id, path, kind, num, str)``."""
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
    """Append the rows of every node of ``doc`` except its service fields (which are
    columns of ``things``)."""
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
    edge_upsert: list[tuple[str, int, int]] = field(default_factory=list)  # id, epoch, revision
    edge_delete: list[str] = field(default_factory=list)  # deleted things lose their position


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
    """The rows a batch writes.

    Parameters:
        changes: the batch, in order (several changes of one thing in revision order).
        gens: thing id -> (current incarnation number, whether the thing exists); absent
            = no history yet. Updated in place.

    Raises:
        StoreError: a document's service fields do not match its change.
    """
    plan = CommitPlan()
    history = plan.history
    states: dict[str, _ThingState] = {}
    membership: dict[tuple[str, str], bool] = {}
    edge: dict[str, tuple[int, int] | None] = {}  # the batch's last word on each position
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
            edge[tid] = None
            for k in [k for k in membership if k[1] == tid]:
                del membership[k]
        elif ch.edge is not None:
            edge[tid] = ch.edge
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
    for tid, pos in edge.items():
        if pos is None:
            plan.edge_delete.append(tid)
        else:
            plan.edge_upsert.append((tid, int(pos[0]), int(pos[1])))
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
_ENCODE = jsontext.dumps  # every committed document passes here: orjson, ~10x faster
