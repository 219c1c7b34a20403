"""Named groups of twins: a filter whose membership the writer keeps current, or a fixed
list of things.

A group belongs to a domain and holds things of that domain only. The writer asks
:meth:`Groups.changes` which groups each change makes a thing join or leave (they go
into the change, its events and its commit) and hands the batch's new membership to
:meth:`Groups.commit` once it is stored. Putting or deleting a group is an exclusive
step of the writer, so no write slips between the members computed and the group stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twinedge.errors import InvalidInput, NotFound
from twinedge.runtime import rql, things
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.core.writer import WriteQueue
from twinedge.runtime.store.base import GroupSpec, Store

MAX_GROUP_MEMBERS = 100_000
# "domain/name" -> (spec, parsed filter or None for a fixed list, current members)
GroupIndex = dict[str, tuple[GroupSpec, rql.Node | None, set[str]]]


class Groups:
    """The groups of every domain and their members.

    Parameters:
        store: where groups and members are kept.
        pools: the store threads.
        things: the twins in memory (read only; the writer changes them).
        queue: the writer's queue (groups change in exclusive steps).
        access: who may read and write groups.
        clock: unix time source.
    """

    def __init__(
        self,
        store: Store,
        pools: StorePools,
        things: dict[str, dict],
        queue: WriteQueue,
        access: Access,
        *,
        clock: Callable[[], float],
    ):
        self.store = store
        self.pools = pools
        self.things = things
        self.queue = queue
        self.access = access
        self.clock = clock
        self.index: GroupIndex = {}

    async def load(self) -> None:
        """Read every group and its members from the store."""
        specs = await self.queue.on_writer(self.store.groups)
        for spec in specs:
            members = await self.pools.read(self._all_members, spec.domain, spec.name)
            self.index[f"{spec.domain}/{spec.name}"] = (
                spec,
                rql.parse(spec.filter) if spec.filter else None,
                set(members),
            )

    def _all_members(self, domain: str, name: str) -> list[str]:
        out, cursor = [], None
        while True:
            page, cursor = self.store.group_members(domain, name, limit=10_000, cursor=cursor)
            out += page
            if not cursor:
                return out

    # ------------------------------------------------------------------ for the writer
    def changes(
        self,
        thing_id: str,
        domain: str,
        new: dict | None,
        membership: dict[str, set[str]],
    ) -> tuple[list[str], list[str]]:
        """The keys of the groups ``thing_id`` joins and leaves when it becomes ``new``
        (``None``: deleted); ``membership`` holds the members as the batch left them so
        far and is updated."""
        joins, leaves = [], []
        for key, (spec, node, members) in self.index.items():
            if spec.domain != domain:
                continue
            cur = membership.get(key, members)
            was = thing_id in cur
            if node is None:  # a fixed list: a deleted thing leaves it for good
                now_in = was and new is not None
            else:
                now_in = new is not None and rql.evaluate(node, new)
            if was != now_in:
                if key not in membership:
                    membership[key] = set(members)
                if now_in:
                    membership[key].add(thing_id)
                    joins.append(key)
                else:
                    membership[key].discard(thing_id)
                    leaves.append(key)
        return joins, leaves

    def commit(self, membership: dict[str, set[str]]) -> None:
        """Take the members of a committed batch (see :meth:`changes`)."""
        for key, members in membership.items():
            self.index[key][2].clear()
            self.index[key][2].update(members)

    # ------------------------------------------------------------------ operations
    async def put_group(
        self,
        p: Principal,
        name: str,
        *,
        filter: str | None = None,
        members: Sequence[str] | None = None,
    ) -> GroupSpec:
        """Create or replace a named group of the caller's domain: a filter (membership
        kept current as twins change) or an explicit list.

        Raises:
            Forbidden: ``p`` cannot write.
            InvalidInput: no domain, a bad name, filter or member list.
            NotFound: a listed member is not a thing of the caller's domain.
        """
        self.access.require(p, "write")
        if p.domain is None:
            raise InvalidInput("groups belong to a domain; use a domain key")
        if not name or "/" in name or len(name) > 128:
            raise InvalidInput(f"group name {name!r} must be 1-128 characters without '/'", "/name")
        if (filter is None) == (members is None):
            raise InvalidInput("give exactly one of filter and members", "")
        things.check_name(name, "a group name", "/name")
        node = rql.parse(filter) if filter else None
        if members is not None:
            if not isinstance(members, list | tuple) or len(members) > MAX_GROUP_MEMBERS:
                raise InvalidInput(
                    f"members must be a list of at most {MAX_GROUP_MEMBERS} thing ids", "/members"
                )
            for i, m in enumerate(members):
                try:
                    things.check_thing_id(m)
                except InvalidInput as e:
                    raise InvalidInput(e.detail, f"/members/{i}") from None
            members = list(dict.fromkeys(members))
        domain = p.domain

        async def run() -> GroupSpec:
            # alone in the writer: no write can slip between the members computed here
            # and the group stored, so the group always matches its filter
            if node is not None:
                initial = [
                    tid
                    for tid, d in self.things.items()
                    if d["_domain"] == domain and rql.evaluate(node, d)
                ]
            else:  # a fixed list holds things of the group's own domain only
                initial = list(members or ())
                for i, m in enumerate(initial):
                    d = self.things.get(m)
                    if d is None or d["_domain"] != domain:
                        raise NotFound(
                            f"member {m} does not exist or is not a thing of domain {domain!r}",
                            pointer=f"/members/{i}",
                        )
            spec = GroupSpec(
                domain, name, filter, tuple(initial if node is None else ()), self.clock()
            )
            await self.queue.on_writer(self.store.put_group, spec, initial)
            self.index[f"{domain}/{name}"] = (spec, node, set(initial))
            return spec

        return await self.queue.exclusive(p, f"group:{domain}/{name}", run)

    async def get_group(
        self, p: Principal, name: str, *, limit: int = 1000, cursor: str | None = None
    ) -> dict:
        """A group of the caller's domain with a page of its members.

        Raises:
            Forbidden: ``p`` cannot read.
            NotFound: the caller's domain has no such group.
            InvalidInput: a bad limit or cursor.
        """
        self.access.require(p, "read")
        key = f"{p.domain}/{name}"
        if key not in self.index:
            raise NotFound(f"group {name!r} does not exist in domain {p.domain!r}")
        spec = self.index[key][0]
        members, nxt = await self.pools.read(
            self.store.group_members, spec.domain, name, limit=limit, cursor=cursor
        )
        return {
            "name": name,
            "domain": spec.domain,
            "filter": spec.filter,
            "size": len(self.index[key][2]),
            "members": members,
            "cursor": nxt,
        }

    async def list_groups(self, p: Principal) -> list[dict]:
        """The groups of the caller's domain (every group, for the service admin).

        Raises:
            Forbidden: ``p`` cannot read.
        """
        self.access.require(p, "read")
        return [
            {"name": spec.name, "domain": spec.domain, "filter": spec.filter, "size": len(m)}
            for spec, _, m in self.index.values()
            if p.domain is None or spec.domain == p.domain
        ]

    async def delete_group(self, p: Principal, name: str) -> None:
        """Delete a group of the caller's domain.

        Raises:
            Forbidden: ``p`` cannot write.
            NotFound: the caller's domain has no such group.
        """
        self.access.require(p, "write")
        key = f"{p.domain}/{name}"
        if key not in self.index:
            raise NotFound(f"group {name!r} does not exist in domain {p.domain!r}")
        domain = p.domain

        async def run() -> None:
            await self.queue.on_writer(self.store.delete_group, domain, name)
            self.index.pop(key, None)

        await self.queue.exclusive(p, f"group:{key}", run)
