"""One edge host's cost per device report, in process: an :class:`~twinedge.edge.EdgeHost`
(its log on disk, ``synchronous=FULL``) applying reports as its MQTT endpoint hands them
over (the payload's bytes parsed the way the gateway parses them, then ``host.apply``),
plus the replicator's share (the request body of every committed record built as the
host process builds it; nothing is sent).

Per offered rate (reports/s over ``--twins`` twins, each report due at a fixed instant,
devices out of phase) and as fast as ``--window`` reports in flight per twin allow
(``max``): reports/s, latency from the instant a report was due to its durable
acknowledgement (p50/p99: queueing included), and CPU ms per report (the whole process,
commit thread included, over the measured part; the driver's own task per report is in
it too, the same for every version measured).

With ``--mode mqtt`` the reports arrive over MQTT instead: the host's embedded broker and
device side (as in ``twinedge host``; devices admitted without asking a core) in this
process, and a light load generator in a child process (raw MQTT 3.1.1, one connection
per twin, QoS 1, as in ``bench_edge_ingest.py``): latency is publish -> PUBACK at the
device, CPU is this process's alone.

    python benchmarks/bench_host.py                                  # 50/s, 1000/s, max
    python benchmarks/bench_host.py --mode mqtt --rates 1000,max
    python benchmarks/bench_host.py --rates 1000 --commit thread,inline --duration-s 5

Run it against another checkout's code with ``PYTHONPATH=/path/to/src`` (the output names
the twinedge source it ran). ``--commit`` chooses how the host commits (``thread``:
``commit_in_thread=True``; ``inline``: in the event loop; ``inline<=N``: in the event loop
when the batch has at most N records, else in the thread; ``default``: the host's own
choice); a value the version measured does not know is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import twinedge
from twinedge.edge import EdgeHost, wire
from twinedge.edge.server import DeviceSide
from twinedge.runtime.mqtt import EmbeddedBroker
from twinedge.runtime.mqtt import core as mqtt_core

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edge import quantiles
from bench_edge_ingest import Device


def replication_body(host_id: str, records: list[Any]) -> bytes:
    """The body the host's replicator posts, built the way this version builds it."""
    build = getattr(wire, "replication_body", None)
    if build is not None:
        return bytes(build(host_id, records))
    body = {"host": host_id, "records": [wire.record_to(r) for r in records]}
    return json.dumps(body).encode()


def payload(i: int, seq: int) -> bytes:
    pos = {"x_m": 100.0 + i, "y_m": 50.5, "vx_mps": 0.0, "vy_mps": 0.0}
    pos.update(t_s=round(time.time(), 6), seq=seq)
    return json.dumps({"position": pos}, separators=(",", ":")).encode()


def open_host(path: Path, commit: str) -> EdgeHost | None:
    params = inspect.signature(EdgeHost.open).parameters
    if commit == "default":
        return EdgeHost.open(path, "bench-host")
    if commit in ("thread", "inline"):
        return EdgeHost.open(path, "bench-host", commit_in_thread=commit == "thread")
    if commit.startswith("inline<=") and "inline_max_records" in params:
        return EdgeHost.open(path, "bench-host", inline_max_records=int(commit[8:]))
    return None


async def drain(host: EdgeHost) -> None:
    """Let the replicator take what is still pending (after the measured part), so the
    records it counts are every record committed (at most 10 s)."""
    for _ in range(1000):
        if host.replicated_seq >= host.last_seq:
            return
        await asyncio.sleep(0.01)


async def run_one(
    tmp: Path, twins: int, rate: str, duration_s: float, warmup_s: float, window: int, commit: str
) -> dict[str, Any]:
    path = Path(tempfile.mkdtemp(dir=tmp)) / "edge.sqlite"
    host = open_host(path, commit)
    if host is None:
        return {"offered_reports_per_s": rate, "commit": commit, "skipped": "unknown here"}
    ids = [f"bench:twin-{i}" for i in range(twins)]
    for tid in ids:
        await host.place(tid)
    loop = asyncio.get_running_loop()
    seqs = [0] * twins
    done: list[tuple[float, float]] = []  # (due at, latency s)
    replicated = [0]
    body_bytes = [0]

    async def report(i: int, due: float) -> None:
        seqs[i] += 1
        doc = mqtt_core.loads(payload(i, seqs[i]))  # as the gateway reads a payload
        await host.apply(ids[i], doc)
        now = time.perf_counter()
        done.append((due, now - due))

    async def replicator() -> None:  # builds what the host process would post
        while True:
            if not await host.wait_pending(1.0):
                continue
            records = host.pending(limit=1000)
            if not records:
                await asyncio.sleep(0.005)
                continue
            body_bytes[0] += len(replication_body(host.host_id, records))
            replicated[0] += host.ack_replicated(records[-1].seq)

    rep = asyncio.create_task(replicator())
    total_s = warmup_s + duration_s
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    commits0 = {"commits": host.commits, "records": host.records_committed}

    def mark() -> None:
        marks["cpu0"], marks["wall0"] = time.process_time(), time.perf_counter()
        commits0.update(commits=host.commits, records=host.records_committed)

    loop.call_later(warmup_s, mark)
    tasks: set[asyncio.Task[None]] = set()
    if rate == "max":

        async def device(i: int) -> None:
            while time.perf_counter() - t0 < total_s:
                await report(i, time.perf_counter())

        await asyncio.gather(*(device(i % twins) for i in range(twins * window)))
    else:
        per_s = float(rate)
        period = twins / per_s  # each twin reports every `period` s, from a phase of its own
        phase = np.random.default_rng(0).random(twins)
        k = np.arange(int(total_s / period) + 1)
        due_at = (t0 + (k[:, None] + phase[None, :]) * period).ravel()
        order = np.argsort(due_at, kind="stable")
        schedule = [(float(due_at[j]), int(j % twins)) for j in order if due_at[j] < t0 + total_s]
        pos = 0
        while pos < len(schedule):
            now = time.perf_counter()
            while pos < len(schedule) and schedule[pos][0] <= now:
                due, i = schedule[pos]
                pos += 1
                task = loop.create_task(report(i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if pos < len(schedule):
                await asyncio.sleep(max(0.0, schedule[pos][0] - time.perf_counter()))
        if tasks:
            await asyncio.gather(*tasks)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    commits = host.commits - commits0["commits"]
    records = host.records_committed - commits0["records"]
    await drain(host)
    rep.cancel()
    try:
        await rep
    except asyncio.CancelledError:
        pass
    committed = host.records_committed
    await host.close()
    measured = [lat for due, lat in done if due >= t0 + warmup_s]
    wall = wall1 - marks["wall0"]
    n = len(measured)
    lat = np.array(measured) * 1000
    return {
        "offered_reports_per_s": rate if rate == "max" else float(rate),
        "commit": commit,
        "reports_per_s": round(n / wall, 1),
        "latency_ms": quantiles(lat),
        "cpu_ms_per_report": round((cpu1 - marks["cpu0"]) * 1000 / n, 4) if n else None,
        "cpu_percent": round((cpu1 - marks["cpu0"]) * 100 / wall, 1),
        "records_per_commit": round(records / commits, 2) if commits else None,
        "reports_measured": n,
        "records_committed": committed,  # since the host opened: placements included
        "replicated_records": replicated[0],
    }


class _Server:
    """What :class:`DeviceSide` asks of a host process, for the benchmark: its host,
    redirects (none) and the core (every device admitted)."""

    def __init__(self, host: EdgeHost):
        self.host = host

    def redirect(self, twin_id: str) -> bool:
        return False

    async def core_post(self, path: str, body: Any) -> Any:
        return {"ok": True}


async def run_mqtt(
    tmp: Path, twins: int, rate: str, duration_s: float, warmup_s: float, window: int, commit: str
) -> dict[str, Any]:
    host = open_host(Path(tempfile.mkdtemp(dir=tmp)) / "edge.sqlite", commit)
    if host is None:
        return {"offered_reports_per_s": rate, "commit": commit, "skipped": "unknown here"}
    ids = [f"bench:twin-{i}" for i in range(twins)]
    for tid in ids:
        await host.place(tid)
    broker = EmbeddedBroker(DeviceSide(_Server(host)), "127.0.0.1", 0)  # type: ignore[arg-type]
    await broker.start()
    replicated = [0]

    async def replicator() -> None:
        while True:
            if not await host.wait_pending(1.0):
                continue
            records = host.pending(limit=1000)
            if not records:
                await asyncio.sleep(0.005)
                continue
            replication_body(host.host_id, records)
            replicated[0] += host.ack_replicated(records[-1].seq)

    rep = asyncio.create_task(replicator())
    config = {"port": broker.port, "ids": ids, "rate": rate, "seconds": warmup_s + duration_s}
    config.update(warmup_s=warmup_s, window=window)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load-generator", json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    if (await proc.stdout.readline()).strip() != b"GO":
        raise SystemExit("the load generator did not start")
    c0 = host.commits, host.records_committed
    await asyncio.sleep(warmup_s)
    cpu0, wall0, c0 = (
        time.process_time(),
        time.perf_counter(),
        (host.commits, host.records_committed),
    )
    await asyncio.sleep(duration_s)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    commits, records = host.commits - c0[0], host.records_committed - c0[1]
    out = json.loads(await proc.stdout.read())
    await proc.wait()
    await drain(host)
    rep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await rep
    await broker.stop()
    committed = host.records_committed
    await host.close()
    lat = np.array(out["latencies_s"]) * 1000
    n = lat.size
    return {
        "offered_reports_per_s": rate if rate == "max" else float(rate),
        "commit": commit,
        "reports_per_s": round(n / duration_s, 1),
        "latency_ms": quantiles(lat),
        "cpu_ms_per_report": round((cpu1 - cpu0) * 1000 / n, 4) if n else None,
        "cpu_percent": round((cpu1 - cpu0) * 100 / (wall1 - wall0), 1),
        "records_per_commit": round(records / commits, 2) if commits else None,
        "unacked_at_end": out["unacked"],
        "reports_measured": int(n),
        "records_committed": committed,  # since the host opened: placements included
        "replicated_records": replicated[0],
    }


async def load_generator(config: dict[str, Any]) -> None:
    """The child process: one raw MQTT connection per twin; prints ``GO`` when reporting
    begins, then the publish -> PUBACK latencies after the warm-up as JSON."""
    loop = asyncio.get_running_loop()
    ids, port = config["ids"], config["port"]
    pos = {"x_m": 100.0, "y_m": 50.5, "vx_mps": 0.0, "vy_mps": 0.0}

    async def open_one(tid: str) -> Device:
        _, dev = await loop.create_connection(
            lambda: Device(tid, pos, config["window"]), "127.0.0.1", port
        )
        await asyncio.wait_for(dev.connected, 60)
        return dev

    devices = list(await asyncio.gather(*(open_one(t) for t in ids)))
    per_device = None if config["rate"] == "max" else float(config["rate"]) / len(ids)
    phase = np.random.default_rng(0).random(len(devices))
    print("GO", flush=True)
    t0 = time.perf_counter()
    while (now := time.perf_counter()) - t0 < config["seconds"]:
        for d, ph in zip(devices, phase, strict=True):
            if per_device is None:
                while d.publish():
                    pass
            else:
                for _ in range(max(0, int((now - t0) * per_device + ph) - d.seq)):
                    if not d.publish():
                        break
        await asyncio.sleep(0.001 if per_device is None else 0.002)
    deadline = time.perf_counter() + 30
    while any(d.inflight and not d.lost for d in devices) and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    start, end = t0 + config["warmup_s"], t0 + config["seconds"]
    lat = [x for d in devices for sent, x in d.acked if start <= sent < end]
    for d in devices:
        if d.transport is not None:
            d.transport.write(b"\xe0\x00")  # DISCONNECT
            d.transport.close()
    print(json.dumps({"latencies_s": lat, "unacked": sum(len(d.inflight) for d in devices)}))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--twins", type=int, default=100)
    ap.add_argument("--rates", default="50,1000,max", help="reports/s of the host, or max")
    ap.add_argument("--duration-s", type=float, default=10.0, help="measured, after the warm-up")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--window", type=int, default=4, help="max: reports in flight per twin")
    ap.add_argument("--commit", default="default", help="default, thread, inline (comma-separated)")
    ap.add_argument("--mode", default="apply", help="apply, mqtt (comma-separated)")
    ap.add_argument("--load-generator", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_generator:
        asyncio.run(load_generator(json.loads(args.load_generator)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.mode.split(","):
            for rate in args.rates.split(","):
                for commit in args.commit.split(","):
                    run = run_mqtt if mode == "mqtt" else run_one
                    result = asyncio.run(
                        run(
                            Path(tmp), args.twins, rate, args.duration_s, args.warmup_s,
                            args.window, commit,
                        )
                    )  # fmt: skip
                    results.append({"mode": mode, **result})
    print(json.dumps({
        "benchmark": "host",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sqlite": sqlite3.sqlite_version,
        "twinedge_source": str(Path(twinedge.__file__).resolve().parent),
        "platform": platform.platform(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "command": "python " + " ".join(sys.argv),
        "results": results,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
