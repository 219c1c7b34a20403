"""Resident memory of `twinedge serve` holding N twins (default 100,000).

Fills a SQLite store through the service (in-process, batched durable writes), then
starts a fresh `twinedge serve` on that data directory, waits until it is healthy, and
reads its resident set size from /proc. Prints JSON.

    python benchmarks/bench_serve_memory.py [--twins 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

OWNER = Principal("bench", "fleet", "write")


def twin(i: int) -> dict:
    return {
        "attributes": {
            "kind": ("vehicle", "robot", "sensor")[i % 3],
            "name": f"unit {i}",
            "fleet": i % 50,
        },
        "features": {
            "battery": {"properties": {"level": i % 100, "charging": i % 7 == 0}},
            "location": {"properties": {"x": float(i % 4000), "y": float(i // 4000 * 10)}},
            "lamp": {"properties": {"on": False}, "desiredProperties": {"on": i % 2 == 0}},
        },
    }


async def fill(db: Path, n: int) -> float:
    svc = TwinService(open_store(f"sqlite:///{db}"))
    await svc.start()
    t0 = time.perf_counter()
    chunk = 2000
    for start in range(0, n, chunk):
        await asyncio.gather(
            *(
                svc.put_thing(OWNER, f"fleet:unit-{i}", twin(i))
                for i in range(start, min(n, start + chunk))
            )
        )
    dt = time.perf_counter() - t0
    await svc.stop()
    return dt


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--twins", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        fill_s = asyncio.run(fill(data / "twins.db", args.twins))
        port, mport = free_port(), free_port()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
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
            while True:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    if r.status_code == 200 and r.json()["things"] == args.twins:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"twinedge serve exited with {proc.returncode}")
                time.sleep(0.2)
            start_s = time.perf_counter() - t0
            time.sleep(1.0)
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        db_mb = sum(p.stat().st_size for p in data.glob("twins.db*")) / 1e6
    print(
        json.dumps(
            {
                "benchmark": "serve_memory",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "command": "python " + " ".join(sys.argv),
                "twins": args.twins,
                "fill_s": round(fill_s, 1),
                "fill_twins_per_s": round(args.twins / fill_s),
                "serve_start_to_healthy_s": round(start_s, 1),
                "serve_rss_mb": round(rss, 1),
                "target_rss_mb": 1024,
                "db_mb": round(db_mb, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
