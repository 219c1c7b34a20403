"""--scale: entities and capacity multiplied together keep host load and policy
differences; multiplied alone they do not."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest

from twinedge.engine.simulation import simulate
from twinedge.engine.sweep import apply_overrides
from twinedge.errors import ScenarioError
from twinedge.scenario import load_scenario, parse_scenario, scale_scenario
from twinedge.world import build_world


def test_the_built_in_city_times_three_by_hand():
    city = load_scenario("city")
    big = scale_scenario(city, 3)
    gen, gen1 = big.infrastructure.generate, city.infrastructure.generate
    assert big.name == "city-x3"
    assert [g.count for g in big.entities] == [3600, 1800, 600]
    assert (gen.edge_sites, gen.regions) == (180, 18)
    assert gen.area_m == pytest.approx((4000 * math.sqrt(3), 4000 * math.sqrt(3)))
    assert (gen.cloud_cpu_ghz, gen.cloud_mem_gb) == (60_000.0, 300_000.0)
    # every edge and region host keeps its capacity
    assert (gen.edge_cpu_ghz, gen.region_cpu_ghz) == (gen1.edge_cpu_ghz, gen1.region_cpu_ghz)
    world = build_world(big, np.random.default_rng(0))
    assert world.n_entities == 6000 and world.n_hosts == 180 + 18 + 1
    # the same density of sites: 60 per 16 km² before, 180 per 48 km² after
    w, h = gen.area_m
    assert 180 / (w * h) == pytest.approx(60 / (4000 * 4000))
    assert load_scenario("city", scale=3) == big
    assert scale_scenario(city, 1) is city


def test_explicit_nodes_scale_their_capacity():
    sc = parse_scenario(
        {
            "version": 1,
            "infrastructure": {
                "nodes": [
                    {"id": "ap", "tier": "access", "x_m": 0, "y_m": 0},
                    {"id": "e", "tier": "edge", "x_m": 0, "y_m": 0, "cpu_ghz": 8, "mem_gb": 16},
                    {
                        "id": "c",
                        "tier": "cloud",
                        "x_m": 9e3,
                        "y_m": 0,
                        "cpu_ghz": 100,
                        "mem_gb": 50,
                    },
                ],
                "links": [
                    {"a": "ap", "b": "e", "latency_ms": 1, "bandwidth_mbps": 100},
                    {"a": "e", "b": "c", "latency_ms": 5, "bandwidth_mbps": 100},
                ],
            },
            "area_m": [100, 400],
            "entities": [{"count": 7, "mobility": {"model": "static"}}],
        }
    )
    half = scale_scenario(sc, 0.5)
    nodes = {n.id: n for n in half.infrastructure.nodes}
    assert (nodes["e"].cpu_ghz, nodes["e"].mem_gb) == (4.0, 8.0)
    assert (nodes["c"].cpu_ghz, nodes["c"].mem_gb) == (50.0, 25.0)
    assert (nodes["ap"].cpu_ghz, nodes["ap"].x_m) == (0.0, 0.0)
    assert half.entities[0].count == 4  # round(3.5): to even
    assert half.area_m == pytest.approx((100 * math.sqrt(0.5), 400 * math.sqrt(0.5)))


def test_what_cannot_be_scaled_is_refused():
    sc = parse_scenario(
        {
            "version": 1,
            "infrastructure": {"generate": {"edge_sites": 3, "regions": 1}},
            "entities": [
                {"count": 5},
                {"kind": "kiosk", "positions_m": [[1, 2], [3, 4]], "mobility": {"model": "static"}},
            ],
        }
    )
    with pytest.raises(ScenarioError, match=r"entities\[1\] \(kiosk\): --scale multiplies"):
        scale_scenario(sc, 2)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ScenarioError, match="expected a number > 0"):
            scale_scenario(sc, bad)


def _utilisation(sc, seeds, migration="never", steps=5) -> list[float]:
    return [
        simulate(sc, seed=s, steps=steps, placement="greedy", migration=migration).summary[
            "mean_utilisation"
        ]
        for s in seeds
    ]


def test_host_utilisation_stays_comparable_at_scale_three():
    """The tolerance comes from the seeds: the difference of the two means must lie within
    three standard errors of a difference (what seed-to-seed noise alone gives). The same
    test refuses scaling the entities alone."""
    seeds = range(4)
    city = load_scenario("city")
    one = _utilisation(city, seeds)
    three = _utilisation(scale_scenario(city, 3), seeds)
    se = math.sqrt(statistics.variance(one) / len(one) + statistics.variance(three) / len(three))
    tolerance = 3 * se
    assert 0 < tolerance < 0.1  # the seeds agree enough for the test to mean something
    assert abs(statistics.mean(one) - statistics.mean(three)) <= tolerance, (one, three)
    crowded = apply_overrides(city, {"entities.count": 6000})  # entities only
    alone = _utilisation(crowded, seeds)
    assert abs(statistics.mean(one) - statistics.mean(alone)) > tolerance, (one, alone)


def test_migration_policies_still_differ_at_scale_three():
    big = load_scenario("city", scale=3)
    never = simulate(big, steps=10, placement="greedy", migration="never").summary
    threshold = simulate(big, steps=10, placement="greedy", migration="threshold").summary
    assert never["migrations"] == 0
    assert threshold["migrations"] > 100
    assert threshold["mean_latency_ms"] < never["mean_latency_ms"]
    assert threshold["deadline_miss_ratio"] < never["deadline_miss_ratio"]


def test_the_command_line_scales_run_and_compare(tmp_path):
    def twinedge(*args):
        return subprocess.run(
            [sys.executable, "-m", "twinedge", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )

    p = twinedge("compare", "city-small", "--scale", 2, "--steps", 4, "--migration",
                 "never,threshold", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["scenario"] == "city-small-x2"
    assert set(doc["policies"]) == {"greedy+never", "greedy+threshold"}
    p = twinedge("run", "city-small", "--scale", 2, "--steps", 3, "--migration", "never",
                 "--out", tmp_path / "out", "--quiet", "--no-report")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scenario"] == (
        "city-small-x2"
    )
    p = twinedge("run", "city-small", "--scale", "-2", "--steps", 3)
    assert p.returncode != 0
    assert p.stderr.strip() == "error: --scale: got -2.0; expected a number > 0"
