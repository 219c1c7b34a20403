"""Helpers of the device emulator tests: small scenarios whose positions can be worked
out by hand, a real ``twinedge serve`` (embedded broker, or bridged to a broker), a
permissive Mosquitto any test client may publish to (the redirect sender), a recorder
of the reports a broker receives, and the ``twinedge devices`` command in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from tests.conftest import tiny_scenario

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(),
    reason="Mosquitto not installed (apt-get install mosquitto); CI installs it",
)
PASSWORD = "device-pass-1"

#: the trace: truck-a goes from (0, 0) at 0 s to (1000, 500) at 1000 s, so at t_s it is
#: at (t_s, t_s / 2) moving at (1, 0.5) m/s; truck-b from (100, 900) to (100, -100):
#: at (100, 900 - t_s), moving at (0, -1) m/s.
TRACE_CSV = "entity_id,t_s,x_m,y_m\ntruck-a,0,0,0\ntruck-a,1000,1000,500\ntruck-b,0,100,900\ntruck-b,1000,100,-100\n"
STATIC_XY = [[10.5, 20.25], [30.0, -40.0], [0.125, 999.0]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def static_scenario(folder: Path, name: str = "static.yaml") -> Path:
    """Three static sensors at :data:`STATIC_XY` (twin demand as ``tiny_scenario``)."""
    sc = tiny_scenario(name="static")
    group = sc["entities"][0]
    del group["count"]
    group.update(kind="sensor", owner="city", positions_m=STATIC_XY)
    path = folder / name
    path.write_text(yaml.safe_dump(sc))
    return path


def trace_scenario(folder: Path, name: str = "trace.yaml") -> Path:
    """Two trucks on the straight lines of :data:`TRACE_CSV`, one-second steps."""
    (folder / "trace.csv").write_text(TRACE_CSV)
    sc = tiny_scenario(name="trace")
    group = sc["entities"][0]
    del group["count"]
    group.update(kind="truck", owner="haulage", mobility={"model": "trace", "file": "trace.csv"})
    sc["run"] = {"steps": 1000, "step_s": 1.0, "seed": 1}
    path = folder / name
    path.write_text(yaml.safe_dump(sc))
    return path


# --- a real twinedge serve ---------------------------------------------------------------
class Serve:
    """``twinedge serve`` in a subprocess on loopback (SQLite in ``data``), once its
    ``/healthz`` answers; ``mqtt`` as its ``--mqtt`` (default: the embedded broker)."""

    def __init__(self, data: Path, mqtt: str | None = None, extra: tuple[str, ...] = ()):
        self.http_port, self.mqtt_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.mqtt_url = f"mqtt://127.0.0.1:{self.mqtt_port}"
        args = [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(data)]
        args += ["--port", str(self.http_port), "--mqtt-port", str(self.mqtt_port)]
        if mqtt:
            args += ["--mqtt", mqtt]
        args += list(extra)
        self.log = data.parent / f"serve-{data.name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=env())
        deadline = time.monotonic() + 120  # a loaded 2-core machine starts slowly
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"twinedge serve did not start: {self.log.read_text()}")
            time.sleep(0.1)
        self.admin = (data / "admin.token").read_text().strip()
        self.headers = {"Authorization": f"Bearer {self.admin}"}

    def thing(self, thing_id: str) -> dict:
        r = httpx.get(f"{self.url}/api/2/things/{thing_id}", headers=self.headers, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def history(self, thing_id: str) -> list[dict]:
        """Every revision of the thing (following the cursor)."""
        items, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 10000}
            if cursor:
                params["cursor"] = cursor
            r = httpx.get(
                f"{self.url}/api/2/things/{thing_id}/history",
                params=params,
                headers=self.headers,
                timeout=10,
            )
            assert r.status_code == 200, r.text
            items += r.json()["items"]
            cursor = r.json()["cursor"]
            if not cursor:
                return items

    def reported_positions(self, thing_id: str) -> list[dict]:
        """The position of every device report the thing took, oldest first (rebuilt
        from the history's patches, starting from the position it was created with)."""
        items = self.history(thing_id)
        r = httpx.get(
            f"{self.url}/api/2/things/{thing_id}/features/position/properties",
            params={"revision": items[0]["revision"]},
            headers=self.headers,
            timeout=10,
        )
        assert r.status_code == 200, r.text
        pos: dict[str, Any] = r.json()
        out = []
        for item in items[1:]:
            for op in item["ops"]:
                if op["path"].startswith("/features/position/properties/"):
                    pos[op["path"].rsplit("/", 1)[1]] = op["value"]
            if item["source"] == "mqtt":
                out.append(dict(pos))
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path) -> Iterator[Serve]:
    s = Serve(tmp_path / "data")
    try:
        yield s
    finally:
        s.stop()


# --- the command ------------------------------------------------------------------------
def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TWINEDGE_")}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    e.update(extra)
    return e


def run_devices(*args: str, timeout: float = 180, **extra_env: str) -> subprocess.CompletedProcess:
    """``twinedge devices ARGS`` to its end (the tests bound it with ``--reports``)."""
    return subprocess.run(
        [sys.executable, "-m", "twinedge", "devices", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**extra_env),
    )


def summary(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# --- a permissive Mosquitto and a recorder of what it receives -----------------------
class Mosquitto:
    """Mosquitto on a free loopback port that lets anyone in and anywhere (the tests
    publish redirects to a device's topic through it)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nmax_inflight_messages 0\n"
        )
        self.log = folder / "mosquitto.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def mosquitto(tmp_path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto-1")
    yield m
    m.stop()


@pytest.fixture
def mosquitto2(tmp_path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto-2")
    yield m
    m.stop()


class Recorder:
    """Every report a broker receives, as ``(thing_id, position properties)``, and a way
    to wait for a condition on them (woken by each arrival; ``changed`` may be shared
    with another source of events, to wait for a condition on both)."""

    def __init__(self, port: int, name: str, changed: asyncio.Condition | None = None):
        self.port, self.name = port, name
        self.reports: list[tuple[str, dict]] = []
        self._changed = changed or asyncio.Condition()
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.name) as c:
            await c.subscribe("twinedge/+/reported", qos=1)
            self._ready.set()
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                thing = m.topic.value.split("/")[1]
                async with self._changed:
                    self.reports.append((thing, json.loads(m.payload)["position"]))
                    self._changed.notify_all()

    def seqs(self, thing_id: str) -> list[int]:
        return [p["seq"] for t, p in self.reports if t == thing_id]

    async def until(self, cond: Callable[[Recorder], bool], timeout: float = 60.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: cond(self)), timeout)


async def publish(port: int, topic: str, payload: bytes | str) -> None:
    """One QoS 1 message from a test client."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-{time.time_ns()}") as c:
        await c.publish(topic, payload, qos=1)
