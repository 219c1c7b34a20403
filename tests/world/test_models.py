"""Hand-computed values of every model (see docs/models.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinedge.scenario import parse_scenario
from twinedge.world import build_world, models
from twinedge.world.geo import latlon_to_xy_m
from twinedge.world.network import make_links, shortest_paths


def test_path_loss_at_one_km_is_the_reference():
    assert models.path_loss_db(np.array([1000.0]), 128.1, 3.76, 10.0)[0] == pytest.approx(128.1)
    # 100 m: 128.1 + 37.6 * log10(0.1) = 90.5 dB
    assert models.path_loss_db(np.array([100.0]), 128.1, 3.76, 10.0)[0] == pytest.approx(90.5)
    # below the minimum distance the loss is that of the minimum distance
    assert models.path_loss_db(np.array([1.0]), 128.1, 3.76, 10.0)[0] == pytest.approx(
        128.1 - 37.6 * 2
    )


def test_uplink_rate_and_time_by_hand():
    # d = 1 km: PL = 128.1 dB -> gain 10^-12.81; noise -174 dBm/Hz over 10 MHz = -104 dBm
    gain = 10**-12.81
    noise_w = 10 ** (-104 / 10) / 1000
    snr = 0.2 * gain / noise_w  # 0.7783
    rate = 10e6 * math.log2(1 + snr)  # about 8.30 Mbit/s
    got = models.uplink_rate_bps(
        np.array([1000.0]), np.array([0.2]), 10e6, -174.0, 128.1, 3.76, 10.0
    )[0]
    assert snr == pytest.approx(0.7783, rel=1e-3)
    assert got == pytest.approx(rate, rel=1e-12)
    assert got == pytest.approx(8.303e6, rel=1e-3)
    # 2,000 bytes = 16,000 bits at 8.303 Mbit/s = 1.927 ms
    assert models.uplink_ms(np.array([2000.0]), np.array([got]))[0] == pytest.approx(
        1.927, rel=1e-3
    )


def test_service_and_queueing():
    assert models.service_ms(np.array([0.02]), np.array([32.0]))[0] == pytest.approx(0.625)
    assert models.queue_factor(np.array([0.0, 0.5, 0.9])) == pytest.approx([1.0, 2.0, 10.0])
    # held at rho = 0.95 so the latency stays finite when a host is full
    assert models.queue_factor(np.array([1.0, 3.0])) == pytest.approx([20.0, 20.0])


def test_energy_models():
    # seed 000: E = p * t
    assert models.device_energy_j(np.array([0.2]), np.array([0.001927]))[0] == pytest.approx(
        3.854e-4
    )
    # linear server power: 100 W idle, 300 W max, 25% busy -> 150 W; clipped above 100%
    assert models.server_power_w(100.0, 300.0, np.array([0.25, 1.5])) == pytest.approx(
        [150.0, 300.0]
    )


def test_migration_downtime():
    # 10 MB over a 1,000 Mbit/s bottleneck = 0.08 s, plus 5 ms of path latency
    got = models.migration_downtime_s(np.array([10e6]), np.array([1000.0]), np.array([5.0]))[0]
    assert got == pytest.approx(0.085)


def test_shortest_paths_keep_the_bottleneck_of_the_chosen_path():
    # a-b 1 ms 100 Mbit/s, b-c 2 ms 1000 Mbit/s, a-c 10 ms 5000 Mbit/s: a->c goes via b
    links = make_links([(0, 1, 1.0, 100.0), (1, 2, 2.0, 1000.0), (0, 2, 10.0, 5000.0)])
    p = shortest_paths(3, links, np.array([0, 2]))
    assert p.host_node_ms[0] == pytest.approx([0.0, 1.0, 3.0], abs=1e-6)
    assert p.host_node_mbps[0, 2] == 100.0
    assert p.host_node_mbps[1, 1] == 1000.0
    assert np.isinf(p.host_node_mbps[0, 0])


def test_latlon_projection_one_degree_of_latitude():
    xy = latlon_to_xy_m(np.array([1.0]), np.array([0.0]), 0.0, 0.0)
    assert xy[0, 1] == pytest.approx(111_195, rel=1e-4)
    assert xy[0, 0] == pytest.approx(0.0)
    # a degree of longitude at 60 degrees is half as long as at the equator
    xy = latlon_to_xy_m(np.array([60.0]), np.array([1.0]), 60.0, 0.0)
    assert xy[0, 0] == pytest.approx(111_195 / 2, rel=1e-4)


def test_world_latency_of_one_entity_by_hand():
    from tests.conftest import tiny_scenario
    from twinedge.engine.simulation import Simulation
    from twinedge.policies.migration import resolve_migration
    from twinedge.policies.placement import resolve_placement

    sc = parse_scenario(tiny_scenario())
    world = build_world(sc, np.random.default_rng(0))
    world.xy_m[:] = [[100.0, 0.0]]  # 100 m from the access point
    sim = Simulation(
        world,
        resolve_placement("nearest"),
        resolve_migration("never"),
        steps=1,
        step_s=1.0,
        placement_period_s=None,
        rng=np.random.default_rng(0),
        mobility_rng=np.random.default_rng(0),
    )
    res = sim.run()
    # uplink at 100 m: PL = 90.5 dB
    snr = 0.2 * 10**-9.05 / (10 ** (-104 / 10) / 1000)
    up_ms = 16000 / (10e6 * math.log2(1 + snr)) * 1000
    # on the edge (nearest, co-located): 0.5 ms backbone; service 0.02/10 s = 2 ms; rho = 5/10
    expect = up_ms + 0.5 + 2.0 / (1 - 0.5)
    assert sim.state.host[0] == list(world.host_ids).index("edge")
    assert res.summary["mean_latency_ms"] == pytest.approx(expect, rel=1e-9)
    # 4.5+ ms against a 5 ms requirement: no miss
    assert res.summary["deadline_miss_ratio"] == 0.0
    # energy over one 1 s step: device p * t_up * 10 Hz; servers idle+(max-idle)*u
    assert res.summary["device_energy_j"] == pytest.approx(0.2 * up_ms / 1000 * 10)
    assert res.summary["server_energy_j"] == pytest.approx((100 + 200 * 0.5) + 1000)


def test_a_node_with_x_m_alone_is_placed_by_its_lat_lon():
    # x_m without y_m is no metre position: the schema takes lat/lon as the node's position
    from twinedge.scenario.schema import NodeSpec
    from twinedge.world.build import _node_xy

    n = NodeSpec(id="a", tier="edge", x_m=5.0, lat=48.1, lon=11.6)
    assert _node_xy(n, (48.0, 11.5)) == pytest.approx(
        tuple(latlon_to_xy_m(np.array([48.1]), np.array([11.6]), 48.0, 11.5)[0])
    )
