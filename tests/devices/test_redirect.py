"""Redirects: a device moves to the broker a redirect names, re-sends what was not
acknowledged, ignores stale and malformed redirects, and loses no acknowledged report.

Brokers: Mosquitto configured to let any client publish anywhere (the test publishes
redirects to a device's topic through it), the embedded broker of the twin service
(whose ACL refuses a ``redirect`` subscription: the device falls back to ``+``), and
real ``twinedge serve`` processes, one bridged to Mosquitto and one with its embedded
broker. Every wait is for an event (a report arriving, a twin changing), never a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.devices.conftest import (
    PASSWORD,
    STATIC_XY,
    Mosquitto,
    Recorder,
    Serve,
    env,
    free_port,
    needs_mosquitto,
    publish,
    static_scenario,
)
from twinedge.devices.client import Device, parse_broker_url
from twinedge.devices.motion import FleetMotion
from twinedge.devices.provision import Provisioner, device_specs
from twinedge.runtime.auth import SYSTEM, Principal
from twinedge.runtime.mqtt import EmbeddedBroker
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store
from twinedge.scenario import load_scenario

TID = "fleet:robot-0-0"


def at(x_m: float = 1.0, y_m: float = 2.0) -> Callable[[], dict[str, float]]:
    return lambda: {"x_m": x_m, "y_m": y_m, "vx_mps": 0.0, "vy_mps": 0.0, "t_s": 0.0}


def redirect(host: str, url: str, epoch: int) -> str:
    return json.dumps({"host": host, "url": url, "epoch": epoch})


def covered(seqs: set[int], last: int) -> bool:
    return seqs == set(range(1, last + 1))


def runs(seqs: list[int]) -> list[list[int]]:
    """``seqs`` cut where a number does not follow its predecessor by one."""
    out: list[list[int]] = []
    for q in seqs:
        if out and q == out[-1][-1] + 1:
            out[-1].append(q)
        else:
            out.append([q])
    return out


@needs_mosquitto
def test_follows_newer_redirects_ignores_stale_and_malformed_ones_and_comes_back(tmp_path):
    m1, m2 = Mosquitto(tmp_path / "m1"), Mosquitto(tmp_path / "m2")
    topic = f"twinedge/{TID}/redirect"

    async def main() -> Device:
        changed = asyncio.Condition()  # either recorder's arrivals wake a wait on both
        async with (
            Recorder(m1.port, "rec-1", changed) as r1,
            Recorder(m2.port, "rec-2", changed) as r2,
        ):
            d = Device(TID, PASSWORD, parse_broker_url(m1.url), at(), period_s=0.01)
            task = asyncio.create_task(d.run())
            await r1.until(lambda r: len(r.seqs(TID)) >= 3)
            # malformed: not JSON, no epoch, not an MQTT URL; then a good one to m2
            for bad in (
                b"not json",
                '{"host": "h", "url": "mqtt://x"}',
                redirect("h", "http://x", 1),
            ):
                await publish(m1.port, topic, bad)
            await publish(m1.port, topic, redirect("edge-2", m2.url + "/", 5))
            await r2.until(lambda r: len(r.seqs(TID)) >= 3)
            assert (d.stats.redirects_malformed, d.stats.redirects_followed) == (3, 1)
            assert (d.host, d.epoch, str(d.url)) == ("edge-2", 5, m2.url)
            # stale: epochs 5 and 4 name m1 and are ignored; epoch 6 (sent after them, so
            # handled after them) brings the device back to m1
            for epoch in (5, 4):
                await publish(m2.port, topic, redirect("edge-1", m1.url, epoch))
            last_on_m2 = max(r2.seqs(TID))
            await publish(m2.port, topic, redirect("edge-1", m1.url, 6))
            await r1.until(lambda r: max(r.seqs(TID)) > last_on_m2 + 2)
            assert (d.stats.redirects_ignored, d.stats.redirects_followed) == (2, 2)
            assert (d.host, d.epoch) == ("edge-1", 6)
            # a redirect to a broker that is not there: after three failed connections
            # the device is back on m1, where the same epoch is followed again
            nowhere = f"mqtt://127.0.0.1:{free_port()}"
            await publish(m1.port, topic, redirect("edge-3", nowhere, 7))
            await r1.until(lambda r: d.stats.connect_failures >= 3 and str(d.url) == m1.url)
            assert (d.host, d.epoch, d.stats.connect_failures) == ("edge-1", 6, 3)
            on_m2_before = len(r2.seqs(TID))
            await publish(m1.port, topic, redirect("edge-2", m2.url, 7))
            await r2.until(lambda r: len(r.seqs(TID)) >= on_m2_before + 3)
            assert (d.host, d.epoch, d.stats.redirects_followed) == ("edge-2", 7, 4)
            d.stopping.set()  # no new reports; leave once all are acknowledged
            await task
            assert d.stats.acked == d.stats.sent == d.seq and not d.unacked
            # every report reached a broker: no acknowledged one is lost
            await r1.until(lambda r: covered(set(r.seqs(TID)) | set(r2.seqs(TID)), d.seq))
            # each connection sends its reports in seq order (the re-sent ones first):
            # m2 got two unbroken runs (one per visit), the first going on from where
            # the device left m1
            first = runs(r1.seqs(TID))[0]
            m2_first, _ = runs(r2.seqs(TID))
            assert first[0] == 1 and m2_first[0] <= first[-1] + 1
            return d

    try:
        d = asyncio.run(main())
    finally:
        m1.stop()
        m2.stop()
    assert d.to_json()["redirects_followed"] == 4 and d.stats.errors == 3  # the 3 failed


def exact_topics_only(thing_id: str, topic_filter: str) -> bool:
    """An ACL that refuses ``+`` but lists ``redirect`` (as the embedded broker's may)."""
    return topic_filter in (f"twinedge/{thing_id}/redirect", f"twinedge/{thing_id}/errors")


@needs_mosquitto
@pytest.mark.parametrize("acl", ["embedded", "exact-topics"])
def test_a_redirect_the_service_sends_through_the_embedded_broker(
    tmp_path, mosquitto, monkeypatch, acl
):
    """The device's ``twinedge/{thingId}/+`` subscription, which the embedded broker's
    ACL allows, carries a redirect the service sends; under an ACL that refuses ``+``
    and lists ``redirect``, the device subscribes to the topic itself."""
    if acl == "exact-topics":
        monkeypatch.setattr("twinedge.runtime.mqtt.embedded.may_subscribe", exact_topics_only)
    owner = Principal("key-a", "fleet", "admin")

    async def main() -> tuple[Device, list[int], list[int]]:
        svc = TwinService(open_store(f"sqlite:///{tmp_path / 'twins.db'}"))
        await svc.start()
        broker = EmbeddedBroker(svc, "127.0.0.1", 0)
        stored: list[int] = []
        changed = asyncio.Condition()
        try:
            # as provisioned: a position with seq 0, so that each report replaces seq
            position = {"position": {"properties": {"seq": 0}}}
            await svc.put_thing(owner, TID, {"features": position})
            await svc.set_device_secret(owner, TID, PASSWORD)
            await broker.start()
            events = svc.subscribe(SYSTEM)

            async def collect() -> None:
                async for ev in events:
                    for op in ev["data"].get("patch", []):
                        if op["path"] == "/features/position/properties/seq":
                            async with changed:
                                stored.append(op["value"])
                                changed.notify_all()

            collector = asyncio.create_task(collect())
            async with Recorder(mosquitto.port, "rec", changed) as rec:
                url = parse_broker_url(f"mqtt://127.0.0.1:{broker.port}")
                d = Device(TID, PASSWORD, url, at(), period_s=0.01)
                task = asyncio.create_task(d.run())
                async with changed:
                    await asyncio.wait_for(changed.wait_for(lambda: len(stored) >= 3), 30)
                # what the service does to redirect a device: a message on its topic
                payload = redirect("edge-9", mosquitto.url, 1).encode()
                broker._send(f"twinedge/{TID}/redirect", payload, False)
                await rec.until(lambda r: len(r.seqs(TID)) >= 3)
                d.stopping.set()
                await task
                assert d.stats.acked == d.seq and d.stats.redirects_followed == 1
                assert d.stats.problems == 0 and d.stats.errors == 0
                refused = broker.metrics["mqtt_rejected_total:forbidden-subscription"]
                assert refused == (1 if acl == "exact-topics" else 0)  # '+', then exact
                # PUBACK of the embedded broker = committed: all acked reports are stored
                await rec.until(lambda r: covered(set(stored) | set(r.seqs(TID)), d.seq))
                moved = rec.seqs(TID)
            events.close()
            await collector
            return d, stored, moved
        finally:
            await broker.stop()
            await svc.stop()

    _, stored, moved = asyncio.run(main())
    assert stored == sorted(stored) and moved == sorted(moved)
    assert min(moved) <= max(stored) + 1


class Events:
    """The seq of every device report a twin service stored, per thing, from its SSE
    stream; :meth:`until` waits for a condition on them."""

    def __init__(self, s: Serve):
        self.s, self.seqs = s, defaultdict(set)
        self._changed = asyncio.Condition()
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Events:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    async def _read(self) -> None:
        async with (
            httpx.AsyncClient(timeout=None) as c,
            c.stream("GET", f"{self.s.url}/api/2/events", headers=self.s.headers) as r,
        ):
            async for line in r.aiter_lines():
                if line.startswith(": connected"):
                    self._ready.set()
                if not line.startswith("data: "):
                    continue
                ev = json.loads(line[6:])
                for op in ev["data"].get("patch", []):
                    if ev["data"].get("source") == "mqtt" and op["path"].endswith("/seq"):
                        async with self._changed:
                            self.seqs[ev["subject"]].add(op["value"])
                            self._changed.notify_all()

    async def until(self, cond: Callable[[dict[str, set[int]]], bool], timeout: float = 60) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: cond(self.seqs)), timeout)


@needs_mosquitto
def test_twinedge_devices_moves_to_another_twin_service(tmp_path, mosquitto):
    """``twinedge devices`` reports to service A (through Mosquitto, bridged to A); a
    redirect sends its devices to service B (embedded broker). B then stores their next
    reports, and every report the emulator counts as acknowledged is stored by A or B."""
    a = Serve(tmp_path / "a", mqtt=mosquitto.url)
    b = Serve(tmp_path / "b")
    sc = static_scenario(tmp_path)
    ids = ["fleet:sensor-0-0", "fleet:sensor-0-1"]
    try:
        # B knows the devices with the same passwords (an edge host would get them from
        # the core; here the emulator's own provisioning does it)
        motion = FleetMotion.from_scenario(load_scenario(str(sc)))
        specs = device_specs(
            motion.entities(2), namespace="fleet", domain=None, scenario="static", password=PASSWORD
        )
        asyncio.run(Provisioner(b.url, b.admin).provision(specs))
        out, a_seqs, b_seqs = asyncio.run(_redirect_run(sc, a, b, mosquitto, ids))
        assert out["stopped"] == "interrupted"
        t = out["total"]
        assert t["redirects_followed"] == 2 and t["unacked"] == 0 and t["acked"] == t["sent"]
        for i, tid in enumerate(ids):
            dev = next(d for d in out["devices"] if d["thingId"] == tid)
            assert dev["host"] == "edge-b" and dev["url"] == b.mqtt_url and dev["epoch"] == 1
            # B's record, read after the emulator left (embedded: acknowledged = committed)
            reports = b.reported_positions(tid)
            on_b = [r["seq"] for r in reports]
            assert on_b == list(range(on_b[0], on_b[-1] + 1)) and set(on_b) == b_seqs[tid]
            assert covered(a_seqs[tid] | set(on_b), dev["sent"]), (tid, a_seqs[tid], on_b)
            assert on_b[0] <= max(a_seqs[tid]) + 1  # the next reports went to B
            last = reports[-1]
            assert last["seq"] == dev["sent"]
            assert [last["x_m"], last["y_m"]] == STATIC_XY[i]
    finally:
        a.stop()
        b.stop()


async def _redirect_run(
    sc: Path, a: Serve, b: Serve, m: Mosquitto, ids: list[str]
) -> tuple[dict, dict[str, set[int]], dict[str, set[int]]]:
    async with Recorder(m.port, "rec") as rec, Events(a) as on_a, Events(b) as on_b:
        args = [sys.executable, "-m", "twinedge", "devices", str(sc), "--count", "2"]
        args += ["--url", a.url, "--mqtt", m.url, "--api-key", a.admin, "--rate-hz", "50"]
        args += ["--duration-s", "3600", "--device-password", PASSWORD, "--json", "--quiet"]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
        )
        try:
            await rec.until(lambda r: all(len(r.seqs(t)) >= 5 for t in ids))
            for t in ids:
                await publish(m.port, f"twinedge/{t}/redirect", redirect("edge-b", b.mqtt_url, 1))
            await on_b.until(lambda s: all(len(s[t]) >= 5 for t in ids))
            proc.send_signal(signal.SIGINT)  # stop: no new reports, drain, summary
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, stderr.decode()
        out = json.loads(stdout)
        # A stores what Mosquitto acknowledged once its bridge has taken it
        await on_a.until(lambda s: all(s[t] >= set(rec.seqs(t)) for t in ids))
        return out, dict(on_a.seqs), dict(on_b.seqs)
