"""The container files: Dockerfile, .dockerignore, deploy/compose.yaml and the Mosquitto
configuration it mounts.

No Docker daemon is assumed: the compose file is parsed and checked (services, build
context, the variables it gives twinedge are settings ``twinedge serve`` understands and
accepts, the files it mounts exist and are the ones docs/mqtt.md shows), and the mounted
Mosquitto configuration is run for real with Mosquitto (paths moved into a temporary
folder): the service logs in on its password listener, a device with a client certificate
reports on the TLS listener and its twin changes. ``docker compose config`` runs too when
the compose plugin is installed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import aiomqtt
import pytest
import yaml

from tests.runtime.mqtt.conftest import (
    ACL,
    CAR,
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    OWNER,
    SERVICE_PASSWORD,
    SERVICE_USER,
    _certificates,
    _free_port,
    car,
    needs_mosquitto,
)
from twinedge.runtime.app import ServeConfig, env_name
from twinedge.runtime.mqtt import start_mqtt
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SAMPLE = {"TWINEDGE_DB_PASSWORD": "db-pass-1", "TWINEDGE_MQTT_PASSWORD": "mqtt-pass-1"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op == ":-" and not value:
            return arg
        if op == ":?" and not value:
            raise AssertionError(f"{name} is required: {arg}")
        return value

    text = re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, text)
    return text.replace("$$", "$")


def service_env(name: str) -> dict[str, str]:
    env = COMPOSE["services"][name].get("environment", {})
    return {k: interpolate(str(v), SAMPLE) for k, v in env.items()}


def mounts(name: str) -> dict[str, Path]:
    """Container path -> file of this repository, for the service's bind mounts."""
    out = {}
    for v in COMPOSE["services"][name].get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith("."):
            out[dst] = (DEPLOY / src).resolve()
    return out


def directives(text: str) -> list[str]:
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def doc_blocks(doc: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", (ROOT / doc).read_text(), re.S)


def test_services_build_context_and_dockerfile():
    assert set(COMPOSE["services"]) == {"twinedge", "postgres", "mosquitto"}
    build = COMPOSE["services"]["twinedge"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    dockerfile = context / build["dockerfile"]
    text = dockerfile.read_text()
    # every file the build copies exists in the context and is not ignored
    allowed = [
        ln[1:].rstrip("/")
        for ln in (ROOT / ".dockerignore").read_text().split()
        if ln.startswith("!")
    ]
    copied = [
        src
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for src in line.split()[1:-1]
    ]
    assert copied == ["pyproject.toml", "README.md", "src"]
    for src in copied:
        assert (context / src).exists() and src in allowed
    assert 'ENTRYPOINT ["twinedge"]' in text and 'CMD ["serve"]' in text
    assert "[otel]" in text  # the extra the image installs exists in pyproject.toml
    assert "otel = [" in (ROOT / "pyproject.toml").read_text()
    # the health check asks the service's own /healthz on the port the image sets
    assert "http://127.0.0.1:8080/healthz" in text and "TWINEDGE_PORT=8080" in text


def test_the_variables_given_to_twinedge_are_settings_serve_accepts():
    known = {env_name(k) for k in ServeConfig().to_dict()}
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_env = dict(re.findall(r"(TWINEDGE_[A-Z_]+)=(\S+)", dockerfile))
    env = {**image_env, **service_env("twinedge")}
    assert set(env) <= known, set(env) - known
    env["TWINEDGE_DATA_DIR"] = "twinedge-data"  # the container's path is not this machine's
    cfg = ServeConfig.load(None, env=env)
    pg = service_env("postgres")
    assert cfg.db_url == (
        f"postgresql://{pg['POSTGRES_USER']}:{SAMPLE['TWINEDGE_DB_PASSWORD']}@postgres:5432/"
        f"{pg['POSTGRES_DB']}"
    )
    assert pg["POSTGRES_PASSWORD"] == SAMPLE["TWINEDGE_DB_PASSWORD"]
    # the service logs in to the broker's service listener with the password Mosquitto's
    # password file is made from
    assert cfg.mqtt == f"mqtt://{SERVICE_USER}:{SAMPLE['TWINEDGE_MQTT_PASSWORD']}@mosquitto:1884"
    assert service_env("mosquitto")["TWINEDGE_MQTT_PASSWORD"] == SAMPLE["TWINEDGE_MQTT_PASSWORD"]
    assert (cfg.host, cfg.port, cfg.otel) == ("0.0.0.0", 8080, False)
    ports = COMPOSE["services"]["twinedge"]["ports"]
    assert ports == [f"{cfg.port}:{cfg.port}"]
    # nothing secret is written into the compose file itself
    raw = (DEPLOY / "compose.yaml").read_text()
    assert "${TWINEDGE_DB_PASSWORD:?" in raw and "${TWINEDGE_MQTT_PASSWORD:?" in raw
    with pytest.raises(AssertionError, match="TWINEDGE_DB_PASSWORD is required"):
        interpolate(str(COMPOSE["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]), {})


def test_the_mosquitto_configuration_is_the_documented_one():
    m = mounts("mosquitto")
    conf, acl = m["/mosquitto/config/mosquitto.conf"], m["/mosquitto/config/twinedge.acl"]
    assert conf == DEPLOY / "mosquitto" / "mosquitto.conf" and acl.is_file()
    blocks = doc_blocks("docs/mqtt.md")
    assert conf.read_text() in blocks  # docs/mqtt.md shows the file as it is
    assert acl.read_text() in blocks
    assert directives(acl.read_text()) == directives(ACL)  # the ACL the tests run with
    lines = directives(conf.read_text())
    # every file it names is inside a mount of the container (or the data volume)
    for line in lines:
        key, _, value = line.partition(" ")
        if key in ("cafile", "certfile", "keyfile", "acl_file", "password_file"):
            assert value.startswith(("/mosquitto/config/", "/mosquitto/data/")), line
            if value.startswith("/mosquitto/config/certs/"):
                assert "/mosquitto/config/certs" in m
            elif value.startswith("/mosquitto/config/"):
                assert value in m, line
    # the listeners: devices on TLS (published), the service on 1884 (not published)
    assert [ln for ln in lines if ln.startswith("listener")] == ["listener 8883", "listener 1884"]
    assert COMPOSE["services"]["mosquitto"]["ports"] == ["8883:8883"]
    command = " ".join(COMPOSE["services"]["mosquitto"]["command"])
    assert "mosquitto_passwd -c -b /mosquitto/data/passwd twinedge-service" in command
    assert "exec mosquitto -c /mosquitto/config/mosquitto.conf" in command


@needs_mosquitto
def test_the_mounted_mosquitto_configuration_runs(tmp_path):
    """The compose file's Mosquitto configuration with its paths moved to ``tmp_path``
    and its ports to free ones: the service bridges on 1884's listener with its password,
    a device reports over TLS with its certificate, and the twin changes."""
    certs, data = tmp_path / "certs", tmp_path / "data"
    certs.mkdir()
    data.mkdir()
    _certificates(certs, [CAR])
    subprocess.run(
        [MOSQUITTO_PASSWD, "-c", "-b", str(data / "passwd"), SERVICE_USER, SERVICE_PASSWORD],
        check=True,
        capture_output=True,
    )
    shutil.copy(DEPLOY / "mosquitto" / "twinedge.acl", tmp_path / "twinedge.acl")
    device_port, service_port = _free_port(), _free_port()
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    text = text.replace("/mosquitto/config/certs/", f"{certs}/")
    text = text.replace("/mosquitto/config/", f"{tmp_path}/").replace(
        "/mosquitto/data/", f"{data}/"
    )
    text = text.replace("listener 8883", f"listener {device_port} 127.0.0.1")
    text = text.replace("listener 1884", f"listener {service_port} 127.0.0.1")
    (tmp_path / "mosquitto.conf").write_text(text + "user root\n")
    log = open(tmp_path / "mosquitto.log", "wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")], stderr=log)

    async def main() -> None:
        svc = TwinService(open_store(f"sqlite:///{tmp_path / 'twins.db'}"))
        await svc.start()
        await svc.put_thing(OWNER, CAR, car(10))
        url = f"mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{service_port}"
        bridge = None
        for _ in range(100):  # until Mosquitto listens
            try:
                bridge = await start_mqtt(svc, url, connect_timeout_s=2)
                break
            except ConnectionError:
                await asyncio.sleep(0.1)
        assert bridge is not None, (tmp_path / "mosquitto.log").read_text()
        try:
            name = CAR.replace(":", "_")
            tls = aiomqtt.TLSParameters(
                ca_certs=str(certs / "ca.crt"),
                certfile=str(certs / f"{name}.crt"),
                keyfile=str(certs / f"{name}.key"),
            )
            async with aiomqtt.Client(
                "127.0.0.1", device_port, identifier=CAR, tls_params=tls, timeout=10
            ) as dev:
                await dev.publish(f"twinedge/{CAR}/reported", b'{"battery": {"level": 77}}', qos=1)
            for _ in range(100):
                if svc.things[CAR]["features"]["battery"]["properties"]["level"] == 77:
                    break
                await asyncio.sleep(0.05)
            assert svc.things[CAR]["features"]["battery"]["properties"]["level"] == 77
        finally:
            await bridge.stop()
            await svc.stop()

    try:
        asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_docker_compose_config_when_available():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    p = subprocess.run(
        [docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**SAMPLE, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert p.returncode == 0, p.stderr
