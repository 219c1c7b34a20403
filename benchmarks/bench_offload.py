"""Task offloading: the exact per-batch optimum and the engine's cost per entity-step.

Prints one JSON document with the machine (core count, Python/NumPy/SciPy versions) and:

(a) ``optimal``: one batch of ``--tasks`` tasks on the built-in ``city`` (60 edge sites,
    its regional hubs and the cloud; every host a candidate of every task), twins on
    their access point's nearest host, the hosts' free CPU over a ``--batch-s`` window
    (0.1 s: the batch needs most of it, so capacity binds): the MILP's wall time, objective, bound, gap and
    status, and every heuristic's objective and gap to that bound,
    ``(objective - bound) / objective``.
(b) ``engine``: seconds per entity-step of the run loop (observe + decide) on
    examples/offload-city.yaml scaled to ``--entities`` entities (and one edge site of
    200-400 GHz per 100 entities, as bench_engine.py), with and without its
    ``offloading`` section, runs alternating (without, with, without, with, ...) so the
    ratio is measured under the same load.

    python benchmarks/bench_offload.py                          # 1,000 tasks; 100k entities
    python benchmarks/bench_offload.py --entities 10000 --steps 3 --rounds 1

Target: the optimum proven for 1,000 tasks x 60 hosts in <= 10 s; offloading adds at
most 2x to the engine's cost per entity-step at 100k entities.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
import yaml

from twinedge.engine.simulation import Simulation
from twinedge.offload import OFFLOAD_POLICIES, Optimal, TaskBatch, TaskProblem
from twinedge.offload.run import OffloadRun
from twinedge.orchestrator.policy import as_policy
from twinedge.orchestrator.view import NetworkState, NetworkView
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Scenario
from twinedge.world import build_world

EXAMPLE = Path(__file__).parents[1] / "examples" / "offload-city.yaml"


def bench_optimal(n_tasks: int, seed: int, time_limit_s: float, step_s: float) -> dict:
    world = build_world(load_scenario("city"), np.random.default_rng(seed))
    ap, _ = world.attach(world.xy_m)
    cand = np.argsort(world.ap_host_ms, axis=1)[:, 0]
    state = NetworkState.at(world, world.xy_m, host=cand[ap])
    view = NetworkView(world, state, step_s=step_s, candidates_k=world.n_hosts)
    rng = np.random.default_rng(seed)
    n = n_tasks
    batch = TaskBatch.of(
        rng.integers(0, world.n_entities, n),
        rng.uniform(0.5, 3.0, n),  # Gcycles
        rng.uniform(5e4, 5e5, n),
        rng.uniform(1e3, 2e4, n),
        rng.uniform(50.0, 300.0, n),
        splittable=rng.random(n) < 0.5,
        f_local_ghz=rng.uniform(1.0, 2.5, n),
        kappa=1e-27,
        tx_power_w=world.tx_power_w[rng.integers(0, world.n_entities, n)],
    )
    problem = TaskProblem.of(batch, view)
    t0 = time.perf_counter()
    problem.options()
    options_s = time.perf_counter() - t0
    a = Optimal(time_limit_s=time_limit_s).assign(problem, rng)
    info = a.info
    bound = info["bound"]
    heur = {}
    for name in OFFLOAD_POLICIES:
        if name == "optimal":
            continue
        t0 = time.perf_counter()
        h = OFFLOAD_POLICIES[name]().assign(problem, np.random.default_rng(0))
        dt = time.perf_counter() - t0
        obj = problem.objective(h.host, h.local_fraction)
        heur[name] = {
            "objective": round(obj, 4),
            "gap_to_bound": round((obj - bound) / obj, 6),
            "wall_s": round(dt, 4),
        }
    return {
        "tasks": n,
        "batch_s": step_s,
        "hosts": world.n_hosts,
        "options_per_task": int(problem.options()[0].shape[1]),
        "free_gcycles": round(float(problem.cap_gcycles.sum()), 1),
        "task_gcycles": round(float(batch.gcycles.sum()), 1),
        "options_s": round(options_s, 4),
        "wall_s": round(info["solve_s"], 3),
        "objective": round(info["objective"], 4),
        "bound": round(bound, 4),
        "gap": info["gap"],
        "status": info["status"],
        "heuristics": heur,
    }


def scaled(entities: int, rate_hz: float | None = None) -> Scenario:
    """The example scaled to ``entities``; every kind's tasks Poisson at ``rate_hz``
    per device when given (the example's own arrivals when ``None``)."""
    d = yaml.safe_load(EXAMPLE.read_text())
    # the infrastructure grows with the entities as in bench_engine.py: 1 edge site per
    # 100 entities at the built-in city's site density, 200-400 GHz each
    edges = max(12, entities // 100)
    side = float(np.sqrt(edges / 60) * 4000)
    d["infrastructure"]["generate"].update(
        area_m=[side, side],
        edge_sites=edges,
        regions=max(2, edges // 10),
        edge_cpu_ghz=[200, 400],
        edge_mem_gb=[400, 800],
    )
    total = sum(g["count"] for g in d["entities"])
    for g in d["entities"]:
        g["count"] = round(g["count"] * entities / total)
    if rate_hz is not None:
        for spec in d["offloading"]["tasks"].values():
            spec.pop("period_s", None)
            spec["rate_hz"] = rate_hz
    return Scenario.model_validate(d)


def engine_run(sc: Scenario, steps: int, seed: int, offload: bool) -> tuple[float, float, int, int]:
    """Seconds of ``steps`` steps (after the initial placement) of wall and of CPU time,
    entities, tasks."""
    root = np.random.default_rng(seed)
    world_rng, mobility_rng, policy_rng = root.spawn(3)
    world = build_world(sc, world_rng)
    run = None
    if offload and sc.offloading is not None:
        (rng,) = root.spawn(1)
        run = OffloadRun(sc.offloading, world, rng)
    sim = Simulation(
        world,
        as_policy("nearest", "placement"),
        as_policy("threshold", "migration"),
        steps=steps,
        step_s=sc.run.step_s,
        placement_period_s=None,
        rng=policy_rng,
        mobility_rng=mobility_rng,
        offload=run,
    )
    sim.reset()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        sim.observe()
        sim.decide()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, cpu, world.n_entities, run.n if run is not None else 0


def bench_engine(
    entities: int, steps: int, rounds: int, seed: int, policy: str, rate_hz: float | None
) -> dict:
    sc = scaled(entities, rate_hz)
    assert sc.offloading is not None
    sc_with = sc.model_copy(
        update={"offloading": sc.offloading.model_copy(update={"policy": policy})}
    )
    without, with_, without_cpu, with_cpu = [], [], [], []
    n = tasks = 0
    for _ in range(rounds):
        t, c, n, _ = engine_run(sc, steps, seed, offload=False)
        without.append(t / (n * steps))
        without_cpu.append(c / (n * steps))
        t, c, n, tasks = engine_run(sc_with, steps, seed, offload=True)
        with_.append(t / (n * steps))
        with_cpu.append(c / (n * steps))
    a, b = float(np.median(without)), float(np.median(with_))
    ac, bc = float(np.median(without_cpu)), float(np.median(with_cpu))
    return {
        "entities": n,
        "steps": steps,
        "rounds": rounds,
        "policy": policy,
        "task_rate_hz": rate_hz if rate_hz is not None else "the example's",
        "tasks_per_entity_step": round(tasks / (n * steps), 4),
        "without_us_per_entity_step": round(a * 1e6, 3),
        "with_us_per_entity_step": round(b * 1e6, 3),
        "ratio": round(b / a, 3),
        # CPU time of the process: steadier than wall time when other work shares the machine
        "without_cpu_us_per_entity_step": round(ac * 1e6, 3),
        "with_cpu_us_per_entity_step": round(bc * 1e6, 3),
        "cpu_ratio": round(bc / ac, 3),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument(
        "--batch-s", type=float, default=0.1, help="(a): the batch's window (free CPU x window)"
    )
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--policy", default="greedy", help="offloading policy of (b)")
    ap.add_argument(
        "--rates",
        default="0.1,example",
        help="(b): task arrival rates per device, Hz, comma-separated; 'example' keeps "
        "the example's arrivals (about 1.7 tasks per entity-step)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-engine", action="store_true")
    args = ap.parse_args(argv)
    out: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "platform": platform.platform(),
        },
        "optimal": bench_optimal(args.tasks, args.seed, args.time_limit, args.batch_s),
    }
    if not args.skip_engine:
        out["engine"] = [
            bench_engine(
                args.entities,
                args.steps,
                args.rounds,
                args.seed,
                args.policy,
                None if r.strip() == "example" else float(r),
            )
            for r in args.rates.split(",")
        ]
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
