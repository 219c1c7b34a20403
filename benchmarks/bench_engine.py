"""Engine throughput in entity-steps per second.

Each step: mobility (random waypoint) + attachment to the nearest access point + uplink
and latency evaluation + the migration policy + metrics. The initial placement
(``nearest``) and the first step are excluded from the timed part. Two policy pairs by
default: ``nearest+never`` (the engine's own cost: the trivial pair) and
``nearest+threshold`` (a migration policy with capacity checks on top).

    python benchmarks/bench_engine.py            # 1k, 10k, 100k entities
    python benchmarks/bench_engine.py --quick    # 1k and 10k only
    python benchmarks/bench_engine.py --entities 100000 --pairs nearest+never \\
        --baseline ../other-checkout/src --rounds 3

With ``--baseline SRC`` every case runs in fresh processes, alternating this checkout's
``src`` and the ``twinedge`` source tree ``SRC`` (``--rounds`` times each, the order
swapped every round so neither always runs first), and the JSON gives both medians, the
ratio, and whether the two produced the same numbers (a digest of the run's summary and
final state). Every result also gives the throughput per second of the process's CPU
time (all its threads), which other work on a shared machine disturbs less than the
wall-clock figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy

CASES = [(1_000, 100), (10_000, 300), (100_000, 1_000)]
PAIRS = ("nearest+never", "nearest+threshold")
HERE_SRC = Path(__file__).resolve().parents[1] / "src"


def scenario(entities: int, edges: int, steps: int):
    from twinedge.scenario import parse_scenario

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


def bench(entities: int, edges: int, steps: int, pair: str = "nearest+threshold") -> dict:
    import twinedge
    from twinedge.engine.simulation import Simulation
    from twinedge.policies.migration import resolve_migration
    from twinedge.policies.placement import resolve_placement
    from twinedge.world import build_world

    placement, migration = pair.split("+")
    sc = scenario(entities, edges, steps)
    root = np.random.default_rng(1)
    world_rng, mob_rng, pol_rng = root.spawn(3)
    world = build_world(sc, world_rng)
    sim = Simulation(
        world,
        resolve_placement(placement),
        resolve_migration(migration),
        steps=steps,
        step_s=1.0,
        placement_period_s=None,
        rng=pol_rng,
        mobility_rng=mob_rng,
    )
    marks: dict[int, tuple[float, float]] = {}

    def mark(k: int) -> None:
        marks[k] = (time.perf_counter(), time.process_time())

    t0 = time.perf_counter()
    res = sim.run(progress=mark)
    placement_s = marks[1][0] - t0  # includes the first step; removed below
    timed_steps = steps - 1
    loop_s = marks[steps][0] - marks[1][0]
    # CPU time of the process (all its threads): less disturbed by other work on the machine
    loop_cpu_s = marks[steps][1] - marks[1][1]
    digest = hashlib.sha256(json.dumps(res.summary, sort_keys=True).encode())
    for a in (sim.state.ap, sim.state.dist_m, sim.state.host, sim.state.latency_ms):
        digest.update(np.ascontiguousarray(a).tobytes())
    return {
        "entities": entities,
        "edge_servers": edges,
        "hosts": world.n_hosts,
        "pair": pair,
        "steps_timed": timed_steps,
        "loop_s": round(loop_s, 3),
        "entity_steps_per_s": round(entities * timed_steps / loop_s),
        "loop_cpu_s": round(loop_cpu_s, 3),
        "entity_steps_per_cpu_s": round(entities * timed_steps / loop_cpu_s),
        "initial_placement_and_first_step_s": round(placement_s, 3),
        "migrations": res.summary["migrations"],
        "deadline_miss_ratio": round(res.summary["deadline_miss_ratio"], 4),
        "digest": digest.hexdigest()[:16],
        "twinedge": str(Path(twinedge.__file__).resolve().parents[1]),
    }


def run_in(src: Path, entities: int, edges: int, steps: int, pair: str) -> dict:
    """One case in a fresh process that imports ``twinedge`` from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", f"{entities},{edges},{steps},{pair}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"bench_engine: the run with PYTHONPATH={src} failed:\n{out.stderr}")
    result = json.loads(out.stdout)
    if Path(result["twinedge"]) != src.resolve():
        sys.exit(f"bench_engine: PYTHONPATH={src} imported twinedge from {result['twinedge']}")
    return result


def side_by_side(
    baseline: Path, entities: int, edges: int, steps: int, pair: str, rounds: int
) -> dict:
    runs: dict[str, list[dict]] = {"baseline": [], "this": []}
    for r in range(rounds):
        order = [("baseline", baseline), ("this", HERE_SRC)]
        for name, src in order if r % 2 == 0 else order[::-1]:
            runs[name].append(run_in(src, entities, edges, steps, pair))
    med = {k: statistics.median(x["entity_steps_per_s"] for x in v) for k, v in runs.items()}
    cpu = {k: statistics.median(x["entity_steps_per_cpu_s"] for x in v) for k, v in runs.items()}
    return {
        "entities": entities,
        "edge_servers": edges,
        "pair": pair,
        "steps_timed": steps - 1,
        "rounds": rounds,
        "baseline_src": str(baseline.resolve()),
        "this_src": str(HERE_SRC),
        "baseline_entity_steps_per_s": [x["entity_steps_per_s"] for x in runs["baseline"]],
        "this_entity_steps_per_s": [x["entity_steps_per_s"] for x in runs["this"]],
        "baseline_median": round(med["baseline"]),
        "this_median": round(med["this"]),
        "speed_up": round(med["this"] / med["baseline"], 2),
        "baseline_cpu_entity_steps_per_s": [x["entity_steps_per_cpu_s"] for x in runs["baseline"]],
        "this_cpu_entity_steps_per_s": [x["entity_steps_per_cpu_s"] for x in runs["this"]],
        "baseline_cpu_median": round(cpu["baseline"]),
        "this_cpu_median": round(cpu["this"]),
        "speed_up_cpu": round(cpu["this"] / cpu["baseline"], 2),
        "same_results": len({x["digest"] for v in runs.values() for x in v}) == 1,
        "digests": {k: sorted({x["digest"] for x in v}) for k, v in runs.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="skip the 100k case")
    ap.add_argument("--steps", type=int, default=51)
    ap.add_argument(
        "--entities", type=int, action="append", help="only these cases (1000, 10000, 100000)"
    )
    ap.add_argument(
        "--pairs", default=",".join(PAIRS), help="placement+migration pairs, comma-separated"
    )
    ap.add_argument("--baseline", type=Path, help="a twinedge src tree to alternate with")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tree (--baseline)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        n, e, s, pair = args.worker.split(",")
        print(json.dumps(bench(int(n), int(e), int(s), pair)))
        return
    cases = CASES[:2] if args.quick else CASES
    if args.entities:
        cases = [c for c in CASES if c[0] in args.entities]
        if not cases:
            ap.error(f"--entities: expected some of {[c[0] for c in CASES]}")
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    if args.baseline:
        if not (args.baseline / "twinedge" / "__init__.py").is_file():
            ap.error(f"--baseline {args.baseline}: expected a src folder holding twinedge/")
        results = [
            side_by_side(args.baseline, n, e, args.steps, p, args.rounds)
            for n, e in cases
            for p in pairs
        ]
    else:
        results = [bench(n, e, args.steps, p) for n, e in cases for p in pairs]
    print(
        json.dumps(
            {
                "benchmark": "engine_throughput",
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
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
