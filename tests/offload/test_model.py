"""The task model against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from twinedge.errors import OffloadError
from twinedge.offload import TaskBatch, TaskProblem
from twinedge.orchestrator.view import NetworkState, NetworkView
from twinedge.scenario import load_scenario
from twinedge.world import build_world, models

from .helpers import make_problem

# one task: C = 2 Gcycles, device 1 GHz, kappa 1e-27, p = 0.5 W; uplink 100 ms, downlink
# 10 ms; host 10 GHz at rho = 0.5 (queue factor 2), 20 J/Gcycle, backbone 5 ms one way
P = dict(gcycles=2.0)


def test_local_by_hand() -> None:
    c = make_problem(**P).evaluate(np.array([-1]), np.array([0.3]))  # fraction ignored
    assert c.latency_ms[0] == pytest.approx(2000.0)  # 1000 * 2 / 1
    assert c.device_j[0] == pytest.approx(2.0)  # 1e-27 * (1e9)^2 * 2e9
    assert c.server_j[0] == 0.0 and c.host_gcycles[0] == 0.0
    assert not c.on_time[0]


def test_offload_by_hand() -> None:
    c = make_problem(**P).evaluate(np.array([0]), np.array([0.0]))
    # 100 up + 1000 * 2 / 10 * 2 compute + 10 down + 2 * 5 backbone
    assert c.latency_ms[0] == pytest.approx(520.0)
    assert c.device_j[0] == pytest.approx(0.05)  # 0.5 W * 0.1 s
    assert c.server_j[0] == pytest.approx(40.0)  # 2 Gcycles * 20 J/Gcycle
    assert c.host_gcycles[0] == pytest.approx(2.0)


def test_split_by_hand() -> None:
    p = make_problem(**P, splittable=True)
    x = p.split_fraction(np.array([0]))
    assert x[0] == pytest.approx(520.0 / 2510.0)  # (a + b) / (L + a), a = 510, b = 10
    c = p.evaluate(np.array([0]), x)
    assert c.latency_ms[0] == pytest.approx(2000.0 * 520.0 / 2510.0)
    y = 1 - 520.0 / 2510.0
    assert c.device_j[0] == pytest.approx(2.0 * (1 - y) + 0.5 * 0.1 * y)
    assert c.server_j[0] == pytest.approx(40.0 * y)


def test_objective_by_hand() -> None:
    p = make_problem(**P)  # miss 10, 1 per J, 1 per s
    assert p.objective(np.array([-1]), np.array([1.0])) == pytest.approx(10 + 2.0 + 2.0)
    assert p.objective(np.array([0]), np.array([0.0])) == pytest.approx(10 + 40.05 + 0.52)


def test_options_strike_what_does_not_fit() -> None:
    p = make_problem(gcycles=[2.0, 0.5], cap_gcycles=(1.0,), splittable=True)
    allowed = p.options()[-1]
    # columns: local, whole on host 0, split with host 0
    assert allowed[0].tolist() == [True, False, False]  # 2 > 1; split 2 * y > 1 too
    assert allowed[1].tolist() == [True, True, True]


def test_problem_of_a_world_uses_the_radio_model() -> None:
    world = build_world(load_scenario("city-small"), np.random.default_rng(0))
    view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=2.0)
    b = TaskBatch.of([3, 7], [1.0, 1.0], [1e5, 2e5], 1e3, 50.0, tx_power_w=0.2)
    p = TaskProblem.of(b, view)
    r = world.radio
    args = (
        r.bandwidth_mhz * 1e6,
        r.noise_dbm_per_hz,
        r.path_loss_ref_db,
        r.path_loss_exponent,
        r.min_distance_m,
    )
    dist = view.state.dist_m[[3, 7]]
    expect = models.uplink_ms(
        np.array([1e5, 2e5]), models.uplink_rate_bps(dist, np.full(2, 0.2), *args)
    )
    np.testing.assert_allclose(p.up_ms_full, expect)
    free = world.host_cpu_ghz - view.state.used_cpu_ghz
    np.testing.assert_allclose(p.cap_gcycles, np.maximum(free, 0) * 2.0)
    np.testing.assert_array_equal(p.cand, view.ap_candidates[view.state.ap[[3, 7]]])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("gcycles", -1.0, r"gcycles\[0\] got -1.0; expected a finite number >= 0"),
        ("input_bytes", float("nan"), r"input_bytes\[0\]"),
        ("deadline_ms", 0.0, r"deadline_ms\[0\] got 0.0; expected a finite number > 0"),
        ("kappa", 0.0, r"kappa\[0\]"),
    ],
)
def test_bad_tasks_are_refused(field: str, value: float, match: str) -> None:
    kw = dict(entity=[0], gcycles=1.0, input_bytes=1.0, output_bytes=1.0, deadline_ms=10.0)
    kw[field] = value
    with pytest.raises(OffloadError, match=match):
        TaskBatch.of(**kw)


def test_entity_outside_the_world_is_refused() -> None:
    world = build_world(load_scenario("city-small"), np.random.default_rng(0))
    view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)
    with pytest.raises(OffloadError, match="entity got 200; the world has 200"):
        TaskProblem.of(TaskBatch.of([200], 1.0, 1.0, 1.0, 10.0), view)
