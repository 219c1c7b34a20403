"""Reading twins: a thing now or as it was, a value at a path, the desired-vs-reported
delta, history, search, counts and aggregates.

Current documents come from memory; as-of reads, history, search, counts and aggregates
go to the store on a reader thread. Every read is judged by :class:`~.access.Access`: a
key sees its domain's things and what other domains grant it; an as-of read judges
visibility on the document as it was, and a key that sees a thing through a grant sees
only the revisions of its history at which the thing matched the grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinedge.errors import InvalidInput, NotFound
from twinedge.runtime import rql, things
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.core.writer import rfc3339
from twinedge.runtime.store.base import SearchPage, SearchQuery, Store

# the times the service reads and writes, unix seconds: 0001-01-01T00:00:00Z up to (not
# including) 5000-01-01T00:00:00Z
MIN_TIME_S, MAX_TIME_S = -62_135_596_800.0, 95_617_584_000.0


class Reads:
    """The read operations of the service.

    Parameters:
        store: where history is kept and searches run.
        pools: the store threads.
        access: what each principal may see.
    """

    def __init__(self, store: Store, pools: StorePools, access: Access):
        self.store = store
        self.pools = pools
        self.access = access

    async def get_thing(
        self, p: Principal, thing_id: str, *, revision: int | None = None, at: float | None = None
    ) -> dict:
        """The thing now, or as it was at ``revision`` or at time ``at`` (unix s).

        Raises:
            Forbidden: ``p`` cannot read.
            InvalidInput: a bad thing id, revision or time.
            NotFound: the thing does not exist (did not then), its history was pruned, or
                it is not visible to ``p``.
        """
        if revision is None and at is None:
            return await self.access.get_visible(p, thing_id)
        # an as-of read also works for a thing deleted since: visibility is judged on the
        # document as it was
        if revision is not None and not 0 <= revision <= 2**53:
            raise InvalidInput(f"revision must lie in 0..2^53, got {revision}", "/revision")
        if at is not None and not (
            isinstance(at, int | float) and MIN_TIME_S <= at < MAX_TIME_S
        ):  # 0001-01-01T00:00:00Z up to 5000-01-01T00:00:00Z
            raise InvalidInput(f"at must be a time between the years 1 and 5000, got {at}", "/at")
        self.access.require(p, "read")
        things.check_thing_id(thing_id)
        if p.domain is not None:
            await self.access.grants(p.domain)
        old = await self.pools.read(self.store.thing_at, thing_id, revision=revision, at=at)
        if old is None or not self.access.visible(p, old):
            when = (
                f"revision {revision}"
                if revision is not None or at is None
                else f"time {rfc3339(at)}"
            )
            raise NotFound(
                f"thing {thing_id} did not exist at {when}, its history was pruned, "
                f"or it is not visible to key {p.id!r}"
            )
        return old

    async def get_path(self, p: Principal, thing_id: str, path: str) -> Any:
        """The value at ``path`` of the thing.

        Raises:
            NotFound: the thing or the path does not exist (or is not visible).
        """
        doc = await self.access.get_visible(p, thing_id)
        tokens = things.split_path(path)
        try:
            return things.get_path(doc, tokens)
        except KeyError:
            raise NotFound(
                f"thing {thing_id} has nothing at /{path.strip('/')}",
                error=things.missing_error(doc, tokens),
            ) from None

    async def delta(self, p: Principal, thing_id: str) -> dict:
        """The desired properties the device has not reported yet, per feature.

        Raises:
            NotFound: the thing does not exist or is not visible.
        """
        doc = await self.access.get_visible(p, thing_id)
        d = things.delta(doc)
        return {"thingId": thing_id, "revision": doc["_revision"], "inSync": not d, "delta": d}

    async def history(
        self,
        p: Principal,
        thing_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """A page of the changes of the thing's current incarnation, oldest first, and the
        cursor of the next page (``None`` after the last). A key that sees the thing
        through a grant sees only the revisions at which the thing matched the grant.

        Raises:
            NotFound: the thing does not exist or is not visible.
            InvalidInput: a bad time, limit or cursor.
        """
        doc = await self.access.get_visible(p, thing_id)
        for name, v in (("from", since), ("to", until)):
            if v is not None and not MIN_TIME_S <= v < MAX_TIME_S:
                raise InvalidInput(
                    f"{name} must be a time between the years 1 and 5000", f"/{name}"
                )
        if not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must lie in 1..10000, got {limit}", "/limit")
        after = 0
        if cursor is not None:
            if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit()):
                raise InvalidInput("the cursor is not one this service gave out", "/cursor")
            after = int(cursor[:16])
        items = await self.pools.read(
            self.store.history,
            thing_id,
            since=since,
            until=until,
            after_revision=after,
            limit=limit,
        )
        nxt = str(items[-1]["revision"]) if len(items) == limit else None
        if p.domain is not None and doc["_domain"] != p.domain and items:
            items = await self.pools.read(self._granted_history, p, thing_id, items)
        return items, nxt

    def _granted_history(self, p: Principal, thing_id: str, items: list[dict]) -> list[dict]:
        """The entries of ``items`` (consecutive revisions) at which the thing, as it was
        then, was visible to ``p`` (a deletion: when the deleted document was)."""
        first = items[0]["revision"]
        prev = self.store.thing_at(thing_id, revision=first - 1) if first > 1 else None
        out = []
        for item in items:
            if item["deleted"]:
                doc = None
                seen = prev is not None and self.access.visible(p, prev)
            else:
                if item["revision"] == first or prev is None:
                    doc = self.store.thing_at(thing_id, revision=item["revision"])
                else:
                    doc = things.apply_json_patch(prev, item["ops"])
                    doc["_revision"] = item["revision"]
                seen = doc is not None and self.access.visible(p, doc)
            if seen:
                out.append(item)
            prev = doc
        return out

    async def search(
        self,
        p: Principal,
        *,
        filter: str | None = None,
        sort: Sequence[tuple[str, bool]] = (),
        limit: int = 25,
        cursor: str | None = None,
        fields: Sequence[str] | None = None,
        aggregates: bool = False,
    ) -> SearchPage:
        """A page of the things ``p`` may see that match ``filter`` (RQL); with
        ``aggregates``, also those its domain may only aggregate privately (for the
        private-aggregate release, which never returns them).

        Raises:
            Forbidden: ``p`` cannot read.
            InvalidInput: a bad filter, sort, limit, cursor or field.
        """
        self.access.require(p, "read")
        if filter:
            rql.parse(filter)
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must lie in 1..1000, got {limit}", "/limit")
        q = SearchQuery(
            filter,
            await self.access.scope(p, aggregates=aggregates),
            tuple(sort),
            limit,
            cursor,
            tuple(fields) if fields else None,
        )
        return await self.pools.read(self.store.search, q)

    async def count(
        self, p: Principal, filter: str | None = None, *, aggregates: bool = False
    ) -> int:
        """How many things ``p`` may see (or, with ``aggregates``, privately aggregate) match
        ``filter``.

        Raises:
            Forbidden: ``p`` cannot read.
            InvalidInput: the filter is not RQL.
        """
        self.access.require(p, "read")
        scope = await self.access.scope(p, aggregates=aggregates)
        return await self.pools.read(self.store.count, filter, scope)

    async def aggregate(
        self, p: Principal, *, filter: str | None, group_by: str, fn: str, field: str | None
    ) -> list[dict]:
        """``fn`` (count, min, max or avg) of ``field`` per value of ``group_by`` over the
        things ``p`` may see that match ``filter``.

        Raises:
            Forbidden: ``p`` cannot read.
            InvalidInput: an unknown function, a missing field, a bad path or filter.
        """
        self.access.require(p, "read")
        if fn not in ("count", "min", "max", "avg"):
            raise InvalidInput(f"aggregate must be count, min, max or avg, got {fn!r}", "/fn")
        if fn != "count" and not field:
            raise InvalidInput(f"{fn} needs a field", "/field")
        return await self.pools.read(
            self.store.aggregate, filter, await self.access.scope(p), group_by, fn, field
        )
