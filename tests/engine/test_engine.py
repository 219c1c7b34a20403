"""The simulation engine: determinism, capacity, migration behaviour, policy plug-ins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_scenario
from twinedge.engine import simulate
from twinedge.engine.simulation import Simulation
from twinedge.errors import PolicyError
from twinedge.policies.migration import MIGRATION_POLICIES, resolve_migration
from twinedge.policies.placement import resolve_placement
from twinedge.scenario import load_scenario, parse_scenario
from twinedge.world import build_world


class CapacityCheck:
    """A recorder that asserts the capacity invariant after every step."""

    def __init__(self):
        self.steps = 0
        self.migrations = 0

    def placement(self, t_s, world, twins, hosts):
        pass

    def migration(self, t_s, world, twins, src, dst, nbytes, down):
        self.migrations += len(twins)
        assert np.all(src != dst)

    def step_end(self, k, t_s, world, state):
        self.steps += 1
        cpu = np.bincount(state.host, weights=world.cpu_ghz, minlength=world.n_hosts)
        mem = np.bincount(state.host, weights=world.mem_gb, minlength=world.n_hosts)
        assert np.all(cpu <= world.host_cpu_ghz + 1e-9)
        assert np.all(mem <= world.host_mem_gb + 1e-9)
        assert np.allclose(cpu, state.used_cpu_ghz) and np.allclose(mem, state.used_mem_gb)

    def end(self, t_s, world, energy):
        assert energy.shape == (world.n_hosts,) and np.all(energy > 0)


def small_city(entities: int, edges: int, seed: int, steps: int = 20, load: float = 0.8) -> dict:
    return {
        "version": 1,
        "name": "prop",
        "infrastructure": {
            "generate": {
                "area_m": [1500, 1500],
                "edge_sites": edges,
                "regions": 2,
                "cloud_cpu_ghz": 4,
                "cloud_mem_gb": 8,
                "edge_cpu_ghz": [4, 8],
                "edge_mem_gb": [8, 16],
                "region_cpu_ghz": 8,
                "region_mem_gb": 16,
            }
        },
        "entities": [
            {
                "count": entities,
                "mobility": {"model": "random_waypoint", "speed_mps": [10, 30]},
                "twin": {"cpu_ghz": [0.2, 2 * load], "mem_gb": [0.5, 2.0], "latency_req_ms": 6},
            }
        ],
        "run": {"steps": steps, "seed": seed},
        "policies": {"placement": "greedy", "placement_period_s": 7},
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    per_edge=st.integers(1, 8),
    edges=st.integers(2, 8),
    seed=st.integers(0, 10_000),
    migration=st.sampled_from(sorted(MIGRATION_POLICIES)),
)
def test_capacity_is_never_exceeded(per_edge, edges, seed, migration):
    # at most 8 twins of at most 1 GHz per edge site of at least 4 GHz: always feasible
    sc = parse_scenario(small_city(per_edge * edges, edges, seed, load=0.5))
    check = CapacityCheck()
    res = simulate(sc, migration=migration, recorder=check)
    assert check.steps == 20
    assert res.summary["migrations"] == check.migrations
    assert 0 <= res.summary["deadline_miss_ratio"] <= 1


def test_same_seed_same_summary_other_seed_differs():
    sc = load_scenario("city-small")
    a = simulate(sc, seed=5, steps=20, migration="predictive").summary
    b = simulate(sc, seed=5, steps=20, migration="predictive").summary
    c = simulate(sc, seed=6, steps=20, migration="predictive").summary
    assert a == b
    assert a != c


def test_all_policies_see_the_same_movements():
    sc = load_scenario("city-small")
    trails = [
        simulate(sc, steps=10, migration=m).metrics.trails
        for m in ("never", "threshold", "utility")
    ]
    assert np.array_equal(trails[0], trails[1]) and np.array_equal(trails[0], trails[2])


def line_scenario(migration: str, steps: int = 50, **params) -> Simulation:
    """Two edge sites 1 km apart; one entity drives from the first to the second at 20 m/s."""
    sc = tiny_scenario()
    sc["area_m"] = [2000, 100]
    sc["infrastructure"]["nodes"] = [
        {"id": "ap-a", "tier": "access", "x_m": 0, "y_m": 50},
        {"id": "ap-b", "tier": "access", "x_m": 1000, "y_m": 50},
        {
            "id": "edge-a",
            "tier": "edge",
            "x_m": 0,
            "y_m": 50,
            "cpu_ghz": 10,
            "mem_gb": 16,
            "idle_w": 1,
            "max_w": 2,
        },
        {
            "id": "edge-b",
            "tier": "edge",
            "x_m": 1000,
            "y_m": 50,
            "cpu_ghz": 10,
            "mem_gb": 16,
            "idle_w": 1,
            "max_w": 2,
        },
    ]
    sc["infrastructure"]["link_rules"] = {
        "access_edge": {"latency_ms": 0.5, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
        "edge_edge": {"latency_ms": 8, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
        "edge_mesh_k": 1,
        "edge_region": None,
        "region_cloud": None,
    }
    sc["entities"][0]["twin"]["latency_req_ms"] = 6.0
    world = build_world(parse_scenario(sc), np.random.default_rng(0))
    world.xy_m[:] = [[0.0, 50.0]]
    from twinedge.scenario.schema import Trace
    from twinedge.world.mobility import TraceReplay

    ts = np.array([0.0, 50.0])
    world.mobility = [
        (
            slice(0, 1),
            TraceReplay(
                Trace(file="x"),
                ["car"],
                np.array([0, 2]),
                ts,
                np.array([[0.0, 50.0], [1000.0, 50.0]]),
            ),
        )
    ]
    return Simulation(
        world,
        resolve_placement("nearest"),
        resolve_migration(migration, **params),
        steps=steps,
        step_s=1.0,
        placement_period_s=None,
        rng=np.random.default_rng(0),
        mobility_rng=np.random.default_rng(0),
    )


def first_migration_step(sim: Simulation) -> int | None:
    sim.run()
    steps = np.flatnonzero(sim.metrics.step_values[:, 4] > 0)
    return int(steps[0]) + 1 if steps.size else None


def test_threshold_follows_the_entity_and_never_does_not():
    never = line_scenario("never")
    never.run()
    assert never.metrics.step_values[:, 4].sum() == 0
    # after the handover at 500 m the twin is 8 ms away on edge-a: every later step misses
    assert never.metrics.misses >= 20
    thr = line_scenario("threshold")
    step = first_migration_step(thr)
    # the handover to ap-b happens when the car passes 500 m, i.e. at t = 25 s
    assert step in (25, 26)
    assert thr.state.host[0] == thr.world.host_ids.index("edge-b")
    assert thr.metrics.misses < never.metrics.misses


def test_predictive_migrates_before_the_deadline_is_missed():
    thr = line_scenario("threshold")
    pred = line_scenario("predictive", horizon_s=5.0)
    t_thr, t_pred = first_migration_step(thr), first_migration_step(pred)
    assert t_pred is not None and t_pred < t_thr
    assert pred.metrics.misses <= thr.metrics.misses


def test_utility_weighs_latency_against_energy():
    # beta = 1: pure latency slack -> moves like threshold
    assert first_migration_step(line_scenario("utility", beta=1.0)) in (25, 26)
    from twinedge.policies.migration import Utility

    u = Utility(beta=0.5, energy_ref_mj=1.0, penalty=1.0)
    # slack 0 -> exp(0) = 1; U = 0.5*1 - 0.5*E/1 = 0.5 - 0.5*E
    assert u.utility(np.array(10.0), 10.0, np.array(0.2)) == pytest.approx(0.5 - 0.1)
    # a missed deadline (T = 2 T_req): 0.5*exp(-1) - 0 - 1
    assert u.utility(np.array(20.0), 10.0, np.array(0.0)) == pytest.approx(0.5 * np.exp(-1) - 1)
    with pytest.raises(ValueError, match="beta"):
        Utility(beta=1.5)


def test_user_policies_by_import_path_and_bad_answers_are_rejected():
    sc = parse_scenario(small_city(30, 4, 1, steps=5))
    res = simulate(sc, placement="greedy", migration="tests.engine.user_policies:stay_put")
    assert res.summary["migrations"] == 0
    # a user placement function that puts every twin on host 0 overloads it
    with pytest.raises(PolicyError, match="over capacity"):
        simulate(sc, placement="tests.engine.user_policies:first_host")
    with pytest.raises(PolicyError, match="overloads host"):
        simulate(sc, migration="tests.engine.user_policies:everyone_to_host_zero")
    with pytest.raises(PolicyError, match="unknown migration policy 'nope'; use one of"):
        simulate(sc, migration="nope")
    with pytest.raises(PolicyError, match="has no attribute"):
        simulate(sc, migration="tests.engine.user_policies:missing")
    with pytest.raises(PolicyError, match="cannot import module"):
        simulate(sc, migration="no.such.module:f")


class Alternating:
    """A placement that puts every twin on host 0, then 1, then 0 ... one call after the
    other, and remembers the period each re-placement amortised its moves over."""

    name, kind = "alternating", "placement"

    def __init__(self) -> None:
        self.calls: list[int | None] = []

    def decide(self, view, rng):
        from twinedge.policies.placement import PlacementResult

        host = len(self.calls) % 2
        self.calls.append(view.amortise_steps)
        return PlacementResult("feasible", np.full(view.world.n_entities, host), 0.0)


def three_twins(steps: int, period_s: float) -> dict:
    sc = tiny_scenario()
    sc["entities"][0]["count"] = 3
    sc["entities"][0]["twin"]["cpu_ghz"] = 1.0
    sc["run"]["steps"] = steps
    sc["policies"]["placement_period_s"] = period_s
    return sc


def test_no_decision_is_made_or_counted_after_the_horizon():
    # 6 one-second steps, re-placement every 2 s: periods end after steps 1, 3 and 5;
    # the one after step 5 would act from step 6, which the run does not have
    pol = Alternating()
    res = simulate(parse_scenario(three_twins(6, 2.0)), placement=pol)
    assert [p["t_s"] for p in res.placements] == [0.0, 2.0, 4.0]
    assert pol.calls == [None, 2, 2]
    mig = res.metrics.step_values[:, 4].tolist()
    assert mig == [0, 3, 0, 3, 0, 0]  # 3 twins edge -> region, then back; none at the end
    assert res.summary["migrations"] == res.summary["replacement_migrations"] == 6


def test_a_replacement_near_the_horizon_amortises_over_the_steps_left():
    # 7 steps, period 3 s: re-placements after steps 2 (4 steps left: a full period of 3)
    # and 5 (1 step left); none after step 6, the last
    pol = Alternating()
    res = simulate(parse_scenario(three_twins(7, 3.0)), placement=pol)
    assert pol.calls == [None, 3, 1]
    assert res.metrics.step_values[:, 4].tolist() == [0, 0, 3, 0, 0, 3, 0]


def test_the_last_step_decides_no_migration():
    # threshold moves the car's twin as soon as it is late; with the run cut at the step
    # where it first becomes late, the move would only act after the run: none is made
    thr = line_scenario("threshold")
    late = first_migration_step(thr)
    assert late is not None
    cut = line_scenario("threshold", steps=late)
    cut.run()
    assert cut.metrics.step_values[:, 4].sum() == 0


def full_edge_scenario(migration: str) -> Simulation:
    """The car of :func:`line_scenario` drives from edge-a to edge-b, but a static twin
    fills edge-b; a regional hub half-way is 3 ms from both edges. Each access point
    offers one nearest host (``candidates_k=1``) and, above it, the hub."""
    sc = tiny_scenario()
    sc["area_m"] = [2000, 100]
    edge = {"tier": "edge", "y_m": 50, "cpu_ghz": 10, "mem_gb": 16, "idle_w": 1, "max_w": 2}
    sc["infrastructure"]["nodes"] = [
        {"id": "ap-a", "tier": "access", "x_m": 0, "y_m": 50},
        {"id": "ap-b", "tier": "access", "x_m": 1000, "y_m": 50},
        {"id": "edge-a", "x_m": 0, **edge},
        {"id": "edge-b", "x_m": 1000, **edge},
        {"id": "hub", "x_m": 500, **edge, "tier": "region", "cpu_ghz": 100},
    ]
    sc["infrastructure"]["link_rules"] = {
        "access_edge": {"latency_ms": 0.5, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
        "edge_edge": {"latency_ms": 8, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
        "edge_mesh_k": 1,
        "edge_region": {"latency_ms": 3, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
        "region_cloud": None,
    }
    car = sc["entities"][0]
    car["twin"].update(latency_req_ms=6.0, cpu_ghz=6.0, work_gcycles=0.005, state_bytes=1e5)
    filler = {**car, "kind": "filler", "twin": {**car["twin"], "latency_req_ms": 1000.0}}
    sc["entities"] = [car, filler]  # two twins do not fit on one edge host
    world = build_world(parse_scenario(sc), np.random.default_rng(0))
    world.xy_m[:] = [[0.0, 50.0], [1000.0, 50.0]]
    from twinedge.scenario.schema import Trace
    from twinedge.world.mobility import TraceReplay

    car_trace = TraceReplay(
        Trace(file="x"),
        ["car"],
        np.array([0, 2]),
        np.array([0.0, 50.0]),
        np.array([[0.0, 50.0], [1000.0, 50.0]]),
    )
    world.mobility = [(slice(0, 1), car_trace)]  # the filler does not move
    return Simulation(
        world,
        resolve_placement("nearest"),
        resolve_migration(migration),
        steps=50,
        step_s=1.0,
        placement_period_s=None,
        rng=np.random.default_rng(0),
        mobility_rng=np.random.default_rng(0),
        candidates_k=1,
    )


@pytest.mark.parametrize("migration", ["threshold", "utility", "predictive"])
def test_a_full_edge_sends_late_twins_up_to_the_regional_hub(migration):
    never = full_edge_scenario("never")
    never.run()
    hosts = never.world.host_ids
    assert [hosts[h] for h in never.state.host] == ["edge-a", "edge-b"]
    # at ap-b the car is 0.5 + 6 ms (via the hub) from edge-a: late from the handover on
    assert never.metrics.misses >= 20
    sim = full_edge_scenario(migration)
    sim.run()
    # edge-b stays full, so the car's twin goes up to the hub (0.5 + 3 ms from ap-b)
    assert [hosts[h] for h in sim.state.host] == ["hub", "edge-b"]
    assert sim.metrics.step_values[:, 4].sum() == 1
    assert sim.metrics.misses < never.metrics.misses
