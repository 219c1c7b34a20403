"""Live migration of a twin between edge hosts, transport-agnostic.

The functions here are coroutines that only call the methods of
:class:`MigrationPeer` on the two hosts — :class:`~twinedge.edge.host.EdgeHost`
implements them in-process; an RPC stub with the same async methods makes the same code
migrate between processes or machines. Every message is a plain value
(:class:`~twinedge.edge.host.TwinSnapshot`, :class:`~twinedge.edge.host.ChangeSet`, ...).

Two methods, after Clark et al., "Live Migration of Virtual Machines" (NSDI 2005):

**pre-copy** (:func:`pre_copy`) — copy while the source serves, stop only for the rest::

    source A (owned, serving)                          target B
    1. export_snapshot  ─── snapshot @ r0 ──────────▶  stage        (B: staged)
    2. export_changes   ─── changes r0+1..r1 ───────▶  stage_changes   } rounds until at
       export_changes   ─── changes r1+1..r2 ───────▶  stage_changes   } most max_final_
                                                                       } changes remain
    3. fence_and_export(e+1, B)   durable: A refuses from now ◀── downtime starts
                        ─── changes ..r_final ──────▶  adopt_changes(e+1, r_final)
                                                       durable: B serves  ◀── downtime ends
    6. release          A drops the state, keeps the redirect (moved)

**stop-and-copy** (:func:`stop_and_copy`), the baseline — fence first, then copy it all:
``expect → fence → export_snapshot → stage → adopt → release``; the downtime includes the
whole copy. (``expect`` tells the target the twin is coming, so that a device the fenced
source redirects there is told to retry, not that the twin is unknown.)

States of the twin on each host (durable ones in capitals)::

    A:  OWNED(e) ──fence(e+1,B)──▶ FENCED(e → B@e+1) ──release──▶ MOVED(→ B@e+1)
    B:  absent/MOVED ──expect/stage──▶ staged (memory) ──adopt(e+1)──▶ OWNED(e+1)
                              └──discard_staged──▶ absent/MOVED

**Cut-over by the target.** A target that has ``cut_over`` (:class:`CutOverPeer`; the
host processes' :class:`~twinedge.edge.remote.RemoteHost`) runs step 3 itself: it calls
the source's ``fence_and_export`` and adopts, in one call of the coordinator, so the
coordinator's own round trips (and its event loop) are not inside the downtime; the
target measures the downtime and reports it.

Downtime is the time from the call to fence until adopt returned (the target serves),
measured with the injected ``clock`` (by the target, on a cut-over); A refuses updates in this window with
:class:`~twinedge.edge.errors.NotOwnerError` naming B, and B answers
:class:`~twinedge.edge.errors.TwinNotReadyError` until it adopted.

**Failures.** Before the fence nothing is decided: the source still owns and serves the
twin; the migration functions abort the export and discard the staged copy (a crashed
target loses it anyway, it is in memory). From the fence on, the fence is durable in the
source's log and the twin's state, everything the source acknowledged, is in that log:

* the source crashes after the fence: reopen it (``EdgeHost.open`` on its log) — the twin
  comes back fenced with its full state — and call :func:`resume`;
* the target crashes before adopting: :func:`resume` to the same target once it is back,
  or to another one (passing the dead one as ``previous_target``, reopened from its log,
  so :func:`resume` can see it never adopted);
* a crash after adopt and before release: :func:`resume` releases the source.

The same path recovers from a host killed outright: reopen its log and
:func:`evacuate` its twins to other hosts (stop-and-copy from the reopened log; fenced
twins are resumed). Until that, the dead host's twins are unavailable — the price of
acknowledging only what one host's log holds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from twinedge.edge import failpoints, phases
from twinedge.edge.errors import EpochError, MigrationError, NotOwnerError, UnknownTwinError
from twinedge.edge.host import ChangeSet, FenceResult, TwinSnapshot
from twinedge.edge.log import Ownership, TwinStatus

__all__ = [
    "MIGRATION_METHODS",
    "CutOver",
    "CutOverPeer",
    "MigrationMethod",
    "MigrationPeer",
    "MigrationReport",
    "evacuate",
    "migrate",
    "pre_copy",
    "resume",
    "stop_and_copy",
]

MigrationMethod = Literal["pre-copy", "stop-and-copy"]
MIGRATION_METHODS: tuple[MigrationMethod, ...] = ("pre-copy", "stop-and-copy")
Clock = Callable[[], float]


class MigrationPeer(Protocol):
    """What a migration needs from a host (:class:`~twinedge.edge.host.EdgeHost` has it;
    so can an RPC client)."""

    @property
    def host_id(self) -> str: ...

    async def ownership(self, twin_id: str) -> Ownership: ...

    async def export_snapshot(self, twin_id: str) -> TwinSnapshot: ...

    async def export_changes(self, twin_id: str, after_revision: int) -> ChangeSet: ...

    async def abort_export(self, twin_id: str) -> None: ...

    async def fence(self, twin_id: str, epoch: int, owner: str) -> FenceResult: ...

    async def fence_and_export(
        self, twin_id: str, epoch: int, owner: str, after_revision: int
    ) -> tuple[FenceResult, ChangeSet]: ...

    async def release(self, twin_id: str) -> None: ...

    async def expect(self, twin_id: str, source: str) -> None: ...

    async def stage(self, snapshot: TwinSnapshot) -> None: ...

    async def stage_changes(self, changes: ChangeSet) -> int: ...

    async def discard_staged(self, twin_id: str) -> None: ...

    async def adopt(self, twin_id: str, epoch: int, revision: int) -> int: ...

    async def adopt_changes(self, changes: ChangeSet, epoch: int, revision: int) -> int: ...

    async def reclaim(self, twin_id: str, epoch: int) -> int: ...


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What one migration did.

    Attributes:
        twin_id: the twin.
        source, target: host ids.
        method: ``"pre-copy"``, ``"stop-and-copy"`` or ``"resume"``.
        epoch: the twin's epoch on the target.
        final_revision: its revision when the target adopted it.
        rounds: catch-up rounds before the fence (pre-copy).
        bytes_copied: bytes of snapshots and changes sent to the target.
        changes_copied: changes sent after the snapshot.
        downtime_s: fence requested -> target serving; the sum of the three below.
        fence_s: fence requested -> fence durable (waits for the source's commit in
            progress, then commits the fence; pre-copy: and the last changes exported
            with it).
        copy_s: what is copied inside the downtime on its own (stop-and-copy: the whole
            snapshot; pre-copy: 0, its last changes travel with the fence and adoption).
        adopt_s: adopt requested -> durable on the target.
        total_s: the whole migration.
    """

    twin_id: str
    source: str
    target: str
    method: str
    epoch: int
    final_revision: int
    rounds: int
    bytes_copied: int
    changes_copied: int
    downtime_s: float
    fence_s: float
    copy_s: float
    adopt_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class CutOver:
    """What a target that cuts a twin over on its own did (:meth:`CutOverPeer.cut_over`).

    Attributes:
        revision: the twin's revision when the target adopted it (the source's final).
        changes_copied, bytes_copied: the last changes the fence's answer brought.
        fence_s: the target's fence call sent -> the source's answer (fence durable).
        adopt_s: then -> the adoption durable on the target (it serves).
    """

    revision: int
    changes_copied: int
    bytes_copied: int
    fence_s: float
    adopt_s: float


class CutOverPeer(Protocol):
    """A target that runs the cut-over of a pre-copy itself: it fences the twin on the
    source (``fence_and_export``, straight to the source, not through the caller) and
    adopts it with the last changes, all in one call of the caller. Between processes
    this takes the caller's event loop and two of the four network legs out of the
    downtime. The source must be reachable from the target (a ``control_url``)."""

    async def cut_over(
        self, source: MigrationPeer, twin_id: str, epoch: int, after_revision: int
    ) -> CutOver: ...


async def _quietly(aw: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):
        await aw


async def _owned_by(source: MigrationPeer, target: MigrationPeer, twin_id: str) -> Ownership:
    if source.host_id == target.host_id:
        raise MigrationError(
            f"twin {twin_id!r}: source and target are the same host {source.host_id!r}"
        )
    own = await source.ownership(twin_id)
    if own.status is not TwinStatus.OWNED:
        raise MigrationError(
            f"twin {twin_id!r} is {own.status} on host {source.host_id!r}; only an owned twin can be "
            "migrated (a fenced one is finished with resume)"
        )
    return own


async def pre_copy(
    source: MigrationPeer,
    target: MigrationPeer,
    twin_id: str,
    *,
    max_rounds: int = 8,
    max_final_changes: int = 4,
    clock: Clock = time.perf_counter,
) -> MigrationReport:
    """Migrate ``twin_id`` from ``source`` to ``target`` by pre-copy (see the module).

    Parameters:
        source: the host that owns the twin.
        target: the host that will.
        twin_id: the twin.
        max_rounds: catch-up rounds at most before fencing anyway.
        max_final_changes: fence once a round copied at most this many changes.
        clock: seconds, for ``downtime_s`` and ``total_s``.

    Returns:
        The :class:`MigrationReport`.

    Raises:
        MigrationError: the source does not own the twin, source is target, or a step
            found the hosts in an unexpected state.
        EdgeError: any error of a host method. Raised before the fence, the source
            still owns and serves the twin (nothing to undo); raised at or after it, call
            :func:`resume` once both hosts answer.

    Examples:
        >>> import asyncio, tempfile, pathlib
        >>> from twinedge.edge.host import EdgeHost
        >>> async def demo():
        ...     d = pathlib.Path(tempfile.mkdtemp())
        ...     a, b = EdgeHost.open(d / "a.sqlite", "a"), EdgeHost.open(d / "b.sqlite", "b")
        ...     await a.place("fleet:car-7")
        ...     await a.apply("fleet:car-7", {"battery": {"level": 71}})
        ...     rep = await pre_copy(a, b, "fleet:car-7")
        ...     rev = await b.apply("fleet:car-7", {"battery": {"level": 70}})
        ...     await a.close(); await b.close()
        ...     return rep.epoch, rep.final_revision, rev
        >>> asyncio.run(demo())
        (2, 1, 2)
    """
    if max_rounds < 1 or max_final_changes < 0:
        raise ValueError("max_rounds must be >= 1 and max_final_changes >= 0")
    start = clock()
    own = await _owned_by(source, target, twin_id)
    snap = await source.export_snapshot(twin_id)
    copied, changes, rounds, rev = snap.nbytes, 0, 0, snap.revision
    try:
        await target.stage(snap)
        while True:
            cs = await source.export_changes(twin_id, rev)
            rounds += 1
            rev = await target.stage_changes(cs)
            copied += cs.nbytes
            changes += len(cs)
            if len(cs) <= max_final_changes or rounds >= max_rounds:
                break
    except BaseException:
        await _quietly(source.abort_export(twin_id))
        await _quietly(target.discard_staged(twin_id))
        raise
    epoch = max(own.latest_epoch, snap.epoch) + 1
    cut_over = getattr(target, "cut_over", None)
    if cut_over is not None and getattr(source, "control_url", None):
        # the target fences the source and adopts on its own: one call between the two
        # hosts inside the downtime, measured by the target (the caller's own round trip
        # to the target is outside it)
        phases.mark("driver.cutover-call", twin_id, epoch=epoch, rounds=rounds)
        done: CutOver = await cut_over(source, twin_id, epoch, rev)
        phases.mark("driver.cutover-answer", twin_id, epoch=epoch)
        failpoints.hit("driver.after-adopt")
        await source.release(twin_id)
        return MigrationReport(
            twin_id=twin_id,
            source=source.host_id,
            target=target.host_id,
            method="pre-copy",
            epoch=epoch,
            final_revision=done.revision,
            rounds=rounds,
            bytes_copied=copied + done.bytes_copied,
            changes_copied=changes + done.changes_copied,
            downtime_s=done.fence_s + done.adopt_s,
            fence_s=done.fence_s,
            copy_s=0.0,
            adopt_s=done.adopt_s,
            total_s=clock() - start,
        )
    # the downtime: two calls, the last changes travelling with the fence's answer and
    # with the adoption (one round trip each between processes)
    phases.mark("driver.fence-call", twin_id, epoch=epoch, rounds=rounds)
    t0 = clock()
    fence, cs = await source.fence_and_export(twin_id, epoch, target.host_id, rev)
    t_fenced = clock()
    phases.mark("driver.fence-answer", twin_id, epoch=epoch, changes=len(cs))
    failpoints.hit("driver.after-fence")
    copied += cs.nbytes
    changes += len(cs)
    await target.adopt_changes(cs, epoch, fence.revision)
    t1 = clock()
    phases.mark("driver.adopt-answer", twin_id, epoch=epoch)
    failpoints.hit("driver.after-adopt")
    await source.release(twin_id)
    return MigrationReport(
        twin_id=twin_id,
        source=source.host_id,
        target=target.host_id,
        method="pre-copy",
        epoch=epoch,
        final_revision=fence.revision,
        rounds=rounds,
        bytes_copied=copied,
        changes_copied=changes,
        downtime_s=t1 - t0,
        fence_s=t_fenced - t0,
        copy_s=0.0,  # the last changes travel with the fence's answer and the adoption
        adopt_s=t1 - t_fenced,
        total_s=clock() - start,
    )


async def _copy_fenced(
    source: MigrationPeer,
    target: MigrationPeer,
    twin_id: str,
    epoch: int,
    method: str,
    t0: float,
    start: float,
    clock: Clock,
) -> MigrationReport:
    """The end of stop-and-copy and of a resume: the source is fenced (since ``t0``);
    copy its final state, let the target adopt it at ``epoch``, release the source."""
    t_fenced = clock()
    snap = await source.export_snapshot(twin_id)
    await target.stage(snap)
    t_copied = clock()
    await target.adopt(twin_id, epoch, snap.revision)
    t1 = clock()
    failpoints.hit("driver.after-adopt")
    await source.release(twin_id)
    return MigrationReport(
        twin_id=twin_id,
        source=source.host_id,
        target=target.host_id,
        method=method,
        epoch=epoch,
        final_revision=snap.revision,
        rounds=0,
        bytes_copied=snap.nbytes,
        changes_copied=0,
        downtime_s=t1 - t0,
        fence_s=t_fenced - t0,
        copy_s=t_copied - t_fenced,
        adopt_s=t1 - t_copied,
        total_s=clock() - start,
    )


async def stop_and_copy(
    source: MigrationPeer,
    target: MigrationPeer,
    twin_id: str,
    *,
    clock: Clock = time.perf_counter,
) -> MigrationReport:
    """Migrate ``twin_id`` by stop-and-copy: fence, copy the final state, adopt.

    Parameters and errors as :func:`pre_copy` (every error from the fence on calls for
    :func:`resume`).
    """
    start = clock()
    own = await _owned_by(source, target, twin_id)
    epoch = own.latest_epoch + 1
    await target.expect(twin_id, source.host_id)
    t0 = clock()
    try:
        await source.fence(twin_id, epoch, target.host_id)
    except (MigrationError, EpochError, NotOwnerError, UnknownTwinError):
        await _quietly(target.discard_staged(twin_id))  # refused: the source still owns it
        raise
    failpoints.hit("driver.after-fence")
    return await _copy_fenced(source, target, twin_id, epoch, "stop-and-copy", t0, start, clock)


async def migrate(
    source: MigrationPeer,
    target: MigrationPeer,
    twin_id: str,
    method: MigrationMethod = "pre-copy",
    *,
    clock: Clock = time.perf_counter,
) -> MigrationReport:
    """:func:`pre_copy` or :func:`stop_and_copy` by name.

    Raises:
        MigrationError: an unknown method; otherwise as the method.
    """
    if method == "pre-copy":
        return await pre_copy(source, target, twin_id, clock=clock)
    if method == "stop-and-copy":
        return await stop_and_copy(source, target, twin_id, clock=clock)
    raise MigrationError(f"unknown migration method {method!r}; use 'pre-copy' or 'stop-and-copy'")


async def resume(
    source: MigrationPeer,
    target: MigrationPeer,
    twin_id: str,
    *,
    previous_target: MigrationPeer | None = None,
    clock: Clock = time.perf_counter,
) -> MigrationReport | None:
    """Finish (or clean up) a migration of ``twin_id`` that stopped half-way, from what
    the hosts' logs say.

    * source still **owns** the twin (the fence never became durable): the migration did
      not happen; drop the target's staged copy; returns ``None``.
    * source **moved** it: done already; returns ``None``.
    * source **fenced** it to ``target``: if the target adopted it already, release the
      source and return ``None``; otherwise copy the source's final state and adopt it
      there.
    * source fenced it to another host: pass that host as ``previous_target`` (reopened
      from its log if it died). If it adopted, the twin lives there: the source is
      released and ``None`` returned. If not, its staged copy is dropped, the twin is
      fenced again with the next epoch to ``target`` and copied there — or, when
      ``target`` is the source itself, the source serves it again under the next epoch
      (``reclaim``; returns ``None``).

    Returns:
        A report with ``method="resume"`` when this call copied the twin
        (``downtime_s``: this call's own copy; the twin was unavailable since the
        interrupted fence), else ``None``.

    Raises:
        MigrationError: the source never had the twin, or it was fenced to a host that is
            not ``target`` and no ``previous_target`` was given.
    """
    start = clock()
    own = await source.ownership(twin_id)
    if own.status is TwinStatus.OWNED:
        await _quietly(source.abort_export(twin_id))
        await target.discard_staged(twin_id)
        return None
    if own.status is TwinStatus.MOVED:
        return None
    if own.status is not TwinStatus.FENCED:
        raise MigrationError(
            f"twin {twin_id!r} is {own.status} on host {source.host_id!r}; nothing to resume"
        )
    epoch = own.owner_epoch
    if own.owner != target.host_id:
        if previous_target is None or previous_target.host_id != own.owner:
            raise MigrationError(
                f"twin {twin_id!r} was fenced to host {own.owner!r}, not {target.host_id!r}; pass "
                f"{own.owner!r} as previous_target (reopened from its log if it died) so that "
                "resume can check it never adopted the twin"
            )
        prev = await previous_target.ownership(twin_id)
        if (
            prev.status in (TwinStatus.OWNED, TwinStatus.FENCED, TwinStatus.MOVED)
            and prev.epoch >= epoch
        ):
            await source.release(twin_id)  # it adopted: the twin lives on from there
            return None
        await previous_target.discard_staged(twin_id)
        epoch = own.latest_epoch + 1
        if target.host_id == source.host_id:  # back where it was: serve it again
            await source.reclaim(twin_id, epoch)
            return None
        await target.expect(twin_id, source.host_id)
        await source.fence(twin_id, epoch, target.host_id)
    tgt = await target.ownership(twin_id)
    if tgt.status is TwinStatus.OWNED and tgt.epoch == epoch:
        await source.release(twin_id)  # it adopted before the interruption
        return None
    return await _copy_fenced(source, target, twin_id, epoch, "resume", clock(), start, clock)


async def evacuate(
    source: MigrationPeer,
    targets: Mapping[str, MigrationPeer],
    *,
    clock: Clock = time.perf_counter,
) -> list[MigrationReport]:
    """Move every listed twin off ``source`` — typically a host reopened from the log
    of a process that died — to its target: owned twins by stop-and-copy, fenced ones by
    :func:`resume` (to the target they were fenced to, which must be the one given).

    Parameters:
        source: the host to empty.
        targets: ``twin_id -> target host``.

    Returns:
        One report per twin moved (twins already moved are skipped).
    """
    out = []
    for twin_id, target in targets.items():
        own = await source.ownership(twin_id)
        if own.status is TwinStatus.OWNED:
            out.append(await stop_and_copy(source, target, twin_id, clock=clock))
        elif own.status is TwinStatus.FENCED:
            rep = await resume(source, target, twin_id, clock=clock)
            if rep is not None:
                out.append(rep)
    return out
