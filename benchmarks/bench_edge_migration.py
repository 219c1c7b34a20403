"""Live migration between the edge tier's host processes under device load, with a light
load generator: `twinedge serve --network ... --hosts local` (the core and one `twinedge
host` process per edge site) fed by raw MQTT 3.1.1 devices that move between the two
sites, so that the core's orchestrator migrates their twins, and follow the redirects.

`bench_edge.py` moves devices with `twinedge devices` (an aiomqtt client per device,
0.3-1.6 ms of CPU per report); at 2,000 reports/s it fills the 2 cores and the downtime
it measures is mostly its own load. Here each device is an asyncio protocol, as in
`bench_edge_ingest.py`, that also:

* **moves**: it shuttles along the line between the two access points of
  examples/two-sites.yaml (x = 0 and x = 3,000 m) at ``--speed-mps``, each device from a
  phase of its own; its position is computed from the time when each report is framed
  (a bytes template), with ``vx_mps`` = +-speed;
* **follows redirects**: it subscribes (QoS 0) to ``twinedge/{thingId}/+`` as the
  emulator does, reads the host's PUBLISH on ``.../redirect`` (``{"host", "url",
  "epoch"}``; an epoch not above the last followed is ignored), stops sending, waits up
  to ``--redirect-drain-s`` for the PUBACKs of the reports in flight (the source answers
  every report it committed before its fence, then closes the connection at the first
  one it refuses), then connects to the new host with the same credentials and re-sends
  every report not yet acknowledged (counted as ``resent``). A connection lost without a
  redirect (a host refuses a report with 503, e.g. a twin still arriving) is made again
  to the same host at once, then after 5 ms, 10 ms, ... up to 0.5 s.

The twins carry ``--state-bytes`` of state (a string attribute ``state`` written through
the HTTP API once they are placed), so each migration copies about that much. The core
and the hosts run the behaviour :class:`CountReports` (``serve --behaviour``): the
default one (each report merged) that also counts, in the twin, the reports it applied
and the sum of their ``seq``. Each report carries its device's sequence number, so at
the end (every report acknowledged) each twin in the core must have applied exactly the
reports its device made: fewer is an acknowledged report lost, more one applied twice.

Measured over the reports framed after ``--warmup-s``: acknowledged per second,
framed -> PUBACK latency (a report caught by a migration waits for its device to reach
the new host: that is in it), each process's CPU per acknowledged report, the live
migrations the core counted in that window; and for the whole run the migration
downtime the core reports (fence -> the target serves, measured by the target; the last
1,000 migrations), with ``--phases`` its steps over the migrations of the window
(``bench_edge.phase_breakdown``), the replication lag (``/healthz``), what the devices
saw (redirects followed, re-sent reports, reconnections, redirect -> first PUBACK at the
new host) and the exactly-once check.

    python benchmarks/bench_edge_migration.py                    # 200 devices x 10/s at 150 m/s
    python benchmarks/bench_edge_migration.py --devices 50 --speed-mps 600 --phases
    python benchmarks/bench_edge_migration.py --devices 50 --speed-mps 600 --migration-method stop-and-copy
    python benchmarks/bench_edge_migration.py --devices 4 --rate-hz 5 --speed-mps 1500 --duration-s 3 --warmup-s 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np

from twinedge import gcpauses
from twinedge.edge.behaviour import TwinBehaviour, TwinView
from twinedge.edge.document import Patch, report_patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edge import CpuSampler, core, cpu_ms_per_report, phase_breakdown, quantiles, scenario
from bench_edge_ingest import (
    PASSWORD,
    _remaining_length,
    _utf8,
    connect_packet,
    packets,
    place_devices,
)

HERE = Path(__file__).resolve().parent
SPAN_M = 3000.0  # from one access point of examples/two-sites.yaml to the other (x axis)
# framed for every report: position along the line, velocity, time, sequence number
REPORT = b'{"position":{"x_m":%.1f,"y_m":0.0,"vx_mps":%.1f,"vy_mps":0.0,"t_s":%.6f,"seq":%d}}'
BACKOFF_S = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


class CountReports(TwinBehaviour):
    """The default behaviour (each report merged into its features' properties) that
    also counts, in ``position.properties``: ``applied`` (reports applied), ``seq_sum``
    (the sum of their ``seq``) and ``out_of_order`` (reports whose ``seq`` is not one
    above the last applied). Run by the hosts (``serve --behaviour``); it travels with
    the twin, so the counts cover every host the twin ran on.

    Examples:
        >>> from twinedge.edge.behaviour import TwinView
        >>> doc = {"features": {"position": {"properties": {"seq": 4, "applied": 3, "seq_sum": 9}}}}
        >>> p = CountReports().on_report(TwinView("t", 1, 5, doc), {"position": {"seq": 6}}, 0.0)
        >>> p["features"]["position"]["properties"]  # doctest: +NORMALIZE_WHITESPACE
        {'seq': 6, 'applied': 4, 'seq_sum': 15, 'out_of_order': 1, 'last_out_of_order': [4, 6],
         'first_out_of_order': [4, 6]}
    """

    def on_report(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> Patch | None:
        patch = report_patch(report)
        part = report.get("position")
        seq = part.get("seq") if isinstance(part, Mapping) else None
        if isinstance(seq, int) and not isinstance(seq, bool):
            old = twin.properties("position")
            props = patch["features"]["position"]["properties"] = dict(part)  # type: ignore[arg-type]
            props["applied"] = int(old.get("applied", 0)) + 1
            props["seq_sum"] = int(old.get("seq_sum", 0)) + seq
            if seq != old.get("seq", 0) + 1:
                props["out_of_order"] = int(old.get("out_of_order", 0)) + 1
                props["last_out_of_order"] = [old.get("seq", 0), seq]  # (the one before, it)
                props.setdefault(
                    "first_out_of_order", old.get("first_out_of_order") or [old.get("seq", 0), seq]
                )
        return patch


def subscribe_packet(topic_filter: str, packet_id: int = 1) -> bytes:
    """MQTT SUBSCRIBE of one filter at QoS 0."""
    body = packet_id.to_bytes(2, "big") + _utf8(topic_filter) + b"\x00"
    return b"\x82" + _remaining_length(len(body)) + body


class Link(asyncio.Protocol):
    """One connection of a device: CONNECT, then SUBSCRIBE once CONNACK accepts; then
    PUBACKs and the host's PUBLISHes go to the device."""

    def __init__(self, dev: Device):
        self.dev = dev
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.get_running_loop().create_future()  # SUBACK read
        self.buf = bytearray()
        self.left = False  # closed by the device itself (a redirect followed)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(connect_packet(self.dev.thing_id, self.dev.thing_id, PASSWORD))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before SUBACK"))
        self.dev.lost(self)

    def leave(self) -> None:
        self.left = True
        if self.transport is not None:
            self.transport.write(b"\xe0\x00")  # DISCONNECT
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf, now, dev = self.buf, time.perf_counter(), self.dev
        found, used = packets(buf)
        for first, j, end in found:
            kind = first >> 4
            if kind == 4:  # PUBACK
                dev.puback(int.from_bytes(buf[j : j + 2], "big"), now)
            elif kind == 3:  # PUBLISH from the host: redirect, errors, desired state
                tlen = int.from_bytes(buf[j : j + 2], "big")
                topic = bytes(buf[j + 2 : j + 2 + tlen])
                k = j + 2 + tlen
                if first & 0x06:  # QoS 1: acknowledge it
                    assert self.transport is not None
                    self.transport.write(b"\x40\x02" + bytes(buf[k : k + 2]))
                    k += 2
                dev.message(topic, bytes(buf[k:end]), now)
            elif kind == 2 and self.transport is not None:  # CONNACK
                if buf[j + 1] == 0:
                    self.transport.write(subscribe_packet(f"twinedge/{dev.thing_id}/+"))
                elif not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"CONNACK return code {buf[j + 1]}"))
            elif kind == 9 and not self.ready.done():  # SUBACK
                self.ready.set_result(None)
        del buf[:used]
        dev.settle()


class Device:
    """One device: its reports (framed, in flight until PUBACKed), where it is connected,
    the redirects it follows."""

    def __init__(
        self,
        thing_id: str,
        url: str,
        base: tuple[int, int, int],
        phase_m: float,
        speed_mps: float,
        window: int,
        drain_s: float,
    ):
        self.thing_id, self.url, self.window, self.drain_s = thing_id, url, window, drain_s
        # the twin's seq, applied and seq_sum when the benchmark took over
        self.base_seq, self.base_applied, self.base_sum = base
        self.seq = self.base_seq  # reports made (the seq of the last one)
        self.phase_m, self.speed_mps = phase_m, speed_mps
        self.topic = _utf8(f"twinedge/{thing_id}/reported")
        self.inflight: dict[int, tuple[bytes, float]] = {}  # seq -> (PUBLISH, framed at)
        self.acked: list[tuple[float, float]] = []  # (framed at, latency s)
        self.link: Link | None = None  # connected, subscribed, not leaving
        self.connecting = False
        self.epoch: int | None = None  # of the last redirect followed
        self.moving: tuple[str, int, float] | None = None  # (url, epoch, read at)
        self.arrived_at: float | None = None  # connected after a redirect; no PUBACK yet
        self.interruptions_ms: list[float] = []  # redirect read -> first PUBACK at the new host
        self.counts: Counter[str] = Counter()
        self._drain_timer: asyncio.TimerHandle | None = None
        self.stopped = False

    # --- reports ------------------------------------------------------------------------------
    def report(self, t_rel_s: float) -> None:
        """Frame the next report (skipped when ``window`` are unacknowledged) and send it
        now if connected."""
        if len(self.inflight) >= self.window:
            self.counts["skipped"] += 1
            return
        self.seq = seq = self.seq + 1
        s = (t_rel_s * self.speed_mps + self.phase_m) % (2 * SPAN_M)
        x, vx = (s, self.speed_mps) if s < SPAN_M else (2 * SPAN_M - s, -self.speed_mps)
        payload = REPORT % (x, vx, time.time(), seq)
        body = self.topic + ((seq - 1) % 65535 + 1).to_bytes(2, "big") + payload
        packet = b"\x32" + _remaining_length(len(body)) + body
        self.inflight[seq] = (packet, time.perf_counter())
        if self.link is not None and self.moving is None:
            assert self.link.transport is not None
            self.link.transport.write(packet)

    def puback(self, packet_id: int, now: float) -> None:
        # the seqs in flight are consecutive and fewer than 65,535: the packet id names one
        seq = self.seq - (self.seq - 1 - (packet_id - 1)) % 65535
        entry = self.inflight.pop(seq, None)
        if entry is None:
            return
        self.acked.append((entry[1], now - entry[1]))
        if self.arrived_at is not None:
            self.interruptions_ms.append((now - self.arrived_at) * 1000.0)
            self.arrived_at = None

    # --- messages from the host ---------------------------------------------------------------
    def message(self, topic: bytes, payload: bytes, now: float) -> None:
        kind = topic.rpartition(b"/")[2]
        if kind == b"redirect":
            try:
                doc = json.loads(payload)
                url, epoch = str(doc["url"]), int(doc["epoch"])
            except (ValueError, KeyError, TypeError):
                self.counts["redirects_malformed"] += 1
                return
            if self.epoch is not None and epoch <= self.epoch:
                self.counts["redirects_ignored"] += 1
                return
            if self.moving is None or epoch > self.moving[1]:
                self.moving = (url, epoch, now)
                self.counts["redirects_followed"] += 1
        elif kind == b"errors":
            reason = "unreadable"
            try:
                reason = str(json.loads(payload).get("reason"))
            except (ValueError, AttributeError):
                pass
            self.counts[f"refused:{reason}"] += 1

    def settle(self) -> None:
        """After a chunk read: a redirect is followed once no report waits for its PUBACK
        from this host (or after ``drain_s``)."""
        if self.moving is None or self.link is None:
            return
        if not self.inflight or self.drain_s <= 0:
            self._go()
        elif self._drain_timer is None:
            self._drain_timer = asyncio.get_running_loop().call_later(self.drain_s, self._go)

    def _go(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        link, self.link = self.link, None
        if link is not None:
            if self.inflight:  # PUBACKs not read after drain_s: these will be re-sent
                self.counts["left_with_reports_in_flight"] += 1
            link.leave()
        if self.moving is not None:
            self._reconnect(self.moving[0])

    def lost(self, link: Link) -> None:
        if link.left:
            return
        if self.link is link:
            self.counts["connections_lost"] += 1
            self.link = None
            if self.moving is not None:
                self._go()
            else:
                self._reconnect(self.url)

    # --- connecting ---------------------------------------------------------------------------
    def _reconnect(self, url: str) -> None:
        if not self.connecting and not self.stopped:
            self.connecting = True
            asyncio.get_running_loop().create_task(self.connect(url))

    async def connect(self, url: str, gate: asyncio.Semaphore | None = None) -> None:
        """Connect to ``url`` (retrying, with back-off) and re-send what is in flight."""
        loop = asyncio.get_running_loop()
        self.connecting = True
        attempt = 0
        try:
            while not self.stopped:
                u = urlsplit(url)
                try:
                    if gate is not None:
                        async with gate:
                            _, link = await loop.create_connection(
                                lambda: Link(self), u.hostname, u.port
                            )
                            await asyncio.wait_for(link.ready, 60)
                    else:
                        _, link = await loop.create_connection(
                            lambda: Link(self), u.hostname, u.port
                        )
                        await asyncio.wait_for(link.ready, 10)
                    assert link.transport is not None
                    if link.transport.is_closing():
                        raise ConnectionError("closed as it was made")
                except (OSError, ConnectionError, TimeoutError):
                    self.counts["connect_failures"] += 1
                    await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                    attempt += 1
                    if self.moving is not None:
                        url = self.moving[0]  # a later redirect read meanwhile
                    continue
                break
            else:
                return
        finally:
            self.connecting = False
        self.counts["connects"] += 1
        self.url, self.link = url, link
        if self.moving is not None and self.moving[0] == url:
            self.epoch, t_read = self.moving[1], self.moving[2]
            self.moving = None
            self.arrived_at = t_read
        if self.inflight:
            self.counts["resent"] += len(self.inflight)
            assert link.transport is not None
            link.transport.write(b"".join(p for p, _ in self.inflight.values()))

    def close(self) -> None:
        self.stopped = True
        if self.link is not None:
            self.link.leave()


async def load(
    targets: list[tuple[str, str, tuple[int, int, int]]],
    rate_hz: float,
    seconds: float,
    speed_mps: float,
    window: int,
    drain_s: float,
    started: threading.Event,
) -> tuple[list[Device], float]:
    """Connect every device to its twin's host, report and move for ``seconds`` (set
    ``started`` when reporting begins), then wait (up to 60 s) for every report to be
    acknowledged. Returns the devices and the perf_counter when reporting began."""
    rng = np.random.default_rng(0)
    phases_m = rng.random(len(targets)) * 2 * SPAN_M
    devices = [
        Device(tid, url, base, float(ph), speed_mps, window, drain_s)
        for (tid, url, base), ph in zip(targets, phases_m, strict=True)
    ]
    gate = asyncio.Semaphore(32)
    await asyncio.gather(*(d.connect(d.url, gate) for d in devices))
    # each device's reports at its rate, from a phase of its own (not in step)
    tick = rng.random(len(devices))
    made = [0] * len(devices)
    started.set()
    t0 = time.perf_counter()
    while (now := time.perf_counter()) - t0 < seconds:
        t_rel = now - t0
        for k, d in enumerate(devices):
            due = int(t_rel * rate_hz + tick[k])
            while made[k] < due:
                made[k] += 1
                d.report(t_rel)
        await asyncio.sleep(0.002)
    deadline = time.perf_counter() + 60
    while any(d.inflight for d in devices) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    for d in devices:
        d.close()
    await asyncio.sleep(0.1)
    return devices, t0


def write_state(base: str, auth: dict, ids: list[str], state_bytes: int) -> None:
    """Give every twin ``state_bytes`` of state: the attribute ``state``, a string of
    that many random characters (written through the HTTP API, so on the twin's host)."""

    async def go() -> None:
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as client:
            gate = asyncio.Semaphore(8)

            async def one(tid: str) -> None:
                blob = secrets.token_urlsafe(state_bytes)[:state_bytes]
                async with gate:
                    r = await client.put(
                        f"/api/2/things/{quote(tid, safe=':@')}/attributes/state", json=blob
                    )
                if r.status_code not in (200, 201, 204):
                    raise SystemExit(f"writing the state of {tid}: {r.status_code} {r.text[:300]}")

            await asyncio.gather(*(one(t) for t in ids))

    asyncio.run(go())


def check_twins(base: str, auth: dict, devices: list[Device], timeout_s: float = 60.0) -> dict:
    """Compare each twin in the core with what its device made, once the core has the
    device's last report (replication is asynchronous): ``applied`` must equal the
    reports made since the benchmark took over, ``seq_sum`` their sum."""
    want = {d.thing_id: d for d in devices if not d.inflight}
    got: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, headers=auth, timeout=10) as client:
        while want.keys() - got.keys() and time.monotonic() < deadline:
            for tid, d in want.items():
                if tid in got:
                    continue
                r = client.get(
                    f"/api/2/things/{quote(tid, safe=':@')}/features/position/properties"
                )
                props = r.json() if r.status_code == 200 else {}
                if props.get("seq") == d.seq:
                    got[tid] = props
            if want.keys() - got.keys():
                time.sleep(0.2)
    lost = twice = sum_mismatch = out_of_order = before_placement = 0
    for tid, props in got.items():
        d = want[tid]
        out_of_order += int(props.get("out_of_order", 0))
        first = props.get("first_out_of_order")
        if first and first[1] == d.base_seq + 1 and first[0] < d.base_seq:
            # the core acknowledged reports first[0] + 1 .. base_seq (before the twin was
            # placed on a host: its core copy says so) but the host's copy lacks them
            before_placement += d.base_seq - first[0]
            out_of_order -= 1
        n = d.seq - d.base_seq
        diff = int(props.get("applied", 0)) - d.base_applied - n
        lost += max(0, -diff)
        twice += max(0, diff)
        expected_sum = d.base_sum + (d.base_seq + 1 + d.seq) * n // 2
        sum_mismatch += int(props.get("seq_sum", 0)) != expected_sum
    return {
        "twins_checked": len(got),
        "twins_not_caught_up": len(want) - len(got),  # the core never got the last report
        "twins_with_reports_in_flight": len(devices) - len(want),  # not checked
        "reports_checked": sum(want[t].seq - want[t].base_seq for t in got),
        "acknowledged_lost": lost,
        "applied_twice": twice,
        "twins_seq_sum_mismatch": sum_mismatch,
        "out_of_order": out_of_order,
        # acknowledged by the core (`twinedge devices --reports 1`) but missing from the
        # copy the twin was placed with on its host
        "lost_at_first_placement": before_placement,
        "out_of_order_examples": {  # twin: [seq applied before, seq] of its last one
            t: p["last_out_of_order"] for t, p in list(got.items()) if "last_out_of_order" in p
        },
    }


def run(
    devices: int,
    rate_hz: float,
    speed_mps: float,
    duration_s: float,
    warmup_s: float,
    window: int,
    state_bytes: int,
    drain_s: float,
    phases: bool,
    tmp: Path,
    method: str = "pre-copy",
) -> dict:
    (tmp / "bench.yaml").write_text(scenario(devices))
    trace_dir = tmp / "phases"
    if phases:  # the core and its host processes inherit it
        os.environ["TWINEDGE_MIGRATION_TRACE"] = str(trace_dir)
    # the core and the hosts import CountReports from this directory
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
    )
    behaviour = ["--behaviour", f"{Path(__file__).stem}:CountReports"]
    behaviour += ["--migration-method", method]
    load_before = os.getloadavg()[0]
    with core(tmp, "data", behaviour) as c:
        base, auth = c.base, {"Authorization": f"Bearer {c.token}"}
        status, docs = place_devices(c, tmp, devices)
        write_state(base, auth, list(docs), state_bytes)
        twin_bytes = []
        for tid in docs:
            doc = httpx.get(f"{base}/api/2/things/{quote(tid, safe=':@')}", headers=auth).json()
            twin_bytes.append(len(json.dumps(doc, separators=(",", ":"))))
            docs[tid] = doc
        urls = status["edge"]["mqtt"]
        targets = []
        for tid, doc in docs.items():
            pos = doc["features"]["position"]["properties"]
            counts = (int(pos.get(k, 0)) for k in ("seq", "applied", "seq_sum"))
            targets.append((tid, urls[doc["_host"]], tuple(counts)))
        pids = {"core": c.proc.pid, **{h: int(p) for h, p in status["edge"]["pids"].items()}}
        pids["load generator"] = os.getpid()
        cpu = CpuSampler(pids)
        cpu.start()
        marks: list[tuple[float, int, dict]] = []  # at the window's start and end
        started = threading.Event()

        def sample_core() -> None:
            if not started.wait(600):
                return
            for wait_s in (warmup_s, duration_s):
                time.sleep(wait_s)
                h = httpx.get(base + "/healthz", timeout=5).json().get("replication") or {}
                edge = httpx.get(base + "/api/2/orchestrator", headers=auth, timeout=5).json()
                records = sum(int(r.get("records", 0)) for r in h.values())
                marks.append((time.monotonic(), records, edge.get("edge") or {}))

        sampler = threading.Thread(target=sample_core, daemon=True)
        sampler.start()
        gcpauses.settle()  # the load generator's own collector pauses are not the hosts'
        try:
            devs, t0 = asyncio.run(
                load(targets, rate_hz, warmup_s + duration_s, speed_mps, window, drain_s, started)
            )
        finally:
            cpu.stop()
            sampler.join(30)
        check = check_twins(base, auth, devs)
        health = httpx.get(base + "/healthz", timeout=5).json()
        orch = httpx.get(base + "/api/2/orchestrator", headers=auth).json()
        edge = orch.get("edge") or {}
        gc_pauses = c.gc_pauses()
    from_t = t0 + warmup_s
    lat = np.array([s for d in devs for sent, s in d.acked if from_t <= sent < from_t + duration_s])
    acked = int(lat.size)
    mono0 = time.monotonic() - (time.perf_counter() - from_t)  # the same instant, monotonic
    pct = cpu.percent(mono0, mono0 + duration_s)
    replication = health.get("replication") or {}
    counts: Counter[str] = Counter()
    for d in devs:
        counts.update(d.counts)
    window_migrations = (
        marks[1][2].get("live_migrations", 0) - marks[0][2].get("live_migrations", 0)
        if len(marks) == 2
        else None
    )
    return {
        "devices": devices,
        "migration_method": method,
        "offered_reports_per_s": devices * rate_hz,
        "speed_mps": speed_mps,
        "state_bytes": state_bytes,
        "twin_bytes": quantiles(twin_bytes, 0),
        "window_per_device": window,
        "redirect_drain_s": drain_s,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "acked_per_s": round(acked / duration_s, 1),
        "latency_ms": quantiles(lat * 1000),
        "unacked_at_end": sum(len(d.inflight) for d in devs),
        "reports_made": sum(d.seq - d.base_seq for d in devs),
        "skipped_window_full": counts["skipped"],
        "core_replicated_per_s": round((marks[1][1] - marks[0][1]) / duration_s, 1)
        if len(marks) == 2
        else None,
        "cpu_percent": pct,
        "cpu_ms_per_acked_report": cpu_ms_per_report(pct, acked / duration_s),
        "replication_lag_s": {h: r.get("lag") for h, r in replication.items()},
        "live_migrations_in_window": window_migrations,
        "live_migrations_per_s": round(window_migrations / duration_s, 2)
        if window_migrations is not None
        else None,
        # the moves the migration policy decided (whole run); live_migrations also counts
        # the re-placements of the placement policy
        "migrations_decided": orch.get("migrations_total"),
        "live_migrations": edge.get("live_migrations"),
        "migrations_failed": edge.get("migrations_failed"),
        "migration_downtime_ms": edge.get("downtime_ms"),
        "migration_phases_ms": phase_breakdown(trace_dir, (marks[0][0], marks[1][0]))
        if phases and len(marks) == 2
        else None,
        "devices_saw": {
            "redirects_followed": counts["redirects_followed"],
            "redirects_ignored": counts["redirects_ignored"],
            "redirects_malformed": counts["redirects_malformed"],
            "left_with_reports_in_flight": counts["left_with_reports_in_flight"],
            "resent": counts["resent"],
            "connects": counts["connects"],
            "connect_failures": counts["connect_failures"],
            "connections_lost": counts["connections_lost"],
            "refused": {k[8:]: v for k, v in counts.items() if k.startswith("refused:")},
            "redirect_to_first_puback_ms": quantiles([x for d in devs for x in d.interruptions_ms]),
        },
        "exactly_once": check,
        # since each process started (warm-up included): how many, and the longest
        "gc_pauses": gc_pauses,
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rate-hz", type=float, default=10.0, help="reports/s per device")
    ap.add_argument(
        "--speed-mps",
        type=float,
        default=150.0,
        help="each device shuttles between the two sites (3 km apart) at this speed: "
        "devices x speed / 3,000 m migrations/s",
    )
    ap.add_argument("--duration-s", type=float, default=30.0, help="measured, after the warm-up")
    ap.add_argument("--warmup-s", type=float, default=10.0)
    ap.add_argument("--window", type=int, default=16, help="reports in flight per device at most")
    ap.add_argument(
        "--state-bytes", type=int, default=10_000, help="state of every twin (an attribute)"
    )
    ap.add_argument(
        "--redirect-drain-s",
        type=float,
        default=0.5,
        help="after a redirect, wait this long at most for the PUBACKs of the reports in "
        "flight before leaving (0: leave at once, as twinedge devices does)",
    )
    ap.add_argument(
        "--phases",
        action="store_true",
        help="break each live migration's downtime into its steps (TWINEDGE_MIGRATION_TRACE)",
    )
    ap.add_argument(
        "--migration-method",
        choices=("pre-copy", "stop-and-copy"),
        default="pre-copy",
        help="how the core moves the twins (serve --migration-method): stop-and-copy is "
        "the baseline",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            args.devices,
            args.rate_hz,
            args.speed_mps,
            args.duration_s,
            args.warmup_s,
            args.window,
            args.state_bytes,
            args.redirect_drain_s,
            args.phases,
            Path(tmp),
            args.migration_method,
        )
    print(json.dumps({
        "benchmark": "edge_migration",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "command": "python " + " ".join(sys.argv),
        "results": [result],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
