"""The network's own twin: the live state run ahead in the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from tests.orchestrator.test_live import ADMIN, live_network, robot, two_sites
from tests.runtime.service_run import run
from twinedge.orchestrator import NetworkState, Orchestrator
from twinedge.orchestrator.forecast import dead_reckon, forecast
from twinedge.scenario import parse_scenario
from twinedge.world import build_world


def network():
    return build_world(
        parse_scenario(two_sites(), "s.yaml"), np.random.default_rng(0), network_only=True
    )


def robots(world, xy, vx):
    n = len(xy)
    ent = {
        "entity_ids": np.array([f"r{i}" for i in range(n)], dtype=object),
        "entity_kind": np.zeros(n, np.int64),
        "entity_owner": np.zeros(n, np.int64),
        "entity_group": np.zeros(n, np.int64),
        "xy_m": np.asarray(xy, float),
        "cpu_ghz": np.ones(n),
        "mem_gb": np.ones(n),
        "state_bytes": np.full(n, 1e4),
        "update_bytes": np.full(n, 200.0),
        "update_hz": np.full(n, 10.0),
        "work_gcycles": np.full(n, 0.001),
        "latency_req_ms": np.full(n, 3.0),
        "tx_power_w": np.full(n, 0.2),
    }
    w = world.with_entities(ent, owners=["fleet"])
    s = NetworkState.at(w, w.xy_m)
    s.prev_xy_m = s.xy_m - np.column_stack([vx, np.zeros(n)])  # velocity over a 1 s step
    return w, s


def test_dead_reckoning_reflects_at_the_edge_of_the_area():
    w, s = robots(network(), [[2900.0, 0.0]], [200.0])
    v = np.array([[200.0, 0.0]])
    dead_reckon(w, s, 1.0, v)
    assert s.xy_m.tolist() == [[2900.0, 0.0]]  # 3100 reflected at 3000
    assert v.tolist() == [[-200.0, 0.0]]
    dead_reckon(w, s, 1.0, v)
    assert s.xy_m.tolist() == [[2700.0, 0.0]]
    assert s.prev_xy_m.tolist() == [[2900.0, 0.0]]


def test_a_crowd_heading_for_one_site_shows_up_as_a_spike_before_it_arrives():
    world = network()
    edge1, edge2 = world.host_ids.index("edge-1"), world.host_ids.index("edge-2")
    # five robots parked at site 2 (on edge-2), four driving there from site 1 at 500 m/s
    xy = [[2990.0, 0.0]] * 5 + [[10.0, 0.0]] * 4
    w, s = robots(world, xy, [0.0] * 5 + [500.0] * 4)
    s.set_hosts(w, np.array([edge2] * 5 + [edge1] * 4))
    orch = Orchestrator("greedy", "threshold", step_s=1.0, rng=np.random.default_rng(0))
    before = (s.xy_m.copy(), s.host.copy())
    f = forecast(w, s, orch, horizon_s=8)
    assert np.array_equal(s.xy_m, before[0]) and np.array_equal(s.host, before[1])  # a copy
    assert len(f["steps"]) == 8 and f["twins"] == 9
    assert sum(r["migrations"] for r in f["steps"]) == 4
    # edge-2 carries 5 then 9 twins of 1 GHz on 10 GHz
    peaks = {h["id"]: h["peak_utilisation"] for h in f["hosts"]}
    assert peaks == {"edge-1": pytest.approx(0.4), "edge-2": pytest.approx(0.9)}
    assert [h["id"] for h in f["spikes"]] == ["edge-2"]
    # at t = 3 s the movers are at x = 1,510 m, past half-way: they attach to ap-2, from
    # where edge-1 is 5.5 ms away (over their 3 ms), so threshold moves them then, not before
    moved_at = next(r["t_s"] for r in f["steps"] if r["migrations"])
    assert moved_at == 3.0
    assert orch.placements == []  # the live orchestrator was not used to decide


def test_the_live_network_serves_a_forecast(tmp_path):
    async def body(svc):
        live = live_network(svc, two_sites())
        live.forecast_horizon_s = 5.0
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        await svc.device_report("fleet:r1", {"position": {"vx_mps": 600.0, "vy_mps": 0.0}})
        return await live.forecast_now()

    f = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert f["twins"] == 1 and len(f["steps"]) == 5
    assert sum(r["migrations"] for r in f["steps"]) == 1  # it follows the robot to site 2
