"""Durable MQTT ingestion: devices -> embedded broker -> twin service -> SQLite.

Starts a TwinService on SQLite in a temporary folder with the embedded broker, registers
N devices, and drives them from publisher processes (loopback only) that speak MQTT 3.1.1
over raw sockets (a minimal client, so the publishers cost little CPU next to the
service). Two phases:

0. the ceiling: the same reports straight into ``service.device_report``, no MQTT;
1. saturation: every device keeps ``--window`` QoS 1 messages in flight for
   ``--duration`` s; sustained rate = PUBACKs received / duration (a PUBACK is sent only
   once the update is committed), cross-checked with the service's committed count;
2. fixed offered rate (``--rate``, default 5,000 updates/s, spread over the devices):
   p50/p99 latency from the device's publish to the service's event (an in-process
   ``service.subscribe``) and to the PUBACK.

Prints one JSON object. Run: ``python benchmarks/bench_mqtt_ingest.py`` (about 45 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSWORD = "bench-password-1"


# ------------------------------------------------------------------ a minimal MQTT client
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(x: str | bytes) -> bytes:
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, user: str, password: str) -> bytes:
    body = (
        _s("MQTT")
        + bytes([4, 0xC2])
        + struct.pack("!H", 60)
        + _s(client_id)
        + _s(user)
        + _s(password)
    )
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, pid: int, payload: bytes) -> bytes:
    body = topic + struct.pack("!H", pid) + payload
    return b"\x32" + _varint(len(body)) + body


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    mult, n = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        n += (b & 0x7F) * mult
        if not b & 0x80:
            break
        mult *= 128
    return first, await reader.readexactly(n)


class Device:
    def __init__(self, thing_id: str, port: int):
        self.thing_id, self.port = thing_id, port
        self.topic = _s(f"twinedge/{thing_id}/reported")
        self.pid = 0
        self.sent: dict[int, float] = {}
        self.acks = 0
        self.ack_latency: list[float] = []
        self.window: asyncio.Semaphore | None = None
        self.record_latency = False

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(connect_packet(self.thing_id, self.thing_id, PASSWORD))
        kind, body = await read_packet(self.reader)
        if kind != 0x20 or body[1] != 0:
            raise RuntimeError(f"CONNECT of {self.thing_id} refused: {body!r}")
        self.read_task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            kind, body = await read_packet(self.reader)
            if kind == 0x40:
                t0 = self.sent.pop(struct.unpack("!H", body[:2])[0], None)
                self.acks += 1
                if self.record_latency and t0 is not None:
                    self.ack_latency.append(time.perf_counter() - t0)
                if self.window is not None:
                    self.window.release()

    def publish(self, seq: int) -> None:
        self.pid = self.pid % 65535 + 1
        payload = b'{"telemetry":{"seq":%d,"t":%.6f}}' % (seq, time.time())
        self.sent[self.pid] = time.perf_counter()
        self.writer.write(publish_packet(self.topic, self.pid, payload))


async def publisher(cfg: dict) -> dict:
    devices = [Device(t, cfg["port"]) for t in cfg["things"]]
    for i in range(0, len(devices), 50):  # each CONNECT costs the service a password check
        await asyncio.gather(*(d.open() for d in devices[i : i + 50]))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    times = json.loads(await asyncio.to_thread(sys.stdin.readline))
    cfg.update(times)
    t_start = cfg["t_start"]
    await asyncio.sleep(max(0.0, t_start - time.time()))

    # phase 1: saturation (warm-up, then the measured window)
    stop = t_start + cfg["warmup"] + cfg["duration"]
    acks_at: dict[str, int] = {}

    async def saturate(d: Device) -> None:
        d.window = asyncio.Semaphore(cfg["window"])
        seq = 0
        while time.time() < stop:
            await d.window.acquire()
            seq += 1
            d.publish(seq)
            if seq % 16 == 0:
                await d.writer.drain()

    async def mark() -> None:
        await asyncio.sleep(max(0.0, t_start + cfg["warmup"] - time.time()))
        acks_at["start"] = sum(d.acks for d in devices)
        await asyncio.sleep(max(0.0, stop - time.time()))
        acks_at["stop"] = sum(d.acks for d in devices)

    await asyncio.gather(mark(), *(saturate(d) for d in devices))
    while any(d.sent for d in devices):  # drain the in-flight window
        await asyncio.sleep(0.05)
    for d in devices:
        d.window = None

    # phase 2: a fixed offered rate, round-robin over the devices
    t2 = cfg["t_rate"]
    await asyncio.sleep(max(0.0, t2 - time.time()))
    for d in devices:
        d.record_latency = True
    rate, dur = cfg["rate"], cfg["rate_duration"]
    n_total, i, seq = int(rate * dur), 0, 10**9
    t0 = time.perf_counter()
    while i < n_total:
        due = min(n_total, int((time.perf_counter() - t0) * rate) + 1)
        while i < due:
            devices[i % len(devices)].publish(seq + i)
            i += 1
        await asyncio.sleep(0.001)
    deadline = time.time() + 10
    while any(d.sent for d in devices) and time.time() < deadline:
        await asyncio.sleep(0.05)
    lat = [x for d in devices for x in d.ack_latency]
    return {
        "acks_in_window": acks_at["stop"] - acks_at["start"],
        "ack_latency_s": lat,
        "sent_rate_phase": n_total,
        "elapsed_rate_phase_s": time.perf_counter() - t0,
    }


def run_publisher() -> None:
    cfg = json.loads(sys.stdin.readline())
    out = asyncio.run(publisher(cfg))
    sys.stdout.write(json.dumps(out))


# ------------------------------------------------------------------ the service side
def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def service_only(service, things: list[str], window: int, duration: float) -> float:
    """The ceiling: the same reports through ``service.device_report`` in-process, with
    the same number in flight, no MQTT."""
    done, stop = 0, time.time() + duration

    async def one(t: str, seq: int) -> None:
        nonlocal done
        await service.device_report(t, {"telemetry": {"seq": -seq, "t": time.time()}})
        done += 1

    async def dev(t: str) -> None:
        seq = 0
        while time.time() < stop:
            await asyncio.gather(*(one(t, seq + k) for k in range(window)))
            seq += window

    t0 = time.perf_counter()
    await asyncio.gather(*(dev(t) for t in things))
    return done / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> dict:
    from twinedge.runtime.auth import SYSTEM
    from twinedge.runtime.mqtt import EmbeddedBroker
    from twinedge.runtime.service import TwinService
    from twinedge.runtime.store import open_store

    load_before = round(os.getloadavg()[0], 2)
    tmp = Path(tempfile.mkdtemp(prefix="twinedge-bench-mqtt-"))
    service = TwinService(open_store(f"sqlite:///{tmp / 'twins.db'}"))
    await service.start()
    things = [f"bench:dev-{i:05d}" for i in range(args.devices)]
    for t in things:
        await service.put_thing(
            SYSTEM, t, {"features": {"telemetry": {"properties": {}}}}, domain="bench"
        )
    await asyncio.gather(*(service.set_device_secret(SYSTEM, t, PASSWORD) for t in things))
    direct = await service_only(service, things, args.window, args.direct_duration)
    broker = EmbeddedBroker(service, "127.0.0.1", 0)
    await broker.start()

    procs = []
    for p in range(args.publishers):
        cfg = {
            "port": broker.port,
            "things": things[p :: args.publishers],
            "window": args.window,
            "warmup": args.warmup,
            "duration": args.duration,
            "rate": args.rate / args.publishers,
            "rate_duration": args.rate_duration,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--publisher",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        proc.stdin.write(json.dumps(cfg).encode() + b"\n")
        await proc.stdin.drain()
        procs.append(proc)
    for proc in procs:  # every device connected
        assert (await proc.stdout.readline()).strip() == b"ready"
    t_start = time.time() + 0.5
    t_rate = t_start + args.warmup + args.duration + 3
    for proc in procs:
        proc.stdin.write(json.dumps({"t_start": t_start, "t_rate": t_rate}).encode() + b"\n")
        await proc.stdin.drain()
        proc.stdin.close()

    # the committed count over the measured saturation window (service side)
    await asyncio.sleep(max(0.0, t_start + args.warmup - time.time()))
    c0 = service.metrics["updates_total:mqtt"]
    await asyncio.sleep(max(0.0, t_start + args.warmup + args.duration - time.time()))
    c1 = service.metrics["updates_total:mqtt"]

    # event latency at the fixed rate: publish time is in the report itself
    event_latency: list[float] = []
    sub = service.subscribe(SYSTEM, max_queue=1_000_000)

    async def consume() -> None:
        async for ev in sub:
            now = time.time()
            if now < t_rate:
                continue
            ops = {op["path"].rsplit("/", 1)[-1]: op.get("value") for op in ev["data"]["patch"]}
            if isinstance(ops.get("seq"), int) and ops["seq"] >= 10**9:  # a fixed-rate message
                event_latency.append(now - ops["t"])

    consumer = asyncio.create_task(consume())
    results = []
    for proc in procs:
        out, _ = await proc.communicate()
        results.append(json.loads(out))
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await broker.stop()
    await service.stop()

    acks = sum(r["acks_in_window"] for r in results)
    ack_lat = [x for r in results for x in r["ack_latency_s"]]
    sent = sum(r["sent_rate_phase"] for r in results)
    elapsed = max(r["elapsed_rate_phase_s"] for r in results)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 2)

    return {
        "benchmark": "mqtt_ingest",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "amqtt": importlib.metadata.version("amqtt"),
        "sqlite": sqlite3.sqlite_version,
        "load_average_1m_at_start": load_before,
        "devices": args.devices,
        "publisher_processes": args.publishers,
        "window_per_device": args.window,
        "saturation": {
            "duration_s": args.duration,
            "durable_updates_per_s": round(acks / args.duration),
            "committed_updates_per_s": round((c1 - c0) / args.duration),
            "target_updates_per_s": 10_000,
            "service_only_updates_per_s": round(direct),
            "mqtt_over_service_only": round(acks / args.duration / direct, 2),
        },
        "fixed_rate": {
            "offered_updates_per_s": args.rate,
            "achieved_offered_per_s": round(sent / elapsed) if elapsed else None,
            "messages": sent,
            "publish_to_event_ms": {
                "p50": ms(pct(event_latency, 0.5)),
                "p99": ms(pct(event_latency, 0.99)),
                "n": len(event_latency),
            },
            "publish_to_puback_ms": {"p50": ms(pct(ack_lat, 0.5)), "p99": ms(pct(ack_lat, 0.99))},
            "target_p99_ms": 50,
        },
        "rejected": {k: v for k, v in service.metrics.items() if k.startswith("mqtt_rejected")},
    }


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=1, help="publisher processes")
    ap.add_argument("--window", type=int, default=64, help="QoS 1 messages in flight per device")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=5000.0)
    ap.add_argument("--rate-duration", type=float, default=10.0)
    ap.add_argument("--direct-duration", type=float, default=5.0, help="service-only phase")
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publisher:
        run_publisher()
        return
    # the same event loop as `twinedge serve` (uvloop), unless TWINEDGE_ASYNCIO=1
    if not os.environ.get("TWINEDGE_ASYNCIO"):
        import uvloop

        uvloop.install()
    out = asyncio.run(main(args))
    out["event_loop"] = type(asyncio.new_event_loop()).__module__
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    cli()
