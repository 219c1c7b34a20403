"""The ``sync:`` scenario section: the engine offers every entity's position to the
sender rule each step and adds the ``sync_*`` numbers to the run summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import tiny_scenario
from twinedge.cli import main
from twinedge.engine.simulation import simulate
from twinedge.errors import ScenarioError
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Scenario, Sync
from twinedge.sync.meter import SYNC_SUMMARY_KEYS, SyncMeter
from twinedge.sync.traces import Trace
from twinedge.sync.traces import simulate as replay


def test_a_parked_entity_reports_on_the_heartbeat_only():
    sc = Scenario.model_validate(
        tiny_scenario(run={"steps": 12, "step_s": 1.0, "seed": 1}, sync={"heartbeat_s": 5})
    )
    s = simulate(sc).summary
    # samples at t = 1..12 s: the first, then t = 6 and 11 (age 5 >= 5)
    assert (s["sync_samples"], s["sync_reports"]) == (12, 3)
    assert s["sync_bytes"] == 3 * (32 + 8 * 5)
    assert s["sync_full_bytes"] == 12 * (32 + 8 * 3)
    assert s["sync_bytes_saved"] == pytest.approx(1 - 216 / 672)
    assert s["sync_mean_error_m"] == 0.0 and s["sync_max_age_s"] == 4.0


def test_the_engine_measures_what_a_trace_replay_measures():
    """The meter inside a run and the replay of the same positions agree."""
    sc = load_scenario("city-small")
    steps = 15
    ours = simulate(sc.model_copy(update={"sync": Sync(threshold_m=2.0)}), steps=steps)
    plain = simulate(sc, steps=steps)
    for k in ("mean_latency_ms", "migrations", "device_energy_j"):
        assert ours.summary[k] == plain.summary[k]  # the twins see the same world
    assert set(SYNC_SUMMARY_KEYS) <= set(ours.summary)
    assert not any(k.startswith("sync_") for k in plain.summary)
    # the same positions (the same seed's world and mobility), replayed as a trace
    from twinedge.engine.simulation import Simulation
    from twinedge.world import build_world

    world_rng, mob_rng, pol_rng = np.random.default_rng(sc.run.seed).spawn(3)
    sim = Simulation(
        build_world(sc, world_rng), "nearest", "never", steps=steps, step_s=sc.run.step_s,
        placement_period_s=None, rng=pol_rng, mobility_rng=mob_rng,
    )  # fmt: skip
    sim.reset()
    xs, ts = [], []
    for _ in range(steps):
        sim.observe()
        sim.decide()
        xs.append(sim.state.xy_m.copy())
        ts.append(sim.state.t_s)
    n = xs[0].shape[0]
    xy = np.stack(xs, axis=1).reshape(-1, 2)  # entity-major
    t = np.tile(np.array(ts), n)
    trace = Trace("city", [str(i) for i in range(n)], np.arange(n + 1) * steps, t, xy)
    r = replay(trace, "first-order", 2.0, 5.0)
    assert ours.summary["sync_reports"] == r.reports
    assert ours.summary["sync_max_error_m"] == r.max_error_m <= 2.0
    assert ours.summary["sync_mean_error_m"] == pytest.approx(r.mean_error_m, rel=1e-12)


def test_bad_sync_sections_are_refused(tmp_path):
    with pytest.raises(ValidationError, match="threshold_m"):
        Sync(threshold_m=-1.0)
    with pytest.raises(ValidationError, match="predictor"):
        Sync(predictor="kalman")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="heartbeat_s"):
        Sync(heartbeat_s=0.0)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(tiny_scenario(sync={"threshold_m": "far"})))
    with pytest.raises(ScenarioError, match=r"sync\.threshold_m"):
        load_scenario(str(p))


def test_twinedge_run_writes_the_sync_numbers(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(tiny_scenario(sync={"predictor": "constant", "threshold_m": 0.5})))
    main(["run", str(p), "--out", str(tmp_path / "out"), "--quiet"])
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    (pol,) = doc["policies"].values()
    assert pol["sync_samples"] == 3 and pol["sync_reports"] == 1  # static: the first only
    assert pol["sync_threshold_m"] == 0.5


def test_meter_refuses_an_unknown_predictor():
    from twinedge.sync import SyncError

    with pytest.raises(SyncError, match="unknown predictor 'x'"):
        SyncMeter(3, "x", 1.0, None)
