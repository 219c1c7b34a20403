"""Engine throughput in entity-steps per second.

Each step: mobility (random waypoint) + attachment to the nearest access point + uplink
and latency evaluation + the threshold migration policy. The initial placement (nearest)
is excluded from the timed part.

    python benchmarks/bench_engine.py            # 1k, 10k, 100k entities
    python benchmarks/bench_engine.py --quick    # 1k and 10k only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import scipy

from twinedge.engine.simulation import Simulation
from twinedge.policies.migration import resolve_migration
from twinedge.policies.placement import resolve_placement
from twinedge.scenario import parse_scenario
from twinedge.world import build_world

CASES = [(1_000, 100), (10_000, 300), (100_000, 1_000)]


def scenario(entities: int, edges: int, steps: int):
    side = float(np.sqrt(edges / 60) * 4000)  # keep the built-in city's site density
    return parse_scenario(
        {
            "version": 1,
            "name": f"bench-{entities}x{edges}",
            "infrastructure": {
                "generate": {
                    "area_m": [side, side],
                    "edge_sites": edges,
                    "regions": max(2, edges // 10),
                    "edge_cpu_ghz": [200, 400],
                    "edge_mem_gb": [400, 800],
                }
            },
            "entities": [
                {
                    "count": entities,
                    "mobility": {"model": "random_waypoint", "speed_mps": [1, 20]},
                    "twin": {"latency_req_ms": 10},
                }
            ],
            "run": {"steps": steps},
        }
    )


def bench(entities: int, edges: int, steps: int) -> dict:
    sc = scenario(entities, edges, steps)
    root = np.random.default_rng(1)
    world_rng, mob_rng, pol_rng = root.spawn(3)
    world = build_world(sc, world_rng)
    sim = Simulation(
        world,
        resolve_placement("nearest"),
        resolve_migration("threshold"),
        steps=steps,
        step_s=1.0,
        placement_period_s=None,
        rng=pol_rng,
        mobility_rng=mob_rng,
    )
    marks: dict[int, float] = {}
    t0 = time.perf_counter()
    res = sim.run(progress=lambda k: marks.setdefault(k, time.perf_counter()))
    placement_s = marks[1] - t0  # includes the first step; removed below
    timed_steps = steps - 1
    loop_s = marks[steps] - marks[1]
    return {
        "entities": entities,
        "edge_servers": edges,
        "hosts": world.n_hosts,
        "steps_timed": timed_steps,
        "loop_s": round(loop_s, 3),
        "entity_steps_per_s": round(entities * timed_steps / loop_s),
        "initial_placement_and_first_step_s": round(placement_s, 3),
        "migrations": res.summary["migrations"],
        "deadline_miss_ratio": round(res.summary["deadline_miss_ratio"], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="skip the 100k case")
    ap.add_argument("--steps", type=int, default=51)
    args = ap.parse_args()
    cases = CASES[:2] if args.quick else CASES
    results = [bench(n, e, args.steps) for n, e in cases]
    print(
        json.dumps(
            {
                "benchmark": "engine_throughput",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "platform": platform.platform(),
                "command": "python " + " ".join(sys.argv),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
