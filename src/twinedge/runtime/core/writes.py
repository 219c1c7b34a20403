"""The mutations of the twins: what each write does to a document.

Each operation checks what it can before queueing (the caller's role, the thing id, the
body), then hands the writer a :data:`~.writer.Mutator`: a function from the current
document to the new one that never modifies its input (documents in memory are shared).
The writer checks access and conditions again on the document the mutation applies to.
A client writes ``policyId``, ``definition``, ``attributes`` and ``features``. The
service fields (``_revision``, ``_created``, ``_modified``, ``_domain``, ``_host``)
and ``thingId`` are the service's: a client cannot write them, and only the orchestrator
changes ``_host`` (:meth:`Writes.set_host`).
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from typing import Any, Protocol

from twinedge.errors import Forbidden, InvalidInput, NotFound
from twinedge.runtime import things
from twinedge.runtime.auth import SYSTEM, Principal
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.writer import Op, Result, view


class OpSink(Protocol):
    """Where a write operation's :class:`~.writer.Op` goes: the writer's queue, or the
    edge host that serves the twin (:class:`~.edge_writes.EdgeForward`)."""

    async def submit(self, op: Op) -> Result: ...


class Writes:
    """The write operations of the service, all through the writer.

    Parameters:
        queue: the writer's queue (or another :class:`OpSink`).
        access: who may write what.
        things: the twins in memory (read only; the writer changes them).
        metrics: the service's counters.
    """

    def __init__(
        self, queue: OpSink, access: Access, things: dict[str, dict], metrics: Counter[str]
    ):
        self.queue = queue
        self.access = access
        self.things = things
        self.metrics = metrics

    async def put_thing(
        self,
        p: Principal,
        thing_id: str,
        body: Any,
        *,
        if_match: int | None = None,
        if_none_match: bool = False,
        domain: str | None = None,
    ) -> tuple[dict, bool]:
        """Create or replace a thing; returns (thing, created). The domain is the caller's
        (the service admin names it with ``domain`` or ``_domain`` in the body).

        Raises:
            Forbidden: ``p`` cannot write, or the namespace is another domain's.
            Conflict: the service admin names a domain other than the namespace's owner.
            InvalidInput: a bad thing id, body or domain.
            NotFound: the thing exists but is not visible to ``p``.
            PreconditionFailed: ``if_match`` or ``if_none_match`` does not hold.
        """
        access = self.access
        access.require(p, "write")
        things.check_thing_id(thing_id)
        if isinstance(body, dict) and "_domain" in body:
            domain = domain or body.get("_domain")
        clean = things.validate_thing(
            {k: v for k, v in body.items() if k not in things.META_FIELDS}
            if isinstance(body, dict)
            else body,
            thing_id,
        )
        if p.domain is not None:
            domain = p.domain
        elif domain is not None:
            things.check_domain(domain, "/_domain")
        if not domain or not isinstance(domain, str):
            raise InvalidInput(
                "the service admin must name the owner domain of a new thing (field _domain)",
                "/_domain",
            )
        if p.domain is not None:
            await access.grants(p.domain)
        # read after the last await: both may have changed while it waited
        ns, owner = access.namespace_owner(thing_id)
        doc = self.things.get(thing_id)
        if doc is not None and access.visible(p, doc, "write"):
            pass  # a replacement; re-checked by the writer
        elif owner is not None and owner != domain:
            # a thing that exists but is not visible and a free id answer alike
            if doc is not None:
                self.metrics["access_denied_total"] += 1
            raise access.foreign_namespace(p, ns, owner)
        elif doc is not None:
            await access.get_visible(p, thing_id, "write")  # raises the same NotFound as a GET

        def mutate(cur: dict | None) -> dict:
            new = dict(clean)
            new["_domain"] = cur["_domain"] if cur else domain
            new["_host"] = cur.get("_host") if cur else None
            return new

        op = Op(thing_id, mutate, p, "http", if_match, if_none_match, domain=domain)
        res = await self.queue.submit(op)
        return res.document(), res.created

    async def patch(
        self,
        p: Principal,
        thing_id: str,
        path: str,
        patch: Any,
        *,
        if_match: int | None = None,
        source: str = "http",
    ) -> dict:
        """JSON Merge Patch (RFC 7396) of the value at ``path`` (``""`` = the thing).

        Raises:
            Forbidden: ``p`` cannot write, or ``path`` is a service field.
            NotFound: the thing does not exist (or is not visible), or ``path`` lies
                outside ``attributes`` and ``features``.
            InvalidInput: the result is not a valid thing.
            PreconditionFailed: ``if_match`` does not hold.
        """
        await self.access.get_visible(p, thing_id, "write")
        tokens = things.split_path(path)
        _check_writable(tokens)

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            content = _content(cur)
            try:
                old = things.get_path(content, tokens) if tokens else content
            except KeyError:
                old = None
            new_val = things.merge_patch(old, patch)
            if tokens and patch is None:  # null deletes, at any level (RFC 7396, as Ditto)
                with contextlib.suppress(KeyError):
                    things.delete_path(content, tokens)
            elif tokens:
                things.set_path(content, tokens, new_val)
            else:
                if not isinstance(new_val, dict):
                    raise InvalidInput("a merge patch of a thing must be a JSON object", "")
                content = new_val
                content["thingId"] = thing_id
            return _with_meta(content, cur)

        return (await self.queue.submit(Op(thing_id, mutate, p, source, if_match))).document()

    async def put_path(
        self, p: Principal, thing_id: str, path: str, value: Any, *, if_match: int | None = None
    ) -> tuple[dict, bool]:
        """Create or replace the value at ``path``; returns (thing, created_at_path).

        Raises:
            Forbidden: ``p`` cannot write, or ``path`` is a service field.
            InvalidInput: ``path`` is the whole thing (use :meth:`put_thing`), or the
                result is not a valid thing.
            NotFound: the thing does not exist (or is not visible), or ``path`` lies
                outside ``attributes`` and ``features``.
            PreconditionFailed: ``if_match`` does not hold.
        """
        await self.access.get_visible(p, thing_id, "write")
        tokens = things.split_path(path)
        if not tokens:
            raise InvalidInput("use PUT /things/{id} to replace a whole thing")
        _check_writable(tokens)
        created = {"v": False}

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            content = _content(cur)
            try:
                things.get_path(content, tokens)
            except KeyError:
                created["v"] = True
            things.set_path(content, tokens, copy.deepcopy(value))
            return _with_meta(content, cur)

        res = await self.queue.submit(Op(thing_id, mutate, p, "http", if_match))
        return res.document(), created["v"]

    async def delete(
        self,
        p: Principal,
        thing_id: str,
        path: str = "",
        *,
        if_match: int | None = None,
        edge_retired: bool = False,
    ) -> dict | None:
        """Delete the thing (``path`` ``""``) or the value at ``path``; returns the thing
        after (``None`` once deleted). ``edge_retired``: the twin's edge host has retired
        it, so the writer deletes it although it has an edge position (see
        :attr:`.writer.Op.edge_retired`).

        Raises:
            Forbidden: ``p`` cannot write, or ``path`` is a service field.
            NotFound: the thing or the path does not exist (or is not visible).
            PreconditionFailed: ``if_match`` does not hold.
        """
        await self.access.get_visible(p, thing_id, "write")
        tokens = things.split_path(path)
        if tokens:
            _check_writable(tokens)

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            if not tokens:
                return None
            content = _content(cur)
            try:
                things.delete_path(content, tokens)
            except KeyError:
                raise NotFound(
                    f"thing {thing_id} has nothing at /{path.strip('/')}",
                    error=things.missing_error(content, tokens),
                ) from None
            return _with_meta(content, cur)

        op = Op(thing_id, mutate, p, "http", if_match, edge_retired=edge_retired)
        return (await self.queue.submit(op)).thing

    async def set_desired(
        self,
        p: Principal,
        thing_id: str,
        feature_id: str,
        patch: dict,
        *,
        if_match: int | None = None,
    ) -> dict:
        """Merge-patch a feature's desired properties; the device gets them over MQTT and
        the twin is pending until the device reports matching values (see :meth:`patch`
        for the errors)."""
        return await self.patch(
            p,
            thing_id,
            f"features/{things.escape_token(feature_id)}/desiredProperties",
            patch,
            if_match=if_match,
        )

    async def device_report(self, thing_id: str, payload: Any, *, device: str | None = None) -> int:
        """Apply a device's report: ``{feature_id: merge patch of its properties}``.
        Returns the new revision once it is durable.

        Raises:
            InvalidInput: the report is not an object of feature id -> object, or holds
                what a twin cannot.
            NotFound: the thing is not registered.
        """
        if not isinstance(payload, dict) or not payload:
            raise InvalidInput(
                "a report must be a JSON object of feature id -> properties merge patch", ""
            )
        for fid, props in payload.items():
            if not isinstance(props, dict):
                raise InvalidInput(
                    f"feature {fid!r}: the properties patch must be a JSON object",
                    f"/{things.escape_token(fid)}",
                )
        principal = Principal(device or thing_id, None, "write", "device")
        for fid, props in payload.items():
            things.validate_feature(fid, {"properties": props})
        things.check_json(payload)
        if things.too_deep(payload, things.MAX_DEPTH - 3):
            raise InvalidInput(f"the report nests deeper than {things.MAX_DEPTH - 3} levels", "")

        def mutate(cur: dict | None) -> tuple[dict, list[dict]]:
            if cur is None:
                raise NotFound(f"thing {thing_id} is not registered")
            # copy only what changes: the thing, its features map and the touched features
            new = dict(cur)
            feats = dict(cur.get("features") or {})
            ops: list[dict] = []
            for fid, props in payload.items():
                old_f = feats.get(fid)
                f = dict(old_f or {})
                old_p = f.get("properties") or {}
                f["properties"] = things.merge_patch(old_p, props)
                feats[fid] = f
                if old_f is None:
                    ops.append(
                        {"op": "add", "path": f"/features/{things.escape_token(fid)}", "value": f}
                    )
                elif "properties" not in old_f:
                    ops.append(
                        {
                            "op": "add",
                            "path": f"/features/{things.escape_token(fid)}/properties",
                            "value": f["properties"],
                        }
                    )
                else:
                    ops += things.json_patch(
                        old_p, f["properties"], f"/features/{things.escape_token(fid)}/properties"
                    )
            new["features"] = feats
            return new, ops

        res = await self.queue.submit(Op(thing_id, mutate, principal, "mqtt", validate=False))
        return res.document()["_revision"]

    async def set_host(self, thing_id: str, host: str | None) -> dict:
        """The orchestrator moved the twin to ``host``; returns the thing after.

        Raises:
            NotFound: the thing does not exist.
        """

        def mutate(cur: dict | None) -> dict | None:
            if cur is None:
                raise NotFound(f"thing {thing_id} does not exist")
            new = copy.deepcopy(cur)
            new["_host"] = host
            return new

        return (await self.queue.submit(Op(thing_id, mutate, SYSTEM, "orchestrator"))).document()


def _content(doc: dict | None) -> dict:
    """A private, mutable copy of :func:`~.writer.view` (for mutators that edit in place)."""
    return copy.deepcopy(view(doc))


def _with_meta(content: dict, cur: dict) -> dict:
    content["_domain"] = cur["_domain"]
    content.setdefault("_host", cur.get("_host"))
    content["thingId"] = cur["thingId"]
    return content


def _check_writable(tokens: list[str]) -> None:
    if tokens and (tokens[0] in things.META_FIELDS or tokens[0] == "thingId"):
        raise Forbidden(
            f"/{tokens[0]} is kept by the service and cannot be written",
            pointer=f"/{tokens[0]}",
        )
    if tokens and tokens[0] not in things.DOCUMENT_FIELDS:
        raise NotFound(
            f"a thing has no /{tokens[0]}; write /policyId, /definition, or under "
            "/attributes or /features"
        )
    if tokens and tokens[0] in ("policyId", "definition") and len(tokens) > 1:
        raise NotFound(
            f"/{tokens[0]} is a single value; nothing lies below it",
            error=f"things:{tokens[0]}.notfound",
        )
