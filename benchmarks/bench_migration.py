"""Live twin migration between edge hosts under device load: downtime per method.

In one process and one asyncio event loop: ``--hosts`` EdgeHosts, each with its own
SQLite log (WAL, ``synchronous=FULL``; ``--synchronous NORMAL`` to compare) in a
temporary folder; ``--twins`` twins with
about ``--state-bytes`` of state each, spread over the hosts; one simulated device per
twin sending reports in order (the next one after the previous was acknowledged) at an
aggregate ``--rate`` updates/s, following redirects (``NotOwnerError`` -> new owner,
``TwinNotReadyError`` -> retry after 0.2 ms) as a device edge would; a replicator per host
shipping the outbox to a ``ReplicaApplier`` every 20 ms. Meanwhile one migrator moves
random twins (one ``numpy.random.Generator``, ``--seed``) to random other hosts, one at a
time, alternating pre-copy and stop-and-copy, until each method made ``--migrations``
(or ``--max-seconds`` passed).

Every report ``{"seq": {"n": k}}`` carries the device's k-th update of that twin; the
twin's behaviour counts what it applies, and counts an ``n`` that is not the next one
(a skipped update: lost; an ``n`` seen before: applied twice). At the end: acknowledged
updates lost and applied twice (must both be 0), and the replica compared with every
owner.

Honest scope: in-process, no network hop between hosts or to devices, so the downtime is
the protocol's own cost (two durable commits, fence and adopt, and the final copy), not a
WAN's. The process/MQTT version comes later.

Prints one JSON document. Run: ``python benchmarks/bench_migration.py`` (about a minute)
or ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from twinedge.edge import (
    EdgeHost,
    MigrationReport,
    NotOwnerError,
    ReplicaApplier,
    TwinBehaviour,
    TwinNotReadyError,
    TwinView,
    migrate,
)
from twinedge.edge.host import INLINE_MAX_RECORDS


class Counter(TwinBehaviour):
    """Counts applied updates and any ``n`` that is not the next one."""

    name = None

    def on_report(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> dict:
        p = twin.properties("seq")
        n, last = report["seq"]["n"], p.get("n", 0)
        return {
            "features": {
                "seq": {
                    "properties": {
                        "n": max(n, last),
                        "count": p.get("count", 0) + 1,
                        "skipped": p.get("skipped", 0) + (n > last + 1),
                        "repeated": p.get("repeated", 0) + (n <= last),
                    }
                }
            }
        }


def state(i: int, state_bytes: int) -> dict[str, Any]:
    """A twin document of about ``state_bytes`` bytes: ~100-byte attributes."""
    return {
        "attributes": {
            f"a{k:03d}": f"value of attribute {k} of twin {i} " + "x" * 60
            for k in range(max(1, state_bytes // 100))
        },
        "features": {"seq": {"properties": {"n": 0, "count": 0, "skipped": 0, "repeated": 0}}},
    }


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def ms(xs: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(pct(xs, 50) * 1e3, 3),
        "p99_ms": round(pct(xs, 99) * 1e3, 3),
        "max_ms": round(max(xs) * 1e3, 3) if xs else float("nan"),
        "mean_ms": round(float(np.mean(xs)) * 1e3, 3) if xs else float("nan"),
    }


async def bench(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    names = [f"edge-{i}" for i in range(args.hosts)]
    hosts = {n: EdgeHost.open(root / f"{n}.sqlite", n, synchronous=args.synchronous) for n in names}
    twins = [f"bench:t{i}" for i in range(args.twins)]
    where = {t: names[i % len(names)] for i, t in enumerate(twins)}
    for i, t in enumerate(twins):
        await hosts[where[t]].place(t, state(i, args.state_bytes), behaviour="__main__:Counter")
    snapshot_bytes = len((await hosts[where[twins[0]]].export_snapshot(twins[0])).document)
    await hosts[where[twins[0]]].abort_export(twins[0])

    acked = dict.fromkeys(twins, 0)
    latency_s: list[float] = []
    counters = {"redirects": 0, "not_ready_retries": 0}
    stop = asyncio.Event()  # devices stop sending
    devices_done = asyncio.Event()  # ... and their last updates are acknowledged
    interval_s = len(twins) / args.rate

    async def device(twin: str, offset_s: float) -> None:
        n = 0
        next_t = time.perf_counter() + offset_s
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_t - time.perf_counter()))
            next_t += interval_s
            n += 1
            t0 = time.perf_counter()
            for hop in range(10_000):
                try:
                    await hosts[where[twin]].apply(twin, {"seq": {"n": n}})
                    break
                except NotOwnerError as e:
                    if e.owner is None or hop > 100:
                        raise RuntimeError(f"redirect loop for {twin}: {e}") from e
                    where[twin] = e.owner
                    counters["redirects"] += 1
                except TwinNotReadyError:
                    counters["not_ready_retries"] += 1
                    await asyncio.sleep(0.0002)
            latency_s.append(time.perf_counter() - t0)
            acked[twin] = n

    replica = ReplicaApplier()
    repl_lag_s: list[float] = []

    async def replicator(h: EdgeHost) -> None:
        while True:
            recs = h.pending(limit=10_000)
            last = replica.apply_all(recs)
            if last:
                now = time.time()
                repl_lag_s.extend(now - r.time_s for r in recs if r.seq <= last)
                h.ack_replicated(last)
            if devices_done.is_set() and not h.pending(limit=1):
                return
            await asyncio.sleep(0.02)

    reports: dict[str, list[MigrationReport]] = {"pre-copy": [], "stop-and-copy": []}

    async def migrator() -> None:
        deadline = time.perf_counter() + args.max_seconds
        methods = ["pre-copy", "stop-and-copy"]
        i = 0
        while min(len(v) for v in reports.values()) < args.migrations:
            if time.perf_counter() > deadline:
                break
            method = methods[i % 2]
            i += 1
            twin = twins[int(rng.integers(len(twins)))]
            src = next(n for n, h in hosts.items() if h.status(twin).status.value == "owned")
            others = [n for n in names if n != src]
            dst = others[int(rng.integers(len(others)))]
            rep = await migrate(hosts[src], hosts[dst], twin, method)  # type: ignore[arg-type]
            reports[method].append(rep)
            await asyncio.sleep(args.gap_ms / 1e3)

    await asyncio.sleep(0)
    devices = [asyncio.ensure_future(device(t, float(rng.uniform(0, interval_s)))) for t in twins]
    replicators = [asyncio.ensure_future(replicator(h)) for h in hosts.values()]
    await asyncio.sleep(args.warmup_s)
    commits0 = {n: (h.commits, h.records_committed) for n, h in hosts.items()}
    latency_s.clear()
    acked0 = sum(acked.values())
    t_start = time.perf_counter()
    await migrator()
    duration_s = time.perf_counter() - t_start
    acked_in_window = sum(acked.values()) - acked0
    stop.set()
    await asyncio.gather(*devices)
    devices_done.set()
    await asyncio.gather(*replicators)

    # correctness: every acknowledged update applied exactly once, replica == owners
    lost = twice = 0
    replica_ok = True
    for t in twins:
        owners = [h for h in hosts.values() if h.status(t).status.value == "owned"]
        assert len(owners) == 1, f"{t} has {len(owners)} owners"
        p = owners[0].twin(t).properties("seq")
        lost += p["skipped"] + max(0, acked[t] - p["count"])
        twice += p["repeated"] + max(0, p["count"] - acked[t])
        r = replica.twin(t)
        replica_ok &= r is not None and r.document == owners[0].twin(t).document
    commits = sum(h.commits - commits0[n][0] for n, h in hosts.items())
    records = sum(h.records_committed - commits0[n][1] for n, h in hosts.items())
    for h in hosts.values():
        await h.close()

    def per_method(rs: list[MigrationReport]) -> dict[str, Any]:
        return {
            "migrations": len(rs),
            "downtime": ms([r.downtime_s for r in rs]),
            "downtime_parts": {
                "fence": ms([r.fence_s for r in rs]),
                "copy": ms([r.copy_s for r in rs]),
                "adopt": ms([r.adopt_s for r in rs]),
            },
            "total": ms([r.total_s for r in rs]),
            "bytes_copied_mean": round(float(np.mean([r.bytes_copied for r in rs])), 1),
            "rounds_mean": round(float(np.mean([r.rounds for r in rs])), 3),
            "changes_copied_mean": round(float(np.mean([r.changes_copied for r in rs])), 3),
        }

    pre, stop_copy = per_method(reports["pre-copy"]), per_method(reports["stop-and-copy"])
    return {
        "parameters": {
            "hosts": args.hosts,
            "twins": args.twins,
            "state_bytes_target": args.state_bytes,
            "snapshot_bytes": snapshot_bytes,
            "offered_updates_per_s": args.rate,
            "migrations_per_method": args.migrations,
            "gap_between_migrations_ms": args.gap_ms,
            "seed": args.seed,
            "log": f"SQLite WAL, synchronous={args.synchronous}, one file per host, batches of up to {INLINE_MAX_RECORDS} records committed in the event loop, larger ones in a worker thread",
        },
        "load": {
            "duration_s": round(duration_s, 2),
            "updates_acknowledged": acked_in_window,
            "achieved_updates_per_s": round(acked_in_window / duration_s),
            "update_latency": ms(latency_s),
            "redirects": counters["redirects"],
            "not_ready_retries": counters["not_ready_retries"],
            "records_per_commit": round(records / max(1, commits), 2),
        },
        "migration": {"pre-copy": pre, "stop-and-copy": stop_copy},
        "pre_copy_over_stop_and_copy": {
            "p50": round(pre["downtime"]["p50_ms"] / stop_copy["downtime"]["p50_ms"], 3),
            "p99": round(pre["downtime"]["p99_ms"] / stop_copy["downtime"]["p99_ms"], 3),
        },
        "replication_lag": ms(repl_lag_s),
        "correctness": {
            "acknowledged_updates_lost": lost,
            "acknowledged_updates_applied_twice": twice,
            "replica_equals_owners": replica_ok,
        },
        "target": {
            "pre_copy_p99_downtime_ms": 10,
            "met": pre["downtime"]["p99_ms"] <= 10 and lost == 0 and twice == 0,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--twins", type=int, default=200)
    ap.add_argument("--state-bytes", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="offered updates/s, all twins")
    ap.add_argument("--migrations", type=int, default=500, help="per method")
    ap.add_argument("--gap-ms", type=float, default=5.0, help="pause between migrations")
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--max-seconds", type=float, default=180.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="FULL: acknowledged survives power loss (fsync per commit); NORMAL: a process crash",
    )
    ap.add_argument("--quick", action="store_true", help="100 migrations per method")
    args = ap.parse_args()
    if args.quick:
        args.migrations = 100
    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="twinedge-bench-migration-") as d:
        result = asyncio.run(bench(args, Path(d)))
    out = {
        "benchmark": "edge migration (in-process)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "numpy": version("numpy"),
            "sqlite": sqlite3.sqlite_version,
            "twinedge": version("twinedge"),
            "load_average_1m_at_start": load_before,
        },
        "note": (
            "in-process: hosts, devices and the migrator share one asyncio event loop; no "
            "network hop, so downtime is the protocol's own cost (fence commit, final copy, "
            "adopt commit), not a link's. The process/MQTT version comes later."
        ),
        **result,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
