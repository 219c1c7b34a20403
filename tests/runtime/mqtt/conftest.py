"""Helpers of the MQTT tests: a real service (SQLite, or PostgreSQL with ``store_url``)
with the embedded broker on a free loopback port or bridged to a real Mosquitto (Debian
package ``mosquitto``, started on free loopback ports with the ACL from docs/mqtt.md),
and devices that are real MQTT clients (aiomqtt, or a bare client for raw bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from twinedge.runtime.auth import Principal
from twinedge.runtime.mqtt import EmbeddedBroker, ExternalBridge, start_mqtt
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

OWNER = Principal("key-a", "dom-a", "admin")
PASSWORD = "device-password-1"
CAR, VAN = "fleet:car-1", "fleet:van-2"
#: the devices that have a client certificate on the test Mosquitto
DEVICES = (CAR, VAN, *(f"fleet:dev-{i}" for i in range(5)))


def stored(store_url: str, thing_id: str) -> dict | None:
    """The thing as a second, independent connection to the database sees it."""
    store = open_store(store_url)
    try:
        return next((d for d in store.load_things() if d["thingId"] == thing_id), None)
    finally:
        store.close()


def car(level: int = 50) -> dict:
    return {"features": {"battery": {"properties": {"level": level}}}}


@contextlib.asynccontextmanager
async def embedded(
    tmp_path: Path,
    things: tuple[str, ...] = (CAR,),
    store_url: str | None = None,
    **broker_options: Any,
) -> AsyncIterator[tuple[TwinService, EmbeddedBroker]]:
    """A started service (SQLite in ``tmp_path`` unless ``store_url``) whose ``things``
    exist with the device password :data:`PASSWORD`, and an embedded broker on a free
    port."""
    svc = TwinService(open_store(store_url or f"sqlite:///{tmp_path / 'twins.db'}"))
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


class Inbox:
    """Every message a client receives, in order, and a way to wait for a condition on
    them (woken by each arrival, bounded by a timeout; no polling)."""

    def __init__(self, client: aiomqtt.Client):
        self.client, self.messages = client, []
        self._changed = asyncio.Condition()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for m in self.client.messages:
            async with self._changed:
                self.messages.append(m)
                self._changed.notify_all()

    def topics(self) -> list[str]:
        return [m.topic.value for m in self.messages]

    def on(self, topic_filter: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.matches(topic_filter)]

    async def until(self, cond: Callable[[Inbox], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: cond(self)), timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
needs_mosquitto = pytest.mark.skipif(
    not (Path(MOSQUITTO).exists() and Path(MOSQUITTO_PASSWD).exists()),
    reason="Mosquitto not installed (apt-get install mosquitto); CI installs it",
)

SERVICE_USER, SERVICE_PASSWORD = "twinedge-service", "service-password-1"

ACL = """\
user twinedge-service
topic read twinedge/+/reported
topic read twinedge/+/responses/+
topic write twinedge/+/desired
topic write twinedge/+/commands/+
topic write twinedge/+/errors

pattern write twinedge/%u/reported
pattern write twinedge/%u/responses/+
pattern read twinedge/%u/desired
pattern read twinedge/%u/commands/+
pattern read twinedge/%u/errors
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificates(folder: Path, names: list[str]) -> None:
    """A throw-away CA, a server certificate for 127.0.0.1, and one client certificate
    per name (CN = thing id), as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(cn, key, issuer=None, issuer_key=None, *, ca=False, san=None):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    def write(name, cert, key):
        (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("twinedge test CA", ca_key, ca=True)
    write("ca", ca, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    write("server", issue("127.0.0.1", key, ca.subject, ca_key, san=san), key)
    for n in names:
        key = ec.generate_private_key(ec.SECP256R1())
        write(n.replace(":", "_"), issue(n, key, ca.subject, ca_key), key)


class Mosquitto:
    """Devices on a TLS listener with client certificates (CN = thing id = username;
    Mosquitto's password file cannot hold a ':'), the service on a password listener;
    one ACL file for both (docs/mqtt.md)."""

    def __init__(self, folder: Path, names: tuple[str, ...] = DEVICES):
        self.folder, self.port, self.service_port = folder, _free_port(), _free_port()
        self.proc: subprocess.Popen | None = None
        _certificates(folder, list(names))
        passwd = folder / "passwd"
        subprocess.run(
            [MOSQUITTO_PASSWD, "-c", "-b", str(passwd), SERVICE_USER, SERVICE_PASSWORD],
            check=True,
            capture_output=True,
        )
        (folder / "acl").write_text(ACL)
        (folder / "mosquitto.conf").write_text(
            "per_listener_settings true\n"
            f"persistence true\npersistence_location {folder}/\n"
            "max_queued_messages 100000\nuser root\n"
            # overlapping subscriptions of one client: deliver once (docs/mqtt.md)
            "allow_duplicate_messages false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {folder}/ca.crt\ncertfile {folder}/server.crt\nkeyfile {folder}/server.key\n"
            "require_certificate true\nuse_identity_as_username true\n"
            f"acl_file {folder}/acl\n"
            f"listener {self.service_port} 127.0.0.1\n"
            f"allow_anonymous false\npassword_file {passwd}\nacl_file {folder}/acl\n"
        )

    def device(self, thing_id: str, **kw) -> aiomqtt.Client:
        name = thing_id.replace(":", "_")
        tls = aiomqtt.TLSParameters(
            ca_certs=str(self.folder / "ca.crt"),
            certfile=str(self.folder / f"{name}.crt"),
            keyfile=str(self.folder / f"{name}.key"),
        )
        kw.setdefault("identifier", thing_id)
        return aiomqtt.Client("127.0.0.1", self.port, tls_params=tls, timeout=10, **kw)

    def start(self) -> None:
        log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.service_port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"mosquitto did not start: {(self.folder / 'mosquitto.log').read_text()}"
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path):
    m = Mosquitto(tmp_path)
    m.start()
    yield m
    m.stop()


@contextlib.asynccontextmanager
async def bridged(
    tmp_path: Path,
    m: Mosquitto,
    things: tuple[str, ...] = (CAR, VAN),
    store_url: str | None = None,
    **bridge_options: Any,
) -> AsyncIterator[tuple[TwinService, ExternalBridge]]:
    """A started service (SQLite in ``tmp_path`` unless ``store_url``) whose ``things``
    exist, bridged to the running Mosquitto ``m``."""
    svc = TwinService(open_store(store_url or f"sqlite:///{tmp_path / 'twins.db'}"))
    await svc.start()
    for t in things:
        await svc.put_thing(OWNER, t, car())
    url = f"mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{m.service_port}"
    bridge = await start_mqtt(
        svc, url, host="ignored", port=0, reconnect_max_s=0.5, **bridge_options
    )
    assert isinstance(bridge, ExternalBridge) and bridge.connected
    try:
        yield svc, bridge
    finally:
        await bridge.stop()
        await svc.stop()


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


class RawDevice:
    """A bare MQTT 3.1.1 client that sends any bytes (topics aiomqtt refuses to encode)
    and records what comes back: ``("puback", packet_id)``, ``("suback", codes)``,
    ``("publish", topic, payload)`` (QoS 1 ones are acknowledged) and ``("closed",)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.events = reader, writer, []
        self._changed = asyncio.Condition()
        self._task = asyncio.ensure_future(self._read())
        self._ids = iter(range(1, 65536))

    @classmethod
    async def connect(
        cls, port: int, thing_id: str, password: str | None = PASSWORD, ssl: Any = None
    ) -> RawDevice:
        """CONNECT with clean session (username/password unless ``password`` is None,
        e.g. TLS client certificates); the CONNACK must accept."""
        flags = 0x02 | (0xC0 if password is not None else 0)
        body = _utf8("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + _utf8(thing_id)
        if password is not None:
            body += _utf8(thing_id) + _utf8(password)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl)
        writer.write(_packet(0x10, body))
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
        assert connack == b"\x20\x02\x00\x00", connack
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                first = (await self.reader.readexactly(1))[0]
                n, shift = 0, 0
                while True:
                    b = (await self.reader.readexactly(1))[0]
                    n, shift = n | (b & 0x7F) << shift, shift + 7
                    if not b & 0x80:
                        break
                body = await self.reader.readexactly(n)
                kind = first >> 4
                if kind == 4:
                    await self._add(("puback", int.from_bytes(body[:2], "big")))
                elif kind == 9:
                    await self._add(("suback", list(body[2:])))
                elif kind == 3:
                    tlen = int.from_bytes(body[:2], "big")
                    t, rest = body[2 : 2 + tlen].decode(), body[2 + tlen :]
                    if (first >> 1) & 3:
                        self.writer.write(b"\x40\x02" + rest[:2])
                        rest = rest[2:]
                    await self._add(("publish", t, rest))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await self._add(("closed",))

    async def _add(self, event: tuple) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def until(self, cond: Callable[[list[tuple]], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: cond(self.events)), timeout)

    def publish(self, topic: str | bytes, payload: bytes, qos: int = 1) -> int | None:
        """Send a PUBLISH; returns its packet id (QoS 1)."""
        pid = next(self._ids) if qos else None
        head = _utf8(topic) + (pid.to_bytes(2, "big") if pid else b"")
        self.writer.write(_packet(0x30 | qos << 1, head + payload))
        return pid

    async def subscribe(self, topic_filter: str) -> list[int]:
        pid = next(self._ids)
        self.writer.write(_packet(0x82, pid.to_bytes(2, "big") + _utf8(topic_filter) + b"\x01"))
        await self.until(lambda ev: any(e[0] == "suback" for e in ev))
        return next(e[1] for e in self.events if e[0] == "suback")

    def errors(self) -> list[dict]:
        return [json.loads(e[2]) for e in self.events if e[0] == "publish" and "/errors" in e[1]]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"\xe0\x00")  # DISCONNECT
            self.writer.close()
        await asyncio.gather(self._task, return_exceptions=True)
