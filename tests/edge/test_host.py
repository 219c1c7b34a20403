"""EdgeHost: durable apply with group commit, refusals (each a typed error), behaviours,
replication outbox and lag, kill and recovery; ReplicaApplier's rules by hand."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.edge.helpers import CommitGate, FakeClock, replicate
from twinedge.edge import (
    BehaviourError,
    EdgeError,
    EdgeHost,
    EdgeLogError,
    EpochError,
    HostClosedError,
    InvalidReportError,
    LogRecord,
    MigrationError,
    NotOwnerError,
    ReplicaApplier,
    ReplicationGapError,
    TwinNotReadyError,
    TwinStatus,
    UnknownTwinError,
)

T = "fleet:car-7"


def deep(levels: int) -> object:
    return {"a": deep(levels - 1)} if levels else 1


def run(coro):  # one event loop per test
    return asyncio.run(coro)


def test_apply_is_durable_and_revisions_count_changes(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            assert await h.place(T, {"attributes": {"make": "x"}, "_revision": 40}) == 0
            assert await h.apply(T, {"battery": {"level": 71, "mode": "eco"}}) == 1
            assert await h.apply(T, {"battery": {"mode": None}, "gps": {"fix": True}}) == 2
            # a report that changes nothing makes no revision (and no record)
            seq = h.last_seq
            assert await h.apply(T, {"battery": {"level": 71}}) == 2
            assert h.last_seq == seq
            # 1 is not 1.0: a change of type is a change
            assert await h.apply(T, {"battery": {"level": 71.0}}) == 3
        async with EdgeHost.open(tmp_path / "h.sqlite") as h:
            v = h.twin(T)
            assert (v.revision, v.epoch) == (3, 1)
            assert v.document == {
                "thingId": T,
                "attributes": {"make": "x"},
                "features": {
                    "battery": {"properties": {"level": 71.0}},
                    "gps": {"properties": {"fix": True}},
                },
            }
            assert json.dumps(v.document["features"]["battery"]["properties"]["level"]) == "71.0"

    run(body())


def test_group_commit_batches_concurrent_devices(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            twins = [f"fleet:t{i}" for i in range(20)]
            await asyncio.gather(*(h.place(t) for t in twins))
            commits = h.commits
            revs = await asyncio.gather(
                *(h.apply(t, {"s": {"k": k}}) for k in range(10) for t in twins)
            )
            assert sorted(revs) == sorted(list(range(1, 11)) * 20)
            assert h.commits - commits <= 5  # 200 updates, a handful of transactions
            assert {h.twin(t).revision for t in twins} == {10}

    run(body())


@pytest.mark.parametrize(
    ("report", "message", "pointer"),
    [
        ([1], "a report must be a non-empty JSON object", ""),
        ({}, "a report must be a non-empty JSON object", ""),
        ({"battery": 71}, "the properties patch must be a JSON object", "/battery"),
        ({"a/b": {"x": 1}}, "feature id 'a/b' is not valid", "/features/a~1b"),
        ({"battery": {"level": float("nan")}}, "expected a finite number", "/battery/level"),
        ({"battery": {"s": "nul\x00"}}, "NUL", "/battery/s"),
        ({"f": {"n": 2**70}}, "64-bit", "/f/n"),
        ({"g": deep(40)}, "nests deeper than 29 levels", ""),
    ],
)
def test_malformed_reports(tmp_path: Path, report: object, message: str, pointer: str) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T)
            with pytest.raises(InvalidReportError) as e:
                await h.apply(T, report)
            assert message in str(e.value) and e.value.pointer == pointer
            assert h.twin(T).revision == 0

    run(body())


def test_a_twin_cannot_outgrow_the_core_limit(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T)
            for i in range(4):
                await h.apply(T, {f"f{i}": {"blob": "x" * 60_000}})
            with pytest.raises(InvalidReportError, match="larger than 256 kB"):
                await h.apply(T, {"f9": {"blob": "x" * 60_000}})
            assert h.twin(T).revision == 4
            await h.apply(T, {"f0": {"blob": None}})  # shrinking is fine
            await h.apply(T, {"f9": {"blob": "x" * 50_000}})

    run(body())


def test_unknown_twin_wrong_epoch_and_placement_errors(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            with pytest.raises(UnknownTwinError, match="host 'edge-1' has no twin 'fleet:nope'"):
                await h.apply("fleet:nope", {"f": {}})
            with pytest.raises(UnknownTwinError):
                h.twin("fleet:nope")
            await h.place(T, epoch=3)
            assert await h.apply(T, {"f": {"x": 1}}, epoch=3) == 1
            with pytest.raises(EpochError, match="moved on since that epoch") as e:
                await h.apply(T, {"f": {"x": 2}}, epoch=2)
            assert (e.value.epoch, e.value.current) == (2, 3)
            with pytest.raises(EpochError, match="does not know that epoch yet"):
                await h.apply(T, {"f": {"x": 2}}, epoch=4)
            with pytest.raises(MigrationError, match="already owned"):
                await h.place(T)
            with pytest.raises(InvalidReportError, match="thingId 'car-7' is not valid"):
                await h.place("car-7")
            with pytest.raises(InvalidReportError, match="unknown top-level field 'color'"):
                await h.place("fleet:b", {"color": "red"})
            with pytest.raises(BehaviourError, match="unknown behaviour policy 'fly'"):
                await h.place("fleet:b", behaviour="fly")
            with pytest.raises(EpochError):
                await h.place("fleet:b", epoch=0)
            assert h.twin_ids() == [T]

    run(body())


def test_a_fence_is_durable_and_names_the_new_owner(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1", inline_max_records=0) as h:
            await h.place(T)
            gate = CommitGate(h)
            # updates in the batch being committed when the fence comes commit before it
            committing = [asyncio.ensure_future(h.apply(T, {"f": {"i": i}})) for i in range(3)]
            await gate.entered()
            # updates queued, in no batch yet, are never acknowledged: the fence goes
            # ahead of them and they are refused (the device sends them to the new owner)
            queued = [asyncio.ensure_future(h.apply(T, {"f": {"i": i}})) for i in (3, 4)]
            fence = asyncio.ensure_future(h.fence(T, 2, "edge-2"))
            await asyncio.sleep(0)  # all three queued
            gate.release()
            assert await asyncio.gather(*committing) == [1, 2, 3]
            f = await fence
            assert (f.epoch, f.owner, f.revision, f.source) == (2, "edge-2", 3, "edge-1")
            for q in queued:
                with pytest.raises(NotOwnerError) as e:
                    await q
                assert (e.value.owner, e.value.epoch, e.value.host_id) == ("edge-2", 2, "edge-1")
            assert h.twin(T).properties("f") == {"i": 2}
            with pytest.raises(NotOwnerError):  # and every later one
                await h.apply(T, {"f": {"i": 99}})
            with pytest.raises(EpochError, match="a fence must raise the epoch"):
                await h.fence(T, 2, "edge-3")
            assert h.twin(T).revision == 3  # still readable: the final copy comes from here
        async with EdgeHost.open(tmp_path / "h.sqlite") as h:  # after a restart, too
            assert h.status(T).status is TwinStatus.FENCED
            assert h.twin(T).revision == 3
            with pytest.raises(NotOwnerError, match="moved to host 'edge-2' at epoch 2"):
                await h.apply(T, {"f": {"i": 100}})
            await h.release(T)
            await h.release(T)  # twice is harmless
            with pytest.raises(NotOwnerError):
                h.twin(T)
            assert h.twin_ids(TwinStatus.MOVED) == [T]

    run(body())


@pytest.mark.parametrize("control", ["fence", "adopt"])
def test_a_control_operation_commits_in_the_next_batch_ahead_of_queued_reports(
    tmp_path: Path, control: str
) -> None:
    n = 20

    async def body() -> None:
        async with (
            EdgeHost.open(tmp_path / "h.sqlite", "edge-1", inline_max_records=0) as h,
            EdgeHost.open(tmp_path / "src.sqlite", "src") as src,
        ):
            others = [f"fleet:o{i}" for i in range(n)]
            for t in others:
                await h.place(t)
            if control == "fence":
                await h.place(T)
                call = lambda: h.fence(T, 2, "edge-2")  # noqa: E731
            else:
                await src.place(T)
                await h.stage(await src.export_snapshot(T))
                call = lambda: h.adopt(T, 2, 0)  # noqa: E731
            gate = CommitGate(h)
            first = asyncio.ensure_future(h.apply(others[0], {"f": {"k": 0}}))
            await gate.entered()  # a commit in progress ...
            reports = [asyncio.ensure_future(h.apply(t, {"f": {"k": 1}})) for t in others]
            op = asyncio.ensure_future(call())  # ... n reports queued, then the control op
            await asyncio.sleep(0)
            commits, records, controls = h.commits, h.records_committed, h.control_batches
            gate.release()
            await op
            # the commit in progress, then the control operation's own batch
            assert h.commits == commits + 2 and h.control_batches == controls + 1
            assert h.records_committed == records + 1 + (control == "adopt")
            assert not any(r.done() for r in reports)
            assert gate.commits[1] == (int(control == "adopt"), [T])
            assert await first == 1
            assert await asyncio.gather(*reports) == [2] + [1] * (n - 1)
            assert h.commits == commits + 3
            assert h.records_committed == records + 1 + (control == "adopt") + n
            assert gate.commits[2] == (n, [])
            assert h.status(T).status is (
                TwinStatus.FENCED if control == "fence" else TwinStatus.OWNED
            )

    run(body())


def test_a_fence_at_an_idle_writer_commits_at_once_ahead_of_queued_reports(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            others = [f"fleet:o{i}" for i in range(5)]
            for t in (T, *others):
                await h.place(t)
            notes = CommitGate(h, hold=False)
            mine = asyncio.ensure_future(h.apply(T, {"f": {"k": 1}}))
            reports = [asyncio.ensure_future(h.apply(t, {"f": {"k": 1}})) for t in others]
            await asyncio.sleep(0)  # all queued; the writer is woken but has not run
            controls, batches = h.control_batches, h.batches
            f = await h.fence(T, 2, "edge-2")
            # the fence was the writer's next batch, run in this task: nothing else yet
            assert (h.control_batches, h.batches) == (controls + 1, batches + 1)
            assert notes.commits == [(0, [T])] and f.revision == 0
            assert not mine.done() and not any(r.done() for r in reports)
            with pytest.raises(NotOwnerError):  # queued before the fence, never acknowledged
                await mine
            assert await asyncio.gather(*reports) == [1] * 5
            assert notes.commits == [(0, [T]), (5, [])]
            assert h.twin(T).revision == 0

    run(body())


def test_a_staged_twin_is_not_ready(tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            EdgeHost.open(tmp_path / "a.sqlite", "a") as a,
            EdgeHost.open(tmp_path / "b.sqlite", "b") as b,
        ):
            await a.place(T)
            await b.stage(await a.export_snapshot(T))
            assert b.status(T).status is TwinStatus.STAGED
            with pytest.raises(TwinNotReadyError, match="arriving on host 'b'"):
                await b.apply(T, {"f": {}})
            with pytest.raises(MigrationError, match="is owned on host 'a'; it cannot be staged"):
                await a.stage(await a.export_snapshot(T))
            with pytest.raises(MigrationError, match="fence it before releasing"):
                await a.release(T)
            with pytest.raises(EpochError, match="above the source's"):
                await b.adopt(T, 1, 0)
            with pytest.raises(MigrationError, match="staged copy is at revision 0"):
                await b.adopt(T, 2, 5)
            await b.discard_staged(T)
            with pytest.raises(UnknownTwinError):
                await b.apply(T, {"f": {}})
            # announced before a stop-and-copy fence: not ready, not unknown
            await b.expect(T, "a")
            assert (b.status(T).status, b.status(T).owner) == (TwinStatus.STAGED, "a")
            with pytest.raises(TwinNotReadyError):
                await b.apply(T, {"f": {}})
            with pytest.raises(MigrationError, match="it cannot arrive here"):
                await a.expect(T, "b")
            await b.discard_staged(T)
            assert b.status(T).status is TwinStatus.ABSENT

    run(body())


def test_behaviour_failures_stay_with_their_twin(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place("fleet:bad", behaviour="tests.edge.helpers:Broken")
            await h.place("fleet:good")
            bad = asyncio.ensure_future(h.apply("fleet:bad", {"f": {}}))
            good = asyncio.ensure_future(h.apply("fleet:good", {"f": {"x": 1}}))
            with pytest.raises(BehaviourError, match="on_report raised ZeroDivisionError"):
                await bad
            assert await good == 1
            res = await h.tick()
            assert res.changed == 0
            assert "only 'attributes' and 'features' may change" in res.failed["fleet:bad"]
            assert h.twin("fleet:bad").revision == 0

    run(body())


def test_dead_reckoning_on_a_host_with_an_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(100.0)

    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1", clock=clock) as h:
            await h.place(T, behaviour="dead-reckoning", behaviour_params={"min_change_m": 0.1})
            await h.apply(T, {"position": {"x_m": 0.0, "y_m": 0.0, "vx_mps": 10.0}})
            clock.advance(0.25)
            assert (await h.tick()).changed == 1
            clock.advance(0.005)  # 5 cm: below min_change_m
            assert (await h.tick()).changed == 0
            p = h.twin(T).properties("position")
            assert p["t_s"] == 100.0
            assert p["predicted"] == {"x_m": 2.5, "y_m": 0.0, "age_s": 0.25}
            assert await h.set_desired(T, {"position": {"max_mps": 5}}) == 3
        async with EdgeHost.open(tmp_path / "h.sqlite", clock=clock) as h:  # replay, no hooks
            assert h.twin(T).properties("position")["predicted"]["x_m"] == 2.5
            assert h.twin(T).document["features"]["position"]["desiredProperties"] == {"max_mps": 5}

    run(body())


def test_replication_outbox_and_lag(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)

    async def body() -> None:
        h = EdgeHost.open(tmp_path / "h.sqlite", "edge-1", clock=clock)
        await h.place(T)  # seq 1 at t=1000
        clock.advance(1.0)
        await h.apply(T, {"f": {"x": 1}})  # seq 2 at t=1001
        await h.apply(T, {"f": {"x": 2}})  # seq 3 at t=1001
        assert [r.seq for r in h.pending()] == [1, 2, 3]
        assert [r.seq for r in h.pending(after_seq=1, limit=1)] == [2]
        clock.advance(2.0)  # t=1003
        assert h.ack_replicated(2) == 2
        lag = h.replication_lag()
        assert (lag.acked, lag.max_s, lag.last_s, lag.mean_s) == (2, 3.0, 2.0, 2.5)
        assert (lag.pending, lag.oldest_pending_s) == (1, 2.0)
        assert h.ack_replicated(2) == 0 and h.ack_replicated(1) == 0  # idempotent
        with pytest.raises(EdgeError, match="cannot acknowledge seq 9"):
            h.ack_replicated(9)
        assert [r.seq for r in h.pending()] == [3]
        # the watermark goes to the log with the next commit; a kill before it re-sends
        h.kill()
        h = EdgeHost.open(tmp_path / "h.sqlite", clock=clock)
        assert [r.seq for r in h.pending()] == [1, 2, 3]
        replica = ReplicaApplier()
        replicate([h], replica)
        assert replica.twin(T) is not None and replica.twin(T).document == h.twin(T).document
        await h.close()  # close flushes the watermark
        h = EdgeHost.open(tmp_path / "h.sqlite", clock=clock)
        assert h.pending() == [] and h.replicated_seq == 3
        await h.close()

    run(body())


def test_kill_fails_what_was_not_acknowledged(tmp_path: Path) -> None:
    async def body() -> None:
        h = EdgeHost.open(tmp_path / "h.sqlite", "edge-1", commit_in_thread=False)
        await h.place(T)
        acked = await h.apply(T, {"f": {"a": 1}})
        waiting = [asyncio.ensure_future(h.apply(T, {"f": {"b": i}})) for i in range(5)]
        await asyncio.sleep(0)  # queued, not committed yet
        h.kill()
        for w in waiting:
            with pytest.raises(HostClosedError, match="closed before acknowledging"):
                await w
        for call in (
            lambda: h.apply(T, {"f": {"c": 1}}),
            lambda: h.export_snapshot(T),
            lambda: h.export_changes(T, 0),
            lambda: h.ownership(T),
            lambda: h.fence(T, 2, "b"),
        ):
            with pytest.raises(HostClosedError, match="host 'edge-1' is closed"):
                await call()
        with pytest.raises(HostClosedError):
            h.pending()
        h = EdgeHost.open(tmp_path / "h.sqlite")
        assert h.twin(T).revision == acked == 1
        assert h.twin(T).properties("f") == {"a": 1}
        await h.close()
        await h.close()  # twice is harmless

    run(body())


def test_a_commit_that_fails_changes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T)
            h.log._w.execute("PRAGMA query_only=1")  # the disk refuses writes from now on
            with pytest.raises(EdgeLogError, match="cannot commit 1 records"):
                await h.apply(T, {"f": {"x": 1}})
            assert h.twin(T).revision == 0 and h.last_seq == 1
            h.log._w.execute("PRAGMA query_only=0")
            assert await h.apply(T, {"f": {"x": 1}}) == 1

    run(body())


def test_compaction_through_the_host(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T)
            for i in range(10):
                await h.apply(T, {"f": {"i": i}})
            assert await h.compact() == 0  # nothing replicated: nothing deleted
            replicate([h], ReplicaApplier())
            assert await h.compact() == 11
            await h.apply(T, {"f": {"i": 10}})
        async with EdgeHost.open(tmp_path / "h.sqlite") as h:
            assert h.twin(T).revision == 11 and h.twin(T).properties("f") == {"i": 10}
            assert [r.revision for r in h.pending()] == [11]

    run(body())


# --------------------------------------------------------------------------- the replica


def r(seq: int, rev: int, kind: str = "change", epoch: int = 1, **value: object) -> LogRecord:
    data = json.dumps(value or {"attributes": {"rev": rev}}).encode()
    return LogRecord(seq, T, epoch, rev, kind, data, 0.0)  # type: ignore[arg-type]


def test_replica_rules_by_hand() -> None:
    rep = ReplicaApplier()
    with pytest.raises(ReplicationGapError, match="needs a snapshot first"):
        rep.apply(r(1, 1))
    assert rep.apply(r(1, 0, "snapshot", features={}))
    assert rep.apply(r(2, 1)) and rep.apply(r(3, 2))
    assert not rep.apply(r(2, 1))  # duplicate
    with pytest.raises(ReplicationGapError, match="needs revision 3, got revision 5") as e:
        rep.apply(r(5, 5))
    assert (e.value.expected, e.value.got) == (3, 5)
    # a migration: the new owner's snapshot at revision 4 (epoch 2) arrives before 3 and 4
    assert rep.apply(r(1, 4, "snapshot", epoch=2, features={"x": {}}))
    assert not rep.apply(r(4, 3)) and not rep.apply(r(5, 4))  # the old owner's, late
    assert rep.apply(r(2, 5, epoch=2))
    t = rep.twin(T)
    assert t is not None and (t.revision, t.epoch) == (5, 2)
    assert t.document == {"features": {"x": {}}, "attributes": {"rev": 5}}
    # a fenced owner writing on after its fence: refused, never applied
    with pytest.raises(EpochError, match="comes from a fenced epoch"):
        rep.apply(r(6, 6, epoch=1))
    with pytest.raises(EpochError, match="a fenced host wrote after its fence"):
        rep.apply(r(1, 3, "snapshot", epoch=3, features={}))
    assert (rep.applied, rep.duplicates) == (5, 3)


def test_replica_apply_all_stops_before_a_gap() -> None:
    rep = ReplicaApplier()
    assert rep.apply_all([r(1, 0, "snapshot"), r(2, 1), r(3, 3), r(4, 4)]) == 2
    assert rep.twin(T).revision == 1  # type: ignore[union-attr]
    assert rep.apply_all([]) == 0


def test_the_outbox_lists_only_commits_the_host_finished(tmp_path: Path) -> None:
    """A replicator polling while the worker thread is between COMMIT and the host's
    bookkeeping sees the records only once the host has answered for them."""

    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1", inline_max_records=0) as h:
            await h.place(T)
            seen: list[list[int]] = []
            append = h.log.append

            def append_then_poll(*args, **kw):  # runs in the worker thread
                out = append(*args, **kw)
                seen.append([r.seq for r in h.pending()])
                return out

            h.log.append = append_then_poll  # type: ignore[method-assign]
            await h.apply(T, {"f": {"x": 1}})
            assert seen == [[1]]  # committed (seq 2) but not yet answered for: not listed
            assert [r.seq for r in h.pending()] == [1, 2] and h.last_seq == 2

    run(body())


def test_an_abandoned_export_stops_growing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import twinedge.edge.host as host_module

    monkeypatch.setattr(host_module, "MAX_TAP_CHANGES", 3)

    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T)
            snap = await h.export_snapshot(T)
            for i in range(3):
                await h.apply(T, {"f": {"i": i}})
            assert len(await h.export_changes(T, snap.revision)) == 3
            await h.apply(T, {"f": {"i": 3}})  # a fourth change: the kept ones are dropped
            with pytest.raises(MigrationError, match="export a snapshot first"):
                await h.export_changes(T, snap.revision)

    run(body())


def test_an_application_write_is_a_conditional_merge_patch_of_the_document(tmp_path: Path) -> None:
    from twinedge.edge import RevisionError

    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T, {"attributes": {"make": "x", "year": 2020}}, revision=4)
            assert await h.apply(T, {"battery": {"level": 71}}) == 5
            # the application wrote on revision 4; the device has moved the twin on since
            with pytest.raises(RevisionError) as e:
                await h.write(T, {"attributes": {"make": "y"}}, if_revision=4)
            assert (e.value.expected, e.value.current) == (4, 5)
            assert await h.write(T, {"attributes": {"make": "y", "year": None}}, if_revision=5) == 6
            assert await h.write(T, {"definition": "acme:car:1"}) == 7  # no behaviour hook
            assert await h.write(T, {"attributes": {"make": "y"}}) == 7  # nothing changes
            for bad, pointer in (
                ({"_revision": 9}, "/_revision"),
                ({"thingId": "a:b"}, "/thingId"),
            ):
                with pytest.raises(InvalidReportError) as e2:
                    await h.write(T, bad)
                assert e2.value.pointer == pointer
            with pytest.raises(InvalidReportError):
                await h.write(T, ["attributes"])
        async with EdgeHost.open(tmp_path / "h.sqlite") as h:
            v = h.twin(T)
            assert v.revision == 7
            assert v.document["attributes"] == {"make": "y"}
            assert v.document["definition"] == "acme:car:1"
            assert v.document["features"]["battery"]["properties"] == {"level": 71}

    run(body())


def test_a_retired_twin_is_refused_survives_recovery_and_can_start_again(tmp_path: Path) -> None:
    async def body() -> None:
        async with EdgeHost.open(tmp_path / "h.sqlite", "edge-1") as h:
            await h.place(T, {}, epoch=3, revision=10)
            assert await h.apply(T, {"battery": {"level": 71}}) == 11
            assert await h.retire(T) is True
            assert await h.retire("fleet:never") is False
            with pytest.raises(NotOwnerError) as e:
                await h.apply(T, {"battery": {"level": 70}})
            assert e.value.owner is None  # moved to no host: nothing to redirect to
            assert h.twin_ids() == [] and h.status(T).status is TwinStatus.MOVED
        async with EdgeHost.open(tmp_path / "h.sqlite") as h:  # recovery accepts its records
            assert h.status(T).status is TwinStatus.MOVED
            # a new twin of the same id: placed again from epoch 1, revision 1
            assert await h.place(T, {"attributes": {"new": True}}, epoch=1, revision=1) == 1
            assert await h.apply(T, {"battery": {"level": 5}}) == 2
        async with EdgeHost.open(tmp_path / "h.sqlite") as h:
            v = h.twin(T)
            assert (v.epoch, v.revision) == (1, 2)
            assert v.document["attributes"] == {"new": True}
            assert v.document["features"] == {"battery": {"properties": {"level": 5}}}

    run(body())
