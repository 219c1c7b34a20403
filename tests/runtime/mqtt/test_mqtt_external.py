"""The bridge to an external broker, against a real Mosquitto (Debian package
``mosquitto``) started on a free loopback port with the ACL from docs/mqtt.md."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from twinedge.errors import TimedOut
from twinedge.runtime.mqtt.external import parse_url

from .conftest import CAR, OWNER, VAN, bridged, needs_mosquitto, next_error, next_message

pytestmark = needs_mosquitto


async def until(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def test_reports_desired_commands_and_errors_through_mosquitto(tmp_path, mosquitto):
    async def main():
        async with bridged(tmp_path, mosquitto) as (svc, _), mosquitto.device(CAR) as dev:
            await dev.subscribe(f"twinedge/{CAR}/desired", qos=1)
            await dev.subscribe(f"twinedge/{CAR}/errors", qos=1)
            await dev.subscribe(f"twinedge/{CAR}/commands/+", qos=1)
            await dev.publish(f"twinedge/{CAR}/reported", b'{"battery": {"level": 12}}', qos=1)
            await until(lambda: svc.things[CAR]["features"]["battery"]["properties"]["level"] == 12)

            await svc.set_desired(OWNER, CAR, "battery", {"mode": "eco"})
            m = await next_message(dev, f"twinedge/{CAR}/desired")
            assert json.loads(m.payload)["features"]["battery"]["desiredProperties"] == {
                "mode": "eco"
            }

            async def answer():
                m = await next_message(dev, f"twinedge/{CAR}/commands/+")
                cid = json.loads(m.payload)["correlationId"]
                await dev.publish(f"twinedge/{CAR}/responses/{cid}", b'"done"', qos=1)

            responder = asyncio.create_task(answer())
            assert await svc.send_command(OWNER, CAR, "honk", {}, timeout_s=5) == "done"
            await responder
            with pytest.raises(TimedOut):
                await svc.send_command(OWNER, CAR, "reboot", {}, timeout_s=0.3)

            await dev.publish(f"twinedge/{CAR}/reported", b"{oops", qos=1)
            err = await next_error(dev, CAR)
            assert err["reason"] == "malformed-json" and err["topic"] == f"twinedge/{CAR}/reported"
            await dev.publish(f"twinedge/{CAR}/reported", b"[1]", qos=1)
            assert (await next_error(dev, CAR))["reason"] == "not-an-object"
            # the broker's ACL drops a write to another device's topic before we see it
            await dev.publish(f"twinedge/{VAN}/reported", b'{"battery": {"level": 1}}', qos=1)
            await dev.publish(f"twinedge/{CAR}/reported", b'{"battery": {"level": 13}}', qos=1)
            await until(lambda: svc.things[CAR]["features"]["battery"]["properties"]["level"] == 13)
            assert svc.things[VAN]["_revision"] == 1

        # a device that connects later gets the desired state retained by the broker
        async with mosquitto.device(CAR) as dev:
            await dev.subscribe(f"twinedge/{CAR}/desired", qos=1)
            m = await next_message(dev, f"twinedge/{CAR}/desired")
            assert m.retain and json.loads(m.payload)["features"]["battery"]["desiredProperties"]

    asyncio.run(main())


def test_bridge_reconnects_and_gets_what_was_sent_meanwhile(tmp_path, mosquitto):
    async def main():
        async with bridged(tmp_path, mosquitto) as (svc, bridge):
            mosquitto.stop()
            await until(lambda: not bridge.connected)
            mosquitto.start()  # same port, persistence on: our session survived
            await until(lambda: bridge.connected, 10)
            assert bridge.connections == 2
            # reports sent while the service is away are queued by the broker for its
            # persistent session and applied once it is back
            await bridge.stop()
            async with mosquitto.device(CAR) as dev:
                for level in (21, 22, 23):
                    await dev.publish(
                        f"twinedge/{CAR}/reported", json.dumps({"battery": {"level": level}}), qos=1
                    )
            await bridge.start()
            await until(lambda: svc.things[CAR]["features"]["battery"]["properties"]["level"] == 23)
            assert svc.things[CAR]["_revision"] == 4  # all three, in order

    asyncio.run(main())


def test_url_parsing():
    p = parse_url("mqtts://svc%40x:p%3Ass@broker.example:8884")
    assert (p["hostname"], p["port"], p["username"], p["password"]) == (
        "broker.example",
        8884,
        "svc@x",
        "p:ss",
    )
    assert p["tls_context"] is not None and parse_url("mqtt://h")["port"] == 1883
    for bad in ("mqtt://", "http://host:1883"):
        with pytest.raises(ValueError):
            parse_url(bad)
