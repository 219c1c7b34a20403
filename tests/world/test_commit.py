"""A host's durable commit time (``commit_ms``): a fixed part of every twin's latency on
that host, the same in the simulator's latency, the orchestrator's view and the policies'
limits; absent or 0, every number is what it was; bad values get one clear line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from tests.devices.test_links import radio_ms, robots
from twinedge.engine import simulate
from twinedge.engine.simulation import build_simulation
from twinedge.errors import ScenarioError
from twinedge.orchestrator.core import latency_on_hosts
from twinedge.orchestrator.view import NetworkView, latency_ms
from twinedge.scenario import load_scenario, parse_scenario
from twinedge.world import build_world, models

#: robot 0 1 km from ap-1, robot 1 10 m from ap-2; each twin on its own site's edge
XY = ((1000.0, 0.0), (2990.0, 0.0))
#: 1 GHz of 10 reserved: rho = 0.1; work 0.001 Gcycles at 10 GHz = 0.1 ms
SERVICE_MS = 1000.0 * 0.001 / 10.0 / (1.0 - 0.1)
COMMIT = {"edge-1": 1.5, "edge-2": 0.25}


def with_commit(doc: dict, commit: dict[str, float]) -> dict:
    for node in doc["infrastructure"]["nodes"]:
        if node["id"] in commit:
            node["commit_ms"] = commit[node["id"]]
    return doc


def run(doc: dict, steps: int = 3) -> dict:
    return simulate(parse_scenario(doc, "s.yaml"), seed=0, steps=steps).summary


def test_each_twin_pays_its_own_hosts_commit_by_hand():
    sim = build_simulation(
        parse_scenario(with_commit(robots(*XY), COMMIT), "s.yaml"), seed=0, steps=2
    )
    sim.reset()
    sim.observe()
    w, s = sim.world, sim.state
    assert [w.host_ids[h] for h in s.host] == ["edge-1", "edge-2"]
    up = np.array([radio_ms(1000.0, 200), radio_ms(10.0, 200)])
    back = w.ap_host_ms[s.ap, s.host]
    np.testing.assert_allclose(back, 0.5, atol=1e-8)  # each site's edge, 0.5 ms away
    expected = up + back + np.array([1.5, 0.25]) + SERVICE_MS
    np.testing.assert_allclose(s.latency_ms, expected, rtol=1e-12)
    # the one formula of both faces, and the simulator's fast path, bit for bit
    assert np.array_equal(latency_ms(w, s, slice(None), s.host), s.latency_ms)
    assert np.array_equal(latency_on_hosts(w, s), s.latency_ms)
    # the commit is not stretched by the load: on a host at rho = 0.5 it is still 1.5
    other = latency_ms(w, s, np.array([1]), np.array([0]))  # robot 1 on edge-1: rho 0.2
    far = w.ap_host_ms[s.ap[1], 0]
    assert other[0] == pytest.approx(up[1] + far + 1.5 + 0.1 / (1 - 0.2), rel=1e-12)


def test_the_placement_problem_and_the_policies_limits_include_the_commit():
    sim = build_simulation(
        parse_scenario(with_commit(robots(*XY), COMMIT), "s.yaml"), seed=0, steps=2
    )
    sim.reset()
    sim.observe()
    w, s = sim.world, sim.state
    view = NetworkView(w, s, step_s=1.0)
    prob = view.placement_problem()
    up = s.uplink_ms
    # idle latency of robot 0 on each host: uplink + backbone + commit + 0.1 ms
    commit = w.host_commit_ms
    np.testing.assert_allclose(
        prob.rows(np.array([0]))[0], up[0] + w.ap_host_ms[s.ap[0]] + commit + 0.1, rtol=1e-12
    )
    # the service part holds no commit
    np.testing.assert_allclose(prob.candidate_service_ms, 0.1, rtol=1e-12)
    # the candidates are priced by the same operations as the pairs, bit for bit
    cand, cand_lat = prob.candidates, prob.candidate_latency_ms
    for i in range(w.n_entities):
        assert np.array_equal(prob.latency_of(np.full(cand.shape[1], i), cand[i]), cand_lat[i])
    # a twin meets 3 ms while up + back + commit + 0.1 / (1 - rho) <= 3
    req, back = 3.0, w.ap_host_ms[s.ap, s.host]
    rho0 = 1.0 - 0.1 / (req - up[0] - back[0] - 1.5)
    rho1 = 1.0 - 0.1 / (req - up[1] - back[1] - 0.25)
    # robot 1 fits even at the held factor (rho1 > 0.95): no limit but edge-2's capacity
    assert rho1 > models.RHO_CAP
    np.testing.assert_allclose(view.load_limit_ghz(), [rho0 * 10.0, 10.0], rtol=1e-12)
    # without edge-1's commit the limit would be higher: the commit takes room
    assert rho0 < 1.0 - 0.1 / (req - up[0] - back[0])


def test_a_commit_past_the_deadline_makes_the_twin_miss_it():
    # 3 ms of commit on a twin whose requirement is 3 ms: every step a miss
    slow = run(with_commit(robots(*XY), {"edge-1": 3.0, "edge-2": 3.0}))
    assert slow["deadline_miss_ratio"] == 1.0
    assert run(robots(*XY))["deadline_miss_ratio"] == 0.0


@pytest.mark.parametrize("builtin", ["city-small"])
def test_absent_or_zero_commit_changes_no_number(builtin):
    # explicit nodes: commit_ms: 0 on every host node
    doc = robots(*XY)
    assert run(with_commit(robots(*XY), {"edge-1": 0.0, "edge-2": 0.0})) == run(doc)
    # the fleet example's mean latency as docs/benchmarks.md quotes it
    fleet = simulate(load_scenario("examples/two-sites-fleet.yaml"), seed=0).summary
    assert fleet["mean_latency_ms"] == pytest.approx(0.8921759012, abs=1e-10)
    # a generated city: generate.commit_ms: 0
    sc = load_scenario(builtin)
    gen = sc.model_dump(mode="json", exclude_none=True)
    gen["infrastructure"]["generate"]["commit_ms"] = 0.0
    zero = simulate(parse_scenario(gen, "city.yaml"), seed=0, steps=3).summary
    assert zero == simulate(sc, seed=0, steps=3).summary
    # and a world without the array at all (built by hand) prices it as 0
    w = build_world(sc, np.random.default_rng(0))
    w.node_commit_ms = None
    assert not w.commits and np.array_equal(w.host_commit_ms, np.zeros(w.n_hosts))


def test_a_generated_city_gives_every_host_its_commit():
    sc = load_scenario("city-small")
    doc = sc.model_dump(mode="json", exclude_none=True)
    doc["infrastructure"]["generate"]["commit_ms"] = 0.75
    w = build_world(parse_scenario(doc, "city.yaml"), np.random.default_rng(0))
    assert w.commits and np.array_equal(w.host_commit_ms, np.full(w.n_hosts, 0.75))
    # the same twins on the same hosts: every latency 0.75 ms more (the placements may
    # differ: a twin's room to its deadline is 0.75 ms less)
    sim = build_simulation(sc, seed=0, steps=2)
    sim.reset()
    sim.observe()
    s = sim.state
    slow = dataclasses.replace(sim.world, node_commit_ms=np.full(len(sim.world.node_ids), 0.75))
    more = latency_ms(slow, s, slice(None), s.host) - s.latency_ms
    np.testing.assert_allclose(more, 0.75, rtol=1e-9)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "got -1; expected Input should be greater than or equal to 0"),
        (20_000, "got 20000; expected Input should be less than or equal to 10000"),
        ("fast", "got 'fast'; expected Input should be a valid number"),
        (".inf", "got inf; expected a finite number"),
    ],
)
def test_a_bad_commit_time_is_one_clear_line(tmp_path, value, expected):
    doc = robots(*XY)
    text = yaml.safe_dump(with_commit(doc, {"edge-2": "VALUE"})).replace("VALUE", str(value))
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(str(p))
    (line,) = e.value.problems
    assert line.startswith(f"{p}: infrastructure.nodes[")
    assert ".commit_ms: " in line and expected in line
    # a generator's commit_ms likewise
    city = load_scenario("city-small").model_dump(mode="json", exclude_none=True)
    city["infrastructure"]["generate"]["commit_ms"] = -2
    with pytest.raises(ScenarioError, match=r"infrastructure.generate.commit_ms: got -2"):
        parse_scenario(city, "city.yaml")


def test_the_models_service_time_is_unchanged():
    # the CPU part keeps its formula: the commit is a term of its own
    assert models.service_ms(np.array(0.001), np.array(10.0)) == pytest.approx(0.1)
