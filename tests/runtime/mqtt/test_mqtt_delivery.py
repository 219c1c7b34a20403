"""Who gets which message: only the subscriptions that match its topic, exactly once per
client (also with overlapping filters), on the embedded broker and through Mosquitto.

Absence is proven with fences, not with time: after the step under test each client is
sent one more message it does subscribe to, and everything it received up to that fence
is compared in full."""

from __future__ import annotations

import asyncio
import json

import aiomqtt

from .conftest import CAR, OWNER, VAN, Inbox, bridged, device, embedded, needs_mosquitto

DESIRED, ERRORS, REPORTED = (f"twinedge/{CAR}/{k}" for k in ("desired", "errors", "reported"))


def kinds(inbox: Inbox) -> list[str]:
    """The last topic level of every message received, in order ('desired', 'errors')."""
    return [t.rsplit("/", 1)[1] for t in inbox.topics()]


def count(kind: str, n: int):
    return lambda inbox: kinds(inbox).count(kind) >= n


def live(kind: str, n: int):
    """At least ``n`` messages of ``kind`` that are not retained copies."""
    return lambda inbox: (
        sum(k == kind and not m.retain for k, m in zip(kinds(inbox), inbox.messages, strict=True))
        >= n
    )


def test_embedded_delivers_only_to_matching_subscriptions_once(tmp_path):
    async def main():
        async with embedded(tmp_path, (CAR, VAN)) as (svc, broker):
            await svc.set_desired(OWNER, CAR, "battery", {"mode": "eco"})
            a = device(broker.port, CAR, identifier=f"{CAR}/a")
            await a.__aenter__()
            ia = Inbox(a)
            await a.subscribe(DESIRED, qos=1)  # the retained desired state: once
            await ia.until(count("desired", 1))
            # connections made after a subscribed to desired
            b = device(broker.port, CAR, identifier=f"{CAR}/b")
            c = device(broker.port, CAR, identifier=f"{CAR}/c", clean_session=False)
            v = device(broker.port, VAN)
            for client in (b, c, v):
                await client.__aenter__()
            ib, ic, iv = (Inbox(x) for x in (b, c, v))
            await b.subscribe(ERRORS, qos=1)  # errors only
            # overlapping filters in one SUBSCRIBE: the retained desired state once
            await c.subscribe([(f"twinedge/{CAR}/#", 1), (DESIRED, 1)])
            await v.subscribe(f"twinedge/{VAN}/#", qos=1)

            await svc.set_desired(OWNER, CAR, "battery", {"mode": "sport"})
            await b.publish(REPORTED, b"[1]", qos=1)  # an error for CAR
            await ib.until(count("errors", 1))
            await ic.until(count("errors", 1))
            # fences: one more desired change (a, c) and an error of VAN's own (v)
            await svc.set_desired(OWNER, CAR, "lights", {"on": True})
            await v.publish(f"twinedge/{VAN}/reported", b"[1]", qos=1)
            await ia.until(count("desired", 3))
            await ic.until(count("desired", 3))
            await iv.until(count("errors", 1))

            assert kinds(ia) == ["desired", "desired", "desired"]
            assert ia.messages[0].retain and not ia.messages[1].retain
            assert kinds(ib) == ["errors"]
            assert kinds(ic) == ["desired", "desired", "errors", "desired"]
            assert iv.topics() == [f"twinedge/{VAN}/errors"]
            modes = [json.loads(m.payload)["features"]["battery"] for m in ic.on(DESIRED)]
            assert [m["desiredProperties"]["mode"] for m in modes] == ["eco", "sport", "sport"]

            # c comes back on its persistent session (no SUBSCRIBE): desired once; nobody
            # else gets anything because c connected
            await ic.close()
            await c.__aexit__(None, None, None)
            c = device(broker.port, CAR, identifier=f"{CAR}/c", clean_session=False)
            await c.__aenter__()
            ic = Inbox(c)
            await c.publish(REPORTED, b"[2]", qos=1)  # fence for b and c
            await ic.until(count("errors", 1))
            await ib.until(count("errors", 2))
            assert kinds(ic) == ["desired", "errors"] and ic.messages[0].retain
            assert kinds(ib) == ["errors", "errors"]
            assert kinds(ia) == ["desired", "desired", "desired"]

            for inbox, client in ((ia, a), (ib, b), (ic, c), (iv, v)):
                await inbox.close()
                await client.__aexit__(None, None, None)

    asyncio.run(main())


def test_embedded_reused_client_id_does_not_inherit_subscriptions(tmp_path):
    """A second connection with the same client id and a clean session gets nothing that
    the first connection's subscriptions asked for."""

    async def main():
        async with embedded(tmp_path) as (svc, broker):
            async with device(broker.port, CAR, clean_session=False) as first:
                await first.subscribe(DESIRED, qos=1)
            await svc.set_desired(OWNER, CAR, "battery", {"mode": "eco"})
            async with device(broker.port, CAR) as second:
                inbox = Inbox(second)
                await second.subscribe(ERRORS, qos=1)
                await svc.set_desired(OWNER, CAR, "battery", {"mode": "sport"})
                await second.publish(REPORTED, b"[1]", qos=1)
                await inbox.until(count("errors", 1))
                assert kinds(inbox) == ["errors"]
                await inbox.close()

    asyncio.run(main())


@needs_mosquitto
def test_mosquitto_delivers_only_to_matching_subscriptions_once(tmp_path, mosquitto):
    async def main():
        async with bridged(tmp_path, mosquitto) as (svc, _):
            await svc.set_desired(OWNER, CAR, "battery", {"mode": "eco"})
            a = mosquitto.device(CAR, identifier=f"{CAR}/a")
            b = mosquitto.device(CAR, identifier=f"{CAR}/b")
            c = mosquitto.device(CAR, identifier=f"{CAR}/c")
            for client in (a, b, c):
                await client.__aenter__()
            ia, ib, ic = (Inbox(x) for x in (a, b, c))
            await a.subscribe(DESIRED, qos=1)
            await ia.until(count("desired", 1))
            await b.subscribe(ERRORS, qos=1)
            await c.subscribe([(f"twinedge/{CAR}/#", 1), (DESIRED, 1)])
            await ic.until(count("desired", 1))

            await svc.set_desired(OWNER, CAR, "battery", {"mode": "sport"})
            await b.publish(REPORTED, b"[1]", qos=1)
            await ib.until(count("errors", 1))
            await ic.until(count("errors", 1))
            await svc.set_desired(OWNER, CAR, "lights", {"on": True})  # fence for a and c
            await ia.until(live("desired", 2))
            await ic.until(live("desired", 2))

            assert kinds(ia) == ["desired", "desired", "desired"]
            assert kinds(ib) == ["errors"]
            # live messages once per client (Mosquitto: allow_duplicate_messages false);
            # the retained copy Mosquitto sends once per matching filter of a SUBSCRIBE
            # (MQTT 3.1.1 section 3.3.1.3), which the bridge does not control
            live_kinds = [k for k, m in zip(kinds(ic), ic.messages, strict=True) if not m.retain]
            assert live_kinds == ["desired", "errors", "desired"]
            assert [m.retain for m in ic.messages] == [True, True, False, False, False]
            for inbox, client in ((ia, a), (ib, b), (ic, c)):
                await inbox.close()
                try:
                    await client.__aexit__(None, None, None)
                except aiomqtt.MqttError:
                    pass

    asyncio.run(main())
