"""Edge replication into the core: records applied once each, in order, on both stores,
through the service and over the internal HTTP routes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinedge.edge.log import LogRecord
from twinedge.edge.replica import ReplicaApplier
from twinedge.errors import Conflict, InvalidInput, NotFound
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.replica import HOLD_S
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store
from twinedge.runtime.store.base import Change

from .api.conftest import bearer, make_api, problem_of
from .service_run import run

A = Principal("key-a", "fleet", "write")
CAR = "fleet:car-1"
TOKEN = "hosts-secret"


def rec(
    seq: int,
    revision: int,
    data: dict[str, Any],
    *,
    kind: str = "change",
    twin: str = CAR,
    epoch: int = 1,
    time_s: float = 100.0,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "twin": twin,
        "epoch": epoch,
        "revision": revision,
        "kind": kind,
        "data": data,
        "time_s": time_s,
    }


async def place(svc: TwinService, thing_id: str = CAR, host: str = "edge-1") -> int:
    """Create the thing (rev 1), patch it (rev 2), move it to ``host`` (rev 3) and set its
    edge position there; returns the core revision the host continues from."""
    await svc.put_thing(A, thing_id, {"attributes": {"kind": "car"}})
    await svc.patch(A, thing_id, "attributes", {"n": 1})
    doc = await svc.set_host(thing_id, host)
    await svc.set_edge_position(thing_id, 1, doc["_revision"])
    return int(doc["_revision"])


def content(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("thingId", "attributes", "features")}


# ---------------------------------------------------------------------- the service


def test_placed_at_3_then_4_5_applied_duplicate_4_ignored_gap_7_refused(store_url):
    async def body(svc: TwinService) -> None:
        assert await place(svc) == 3
        sub = svc.subscribe(A)
        out = await svc.apply_edge_records(
            "edge-1",
            [
                rec(10, 4, {"attributes": {"n": 2}}, time_s=90.0),
                rec(11, 5, {"features": {"speed": {"properties": {"kmh": 30}}}}, time_s=98.0),
            ],
        )
        assert out == {
            "applied": 2,
            "duplicates": 0,
            "dropped": 0,
            "acked_seq": 11,
            "lag_s": {"max": 10.0, "last": 2.0},
        }
        doc = svc.things[CAR]
        assert doc["_revision"] == 5 and doc["_host"] == "edge-1" and doc["_domain"] == "fleet"
        assert doc["attributes"] == {"kind": "car", "n": 2}
        assert doc["features"] == {"speed": {"properties": {"kmh": 30}}}
        assert svc.edge_positions[CAR] == (1, 5)
        # a re-sent record: no write, no revision, no event
        out = await svc.apply_edge_records("edge-1", [rec(10, 4, {"attributes": {"n": 2}})])
        assert (out["applied"], out["duplicates"], out["acked_seq"]) == (0, 1, 10)
        assert svc.things[CAR]["_revision"] == 5
        # a gap: revision 7 while the core has 5
        with pytest.raises(Conflict) as e:
            await svc.apply_edge_records("edge-1", [rec(13, 7, {"attributes": {"n": 4}})])
        assert e.value.extra["expected_revision"] == 6
        assert e.value.extra["acked_seq"] == 0 and e.value.pointer == "/records/0/revision"
        assert svc.things[CAR]["_revision"] == 5 and svc.edge_positions[CAR] == (1, 5)
        # the missing record first, then the rest
        out = await svc.apply_edge_records(
            "edge-1", [rec(12, 6, {"attributes": {"n": 3}}), rec(13, 7, {"attributes": {"n": 4}})]
        )
        assert (out["applied"], out["acked_seq"]) == (2, 13)
        assert svc.things[CAR]["attributes"]["n"] == 4 and svc.things[CAR]["_revision"] == 7
        hist, _ = await svc.history(A, CAR)
        assert [(h["revision"], h["source"], h["actor"]) for h in hist][2:] == [
            (3, "orchestrator", "system"),
            (4, "edge", "edge-1"),
            (5, "edge", "edge-1"),
            (6, "edge", "edge-1"),
            (7, "edge", "edge-1"),
        ]
        events = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert [(e["data"]["revision"], e["data"]["source"]) for e in events] == [
            (4, "edge"),
            (5, "edge"),
            (6, "edge"),
            (7, "edge"),
        ]
        assert svc.metrics["updates_total:edge"] == 4
        assert await asyncio.to_thread(svc.store.load_edge_positions) == {CAR: (1, 7)}
        # as-of reads see the edge's revisions
        assert (await svc.get_thing(A, CAR, revision=4))["attributes"]["n"] == 2
        health = await svc.health()
        assert health["replication"]["edge-1"]["acked_seq"] == 13

    run(store_url, body, clock=lambda: 100.0)


def test_a_restart_keeps_the_positions_so_nothing_is_applied_twice(store_url):
    batch = [rec(1, 4, {"attributes": {"n": 2}}), rec(2, 5, {"attributes": {"m": 1}})]

    async def first(svc: TwinService) -> None:
        await place(svc)
        assert (await svc.apply_edge_records("edge-1", batch))["applied"] == 2

    async def after_restart(svc: TwinService) -> None:
        assert svc.edge_positions == {CAR: (1, 5)}
        # the host did not get the answer and sends the batch again
        out = await svc.apply_edge_records("edge-1", batch)
        assert (out["applied"], out["duplicates"], out["acked_seq"]) == (0, 2, 2)
        assert svc.things[CAR]["_revision"] == 5
        out = await svc.apply_edge_records("edge-1", [*batch, rec(3, 6, {"attributes": {"m": 2}})])
        assert (out["applied"], out["duplicates"]) == (1, 2)
        assert svc.things[CAR]["attributes"] == {"kind": "car", "n": 2, "m": 2}
        hist, _ = await svc.history(A, CAR)
        assert [h["revision"] for h in hist if h["source"] == "edge"] == [4, 5, 6]

    run(store_url, first)
    run(store_url, after_restart)


def test_snapshots_replace_the_content_and_move_the_epoch(store_url):
    async def body(svc: TwinService) -> None:
        await place(svc)
        snap = {"thingId": CAR, "attributes": {"moved": True}, "features": {}}
        # a migrated twin's new host: its snapshot at revision 6 (epoch 2) arrives before
        # the old host's revisions 4..6: held (a gap) until they have come
        with pytest.raises(Conflict) as e:
            await svc.apply_edge_records("edge-2", [rec(1, 6, snap, kind="snapshot", epoch=2)])
        assert e.value.extra["expected_revision"] == 4 and e.value.extra["acked_seq"] == 0
        assert e.value.pointer == "/records/0/revision"
        assert svc.edge_positions[CAR] == (1, 3)
        out = await svc.apply_edge_records(
            "edge-1",
            [
                rec(4, 4, {"attributes": {"x": 1}}),
                rec(5, 5, {"attributes": {"y": 1}}),
                rec(6, 6, {"attributes": {"moved": True, "kind": None, "n": None, "x": None, "y": None}}),
            ],
        )  # fmt: skip
        assert out["applied"] == 3
        out = await svc.apply_edge_records("edge-2", [rec(1, 6, snap, kind="snapshot", epoch=2)])
        assert out["applied"] == 1
        doc = svc.things[CAR]
        assert content(doc) == snap and doc["_host"] == "edge-1" and doc["_domain"] == "fleet"
        assert svc.edge_positions[CAR] == (2, 6)
        # every revision of the old host is in the history, then the snapshot's
        items, _ = await svc.history(A, CAR)
        assert [(h["revision"], h["actor"]) for h in items[-4:]] == [
            (4, "edge-1"), (5, "edge-1"), (6, "edge-1"), (7, "edge-2")
        ]  # fmt: skip
        assert items[-4]["ops"] == [{"op": "add", "path": "/attributes/x", "value": 1}]
        assert items[-3]["ops"] == [{"op": "add", "path": "/attributes/y", "value": 1}]
        assert items[-1]["ops"] == []  # the snapshot holds what revision 6 left
        # the old host's records up to 6 again: duplicates
        out = await svc.apply_edge_records(
            "edge-1", [rec(5, 5, {"attributes": {"y": 1}}), rec(6, 6, {"attributes": {"y": 2}})]
        )
        assert (out["applied"], out["duplicates"]) == (0, 2)
        # ... and one continuing them is from a fenced epoch
        with pytest.raises(Conflict) as e:
            await svc.apply_edge_records("edge-1", [rec(7, 7, {"attributes": {"z": 1}})])
        assert e.value.extra["fenced"] is True and e.value.pointer == "/records/0/epoch"
        # the new host goes on; a snapshot at the same revision and a newer epoch is applied
        out = await svc.apply_edge_records(
            "edge-2",
            [
                rec(2, 7, {"attributes": {"z": 2}}, epoch=2),
                rec(
                    3, 7, {**snap, "attributes": {"moved": True, "z": 2}}, kind="snapshot", epoch=3
                ),
                rec(4, 7, snap, kind="snapshot", epoch=3),  # the same again: a duplicate
                rec(5, 5, snap, kind="snapshot", epoch=1),  # an old one: a duplicate
            ],
        )
        assert (out["applied"], out["duplicates"]) == (2, 2)
        assert svc.edge_positions[CAR] == (3, 7)
        assert svc.things[CAR]["attributes"] == {"moved": True, "z": 2}
        # a newer epoch starting below what the core has: a fenced host's write
        with pytest.raises(Conflict) as e:
            await svc.apply_edge_records("edge-3", [rec(1, 6, snap, kind="snapshot", epoch=4)])
        assert e.value.extra["fenced"] is True

    run(store_url, body)


def test_a_held_snapshot_is_applied_once_the_old_host_is_given_up(store_url):
    """The old host never sends its last records (it is gone): the new host's snapshot
    is held for HOLD_S seconds of the core's clock, then applied; the content is whole."""
    now = [1000.0]

    async def body(svc: TwinService) -> None:
        await place(svc)
        snap = {"thingId": CAR, "attributes": {"moved": True}, "features": {}}
        batch = [
            rec(1, 6, snap, kind="snapshot", epoch=2),
            rec(2, 7, {"attributes": {"z": 1}}, epoch=2),
        ]
        for dt in (0.0, HOLD_S / 2, HOLD_S - 0.001):
            now[0] = 1000.0 + dt
            with pytest.raises(Conflict) as e:
                await svc.apply_edge_records("edge-2", batch)
            assert e.value.extra["expected_revision"] == 4 and e.value.extra["acked_seq"] == 0
        assert svc.edge_positions[CAR] == (1, 3)
        now[0] = 1000.0 + HOLD_S
        out = await svc.apply_edge_records("edge-2", batch)
        assert (out["applied"], out["acked_seq"]) == (2, 2)
        assert svc.edge_positions[CAR] == (2, 7)
        assert svc.things[CAR]["attributes"] == {"moved": True, "z": 1}
        # the old host's records, were they to come now: duplicates
        out = await svc.apply_edge_records("edge-1", [rec(4, 4, {"attributes": {"x": 1}})])
        assert (out["applied"], out["duplicates"]) == (0, 1)

    run(store_url, body, clock=lambda: now[0])


def test_records_of_a_deleted_thing_are_dropped_and_a_recreated_thing_starts_clean(store_url):
    async def body(svc: TwinService) -> None:
        await place(svc)
        await svc.apply_edge_records("edge-1", [rec(1, 4, {"attributes": {"n": 2}})])
        await svc.delete(A, CAR)
        assert CAR not in svc.edge_positions
        assert await asyncio.to_thread(svc.store.load_edge_positions) == {}
        out = await svc.apply_edge_records("edge-1", [rec(2, 5, {"attributes": {"n": 3}})])
        assert (out["applied"], out["dropped"], out["acked_seq"]) == (0, 1, 2)
        # created again: no position, the old host's records are dropped
        await svc.put_thing(A, CAR, {"attributes": {"kind": "bike"}})
        out = await svc.apply_edge_records("edge-1", [rec(3, 2, {"attributes": {"n": 9}})])
        assert out["dropped"] == 1 and svc.things[CAR]["attributes"] == {"kind": "bike"}
        # placed again: the new incarnation's revisions
        await svc.set_edge_position(CAR, 1, 1)
        out = await svc.apply_edge_records("edge-2", [rec(1, 2, {"attributes": {"n": 1}})])
        assert out["applied"] == 1 and svc.things[CAR]["_revision"] == 2
        # back in the core: dropped again
        await svc.clear_edge_position(CAR)
        out = await svc.apply_edge_records("edge-2", [rec(2, 3, {"attributes": {"n": 2}})])
        assert out["dropped"] == 1 and svc.things[CAR]["_revision"] == 2
        assert await asyncio.to_thread(svc.store.load_edge_positions) == {}
        # a thing never placed: dropped; a missing thing cannot be placed
        out = await svc.apply_edge_records("edge-2", [rec(3, 1, {}, twin="fleet:nobody")])
        assert out["dropped"] == 1
        with pytest.raises(NotFound):
            await svc.set_edge_position("fleet:nobody", 1, 0)
        with pytest.raises(InvalidInput):
            await svc.set_edge_position(CAR, True, 1)  # type: ignore[arg-type]

    run(store_url, body)


def test_a_deletion_and_a_record_in_one_batch(store_url):
    """The writer's batch: an applied record then a deletion of the same thing; the
    position goes with the thing, in the same commit."""

    async def body(svc: TwinService) -> None:
        await place(svc)
        applied, _ = await asyncio.gather(
            svc.apply_edge_records("edge-1", [rec(1, 4, {"attributes": {"n": 2}})]),
            svc.delete(A, CAR),
        )
        assert applied["applied"] == 1
        assert svc.edge_positions == {}
        assert await asyncio.to_thread(svc.store.load_edge_positions) == {}

    run(store_url, body)


def test_the_first_refused_record_stops_the_batch(store_url):
    async def body(svc: TwinService) -> None:
        await place(svc)
        await place(svc, "fleet:car-2")
        with pytest.raises(Conflict) as e:
            await svc.apply_edge_records(
                "edge-1",
                [
                    rec(1, 4, {"attributes": {"n": 2}}),
                    rec(2, 9, {"attributes": {"n": 2}}, twin="fleet:car-2"),  # a gap
                    rec(3, 5, {"attributes": {"n": 3}}),  # not applied
                ],
            )
        assert e.value.extra["acked_seq"] == 1 and e.value.extra["applied"] == 1
        assert e.value.extra["expected_revision"] == 4
        assert svc.things[CAR]["_revision"] == 4 and svc.edge_positions[CAR] == (1, 4)
        # a record whose result is no valid thing stops it too
        with pytest.raises(InvalidInput) as e2:
            await svc.apply_edge_records(
                "edge-1",
                [rec(3, 5, {"attributes": 7}), rec(4, 6, {"attributes": {"n": 4}})],
            )
        assert e2.value.pointer == "/records/0/data/attributes"
        assert svc.things[CAR]["_revision"] == 4

    run(store_url, body)


def test_an_applied_record_that_changes_nothing_is_still_a_revision(store_url):
    async def body(svc: TwinService) -> None:
        await place(svc)
        out = await svc.apply_edge_records("edge-1", [rec(1, 4, {"attributes": {"n": 1}})])
        assert out["applied"] == 1
        assert svc.things[CAR]["_revision"] == 4 and svc.edge_positions[CAR] == (1, 4)
        hist, _ = await svc.history(A, CAR)
        assert hist[-1]["ops"] == [] and hist[-1]["source"] == "edge"

    run(store_url, body)


def test_group_membership_follows_edge_writes(store_url):
    async def body(svc: TwinService) -> None:
        await place(svc)
        await svc.put_group(A, "fast", filter="gt(attributes/n,5)")
        await svc.apply_edge_records("edge-1", [rec(1, 4, {"attributes": {"n": 9}})])
        assert (await svc.get_group(A, "fast"))["members"] == [CAR]
        await svc.apply_edge_records("edge-1", [rec(2, 5, {"attributes": {"n": 1}})])
        assert (await svc.get_group(A, "fast"))["members"] == []

    run(store_url, body)


@pytest.mark.parametrize(
    ("records", "pointer"),
    [
        ("x", "/records"),
        ([7], "/records/0"),
        ([{**rec(1, 4, {}), "extra": 1}], "/records/0/extra"),
        ([{k: v for k, v in rec(1, 4, {}).items() if k != "time_s"}], "/records/0/time_s"),
        ([rec(True, 4, {})], "/records/0/seq"),  # type: ignore[arg-type]
        ([rec(1, -1, {})], "/records/0/revision"),
        ([rec(1, 2**60, {})], "/records/0/revision"),
        ([rec(1, 4, {}, epoch=1.5)], "/records/0/epoch"),  # type: ignore[arg-type]
        ([rec(1, 4, {}, twin="no-namespace")], "/records/0/twin"),
        ([rec(1, 4, {}, kind="delete")], "/records/0/kind"),
        ([rec(1, 4, [])], "/records/0/data"),  # type: ignore[arg-type]
        ([rec(1, 4, {"_host": "x"})], "/records/0/data/_host"),
        ([rec(1, 4, {"color": 1}, kind="snapshot")], "/records/0/data/color"),
        ([rec(1, 4, {}, time_s=float("nan"))], "/records/0/time_s"),
        ([rec(2, 4, {}), rec(2, 5, {})], "/records/1/seq"),
        ([rec(1, 4, {"attributes": {"s": "\ud800"}})], "/records/0/data/attributes/s"),
    ],
)
def test_malformed_records_are_refused_before_anything_is_applied(tmp_path, records, pointer):
    async def body(svc: TwinService) -> None:
        await place(svc)
        with pytest.raises(InvalidInput) as e:
            await svc.apply_edge_records("edge-1", records)
        assert e.value.pointer == pointer, e.value.detail
        assert svc.things[CAR]["_revision"] == 3
        with pytest.raises(InvalidInput) as e:
            await svc.apply_edge_records("not a host", [])
        assert e.value.pointer == "/host"

    run(f"sqlite:///{tmp_path / 't.db'}", body)


def test_an_empty_batch(tmp_path):
    async def body(svc: TwinService) -> None:
        out = await svc.apply_edge_records("edge-1", [])
        assert out == {
            "applied": 0,
            "duplicates": 0,
            "dropped": 0,
            "acked_seq": 0,
            "lag_s": {"max": None, "last": None},
        }

    run(f"sqlite:///{tmp_path / 't.db'}", body)


# ---------------------------------------------------------------------- the store


def _change(rev: int, edge: tuple[int, int] | None, new: bool = True) -> Change:
    doc = {
        "thingId": CAR,
        "attributes": {},
        "features": {},
        "_revision": rev,
        "_created": "2024-01-01T00:00:00.000Z",
        "_modified": "2024-01-01T00:00:00.000Z",
        "_domain": "fleet",
        "_host": None,
    }
    ops = [{"op": "add", "path": "", "value": doc}] if rev == 1 else []
    return Change(CAR, "fleet", rev, 1.0, doc if new else None, ops, "edge", "h", edge=edge)


def test_the_store_writes_positions_in_the_commit_transaction(store_url):
    store = open_store(store_url)
    try:
        store.commit([_change(1, None), _change(2, (1, 2))])
        assert store.load_edge_positions() == {CAR: (1, 2)}
        # a commit that fails stores no position either
        bad = _change(3, (1, 3))
        assert bad.new is not None
        bad.new["_domain"] = "other"
        with pytest.raises(Exception, match="cannot store"):
            store.commit([bad])
        assert store.load_edge_positions() == {CAR: (1, 2)}
        store.set_edge_position(CAR, (2, 7))
        assert store.load_edge_positions() == {CAR: (2, 7)}
        store.set_edge_position(CAR, None)
        assert store.load_edge_positions() == {}
        store.set_edge_position(CAR, (1, 2))
        store.commit([_change(3, None, new=False)])  # the deletion takes it along
        assert store.load_edge_positions() == {}
    finally:
        store.close()


def test_an_existing_database_gets_the_table(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as c:
        c.execute("DROP TABLE edge_replica")
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.load_edge_positions() == {}
    finally:
        store.close()


# ---------------------------------------------------------------------- hypothesis

_KEYS = ("a", "b", "c")


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, list[dict[str, Any]], list[tuple[int, int, bool]]]:
    """A host's record stream over a few twins (changes and snapshots, epochs moving on
    at snapshots), and a delivery schedule: (start, length, restart the core first)."""
    twins = draw(st.integers(1, 3))
    docs = {t: {"thingId": f"fleet:t{t}", "attributes": {}, "features": {}} for t in range(twins)}
    revs = dict.fromkeys(range(twins), 2)
    epochs = dict.fromkeys(range(twins), 1)
    records = []
    for seq in range(1, draw(st.integers(1, 20)) + 1):
        t = draw(st.integers(0, twins - 1))
        revs[t] += 1
        if draw(st.integers(0, 5)) == 0:
            moved = draw(st.integers(0, 1))
            epochs[t] += moved
            revs[t] -= moved  # an adoption starts at the revision the old host reached
            attrs = draw(st.dictionaries(st.sampled_from(_KEYS), st.integers(0, 9), max_size=3))
            docs[t] = {**docs[t], "attributes": attrs}
            data, kind = json.loads(json.dumps(docs[t])), "snapshot"
        else:
            patch = draw(
                st.dictionaries(
                    st.sampled_from(_KEYS), st.none() | st.integers(0, 9), min_size=1, max_size=2
                )
            )
            data, kind = {"attributes": patch}, "change"
            attrs = {k: v for k, v in {**docs[t]["attributes"], **patch}.items() if v is not None}
            docs[t] = {**docs[t], "attributes": attrs}
        records.append(rec(seq, revs[t], data, kind=kind, twin=f"fleet:t{t}", epoch=epochs[t]))
    schedule = draw(
        st.lists(st.tuples(st.integers(0, 30), st.integers(1, 8), st.booleans()), max_size=8)
    )
    return twins, records, schedule


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_any_redelivery_of_a_stream_applies_each_record_once_in_order(case):
    twins, records, schedule = case
    oracle = ReplicaApplier()
    for t in range(twins):
        oracle.seed(
            f"fleet:t{t}", {"thingId": f"fleet:t{t}", "attributes": {}, "features": {}}, 2, 1
        )
    for r in records:
        oracle.apply(
            LogRecord(
                r["seq"], r["twin"], r["epoch"], r["revision"], r["kind"],
                json.dumps(r["data"]).encode(), r["time_s"],
            )
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/t.db"

        async def main() -> None:
            svc = TwinService(open_store(url))
            await svc.start()
            try:
                for t in range(twins):
                    tid = f"fleet:t{t}"
                    await svc.put_thing(A, tid, {})
                    doc = await svc.set_host(tid, "edge-1")
                    await svc.set_edge_position(tid, 1, doc["_revision"])
                acked, applied = 0, 0  # acked: records acknowledged (a prefix of the stream)
                for start, length, restart in [*schedule, (len(records), len(records), False)]:
                    if restart:  # the core restarts: only what it stored counts
                        await svc.stop()
                        svc = TwinService(open_store(url))
                        await svc.start()
                    lo = min(start, acked)  # a host re-sends from anywhere up to its watermark
                    batch = records[lo : lo + length] if start < len(records) else records[lo:]
                    if not batch:
                        continue
                    out = await svc.apply_edge_records("edge-1", batch)
                    assert out["acked_seq"] == batch[-1]["seq"]
                    applied += out["applied"]
                    acked = max(acked, lo + len(batch))
                assert applied == len(records)  # each record applied exactly once
                for t in range(twins):
                    tid = f"fleet:t{t}"
                    want = oracle.twin(tid)
                    assert want is not None
                    doc = svc.things[tid]
                    assert content(doc) == want.document
                    mine = [r for r in records if r["twin"] == tid]
                    assert doc["_revision"] == 2 + len(mine)
                    assert svc.edge_positions[tid] == (want.epoch, want.revision)
                    hist, _ = await svc.history(A, tid)
                    assert [h["source"] for h in hist].count("edge") == len(mine)
            finally:
                await svc.stop()

        asyncio.run(main())


# ---------------------------------------------------------------------- HTTP


@pytest.fixture
def hapi(tmp_path: Path):
    yield from make_api(tmp_path, hosts_token=TOKEN)


@pytest.fixture
def api(tmp_path: Path):
    yield from make_api(tmp_path)


def _place_over_api(api: Any) -> int:
    api.put_thing(CAR, {"attributes": {"kind": "car"}})
    doc = api.call(api.service.set_host, CAR, "edge-1")
    api.call(api.service.set_edge_position, CAR, 1, doc["_revision"])
    return int(doc["_revision"])


def test_http_replicate_gap_and_duplicate(hapi):
    c, h = hapi.client, bearer(TOKEN)
    assert _place_over_api(hapi) == 2
    r = c.post(
        "/internal/replicate",
        json={"host": "edge-1", "records": [rec(1, 3, {"attributes": {"n": 1}}, time_s=1e9)]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["applied"], body["duplicates"], body["dropped"], body["acked_seq"]) == (1, 0, 0, 1)
    assert body["lag_s"]["max"] == body["lag_s"]["last"] > 0
    r = c.post(
        "/internal/replicate",
        json={"host": "edge-1", "records": [rec(1, 3, {"attributes": {"n": 1}})]},
        headers=h,
    )
    assert r.json()["duplicates"] == 1
    r = c.post(
        "/internal/replicate",
        json={"host": "edge-1", "records": [rec(3, 5, {"attributes": {"n": 2}})]},
        headers=h,
    )
    doc = problem_of(r, 409)
    assert doc["expected_revision"] == 4 and doc["pointer"] == "/records/0/revision"
    assert doc["acked_seq"] == 0
    # the thing as a host gets it
    r = c.get(f"/internal/things/{CAR}", headers=h)
    assert r.status_code == 200 and r.json()["_revision"] == 3 and r.headers["etag"] == '"rev:3"'
    assert r.json()["attributes"] == {"kind": "car", "n": 1}
    problem_of(c.get("/internal/things/fleet:nobody", headers=h), 404)
    # /metrics and /healthz
    text = c.get("/metrics").text
    assert 'twinedge_replication_records_total{host="edge-1",result="applied"} 1.0' in text
    assert 'twinedge_replication_records_total{host="edge-1",result="duplicate"} 1.0' in text
    assert 'twinedge_replication_lag_seconds{host="edge-1"}' in text
    assert 'twinedge_replication_lag_quantile_seconds{host="edge-1",quantile="0.99"}' in text
    health = c.get("/healthz").json()
    assert health["replication"]["edge-1"]["acked_seq"] == 1
    assert set(health["replication"]["edge-1"]) == {
        "acked_seq", "lag_s", "age_s", "batches", "records", "lag"
    }  # fmt: skip
    # three requests, the refused one included; two records handled
    assert (
        health["replication"]["edge-1"]["batches"],
        health["replication"]["edge-1"]["records"],
    ) == (3, 2)
    assert 'twinedge_replication_batches_total{host="edge-1"} 3.0' in text
    # the two records handled (one applied, one duplicate); the refused one is not counted
    lag = health["replication"]["edge-1"]["lag"]
    assert lag["window"] == 2 and 0 < lag["p50_s"] <= lag["p99_s"] == lag["max_s"]
    # internal routes are not in the API's description
    assert not any(p.startswith("/internal") for p in c.get("/openapi.json").json()["paths"])


def test_http_authenticate_device(hapi):
    c, h = hapi.client, bearer(TOKEN)
    hapi.put_thing(CAR, {})
    r = c.put(
        f"/api/2/things/{CAR}/credentials",
        json={"password": "pw-123456"},
        headers=hapi.h("fleet", "admin"),
    )
    assert r.status_code in (200, 204), r.text
    ok = c.post(
        "/internal/authenticate-device", json={"thingId": CAR, "password": "pw-123456"}, headers=h
    )
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    bad = c.post(
        "/internal/authenticate-device", json={"thingId": CAR, "password": "nope"}, headers=h
    )
    assert bad.json() == {"ok": False}
    doc = problem_of(
        c.post("/internal/authenticate-device", json={"thingId": CAR, "password": 1}, headers=h),
        400,
    )
    assert doc["pointer"] == "/password"


def test_http_internal_routes_need_the_hosts_token(hapi, tmp_path):
    c = hapi.client
    body = {"host": "edge-1", "records": []}
    for headers in ({}, bearer("wrong"), bearer(hapi.admin), {"Authorization": "Basic x"}):
        problem_of(c.post("/internal/replicate", json=body, headers=headers), 401)
        problem_of(c.get(f"/internal/things/{CAR}", headers=headers), 401)
    assert c.post("/internal/replicate", json=body, headers=bearer(TOKEN)).status_code == 200
    # the hosts token is no API key
    problem_of(c.get(f"/api/2/things/{CAR}", headers=bearer(TOKEN)), 401)


def test_http_without_a_hosts_token_there_are_no_internal_routes(api):
    c = api.client
    problem_of(c.post("/internal/replicate", json={}, headers=bearer("x")), 404)
    problem_of(c.post("/internal/authenticate-device", json={}), 404)
    problem_of(c.get(f"/internal/things/{CAR}", headers=bearer(api.admin)), 404)


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ([], ""),
        ({"records": []}, "/host"),
        ({"host": "edge-1"}, "/records"),
        ({"host": 7, "records": []}, "/host"),
        ({"host": "edge-1", "records": {}}, "/records"),
        ({"host": "edge-1", "records": [], "more": 1}, "/more"),
        ({"host": "edge 1", "records": []}, "/host"),
        ({"host": "edge-1", "records": [{}] * 5001}, "/records"),
        ({"host": "edge-1", "records": [rec(1, 3, {}, kind="x")]}, "/records/0/kind"),
        ({"host": "edge-1", "records": [{**rec(1, 3, {}), "seq": "1"}]}, "/records/0/seq"),
    ],
)
def test_http_malformed_bodies_are_400_with_a_pointer(hapi, body, pointer):
    r = hapi.client.post("/internal/replicate", json=body, headers=bearer(TOKEN))
    doc = problem_of(r, 400)
    assert doc["pointer"] == pointer, doc


def test_http_malformed_json_is_400(hapi):
    r = hapi.client.post(
        "/internal/replicate",
        content=b'{"host": "edge-1", "records": [}',
        headers={**bearer(TOKEN), "Content-Type": "application/json"},
    )
    problem_of(r, 400)


def test_http_replicate_refuses_what_it_would_not_read_before_the_token(hapi):
    """The replication route checks in the order every route does: parameters and
    headers it would not read, then the hosts token, then the body."""
    c, ok = hapi.client, {"host": "edge-1", "records": []}
    doc = problem_of(c.post("/internal/replicate?x=1", json=ok, headers=bearer("wrong")), 400)
    assert doc["detail"] == (
        "unknown query parameter 'x' on /internal/replicate; this route takes: none"
    )
    assert doc["error"] == "twinedge:query.parameter.unknown"
    assert doc["invalid-params"] == [
        {"name": "x", "in": "query", "reason": "not a parameter of this route"}
    ]
    doc = problem_of(
        c.post("/internal/replicate", json=ok, headers={**bearer(TOKEN), "If-Match": "*"}), 400
    )
    assert doc["error"] == "header.notsupported" and "'if-match'" in doc["detail"]
    doc = problem_of(
        c.post("/internal/replicate", json=ok, headers={**bearer(TOKEN), "If-Modified-Since": "x"}),
        400,
    )
    assert "'if-modified-since' is not supported" in doc["detail"]
    # a wrong token is refused before the body is read, however bad the body
    big = b"x" * 2_000_000
    json_type = {"Content-Type": "application/json"}
    doc = problem_of(
        c.post("/internal/replicate", content=big, headers={**bearer("wrong"), **json_type}), 401
    )
    assert doc["detail"] == "the hosts token is wrong (see DATA_DIR/hosts.token of the core)"
    assert (
        c.post("/internal/replicate", json=ok, headers=bearer("wrong")).headers["www-authenticate"]
        == 'Bearer realm="twinedge"'
    )


def test_http_replicate_body_errors(hapi):
    c, h = hapi.client, {**bearer(TOKEN), "Content-Type": "application/json"}
    doc = problem_of(c.post("/internal/replicate", content=b"x" * 2_000_000, headers=h), 413)
    assert doc["detail"] == "the body has 2000000 bytes; the limit is 1000000 bytes"
    assert doc["error"] == "twinedge:request.toolarge"
    doc = problem_of(
        c.post(
            "/internal/replicate",
            content=b"{}",
            headers={**bearer(TOKEN), "Content-Type": "text/plain"},
        ),
        415,
    )
    assert doc["detail"] == "send the body as application/json, not text/plain"
    doc = problem_of(c.post("/internal/replicate", content=b" ", headers=h), 400)
    assert doc["detail"] == "this request needs a JSON body (application/json)"
    assert doc["pointer"] == ""
    doc = problem_of(c.post("/internal/replicate", content=b'{"host": "e", [}', headers=h), 400)
    assert doc["detail"] == "line 1 column 15: got invalid JSON (Expecting property name " \
        "enclosed in double quotes)"  # fmt: skip
    assert (doc["line"], doc["column"]) == (1, 15)
    # a value no store can hold, anywhere in the body: refused with its pointer
    body = b'{"host": "edge-1", "records": [{"data": {"a": "\\ud800"}}]}'
    doc = problem_of(c.post("/internal/replicate", content=body, headers=h), 400)
    assert doc["pointer"] == "/records/0/data/a"
    # a record's bad field: the service's problem, the instance the route
    doc = problem_of(
        c.post(
            "/internal/replicate",
            json={"host": "edge-1", "records": [rec(1, 3, {}, kind="delete")]},
            headers=h,
        ),
        400,
    )
    assert doc["instance"] == "/internal/replicate"
    assert doc["pointer"] == "/records/0/kind", doc
    assert doc["detail"] == "kind must be change or snapshot, got 'delete'"
    doc = problem_of(c.get("/internal/replicate", headers=bearer(TOKEN)), 405)
    assert doc["detail"] == "GET is not allowed on /internal/replicate; use POST"


def test_http_replicate_is_counted_under_its_route(hapi):
    c = hapi.client
    c.post("/internal/replicate", json={"host": "edge-1", "records": []}, headers=bearer(TOKEN))
    text = c.get("/metrics").text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith("twinedge_http_requests_total") and "/internal/replicate" in x
    )
    assert 'method="POST"' in line and 'status="200"' in line and line.endswith(" 1.0")


def test_http_replicate_applies_a_record_that_touches_one_feature(hapi):
    """A change validated on what it touches: the rest of the twin is kept as it was."""
    c, h = hapi.client, bearer(TOKEN)
    hapi.put_thing(
        CAR,
        {
            "attributes": {"kind": "car"},
            "features": {"a": {"properties": {"x": 1}}, "b": {"properties": {"y": 2}}},
        },
    )
    doc = hapi.call(hapi.service.set_host, CAR, "edge-1")
    hapi.call(hapi.service.set_edge_position, CAR, 1, doc["_revision"])
    rev = int(doc["_revision"])
    patch = {"features": {"b": {"properties": {"y": 3, "z": [1]}}, "c": {"properties": {}}}}
    r = c.post(
        "/internal/replicate",
        json={"host": "edge-1", "records": [rec(1, rev + 1, patch)]},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["applied"] == 1, r.text
    got = c.get(f"/internal/things/{CAR}", headers=h).json()
    assert got["features"] == {
        "a": {"properties": {"x": 1}},
        "b": {"properties": {"y": 3, "z": [1]}},
        "c": {"properties": {}},
    }
    assert got["attributes"] == {"kind": "car"} and got["_revision"] == rev + 1
    # a feature made invalid is refused with the pointer into the record
    bad = {"features": {"a": {"properties": 7}}}
    doc = problem_of(
        c.post(
            "/internal/replicate",
            json={"host": "edge-1", "records": [rec(2, rev + 2, bad)]},
            headers=h,
        ),
        400,
    )
    assert doc["pointer"] == "/records/0/data/features/a/properties"
    assert doc["detail"].startswith("record seq 2 makes no valid thing: ")


def test_edge_records_near_the_size_limit_are_measured(tmp_path):
    """The size bound never lets a twin past the limit: records that grow a twin are
    applied until the next one would cross it, which is refused (413)."""
    from twinedge.errors import TooLarge
    from twinedge.runtime.core.writer import MAX_THING_BYTES

    async def body(svc: TwinService) -> None:
        rev = await place(svc)
        chunk = "x" * 20_000
        seq = 0
        with pytest.raises(TooLarge) as e:
            for i in range(MAX_THING_BYTES // 20_000 + 2):
                seq += 1
                await svc.apply_edge_records(
                    "edge-1", [rec(seq, rev + 1, {"attributes": {f"k{i}": chunk}})]
                )
                rev += 1
        assert e.value.pointer == "/records/0/data"
        doc = svc.things[CAR]
        size = len(json.dumps(doc, separators=(",", ":")))
        assert size <= MAX_THING_BYTES < size + 20_000 + 10
        assert doc["_revision"] == rev

    run(f"sqlite:///{tmp_path / 't.db'}", body)


# ---------------------------------------------------------------------- serve


def test_serve_with_a_network_writes_a_hosts_token(tmp_path):
    from twinedge.runtime.app import ServeConfig, Server

    cfg = ServeConfig.load(  # the token is made with a network, host processes or not
        None,
        data_dir=str(tmp_path / "data"),
        mqtt="none",
        network="city-small",
        port=0,
        hosts="none",
    )

    async def main() -> None:
        server = Server(cfg)
        await server.start()
        try:
            token_file = tmp_path / "data" / "hosts.token"
            assert server.hosts_token and token_file.read_text().strip() == server.hosts_token
            assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
            assert server.http.config.app.state.hosts_token == server.hosts_token
        finally:
            await server.stop()

    asyncio.run(main())
