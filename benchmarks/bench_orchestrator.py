"""One live orchestrator cycle: 10,000 live twins of a real service (SQLite store) on the
built-in city's network (60 edge sites, 6 regional hubs, a cloud).

Times, per cycle: the snapshot of the live twins into arrays (the view), the policies
and the validation of their decisions, and the writes of the new hosts through the
service's single writer; apart from them, the forecast (the live state run 10 s ahead
in the simulator, every 10 s: here in cycle 0). Cycle 0 places every twin; the next cycles move a fifth of the
devices (a report each) and then re-place (greedy, every cycle) and migrate (threshold).

    python benchmarks/bench_orchestrator.py                 # 10,000 twins
    python benchmarks/bench_orchestrator.py --twins 2000 --cycles 3
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
from pathlib import Path

import numpy as np
import scipy

from twinedge.orchestrator import Orchestrator
from twinedge.orchestrator.live import LiveNetwork
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store
from twinedge.scenario import load_scenario
from twinedge.world import build_world

ADMIN = Principal("bench", "fleet", "admin")


async def bench(n_twins: int, cycles: int, placement: str, migration: str) -> dict:
    sc = load_scenario("city")
    world = build_world(sc, np.random.default_rng(0), network_only=True)
    rng = np.random.default_rng(1)
    lo, hi = world.bounds_m[:2], world.bounds_m[2:]
    with tempfile.TemporaryDirectory() as tmp:
        svc = TwinService(open_store(f"sqlite:///{Path(tmp) / 'twins.db'}"))
        await svc.start()
        try:
            xy = lo + rng.random((n_twins, 2)) * (hi - lo)
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    svc.put_thing(
                        ADMIN,
                        f"fleet:v{i:05d}",
                        {
                            "attributes": {"kind": "vehicle"},
                            "features": {
                                "position": {"properties": {"x_m": float(x), "y_m": float(y)}}
                            },
                        },
                    )
                    for i, (x, y) in enumerate(xy)
                )
            )
            load_s = time.perf_counter() - t0
            orch = Orchestrator(
                placement,
                migration,
                step_s=1.0,
                placement_period_s=1.0,  # re-place every cycle: the heaviest cycle
                rng=np.random.default_rng(2),
            )
            live = LiveNetwork(svc, sc, world, orch)
            rows = []
            for c in range(cycles):
                if c:  # a fifth of the devices move up to 300 m and report
                    movers = rng.choice(n_twins, n_twins // 5, replace=False)
                    step = rng.uniform(-300, 300, (movers.size, 2))
                    new = np.clip(xy[movers] + step, lo, hi)
                    xy[movers] = new
                    await asyncio.gather(
                        *(
                            svc.device_report(
                                f"fleet:v{i:05d}",
                                {"position": {"x_m": float(p[0]), "y_m": float(p[1])}},
                            )
                            for i, p in zip(movers, new, strict=True)
                        )
                    )
                t_snap = time.perf_counter()
                live.snapshot()
                snapshot_s = time.perf_counter() - t_snap
                report = await live.cycle()
                rows.append(
                    {
                        "cycle": c,
                        "twins": report.twins,
                        "placed": report.placed,
                        "migrations": report.migrations,
                        "snapshot_s": round(snapshot_s, 4),
                        "decide_s": round(report.decide_s, 4),
                        "view_policy_decisions_s": round(snapshot_s + report.decide_s, 4),
                        "cycle_with_writes_s": round(report.duration_s - report.forecast_s, 4),
                        "forecast_s": round(report.forecast_s, 4),
                        "error": report.error,
                    }
                )
        finally:
            await svc.stop()
    steady = [r["view_policy_decisions_s"] for r in rows[1:]] or [
        rows[0]["view_policy_decisions_s"]
    ]
    return {
        "twins": n_twins,
        "hosts": world.n_hosts,
        "placement": placement,
        "migration": migration,
        "load_twins_s": round(load_s, 2),
        "cycles": rows,
        "steady_view_policy_decisions_s_max": max(steady),
        "target_s": 1.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--twins", type=int, default=10_000)
    ap.add_argument("--cycles", type=int, default=4)
    ap.add_argument("--placement", default="greedy")
    ap.add_argument("--migration", default="threshold")
    args = ap.parse_args()
    result = asyncio.run(bench(args.twins, args.cycles, args.placement, args.migration))
    print(
        json.dumps(
            {
                "benchmark": "orchestrator_cycle",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "platform": platform.platform(),
                "command": "python " + " ".join(sys.argv),
                "result": result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
