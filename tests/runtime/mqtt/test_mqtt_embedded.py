"""The embedded broker end to end: real MQTT clients, the real service, SQLite."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from twinedge.errors import InvalidInput, TimedOut, Unavailable
from twinedge.runtime.mqtt import start_mqtt
from twinedge.runtime.mqtt.core import may_subscribe
from twinedge.runtime.store import open_store

from .conftest import (
    OWNER,
    PASSWORD,
    device,
    embedded,
    next_error,
    next_message,
    raw_connect,
    raw_publish,
)

CAR = "fleet:car-1"
VAN = "fleet:van-2"


def stored(tmp_path, thing_id: str) -> dict:
    """The thing as a second, independent connection to the database sees it."""
    store = open_store(f"sqlite:///{tmp_path / 'twins.db'}")
    try:
        return next(d for d in store.load_things() if d["thingId"] == thing_id)
    finally:
        store.close()


def test_puback_means_durable(tmp_path):
    async def main():
        async with embedded(tmp_path) as (svc, broker), device(broker.port, CAR) as dev:
            for level in range(41, 46):
                # aiomqtt's QoS 1 publish returns when the PUBACK arrived
                await dev.publish(
                    f"twinedge/{CAR}/reported", json.dumps({"battery": {"level": level}}), qos=1
                )
                doc = await asyncio.to_thread(stored, tmp_path, CAR)
                assert doc["features"]["battery"]["properties"]["level"] == level
                assert doc["_revision"] == svc.things[CAR]["_revision"] == level - 39
            await dev.publish(
                f"twinedge/{CAR}/reported", json.dumps({"gps": {"lat": 48.1, "lon": 11.6}}), qos=1
            )
            doc = await asyncio.to_thread(stored, tmp_path, CAR)
            assert doc["features"]["gps"]["properties"] == {"lat": 48.1, "lon": 11.6}
            assert svc.metrics["mqtt_reports_applied_total"] == 6

    asyncio.run(main())


def test_desired_reaches_device_and_is_retained_for_reconnects(tmp_path):
    async def main():
        async with embedded(tmp_path) as (svc, broker):
            topic = f"twinedge/{CAR}/desired"
            async with device(broker.port, CAR) as dev:
                await dev.subscribe(topic, qos=1)
                await svc.set_desired(OWNER, CAR, "battery", {"mode": "eco"})
                m = await next_message(dev, topic)
                doc = json.loads(m.payload)
                assert doc["features"] == {"battery": {"desiredProperties": {"mode": "eco"}}}
                assert doc["revision"] == svc.things[CAR]["_revision"] and m.qos == 1
            # changed while the device is away; a new connection gets the latest, retained
            await svc.set_desired(OWNER, CAR, "battery", {"mode": "sport", "limit": 80})
            await svc.set_desired(OWNER, CAR, "lights", {"on": True})
            async with device(broker.port, CAR) as dev:
                await dev.subscribe(topic, qos=1)
                m = await next_message(dev, topic)
                assert m.retain
                assert json.loads(m.payload)["features"] == {
                    "battery": {"desiredProperties": {"mode": "sport", "limit": 80}},
                    "lights": {"desiredProperties": {"on": True}},
                }

    asyncio.run(main())


def test_persistent_session_gets_desired_on_resume(tmp_path):
    async def main():
        async with embedded(tmp_path) as (svc, broker):
            topic = f"twinedge/{CAR}/desired"
            async with device(broker.port, CAR, clean_session=False) as dev:
                await dev.subscribe(topic, qos=1)
            await svc.set_desired(OWNER, CAR, "battery", {"mode": "eco"})
            async with device(broker.port, CAR, clean_session=False) as dev:  # no SUBSCRIBE
                m = await next_message(dev, topic)
                assert json.loads(m.payload)["features"]["battery"]["desiredProperties"] == {
                    "mode": "eco"
                }

    asyncio.run(main())


def test_command_round_trip_and_timeout(tmp_path):
    async def main():
        async with embedded(tmp_path) as (svc, broker), device(broker.port, CAR) as dev:
            await dev.subscribe(f"twinedge/{CAR}/commands/#", qos=1)

            async def answer():
                m = await next_message(dev, f"twinedge/{CAR}/commands/+")
                assert m.topic.value == f"twinedge/{CAR}/commands/honk"
                cmd = json.loads(m.payload)
                assert cmd["payload"] == {"times": 2}
                await dev.publish(
                    f"twinedge/{CAR}/responses/{cmd['correlationId']}",
                    json.dumps({"honked": cmd["payload"]["times"]}),
                    qos=1,
                )

            responder = asyncio.create_task(answer())
            result = await svc.send_command(OWNER, CAR, "honk", {"times": 2}, timeout_s=5)
            await responder
            assert result == {"honked": 2}
            with pytest.raises(TimedOut):  # nobody answers
                await svc.send_command(OWNER, CAR, "reboot", None, timeout_s=0.3)
            with pytest.raises(InvalidInput):
                await svc.send_command(OWNER, CAR, "a/b", None, timeout_s=1)
            # a late or made-up answer is an error for the device, not for the service
            await dev.subscribe(f"twinedge/{CAR}/errors", qos=1)
            await dev.publish(f"twinedge/{CAR}/responses/nope", b"{}", qos=1)
            err = await next_error(dev, CAR)
            assert err["reason"] == "unknown-correlation-id" and err["status"] == 404

    asyncio.run(main())


def test_rejections_are_reported_counted_and_ingestion_goes_on(tmp_path):
    async def main():
        async with (
            embedded(tmp_path, (CAR, VAN), max_payload_bytes=1024) as (svc, broker),
            device(broker.port, CAR) as dev,
        ):
            await dev.subscribe(f"twinedge/{CAR}/errors", qos=1)
            reported = f"twinedge/{CAR}/reported"
            cases = [
                (reported, b'{"battery": {"level": ', "malformed-json", 400),
                (reported, b"\xff\xfe", "malformed-json", 400),
                (reported, b'{"battery": {"level": NaN}}', "malformed-json", 400),
                (reported, b"[1, 2]", "not-an-object", 400),
                (reported, b'"hello"', "not-an-object", 400),
                (
                    reported,
                    json.dumps({"battery": {"blob": "x" * 2000}}).encode(),
                    "payload-too-large",
                    413,
                ),
                (reported, b'{"battery": 5}', "invalid-report", 400),
                (reported, b"{}", "invalid-report", 400),
                (f"twinedge/{VAN}/reported", b'{"battery": {"level": 1}}', "forbidden-topic", 403),
                (f"twinedge/{CAR}/desired", b"{}", "forbidden-topic", 403),
                (f"twinedge/{CAR}/reported/extra", b"{}", "forbidden-topic", 403),
                ("elsewhere/x", b"{}", "forbidden-topic", 403),
            ]
            for topic, payload, reason, status in cases:
                await dev.publish(topic, payload, qos=1)  # acknowledged all the same
                err = await next_error(dev, CAR)
                assert (err["reason"], err["status"], err["topic"]) == (reason, status, topic)
                assert err["type"].endswith(reason) and err["detail"]
            # another device's twin did not change; the sender's still takes reports
            assert svc.things[VAN]["_revision"] == 1
            await dev.publish(reported, b'{"battery": {"level": 7}}', qos=1)
            assert svc.things[CAR]["features"]["battery"]["properties"]["level"] == 7

            # subscribing to someone else's topics is refused (SUBACK 0x80) and reported
            for topic_filter in (f"twinedge/{VAN}/desired", "twinedge/+/desired", "#"):
                await dev.subscribe(topic_filter, qos=1)
                err = await next_error(dev, CAR)
                assert err["reason"] == "forbidden-subscription" and err["topic"] == topic_filter
            await svc.set_desired(OWNER, VAN, "battery", {"mode": "eco"})  # not delivered to CAR

            with pytest.raises(asyncio.TimeoutError):  # nothing of VAN's ever came
                await next_message(dev, f"twinedge/{VAN}/#", timeout=0.3)
            # the thing is deleted while its device is connected: the session ends with it
            await svc.delete(OWNER, CAR)
            assert broker.metrics["mqtt_disconnected_total:thing-deleted"] == 1

            m = svc.metrics
            assert m["mqtt_rejected_total:malformed-json"] == 3
            assert m["mqtt_rejected_total:not-an-object"] == 2
            assert m["mqtt_rejected_total:payload-too-large"] == 1
            assert m["mqtt_rejected_total:invalid-report"] == 2
            assert m["mqtt_rejected_total:forbidden-topic"] == 4
            assert m["mqtt_rejected_total:forbidden-subscription"] == 3

        # VAN still works after all that
        async with embedded(tmp_path, ()) as (svc, broker), device(broker.port, VAN) as van:
            await van.publish(f"twinedge/{VAN}/reported", b'{"battery": {"level": 3}}', qos=1)
            assert svc.things[VAN]["features"]["battery"]["properties"]["level"] == 3

    asyncio.run(main())


def test_connect_is_refused_without_the_right_credentials(tmp_path):
    async def main():
        async with embedded(tmp_path, (CAR, VAN)) as (svc, broker):
            bad = [
                device(broker.port, CAR, "wrong-password"),
                device(broker.port, CAR, None),  # no password
                aiomqtt.Client("127.0.0.1", broker.port, identifier=CAR, timeout=5),  # anonymous
                device(broker.port, "fleet:nobody", PASSWORD),
                device(broker.port, CAR, identifier=VAN),  # someone else's client id
            ]
            for client in bad:
                with pytest.raises(aiomqtt.MqttError):
                    async with client:
                        pass
            assert svc.metrics["mqtt_rejected_total:bad-credentials"] == len(bad)
            # a refused stranger with VAN's client id did not disturb VAN's connection
            async with device(broker.port, VAN) as van:
                with pytest.raises(aiomqtt.MqttError):
                    async with device(broker.port, CAR, "wrong-password", identifier=VAN):
                        pass
                await van.publish(f"twinedge/{VAN}/reported", b'{"battery": {"level": 9}}', qos=1)
            async with device(broker.port, CAR, identifier=f"{CAR}/second-link") as dev:
                await dev.publish(f"twinedge/{CAR}/reported", b'{"battery": {"level": 9}}', qos=1)
            assert svc.things[CAR]["_revision"] == svc.things[VAN]["_revision"] == 2

    asyncio.run(main())


def test_an_mqtt5_client_is_refused_at_once(tmp_path):
    """The embedded broker speaks MQTT 3.1.1: an MQTT 5 CONNECT gets CONNACK 0x01
    (unacceptable protocol version) right away instead of hanging until a timeout."""

    async def main():
        async with embedded(tmp_path) as (svc, broker):
            v5 = device(broker.port, CAR, protocol=aiomqtt.ProtocolVersion.V5)
            with pytest.raises(aiomqtt.MqttError):
                async with v5:
                    pass
            assert svc.metrics["mqtt_rejected_total:unsupported-protocol"] == 1
            async with device(broker.port, CAR) as dev:  # 3.1.1 still fine
                await dev.publish(f"twinedge/{CAR}/reported", b'{"battery": {"level": 2}}', qos=1)

    asyncio.run(main())


def test_order_per_device_with_many_messages_in_flight(tmp_path):
    things = tuple(f"fleet:car-{i}" for i in range(4))
    n = 150

    async def main():
        async with embedded(tmp_path, things) as (svc, broker):
            sub = svc.subscribe(OWNER, max_queue=10_000)
            clients = [device(broker.port, t, max_inflight_messages=100) for t in things]
            for c in clients:
                await c.__aenter__()

            async def burst(client, thing):
                # all n in flight at once: publish calls go out in order, PUBACKs come later
                await asyncio.gather(
                    *(
                        client.publish(
                            f"twinedge/{thing}/reported", json.dumps({"seq": {"n": i}}), qos=1
                        )
                        for i in range(n)
                    )
                )

            await asyncio.gather(*(burst(c, t) for c, t in zip(clients, things, strict=True)))
            for c in clients:
                await c.__aexit__(None, None, None)
            seen: dict[str, list[tuple[int, int]]] = {t: [] for t in things}
            while not sub.queue.empty():
                ev = sub.queue.get_nowait()
                for op in ev["data"]["patch"]:
                    if op["path"] == "/features/seq/properties/n":
                        seen[ev["subject"]].append((ev["data"]["revision"], op["value"]))
                    elif op["path"] == "/features/seq":
                        seen[ev["subject"]].append(
                            (ev["data"]["revision"], op["value"]["properties"]["n"])
                        )
            for t in things:
                revs, seqs = zip(*seen[t], strict=True)
                assert list(seqs) == list(range(n)), t
                assert list(revs) == sorted(revs) and len(set(revs)) == n
                assert svc.things[t]["features"]["seq"]["properties"]["n"] == n - 1

    asyncio.run(main())


def test_service_unavailable_is_not_acknowledged(tmp_path, monkeypatch):
    async def main():
        async with embedded(tmp_path) as (svc, broker):

            async def unavailable(*a, **kw):
                raise Unavailable("the store could not commit")

            monkeypatch.setattr(svc, "device_report", unavailable)
            reader, writer = await raw_connect(broker.port, CAR)
            raw_publish(writer, f"twinedge/{CAR}/reported", b'{"battery": {"level": 1}}', 1)
            # no PUBACK: the connection is closed so that the device sends it again
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert svc.metrics["mqtt_rejected_total:service-unavailable"] == 1
            monkeypatch.undo()
            async with device(broker.port, CAR) as dev:
                await dev.publish(f"twinedge/{CAR}/reported", b'{"battery": {"level": 1}}', qos=1)
            assert svc.things[CAR]["features"]["battery"]["properties"]["level"] == 1

    asyncio.run(main())


def test_last_will_is_a_message_from_the_device(tmp_path):
    async def main():
        async with embedded(tmp_path) as (svc, broker):
            offline = b'{"connectivity": {"online": false}}'
            reader, writer = await raw_connect(
                broker.port, CAR, will=(f"twinedge/{CAR}/reported", offline)
            )
            raw_publish(
                writer, f"twinedge/{CAR}/reported", b'{"connectivity": {"online": true}}', 1
            )
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x40\x02\x00\x01"
            assert svc.things[CAR]["features"]["connectivity"]["properties"] == {"online": True}
            writer.transport.abort()  # vanish without DISCONNECT: the broker sends the will
            for _ in range(100):
                if svc.things[CAR]["features"]["connectivity"]["properties"]["online"] is False:
                    break
                await asyncio.sleep(0.02)
            assert svc.things[CAR]["features"]["connectivity"]["properties"] == {"online": False}

    asyncio.run(main())


def test_start_mqtt_chooses_the_mode(tmp_path):
    async def main():
        async with embedded(tmp_path) as (svc, _):
            front = await start_mqtt(svc, None, host="127.0.0.1", port=0)
            try:
                assert svc.outbound is front and front.port > 0
            finally:
                await front.stop()
            assert svc.outbound is None
            with pytest.raises(ValueError):
                await start_mqtt(svc, "http://example.org", host="127.0.0.1", port=0)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("topic_filter", "ok"),
    [
        ("twinedge/a:b/desired", True),
        ("twinedge/a:b/errors", True),
        ("twinedge/a:b/redirect", True),
        ("twinedge/a:c/redirect", False),
        ("twinedge/a:b/commands/#", True),
        ("twinedge/a:b/commands/+", True),
        ("twinedge/a:b/commands/reboot", True),
        ("twinedge/a:b/#", True),
        ("twinedge/a:b/+", True),
        ("twinedge/a:c/desired", False),
        ("twinedge/+/desired", False),
        ("twinedge/#", False),
        ("#", False),
        ("twinedge/a:b/reported/#", False),
        ("twinedge/a:b/desired/#", False),
        ("twinedge/a:b/commands/a/b", False),
        ("twinedge/a:b/#/x", False),
    ],
)
def test_subscribe_acl(topic_filter, ok):
    assert may_subscribe("a:b", topic_filter) is ok


def test_refuses_an_amqtt_whose_internals_it_was_not_written_for(monkeypatch):
    import importlib.metadata

    from twinedge.runtime.mqtt.embedded import check_amqtt

    assert check_amqtt().startswith("0.12.")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.13.0")
    with pytest.raises(RuntimeError, match=r"amqtt 0\.13\.0.*external broker"):
        check_amqtt()


def test_a_deleted_things_device_is_disconnected_and_cannot_write_its_next_life(
    tmp_path, store_url
):
    """The connection of a device belongs to its thing's incarnation: deleting the thing
    closes it, the password is gone with it, and the thing created again with the same
    id starts with no credentials."""

    async def main():
        async with embedded(tmp_path, store_url=store_url) as (svc, broker):
            reader, writer = await raw_connect(broker.port, CAR)
            raw_publish(writer, f"twinedge/{CAR}/reported", b'{"battery":{"level":1}}', 1)
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"\x40\x02\x00\x01"
            await svc.delete(OWNER, CAR)
            # the server closes the connection: EOF, nothing else arrives
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            await svc.put_thing(OWNER, CAR, {"attributes": {"fresh": True}})
            with pytest.raises(AssertionError):  # CONNACK refused: no credentials yet
                await raw_connect(broker.port, CAR)
            assert "features" not in svc.things[CAR] or not svc.things[CAR]["features"]
            assert broker.metrics["mqtt_disconnected_total:thing-deleted"] == 1

    asyncio.run(main())


def test_reports_applied_before_a_refused_one_are_acknowledged(tmp_path, monkeypatch):
    """A report refused with 503 closes the connection so that the device sends it again;
    a report before it that was applied meanwhile still gets its PUBACK first (else the
    device would send that one again too, and it would be applied twice)."""
    from .conftest import RawDevice, _packet, _utf8

    async def body() -> None:
        async with embedded(tmp_path) as (svc, broker):
            original, release = svc.device_report, asyncio.Event()

            async def device_report(thing_id, payload, **kw):
                if payload["battery"]["level"] == 2:
                    raise Unavailable("the twin is not here yet")
                await release.wait()  # level 1 commits after level 2 was refused
                return await original(thing_id, payload, **kw)

            monkeypatch.setattr(svc, "device_report", device_report)
            dev = await RawDevice.connect(broker.port, CAR)
            topic = _utf8(f"twinedge/{CAR}/reported")
            dev.writer.write(
                _packet(0x32, topic + (11).to_bytes(2, "big") + b'{"battery": {"level": 1}}')
                + _packet(0x32, topic + (12).to_bytes(2, "big") + b'{"battery": {"level": 2}}')
            )
            for _ in range(500):
                if svc.metrics["mqtt_rejected_total:service-unavailable"] == 1:
                    break
                await asyncio.sleep(0.01)
            release.set()
            await dev.until(lambda ev: ("closed",) in ev)
            assert [e for e in dev.events if e[0] == "puback"] == [("puback", 11)]
            assert svc.things[CAR]["features"]["battery"]["properties"]["level"] == 1

    asyncio.run(body())


def test_packets_of_every_kind_in_one_write_are_handled_in_order(tmp_path):
    """Many packets arriving in one TCP segment (the broker cuts them apart itself):
    QoS 1 reports acknowledged in order and applied in order, QoS 0 applied, a topic
    amqtt cannot parse refused and acknowledged, SUBSCRIBE and PINGREQ answered by
    amqtt's own handlers in between."""
    from .conftest import RawDevice, _packet, _utf8

    async def body() -> None:
        async with embedded(tmp_path) as (svc, broker):
            dev = await RawDevice.connect(broker.port, CAR)
            assert await dev.subscribe(f"twinedge/{CAR}/errors") == [1]
            topic = f"twinedge/{CAR}/reported"

            def report(level: int, pid: int | None, t: str = topic) -> bytes:
                head = _utf8(t) + (pid.to_bytes(2, "big") if pid else b"")
                payload = json.dumps({"battery": {"level": level}}).encode()
                return _packet(0x32 if pid else 0x30, head + payload)

            subscribe = _packet(
                0x82, (900).to_bytes(2, "big") + _utf8(f"twinedge/{VAN}/errors") + b"\x01"
            )
            burst = (
                subscribe
                + report(1, 11)
                + b"\xc0\x00"  # PINGREQ
                + report(2, None)
                + report(3, 12, f"twinedge/{CAR}/+")
                + b"".join(report(10 + k, 13 + k) for k in range(20))
            )
            dev.writer.write(burst)
            await dev.until(lambda ev: sum(e[0] == "puback" for e in ev) == 22)
            assert [e[1] for e in dev.events if e[0] == "puback"] == list(range(11, 33))
            assert ("suback", [0x80]) in dev.events  # another device's topic: refused
            await dev.until(lambda ev: len(dev.errors()) == 2)
            assert sorted(e["reason"] for e in dev.errors()) == [
                "forbidden-subscription",
                "malformed-topic",
            ]
            assert svc.things[CAR]["features"]["battery"]["properties"]["level"] == 29
            assert svc.things[CAR]["_revision"] == 1 + 2 + 20  # created, levels 1, 2, 10..29
            await dev.close()

    asyncio.run(body())
