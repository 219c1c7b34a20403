"""`twinedge serve` with a real Mosquitto: health and metrics follow the bridge while the
broker is stopped and started again mid-test; no password or token appears in anything
the process prints; a broker that refuses the service's login stops start-up with one
line. The embedded broker's state is checked in-process (stopping it is the only way to
take it down)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from twinedge.runtime.app import ServeConfig, Server

from ..test_operations import free_port, one_error_line, run_serve, serve_env
from .conftest import SERVICE_PASSWORD, SERVICE_USER, needs_mosquitto

DB_PASSWORD = "db-password-Zq81"


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` as its user's password (the test server trusts loopback
    logins, so any password is accepted and only has to stay out of the logs)."""
    u = urlsplit(url)
    netloc = f"{u.username or 'postgres'}:{password}@{u.hostname}:{u.port}"
    return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def until_health(base: str, cond, timeout_s: float = 45.0) -> httpx.Response:
    """Poll ``/healthz`` until ``cond(response)`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base}/healthz", timeout=3)
            if cond(last):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"health never met the condition; last: {last and last.text}")


@needs_mosquitto
def test_bridge_state_in_health_and_metrics_and_no_secret_in_output(
    tmp_path, mosquitto, postgres_schema_url
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = with_password(postgres_schema_url, DB_PASSWORD)
    mqtt = f"mqtt://{SERVICE_USER}:{SERVICE_PASSWORD}@127.0.0.1:{mosquitto.service_port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinedge", "serve", "--port", str(port), "--db", db],
        env=serve_env(
            TWINEDGE_MQTT=mqtt,
            TWINEDGE_DATA_DIR=str(tmp_path / "data"),
            TWINEDGE_LOG_LEVEL="debug",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        up = until_health(base, lambda r: r.status_code == 200, 60).json()
        assert up["mqtt"] == {
            "mode": "external",
            "broker": f"mqtt://127.0.0.1:{mosquitto.service_port}",
            "up": True,
            "connected": True,
            "connections": 1,
            "lastError": None,
        }
        metrics = httpx.get(f"{base}/metrics").text
        assert 'twinedge_mqtt_up{mode="external"} 1.0' in metrics
        assert "twinedge_mqtt_connections_total 1.0" in metrics
        admin = (tmp_path / "data" / "admin.token").read_text().strip()
        # a token in a query string (as browsers send it to the event streams)
        httpx.get(f"{base}/api/2/things?token={admin}", timeout=5)

        mosquitto.stop()  # the broker goes away mid-test
        down = until_health(base, lambda r: r.status_code == 503)
        doc = down.json()
        assert doc["mqtt"]["connected"] is False and doc["mqtt"]["up"] is False
        assert doc["detail"].startswith(
            f"the MQTT bridge is not connected to the broker at mqtt://127.0.0.1:{mosquitto.service_port}"
        )
        assert doc["store"] is True and doc["writer"] is True
        assert 'twinedge_mqtt_up{mode="external"} 0.0' in httpx.get(f"{base}/metrics").text

        mosquitto.start()  # same port: the bridge reconnects on its own
        back = until_health(base, lambda r: r.status_code == 200).json()
        assert back["mqtt"]["connected"] is True and back["mqtt"]["connections"] == 2
        assert 'twinedge_mqtt_up{mode="external"} 1.0' in httpx.get(f"{base}/metrics").text
        texts = [up, doc, back]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    output = out + err + repr(texts)
    # the process did log (the banner, the bridge, a reconnect): redacted, not silent
    assert f"mqtt: mqtt://{SERVICE_USER}:***@127.0.0.1:{mosquitto.service_port}" in err
    assert "db: postgresql://postgres:***@127.0.0.1:" in err
    assert "MQTT bridge connected" in err and "reconnecting" in err
    assert "token=***" in out + err  # uvicorn's access line of the request above
    for secret in (DB_PASSWORD, SERVICE_PASSWORD, admin):
        assert secret not in output


@needs_mosquitto
def test_broker_refusing_the_login_is_one_line(tmp_path, mosquitto):
    url = f"mqtt://{SERVICE_USER}:wrong-password-5@127.0.0.1:{mosquitto.service_port}"
    p = run_serve("--port", free_port(), "--data-dir", tmp_path / "d", "--mqtt", url)
    line = one_error_line(p)
    assert line.startswith(
        f"error: cannot connect to the MQTT broker at mqtt://127.0.0.1:{mosquitto.service_port}: "
    )
    assert "authori" in line.lower() and line.endswith("(from --mqtt)")
    assert "wrong-password-5" not in p.stderr + p.stdout


def test_embedded_broker_state_in_health_and_metrics(tmp_path):
    cfg = ServeConfig.load(None, data_dir=str(tmp_path / "data"), port=0, mqtt_port=free_port())

    async def main() -> None:
        server = Server(cfg)
        await server.start()
        task = asyncio.create_task(server.run())
        try:
            base = f"http://127.0.0.1:{server.port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as c:
                for _ in range(100):
                    if server.http.started:
                        break
                    await asyncio.sleep(0.05)
                r = await c.get("/healthz")
                assert r.status_code == 200
                assert r.json()["mqtt"] == {
                    "mode": "embedded",
                    "listen": f"127.0.0.1:{cfg.mqtt_port}",
                    "up": True,
                    "clients": 0,
                }
                assert 'twinedge_mqtt_up{mode="embedded"} 1.0' in (await c.get("/metrics")).text
                await server.mqtt.stop()  # the broker is gone; HTTP still answers
                r = await c.get("/healthz")
                assert r.status_code == 503
                assert r.json()["detail"] == (
                    f"the embedded MQTT broker does not listen on 127.0.0.1:{cfg.mqtt_port}"
                )
                assert 'twinedge_mqtt_up{mode="embedded"} 0.0' in (await c.get("/metrics")).text
        finally:
            server.http.should_exit = True
            await task

    asyncio.run(main())
