"""Offloading inside a run, from a scenario file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from twinedge.engine import simulate
from twinedge.errors import OffloadError, ScenarioError, SimulationError
from twinedge.offload.run import OFFLOAD_KEYS, TaskGenerator
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Offloading
from twinedge.world import build_world

EXAMPLE = Path(__file__).parents[2] / "examples" / "offload-city.yaml"


def with_offloading(tmp_path: Path, offloading: dict) -> Path:
    d = yaml.safe_load(EXAMPLE.read_text())
    d["offloading"] = offloading
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_a_run_without_tasks_has_no_offload_keys() -> None:
    r = simulate(load_scenario("city-small"), steps=2)
    assert not [k for k in r.summary if k.startswith("offload_")]
    with pytest.raises(SimulationError, match="no offloading section"):
        simulate(load_scenario("city-small"), steps=2, offload="greedy")


def test_a_run_with_tasks_reports_them() -> None:
    sc = load_scenario(EXAMPLE)
    a = simulate(sc, steps=3, offload="local")
    b = simulate(sc, steps=3, offload="greedy")
    assert set(OFFLOAD_KEYS) <= set(a.summary)
    assert a.label.endswith("+offload-local")
    # the same tasks for every policy (same seed): the counts agree
    assert a.summary["offload_tasks"] == b.summary["offload_tasks"] > 0
    assert a.summary["offload_offloaded_ratio"] == 0 and a.summary["offload_cost"] == 0
    assert b.summary["offload_hit_ratio"] > a.summary["offload_hit_ratio"]
    # the twins' metrics do not depend on the offloading policy (tasks use spare CPU)
    assert a.summary["mean_latency_ms"] == b.summary["mean_latency_ms"]
    o = simulate(sc, steps=2, offload="optimal")
    assert o.summary["offload_max_gap"] <= 1e-6


def test_periodic_arrivals_by_hand() -> None:
    sc = load_scenario(EXAMPLE)
    world = build_world(sc, np.random.default_rng(0))
    spec = Offloading(tasks={"pedestrian": {"period_s": 0.5, "gcycles": 0.1}})
    gen = TaskGenerator(spec, world, np.random.default_rng(0))
    n_ped = int((world.entity_kind == world.kinds.index("pedestrian")).sum())
    for t in range(4):  # two per device in every 1 s step, whatever the phase
        assert len(gen.batch(float(t), 1.0)) == 2 * n_ped
    assert len(gen.batch(0.0, 0.25)) + len(gen.batch(0.25, 0.25)) == n_ped


def test_bad_task_specs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="rate_hz"):
        load_scenario(with_offloading(tmp_path, {"tasks": {"vehicle": {"rate_hz": 0}}}))
    with pytest.raises(ScenarioError, match="exactly one of rate_hz"):
        load_scenario(
            with_offloading(tmp_path, {"tasks": {"vehicle": {"rate_hz": 1, "period_s": 1}}})
        )
    with pytest.raises(ScenarioError, match="gcycles"):
        load_scenario(
            with_offloading(tmp_path, {"tasks": {"vehicle": {"rate_hz": 1, "gcycles": -1}}})
        )
    sc = load_scenario(with_offloading(tmp_path, {"tasks": {"drone": {"rate_hz": 1}}}))
    with pytest.raises(OffloadError, match="kind 'drone' has no entities"):
        simulate(sc, steps=1)
    sc = load_scenario(
        with_offloading(tmp_path, {"policy": "fastest", "tasks": {"vehicle": {"rate_hz": 1}}})
    )
    with pytest.raises(OffloadError, match="'fastest'"):
        simulate(sc, steps=1)
