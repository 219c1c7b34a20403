"""Durable ingest of the edge tier with a light load generator: `twinedge serve --network
... --hosts local` (the core and one `twinedge host` process per edge site) fed by raw
MQTT 3.1.1 connections, one per device, straight to the host that runs its twin.

`bench_edge.py` drives the hosts with `twinedge devices`, whose per-report cost (an
aiomqtt client per device, motion, JSON) is about as large as a host's and shares the
same 2 cores. Here each device is an asyncio protocol writing pre-framed PUBLISH packets
(QoS 1) and reading PUBACKs, so nearly all the CPU is left to the processes measured.
Each PUBACK comes after the host's durable commit; the latency is publish -> PUBACK at
the connection.

The devices are first provisioned and placed by `twinedge devices --reports 1` (static
robots of examples/two-sites.yaml, one password for all); then the load generator reads
each twin's host and that host's MQTT URL from the core, connects there and reports the
twin's own position (so nothing migrates) at ``--rates`` reports/s per device (``max``:
as fast as ``--window`` reports in flight per device allow). The first ``--warmup-s``
seconds are not measured. ``--replicate-linger-ms`` sets the hosts' replication linger
(``twinedge host --replicate-linger-ms``, through its environment variable); several
values, comma-separated, run one after the other at every rate.

    python benchmarks/bench_edge_ingest.py                          # 2,000/s offered, then max
    python benchmarks/bench_edge_ingest.py --devices 100 --rates 10 --duration-s 5 --warmup-s 2
    python benchmarks/bench_edge_ingest.py --rates 10 --replicate-linger-ms 0,20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edge import Core, CpuSampler, core, cpu_ms_per_report, quantiles, scenario
from twinedge import gcpauses

PASSWORD = "bench-password"


def packets(buf: bytearray) -> tuple[list[tuple[int, int, int]], int]:
    """The whole MQTT packets at the start of ``buf``, as ``(first byte, body start, body
    end)``, and how many bytes they take (the caller deletes them once read; a packet not
    yet whole stays for the next read)."""
    out: list[tuple[int, int, int]] = []
    i = 0
    while len(buf) - i >= 2:
        n, shift, j = 0, 0, i + 1  # the remaining length (1-4 bytes)
        while j < len(buf):
            n |= (buf[j] & 0x7F) << shift
            shift += 7
            j += 1
            if not buf[j - 1] & 0x80:
                break
        else:
            break
        if len(buf) - j < n:
            break
        out.append((buf[i], j, j + n))
        i = j + n
    return out, i


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, username and password, keep-alive 60 s."""
    var = _utf8("MQTT") + bytes([4, 0b11000010]) + (60).to_bytes(2, "big")
    body = var + _utf8(client_id) + _utf8(username) + _utf8(password)
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """MQTT PUBLISH, QoS 1."""
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _remaining_length(len(body)) + body


class Device(asyncio.Protocol):
    """One device's connection: CONNECT, then PUBLISHes; PUBACKs time them."""

    def __init__(self, thing_id: str, position: dict, window: int):
        self.thing_id, self.position, self.window = thing_id, position, window
        self.topic = f"twinedge/{thing_id}/reported".encode()
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.inflight: dict[int, float] = {}  # packet id -> perf_counter at publish
        self.next_id = 1
        self.seq = 0
        self.acked: list[tuple[float, float]] = []  # (sent at, latency s)
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(connect_packet(self.thing_id, self.thing_id, PASSWORD))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"{self.thing_id}: connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf, now = self.buf, time.perf_counter()
        found, used = packets(buf)
        for first, j, _end in found:
            kind = first >> 4
            if kind == 4:  # PUBACK
                pid = int.from_bytes(buf[j : j + 2], "big")
                t0 = self.inflight.pop(pid, None)
                if t0 is not None:
                    self.acked.append((t0, now - t0))
            elif kind == 2 and not self.connected.done():  # CONNACK
                if buf[j + 1] == 0:
                    self.connected.set_result(None)
                else:
                    self.connected.set_exception(
                        ConnectionError(f"{self.thing_id}: CONNACK return code {buf[j + 1]}")
                    )
        del buf[:used]

    def publish(self) -> bool:
        """Send the next report unless ``window`` are in flight."""
        if self.lost or len(self.inflight) >= self.window or self.transport is None:
            return False
        self.seq += 1
        pid = self.next_id
        self.next_id = pid % 65535 + 1
        pos = {**self.position, "t_s": round(time.time(), 6), "seq": self.seq}
        payload = json.dumps({"position": pos}, separators=(",", ":")).encode()
        self.inflight[pid] = time.perf_counter()
        self.transport.write(publish_packet(self.topic, pid, payload))
        return True


async def load(
    targets: list[tuple[str, str, dict]], rate_hz: float | None, seconds: float, window: int
) -> tuple[list[Device], float, int]:
    """Connect every device to its host and report for ``seconds``; returns the devices
    and the perf_counter when reporting began."""
    loop = asyncio.get_running_loop()
    devices: list[Device] = []
    gate = asyncio.Semaphore(32)

    async def open_one(thing_id: str, url: str, position: dict) -> Device:
        u = urlsplit(url)
        async with gate:
            _, dev = await loop.create_connection(
                lambda: Device(thing_id, position, window), u.hostname, u.port
            )
            await asyncio.wait_for(dev.connected, 60)
        return dev

    devices = list(await asyncio.gather(*(open_one(*t) for t in targets)))
    # each device's reports at its rate, from a phase of its own (devices are not in step:
    # a fleet firing in the same instant would measure its own burst)
    phase = np.random.default_rng(0).random(len(devices))
    t0 = time.perf_counter()
    tick_s = 0.002
    while (now := time.perf_counter()) - t0 < seconds:
        for d, ph in zip(devices, phase, strict=True):
            if rate_hz is None:
                while d.publish():
                    pass
            else:
                owed = int((now - t0) * rate_hz + ph) - d.seq
                for _ in range(max(0, owed)):
                    if not d.publish():
                        break
        await asyncio.sleep(tick_s)
    deadline = time.perf_counter() + 30
    while any(d.inflight and not d.lost for d in devices) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    lost = sum(d.lost for d in devices)
    for d in devices:
        if d.transport is not None:
            d.transport.write(b"\xe0\x00")  # DISCONNECT
            d.transport.close()
    return devices, t0, lost


def place_devices(c: Core, tmp: Path, devices: int) -> tuple[dict, dict[str, dict]]:
    """Provision ``devices`` robots of ``tmp/bench.yaml`` with `twinedge devices --reports 1`
    (password :data:`PASSWORD`) and wait until the orchestrator has placed each one's twin
    on a host process. Returns the core's ``/api/2/orchestrator`` status and each twin's
    document (its ``_host`` one of the host processes), by thing id."""
    auth = {"Authorization": f"Bearer {c.token}"}
    env = {**os.environ, "TWINEDGE_API_KEY": c.token, "TWINEDGE_DEVICE_PASSWORD": PASSWORD}
    placed = subprocess.run(
        [sys.executable, "-m", "twinedge", "devices", str(tmp / "bench.yaml"), "--count", str(devices),
         "--reports", "1", "--json", "--quiet", "--url", c.base, "--mqtt", f"mqtt://127.0.0.1:{c.mqtt_port}"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    try:
        ids = [d["thingId"] for d in json.loads(placed.stdout)["devices"]]
    except ValueError:
        raise SystemExit(f"twinedge devices --reports 1 failed: {placed.stderr[-2000:]}") from None
    status = httpx.get(c.base + "/api/2/orchestrator", headers=auth).json()
    urls = status["edge"]["mqtt"]
    docs = {}
    for tid in ids:
        for _ in range(600):  # placed at the orchestrator's next cycle
            doc = httpx.get(f"{c.base}/api/2/things/{tid}", headers=auth).json()
            if doc.get("_host") in urls:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{tid} was not placed on a host process within 60 s")
        docs[tid] = doc
    return status, docs


def run(
    devices: int,
    rate: str,
    duration_s: float,
    warmup_s: float,
    window: int,
    tmp: Path,
    linger_ms: float | None = None,
) -> dict:
    (tmp / "bench.yaml").write_text(scenario(devices))
    if linger_ms is None:
        os.environ.pop("TWINEDGE_REPLICATE_LINGER_MS", None)
    else:  # the host processes the core starts inherit it
        os.environ["TWINEDGE_REPLICATE_LINGER_MS"] = str(linger_ms)
    with core(tmp, f"data-{rate}-{linger_ms}") as c:
        serve, base = c.proc, c.base
        auth = {"Authorization": f"Bearer {c.token}"}
        status, docs = place_devices(c, tmp, devices)
        urls = status["edge"]["mqtt"]
        targets = []
        for tid, doc in docs.items():
            pos = doc["features"]["position"]["properties"]
            targets.append((
                tid, urls[doc["_host"]],
                {"x_m": pos["x_m"], "y_m": pos["y_m"], "vx_mps": 0.0, "vy_mps": 0.0},
            ))  # fmt: skip
        pids = {"core": serve.pid, **{h: int(p) for h, p in status["edge"]["pids"].items()}}
        pids["load generator"] = os.getpid()
        cpu = CpuSampler(pids)
        cpu.start()
        core_records: list[int] = []  # records the core took, at the window's start and end
        core_requests: list[int] = []  # replication requests it answered, the same
        core_commits: list[float] = []  # its writer's transactions, the same

        def sample_core() -> None:
            for wait_s in (warmup_s, duration_s):
                time.sleep(wait_s)
                h = httpx.get(base + "/healthz", timeout=5).json().get("replication") or {}
                core_records.append(sum(int(r.get("records", 0)) for r in h.values()))
                core_requests.append(sum(int(r.get("batches", 0)) for r in h.values()))
                text = httpx.get(base + "/metrics", headers=auth, timeout=5).text
                core_commits.append(
                    next(
                        (float(x.split()[1]) for x in text.splitlines()
                         if x.startswith("twinedge_commits_total ")),
                        float("nan"),
                    )
                )  # fmt: skip

        sampler = threading.Thread(target=sample_core, daemon=True)
        sampler.start()
        rate_hz = None if rate == "max" else float(rate)
        gcpauses.settle()  # the load generator's own collector pauses are not the hosts'
        try:
            devs, t0, lost = asyncio.run(load(targets, rate_hz, warmup_s + duration_s, window))
        finally:
            cpu.stop()
            sampler.join(30)
        health = httpx.get(base + "/healthz", timeout=5).json()
        gc_pauses = c.gc_pauses()
    from_t = t0 + warmup_s
    lat = np.array([lat_s for d in devs for sent, lat_s in d.acked if sent >= from_t]) * 1000
    acked = int(lat.size)
    mono0 = time.monotonic() - (time.perf_counter() - from_t)  # the same instant, monotonic
    pct = cpu.percent(mono0, mono0 + duration_s)
    replication = health.get("replication") or {}
    return {
        "devices": devices,
        "offered_reports_per_s": "max" if rate_hz is None else devices * rate_hz,
        "replicate_linger_ms": linger_ms,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "window_per_device": window,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "acked_per_s": round(acked / duration_s, 1),
        "latency_ms": quantiles(lat),
        "unacked_at_end": sum(len(d.inflight) for d in devs),
        # what the core replicated in the same window: below acked_per_s, its lag grows
        "core_replicated_per_s": round((core_records[1] - core_records[0]) / duration_s, 1)
        if len(core_records) == 2
        else None,
        # in the window: records per replication request, and per transaction of the
        # core's writer (one transaction takes the records of every request queued)
        "core_records_per_request": round(
            (core_records[1] - core_records[0]) / (core_requests[1] - core_requests[0]), 1
        )
        if len(core_requests) == 2 and core_requests[1] > core_requests[0]
        else None,
        "core_records_per_commit": round(
            (core_records[1] - core_records[0]) / (core_commits[1] - core_commits[0]), 1
        )
        if len(core_commits) == 2 and core_commits[1] > core_commits[0]
        else None,
        "connections_lost": lost,
        # since each process started (warm-up included): how many, and the longest
        "gc_pauses": gc_pauses,
        "cpu_percent": pct,
        "cpu_ms_per_acked_report": cpu_ms_per_report(pct, acked / duration_s),
        "replication_lag_s": {h: r.get("lag") for h, r in replication.items()},
        "replication_records_per_batch": {
            h: round(r["records"] / r["batches"], 1)
            for h, r in replication.items()
            if r.get("batches")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument(
        "--rates", default="10,max", help="reports/s per device (or max), comma-separated"
    )
    ap.add_argument("--duration-s", type=float, default=20.0, help="measured, after the warm-up")
    ap.add_argument("--warmup-s", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=16, help="reports in flight per device at most")
    ap.add_argument(
        "--replicate-linger-ms",
        default=None,
        help="the hosts' replication linger, comma-separated values (default: the hosts' own)",
    )
    args = ap.parse_args()
    lingers: list[float | None] = (
        [float(v) for v in args.replicate_linger_ms.split(",")]
        if args.replicate_linger_ms
        else [None]
    )
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            run(args.devices, r, args.duration_s, args.warmup_s, args.window, Path(tmp), ms)
            for r in args.rates.split(",")
            for ms in lingers
        ]
    print(json.dumps({
        "benchmark": "edge_ingest",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "command": "python " + " ".join(sys.argv),
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
