"""The cost XR sessions add to the engine, and frame evaluation throughput.

Two simulations of the built-in ``city`` scaled to ``--entities`` (every group's count
scaled alike, edge sites scaled to keep the city's entities per site, the area to keep
its site density), one without and one with an ``xr:`` section (``--xr-share`` of the
pedestrians wear headsets: 90 fps split rendering, best-latency placement), are stepped
alternately in one process, so both see the same machine load; each step of each is
timed (wall and CPU time). The ratio of their seconds per entity-step is the XR overhead. A second part times
:func:`twinedge.xr.frames.generate_frames` alone, in frames per second.

    python benchmarks/bench_xr.py                      # 100k entities, 6 steps
    python benchmarks/bench_xr.py --entities 10000 --steps 3
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

from twinedge import __version__
from twinedge.engine.simulation import Simulation
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Scenario, Xr
from twinedge.world import build_world
from twinedge.xr.frames import FrameSpec, StreamState, generate_frames


def scaled_city(entities: int, xr_share: float | None) -> Scenario:
    """The built-in city with ``entities`` entities (and XR when ``xr_share`` is set)."""
    sc = load_scenario("city")
    d = sc.model_dump(mode="json", exclude_none=True)
    base = sum(g["count"] for g in d["entities"])
    f = entities / base
    for g in d["entities"]:
        g["count"] = round(g["count"] * f)
    gen = d["infrastructure"]["generate"]
    sites = max(1, round(gen["edge_sites"] * f))
    side = gen["area_m"][0] * float(np.sqrt(sites / gen["edge_sites"]))
    gen.update(edge_sites=sites, area_m=[side, side], regions=max(2, sites // 10))
    if xr_share is not None:
        d["xr"] = Xr(kinds=["pedestrian"], share=xr_share).model_dump(mode="json")
    return Scenario.model_validate(d)


def make_sim(sc: Scenario, steps: int) -> Simulation:
    world_rng, mob_rng, pol_rng, xr_rng = np.random.default_rng(1).spawn(4)
    return Simulation(
        build_world(sc, world_rng),
        "nearest",
        "threshold",
        steps=steps,
        step_s=1.0,
        placement_period_s=None,
        rng=pol_rng,
        mobility_rng=mob_rng,
        xr=sc.xr,
        xr_rng=xr_rng,
    )


def engine_overhead(entities: int, steps: int, xr_share: float) -> dict:
    plain = make_sim(scaled_city(entities, None), steps)
    with_xr = make_sim(scaled_city(entities, xr_share), steps)
    plain.reset()
    with_xr.reset()
    times = {"plain": 0.0, "xr": 0.0}
    cpu = {"plain": 0.0, "xr": 0.0}
    for k in range(steps):
        for name, sim in (
            (("plain", plain), ("xr", with_xr)) if k % 2 else (("xr", with_xr), ("plain", plain))
        ):
            t0, c0 = time.perf_counter(), time.process_time()
            sim.advance()
            if k:  # the first step (caches, first placement of the sessions) is not timed
                times[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
    n = plain.world.n_entities
    timed = steps - 1
    per_plain = times["plain"] / (n * timed)
    per_xr = times["xr"] / (n * timed)
    assert with_xr.xr is not None
    summary = with_xr.result().summary
    return {
        "entities": n,
        "hosts": plain.world.n_hosts,
        "xr_sessions": with_xr.xr.n_sessions,
        "xr_frames_per_step": round(float(with_xr.xr.frames.fps.sum())),
        "steps_timed": timed,
        "plain_us_per_entity_step": round(1e6 * per_plain, 3),
        "xr_us_per_entity_step": round(1e6 * per_xr, 3),
        "ratio": round(per_xr / per_plain, 3),
        # CPU time of the process: steadier than wall time when other work shares the machine
        "plain_cpu_us_per_entity_step": round(1e6 * cpu["plain"] / (n * timed), 3),
        "xr_cpu_us_per_entity_step": round(1e6 * cpu["xr"] / (n * timed), 3),
        "cpu_ratio": round(cpu["xr"] / cpu["plain"], 3),
        "xr_score": round(summary["xr_score"], 3),
        "xr_late_frame_ratio": round(summary["xr_late_frame_ratio"], 5),
    }


def frame_throughput(sessions: int, repeats: int) -> dict:
    spec = FrameSpec.make(sessions, fps=90.0)
    rng = np.random.default_rng(0)
    carry = StreamState.fresh(sessions)
    args = (
        np.full(sessions, 4.0), np.full(sessions, 3e8), np.full(sessions, 1.0),
        np.full(sessions, 0.5), np.zeros(sessions),
    )  # fmt: skip
    best = np.inf
    for k in range(repeats):
        t0 = time.perf_counter()
        generate_frames(spec, k, 1.0, *args, rng, carry)
        best = min(best, time.perf_counter() - t0)
    return {
        "sessions": sessions,
        "frames_per_call": sessions * 90,
        "best_of": repeats,
        "frames_per_s": round(sessions * 90 / best),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--xr-share", type=float, default=0.05)
    ap.add_argument("--frame-sessions", type=int, default=10_000)
    args = ap.parse_args()
    print(
        json.dumps(
            {
                "benchmark": "xr",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "twinedge": __version__,
                "platform": platform.platform(),
                "command": "python " + " ".join(sys.argv),
                "engine": engine_overhead(args.entities, args.steps, args.xr_share),
                "frames": frame_throughput(args.frame_sessions, 5),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
