"""twinedge and EdgeSimPy side by side on one hex-grid workload, alternated in one run.

    python benchmarks/bench_edgesimpy.py --edgesimpy PATH        # 400 and 2,025 users
    EDGESIMPY_SRC=PATH python benchmarks/bench_edgesimpy.py --users 400 --repeats 5
    python benchmarks/bench_edgesimpy.py                         # {"skipped": ...}

PATH is an EdgeSimPy source tree (a checkout of github.com/EdgeSimPy/EdgeSimPy, tag
v1.1.0). EdgeSimPy is never a dependency of twinedge: the benchmark makes a virtual
environment for it under the cache folder (``$XDG_CACHE_HOME/twinedge/edgesimpy-venv``,
by default ``~/.cache/twinedge/edgesimpy-venv``) with ``python -m venv``, installs the
tree and its dependencies there with pip, and runs ``benchmarks/edgesimpy_driver.py`` in
it as a subprocess that prints its timings as JSON. Without a tree it prints
``{"skipped": reason}`` and exits 0.

The workload, the same on both sides:

* the map is EdgeSimPy's ``hexagonal_grid(side, side)``: ``side * side`` hexagons (side
  = ceil(sqrt(users)) unless ``--grid-side``), each with a base station (access point),
  a network switch and one edge server (8 CPU, 16 GB; twinedge: 8 GHz, 16 GB), the
  switches linked to their hexagonal neighbours (1 ms, 10 Gbit/s) — twinedge gets the
  same graph as explicit links between the edge servers;
* one user per hexagon to start with (a random permutation; users beyond the number of
  hexagons wrap around), each with one service (twin) of 1 CPU and 1 GB, first placed on
  the server of the user's hexagon (twinedge: the ``nearest`` placement);
* every user walks the grid as EdgeSimPy's ``random_mobility`` does: it stays
  ``--seconds-to-move`` one-second steps in a hexagon, then moves to a uniformly chosen
  neighbour. Two settings by default: 1 (every user changes hexagon in every step, so
  both sides re-attach every user and decide a migration for every twin in every step)
  and 60 (EdgeSimPy's default: a user moves once a minute). The walks are drawn here
  once per size and handed to both (EdgeSimPy as each user's ``coordinates_trace``,
  twinedge as a trace file), so both see exactly the same movements. Each user's first
  move comes after a random 1 to ``seconds_to_move`` steps, so that about
  ``users / seconds_to_move`` users change hexagon in every step (EdgeSimPy's own model
  would move them all in the same step);
* the decision each step is follow-the-user: a service whose server is not the one in
  its user's hexagon moves to the nearest of the 8 servers nearest that hexagon that has
  room, unless its current server is nearer. A migration takes one step on both sides.

Per step, twinedge runs its whole engine step: trace replay of every user's position,
attachment of every user to its nearest access point (KD-tree), uplink and latency of
every twin, the follow-the-user policy (a plain Python callable, vectorised) with the
orchestrator's capacity checks, server and device energy, and the metrics of the step.
EdgeSimPy runs its ``Simulator.step`` (the same policy written in EdgeSimPy's API, then
every agent's ``step``) and ``Simulator.monitor`` (every agent's ``collect``), timed apart.
EdgeSimPy does work twinedge does not: per-user access-pattern bookkeeping, a Dijkstra
path per moved user, the layer check of each migration and the per-agent metrics; and
twinedge does work EdgeSimPy does not: it re-evaluates every user's position, attachment,
radio uplink, latency and energy in every step, moved or not, where EdgeSimPy touches only
the users that changed hexagon.

Timing: the first step and all set-up (building, loading) are left out on both sides; a
repetition runs twinedge then EdgeSimPy (A B A B ...), and the ratio is EdgeSimPy's mean
step time over twinedge's, per repetition (the JSON lists all and their median; the
ratio of the median step times is given too, as it is less moved by other work on the
machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "edgesimpy_driver.py"
SIZES = (400, 2025)
CELL_M = 1000.0  # distance between neighbouring hexagon centres (twinedge positions)
SERVER = {"cpu": 8, "memory": 16384, "disk": 131072}  # EdgeSimPy units (cores, MB, MB)
SERVICE = {"cpu": 1, "memory": 1024}
LINK_DELAY_MS = 1
LINK_BANDWIDTH = 10_000  # Mbit/s
CANDIDATES = 8


# --- the shared workload ---------------------------------------------------------------
def hex_cells(side: int) -> list[tuple[int, int]]:
    """The hexagons of EdgeSimPy's ``hexagonal_grid(side, side)``, in its order:
    "doubled" coordinates, row ``y`` holding the ``x < 2 * side`` with ``x`` and ``y`` of
    the same parity, so ``side * side`` cells."""
    return [(x, y) for y in range(side) for x in range(2 * side) if x % 2 == y % 2]


def hex_neighbours(cells: list[tuple[int, int]]) -> list[list[int]]:
    """For each cell, the indices of its neighbours (EdgeSimPy's offsets: (+-2, 0) and
    (+-1, +-1)) that lie on the grid."""
    index = {c: i for i, c in enumerate(cells)}
    steps = ((-2, 0), (-1, 1), (1, 1), (2, 0), (1, -1), (-1, -1))
    return [
        [index[(x + dx, y + dy)] for dx, dy in steps if (x + dx, y + dy) in index] for x, y in cells
    ]


def hex_links(cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each pair of neighbouring cells once (``i < j``): for ``side * side`` cells,
    ``side * (side - 1)`` along the rows and ``(side - 1) * (2 * side - 1)`` between rows."""
    return [(i, j) for i, nb in enumerate(hex_neighbours(cells)) for j in nb if i < j]


def cell_xy_m(cells: list[tuple[int, int]]) -> np.ndarray:
    """Hexagon centres in metres: neighbours ``CELL_M`` apart."""
    c = np.asarray(cells, dtype=float).reshape(-1, 2)
    return np.column_stack([c[:, 0] * CELL_M / 2, c[:, 1] * CELL_M * math.sqrt(3) / 2])


def random_walks(
    neighbours: list[list[int]],
    users: int,
    steps: int,
    seconds_to_move: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(users, steps + 1)`` cell indices: one user per cell to start with (a random
    permutation, wrapping when there are more users than cells); each stays
    ``seconds_to_move`` steps in a cell (the first stay 1 to ``seconds_to_move`` steps)
    and then moves to a uniformly chosen neighbour."""
    n = len(neighbours)
    start = rng.permutation(n)[np.arange(users) % n]
    phase = rng.integers(1, seconds_to_move + 1, users)
    walks = np.empty((users, steps + 1), dtype=np.int64)
    walks[:, 0] = start
    for k in range(1, steps + 1):
        cur = walks[:, k - 1].copy()
        hop = np.flatnonzero((k >= phase) & ((k - phase) % seconds_to_move == 0))
        for u in hop:
            nb = neighbours[cur[u]]
            cur[u] = nb[rng.integers(len(nb))]
        walks[:, k] = cur
    return walks


def workload(
    users: int,
    steps: int,
    seconds_to_move: int = 60,
    seed: int = 0,
    grid_side: int | None = None,
    walks: np.ndarray | None = None,
) -> dict:
    """The workload both sides run (JSON-ready)."""
    side = grid_side or math.ceil(math.sqrt(users))
    cells = hex_cells(side)
    nb = hex_neighbours(cells)
    if walks is None:
        walks = random_walks(nb, users, steps, seconds_to_move, np.random.default_rng(seed))
    walks = np.asarray(walks, dtype=np.int64)
    if walks.shape != (users, steps + 1):
        raise ValueError(f"walks have shape {walks.shape}; expected ({users}, {steps + 1})")
    return {
        "grid_side": side,
        "cells": [list(c) for c in cells],
        "links": len(hex_links(cells)),
        "steps": steps,
        "seconds_to_move": seconds_to_move,
        "seed": seed,
        "server": SERVER,
        "service": SERVICE,
        "link_delay": LINK_DELAY_MS,
        "link_bandwidth": LINK_BANDWIDTH,
        "delay_sla": 100,
        "walks": walks.tolist(),
    }


# --- twinedge's half ---------------------------------------------------------------------
def write_trace(w: dict, path: Path) -> None:
    """The walks as a twinedge trace: the position of walk index ``k`` at ``t_s = k + 1``
    (twinedge's step ``k`` moves to the position at the end of the step), a sample on
    each side of every hop so positions jump from hexagon to hexagon like EdgeSimPy's."""
    xy = cell_xy_m([tuple(c) for c in w["cells"]])
    walks = np.asarray(w["walks"])
    last = walks.shape[1]
    with open(path, "w", encoding="utf-8") as f:
        f.write("entity_id,t_s,x_m,y_m\n")
        for u, walk in enumerate(walks):
            uid = f"user-{u:06d}"
            times = [0]
            for k in np.flatnonzero(walk[1:] != walk[:-1]) + 1:
                times += [int(k), int(k) + 1]  # old cell until t = k, new cell from k + 1
            times.append(last)
            for t in sorted(set(times)):
                c = walk[max(0, min(t - 1, last - 1))] if t > 0 else walk[0]
                f.write(f"{uid},{t},{xy[c, 0]:.3f},{xy[c, 1]:.3f}\n")


def twinedge_scenario(w: dict, trace: Path):
    """The twinedge scenario of workload ``w``: an access point and an edge server in
    every hexagon, the hexagonal mesh as explicit links between the servers, and the
    users replaying ``trace``."""
    from twinedge.scenario import parse_scenario

    cells = [tuple(c) for c in w["cells"]]
    xy = cell_xy_m(cells)
    nodes = []
    for i, (x, y) in enumerate(xy):
        nodes.append({"id": f"ap-{i}", "tier": "access", "x_m": x, "y_m": y, "coverage_m": CELL_M})
        nodes.append(
            {
                "id": f"edge-{i}",
                "tier": "edge",
                "x_m": x,
                "y_m": y,
                "cpu_ghz": float(w["server"]["cpu"]),
                "mem_gb": w["server"]["memory"] / 1024,
                "idle_w": 100.0,
                "max_w": 265.0,
            }
        )
    links = [
        {
            "a": f"edge-{i}",
            "b": f"edge-{j}",
            "latency_ms": float(w["link_delay"]),
            "bandwidth_mbps": float(w["link_bandwidth"]),
        }
        for i, j in hex_links(cells)
    ]
    return parse_scenario(
        {
            "version": 1,
            "name": f"hexgrid-{len(w['walks'])}",
            "infrastructure": {
                "nodes": nodes,
                "links": links,
                # each access point to its co-located server; no other generated links
                "link_rules": {
                    "access_edge": {"latency_ms": 0.0, "bandwidth_mbps": 10_000},
                    "edge_edge": None,
                    "edge_region": None,
                    "region_cloud": None,
                },
            },
            "entities": [
                {
                    "kind": "user",
                    "mobility": {"model": "trace", "file": str(trace)},
                    "twin": {
                        "cpu_ghz": float(w["service"]["cpu"]),
                        "mem_gb": w["service"]["memory"] / 1024,
                        "state_bytes": 1.0e6,
                        "update_hz": 1.0,
                        "latency_req_ms": float(w["delay_sla"]),
                    },
                    "allowed_tiers": ["edge"],
                }
            ],
            "run": {"steps": w["steps"], "step_s": 1.0, "seed": w["seed"]},
            "policies": {"placement": "nearest", "migration": "never"},
        }
    )


def follow_the_user(view, rng):
    """Move each twin whose host is not the one nearest its entity's access point to the
    nearest candidate host with room, unless its current host is nearer (the same rule as
    the EdgeSimPy driver's, vectorised)."""
    from twinedge.policies.base import Moves
    from twinedge.policies.migration import assign_under_capacity

    s = view.state
    cand = view.ap_candidates[s.ap]  # (n, c): nearest first
    twins = np.flatnonzero((s.host != cand[:, 0]) & ~view.migrating)
    if twins.size == 0:
        return Moves.none()
    cand = cand[twins]
    here = cand == s.host[twins, None]
    rank_now = np.where(here.any(axis=1), here.argmax(axis=1), cand.shape[1])
    cols = np.arange(cand.shape[1])[None, :]
    score = np.where(cols < rank_now[:, None], cols.astype(float), np.inf)
    t, h = assign_under_capacity(view, twins, cand, score, np.zeros(twins.size))
    return Moves(t, h)


def build_twinedge(w: dict, folder: Path):
    """The twinedge world and simulation of workload ``w`` (trace written in ``folder``)."""
    from twinedge.engine.simulation import Simulation
    from twinedge.world import build_world

    trace = folder / "walks.csv"
    write_trace(w, trace)
    sc = twinedge_scenario(w, trace)
    world_rng, mob_rng, pol_rng = np.random.default_rng(w["seed"]).spawn(3)
    world = build_world(sc, world_rng)
    sim = Simulation(
        world,
        "nearest",
        follow_the_user,
        steps=w["steps"],
        step_s=1.0,
        placement_period_s=None,
        rng=pol_rng,
        mobility_rng=mob_rng,
        candidates_k=CANDIDATES,
    )
    return world, sim


def run_twinedge(w: dict) -> dict:
    """Run twinedge's half once; per-step times exclude the set-up and the first step."""
    with tempfile.TemporaryDirectory(prefix="twinedge-hexgrid-") as tmp:
        t0 = time.perf_counter()
        world, sim = build_twinedge(w, Path(tmp))
        build_s = time.perf_counter() - t0
        marks: dict[int, float] = {}
        res = sim.run(progress=lambda k: marks.setdefault(k, time.perf_counter()))
    steps = w["steps"]
    loop_s = marks[steps] - marks[1]
    per_step = [marks[k + 1] - marks[k] for k in range(1, steps)]
    return {
        "users": world.n_entities,
        "edge_servers": world.n_hosts,
        "access_points": int(world.access.size),
        "build_s": round(build_s, 3),
        "steps_timed": steps - 1,
        "loop_s": loop_s,
        "step_mean_s": loop_s / (steps - 1),
        "step_median_s": statistics.median(per_step),
        "migrations": int(res.summary["migrations"]),
    }


# --- EdgeSimPy's half ----------------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twinedge"


def source_info(src: Path) -> dict:
    """Version (from ``edge_sim_py/__init__.py``) and git commit of the tree, if any."""
    version = None
    init = src / "edge_sim_py" / "__init__.py"
    for line in init.read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            version = line.split("=", 1)[1].strip().strip("\"'")
    commit = None
    if shutil.which("git"):
        r = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        commit = r.stdout.strip() or None if r.returncode == 0 else None
    return {"path": str(src), "version": version, "commit": commit}


def ensure_venv(src: Path, info: dict, venv: Path) -> Path:
    """EdgeSimPy's own virtual environment with ``src`` installed; its python."""
    py = venv / "bin" / "python"
    marker = venv / "twinedge-edgesimpy.json"
    want = {"path": info["path"], "commit": info["commit"], "version": info["version"]}
    if py.exists() and marker.exists() and json.loads(marker.read_text()) == want:
        return py
    if not py.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], check=True)
    else:  # another tree: replace EdgeSimPy, keep its dependencies where they fit
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--force-reinstall", "--no-deps", str(src)], check=True)
        subprocess.run([*pip, str(src)], check=True)
    marker.write_text(json.dumps(want))
    return py


def run_edgesimpy(py: Path, w: dict, dataset: Path) -> dict:
    """Run the driver once in EdgeSimPy's environment; its JSON, plus per-step means."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(w, f)
        path = f.name
    try:
        r = subprocess.run(
            [str(py), str(DRIVER), path, "--dataset", str(dataset)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    finally:
        os.unlink(path)
    if r.returncode != 0:
        raise SystemExit(f"the EdgeSimPy driver failed ({r.returncode}):\n{r.stderr[-4000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    step, mon = out.pop("step_s")[1:], out.pop("monitor_s")[1:]
    out["steps_timed"] = len(step)
    out["step_mean_s"] = sum(step) / len(step)
    out["step_median_s"] = statistics.median(step)
    out["monitor_mean_s"] = sum(mon) / len(mon)
    out["step_and_monitor_mean_s"] = out["step_mean_s"] + out["monitor_mean_s"]
    return out


# --- the comparison --------------------------------------------------------------------------
def skip(reason: str) -> None:
    print(json.dumps({"benchmark": "edgesimpy_side_by_side", "skipped": reason}, indent=2))
    raise SystemExit(0)


def compare(
    py: Path, info: dict, users: int, seconds_to_move: int, args: argparse.Namespace
) -> dict:
    w = workload(users, args.steps, seconds_to_move, args.seed, args.grid_side)
    key = hashlib.sha256(
        json.dumps([w, info["commit"], info["version"]], sort_keys=True).encode()
    ).hexdigest()[:16]
    dataset = cache_dir() / "edgesimpy-datasets" / f"hexgrid-{users}-{seconds_to_move}-{key}.json"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    reps = []
    for r in range(args.repeats):
        te = run_twinedge(w)
        es = run_edgesimpy(py, w, dataset)
        reps.append(
            {
                "repeat": r,
                "twinedge_step_ms": round(te["step_mean_s"] * 1e3, 4),
                "edgesimpy_step_ms": round(es["step_mean_s"] * 1e3, 3),
                "edgesimpy_monitor_ms": round(es["monitor_mean_s"] * 1e3, 3),
                "ratio": round(es["step_mean_s"] / te["step_mean_s"], 1),
                "ratio_with_monitor": round(es["step_and_monitor_mean_s"] / te["step_mean_s"], 1),
                # less sensitive to other work on the machine than the means
                "ratio_of_step_medians": round(es["step_median_s"] / te["step_median_s"], 1),
                "twinedge_migrations": te["migrations"],
                "edgesimpy_migrations": es["migrations"],
                "twinedge_build_s": te["build_s"],
                "edgesimpy_build_s": es["build_s"],
                "edgesimpy_load_s": es["load_s"],
            }
        )
        print(
            f"[{users} users, {seconds_to_move} s/hop] repeat {r}: {json.dumps(reps[-1])}",
            file=sys.stderr,
        )
    ratios = [x["ratio"] for x in reps]
    ratios_m = [x["ratio_with_monitor"] for x in reps]
    te_ms = [x["twinedge_step_ms"] for x in reps]
    es_ms = [x["edgesimpy_step_ms"] for x in reps]
    return {
        "users": users,
        "seconds_to_move": seconds_to_move,
        "grid_side": w["grid_side"],
        "hexagons": len(w["cells"]),
        "base_stations": es["base_stations"],
        "edge_servers": te["edge_servers"],
        "links": w["links"],
        "edgesimpy_agents": es["agents"],
        "steps": args.steps,
        "steps_timed": te["steps_timed"],
        "cell_changes": es["moved_cells"],
        "twinedge_step_ms_median": statistics.median(te_ms),
        "twinedge_user_steps_per_s": round(users / (statistics.median(te_ms) / 1e3)),
        "edgesimpy_step_ms_median": statistics.median(es_ms),
        "edgesimpy_user_steps_per_s": round(users / (statistics.median(es_ms) / 1e3)),
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "ratio_of_step_medians_median": statistics.median(
            [x["ratio_of_step_medians"] for x in reps]
        ),
        "ratio_with_monitor_median": statistics.median(ratios_m),
        "ratio_with_monitor_range": [min(ratios_m), max(ratios_m)],
        "repeats": reps,
    }


def twinedge_commit() -> str | None:
    r = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return r.stdout.strip() or None if r.returncode == 0 else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--edgesimpy",
        metavar="PATH",
        default=os.environ.get("EDGESIMPY_SRC"),
        help="EdgeSimPy source tree (default: $EDGESIMPY_SRC); without one the run is skipped",
    )
    ap.add_argument(
        "--users",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(SIZES),
        help="comma-separated user counts (default 400,2025)",
    )
    ap.add_argument("--steps", type=int, default=61, help="steps per run (default 61)")
    ap.add_argument("--repeats", type=int, default=3, help="A B repetitions per size (default 3)")
    ap.add_argument(
        "--seconds-to-move",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 60],
        help="comma-separated steps a user stays in a hexagon: 1 moves every user in every "
        "step, 60 is EdgeSimPy's default (default 1,60)",
    )
    ap.add_argument("--grid-side", type=int, default=None, help="hexagons per side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--venv",
        type=Path,
        default=None,
        help="EdgeSimPy's virtual environment (default: <cache>/twinedge/edgesimpy-venv)",
    )
    args = ap.parse_args(argv)
    if args.steps < 3:
        ap.error("--steps must be at least 3 (the first step is not timed)")
    if not args.edgesimpy:
        skip("no EdgeSimPy source tree: pass --edgesimpy PATH or set EDGESIMPY_SRC")
    src = Path(args.edgesimpy).expanduser().resolve()
    if not (src / "edge_sim_py" / "__init__.py").is_file():
        skip(f"{src} is not an EdgeSimPy source tree (no edge_sim_py/__init__.py)")
    info = source_info(src)
    venv = args.venv or cache_dir() / "edgesimpy-venv"
    py = ensure_venv(src, info, venv)
    if min(args.seconds_to_move) < 1 or min(args.users) < 1:
        ap.error("--users and --seconds-to-move must be positive")
    results = [compare(py, info, n, m, args) for m in args.seconds_to_move for n in args.users]
    from twinedge import __version__ as twinedge_version

    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import json, platform, mesa, networkx; print(json.dumps({'python': "
            "platform.python_version(), 'mesa': mesa.__version__, 'networkx': "
            "networkx.__version__}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    print(
        json.dumps(
            {
                "benchmark": "edgesimpy_side_by_side",
                "cores": os.cpu_count(),
                "platform": platform.platform(),
                "command": "python " + " ".join(sys.argv),
                "twinedge": {
                    "version": twinedge_version,
                    "commit": twinedge_commit(),
                    "python": platform.python_version(),
                    "numpy": np.__version__,
                    "scipy": scipy.__version__,
                },
                "edgesimpy": {**info, **json.loads(probe.stdout), "venv": str(venv)},
                "workload": {
                    "seed": args.seed,
                    "policy": "follow the user (nearest of 8 with room)",
                    "server": SERVER,
                    "service": SERVICE,
                },
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
