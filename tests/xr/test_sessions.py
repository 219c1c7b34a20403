"""XR sessions on a real world: the frame delay formula by hand, placement policies, the
migration rule, and the engine hook (guarded: scenarios without ``xr:`` are unchanged)."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from twinedge.engine import simulate
from twinedge.orchestrator import NetworkState
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Xr
from twinedge.world import build_world, models
from twinedge.xr.sessions import DEVICE, XR_SUMMARY_KEYS, XrRun


@pytest.fixture(scope="module")
def world():
    return build_world(load_scenario("city-small"), np.random.default_rng(0))


def xr_run(world, **kw):
    run = XrRun(world, Xr(kinds=["pedestrian"], **kw), np.random.default_rng(1))
    state = NetworkState.at(world, world.xy_m)
    return run, run.view(state, 1.0)


def test_sessions_are_the_share_of_the_kinds(world):
    run, _ = xr_run(world, share=0.5)
    ped = world.kinds.index("pedestrian")
    assert run.n_sessions == 30
    assert (world.entity_kind[run.entity] == ped).all()


def test_expected_delay_by_hand(world):
    run, view = xr_run(world, placement="nearest-edge", size_cv=0.0)
    radio = run._radio(view)
    _, share_bps, _ = radio
    i, h = 0, 3
    e = run.entity[i]
    ap = view.state.ap[e]
    rho = run._host_rho(view, np.full(run.n_sessions, DEVICE))  # no XR load
    r = world.radio
    up = models.uplink_rate_bps(
        view.state.dist_m[e : e + 1],
        world.tx_power_w[e : e + 1],
        r.bandwidth_mhz * 1e6,
        r.noise_dbm_per_hz,
        r.path_loss_ref_db,
        r.path_loss_exponent,
        r.min_distance_m,
    )[0]
    frame_bytes = 40_000 * (59 + 5) / 60  # the GOP's mean frame
    expect = (
        1000 * 8 * 200 / up
        + 2 * world.ap_host_ms[ap, h]
        + 1000 * 0.02 / world.host_cpu_ghz[h] / (1 - view.state.used_cpu_ghz[h] / world.host_cpu_ghz[h])
        + 2.0 + 2.0
        + 1000 * 8 * frame_bytes / share_bps[i]
    )  # fmt: skip
    hosts = np.full(run.n_sessions, h)
    assert run.expected_ms(view, hosts, radio, rho)[i] == pytest.approx(expect)
    hosts[i] = DEVICE
    assert run.expected_ms(view, hosts, radio, rho)[i] == 9.0


def test_device_policy_renders_locally_with_no_network_loss(world):
    run, view = xr_run(world, placement="device", device_render_ms=7.0, size_cv=0.0)
    for k in range(3):
        run.step(view, k)
    s = run.summary()
    assert (run.where == DEVICE).all()
    assert s["xr_lost_frame_ratio"] == 0 and s["xr_late_frame_ratio"] == 0
    assert s["xr_p99_frame_delay_ms"] == pytest.approx(7.0, rel=1e-3)
    assert run.session_p99_ms() == pytest.approx(7.0, rel=0.023)  # the binned p99
    # perfect delivery, p99 / budget <= 0.8, image at device quality 4:
    # strong = min(.35*5 + .45*5 + .2*4, 5 + 0.5)
    assert s["xr_score"] == pytest.approx(0.35 * 5 + 0.45 * 5 + 0.2 * 4)


def test_best_latency_picks_the_lowest_option_and_hysteresis_holds_it(world):
    run, view = xr_run(world, placement="best-latency", hysteresis_ms=1e9)
    run.step(view, 0)
    first = run.where.copy()
    assert (first != -2).all()
    for k in range(1, 4):
        run.step(view, k)
    assert (run.where == first).all() and run.summary()["xr_migrations"] == 0


def test_a_move_costs_its_downtime_as_lost_frames(world):
    run, view = xr_run(world, placement="best-latency", hysteresis_ms=0.0, min_dwell_s=0.0,
                       switch_downtime_ms=1000.0, device_render_ms=0.0)  # fmt: skip
    run.where[:] = 0  # start every session on host 0: the device (0 ms) beats it
    run.step(view, 0)
    assert (run.where == DEVICE).all()
    assert run.totals.migrations.sum() == run.n_sessions
    assert run.totals.lost.sum() == run.totals.frames.sum()  # a 1 s blackout: all lost


def test_bad_xr_section_is_refused():
    with pytest.raises(ValidationError, match="placement"):
        Xr(placement="anywhere")
    with pytest.raises(ValidationError, match="qos_5qi"):
        Xr(qos_5qi=9)
    with pytest.raises(ValidationError, match="share"):
        Xr(share=0.0)


def test_engine_without_xr_is_unchanged_and_with_xr_adds_its_numbers():
    sc = load_scenario("city-small")
    plain = simulate(sc, steps=4, migration="threshold")
    assert not any(k.startswith("xr_") for k in plain.summary)
    with_xr = simulate(
        sc.model_copy(update={"xr": Xr(kinds=["pedestrian"])}), steps=4, migration="threshold"
    )
    # the twins see the same world and movements: XR draws from its own stream
    for k in ("mean_latency_ms", "migrations", "device_energy_j"):
        assert with_xr.summary[k] == plain.summary[k]
    assert set(XR_SUMMARY_KEYS) <= set(with_xr.summary)
    assert with_xr.summary["xr_sessions"] == 60
    assert 1.0 <= with_xr.summary["xr_score"] <= 5.0


def test_twinedge_run_shows_xr(tmp_path):
    from typer.testing import CliRunner

    from twinedge.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["run", "examples/xr-city.yaml", "--steps", "3", "--out", str(out)],
        env={"COLUMNS": "250"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "XRMI" in res.output
    summary = json.loads((out / "summary.json").read_text())
    for pol in summary["policies"].values():
        assert 1.0 <= pol["xr_score"] <= 5.0
    assert "XR experience (XRMI 1-5)" in (out / "report.html").read_text()


def test_cell_kpis_add_up_to_the_sessions(world):
    run, view = xr_run(world, placement="nearest-edge")
    for k in range(3):
        run.step(view, k)
    cells, t = run.cell_kpis(), run.totals
    assert cells["frames"].sum() == t.frames.sum() == 60 * 90 * 3
    assert cells["late"].sum() == t.late.sum() and cells["lost"].sum() == t.lost.sum()
    assert cells["bad"].sum() == t.late.sum() + t.lost.sum()
    assert cells["stalls"].sum() == t.stalls.sum()
    # sessions sit where they are (no movement here): a cell's frames are its sessions'
    ap = view.state.ap[run.entity]
    assert (
        cells["frames"].tolist()
        == np.bincount(ap, minlength=world.access.size).__mul__(270).tolist()
    )
