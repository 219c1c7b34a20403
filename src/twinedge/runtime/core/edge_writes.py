"""Writes to a twin that an edge host process serves: decided here, committed there.

While a twin runs on an edge host, the host is its single writer (its device reports
there); the core holds a replica. An application's write through the core is therefore
not queued for the core's writer: :class:`EdgeForward` takes the place of the writer's
queue for :class:`~.writes.Writes`, so every write operation keeps its own checks and
meaning. It checks access and ``If-None-Match`` on the core's copy, runs the operation's
mutator on it, validates the result as the writer would, and sends the host the JSON
merge patch (RFC 7396) from the core's copy to the result. A condition on the revision
(``If-Match``) names a revision of the core's copy (the one a client reads); the host is
asked to apply the patch only if it is still at the host revision that copy reflects
(the twin's edge position), so a change the device made there meanwhile fails the
condition. The caller chooses how long to wait (:data:`AckLevel`): until the host has
committed (``edge``; the core has not numbered the change yet, so the answer carries no
revision) or until replication has brought the core's copy to it (``core``).

A merge patch cannot carry ``null`` (it means "remove"), so a write that would leave a
JSON ``null`` in a twin served at the edge is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from twinedge.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, TooLarge
from twinedge.runtime import things
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.writer import MAX_THING_BYTES, Op, Result, _json_bytes

AckLevel = Literal["edge", "core"]
ACK_LEVELS: tuple[str, ...] = ("edge", "core")
# (thing id, merge patch, host revision it must be at or None, ack level) -> the thing
# after (without ``_revision`` for ack ``edge``)
EdgeWrite = Callable[[str, dict, int | None, AckLevel], Awaitable[dict]]


def check_ack(ack: str) -> AckLevel:
    """``ack`` as an :data:`AckLevel`.

    Raises:
        InvalidInput: not ``edge`` or ``core``.

    Examples:
        >>> check_ack("edge")
        'edge'
    """
    if ack not in ACK_LEVELS:
        raise InvalidInput(f"ack must be edge or core, got {ack!r}", "/ack")
    return ack  # type: ignore[return-value]


def content_of(doc: dict | None) -> dict:
    """What an application writes of a thing: everything but ``thingId`` and the
    service fields."""
    return {k: v for k, v in (doc or {}).items() if k != "thingId" and k not in things.META_FIELDS}


def replacement_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch (RFC 7396) that turns ``old`` into exactly ``new`` (which
    holds no ``null``).

    Examples:
        >>> replacement_patch({"a": {"x": 1}, "b": 2}, {"a": {"y": 2}})
        {'b': None, 'a': {'x': None, 'y': 2}}
    """
    patch: dict = {k: None for k in old if k not in new}
    for k, v in new.items():
        o = old.get(k)
        if isinstance(o, dict) and isinstance(v, dict):
            sub = replacement_patch(o, v)
            if sub:
                patch[k] = sub
        elif k not in old or not things.json_equal(o, v):
            patch[k] = v
    return patch


class EdgeForward:
    """Stands in for the writer's queue (``submit``) for a twin served at the edge.

    Parameters:
        things: the core's copies of the twins (read only).
        access: who may write what.
        write: sends the merge patch to the twin's host and waits for ``ack``.
        positions: each twin's edge position ``(epoch, host revision)`` in the core.
        ack: the acknowledgement level the caller waits for.
    """

    def __init__(
        self,
        things_: dict[str, dict],
        access: Access,
        write: EdgeWrite,
        positions: Mapping[str, tuple[int, int]],
        ack: AckLevel = "core",
    ):
        self.things, self.access, self.write, self.ack = things_, access, write, ack
        self.positions = positions

    async def submit(self, op: Op) -> Result:
        """Decide ``op`` on the core's copy and have the host commit it.

        Raises:
            NotFound: the thing is missing or not visible to the op's principal.
            PreconditionFailed: ``If-None-Match: *`` (the thing exists), or the host's
                revision is not ``op.if_match``.
            InvalidInput: the result is not a valid thing, or holds a ``null``.
            Conflict: the operation would delete the thing (see ``TwinService.delete``).
            TooLarge: the result would exceed the size limit.
            Unavailable: the host did not take the write, or (ack ``core``) the core's
                copy did not catch up in time.
        """
        cur = self.things.get(op.thing_id)
        if cur is None or not self.access.visible(op.principal, cur, op.role):
            raise NotFound(
                f"thing {op.thing_id} does not exist or is not visible to key {op.principal.id!r}"
            )
        if op.if_none_match:
            raise PreconditionFailed(f"thing {op.thing_id} already exists (If-None-Match: *)")
        host_revision = None
        if op.if_match is not None:
            if cur["_revision"] != op.if_match:
                raise PreconditionFailed(
                    f"thing {op.thing_id} is at revision {cur['_revision']}, not {op.if_match} "
                    "(If-Match)"
                )
            position = self.positions.get(op.thing_id)
            host_revision = position[1] if position else None
        new = op.mutate(cur)
        if isinstance(new, tuple):
            new = new[0]
        if new is None:
            raise Conflict(f"thing {op.thing_id} is deleted through TwinService.delete")
        old_c, new_c = content_of(cur), content_of(new)
        if op.validate:
            things.validate_thing(new_c, op.thing_id)
        if things.json_equal(old_c, new_c):
            return Result(cur, False, False)
        null = things.null_pointer(new_c)
        if null is not None:
            raise InvalidInput(
                f"twin {op.thing_id} runs on an edge host, whose changes are JSON merge "
                "patches: a null value cannot be stored there (it means 'remove')",
                null,
            )
        if _json_bytes(new) > MAX_THING_BYTES:
            raise TooLarge(f"thing {op.thing_id} would be larger than {MAX_THING_BYTES // 1000} kB")
        patch = replacement_patch(old_c, new_c)
        doc = await self.write(op.thing_id, patch, host_revision, self.ack)
        return Result(doc, False, True)
