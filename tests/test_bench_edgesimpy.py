"""The side-by-side benchmark against EdgeSimPy: it skips cleanly without a source tree,
and its twinedge half builds EdgeSimPy's hex grid with the right counts and follows the
users the way the EdgeSimPy driver does."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_edgesimpy.py"

spec = importlib.util.spec_from_file_location("bench_edgesimpy", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def run_script(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGESIMPY_SRC"}
    env["PYTHONPATH"] = str(ROOT / "src")
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_skips_without_a_tree() -> None:
    r = run_script()
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["benchmark"] == "edgesimpy_side_by_side"
    assert "EDGESIMPY_SRC" in out["skipped"] and "--edgesimpy" in out["skipped"]


def test_skips_when_the_path_is_not_a_tree(tmp_path: Path) -> None:
    r = run_script("--edgesimpy", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert str(tmp_path) in out["skipped"] and "edge_sim_py/__init__.py" in out["skipped"]
    # the environment variable is read the same way
    r = run_script(env_extra={"EDGESIMPY_SRC": str(tmp_path / "missing")})
    assert r.returncode == 0 and "missing" in json.loads(r.stdout)["skipped"]


def test_bad_options_are_refused() -> None:
    r = run_script("--steps", "2")
    assert r.returncode == 2 and "--steps must be at least 3" in r.stderr


def test_hex_grid_matches_edgesimpys_rule() -> None:
    # hexagonal_grid(2, 2): row 0 keeps even x < 4, row 1 odd x < 4
    assert bench.hex_cells(2) == [(0, 0), (2, 0), (1, 1), (3, 1)]
    assert bench.hex_cells(3) == [
        (0, 0), (2, 0), (4, 0),
        (1, 1), (3, 1), (5, 1),
        (0, 2), (2, 2), (4, 2),
    ]  # fmt: skip
    # side 2: (0,0)-(2,0), (1,1)-(3,1) along the rows; (0,0)-(1,1), (2,0)-(1,1), (2,0)-(3,1)
    assert sorted(bench.hex_links(bench.hex_cells(2))) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    # side 3: 2 per row x 3 rows + 5 between rows 0-1 + 5 between rows 1-2
    assert len(bench.hex_links(bench.hex_cells(3))) == 16
    # the sizes of the benchmark: 20 x 20 and 45 x 45 hexagons
    assert len(bench.hex_cells(20)) == 400 and len(bench.hex_links(bench.hex_cells(20))) == 1121
    assert len(bench.hex_cells(45)) == 2025 and len(bench.hex_links(bench.hex_cells(45))) == 5896
    # neighbours are CELL_M apart in metres, every one of them
    cells = bench.hex_cells(3)
    xy = bench.cell_xy_m(cells)
    d = [np.hypot(*(xy[i] - xy[j])) for i, j in bench.hex_links(cells)]
    assert np.allclose(d, bench.CELL_M)


def test_walks_move_to_a_neighbour_every_seconds_to_move_steps() -> None:
    cells = bench.hex_cells(4)
    nb = bench.hex_neighbours(cells)
    walks = bench.random_walks(nb, 20, 30, 5, np.random.default_rng(3))
    assert walks.shape == (20, 31)
    # one user per cell to start with, wrapping after the 16 cells
    assert sorted(walks[:16, 0]) == list(range(16))
    assert (walks[16:, 0] == walks[:4, 0]).all()
    for walk in walks:
        hops = np.flatnonzero(walk[1:] != walk[:-1]) + 1
        assert hops.size == 6  # first hop within steps 1..5, then every 5 steps up to 30
        assert (np.diff(hops) == 5).all() and 1 <= hops[0] <= 5
        assert all(walk[k] in nb[walk[k - 1]] for k in hops)


def test_twinedge_half_builds_the_hex_grid(tmp_path: Path) -> None:
    w = bench.workload(users=9, steps=5, grid_side=3)
    assert w["links"] == 16 and len(w["cells"]) == 9
    world, _sim = bench.build_twinedge(w, tmp_path)
    assert world.access.size == 9 and world.n_hosts == 9 and world.n_entities == 9
    # 16 mesh links between the servers + one link from each access point to its server
    assert world.links.a.size == 16 + 9
    assert np.allclose(world.host_cpu_ghz, 8.0) and np.allclose(world.host_mem_gb, 16.0)
    # each entity starts on its walk's first hexagon
    xy = bench.cell_xy_m(bench.hex_cells(3))
    assert np.allclose(world.xy_m, xy[np.asarray(w["walks"])[:, 0]])


def test_twinedge_follows_each_user_to_its_hexagon(tmp_path: Path) -> None:
    # user 0 hops 0 -> 1 at step 2 and 1 -> 3 at step 4; user 1 stays in cell 2
    walks = [[0, 0, 1, 1, 3, 3, 3], [2] * 7]
    w = bench.workload(users=2, steps=6, grid_side=2, walks=np.array(walks))
    _world, sim = bench.build_twinedge(w, tmp_path)
    res = sim.run()
    # host j is the server of cell j; two moves, both decided before the last step
    assert res.summary["migrations"] == 2
    assert sim.state.host.tolist() == [3, 2]


def test_twinedge_stays_when_the_users_server_is_full(tmp_path: Path) -> None:
    # servers of 1 CPU: user 0 walks into cell 2, where user 1's service fills the
    # server; the nearest other servers are no nearer than its own (cell 0), so it stays
    walks = [[0, 0, 2, 2, 2, 2], [2] * 6]
    w = bench.workload(users=2, steps=5, grid_side=2, walks=np.array(walks))
    w["server"] = {**w["server"], "cpu": 1}
    _world, sim = bench.build_twinedge(w, tmp_path)
    res = sim.run()
    assert res.summary["migrations"] == 0
    assert sim.state.host.tolist() == [0, 2]


@pytest.mark.skipif(
    not os.environ.get("EDGESIMPY_SRC"), reason="EDGESIMPY_SRC (an EdgeSimPy source tree) not set"
)
def test_both_sides_migrate_the_same_services() -> None:
    r = run_script(
        "--edgesimpy",
        os.environ["EDGESIMPY_SRC"],
        "--users",
        "25",
        "--steps",
        "12",
        "--repeats",
        "1",
        "--seconds-to-move",
        "1,3",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["edgesimpy"]["version"] == "1.1.0"
    for res in out["results"]:
        assert res["hexagons"] == 25 and res["base_stations"] == 25 and res["links"] == 56
        rep = res["repeats"][0]
        assert rep["twinedge_migrations"] == rep["edgesimpy_migrations"] > 0
        assert rep["ratio"] > 0 and rep["ratio_of_step_medians"] > 0
        assert rep["ratio_with_monitor"] > rep["ratio"]
