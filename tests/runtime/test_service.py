"""The service core against the real stores (SQLite and PostgreSQL): single writer, durability, revisions,
conditional writes, groups, events, access across domains, commands."""

from __future__ import annotations

import asyncio

import pytest

from twinedge.errors import (
    Forbidden,
    NotFound,
    PreconditionFailed,
    ServiceError,
    TimedOut,
    Unavailable,
)
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

from .service_run import run

A = Principal("key-a", "dom-a", "write")
A_ADMIN = Principal("admin-a", "dom-a", "admin")
B = Principal("key-b", "dom-b", "write")
B_ADMIN = Principal("admin-b", "dom-b", "admin")
READER = Principal("ro-a", "dom-a", "read")


def car(n: int = 1, level: int = 50) -> dict:
    return {
        "attributes": {"kind": "vehicle", "n": n},
        "features": {"battery": {"properties": {"level": level}}},
    }


def test_create_read_patch_revisions_and_preconditions(store_url):
    async def body(svc):
        doc, created = await svc.put_thing(A, "fleet:car-1", car())
        assert created and doc["_revision"] == 1 and doc["_domain"] == "dom-a"
        with pytest.raises(PreconditionFailed) as e:
            await svc.put_thing(A, "fleet:car-1", car(), if_none_match=True)
        doc = await svc.patch(
            A, "fleet:car-1", "features/battery/properties", {"level": 40, "temp": 21}
        )
        assert doc["_revision"] == 2 and doc["features"]["battery"]["properties"] == {
            "level": 40,
            "temp": 21,
        }
        with pytest.raises(PreconditionFailed) as e:
            await svc.patch(A, "fleet:car-1", "attributes", {"n": 2}, if_match=1)
        assert "revision 2, not 1" in e.value.detail
        doc = await svc.patch(A, "fleet:car-1", "attributes", {"n": None}, if_match=2)
        assert "n" not in doc["attributes"] and doc["_revision"] == 3
        # a no-op patch does not make a revision
        doc = await svc.patch(A, "fleet:car-1", "attributes", {"kind": "vehicle"})
        assert doc["_revision"] == 3
        old = await svc.get_thing(A, "fleet:car-1", revision=1)
        assert (
            old["features"]["battery"]["properties"] == {"level": 50}
            and old["attributes"]["n"] == 1
        )
        hist, cursor = await svc.history(A, "fleet:car-1")
        assert cursor is None
        assert [h["revision"] for h in hist] == [1, 2, 3]
        with pytest.raises(Forbidden) as e:
            await svc.patch(A, "fleet:car-1", "_revision", 7)
        await svc.delete(A, "fleet:car-1", "attributes/kind")
        await svc.delete(A, "fleet:car-1")
        with pytest.raises(NotFound) as e:
            await svc.get_thing(A, "fleet:car-1")

    run(store_url, body)


def test_concurrent_writers_lose_nothing_and_revisions_have_no_gaps(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", car())
        await asyncio.gather(
            *(svc.patch(A, "fleet:car-1", "attributes", {f"k{i}": i}) for i in range(300))
        )
        doc = await svc.get_thing(A, "fleet:car-1")
        assert doc["_revision"] == 301
        assert all(doc["attributes"][f"k{i}"] == i for i in range(300))
        hist, _ = await svc.history(A, "fleet:car-1", limit=1000)
        assert [h["revision"] for h in hist] == list(range(1, 302))
        # batching: far fewer commits than writes
        assert len(svc.commit_latency_s) < 300

    run(store_url, body)


def test_device_report_is_durable_when_acknowledged(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", car())
        revs = await asyncio.gather(
            *(svc.device_report("fleet:car-1", {"battery": {"level": i}}) for i in range(50))
        )
        assert sorted(revs) == list(range(2, 52))
        # a second, independent connection sees the last acknowledged value
        fresh = open_store(store_url)
        docs = {d["thingId"]: d for d in fresh.load_things()}
        fresh.close()
        assert docs["fleet:car-1"]["_revision"] == 51
        assert docs["fleet:car-1"]["features"]["battery"]["properties"]["level"] == 49
        for bad, msg in (
            (["x"], "JSON object"),
            ({"battery": 5}, "must be a JSON object"),
            ({}, "JSON object"),
        ):
            with pytest.raises(ServiceError, match=msg):
                await svc.device_report("fleet:car-1", bad)
        with pytest.raises(NotFound):
            await svc.device_report("fleet:nobody", {"battery": {"level": 1}})

    run(store_url, body)


def test_domains_are_isolated_until_granted(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", car(level=80))
        await svc.put_thing(A, "fleet:car-2", car(level=10))
        for call in (
            svc.get_thing(B, "fleet:car-1"),
            svc.patch(B, "fleet:car-1", "attributes", {"x": 1}),
        ):
            with pytest.raises(NotFound):
                await call
        assert svc.metrics["access_denied_total"] == 2
        with pytest.raises(Forbidden):
            await svc.put_thing(READER, "fleet:car-3", car())
        await svc.grant(A_ADMIN, "dom-b", "gt(features/battery/properties/level,50)", "read")
        assert (await svc.get_thing(B, "fleet:car-1"))["thingId"] == "fleet:car-1"
        with pytest.raises(ServiceError):
            await svc.get_thing(B, "fleet:car-2")  # not matched by the grant
        with pytest.raises(ServiceError):
            await svc.patch(B, "fleet:car-1", "attributes", {"x": 1})  # read-only grant

    run(store_url, body)


def test_groups_follow_twins_and_emit_join_and_leave(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", car(level=80))
        await svc.put_thing(A, "fleet:car-2", car(level=10))
        await svc.put_thing(B, "other:car-9", car(level=90))
        await svc.put_group(A, "charged", filter="gt(features/battery/properties/level,50)")
        g = await svc.get_group(A, "charged")
        assert g["members"] == ["fleet:car-1"] and g["size"] == 1
        sub = svc.subscribe(A)
        await svc.device_report("fleet:car-2", {"battery": {"level": 60}})
        await svc.device_report("fleet:car-1", {"battery": {"level": 20}})
        events = [await asyncio.wait_for(sub.queue.get(), 2) for _ in range(4)]
        kinds = [(e["type"], e["subject"]) for e in events]
        assert ("dev.twinedge.group.joined", "fleet:car-2") in kinds
        assert ("dev.twinedge.group.left", "fleet:car-1") in kinds
        mod = next(
            e
            for e in events
            if e["type"] == "dev.twinedge.thing.modified" and e["subject"] == "fleet:car-2"
        )
        assert mod["specversion"] == "1.0" and mod["data"]["revision"] == 2
        assert mod["data"]["patch"] == [
            {"op": "replace", "path": "/features/battery/properties/level", "value": 60}
        ]
        assert (await svc.get_group(A, "charged"))["members"] == ["fleet:car-2"]
        assert [x["name"] for x in await svc.list_groups(B)] == []

    run(store_url, body)


def test_a_slow_subscriber_is_cut_off_with_a_reason(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", car())
        sub = svc.subscribe(A, max_queue=5)
        fast = svc.subscribe(A, 'eq(thingId,"fleet:car-1")', max_queue=1000)
        for i in range(20):
            await svc.device_report("fleet:car-1", {"battery": {"level": i}})
        assert sub.closed_reason and "slow consumer" in sub.closed_reason
        assert fast.closed_reason is None and fast.queue.qsize() == 20
        assert svc.metrics["events_dropped_total"] == 1
        assert sub not in svc._events.subscriptions

    run(store_url, body)


class Device:
    """The device side of the Outbound port, answering commands in-process."""

    def __init__(self, svc, answer=True):
        self.svc, self.answer, self.desired = svc, answer, []

    async def publish_desired(self, thing_id, feature_id, desired):
        self.desired.append((thing_id, feature_id, desired))

    async def publish_command(self, thing_id, subject, cid, payload):
        if self.answer:
            asyncio.get_running_loop().call_soon(
                self.svc.command_response, thing_id, cid, {"ok": subject, "echo": payload}
            )

    async def publish_error(self, thing_id, problem):
        pass


def test_desired_state_goes_to_the_device_and_commands_round_trip(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", car())
        with pytest.raises(Unavailable):
            await svc.send_command(A, "fleet:car-1", "honk", {})
        dev = Device(svc)
        svc.outbound = dev
        doc = await svc.set_desired(A, "fleet:car-1", "lamp", {"on": True})
        assert dev.desired == [("fleet:car-1", "lamp", {"on": True})]
        assert (await svc.delta(A, "fleet:car-1"))["delta"] == {"lamp": {"on": True}}
        await svc.device_report("fleet:car-1", {"lamp": {"on": True}})
        assert (await svc.delta(A, "fleet:car-1"))["inSync"] is True
        assert doc["_revision"] == 2
        assert await svc.send_command(A, "fleet:car-1", "honk", {"times": 2}) == {
            "ok": "honk",
            "echo": {"times": 2},
        }
        dev.answer = False
        with pytest.raises(TimedOut):
            await svc.send_command(A, "fleet:car-1", "honk", {}, timeout_s=0.2)
        assert not svc.command_response("fleet:car-1", "unknown-id", {})

    run(store_url, body)


def test_stop_flushes_everything_accepted(store_url):
    async def body():
        svc = TwinService(open_store(store_url))
        await svc.start()
        await svc.put_thing(A, "fleet:car-1", car())
        tasks = [
            asyncio.create_task(svc.device_report("fleet:car-1", {"battery": {"level": i}}))
            for i in range(100)
        ]
        await asyncio.sleep(0)
        await svc.stop()
        done = [t.result() for t in tasks if t.done() and not t.exception()]
        fresh = open_store(store_url)
        rev = next(iter(fresh.load_things()))["_revision"]
        fresh.close()
        assert rev == 1 + len(done) and len(done) == 100

    asyncio.run(body())
