"""The bridge to an external broker, against a real Mosquitto (Debian package
``mosquitto``) started on a free loopback port with the ACL from docs/mqtt.md."""

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
from pathlib import Path

import aiomqtt
import pytest

from twinedge.runtime.mqtt import ExternalBridge, start_mqtt
from twinedge.runtime.mqtt.external import parse_url
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store
from twinedge.runtime.things import ProblemError

from .conftest import OWNER, car, next_error, next_message

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
pytestmark = pytest.mark.skipif(
    not (Path(MOSQUITTO).exists() and Path(MOSQUITTO_PASSWD).exists()),
    reason="Mosquitto not installed (apt-get install mosquitto); CI installs it",
)

CAR, VAN = "fleet:car-1", "fleet:van-2"
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

    def __init__(self, folder: Path):
        self.folder, self.port, self.service_port = folder, _free_port(), _free_port()
        self.proc: subprocess.Popen | None = None
        _certificates(folder, [CAR, VAN])
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
        return aiomqtt.Client(
            "127.0.0.1", self.port, identifier=thing_id, tls_params=tls, timeout=10, **kw
        )

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
async def bridged(tmp_path: Path, m: Mosquitto):
    svc = TwinService(open_store(f"sqlite:///{tmp_path / 'twins.db'}"))
    await svc.start()
    for t in (CAR, VAN):
        await svc.put_thing(OWNER, t, car())
    url = f"mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{m.service_port}"
    bridge = await start_mqtt(svc, url, host="ignored", port=0, reconnect_max_s=0.5)
    assert isinstance(bridge, ExternalBridge) and bridge.connected
    try:
        yield svc, bridge
    finally:
        await bridge.stop()
        await svc.stop()


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
            with pytest.raises(ProblemError) as e:
                await svc.send_command(OWNER, CAR, "reboot", {}, timeout_s=0.3)
            assert e.value.status == 408

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
