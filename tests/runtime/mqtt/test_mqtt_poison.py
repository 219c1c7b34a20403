"""Poisoned messages are refused at the edge and never touch anyone else.

A report (or a topic) holding a value twinedge does not store is answered (acknowledged,
with a problem on the sender's errors topic) without reaching the store, the sender
stays connected, and every other device's report of the same moment is acknowledged and
stored: on the embedded broker and through Mosquitto, on SQLite and on PostgreSQL.

"No resend storm" is counted in broker events, not time: every message the service
handles is counted per sender, and after a fence (a valid report from the same
connection, applied after everything it sent before) the poisoner's count must equal
what it sent."""

from __future__ import annotations

import asyncio
import collections
import json
import ssl

import pytest

from .conftest import (
    OWNER,
    Inbox,
    RawDevice,
    bridged,
    device,
    embedded,
    needs_mosquitto,
    stored,
)

GOOD = tuple(f"fleet:dev-{i}" for i in range(1, 5))
BAD = "fleet:dev-0"
LIMIT = 65536

#: poison -> (as a report payload, as the bytes of a topic level)
POISONS: dict[str, tuple[bytes, bytes]] = {
    "lone-surrogate": (b'{"battery": {"v": "\\ud800"}}', b"\xed\xa0\x80"),
    "nul": (b'{"battery": {"v": "a\\u0000b"}}', b"a\x00b"),
    "1e400": (b'{"battery": {"v": 1e400}}', b"1e400"),
    "5000-digit-integer": (b'{"battery": {"v": ' + b"9" * 5000 + b"}}", b"9" * 5000),
    "10000-deep": (b'{"battery": {"v": ' + b"[" * 10000 + b"]" * 10000 + b"}}", b"[" * 10000),
    "non-utf8": (b'{"battery": {"v": "\xff\xfe"}}', b"\xff\xfe"),
    "nan": (b'{"battery": {"v": NaN}}', b"NaN"),
    "infinity": (b'{"battery": {"v": -Infinity}}', b"Infinity"),
    "over-size-limit": (b'{"battery": {"v": "' + b"x" * (LIMIT + 10) + b'"}}', b"x" * 65000),
}
#: only in payloads: where the poison is a key, not a value
KEY_POISONS = {
    "lone-surrogate-key": b'{"battery": {"\\udfff": 1}}',
    "nul-feature-id": b'{"bat\\u0000tery": {"v": 1}}',
}
MALFORMED_TOPIC = {"lone-surrogate", "nul", "5000-digit-integer", "10000-deep", "non-utf8"}
MALFORMED_TOPIC |= {"over-size-limit"}


def payload_reason(poison: str) -> str:
    return "payload-too-large" if poison == "over-size-limit" else "malformed-json"


class Counter:
    """Counts the messages the gateway handles per thing id of their topic."""

    def __init__(self, gateway):
        self.counts: collections.Counter[str] = collections.Counter()
        inner = gateway.handle

        async def handle(sender, topic_name, data, *rest):
            parts = topic_name.split("/")
            self.counts[sender or (parts[1] if len(parts) > 1 else "?")] += 1
            return await inner(sender, topic_name, data, *rest)

        gateway.handle = handle


def good_report(i: int) -> bytes:
    return json.dumps({"battery": {"level": i}}).encode()


async def good_traffic(clients, n: int) -> None:
    """Each good device publishes ``n`` reports at QoS 1, all in flight at once; aiomqtt
    returns from each publish once its PUBACK arrived."""

    async def burst(client, thing):
        await asyncio.gather(
            *(client.publish(f"twinedge/{thing}/reported", good_report(i), qos=1) for i in range(n))
        )

    await asyncio.gather(*(burst(c, t) for c, t in zip(clients, GOOD, strict=True)))


def assert_good_stored(store_url: str, n: int) -> None:
    for t in GOOD:
        doc = stored(store_url, t)
        assert doc is not None, t
        assert doc["features"]["battery"]["properties"]["level"] == n - 1, t
        assert doc["_revision"] == 1 + n, t  # created, then n reports (levels 0..n-1)


# ------------------------------------------------------------ poisoned batches
def test_poisoned_batch_embedded(tmp_path, store_url):
    """One device poisons, four report at the same time: the poisoner gets a PUBACK and
    an error for each poison and stays connected; all good reports are acknowledged and
    stored; nothing is handled twice."""
    n = 30
    poisons = [p for p, _ in POISONS.values()] + list(KEY_POISONS.values())

    async def main():
        async with embedded(tmp_path, (BAD, *GOOD), store_url) as (svc, broker):
            counter = Counter(broker)
            bad = await RawDevice.connect(broker.port, BAD)
            await bad.subscribe(f"twinedge/{BAD}/errors")
            clients = [device(broker.port, t, max_inflight_messages=n) for t in GOOD]
            for c in clients:
                await c.__aenter__()

            async def poison():
                for data in poisons:
                    bad.publish(f"twinedge/{BAD}/reported", data)
                    await asyncio.sleep(0)  # interleave with the good devices' traffic

            await asyncio.gather(poison(), good_traffic(clients, n))
            await bad.until(lambda ev: sum(e[0] == "puback" for e in ev) == len(poisons))
            await bad.until(lambda ev: len(bad.errors()) == len(poisons))
            reasons = [e["reason"] for e in bad.errors()]
            assert sorted(reasons) == sorted(
                [payload_reason(p) for p in POISONS] + ["malformed-json"] * len(KEY_POISONS)
            )
            # fence: the same connection still works and was not resent anything
            pid = bad.publish(f"twinedge/{BAD}/reported", good_report(7))
            await bad.until(lambda ev: ("puback", pid) in ev)
            assert ("closed",) not in bad.events
            assert counter.counts[BAD] == len(poisons) + 1
            assert svc.things[BAD]["features"]["battery"]["properties"] == {"level": 7}
            assert all(counter.counts[t] == n for t in GOOD)
            for c in clients:
                await c.__aexit__(None, None, None)
            await bad.close()
        assert_good_stored(store_url, n)
        assert stored(store_url, BAD)["_revision"] == 2

    asyncio.run(main())


@needs_mosquitto
def test_poisoned_batch_through_mosquitto(tmp_path, mosquitto, store_url):
    n = 30
    poisons = [p for p, _ in POISONS.values()] + list(KEY_POISONS.values())

    async def main():
        async with bridged(tmp_path, mosquitto, (BAD, *GOOD), store_url) as (svc, bridge):
            counter = Counter(bridge)
            bad = mosquitto.device(BAD)
            clients = [mosquitto.device(t, max_inflight_messages=n) for t in GOOD]
            for c in (bad, *clients):
                await c.__aenter__()
            inbox = Inbox(bad)
            await bad.subscribe(f"twinedge/{BAD}/errors", qos=1)

            async def poison():
                for data in poisons:  # each returns once the broker's PUBACK arrived
                    await bad.publish(f"twinedge/{BAD}/reported", data, qos=1)

            await asyncio.gather(poison(), good_traffic(clients, n))
            await inbox.until(lambda i: len(i.messages) == len(poisons))
            reasons = [json.loads(m.payload)["reason"] for m in inbox.messages]
            assert sorted(reasons) == sorted(
                [payload_reason(p) for p in POISONS] + ["malformed-json"] * len(KEY_POISONS)
            )
            # fence: a valid report of the same connection is applied after all of them
            await bad.publish(f"twinedge/{BAD}/reported", good_report(7), qos=1)
            await _until_level(svc, BAD, 7)
            assert counter.counts[BAD] == len(poisons) + 1
            assert bridge.connections == 1  # never reconnected to get a redelivery
            for t in GOOD:
                await _until_level(svc, t, n - 1)
            await inbox.close()
            for c in (bad, *clients):
                await c.__aexit__(None, None, None)
        assert_good_stored(store_url, n)

    asyncio.run(main())


async def _until_level(svc, thing_id: str, level: int) -> None:
    """Wait (bounded) until the service applied ``level`` for ``thing_id``: woken by the
    service's change events."""
    sub = svc.subscribe(OWNER, max_queue=100_000)
    try:

        def done() -> bool:
            f = svc.things[thing_id].get("features", {}).get("battery", {})
            return f.get("properties", {}).get("level") == level

        while not done():
            await asyncio.wait_for(sub.queue.get(), 10)
    finally:
        sub.close()


# ------------------------------------------------------------ the poison matrix
CHANNELS = ("payload", "topic-thing-id", "topic-correlation-id")
MATRIX = [(c, p) for c in CHANNELS for p in POISONS]
MATRIX += [(c, w) for c in CHANNELS[1:] for w in ("+", "#")]


def topic_bytes(channel: str, level: bytes) -> bytes:
    if channel == "topic-thing-id":
        return b"twinedge/" + level + b"/reported"
    return f"twinedge/{BAD}/responses/".encode() + level


def expected_reason(channel: str, poison: str) -> str:
    if channel == "payload":
        return payload_reason(poison)
    if poison in MALFORMED_TOPIC or poison in ("+", "#"):
        return "malformed-topic"
    return "forbidden-topic" if channel == "topic-thing-id" else "unknown-correlation-id"


@pytest.mark.parametrize(("channel", "poison"), MATRIX)
def test_poison_matrix_embedded(tmp_path, channel, poison):
    """Each poison on each channel: a PUBACK, a clear problem on the errors topic, the
    sender still connected, and a neighbour's concurrent report acknowledged and stored."""
    neighbour = GOOD[0]

    async def main():
        async with embedded(tmp_path, (BAD, neighbour)) as (svc, broker):
            bad = await RawDevice.connect(broker.port, BAD)
            await bad.subscribe(f"twinedge/{BAD}/errors")
            async with device(broker.port, neighbour) as good:
                if channel == "payload":
                    t, data = f"twinedge/{BAD}/reported".encode(), POISONS[poison][0]
                else:
                    level = POISONS[poison][1] if poison in POISONS else poison.encode()
                    t, data = topic_bytes(channel, level), b'{"battery": {"level": 1}}'
                pid = bad.publish(t, data)
                await good.publish(f"twinedge/{neighbour}/reported", good_report(5), qos=1)
                await bad.until(lambda ev: ("puback", pid) in ev and bad.errors())
                (err,) = bad.errors()
                assert err["reason"] == expected_reason(channel, poison), err
                assert err["status"] in (400, 403, 404, 413) and err["detail"]
                pid = bad.publish(f"twinedge/{BAD}/reported", good_report(9))
                await bad.until(lambda ev: ("puback", pid) in ev)
                assert ("closed",) not in bad.events
                assert svc.things[BAD]["features"]["battery"]["properties"] == {"level": 9}
            await bad.close()
            assert svc.things[neighbour]["features"]["battery"]["properties"] == {"level": 5}
            assert svc.things[BAD]["_revision"] == 2

    asyncio.run(main())


@needs_mosquitto
@pytest.mark.parametrize("poison", [*POISONS, *KEY_POISONS])
def test_poison_matrix_payload_through_mosquitto(tmp_path, mosquitto, poison):
    neighbour = GOOD[0]
    data = POISONS[poison][0] if poison in POISONS else KEY_POISONS[poison]

    async def main():
        async with (
            bridged(tmp_path, mosquitto, (BAD, neighbour)) as (svc, _),
            mosquitto.device(BAD) as bad,
            mosquitto.device(neighbour) as good,
        ):
            inbox = Inbox(bad)
            await bad.subscribe(f"twinedge/{BAD}/errors", qos=1)
            await asyncio.gather(
                bad.publish(f"twinedge/{BAD}/reported", data, qos=1),
                good.publish(f"twinedge/{neighbour}/reported", good_report(5), qos=1),
            )
            await inbox.until(lambda i: len(i.messages) == 1)
            err = json.loads(inbox.messages[0].payload)
            want = payload_reason(poison) if poison in POISONS else "malformed-json"
            assert err["reason"] == want and err["detail"]
            await _until_level(svc, neighbour, 5)
            await bad.publish(f"twinedge/{BAD}/reported", good_report(9), qos=1)
            await _until_level(svc, BAD, 9)
            await inbox.close()

    asyncio.run(main())


@needs_mosquitto
@pytest.mark.parametrize("poison", ["lone-surrogate", "nul", "non-utf8", "+", "#"])
def test_poisoned_topic_through_mosquitto_never_reaches_the_service(tmp_path, mosquitto, poison):
    """Mosquitto itself refuses a topic that is not valid MQTT (it closes that one
    connection); the bridge never sees it and a neighbour is not affected."""
    neighbour = GOOD[0]
    level = POISONS[poison][1] if poison in POISONS else poison.encode()

    async def main():
        async with bridged(tmp_path, mosquitto, (BAD, neighbour)) as (svc, bridge):
            counter = Counter(bridge)
            ctx = ssl.create_default_context(cafile=str(mosquitto.folder / "ca.crt"))
            name = BAD.replace(":", "_")
            ctx.load_cert_chain(mosquitto.folder / f"{name}.crt", mosquitto.folder / f"{name}.key")
            bad = await RawDevice.connect(mosquitto.port, BAD, None, ssl=ctx)
            bad.publish(b"twinedge/" + level + b"/reported", b'{"battery": {"level": 1}}')
            async with mosquitto.device(neighbour) as good:
                await good.publish(f"twinedge/{neighbour}/reported", good_report(5), qos=1)
                await _until_level(svc, neighbour, 5)
            await bad.until(lambda ev: ("closed",) in ev)
            await bad.close()
            assert counter.counts[neighbour] == 1 and sum(counter.counts.values()) == 1

    asyncio.run(main())


def test_a_message_that_fails_alone_is_acknowledged_not_resent(tmp_path, monkeypatch):
    """A 500 from the service (this message failed, the service is fine) is answered like
    a refusal: PUBACK, internal-error on the errors topic, connection kept; only 503
    (store down, overloaded, shutting down) leaves a message unacknowledged."""
    from twinedge.errors import OperationFailed

    async def main():
        async with embedded(tmp_path, (BAD,)) as (svc, broker):
            real = svc.device_report

            async def fails_alone(thing_id, payload, **kw):
                if "poison" in payload:
                    raise OperationFailed("ValueError: cannot store")
                return await real(thing_id, payload, **kw)

            monkeypatch.setattr(svc, "device_report", fails_alone)
            counter = Counter(broker)
            bad = await RawDevice.connect(broker.port, BAD)
            await bad.subscribe(f"twinedge/{BAD}/errors")
            pid = bad.publish(f"twinedge/{BAD}/reported", b'{"poison": {"v": 1}}')
            await bad.until(lambda ev: ("puback", pid) in ev and bad.errors())
            (err,) = bad.errors()
            assert (err["reason"], err["status"]) == ("internal-error", 500)
            pid = bad.publish(f"twinedge/{BAD}/reported", good_report(3))
            await bad.until(lambda ev: ("puback", pid) in ev)
            assert ("closed",) not in bad.events and counter.counts[BAD] == 2
            assert svc.things[BAD]["features"]["battery"]["properties"] == {"level": 3}
            await bad.close()

    asyncio.run(main())
