"""The core's cost per replicated edge record: ``POST /internal/replicate`` driven in
process, through the whole app (middleware, routing, the route, the service, the single
writer, the SQLite or PostgreSQL store), with N records per request.

Each twin is placed on an edge host ``edge-1`` with a document of ``--features`` features
of 10 properties each (and 20 attributes); every record is a ``change`` of one twin's
``position`` feature, as a device report on its edge host makes it. Requests are sent
one after the other (one in flight, as a host's replicator does) straight to the ASGI
app, so no socket or HTTP parser is measured; the CPU is the process's (every thread:
the event loop and the store's writer thread).

Prints one JSON object: machine, versions, command, and per records-per-request size the
records/s and CPU ms per record. Run it twice in one shell session to compare two
checkouts (``PYTHONPATH=<checkout>/src``); the numbers of a machine that is shared are
only comparable as ratios measured back to back.

    python benchmarks/bench_replica.py
    python benchmarks/bench_replica.py --sizes 1,30,500 --records 6000 --twins 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import twinedge
from twinedge.runtime.api import create_app
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

TOKEN = "bench-hosts-token"
HOST = "edge-1"
OWNER = Principal("bench", "fleet", "write")


def document(i: int, features: int) -> dict[str, Any]:
    """A twin of ``features`` features (10 properties each) and 20 attributes."""
    return {
        "attributes": {f"a{k}": f"value-{i}-{k}" for k in range(20)},
        "features": {
            "position": {"properties": {"x": 0.0, "y": 0.0, "t_s": 0.0, "seq": 0}},
            **{
                f"f{j}": {"properties": {f"p{k}": k * 1.5 for k in range(10)}}
                for j in range(features - 1)
            },
        },
    }


async def asgi_post(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST through the ASGI app: its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status, chunks = 0, []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def run_size(
    per_request: int, records: int, twins: int, features: int, store_url: str
) -> dict[str, Any]:
    svc = TwinService(open_store(store_url))
    app = create_app(svc, hosts_token=TOKEN)
    await svc.start()
    try:
        revision = {}
        for i in range(twins):
            tid = f"fleet:bench-{i}"
            await svc.put_thing(OWNER, tid, document(i, features))
            doc = await svc.set_host(tid, HOST)
            await svc.set_edge_position(tid, 1, doc["_revision"])
            revision[tid] = doc["_revision"]
        ids = list(revision)
        warmup = max(per_request, min(records // 10, 500))
        total = warmup + records
        bodies, seq = [], 0
        batch: list[dict[str, Any]] = []
        for n in range(total):
            tid = ids[n % twins]
            revision[tid] += 1
            seq += 1
            batch.append({
                "seq": seq, "twin": tid, "epoch": 1, "revision": revision[tid],
                "kind": "change",
                "data": {"features": {"position": {"properties": {
                    "x": round(n * 0.37 % 1000, 3), "y": round(n * 0.11 % 1000, 3),
                    "t_s": 1.7e9 + n * 1e-3, "seq": n,
                }}}},
                "time_s": time.time(),
            })  # fmt: skip
            if len(batch) == per_request:
                bodies.append(json.dumps({"host": HOST, "records": batch}).encode())
                batch = []
        if batch:
            bodies.append(json.dumps({"host": HOST, "records": batch}).encode())
        n_warm = -(-warmup // per_request)
        for body in bodies[:n_warm]:
            status, out = await asgi_post(app, "/internal/replicate", body)
            assert status == 200, out
        measured = bodies[n_warm:]
        done = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        for body in measured:
            status, out = await asgi_post(app, "/internal/replicate", body)
            if status != 200:
                raise SystemExit(f"replicate answered {status}: {out[:300]!r}")
            done += json.loads(out)["applied"]
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        expected = sum(len(json.loads(b)["records"]) for b in measured)
        assert done == expected, (done, expected)
        return {
            "records_per_request": per_request,
            "requests": len(measured),
            "records": done,
            "records_per_s": round(done / wall, 1),
            "cpu_ms_per_record": round(1000 * cpu / done, 4),
            "cpu_ms_per_request": round(1000 * cpu / len(measured), 3),
            "wall_s": round(wall, 3),
        }
    finally:
        await svc.stop()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,30,500", help="records per request, comma separated")
    ap.add_argument("--records", type=int, default=6000, help="records measured per size")
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--features", type=int, default=5, help="features per twin")
    ap.add_argument(
        "--store", default=None, help="store URL (default: SQLite in a temporary directory)"
    )
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, size in enumerate(int(s) for s in args.sizes.split(",")):
            url = args.store or f"sqlite:///{Path(tmp) / f'bench-{k}.db'}"
            results.append(
                asyncio.run(run_size(size, args.records, args.twins, args.features, url))
            )
    print(json.dumps({
        "benchmark": "replica",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "twinedge": twinedge.__version__,
        "twinedge_source": str(Path(twinedge.__file__).resolve().parent),
        "fastapi": _version("fastapi"),
        "starlette": _version("starlette"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "command": "python " + " ".join(sys.argv),
        "store": args.store or "sqlite (temporary directory)",
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
