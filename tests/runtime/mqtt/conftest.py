"""Helpers of the MQTT tests: a real service on SQLite with the embedded broker on a free
loopback port, and devices that are real MQTT clients (aiomqtt)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from twinedge.runtime.auth import Principal
from twinedge.runtime.mqtt import EmbeddedBroker
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

OWNER = Principal("key-a", "dom-a", "admin")
PASSWORD = "device-password-1"


def car(level: int = 50) -> dict:
    return {"features": {"battery": {"properties": {"level": level}}}}


@contextlib.asynccontextmanager
async def embedded(
    tmp_path: Path, things: tuple[str, ...] = ("fleet:car-1",), **broker_options: Any
) -> AsyncIterator[tuple[TwinService, EmbeddedBroker]]:
    """A started service (SQLite in ``tmp_path``) whose ``things`` exist with the device
    password :data:`PASSWORD`, and an embedded broker on a free port."""
    svc = TwinService(open_store(f"sqlite:///{tmp_path / 'twins.db'}"))
    await svc.start()
    broker = EmbeddedBroker(svc, "127.0.0.1", 0, **broker_options)
    try:
        for t in things:
            await svc.put_thing(OWNER, t, car())
        await asyncio.gather(*(svc.set_device_secret(OWNER, t, PASSWORD) for t in things))
        await broker.start()
        yield svc, broker
    finally:
        await broker.stop()
        await svc.stop()


def device(port: int, thing_id: str, password: str | None = PASSWORD, **kw: Any) -> aiomqtt.Client:
    kw.setdefault("identifier", thing_id)
    return aiomqtt.Client("127.0.0.1", port, username=thing_id, password=password, timeout=10, **kw)


async def next_message(
    client: aiomqtt.Client, topic_filter: str, timeout: float = 5.0
) -> aiomqtt.Message:
    """The next message on ``topic_filter`` (others are skipped)."""

    async def wait() -> aiomqtt.Message:
        async for m in client.messages:
            if m.topic.matches(topic_filter):
                return m
        raise AssertionError("connection closed")

    return await asyncio.wait_for(wait(), timeout)


async def next_error(client: aiomqtt.Client, thing_id: str, timeout: float = 5.0) -> dict:
    m = await next_message(client, f"twinedge/{thing_id}/errors", timeout)
    return json.loads(m.payload)


# --- a bare MQTT 3.1.1 client, for what aiomqtt will not do (vanish, watch for PUBACKs) ---
def _utf8(x: str | bytes) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    n, length = len(body), bytearray()
    while True:
        n, b = n // 128, n % 128
        length.append(b | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(length) + body


async def raw_connect(
    port: int, thing_id: str, password: str = PASSWORD, will: tuple[str, bytes] | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect (clean session, keep-alive 60 s, optional QoS 1 will); CONNACK checked."""
    flags = 0xC2 | (0x0C if will else 0)  # user, password, clean session (+ will, QoS 1)
    body = _utf8("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + _utf8(thing_id)
    if will:
        body += _utf8(will[0]) + _utf8(will[1])
    body += _utf8(thing_id) + _utf8(password)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_packet(0x10, body))
    connack = await asyncio.wait_for(reader.readexactly(4), 10)
    assert connack == b"\x20\x02\x00\x00", connack
    return reader, writer


def raw_publish(writer: asyncio.StreamWriter, topic: str, payload: bytes, packet_id: int) -> None:
    writer.write(_packet(0x32, _utf8(topic) + packet_id.to_bytes(2, "big") + payload))
