"""SIGKILL during sustained load: every acknowledged update survives, revisions have no
gaps, nothing half-written is visible. Runs the real `twinedge serve` (embedded MQTT
broker + SQLite) in a subprocess on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

aiomqtt = pytest.importorskip("aiomqtt")

DEVICES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    data: Path, http_port: int, mqtt_port: int, db: str | None = None, extra: Sequence[str] = ()
) -> subprocess.Popen:
    """A real ``twinedge serve`` on loopback (SQLite in ``data`` unless ``db``; ``extra``
    options appended), once its ``/healthz`` answers; its log goes next to ``data``."""
    args = [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(data)]
    args += ["--port", str(http_port), "--mqtt-port", str(mqtt_port)]
    if db:
        args += ["--db", db]
    args += list(extra)
    log = data.parent / f"serve-{time.time_ns()}.log"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    proc.log = log  # type: ignore[attr-defined]  # for stop_server's message
    deadline = time.time() + 120  # generous: a loaded 2-core machine starts slowly
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"twinedge serve exited with {proc.returncode}:\n{tail}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("twinedge serve did not become healthy within 120 s")


def stop_server(proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM a server of :func:`start_server`: it must exit 0, else the assertion
    carries the end of its log."""
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()  # never left running
        proc.wait(timeout=30)
        raise
    if rc != 0:
        tail = proc.log.read_text(errors="replace")[-3000:]  # type: ignore[attr-defined]
        raise AssertionError(f"twinedge serve exited with {rc} on SIGTERM:\n{tail}")


async def device(thing_id: str, password: str, port: int, acked: dict, stop: asyncio.Event) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=thing_id, username=thing_id, password=password
    ) as c:
        seq = 0
        while not stop.is_set():
            seq += 1
            try:
                await c.publish(
                    f"twinedge/{thing_id}/reported", json.dumps({"counter": {"seq": seq}}), qos=1
                )
            except Exception:
                return
            acked[thing_id] = seq  # PUBACK received: the service promised durability


async def http_writer(base: str, headers: dict, acked: dict, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=5) as c:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                r = await c.patch(
                    "/api/2/things/plant:http/attributes",
                    json={"n": n},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            except httpx.HTTPError:
                return
            if r.status_code < 300:
                acked["plant:http"] = n


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path):
    data = tmp_path / "data"
    http_port, mqtt_port = free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    proc = start_server(data, http_port, mqtt_port)
    acked: dict[str, int] = {}
    try:
        admin = {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}
        r = httpx.post(
            f"{base}/api/2/keys", json={"domain": "plant", "role": "admin"}, headers=admin
        )
        assert r.status_code in (200, 201), r.text
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        ids = [f"plant:dev-{i}" for i in range(DEVICES)] + ["plant:http"]
        for tid in ids:
            r = httpx.put(
                f"{base}/api/2/things/{tid}",
                json={"attributes": {"n": 0}, "features": {"counter": {"properties": {"seq": 0}}}},
                headers=headers,
            )
            assert r.status_code in (200, 201, 204), r.text
        for tid in ids[:DEVICES]:
            r = httpx.put(
                f"{base}/api/2/things/{tid}/credentials",
                json={"password": "secret-" + tid},
                headers=headers,
            )
            assert r.status_code < 300, r.text

        async def load():
            # the device clients' pending futures fail when the server dies: expected here
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: None)
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(device(t, "secret-" + t, mqtt_port, acked, stop))
                for t in ids[:DEVICES]
            ]
            tasks.append(asyncio.create_task(http_writer(base, headers, acked, stop)))
            await asyncio.sleep(3.0)
            proc.send_signal(signal.SIGKILL)  # mid-load, no warning
            proc.wait()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(load())
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) == DEVICES + 1 and all(v > 10 for v in acked.values()), acked

    proc = start_server(data, http_port, mqtt_port)
    try:
        for tid, last in acked.items():
            doc = httpx.get(f"{base}/api/2/things/{tid}", headers=headers).json()
            got = (
                doc["attributes"]["n"]
                if tid == "plant:http"
                else doc["features"]["counter"]["properties"]["seq"]
            )
            assert got >= last, f"{tid}: acknowledged {last}, stored {got}"
            items, params = [], {"limit": 500}
            while True:  # every page, however many the device managed to write
                page = httpx.get(
                    f"{base}/api/2/things/{tid}/history", params=params, headers=headers
                ).json()
                items += page["items"]
                if page["cursor"] is None:
                    break
                params["cursor"] = page["cursor"]
            revs = [h["revision"] for h in items]
            assert revs == list(range(1, doc["_revision"] + 1)), f"{tid}: revisions have gaps"
            # every acknowledged value is in the history, in order
            values = [
                op["value"] for h in items for op in h["ops"] if op["path"].endswith(("/seq", "/n"))
            ]
            assert values[:last] == list(range(1, last + 1))
    finally:
        stop_server(proc)
    assert os.stat(data / "admin.token").st_mode & 0o777 == 0o600
