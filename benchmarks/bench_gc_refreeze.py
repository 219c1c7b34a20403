"""Benchmark of the cycle collector's full-collection pauses when twins are created
after start: the heap frozen once at start, against frozen again after every full
collection (``twinedge.gcpauses.Refreezer``).

Each mode runs in a fresh process of its own: it imports FastAPI, pydantic and NumPy
(a part of what ``serve`` imports), freezes its heap as ``serve`` does once started,
then creates ``--twins`` twin documents of ``--features`` features and applies
``--updates`` device reports to them (RFC 7396 merge patches, as the service applies
them). The collector's pauses are timed by
``twinedge.gcpauses.PauseMeter``. Prints one JSON document: machine, parameters, per
mode the full collections (count, longest, total) and the young ones, and the ratios.

    python benchmarks/bench_gc_refreeze.py
    python benchmarks/bench_gc_refreeze.py --twins 2000 --updates 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import version
from typing import Any

MODES = ("frozen-once", "refreeze")

WORKLOAD = """
import gc, json, random, sys, time
import fastapi, numpy, pydantic  # held by serve: walked by each full collection unless frozen
from twinedge import gcpauses
from twinedge.jsonmerge import merge_patch

mode, twins, features, updates = sys.argv[1], *map(int, sys.argv[2:5])
meter = gcpauses.PauseMeter()
gc.collect()
gc.freeze()
meter.install()
if mode == "refreeze":
    gcpauses.Refreezer().install()


def document(i):
    return {
        "thingId": f"fleet:robot-{i}",
        "attributes": {"kind": "robot", "site": f"edge-{i % 60}"},
        "features": {
            f"sensor-{k}": {"properties": {"value": float(k), "unit": "C", "history": [k, k + 1]}}
            for k in range(features)
        },
    }


t0 = time.perf_counter()
things = {i: document(i) for i in range(twins)}
rng = random.Random(0)
for n in range(updates):
    i, k = rng.randrange(twins), rng.randrange(features)
    patch = {"features": {f"sensor-{k}": {"properties": {"value": float(n), "history": [n]}}}}
    things[i] = merge_patch(things[i], patch)
wall_s = time.perf_counter() - t0
print(json.dumps({"wall_s": wall_s, "pauses": meter.snapshot(), "frozen": gc.get_freeze_count()}))
"""


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKLOAD,
            mode,
            str(args.twins),
            str(args.features),
            str(args.updates),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise SystemExit(f"the {mode} run failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout)
    full, young = out["pauses"]["2"], [out["pauses"][g] for g in ("0", "1")]
    return {
        "full_collections": full["count"],
        "full_max_ms": round(full["max_s"] * 1e3, 2),
        "full_total_ms": round(full["seconds_total"] * 1e3, 1),
        "young_collections": sum(g["count"] for g in young),
        "young_total_ms": round(sum(g["seconds_total"] for g in young) * 1e3, 1),
        "wall_s": round(out["wall_s"], 2),
        "frozen_objects_at_end": out["frozen"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--twins", type=int, default=10_000, help="twins created after start")
    ap.add_argument("--features", type=int, default=40, help="features per twin")
    ap.add_argument("--updates", type=int, default=400_000, help="device reports applied")
    args = ap.parse_args(argv)
    if min(args.twins, args.features, args.updates) < 1:
        ap.error("--twins, --features and --updates must be at least 1")
    results = {mode: run_mode(mode, args) for mode in MODES}
    once, re = results["frozen-once"], results["refreeze"]
    print(
        json.dumps(
            {
                "benchmark": "gc_refreeze",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "twinedge": version("twinedge"),
                "params": vars(args),
                "results": results,
                "ratios": {  # frozen once / refreeze (null: refreeze had no full collection)
                    key: round(once[key] / re[key], 1) if re[key] > 0 else None
                    for key in ("full_max_ms", "full_total_ms")
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
