"""Link emulation: the delay a report waits is the scenario's network model for its path
(worked out by hand here from the scenario's numbers), the same function the simulator
adds to every twin's latency; bad input gets one clear line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from tests.devices.test_devices_cli import one_error
from tests.orchestrator.test_live import two_sites
from twinedge.devices.errors import DevicesError
from twinedge.devices.links import PUBACK_BYTES, LinkModel, check_delay_scale
from twinedge.engine.simulation import build_simulation
from twinedge.scenario import load_scenario
from twinedge.scenario.loader import parse_scenario
from twinedge.world import build_world


def radio_ms(distance_m: float, nbytes: float) -> float:
    """The uplink of docs/models.md with the scenario defaults written out: path loss
    128.1 dB + 37.6 log10(d / 1 km) (d held at 10 m), 0.2 W, 10 MHz, -174 dBm/Hz."""
    d_km = max(distance_m, 10.0) / 1000.0
    pl_db = 128.1 + 37.6 * math.log10(d_km)
    noise_w = 10 ** ((-174.0 - 30.0) / 10.0) * 10e6
    snr = 0.2 * 10 ** (-pl_db / 10.0) / noise_w
    rate_bps = 10e6 * math.log2(1.0 + snr)
    return 1000.0 * 8.0 * nbytes / rate_bps


def robots(*xy: tuple[float, float]) -> dict:
    """examples/two-sites.yaml with static robots at ``xy``."""
    sc = two_sites()
    group = sc["entities"][0]
    del group["count"]
    group["positions_m"] = [list(p) for p in xy]
    return sc


def world_of(sc: dict):
    return build_world(parse_scenario(sc, "two-sites.yaml"), np.random.default_rng(0))


def test_radio_by_hand_is_the_worked_example_of_the_models_page():
    # docs/models.md: d = 1 km, 0.2 W, 10 MHz -> 8.30 Mbit/s, 2,000 bytes take 1.927 ms
    assert radio_ms(1000.0, 2000) == pytest.approx(1.927, abs=5e-4)


def test_a_report_waits_radio_plus_backbone_to_its_twins_host():
    links = LinkModel(world_of(robots((1000.0, 0.0), (2990.0, 0.0))))
    # robot 0 is 1 km from ap-1 (2 km from ap-2); ap-1 -> edge-1 is the 0.5 ms access
    # link, ap-1 -> edge-2 adds the 5 ms edge link
    near = links.delay(0, 1000.0, 0.0, "edge-1", 200)
    assert near is not None and near.host == "edge-1"
    assert near.uplink_ms == pytest.approx(radio_ms(1000.0, 200), rel=1e-12)
    assert near.uplink_ms == pytest.approx(0.19270, abs=1e-5)
    assert near.backbone_ms == pytest.approx(0.5, abs=1e-8)
    assert near.up_ms == pytest.approx(0.5 + radio_ms(1000.0, 200), abs=1e-8)
    assert near.return_ms == pytest.approx(0.5 + radio_ms(1000.0, PUBACK_BYTES), abs=1e-8)
    far = links.delay(0, 1000.0, 0.0, "edge-2", 200)
    assert far is not None and far.backbone_ms == pytest.approx(5.5, abs=1e-8)
    # the position of the report, not the entity's initial one: at (2990, 0) it is 10 m
    # from ap-2, the co-located edge-2 is 0.5 ms away
    there = links.delay(0, 2990.0, 0.0, "edge-2", 100)
    assert there is not None and there.backbone_ms == pytest.approx(0.5, abs=1e-8)
    assert there.uplink_ms == pytest.approx(radio_ms(10.0, 100), rel=1e-12)
    # no delay where the model has no path: the core's broker, a host it does not know
    assert links.delay(0, 0.0, 0.0, None, 200) is None
    assert links.delay(0, 0.0, 0.0, "edge-9", 200) is None


def test_the_scale_multiplies_every_delay():
    w = world_of(robots((1000.0, 0.0)))
    one = LinkModel(w).delay(0, 1000.0, 0.0, "edge-2", 200)
    three = LinkModel(w, 3).delay(0, 1000.0, 0.0, "edge-2", 200)
    assert one is not None and three is not None
    assert three.uplink_ms == pytest.approx(3 * one.uplink_ms, rel=1e-12)
    assert three.backbone_ms == pytest.approx(3 * 5.5, abs=1e-7)
    assert three.return_ms == pytest.approx(3 * one.return_ms, rel=1e-12)


def test_the_emulated_network_is_the_simulators_network_term():
    # every step of a simulation of a moving scenario: the network part World.network_ms
    # gives each twin is, to the bit, the uplink and backbone the engine used
    sim = build_simulation(load_scenario("city-small"), seed=3, steps=5)
    w, s = sim.world, sim.state
    sim.reset()
    idx = np.arange(w.n_entities)
    while not sim.done:
        sim.observe()
        ap, up, back = w.network_ms(s.xy_m, s.host, idx)
        assert np.array_equal(ap, s.ap)
        assert np.array_equal(up, s.uplink_ms)
        assert np.array_equal(back, w.ap_host_ms[s.ap, s.host])
        sim.decide()


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf, 101.0, 1e9])
def test_a_bad_scale_is_refused(scale):
    with pytest.raises(DevicesError, match=r"--link-delay-scale: got .*0 < scale <= 100"):
        check_delay_scale(scale)


def test_a_world_without_a_network_is_refused():
    w = world_of(robots((10.0, 0.0)))
    with pytest.raises(
        DevicesError, match=r"has no network to emulate \(0 access points, 2 hosts\)"
    ):
        LinkModel(w.evolve(access=np.zeros(0, dtype=np.int64)))


def test_network_ms_refuses_hosts_that_do_not_line_up():
    w = world_of(robots((10.0, 0.0)))
    with pytest.raises(ValueError, match=r"a host index out of range \[0, 2\)"):
        w.network_ms(np.array([[10.0, 0.0]]), np.array([2]), idx=np.array([0]))
    with pytest.raises(ValueError, match="1 positions but host has shape"):
        w.network_ms(np.array([[10.0, 0.0]]), np.array([0, 1]), idx=np.array([0]))


@pytest.mark.parametrize("scale", ["-1", "0", "nan", "1e9"])
def test_the_command_refuses_a_bad_scale(tmp_path, scale):
    from tests.devices.conftest import run_devices

    path = tmp_path / "robots.yaml"
    path.write_text(yaml.safe_dump(robots((10.0, 0.0))))
    line = one_error(
        run_devices(str(path), "--count", "1", "--emulate-links", "--link-delay-scale", scale,
                    "--api-key", "k")
    )  # fmt: skip
    assert "--link-delay-scale: got" in line and "0 < scale <= 100" in line, line


def test_the_command_refuses_a_scenario_without_access_points(tmp_path):
    from tests.devices.conftest import run_devices

    sc = robots((10.0, 0.0))
    sc["infrastructure"]["nodes"] = [
        n for n in sc["infrastructure"]["nodes"] if n["tier"] != "access"
    ]
    path = tmp_path / "no-access.yaml"
    path.write_text(yaml.safe_dump(sc))
    line = one_error(run_devices(str(path), "--count", "1", "--emulate-links", "--api-key", "k"))
    assert "no access points" in line, line
