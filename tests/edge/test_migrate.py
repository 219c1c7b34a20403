"""Live migration: pre-copy and stop-and-copy under load (no acknowledged update lost
or applied twice), downtime on an injected clock over a modelled link, and recovery of
every interrupted step from the hosts' logs."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.edge.helpers import CommitGate, FakeClock, replicate
from twinedge.edge import (
    BehaviourError,
    ChangeSet,
    EdgeHost,
    EpochError,
    HostClosedError,
    MigrationError,
    NotOwnerError,
    ReplicaApplier,
    TwinNotReadyError,
    TwinSnapshot,
    TwinStatus,
    evacuate,
    migrate,
    pre_copy,
    resume,
    stop_and_copy,
)

T = "fleet:car-7"
APPEND = "tests.edge.helpers:AppendLog"


def hosts(tmp_path: Path, *names: str, **kw: Any) -> dict[str, EdgeHost]:
    return {n: EdgeHost.open(tmp_path / f"{n}.sqlite", n, **kw) for n in names}


async def close_all(hs: dict[str, EdgeHost]) -> None:
    for h in hs.values():
        await h.close()


class Devices:
    """Devices reporting ``{"u": {"id": k}}`` as fast as acknowledged, following redirects
    (NotOwnerError -> the new owner; TwinNotReadyError -> retry)."""

    def __init__(self, hs: dict[str, EdgeHost], where: dict[str, str]):
        self.hs, self.where = hs, where
        self.ids = itertools.count()
        self.acked: dict[str, list[int]] = {t: [] for t in where}
        self.redirects = 0
        self.stop = asyncio.Event()

    async def one(self, twin: str) -> None:
        uid = next(self.ids)
        while True:
            try:
                await self.hs[self.where[twin]].apply(twin, {"u": {"id": uid}})
                self.acked[twin].append(uid)
                return
            except NotOwnerError as e:
                assert e.owner is not None
                self.where[twin] = e.owner
                self.redirects += 1
                await asyncio.sleep(0)
            except TwinNotReadyError:
                await asyncio.sleep(0)

    async def run(self, twin: str) -> None:
        while not self.stop.is_set():
            await self.one(twin)
            await asyncio.sleep(0)


def check_exactly_once(h: EdgeHost, twin: str, acked: list[int]) -> None:
    ids = h.twin(twin).properties("log").get("ids", [])
    assert sorted(ids) == sorted(acked)  # every acknowledged update once, nothing else
    assert h.twin(twin).revision == len(acked)


@pytest.mark.parametrize("method", ["pre-copy", "stop-and-copy"])
def test_migration_under_load_loses_nothing(tmp_path: Path, method: str) -> None:
    async def body() -> None:
        hs = hosts(tmp_path, "a", "b", "c")
        twins = [f"fleet:t{i}" for i in range(3)]
        for t in twins:
            await hs["a"].place(t, behaviour=APPEND)
        dev = Devices(hs, dict.fromkeys(twins, "a"))
        load = [asyncio.ensure_future(dev.run(t)) for t in twins]
        await asyncio.sleep(0.02)
        reports = []
        for src, dst in (("a", "b"), ("b", "c"), ("c", "a"), ("a", "b")):
            reports.append(await migrate(hs[src], hs[dst], twins[0], method))
            await asyncio.sleep(0.005)
        dev.stop.set()
        await asyncio.gather(*load)
        owner = hs["b"]
        check_exactly_once(owner, twins[0], dev.acked[twins[0]])
        for t in twins[1:]:
            check_exactly_once(hs["a"], t, dev.acked[t])
        assert [r.epoch for r in reports] == [2, 3, 4, 5]
        assert all(r.method == method and r.downtime_s > 0 for r in reports)
        assert reports[-1].final_revision <= owner.twin(twins[0]).revision
        assert dev.redirects >= 1
        assert hs["a"].status(twins[0]).status is TwinStatus.MOVED
        assert (hs["a"].status(twins[0]).owner, hs["a"].status(twins[0]).owner_epoch) == ("b", 5)
        if method == "pre-copy":
            assert all(r.rounds >= 1 for r in reports)
        else:
            assert all(r.rounds == 0 and r.changes_copied == 0 for r in reports)
        replica = ReplicaApplier()
        replicate(list(hs.values()), replica)
        for t in twins:
            rt = replica.twin(t)
            assert rt is not None
            assert rt.document == dev.hs[dev.where[t]].twin(t).document
            assert rt.revision == len(dev.acked[t])
        await close_all(hs)

    asyncio.run(body())


def test_pre_copy_stops_after_max_rounds_under_a_busy_twin(tmp_path: Path) -> None:
    async def body() -> None:
        hs = hosts(tmp_path, "a", "b")
        await hs["a"].place(T, behaviour=APPEND)
        acked: list[int] = []
        a = BusyLink(hs["a"], T, acked)  # a report lands before every copy round
        rep = await pre_copy(a, hs["b"], T, max_rounds=3, max_final_changes=0)  # type: ignore[arg-type]
        assert rep.rounds == 3 and rep.changes_copied >= 3
        check_exactly_once(hs["b"], T, acked)
        await close_all(hs)

    asyncio.run(body())


class BusyLink:
    """The source host of a twin whose device reports just before each change copy is
    asked for (while the source still serves it): every pre-copy round has work."""

    def __init__(self, host: EdgeHost, twin: str, acked: list[int]):
        self._host, self._twin, self._acked = host, twin, acked
        self.host_id = host.host_id

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._host, name)

        async def call(*args: Any) -> Any:
            if (
                name == "export_changes"
                and self._host.status(self._twin).status is TwinStatus.OWNED
            ):
                n = len(self._acked)
                await self._host.apply(self._twin, {"u": {"id": n}})
                self._acked.append(n)
            return await method(*args)

        return call


class Link:
    """A host behind a modelled link: every call costs ``latency_s`` on the fake clock,
    plus ``s_per_byte`` for each byte a snapshot or change set carries."""

    def __init__(self, host: EdgeHost, clock: FakeClock, latency_s: float, s_per_byte: float):
        self._host, self._clock, self._lat, self._spb = host, clock, latency_s, s_per_byte
        self.host_id = host.host_id

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._host, name)

        async def call(*args: Any) -> Any:
            result = await method(*args)
            self._clock.advance(self._lat)
            for part in result if isinstance(result, tuple) else (result,):
                if isinstance(part, TwinSnapshot | ChangeSet):
                    self._clock.advance(part.nbytes * self._spb)
            return result

        return call


@pytest.mark.parametrize("method", ["pre-copy", "stop-and-copy"])
def test_downtime_on_an_injected_clock(tmp_path: Path, method: str) -> None:
    """1 ms per call, 1 us per byte: the downtime is four calls plus what crosses the
    link between fence and adopt (an empty change set for pre-copy, the whole snapshot for
    stop-and-copy)."""

    async def body() -> None:
        clock = FakeClock(0.0)
        hs = hosts(tmp_path, "a", "b")
        await hs["a"].place(T, {"attributes": {"blob": "x" * 10_000}})
        await hs["a"].apply(T, {"f": {"x": 1}})
        a, b = (Link(h, clock, 1e-3, 1e-6) for h in hs.values())
        rep = await migrate(a, b, T, method, clock=clock)  # type: ignore[arg-type]
        snapshot_bytes = (
            len(
                b'{"thingId":"fleet:car-7","attributes":{"blob":""},"features":{"f":{"properties":{"x":1}}}}'
            )
            + 10_000
        )
        if method == "pre-copy":
            # two calls: fence_and_export (its answer carries the last changes, here
            # none: 16 + len(T) bytes) and adopt_changes
            final = (16 + len(T)) * 1e-6
            assert rep.downtime_s == pytest.approx(2e-3 + final)
            assert (rep.fence_s, rep.copy_s) == (pytest.approx(1e-3 + final), 0.0)
            nbytes = snapshot_bytes + len(T) + len("default") + 32
            assert rep.bytes_copied == nbytes + 2 * (16 + len(T))
        else:
            # fence, export_snapshot (the document + 32 + ids), stage, adopt
            nbytes = snapshot_bytes + len(T) + len("default") + 32
            assert rep.downtime_s == pytest.approx(4e-3 + nbytes * 1e-6)
            assert rep.copy_s == pytest.approx(2e-3 + nbytes * 1e-6)
            assert rep.bytes_copied == nbytes
            assert rep.fence_s == pytest.approx(1e-3)
        assert rep.adopt_s == pytest.approx(1e-3)
        assert rep.downtime_s == pytest.approx(rep.fence_s + rep.copy_s + rep.adopt_s)
        assert rep.final_revision == 1 and hs["b"].twin(T).revision == 1
        await close_all(hs)

    asyncio.run(body())


class Gate:
    """A source whose exports wait, once it is fenced, until ``open`` is set: the
    downtime window held open."""

    def __init__(self, host: EdgeHost):
        self._host, self.open = host, asyncio.Event()
        self.host_id = host.host_id

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._host, name)
        if name == "fence_and_export":  # fenced at once; the answer waits

            async def fenced(twin_id: str, *args: Any) -> Any:
                out = await method(twin_id, *args)
                await self.open.wait()
                return out

            return fenced
        if not name.startswith("export_"):
            return method

        async def gated(twin_id: str, *args: Any) -> Any:
            if self._host.status(twin_id).status is TwinStatus.FENCED:
                await self.open.wait()
            return await method(twin_id, *args)

        return gated


@pytest.mark.parametrize("method", ["pre-copy", "stop-and-copy"])
def test_a_device_redirected_during_the_downtime_is_told_to_retry(
    tmp_path: Path, method: str
) -> None:
    async def body() -> None:
        hs = hosts(tmp_path, "a", "b")
        a, b = hs["a"], hs["b"]
        await a.place(T)
        gate = Gate(a)
        mig = asyncio.ensure_future(migrate(gate, b, T, method))  # type: ignore[arg-type]
        while a.status(T).status is not TwinStatus.FENCED:
            await asyncio.sleep(0.001)
        with pytest.raises(NotOwnerError) as e:
            await a.apply(T, {"f": {"x": 1}})
        assert e.value.owner == "b"
        with pytest.raises(TwinNotReadyError):  # not UnknownTwinError: b knows it is coming
            await b.apply(T, {"f": {"x": 1}})
        gate.open.set()
        rep = await mig
        assert rep.method == method and await b.apply(T, {"f": {"x": 1}}) == 1
        await close_all(hs)

    asyncio.run(body())


# --------------------------------------------------------------------------- failures


async def fenced_then(
    tmp_path: Path, kill: str, *, adopt: bool = False
) -> tuple[dict[str, EdgeHost], list[int]]:
    """Place T on a, acknowledge 5 updates, stage on b, fence a to b (3 more updates in
    the batch the writer commits when the fence comes are acknowledged before it), adopt
    if asked, then kill ``kill`` and reopen it."""
    hs = hosts(tmp_path, "a", "b")
    a, b = hs["a"], hs["b"]
    await a.place(T, behaviour=APPEND)
    for i in range(5):
        await a.apply(T, {"u": {"id": i}})
    snap = await a.export_snapshot(T)
    await b.stage(snap)
    more = [asyncio.ensure_future(a.apply(T, {"u": {"id": i}})) for i in range(5, 8)]
    await asyncio.sleep(0)  # the three are queued; the writer takes them in its next pass,
    fence = await asyncio.ensure_future(a.fence(T, 2, "b"))  # before this task asks
    assert await asyncio.gather(*more) == [6, 7, 8] and fence.revision == 8
    acked = list(range(8))
    if adopt:
        await b.stage_changes(await a.export_changes(T, snap.revision))
        await b.adopt(T, 2, 8)
    hs[kill].kill()
    hs[kill] = EdgeHost.open(tmp_path / f"{kill}.sqlite")
    return hs, acked


def test_source_crash_after_fence_is_resumed_from_its_log(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "a")
        a, b = hs["a"], hs["b"]
        assert a.status(T).status is TwinStatus.FENCED  # the fence survived the crash
        with pytest.raises(NotOwnerError):
            await a.apply(T, {"u": {"id": 99}})
        rep = await resume(a, b, T)
        assert rep is not None and (rep.method, rep.epoch, rep.final_revision) == ("resume", 2, 8)
        check_exactly_once(b, T, acked)
        assert a.status(T).status is TwinStatus.MOVED
        assert await resume(a, b, T) is None  # done already
        await close_all(hs)

    asyncio.run(body())


def test_target_crash_before_adopt_is_resumed(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "b")
        a, b = hs["a"], hs["b"]
        assert b.status(T).status is TwinStatus.ABSENT  # the staged copy died with it
        rep = await resume(a, b, T)
        assert rep is not None and rep.final_revision == 8
        check_exactly_once(b, T, acked)
        assert await b.apply(T, {"u": {"id": 8}}) == 9
        await close_all(hs)

    asyncio.run(body())


def test_crash_after_adopt_only_releases_the_source(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "b", adopt=True)
        a, b = hs["a"], hs["b"]
        assert b.status(T).status is TwinStatus.OWNED and a.status(T).status is TwinStatus.FENCED
        assert await resume(a, b, T) is None
        assert a.status(T).status is TwinStatus.MOVED
        check_exactly_once(b, T, acked)
        await close_all(hs)

    asyncio.run(body())


def test_resume_to_another_target_checks_the_dead_one(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "b")
        c = EdgeHost.open(tmp_path / "c.sqlite", "c")
        with pytest.raises(
            MigrationError, match="fenced to host 'b', not 'c'; pass 'b' as previous_target"
        ):
            await resume(hs["a"], c, T)
        rep = await resume(hs["a"], c, T, previous_target=hs["b"])
        assert rep is not None and rep.epoch == 3  # a new fence, above b's epoch
        check_exactly_once(c, T, acked)
        assert hs["a"].status(T).owner == "c"
        with pytest.raises(NotOwnerError, match="moved to host 'c' at epoch 3"):
            await hs["a"].apply(T, {"u": {"id": 9}})
        await close_all(hs)
        await c.close()

    asyncio.run(body())


def test_the_source_serves_again_when_the_target_died_before_adopting(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "b")
        a, b = hs["a"], hs["b"]
        # the only host left is the source: it reclaims the twin under a new epoch
        assert await resume(a, a, T, previous_target=b) is None
        own = a.status(T)
        assert (own.status, own.epoch, own.owner) == (TwinStatus.OWNED, 3, None)
        check_exactly_once(a, T, acked)
        assert await a.apply(T, {"u": {"id": 8}}) == 9
        with pytest.raises(MigrationError, match="only a fenced twin is reclaimed"):
            await a.reclaim(T, 9)
        await close_all(hs)
        reopened = EdgeHost.open(tmp_path / "a.sqlite")
        assert (reopened.status(T).epoch, reopened.twin(T).revision) == (3, 9)
        await reopened.close()

    asyncio.run(body())


def test_a_target_that_adopted_is_not_reclaimed_from(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "b", adopt=True)
        a, b = hs["a"], hs["b"]
        assert await resume(a, a, T, previous_target=b) is None  # b has it: a lets go
        assert a.status(T).status is TwinStatus.MOVED
        check_exactly_once(b, T, acked)
        with pytest.raises(EpochError):  # a stale epoch cannot take it back either
            await b.fence(T, 2, "a")
        await close_all(hs)

    asyncio.run(body())


def test_a_fence_that_never_became_durable_means_no_migration(tmp_path: Path) -> None:
    async def body() -> None:
        hs = hosts(tmp_path, "a", "b", inline_max_records=0)
        a, b = hs["a"], hs["b"]
        await a.place(T)
        await b.stage(await a.export_snapshot(T))
        gate = CommitGate(a)
        report = asyncio.ensure_future(a.apply(T, {"f": {"x": 1}}))
        await gate.entered()  # a commit in progress: the fence waits for it
        fence = asyncio.ensure_future(a.fence(T, 2, "b"))
        await asyncio.sleep(0)  # queued, not committed
        gate.release()
        a.kill()  # the fence never runs
        for call in (report, fence):
            with pytest.raises(HostClosedError, match="closed before acknowledging"):
                await call
        assert gate.commits == [(1, [])]  # the fence's commit was never asked
        hs["a"] = a = EdgeHost.open(tmp_path / "a.sqlite")
        assert await resume(a, b, T) is None
        assert a.status(T).status is TwinStatus.OWNED
        assert b.status(T).status is TwinStatus.ABSENT
        rev = a.twin(T).revision  # the report's commit raced the kill (unacknowledged)
        assert rev in (0, 1)
        assert await a.apply(T, {"f": {"x": 2}}) == rev + 1
        await close_all(hs)

    asyncio.run(body())


def test_evacuate_a_killed_host(tmp_path: Path) -> None:
    async def body() -> None:
        hs, acked = await fenced_then(tmp_path, "a")
        a, b = hs["a"], hs["b"]
        c = EdgeHost.open(tmp_path / "c.sqlite", "c")
        for t in ("fleet:x", "fleet:y"):
            await a.place(t)
            await a.apply(t, {"f": {"t": t}})
        a.kill()  # SIGKILL: reopen its log elsewhere and move everything away
        a = EdgeHost.open(tmp_path / "a.sqlite")
        reports = await evacuate(a, {T: b, "fleet:x": c, "fleet:y": b})
        assert sorted((r.twin_id, r.method, r.target) for r in reports) == [
            (T, "resume", "b"),
            ("fleet:x", "stop-and-copy", "c"),
            ("fleet:y", "stop-and-copy", "b"),
        ]
        check_exactly_once(b, T, acked)
        assert c.twin("fleet:x").properties("f") == {"t": "fleet:x"}
        assert a.twin_ids() == [] and await evacuate(a, {T: b}) == []
        await a.close()
        await b.close()
        await c.close()

    asyncio.run(body())


def test_refused_migrations(tmp_path: Path) -> None:
    async def body() -> None:
        hs = hosts(tmp_path, "a", "b")
        a, b = hs["a"], hs["b"]
        await a.place(T, behaviour="tests.edge.helpers:AppendLog")
        with pytest.raises(MigrationError, match="same host 'a'"):
            await pre_copy(a, a, T)
        with pytest.raises(MigrationError, match="is absent on host 'b'"):
            await stop_and_copy(b, a, T)
        with pytest.raises(MigrationError, match="unknown migration method 'teleport'"):
            await migrate(a, b, T, "teleport")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_rounds"):
            await pre_copy(a, b, T, max_rounds=0)
        with pytest.raises(MigrationError, match="nothing to resume"):
            await resume(b, a, T)
        await close_all(hs)

    asyncio.run(body())


def test_a_target_that_cannot_run_the_behaviour_fails_before_the_fence(tmp_path: Path) -> None:
    async def body() -> None:
        hs = hosts(tmp_path, "a", "b")
        a, b = hs["a"], hs["b"]
        await a.place(T, behaviour="tests.edge.helpers:AppendLog")
        import tests.edge.helpers as helpers

        cls = helpers.AppendLog
        del helpers.AppendLog  # the target's installation lacks it
        try:
            with pytest.raises(BehaviourError, match="has no attribute 'AppendLog'"):
                await pre_copy(a, b, T)
        finally:
            helpers.AppendLog = cls
        assert a.status(T).status is TwinStatus.OWNED and a.status(T).epoch == 1
        assert await a.apply(T, {"u": {"id": 1}}) == 1  # the source never stopped serving
        assert b.status(T).status is TwinStatus.ABSENT
        with pytest.raises(MigrationError, match="keeps no changes"):
            await a.export_changes(T, 0)  # the export was aborted
        await close_all(hs)

    asyncio.run(body())
