"""The engine's stepping API: reset / observe / decide / result is the run loop, split."""

from __future__ import annotations

import numpy as np
import pytest

from twinedge.engine import simulate
from twinedge.engine.simulation import Simulation
from twinedge.errors import SimulationError
from twinedge.scenario import load_scenario
from twinedge.world import build_world


def city_small_sim(steps: int, seed: int = 5) -> Simulation:
    """The run ``simulate(city-small, seed, steps, migration="threshold")`` builds."""
    sc = load_scenario("city-small")
    world_rng, mobility_rng, policy_rng = np.random.default_rng(seed).spawn(3)
    return Simulation(
        build_world(sc, world_rng),
        "greedy",
        "threshold",
        steps=steps,
        step_s=sc.run.step_s,
        placement_period_s=sc.policies.placement_period_s,
        rng=policy_rng,
        mobility_rng=mobility_rng,
    )


def test_stepping_by_hand_is_the_run():
    """40 steps (a re-placement at 30) stepped one half at a time give the numbers of
    ``run`` and of ``simulate``, step by step."""
    ref = simulate(load_scenario("city-small"), seed=5, steps=40, migration="threshold")
    sim = city_small_sim(40)
    placed = sim.reset()
    assert placed.hosts.shape == (200,)
    outcomes = []
    while not sim.done:
        sim.observe()
        assert sim.experienced_ms.shape == (200,)
        outcomes.append(sim.decide())
    res = sim.result()
    assert res.summary == ref.summary
    assert np.array_equal(res.metrics.step_values, ref.metrics.step_values)
    assert [o.migrations for o in outcomes] == ref.metrics.step_values[:, 4].tolist()
    assert outcomes[29].replaced > 0 and outcomes[-1].migrations == 0  # horizon: no decision
    run = city_small_sim(40).run()
    assert run.summary == ref.summary


def test_experienced_latency_is_what_the_metrics_record():
    sim = city_small_sim(3)
    sim.reset()
    sim.observe()
    eff = sim.experienced_ms.copy()
    sim.decide()
    assert sim.metrics.step_values[0, 1] == pytest.approx(eff.mean())
    assert sim.metrics.misses == int((eff > sim.world.latency_req_ms).sum())


def test_stepping_out_of_order_says_what_to_do():
    sim = city_small_sim(2)
    with pytest.raises(SimulationError, match="call reset"):
        sim.observe()
    with pytest.raises(SimulationError, match="call observe"):
        sim.decide()
    with pytest.raises(SimulationError, match="no step is observed"):
        _ = sim.experienced_ms
    sim.reset()
    with pytest.raises(SimulationError, match="runs once"):
        sim.reset()
    with pytest.raises(SimulationError, match="not over: 0 of 2"):
        sim.result()
    sim.observe()
    with pytest.raises(SimulationError, match="already observed"):
        sim.observe()
    sim.decide()
    sim.advance()
    assert sim.done
    with pytest.raises(SimulationError, match="all 2 steps have run"):
        sim.advance()
    assert sim.result().summary["deadline_miss_ratio"] >= 0
