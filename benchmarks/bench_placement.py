"""Placement quality and time: nearest, greedy and optimal on random and EUA instances.

Prints one JSON document: the machine (core count, Python/NumPy/SciPy versions) and,
per instance and policy, the status, objective, the optimal policy's valid lower bound,
the gap of every answer to that bound, the solve time, or the error.

    python benchmarks/bench_placement.py                  # everything (~5 min)
    python benchmarks/bench_placement.py --quick          # small instances only
    python benchmarks/bench_placement.py --markdown docs/benchmarks.md
    python benchmarks/bench_placement.py --optimal-scale          # 10,000 x 300 at 60 s
    python benchmarks/bench_placement.py --optimal-scale --budgets 60,120
    python benchmarks/bench_placement.py --optimal-vs-milp --repeats 3   # 200 x 16

``--optimal-scale`` runs the optimal policy on the 10,000 x 300 instance (``random_instance``
with its defaults: hot spots, every pair allowed, capacities 1.3x demand) at each budget
and reports its gap, bound, how it was solved and when it first came within 1 % of its
final bound. ``--optimal-vs-milp`` solves 200 x 16 instances with the optimal policy and
with plain HiGHS on the whole MILP (and CP-SAT when OR-Tools is installed), alternating
the solvers in one run, and reports the times and their ratio.
    python benchmarks/bench_placement.py --sizes                # re-placement vs entities
    python benchmarks/bench_placement.py --sizes 2000,20000 --repeat 2
    python benchmarks/bench_placement.py --setup                # 1,000,000 x 675 set-up

``--markdown`` rewrites only the ``## Placement quality and time`` section of that file.

``--sizes`` times a ``greedy`` re-placement of the built-in city at each entity count
(``entities.count``, as ``--param`` sets it; the cloud's capacity grows in proportion
beyond 2,000 entities, since 200,000 twins do not fit in the built-in city): the twins are placed, move for 300 s, and
the orchestrator re-places them (problem construction, solve, checks and the moves
applied). It prints the median over ``--repeat`` re-placements per size and the
exponent ``b`` of the least-squares fit ``time = a * entities^b`` (1 = linear).

``--setup`` builds a world of 1,000,000 entities on 613 edge sites, 61 regional hubs and
a cloud (675 hosts; every capacity scaled with the entities in the built-in city's
proportion) and places every twin with ``nearest`` and with ``greedy``, each in its own
process, printing the time of each phase and the process's peak resident memory.

The EUA instance uses the Melbourne CBD data of the EUA dataset (816 users, 125 Optus
sites) when ``../shared/datasets/eua`` exists next to the repository (or under
``$TWINEDGE_DATASETS``): lat/lon are projected to local metres (equirectangular about
the mean), every user gets a twin with a random demand (cpu U(0.2, 2) GHz, mem
U(0.25, 4) GB), every site a capacity (sizes 1x/2x/4x with +-20 % per resource) scaled
to 1.3x the total demand, and latency = 1 ms + distance / (500 m/ms): a 1 ms access and
processing floor plus 2 ms per km for the metro path, whose switching and queueing
(about one hop per 500 m) dominate fibre propagation (0.005 ms/km).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from twinedge.errors import TwinedgeError
from twinedge.policies.placement import (
    PlacementProblem,
    random_instance,
    relative_gap,
    resolve_placement,
    solve_placement,
)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Placement quality and time"


def eua_dir() -> Path:
    base = Path(os.environ.get("TWINEDGE_DATASETS", ROOT.parent / "shared" / "datasets"))
    return base / "eua"


def eua_instance(rng: np.random.Generator, capacity_ratio: float = 1.3) -> PlacementProblem:
    d = eua_dir()
    with open(d / "users-melbcbd-generated.csv", newline="") as f:
        users = np.array([[float(r["Latitude"]), float(r["Longitude"])] for r in csv.DictReader(f)])
    with open(d / "site-optus-melbCBD.csv", newline="") as f:
        sites = np.array([[float(r["LATITUDE"]), float(r["LONGITUDE"])] for r in csv.DictReader(f)])
    lat0, lon0 = np.vstack([users, sites]).mean(axis=0)
    r_earth_m = 6_371_000.0

    def xy(ll: np.ndarray) -> np.ndarray:
        x = np.radians(ll[:, 1] - lon0) * np.cos(np.radians(lat0)) * r_earth_m
        y = np.radians(ll[:, 0] - lat0) * r_earth_m
        return np.column_stack([x, y])

    u, s = xy(users), xy(sites)
    dist_m = np.sqrt(((u[:, None, :] - s[None, :, :]) ** 2).sum(axis=2))
    latency = 1.0 + dist_m / 500.0
    n, m = u.shape[0], s.shape[0]
    cpu = rng.uniform(0.2, 2.0, size=n)
    mem = rng.uniform(0.25, 4.0, size=n)
    size = rng.choice([1.0, 2.0, 4.0], size=m, p=[0.5, 0.35, 0.15])
    cap_cpu = size * rng.uniform(0.8, 1.2, size=m)
    cap_mem = size * rng.uniform(0.8, 1.2, size=m)
    cap_cpu *= capacity_ratio * cpu.sum() / cap_cpu.sum()
    cap_mem *= capacity_ratio * mem.sum() / cap_mem.sum()
    return PlacementProblem(latency, cpu, mem, cap_cpu, cap_mem)


def random_case(n: int, m: int, seed: int) -> PlacementProblem:
    # host density fixed at 100 hosts per 16 km^2; a 3.5 ms latency requirement keeps
    # about 20 allowed hosts per twin, and hot spots make nearest-first fail
    side_m = 4000.0 * np.sqrt(m / 100.0)
    return random_instance(
        n, m, np.random.default_rng(seed), max_latency_ms=3.5, side_m=side_m, capacity_ratio=1.3
    )


def run_instance(name: str, problem: PlacementProblem, time_limit_s: float) -> dict:
    out: dict = {"instance": name, "twins": problem.n_twins, "hosts": problem.n_hosts}
    rows = {}
    for policy in ("nearest", "greedy", "optimal"):
        params = {"time_limit_s": time_limit_s} if policy == "optimal" else {}
        try:
            r = solve_placement(
                resolve_placement(policy, **params), problem, np.random.default_rng(0)
            )
        except TwinedgeError as exc:
            rows[policy] = {"feasible": False, "error": str(exc)}
            continue
        rows[policy] = {
            "feasible": True,
            "status": r.status,
            "objective_ms": round(r.objective_ms, 4),
            "lower_bound_ms": None
            if not np.isfinite(r.lower_bound_ms)
            else round(r.lower_bound_ms, 4),
            "solve_s": round(r.solve_s, 3),
        }
        if policy == "optimal":
            trace = r.info.get("trace", [])
            rows[policy]["first_within_1pct_s"] = next(
                (t for t, obj in trace if relative_gap(obj, r.lower_bound_ms) <= 0.01), None
            )
    bound = rows["optimal"].get("lower_bound_ms")
    for row in rows.values():
        if row.get("feasible") and bound is not None:
            row["gap_to_bound"] = round(relative_gap(row["objective_ms"], bound), 6)
    out["policies"] = rows
    return out


def to_markdown(report: dict, command: str) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {report['machine']['cpu_count']} cores, Python {report['machine']['python']}, "
        f"NumPy {report['machine']['numpy']}, SciPy {report['machine']['scipy']}; "
        f"optimal time limit {report['time_limit_s']} s.",
        "",
        "| instance | twins x hosts | policy | status | objective ms | gap to bound | solve s "
        "| optimal within 1 % after s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for inst in report["instances"]:
        if "skipped" in inst:
            lines.append(f"| {inst['instance']} | | | skipped: {inst['skipped']} | | | | |")
            continue
        for pol, row in inst["policies"].items():
            size = f"{inst['twins']} x {inst['hosts']}"
            if not row["feasible"]:
                err = row["error"].split(";")[0].split("(")[0].strip()
                lines.append(f"| {inst['instance']} | {size} | {pol} | failed: {err} | | | | |")
                continue
            gap = row.get("gap_to_bound")
            gap_txt = "" if gap is None else f"{100 * gap:.3f} %"
            first = row.get("first_within_1pct_s")
            first_txt = "" if first is None else f"{first:.2f}"
            lines.append(
                f"| {inst['instance']} | {size} | {pol} | {row['status']} | "
                f"{row['objective_ms']:.2f} | {gap_txt} | {row['solve_s']:.2f} | {first_txt} |"
            )
    lines += [
        "",
        "The bound is the optimal policy's lower bound, valid for the whole instance (see",
        "docs/placement.md); the gap of each policy is measured against it. Random instances:",
        "`random_instance` with hot spots, a 3.5 ms latency requirement and capacities 1.3x",
        "demand (see `random_case` in the script); EUA: Melbourne CBD users and Optus sites,",
        "all pairs allowed, latency 1 ms + 2 ms/km. 'Optimal within 1 %' is the first time",
        "the optimal policy's incumbent was within 1 % of its final bound.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = (
        pattern.sub(lambda _: text + "\n", old)
        if pattern.search(old)
        else old.rstrip() + "\n\n" + text
    )
    path.write_text(new.rstrip() + "\n", encoding="utf-8")


# -- the optimal policy at scale, and against plain solvers ---------------------------

SCALE_SECTION = "## Optimal placement: anytime bound and direct MILP"


def machine() -> dict:
    out = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        import ortools

        out["ortools"] = ortools.__version__
    except ImportError:
        out["ortools"] = None
    return out


def plain_milp(problem: PlacementProblem, time_limit_s: float) -> dict:
    """HiGHS (through scipy) on the whole MILP: one binary per allowed pair, no help."""
    n, m = problem.n_twins, problem.n_hosts
    t, h = np.nonzero(problem.allowed)
    cols = np.arange(t.size)
    a = sp.vstack(
        [
            sp.csr_array((np.ones(t.size), (t, cols)), shape=(n, t.size)),
            sp.csr_array((problem.demand_cpu_ghz[t], (h, cols)), shape=(m, t.size)),
            sp.csr_array((problem.demand_mem_gb[t], (h, cols)), shape=(m, t.size)),
        ],
        format="csr",
    )
    lo = np.concatenate([np.ones(n), np.full(2 * m, -np.inf)])
    hi = np.concatenate([np.ones(n), problem.capacity_cpu_ghz, problem.capacity_mem_gb])
    t0 = time.perf_counter()
    res = milp(
        problem.latency_ms[t, h],
        integrality=np.ones(t.size),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(a, lo, hi),
        options={"time_limit": time_limit_s, "mip_rel_gap": 0.0},
    )
    took = time.perf_counter() - t0
    return {
        "solver": "highs-milp",
        "s": round(took, 3),
        "proved": res.status == 0,
        "objective_ms": None if res.x is None else round(float(res.fun), 4),
        "bound_ms": None if res.mip_dual_bound is None else round(float(res.mip_dual_bound), 4),
        "nodes": getattr(res, "mip_node_count", None),
    }


def cpsat(problem: PlacementProblem, time_limit_s: float) -> dict | None:
    """CP-SAT on the same MILP with costs in microseconds and demands in 1/1000 units
    (integers; capacities rounded down, so its answers are feasible for the original);
    ``None`` without OR-Tools."""
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        return None
    scale = 1000
    model = cp_model.CpModel()
    t, h = np.nonzero(problem.allowed)
    x = [model.new_bool_var(f"x{k}") for k in range(t.size)]
    for i in range(problem.n_twins):
        model.add_exactly_one(x[k] for k in np.flatnonzero(t == i))
    for dem, cap in (
        (problem.demand_cpu_ghz, problem.capacity_cpu_ghz),
        (problem.demand_mem_gb, problem.capacity_mem_gb),
    ):
        d = np.ceil(dem * scale).astype(int)
        for j in range(problem.n_hosts):
            ks = np.flatnonzero(h == j)
            model.add(sum(int(d[t[k]]) * x[k] for k in ks) <= int(np.floor(cap[j] * scale)))
    cost = np.round(problem.latency_ms[t, h] * 1000).astype(int)
    model.minimize(sum(int(c) * v for c, v in zip(cost, x, strict=True)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = os.cpu_count() or 1
    t0 = time.perf_counter()
    status = solver.solve(model)
    took = time.perf_counter() - t0
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    return {
        "solver": "cp-sat",
        "s": round(took, 3),
        "proved": status == cp_model.OPTIMAL,
        "objective_ms": round(solver.objective_value / 1000, 4) if found else None,
        "bound_ms": round(solver.best_objective_bound / 1000, 4) if found else None,
    }


def optimal_row(problem: PlacementProblem, time_limit_s: float) -> dict:
    r = solve_placement(
        resolve_placement("optimal", time_limit_s=time_limit_s), problem, np.random.default_rng(0)
    )
    trace = r.info.get("trace", [])
    return {
        "solver": "optimal",
        "s": round(r.solve_s, 3),
        "proved": r.status == "optimal",
        "objective_ms": round(r.objective_ms, 4),
        "bound_ms": round(r.lower_bound_ms, 4),
        "gap": round(r.gap, 6),
        "method": r.info.get("method"),
        "first_within_1pct_s": next(
            (t for t, obj in trace if relative_gap(obj, r.lower_bound_ms) <= 0.01), None
        ),
        "t_bound_s": r.info.get("t_bound_s"),
        "first_bound_ms": r.info.get("first_bound_ms"),
        "t_heuristic_s": r.info.get("t_heuristic_s"),
        "heuristic_ms": r.info.get("heuristic_ms"),
        "ascent_iterations": r.info.get("ascent_iterations"),
        "lns_iterations": r.info.get("lns_iterations"),
    }


def optimal_scale(n: int, m: int, seed: int, budgets: list[float]) -> dict:
    """The optimal policy on one large instance at each time budget."""
    problem = random_instance(n, m, np.random.default_rng(seed))
    runs = []
    for budget in budgets:
        row = optimal_row(problem, budget)
        row["time_limit_s"] = budget
        runs.append(row)
        print(f"done optimal {n}x{m} @ {budget:g} s", file=sys.stderr, flush=True)
    return {"instance": f"random_instance({n}, {m}, seed={seed})", "runs": runs}


def optimal_vs_milp(seeds: list[int], repeats: int, time_limit_s: float) -> list[dict]:
    """200 x 16 instances: the optimal policy against plain HiGHS (and CP-SAT), the
    order of the solvers alternating between repeats, all in this one process."""
    out = []
    for seed in seeds:
        problem = random_case(200, 16, seed)
        solvers = [
            ("optimal", lambda p=problem: optimal_row(p, time_limit_s)),
            ("highs-milp", lambda p=problem: plain_milp(p, time_limit_s)),
        ]
        if cpsat(random_instance(2, 1, np.random.default_rng(0)), 1.0) is not None:
            solvers.append(("cp-sat", lambda p=problem: cpsat(p, time_limit_s)))
        rows: dict[str, list[dict]] = {name: [] for name, _ in solvers}
        for rep in range(repeats):
            order = solvers if rep % 2 == 0 else solvers[::-1]
            for name, run in order:
                row = run()
                assert row is not None
                rows[name].append(row)
        med = {name: statistics.median(r["s"] for r in rs) for name, rs in rows.items()}
        out.append(
            {
                "instance": f"random-200x16-s{seed}",
                "runs": rows,
                "median_s": med,
                "ratio_optimal_to_highs": round(med["optimal"] / max(med["highs-milp"], 1e-9), 3),
            }
        )
        print(f"done 200x16 seed {seed}", file=sys.stderr, flush=True)
    return out


def scale_markdown(report: dict, command: str) -> str:
    mach = report["machine"]
    lines = [
        SCALE_SECTION,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {mach['cpu_count']} cores (load average at the start "
        f"{', '.join(str(x) for x in mach['load_average'])}), Python {mach['python']}, "
        f"NumPy {mach['numpy']}, SciPy {mach['scipy']} (HiGHS), OR-Tools "
        f"{mach['ortools'] or 'not installed'}.",
        "",
    ]
    if report.get("scale"):
        sc = report["scale"]
        lines += [
            f"`optimal` on {sc['instance']}:",
            "",
            "| budget s | solve s | method | objective ms | bound ms | gap | within 1 % after s "
            "| first bound (s) | heuristic (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sc["runs"]:
            first = r["first_within_1pct_s"]
            lines.append(
                f"| {r['time_limit_s']:g} | {r['s']:.1f} | {r['method']} | "
                f"{r['objective_ms']:.2f} | {r['bound_ms']:.2f} | {100 * r['gap']:.3f} % | "
                f"{'' if first is None else f'{first:.1f}'} | "
                f"{r['first_bound_ms']:.2f} ({r['t_bound_s']:.1f}) | "
                f"{r['heuristic_ms']:.2f} ({r['t_heuristic_s']:.1f}) |"
            )
        lines.append("")
    if report.get("vs_milp"):
        lines += [
            "200 x 16 (`random_case`), solvers alternating in one run; median of the repeats:",
            "",
            "| instance | solver | median s | proved | objective ms | bound ms |",
            "|---|---|---|---|---|---|",
        ]
        for inst in report["vs_milp"]:
            for name, rows in inst["runs"].items():
                last = rows[-1]
                lines.append(
                    f"| {inst['instance']} | {name} | {inst['median_s'][name]:.2f} | "
                    f"{sum(r['proved'] for r in rows)}/{len(rows)} | {last['objective_ms']} | "
                    f"{last['bound_ms']} |"
                )
            lines.append(
                f"| {inst['instance']} | optimal / HiGHS | {inst['ratio_optimal_to_highs']:.2f}"
                " | | | |"
            )
        lines.append("")
    return "\n".join(lines)


def write_named_section(path: Path, section: str, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = (
        pattern.sub(lambda _: text + "\n", old)
        if pattern.search(old)
        else old.rstrip() + "\n\n" + text
    )
    path.write_text(new.rstrip() + "\n", encoding="utf-8")


def run_optimal_modes(args: argparse.Namespace) -> int:
    report: dict = {"benchmark": "placement-optimal", "machine": machine()}
    if args.optimal_scale:
        budgets = [float(b) for b in args.budgets.split(",")]
        report["scale"] = optimal_scale(args.twins, args.hosts, args.seed, budgets)
    if args.optimal_vs_milp:
        seeds = [int(s) for s in args.vs_seeds.split(",")]
        report["vs_milp"] = optimal_vs_milp(seeds, args.repeats, args.time_limit_s)
    print(json.dumps(report, indent=2))
    if args.markdown:
        command = "python benchmarks/bench_placement.py" + " ".join(
            [""]
            + (["--optimal-scale", f"--budgets {args.budgets}"] if args.optimal_scale else [])
            + ([f"--time-limit-s {args.time_limit_s:g}"] if args.optimal_vs_milp else [])
            + (
                ["--optimal-vs-milp", f"--vs-seeds {args.vs_seeds}", f"--repeats {args.repeats}"]
                if args.optimal_vs_milp
                else []
            )
        )
        write_named_section(args.markdown, SCALE_SECTION, scale_markdown(report, command))
    return 0


def replacement_time(entities: int, repeat: int, seed: int = 0) -> dict:
    """Median wall time of a greedy re-placement of the built-in city at ``entities``."""
    import time

    from twinedge.engine.simulation import move_entities
    from twinedge.engine.sweep import apply_overrides
    from twinedge.orchestrator import NetworkState, Orchestrator
    from twinedge.scenario import load_scenario
    from twinedge.world import build_world

    scale = entities / 2000  # the cloud grows with the entities, so every size is feasible
    sc = apply_overrides(
        load_scenario("city"),
        {
            "entities.count": entities,
            "infrastructure.generate.cloud_cpu_ghz": 20_000.0 * max(scale, 1.0),
            "infrastructure.generate.cloud_mem_gb": 100_000.0 * max(scale, 1.0),
        },
    )
    world_rng, mob_rng, pol_rng = np.random.default_rng(seed).spawn(3)
    world = build_world(sc, world_rng)
    state = NetworkState.at(world, world.xy_m)
    orch = Orchestrator(
        "greedy", "never", step_s=1.0, placement_period_s=300.0, rng=pol_rng, horizon_steps=None
    )
    t0 = time.perf_counter()
    orch.place(world, state)
    place_s = time.perf_counter() - t0
    times, solves, moved = [], [], []
    for r in range(repeat):
        for _ in range(30):  # 300 s of motion in 10 s steps
            move_entities(world, state, 10.0, mob_rng)
        t0 = time.perf_counter()
        out = orch.cycle(world, state, 300 * (r + 1) - 1, replace=True)
        times.append(time.perf_counter() - t0)
        solves.append(orch.placements[-1]["solve_s"])
        moved.append(out.replaced)
    return {
        "entities": entities,
        "hosts": world.n_hosts,
        "initial_placement_s": round(place_s, 4),
        "replacement_s": round(float(np.median(times)), 4),
        "replacement_solve_s": round(float(np.median(solves)), 4),
        "replacement_s_all": [round(t, 4) for t in times],
        "twins_moved": moved,
    }


def fit_exponent(xs: list[float], ys: list[float]) -> float | None:
    """``b`` of the least-squares fit ``log y = log a + b log x``."""
    if len(xs) < 2:
        return None
    b, _ = np.polyfit(np.log(xs), np.log(ys), 1)
    return round(float(b), 3)


def setup_scenario(entities: int, edges: int = 613):
    """The ``--setup`` world: the built-in city's density and capacity per entity."""
    from twinedge.scenario import parse_scenario

    regions = edges // 10
    per_site = (entities / edges) / (2000 / 60)  # the city: 2,000 entities, 60 sites
    per_region = (entities / regions) / (2000 / 6)
    side = float(np.sqrt(edges / 60) * 4000)
    return parse_scenario(
        {
            "version": 1,
            "name": f"setup-{entities}x{edges}",
            "infrastructure": {
                "generate": {
                    "area_m": [side, side],
                    "edge_sites": edges,
                    "regions": regions,
                    "edge_cpu_ghz": [16.0 * per_site, 48.0 * per_site],
                    "edge_mem_gb": [32.0 * per_site, 96.0 * per_site],
                    "region_cpu_ghz": 256.0 * per_region,
                    "region_mem_gb": 1024.0 * per_region,
                    "cloud_cpu_ghz": 20_000.0 * entities / 2000,
                    "cloud_mem_gb": 100_000.0 * entities / 2000,
                }
            },
            "entities": [
                {"count": entities, "mobility": {"model": "random_waypoint", "speed_mps": [1, 20]}}
            ],
            "run": {"steps": 10},
        }
    )


def setup_one(policy: str, entities: int) -> dict:
    """Build the ``--setup`` world and place it with ``policy`` (run in its own process)."""
    import resource
    import time

    from twinedge.orchestrator import NetworkState, Orchestrator
    from twinedge.world import build_world

    t0 = time.perf_counter()
    world = build_world(setup_scenario(entities), np.random.default_rng(0))
    t1 = time.perf_counter()
    state = NetworkState.at(world, world.xy_m)
    t2 = time.perf_counter()
    orch = Orchestrator(policy, "never", step_s=1.0, rng=np.random.default_rng(1))
    result = orch.place(world, state)
    t3 = time.perf_counter()
    return {
        "policy": policy,
        "entities": entities,
        "hosts": world.n_hosts,
        "build_world_s": round(t1 - t0, 3),
        "attach_s": round(t2 - t1, 3),
        "initial_placement_s": round(t3 - t2, 3),
        "setup_s": round(t3 - t0, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "objective_ms": round(result.objective_ms, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the small random instances")
    ap.add_argument("--time-limit-s", type=float, default=60.0, help="optimal's time limit")
    ap.add_argument("--markdown", type=Path, help="also rewrite this file's placement section")
    ap.add_argument(
        "--optimal-scale", action="store_true", help="optimal on 10,000 x 300 at --budgets"
    )
    ap.add_argument("--budgets", default="60", help="time budgets for --optimal-scale, s")
    ap.add_argument("--twins", type=int, default=10_000, help="twins for --optimal-scale")
    ap.add_argument("--hosts", type=int, default=300, help="hosts for --optimal-scale")
    ap.add_argument("--seed", type=int, default=0, help="instance seed for --optimal-scale")
    ap.add_argument(
        "--optimal-vs-milp", action="store_true", help="200 x 16: optimal vs plain HiGHS MILP"
    )
    ap.add_argument("--vs-seeds", default="1,3", help="instance seeds for --optimal-vs-milp")
    ap.add_argument("--repeats", type=int, default=2, help="repeats for --optimal-vs-milp")
    ap.add_argument(
        "--sizes",
        nargs="?",
        const="2000,20000,200000",
        help="time greedy re-placements of the built-in city at these entity counts",
    )
    ap.add_argument("--repeat", type=int, default=3, help="re-placements per size (--sizes)")
    ap.add_argument(
        "--setup", nargs="?", const=1_000_000, type=int, help="the 1,000,000 x 675 set-up"
    )
    ap.add_argument("--setup-one", nargs=2, metavar=("POLICY", "ENTITIES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.optimal_scale or args.optimal_vs_milp:
        return run_optimal_modes(args)
    if args.setup_one:
        print(json.dumps(setup_one(args.setup_one[0], int(args.setup_one[1]))))
        return 0
    if args.setup:
        import subprocess

        runs = []
        for policy in ("nearest", "greedy"):
            out = subprocess.run(
                [sys.executable, __file__, "--setup-one", policy, str(args.setup)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(out.stdout))
            print(f"done {policy}", file=sys.stderr, flush=True)
        print(
            json.dumps(
                {"benchmark": "placement_setup", "machine": machine(), "runs": runs}, indent=2
            )
        )
        return 0
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
        rows = []
        for n in sizes:
            rows.append(replacement_time(n, args.repeat))
            print(f"done {n}", file=sys.stderr, flush=True)
        print(
            json.dumps(
                {
                    "benchmark": "placement_sizes",
                    "machine": machine(),
                    "policy": "greedy",
                    "sizes": rows,
                    "exponent_replacement": fit_exponent(
                        [r["entities"] for r in rows], [r["replacement_s"] for r in rows]
                    ),
                    "exponent_solve": fit_exponent(
                        [r["entities"] for r in rows], [r["replacement_solve_s"] for r in rows]
                    ),
                },
                indent=2,
            )
        )
        return 0
    cases = [("random-50x8", lambda: random_case(50, 8, 0))]
    cases += [(f"random-200x16-s{s}", lambda s=s: random_case(200, 16, s)) for s in (1, 2)]
    if not args.quick:
        cases.append(("random-2000x100", lambda: random_case(2000, 100, 2)))
        cases.append(("eua-melbcbd", lambda: eua_instance(np.random.default_rng(0))))
    report = {
        "benchmark": "placement",
        "machine": machine(),
        "time_limit_s": args.time_limit_s,
        "instances": [],
    }
    for name, make in cases:
        if name.startswith("eua") and not (eua_dir() / "site-optus-melbCBD.csv").is_file():
            report["instances"].append(
                {"instance": name, "skipped": f"EUA dataset not found at {eua_dir()}"}
            )
            continue
        report["instances"].append(run_instance(name, make(), args.time_limit_s))
        print(f"done {name}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    if args.markdown:
        command = "python benchmarks/bench_placement.py" + (" --quick" if args.quick else "")
        if args.time_limit_s != 60.0:
            command += f" --time-limit-s {args.time_limit_s:g}"
        write_section(args.markdown, to_markdown(report, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
