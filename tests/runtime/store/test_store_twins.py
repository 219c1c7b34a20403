"""Both stores: commit/load round trip, revisions, history, as-of reads, pruning,
deletion and re-creation, atomic batches, migration and URLs."""

from __future__ import annotations

import threading

import pytest

from twinedge.errors import ServiceError
from twinedge.runtime.store import (
    Change,
    Scope,
    SearchQuery,
    SQLiteStore,
    StoreError,
    open_store,
)
from twinedge.runtime.store.sql_commit import SNAPSHOT_EVERY


def car(level: int = 50, kind: str = "vehicle") -> dict:
    return {
        "attributes": {"kind": kind, "tags": ["a", "b"]},
        "features": {"battery": {"properties": {"level": level}, "desiredProperties": {}}},
    }


def ids(store, flt: str | None = None) -> list[str]:
    return [d["thingId"] for d in store.search(SearchQuery(flt, limit=1000)).items]


def test_commit_and_load_round_trip(store, twins):
    chs = [twins.put(f"ns:car-{i}", car(i)) for i in range(5)]
    store.commit(chs)
    loaded = {d["thingId"]: d for d in store.load_things()}
    assert loaded == twins.docs
    assert store.thing_at("ns:car-3") == twins.docs["ns:car-3"]
    assert store.thing_at("ns:nobody") is None
    store.commit([])  # an empty batch is fine


def test_revisions_and_history(store, twins):
    store.commit([twins.put("ns:a", car(50))])
    t1 = twins.time
    store.commit(
        [twins.edit("ns:a", lambda d: d["features"]["battery"]["properties"].update(level=40))]
    )
    store.commit(
        [
            twins.edit("ns:a", lambda d: d["attributes"].pop("tags"), source="mqtt", actor="dev-1"),
            twins.edit("ns:a", lambda d: d["attributes"].update(colour="red")),
        ]
    )
    h = store.history("ns:a")
    assert [x["revision"] for x in h] == [1, 2, 3, 4]
    assert h[2]["source"] == "mqtt" and h[2]["actor"] == "dev-1"
    assert h[2]["ops"] == [{"op": "remove", "path": "/attributes/tags"}]
    assert h[1]["ops"] == [
        {"op": "replace", "path": "/features/battery/properties/level", "value": 40}
    ]
    assert not any(x["deleted"] for x in h)
    assert [x["revision"] for x in store.history("ns:a", since=t1 + 1)] == [2, 3, 4]
    assert [x["revision"] for x in store.history("ns:a", until=t1 + 1)] == [1]
    assert [x["revision"] for x in store.history("ns:a", after_revision=2)] == [3, 4]
    assert [x["revision"] for x in store.history("ns:a", limit=2)] == [1, 2]
    assert store.history("ns:other") == []
    # as-of reads: each revision as it was, service fields included
    one = store.thing_at("ns:a", revision=1)
    assert one["features"]["battery"]["properties"]["level"] == 50 and one["attributes"][
        "tags"
    ] == ["a", "b"]
    assert one["_revision"] == 1
    three = store.thing_at("ns:a", revision=3)
    assert "tags" not in three["attributes"] and "colour" not in three["attributes"]
    assert three["_revision"] == 3 and three["_modified"] != one["_modified"]
    assert store.thing_at("ns:a", revision=4) == twins.docs["ns:a"]
    assert store.thing_at("ns:a", revision=5) is None
    assert store.thing_at("ns:a", at=t1 + 0.5)["_revision"] == 1
    assert store.thing_at("ns:a", at=t1 - 5) is None
    assert store.thing_at("ns:a", at=twins.time + 100) == twins.docs["ns:a"]
    with pytest.raises(ServiceError, match="not both"):
        store.thing_at("ns:a", revision=1, at=t1)


def test_as_of_replays_from_snapshots_over_many_revisions(store, twins):
    store.commit([twins.put("ns:a", car(0))])
    expected = {1: twins.docs["ns:a"]}
    batch = []
    for i in range(1, 3 * SNAPSHOT_EVERY + 5):
        batch.append(
            twins.edit(
                "ns:a", lambda d, i=i: d["features"]["battery"]["properties"].update(level=i)
            )
        )
        expected[i + 1] = twins.docs["ns:a"]
        if len(batch) == 7:
            store.commit(batch)
            batch = []
    store.commit(batch)
    for rev in (
        1,
        2,
        SNAPSHOT_EVERY - 1,
        SNAPSHOT_EVERY,
        SNAPSHOT_EVERY + 1,
        2 * SNAPSHOT_EVERY + 3,
        max(expected),
    ):
        assert store.thing_at("ns:a", revision=rev) == expected[rev], rev


def test_deleted_things_are_recorded_and_can_come_back(store, twins):
    store.commit([twins.put("ns:a", car(10)), twins.put("ns:b", car(20))])
    store.commit([twins.edit("ns:a", lambda d: d["attributes"].update(x=1))])
    t_alive = twins.time
    store.commit([twins.delete("ns:a")])
    t_deleted = twins.time
    assert store.thing_at("ns:a") is None
    assert ids(store) == ["ns:b"]
    assert ids(store, 'eq(attributes/kind,"vehicle")') == ["ns:b"]
    h = store.history("ns:a")
    assert [(x["revision"], x["deleted"]) for x in h] == [(1, False), (2, False), (3, True)]
    assert store.thing_at("ns:a", at=t_alive)["attributes"]["x"] == 1
    assert store.thing_at("ns:a", at=t_deleted) is None
    # created again: revision 1 of a new incarnation; old history kept, reads follow time
    store.commit([twins.put("ns:a", car(99, kind="robot"))])
    assert store.thing_at("ns:a")["_revision"] == 1
    assert ids(store, 'eq(attributes/kind,"robot")') == ["ns:a"]
    assert store.thing_at("ns:a", revision=1)["attributes"]["kind"] == "robot"
    assert store.thing_at("ns:a", at=t_alive)["attributes"]["kind"] == "vehicle"
    # the history is the current incarnation's only: nothing of the earlier one leaks
    assert [x["revision"] for x in store.history("ns:a")] == [1]
    assert store.history("ns:a")[0]["ops"] == []
    # delete and re-create inside one batch
    store.commit([twins.delete("ns:a"), twins.put("ns:a", car(5, kind="drone"))])
    assert ids(store, 'eq(attributes/kind,"drone")') == ["ns:a"]
    assert ids(store, 'eq(attributes/kind,"robot")') == []


def test_incremental_index_follows_every_kind_of_op(store, twins):
    store.commit([twins.put("ns:a", {"attributes": {"o": {"p": 1, "q": {"r": "s"}}, "v": 1}})])

    def step(d):
        d["attributes"]["o"] = 5  # object -> scalar: descendants leave the index
        d["attributes"]["v"] = {"w": True}  # scalar -> object
        d["features"]["f"] = {"properties": {"x": 1.5}}

    store.commit([twins.edit("ns:a", step)])
    assert ids(store, "exists(attributes/o/p)") == []
    assert ids(store, "exists(attributes/o/q/r)") == []
    assert ids(store, "eq(attributes/o,5)") == ["ns:a"]
    assert ids(store, "eq(attributes/v/w,true)") == ["ns:a"]
    assert ids(store, "eq(attributes/v,1)") == []
    assert ids(store, "gt(features/f/properties/x,1)") == ["ns:a"]
    store.commit([twins.edit("ns:a", lambda d: d["features"].pop("f"))])
    assert ids(store, "exists(features/f)") == []
    assert ids(store, "exists(features/f/properties/x)") == []
    # a change of the host (a service field) is searchable at once
    store.commit([twins.edit("ns:a", lambda d: d.update(_host="edge-7"))])
    assert ids(store, 'eq(_host,"edge-7")') == ["ns:a"]


def test_lax_add_creates_missing_parents_in_the_index(store, twins):
    store.commit([twins.put("ns:a", {"attributes": {}})])
    doc = dict(twins.docs["ns:a"], _revision=2, features={"f": {"properties": {"x": 1}}})
    ch = Change(
        "ns:a",
        "d",
        2,
        2e3,
        doc,
        [{"op": "add", "path": "/features/f/properties/x", "value": 1}],
        "t",
        "t",
    )
    store.commit([ch])
    assert ids(store, "exists(features/f/properties)") == ["ns:a"]
    assert ids(store, "eq(features/f/properties/x,1)") == ["ns:a"]


def test_prune_keeps_what_later_reads_need(store, twins):
    store.commit([twins.put("ns:a", car(0)), twins.put("ns:gone", car(0))])
    store.commit([twins.delete("ns:gone")])
    for i in range(1, 2 * SNAPSHOT_EVERY + 10):
        store.commit(
            [
                twins.edit(
                    "ns:a", lambda d, i=i: d["features"]["battery"]["properties"].update(level=i)
                )
            ]
        )
    cut = twins.time - 5  # a few revisions of ns:a after the cut
    before = {
        r: store.thing_at("ns:a", revision=r)
        for r in range(2 * SNAPSHOT_EVERY, 2 * SNAPSHOT_EVERY + 10)
    }
    at_cut = store.thing_at("ns:a", at=cut)
    removed = store.prune_history(cut)
    assert removed > 0
    left = store.history("ns:a")
    assert left[0]["revision"] == 2 * SNAPSHOT_EVERY  # the snapshot needed is kept
    assert store.history("ns:gone") == []  # deleted before the cut: nothing to keep
    for r, d in before.items():
        assert store.thing_at("ns:a", revision=r) == d
    assert store.thing_at("ns:a", at=cut) == at_cut
    assert store.thing_at("ns:a", revision=3) is None  # pruned
    assert store.prune_history(cut) == 0  # idempotent
    assert store.thing_at("ns:a") == twins.docs["ns:a"]


def test_a_failing_batch_leaves_nothing(store, twins):
    store.commit([twins.put("ns:a", car(1))])
    good = twins.put("ns:b", car(2))
    edit = twins.edit("ns:a", lambda d: d["attributes"].update(x=1))
    dup = Change(edit.thing_id, edit.domain, edit.revision, edit.time, edit.new, edit.ops, "x", "y")
    with pytest.raises(StoreError, match="rolled back") as e:
        store.commit([good, edit, dup])  # the same revision twice: duplicate history key
    assert "same revision" in str(e.value)
    assert ids(store) == ["ns:a"]
    assert [x["revision"] for x in store.history("ns:a")] == [1]
    assert store.history("ns:b") == []
    assert ids(store, "exists(attributes/x)") == []
    # the store is still usable, and the same changes go through without the duplicate
    store.commit([good, edit])
    assert ids(store) == ["ns:a", "ns:b"] and ids(store, "exists(attributes/x)") == ["ns:a"]


def test_bad_service_fields_are_refused(store, twins):
    ch = twins.put("ns:a", car())
    bad = Change("ns:a", "d", 1, 1.0, dict(ch.new, _modified=5), [], "x", "y")
    with pytest.raises(StoreError, match="_modified must be an RFC 3339 string"):
        store.commit([bad])
    assert ids(store) == []


def test_migrate_is_idempotent_and_data_survives_reopening(tmp_path, twins):
    url = f"sqlite:///{tmp_path / 'x' / 'twins.db'}"
    s = open_store(url)
    s.commit([twins.put("ns:a", car())])
    s.migrate()
    s.close()
    s2 = open_store(url)
    s2.migrate()
    assert [d["thingId"] for d in s2.load_things()] == ["ns:a"]
    assert s2.thing_at("ns:a", revision=1) == twins.docs["ns:a"]
    s2.close()
    with pytest.raises(StoreError, match="closed"):
        s2.count(None, Scope(None))


def test_sqlite_is_wal_and_durable(tmp_path, twins):
    s = SQLiteStore(tmp_path / "t.db")
    s.migrate()
    conn = s._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    s.commit([twins.put(f"ns:{i}", car(i)) for i in range(200)])
    # committed means visible to an independent connection at once (the WAL is synced)
    other = SQLiteStore(tmp_path / "t.db")
    assert other.count(None, Scope(None)) == 200
    other.close()
    s.close()  # the background checkpointer folds the WAL back into the database
    wal = tmp_path / "t.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_open_store_urls(tmp_path, twins):
    for url in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path / 'b.db'}", "sqlite://:memory:"):
        s = open_store(url)
        s.commit([twins.put(f"ns:{len(url)}", car())])
        assert s.count(None, Scope(None)) == 1
        s.close()
    with pytest.raises(StoreError, match="unknown store URL scheme 'mysql'"):
        open_store("mysql://localhost/db")


def test_memory_store_is_shared_between_threads(twins):
    s = open_store("sqlite://:memory:")
    s.commit([twins.put("ns:a", car())])
    seen = []
    t = threading.Thread(target=lambda: seen.append(ids(s)))
    t.start()
    t.join()
    assert seen == [["ns:a"]]
    s.close()


def test_reads_from_other_threads_while_committing(store, twins):
    store.commit([twins.put(f"ns:{i:03}", car(i)) for i in range(50)])
    errors: list[BaseException] = []
    counts: list[int] = []

    def reader():
        try:
            for _ in range(20):
                counts.append(len(ids(store, "ge(features/battery/properties/level,0)")))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for r in range(10):
        store.commit(
            [
                twins.edit(f"ns:{i:03}", lambda d, r=r: d["attributes"].update(r=r))
                for i in range(50)
            ]
        )
    for t in threads:
        t.join()
    assert not errors and set(counts) == {50}


def test_incarnations_survive_reopening(tmp_path, twins):
    url = f"sqlite:///{tmp_path / 'twins.db'}"
    s = open_store(url)
    s.commit([twins.put("ns:a", car(1))])
    s.commit([twins.delete("ns:a")])
    s.commit([twins.put("ns:a", car(2))])
    s.close()
    s = open_store(url)  # an empty cache: incarnations come from the database
    s.commit([twins.edit("ns:a", lambda d: d["attributes"].update(x=1))])
    s.commit([twins.delete("ns:a")])
    s.close()
    s = open_store(url)
    s.commit([twins.put("ns:a", car(3))])
    assert [x["revision"] for x in s.history("ns:a")] == [1]
    assert s.thing_at("ns:a", revision=1)["features"]["battery"]["properties"]["level"] == 3
    assert s.thing_at("ns:a") == twins.docs["ns:a"]
    s.close()
