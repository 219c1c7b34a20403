"""End to end through the real `twinedge serve`: device publish (MQTT, QoS 1) -> durable
commit -> CloudEvent on a WebSocket client, at a fixed offered rate.

Starts `twinedge serve` (SQLite, embedded broker) in a subprocess, registers devices,
subscribes one WebSocket client to all events (batched frames, ``?batch=true``), then drives the devices from a publisher
subprocess at ``--rate`` updates/s for ``--duration`` s (loopback only). Each report
carries its send time; latency = WebSocket receive time - send time (one clock). Prints
JSON. The load generator shares the 2 cores with the server.

    python benchmarks/bench_e2e_latency.py [--rate 5000] [--devices 100] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).parent))
from bench_mqtt_ingest import PASSWORD, Device


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 2)


async def publish(things: list[str], port: int, rate: float, duration: float) -> dict:
    """Run in the publisher subprocess: paced QoS 1 publishes from every device."""
    devices = [Device(t, port) for t in things]
    for i in range(0, len(devices), 25):
        await asyncio.gather(*(d.open() for d in devices[i : i + 25]))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    t0 = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - t0) < duration:
        due = int(rate * elapsed)  # publish what the offered rate owes by now
        while sent < due:
            devices[sent % len(devices)].publish(sent)
            sent += 1
        await asyncio.sleep(0.005)
    await asyncio.sleep(2.0)  # let acknowledgements arrive
    return {
        "sent": sent,
        "acked": sum(d.acks for d in devices),
        "elapsed_s": time.perf_counter() - t0,
    }


async def main(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        port, mport = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twinedge",
                "serve",
                "--data-dir",
                str(data),
                "--port",
                str(port),
                "--mqtt-port",
                str(mport),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
                admin = {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}
                r = await http.post(
                    "/api/2/keys", json={"domain": "bench", "role": "admin"}, headers=admin
                )
                token = r.json()["token"]
                hdr = {"Authorization": f"Bearer {token}"}
                things = [f"bench:dev-{i}" for i in range(args.devices)]
                for t in things:
                    await http.put(
                        f"/api/2/things/{t}",
                        json={"features": {"telemetry": {"properties": {"seq": -1}}}},
                        headers=hdr,
                    )
                    await http.put(
                        f"/api/2/things/{t}/credentials", json={"password": PASSWORD}, headers=hdr
                    )
            lat: list[float] = []
            received = 0
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/api/2/events/ws?token={token}&batch=true", max_queue=None
            ) as ws:
                pub = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--_publisher",
                    json.dumps(
                        {
                            "things": things,
                            "port": mport,
                            "rate": args.rate,
                            "duration": args.duration,
                        }
                    ),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
                assert (await pub.stdout.readline()).strip() == b"ready"
                pub.stdin.write(b"go\n")
                await pub.stdin.drain()
                end = time.time() + args.duration + 5
                while time.time() < end:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), timeout=max(0.1, end - time.time()))
                    except TimeoutError:
                        break
                    now = time.time()
                    for ev in json.loads(msg):  # ?batch=true: a JSON array of CloudEvents
                        for op in ev.get("data", {}).get("patch", []):
                            if op["path"] == "/features/telemetry/properties/t":
                                lat.append(now - op["value"])
                                received += 1
                out, _ = await pub.communicate()
                pubres = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait(timeout=60)
    warm = lat[len(lat) // 10 :]  # drop the first 10% (connections warming up)
    return {
        "benchmark": "e2e_publish_to_websocket",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "command": "python " + " ".join(a for a in sys.argv if not a.startswith("--_")),
        "offered_rate_per_s": args.rate,
        "devices": args.devices,
        "duration_s": args.duration,
        "sent": pubres["sent"],
        "acked": pubres["acked"],
        "events_received": received,
        "delivered_rate_per_s": round(received / args.duration, 1),
        "latency_ms": {
            "p50": pct(warm, 0.5),
            "p95": pct(warm, 0.95),
            "p99": pct(warm, 0.99),
            "max": pct(warm, 1.0),
        },
        "target_p99_ms": 50,
        "loadavg": os.getloadavg(),
    }


def cli() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--_publisher":
        cfg = json.loads(sys.argv[2])
        res = asyncio.run(publish(cfg["things"], cfg["port"], cfg["rate"], cfg["duration"]))
        print(json.dumps(res), flush=True)
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--duration", type=float, default=10)
    print(json.dumps(asyncio.run(main(ap.parse_args())), indent=2))


if __name__ == "__main__":
    cli()
