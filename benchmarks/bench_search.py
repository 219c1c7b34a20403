"""Benchmark of the twin stores: durable commit of update batches and indexed search.

Loads N twins (default 100,000) through ``Store.commit`` in batches of 1,000 creations,
then times

* ``commit`` of batches of 1,000 updates (one reported property each, as a device
  report produces: an RFC 6902 ``replace`` of one leaf), durable on return;
* ``search`` (limit 25) for a set of indexed filters, each run with varied values;
* ``count`` and ``aggregate``.

and prints one JSON document with the machine's core count and the library versions.

    python benchmarks/bench_search.py                       # SQLite in a temp folder
    python benchmarks/bench_search.py --postgres postgresql://user@127.0.0.1:5432/db
    python benchmarks/bench_search.py --twins 20000 --repeat 20

The PostgreSQL database must be empty (or use ``?options=-csearch_path%3Dbench`` on a
fresh schema). Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from twinedge.runtime.store import Change, Scope, SearchQuery, Store, open_store

KINDS = ["vehicle", "bike", "robot", "drone", "sensor"]
AREA_M = 10_000.0


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def make_doc(i: int, rev: int, now: float, rng: random.Random) -> dict[str, Any]:
    return {
        "thingId": f"fleet:twin-{i:06d}",
        "attributes": {
            "kind": KINDS[i % len(KINDS)],
            "serial": f"SN-{i:06d}",
            "model": f"m{i % 37}",
            "owner": f"owner-{i % 1000}",
            "year": 2015 + i % 10,
        },
        "features": {
            "battery": {
                "properties": {"level": rng.randint(0, 100), "temp_c": 20.5, "voltage_v": 3.7}
            },
            "location": {"properties": {"x": rng.uniform(0, AREA_M), "y": rng.uniform(0, AREA_M)}},
            "status": {"properties": {"mode": "idle", "ok": True}, "desiredProperties": {}},
        },
        "_revision": rev,
        "_created": rfc3339(now),
        "_modified": rfc3339(now),
        "_domain": f"dom-{i % 10}",
        "_host": f"edge-{i % 50}",
    }


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def summary_ms(xs: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in xs]
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(pct(ms, 0.95), 2),
        "max_ms": round(max(ms), 2),
        "n": len(ms),
    }


def load(store: Store, n: int, rng: random.Random) -> tuple[dict[int, dict], list[float]]:
    docs: dict[int, dict] = {}
    times = []
    now = time.time()
    for start in range(0, n, 1000):
        batch = []
        for i in range(start, min(n, start + 1000)):
            d = make_doc(i, 1, now, rng)
            docs[i] = d
            batch.append(Change(d["thingId"], d["_domain"], 1, now, d, [], "bench", "bench"))
        t0 = time.perf_counter()
        store.commit(batch)
        times.append(time.perf_counter() - t0)
    return docs, times


def updates(
    store: Store, docs: dict[int, dict], batches: int, rng: random.Random, cpu: list[float]
) -> list[float]:
    """Wall time of each commit; ``cpu`` gets the process CPU time of each (all threads)."""
    times = []
    ids = list(docs)
    for _ in range(batches):
        now = time.time()
        batch = []
        for i in rng.sample(ids, 1000):
            old = docs[i]
            level = rng.randint(0, 100)
            new = {**old, "_revision": old["_revision"] + 1, "_modified": rfc3339(now)}
            new["features"] = {
                **old["features"],
                "battery": {
                    "properties": {**old["features"]["battery"]["properties"], "level": level}
                },
            }
            docs[i] = new
            ops = [{"op": "replace", "path": "/features/battery/properties/level", "value": level}]
            batch.append(
                Change(
                    new["thingId"], new["_domain"], new["_revision"], now, new, ops, "mqtt", "dev"
                )
            )
        c0, t0 = time.process_time(), time.perf_counter()
        store.commit(batch)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times


def queries(n: int, rng: random.Random) -> dict[str, Any]:
    """name -> function(rng) -> SearchQuery."""

    def serial(r):
        return SearchQuery(f'eq(attributes/serial,"SN-{r.randrange(n):06d}")')

    def kind(r):
        return SearchQuery(f'eq(attributes/kind,"{r.choice(KINDS)}")')

    def kind_low(r):
        return SearchQuery(
            f'and(eq(attributes/kind,"{r.choice(KINDS)}"),lt(features/battery/properties/level,{r.randint(3, 10)}))'
        )

    def near(r):
        x, y = r.uniform(0, AREA_M), r.uniform(0, AREA_M)
        return SearchQuery(f"within(features/location/properties,circle({x:.1f},{y:.1f},150))")

    def range_sorted(r):
        return SearchQuery(
            f"gt(features/battery/properties/level,{r.randint(97, 99)})",
            sort=(("features/battery/properties/level", False),),
        )

    def prefix(r):
        return SearchQuery(f'like(thingId,"fleet:twin-{r.randrange(max(1, n // 100)):04d}*")')

    def scoped(r):
        d = f"dom-{r.randrange(10)}"
        return SearchQuery(f'eq(attributes/model,"m{r.randrange(37)}")', Scope((d,)))

    def host(r):
        return SearchQuery(f'eq(_host,"edge-{r.randrange(50)}")')

    def no_filter_page2(r):
        return SearchQuery(None, limit=25)

    return {
        "eq_unique_serial": serial,
        "eq_kind_1_of_5": kind,
        "and_kind_level_lt": kind_low,
        "within_150m": near,
        "gt_level_sorted_desc": range_sorted,
        "like_thingId_prefix": prefix,
        "scope_domain_eq_model": scoped,
        "eq_host_column": host,
        "no_filter_first_page": no_filter_page2,
    }


def run(url: str, n: int, repeat: int, update_batches: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    store = open_store(url)
    t0 = time.perf_counter()
    docs, load_times = load(store, n, rng)
    load_s = time.perf_counter() - t0
    cpu: list[float] = []
    upd = updates(store, docs, update_batches, rng, cpu)
    if url.startswith("postgres"):  # what autovacuum does in steady state
        conn = store._conn()  # type: ignore[attr-defined]
        conn.execute("VACUUM ANALYZE")
    out: dict[str, Any] = {
        "load_twins": n,
        "load_s": round(load_s, 2),
        "commit_1000_creations": summary_ms(load_times),
        "commit_1000_updates": summary_ms(upd),
        "commit_1000_updates_process_cpu": summary_ms(cpu),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "search_limit_25": {},
    }
    for name, make in queries(n, rng).items():
        times, hits = [], []
        for _ in range(repeat):
            q = make(rng)
            t = time.perf_counter()
            page = store.search(q)
            times.append(time.perf_counter() - t)
            hits.append(len(page.items))
        out["search_limit_25"][name] = {
            **summary_ms(times),
            "mean_hits": round(statistics.mean(hits), 1),
        }
    for name, fn in {
        "count_eq_kind": lambda: store.count('eq(attributes/kind,"robot")', Scope(None)),
        "count_within": lambda: store.count(
            "within(features/location/properties,circle(5000,5000,500))", Scope(None)
        ),
        "aggregate_avg_level_by_kind": lambda: store.aggregate(
            None, Scope(None), "attributes/kind", "avg", "features/battery/properties/level"
        ),
        "aggregate_count_by_domain_filtered": lambda: store.aggregate(
            "lt(features/battery/properties/level,10)", Scope(None), "_domain", "count", None
        ),
    }.items():
        times = []
        for _ in range(max(3, repeat // 10)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = summary_ms(times)
    store.close()
    return out


def versions(pg_url: str | None) -> dict[str, Any]:
    v: dict[str, Any] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    try:
        import psycopg

        v["psycopg"] = psycopg.__version__
        if pg_url:
            with psycopg.connect(pg_url) as c:
                v["postgresql"] = c.execute("SHOW server_version").fetchone()[0]
    except ImportError:
        pass
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--twins", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=50, help="runs of each search")
    ap.add_argument("--update-batches", type=int, default=20)
    ap.add_argument("--postgres", help="also run against this (empty) PostgreSQL database")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    result: dict[str, Any] = {
        "benchmark": "store_search",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(a.postgres),
        "stores": {},
    }
    if not a.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            result["stores"]["sqlite"] = run(
                f"sqlite:///{tmp}/bench.db", a.twins, a.repeat, a.update_batches, a.seed
            )
    if a.postgres:
        result["stores"]["postgres"] = run(a.postgres, a.twins, a.repeat, a.update_batches, a.seed)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
