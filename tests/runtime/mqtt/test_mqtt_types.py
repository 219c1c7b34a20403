"""JSON types survive the MQTT channel: a report or a desired state that changes only
a value's type (``1`` to ``true``, also inside arrays and objects) is a change: it is
acknowledged, stored with its type, and sent to the device. On the embedded broker and
through Mosquitto, on SQLite and on PostgreSQL.

And a thing's retained desired state and its devices' persistent sessions belong to its
incarnation: after the thing is deleted, a device of a thing created later with the same
id is never sent the earlier incarnation's desired state, and does not inherit the
subscriptions an earlier device made."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .conftest import CAR, OWNER, Inbox, bridged, device, embedded, needs_mosquitto, stored

#: value pairs Python's == takes for equal; each step writes the second after the first
PAIRS: list[tuple[Any, Any]] = [
    (1, True),
    (True, 1),
    (0, False),
    (1, 1.0),
    ([1, 0], [True, False]),
    ({"a": [1]}, {"a": [True]}),
]
DESIRED = f"twinedge/{CAR}/desired"


def text(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


async def report_pairs(svc, client) -> None:
    """Report every pair over MQTT (QoS 1: each publish returns once PUBACKed) and check
    the twin after each."""
    for i, (old, new) in enumerate(PAIRS):
        for v in (old, new):
            await client.publish(
                f"twinedge/{CAR}/reported", json.dumps({"battery": {f"v{i}": v}}), qos=1
            )
        # a fence: applied after both reports of this connection
        await client.publish(f"twinedge/{CAR}/reported", json.dumps({"fence": {"i": i}}), qos=1)
        got = svc.things[CAR]["features"]["battery"]["properties"][f"v{i}"]
        assert text(got) == text(new), (old, new, got)


async def desired_pairs(svc, inbox: Inbox) -> None:
    """Set every pair as desired state: the device is sent each change, with its types."""
    for old, new in PAIRS:
        for v in (old, new):
            await svc.set_desired(OWNER, CAR, "battery", {"p": v})

            def sent(ib: Inbox, v: Any = v) -> bool:
                return any(
                    text(json.loads(m.payload)["features"]["battery"]["desiredProperties"])
                    == text({"p": v})
                    for m in ib.on(DESIRED)[-1:]
                )

            await inbox.until(sent)
        assert text(svc.things[CAR]["features"]["battery"]["desiredProperties"]["p"]) == text(new)


def assert_stored(store_url: str) -> None:
    doc = stored(store_url, CAR)
    assert doc is not None
    props = doc["features"]["battery"]["properties"]
    for i, (_, new) in enumerate(PAIRS):
        assert text(props[f"v{i}"]) == text(new), (i, props)
    assert text(doc["features"]["battery"]["desiredProperties"]["p"]) == text(PAIRS[-1][1])
    # created + two reports and a fence per pair + two desired states per pair, less the
    # one desired state that repeats its predecessor (true, then true of the next pair)
    assert doc["_revision"] == 1 + 5 * len(PAIRS) - 1


def test_types_over_the_embedded_broker(tmp_path, store_url):
    async def main():
        async with embedded(tmp_path, (CAR,), store_url) as (svc, broker):
            async with device(broker.port, CAR) as c:
                inbox = Inbox(c)
                await c.subscribe(DESIRED, qos=1)
                await report_pairs(svc, c)
                await desired_pairs(svc, inbox)
                await inbox.close()
        assert_stored(store_url)

    asyncio.run(main())


@needs_mosquitto
def test_types_through_mosquitto(tmp_path, mosquitto, store_url):
    async def main():
        async with bridged(tmp_path, mosquitto, (CAR,), store_url) as (svc, _):
            async with mosquitto.device(CAR) as c:
                inbox = Inbox(c)
                await c.subscribe(DESIRED, qos=1)

                async def applied(n: int) -> None:
                    for _ in range(500):  # the broker's PUBACK comes before the commit
                        if svc.things[CAR]["_revision"] >= n:
                            return
                        await asyncio.sleep(0.02)
                    raise AssertionError(f"revision {n} never came")

                for i, (old, new) in enumerate(PAIRS):
                    for v in (old, new):
                        await c.publish(
                            f"twinedge/{CAR}/reported",
                            json.dumps({"battery": {f"v{i}": v}}),
                            qos=1,
                        )
                    await c.publish(
                        f"twinedge/{CAR}/reported", json.dumps({"fence": {"i": i}}), qos=1
                    )
                    await applied(2 + 3 * i + 2)
                    got = svc.things[CAR]["features"]["battery"]["properties"][f"v{i}"]
                    assert text(got) == text(new), (old, new, got)
                await desired_pairs(svc, inbox)
                await inbox.close()
        assert_stored(store_url)

    asyncio.run(main())


@needs_mosquitto
@pytest.mark.parametrize("same_revision", [True, False])
def test_a_retained_desired_state_ends_with_its_incarnation(tmp_path, mosquitto, same_revision):
    """The broker keeps the last desired state the service retained on the thing's
    topic. Once the thing is deleted, that copy must go: a device of a thing created
    later with the same id subscribes and must not be sent the earlier desired state.
    ``same_revision``: the new incarnation is created with a desired state at revision 1,
    as the deleted one was; its device must be sent that one."""

    async def main():
        async with bridged(tmp_path, mosquitto, (), None) as (svc, _):
            first = {"features": {"battery": {"desiredProperties": {"secret": "old"}}}}
            await svc.put_thing(OWNER, CAR, first)
            async with mosquitto.device(CAR, identifier=f"{CAR}/watch") as w:
                watch = Inbox(w)
                await w.subscribe([(DESIRED, 1), (f"twinedge/{CAR}/commands/+", 1)])
                await watch.until(lambda ib: len(ib.on(DESIRED)) == 1)
                await svc.delete(OWNER, CAR)
                later = {"features": {"battery": {"desiredProperties": {"fresh": True}}}}
                await svc.put_thing(OWNER, CAR, later if same_revision else {})
                # the bridge publishes in order: once a command went out, so did the rest
                command = asyncio.ensure_future(
                    svc.send_command(OWNER, CAR, "fence", {}, timeout_s=5)
                )
                await watch.until(lambda ib: len(ib.on(f"twinedge/{CAR}/commands/+")) == 1)
                command.cancel()
                await watch.close()
            async with mosquitto.device(CAR, identifier=f"{CAR}/late") as c:
                late = Inbox(c)
                await c.subscribe(DESIRED, qos=1)
                # a live desired change comes after any retained copy of the SUBSCRIBE
                await svc.set_desired(OWNER, CAR, "z", {"fence": 1})
                await late.until(lambda ib: any(b"fence" in m.payload for m in ib.on(DESIRED)))
                payloads = [bytes(m.payload) for m in late.on(DESIRED)]
                await late.close()
            before = payloads[: next(i for i, p in enumerate(payloads) if b"fence" in p)]
            assert all(b"old" not in p for p in before), payloads
            if same_revision:
                assert len(before) == 1 and b"fresh" in before[0], payloads
            else:
                assert before == [], payloads

    asyncio.run(main())


def test_the_next_incarnation_gets_its_desired_state_at_a_revision_seen_before(tmp_path):
    """The earlier incarnation's last desired state went out at revision 2; the thing
    created again with the same id reaches revision 2 with a desired state of its own,
    which its connected device must be sent (the embedded broker)."""

    async def main():
        async with embedded(tmp_path, ()) as (svc, broker):
            await svc.put_thing(OWNER, CAR, {})
            await svc.set_desired(OWNER, CAR, "battery", {"mode": "old"})  # revision 2
            await svc.delete(OWNER, CAR)
            await svc.put_thing(OWNER, CAR, {})
            await svc.set_device_secret(OWNER, CAR, "password-2")
            async with device(broker.port, CAR, "password-2") as c:
                inbox = Inbox(c)
                await c.subscribe(DESIRED, qos=1)
                await svc.set_desired(OWNER, CAR, "battery", {"mode": "new"})  # revision 2
                assert svc.things[CAR]["_revision"] == 2
                await inbox.until(lambda ib: any(b"new" in m.payload for m in ib.on(DESIRED)))
                assert all(b"old" not in m.payload for m in inbox.on(DESIRED))
                await inbox.close()

    asyncio.run(main())


def test_a_persistent_session_ends_with_its_incarnation(tmp_path):
    """A device of the deleted thing had a persistent session (clean session = 0) with a
    subscription; the device of the thing created again with the same id connects with
    the same client id and clean session = 0: it must start without that session, so it
    receives nothing it did not subscribe to itself."""

    async def main():
        async with embedded(tmp_path, (CAR,)) as (svc, broker):
            async with device(broker.port, CAR, clean_session=False) as old:
                await old.subscribe(f"twinedge/{CAR}/commands/+", qos=1)
            await svc.delete(OWNER, CAR)
            await svc.put_thing(OWNER, CAR, {})
            await svc.set_device_secret(OWNER, CAR, "password-2")
            async with device(broker.port, CAR, "password-2", clean_session=False) as new:
                inbox = Inbox(new)
                await new.subscribe(f"twinedge/{CAR}/errors", qos=1)
                command = asyncio.ensure_future(svc.send_command(OWNER, CAR, "x", {}))
                # a fence: an error sent after the command reaches the new device
                await new.publish(f"twinedge/{CAR}/reported", b"[1]", qos=1)
                await inbox.until(lambda ib: len(ib.on(f"twinedge/{CAR}/errors")) == 1)
                command.cancel()
                assert inbox.topics() == [f"twinedge/{CAR}/errors"]
                await inbox.close()

    asyncio.run(main())
