"""Sweeps: seeds and parameter grids, the Student t intervals (hand-computed), the tidy
tables read back with pandas, and the runs equal to single simulations."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.engine.simulation import simulate
from twinedge.engine.sweep import (
    METRICS,
    apply_overrides,
    ci95,
    parse_param,
    parse_seeds,
    run_sweep,
    write_sweep,
)
from twinedge.errors import TwinedgeError
from twinedge.scenario import load_scenario

STEPS = 4


@pytest.fixture(scope="module")
def small():
    return load_scenario("city-small")


# --- confidence intervals ----------------------------------------------------------


def test_ci95_of_three_seeds_by_hand():
    # mean 2, s = sqrt((1 + 0 + 1) / 2) = 1, t(0.975, 2) = 4.302653 (t table)
    mean, half = ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302653 * 1 / math.sqrt(3), rel=1e-6)  # 2.484138


def test_ci95_of_four_seeds_by_hand():
    # mean 13, s = sqrt((9 + 1 + 1 + 9) / 3) = 2.581989, t(0.975, 3) = 3.182446
    mean, half = ci95([10.0, 12.0, 14.0, 16.0])
    assert mean == 13.0
    assert half == pytest.approx(3.182446 * 2.581989 / 2, rel=1e-6)  # 4.108506


def test_one_seed_has_no_interval():
    mean, half = ci95([5.0])
    assert mean == 5.0 and math.isnan(half)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(finite, min_size=2, max_size=40), finite, st.floats(0.01, 100))
def test_ci95_moves_with_a_shift_and_scales_with_a_factor(xs, shift, factor):
    mean, half = ci95(xs)
    m2, h2 = ci95([x + shift for x in xs])
    m3, h3 = ci95([x * factor for x in xs])
    assert half >= 0
    assert m2 == pytest.approx(mean + shift, abs=1e-6)
    assert h2 == pytest.approx(half, rel=1e-6, abs=1e-6)
    assert m3 == pytest.approx(mean * factor, rel=1e-6, abs=1e-6)
    assert h3 == pytest.approx(half * factor, rel=1e-6, abs=1e-6)


@given(finite, st.integers(2, 30))
def test_equal_values_have_a_zero_interval(x, n):
    assert ci95([x] * n) == (pytest.approx(x), 0.0)


# --- seeds and parameters ------------------------------------------------------------


@given(st.integers(0, 500), st.integers(0, 50))
def test_a_range_is_inclusive(lo, width):
    assert parse_seeds(f"{lo}..{lo + width}") == list(range(lo, lo + width + 1))


def test_lists_and_ranges_mix_and_repeat_once():
    assert parse_seeds("0..3,10") == [0, 1, 2, 3, 10]
    assert parse_seeds(" 7 , 2..3,3") == [7, 2, 3]


@pytest.mark.parametrize(
    "text, message",
    [
        ("5..2", "--seeds '5..2': the range 5..2 is empty (it ends before it starts); write 2..5"),
        ("a", "--seeds 'a': 'a' is not a seed or a range"),
        ("1,,2", "--seeds '1,,2': '' is not a seed or a range"),
        ("-1", "--seeds '-1': '-1' is not a seed or a range"),
        ("0...3", "--seeds '0...3': '0...3' is not a seed or a range"),
    ],
)
def test_bad_seeds_say_what_is_wrong(text, message):
    with pytest.raises(TwinedgeError) as exc:
        parse_seeds(text)
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nosuch.x=1", "--param nosuch.x=1: 'nosuch' is neither a policy (greedy, nearest, "),
        ("utility.beta=abc", "--param utility.beta=abc: 'abc' is not a number (utility.beta defaults to 0.7)"),
        ("utility.beta=0.5,1.5", "--param utility.beta=0.5,1.5: migration policy 'utility': bad parameter: beta must lie in [0, 1], got 1.5"),
        ("utility.gamma=1", "--param utility.gamma=1: migration policy 'utility' has no parameter 'gamma' (its parameters: beta, "),
        ("utility.beta", "--param 'utility.beta': expected NAME=V1,V2,..."),
        ("utility.beta=0.3,", "--param 'utility.beta=0.3,': an empty value in the list"),
        ("entities.count=-3", "--param entities.count=-3: entities.count: -3 is not a whole number ≥ 0"),
        ("run.step_s=abc", "--param run.step_s=abc: run.step_s: Input should be a valid number"),
        ("run.nosuch=1", "--param run.nosuch=1: the scenario has no field 'run.nosuch' (there: steps, step_s, seed)"),
        ("entities.robot.count=3", "--param entities.robot.count=3: 'entities.robot.count': 'robot' is neither an index below 3 nor a kind (vehicle, pedestrian, sensor)"),
    ],
)  # fmt: skip
def test_bad_params_say_what_is_wrong(small, text, message):
    with pytest.raises(TwinedgeError) as exc:
        parse_param(text, small)
    assert str(exc.value).startswith(message), str(exc.value)


def test_params_are_typed_by_their_policy_or_field(small):
    p = parse_param("utility.beta=0.3,0.5", small)
    assert (p.policy, p.kind, p.values) == ("utility", "migration", (0.3, 0.5))
    q = parse_param("entities.count=1000,10000", small)
    assert (q.policy, q.values) == (None, (1000, 10000))
    r = parse_param("entities.sensor.count=5", small)
    assert r.values == (5,)


def test_entities_count_is_shared_in_proportion():
    city = load_scenario("city")  # 1200 vehicles, 600 pedestrians, 200 sensors
    assert [g.count for g in apply_overrides(city, {"entities.count": 1000}).entities] == [
        600,
        300,
        100,
    ]
    # 600.6, 300.3, 100.1: the one left over goes to the largest remainder
    assert [g.count for g in apply_overrides(city, {"entities.count": 1001}).entities] == [
        601,
        300,
        100,
    ]


@given(st.integers(0, 100_000))
def test_entities_count_is_the_total(total):
    city = load_scenario("city")
    assert sum(g.count for g in apply_overrides(city, {"entities.count": total}).entities) == total


# --- running ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    grid = [parse_param("utility.beta=0.3,0.9", small)]
    res = run_sweep(small, seeds=[0, 1, 2], placements=["nearest"], migrations=["never", "utility"],
                    params=grid, steps=STEPS, out_dir=out)  # fmt: skip
    return res, out, write_sweep(res, out)


def test_a_policy_parameter_multiplies_only_its_policy(sweep):
    res, _, _ = sweep
    assert len(res.records) == 3 + 3 * 2
    assert (res.kept, res.ran) == (0, 9)
    groups = {k: sorted(r.key["seed"] for r in v) for k, v in res.groups().items()}
    assert groups == {
        ("nearest+never", None): [0, 1, 2],
        ("nearest+utility", 0.3): [0, 1, 2],
        ("nearest+utility", 0.9): [0, 1, 2],
    }


def test_every_run_is_the_single_simulation(small, sweep):
    res, _, _ = sweep
    for r in res.records:
        beta = r.key["params"].get("utility.beta")
        single = simulate(small, seed=r.key["seed"], steps=STEPS, placement="nearest",
                          migration=r.key["migration"],
                          migration_params=None if beta is None else {"beta": beta})  # fmt: skip
        assert r.summary == {k: float(v) for k, v in single.summary.items()}
        assert list(r.summary)[: len(METRICS)] == list(METRICS)


def test_the_json_summary_is_mean_and_interval_of_the_runs(sweep):
    res, out, _ = sweep
    doc = json.loads((out / "summary.json").read_text())
    assert doc["seeds"] == [0, 1, 2] and doc["params"] == {"utility.beta": [0.3, 0.9]}
    g = next(g for g in doc["groups"] if g["params"] == {"utility.beta": 0.9})
    runs = [r for r in res.records if r.key["params"].get("utility.beta") == 0.9]
    x = [r.summary["mean_latency_ms"] for r in runs]
    m = sum(x) / 3
    s = math.sqrt(sum((v - m) ** 2 for v in x) / 2)
    got = g["metrics"]["mean_latency_ms"]
    assert got["n"] == 3
    assert got["mean"] == pytest.approx(m, rel=1e-9)
    assert got["ci95"] == pytest.approx(4.302653 * s / math.sqrt(3), rel=1e-6)


def test_the_tidy_tables_load_with_pandas(sweep):
    _, _, paths = sweep
    pq = pd.read_parquet(paths["results_parquet"])
    cs = pd.read_csv(paths["results_csv"])
    assert len(pq) == len(cs) == 9 * len(METRICS)
    assert list(pq.columns) == ["run", "scenario", "steps", "seed", "placement", "migration",
                                "policy", "utility.beta", "metric", "value"]  # fmt: skip
    assert set(pq["metric"]) == set(METRICS)
    assert np.allclose(pq["value"], cs["value"], rtol=1e-9)
    assert pq["utility.beta"].isna().sum() == 3 * len(METRICS)  # never takes no beta
    # one number per run, policy and metric
    assert not pq.duplicated(["run", "policy", "metric"]).any()
    summary = pd.read_parquet(paths["summary_parquet"])
    row = summary[(summary.policy == "nearest+never") & (summary.metric == "mean_latency_ms")]
    vals = pq[(pq.policy == "nearest+never") & (pq.metric == "mean_latency_ms")]["value"]
    mean, half = ci95(list(vals))
    assert row["mean"].item() == pytest.approx(mean) and row["ci95"].item() == pytest.approx(half)
    assert row["ci95_low"].item() == pytest.approx(mean - half)
    # the per-step bands: mean and interval columns for every step column
    ts = pd.read_csv(paths["timeseries"])
    assert len(ts) == 3 * STEPS and "migrations_ci95" in ts.columns
    assert "95 % confidence interval" in paths["report"].read_text()


def test_a_second_start_keeps_every_run(small, sweep):
    res, out, _ = sweep
    grid = [parse_param("utility.beta=0.3,0.9", small)]
    again = run_sweep(small, seeds=[0, 1, 2], placements=["nearest"], migrations=["never", "utility"],
                      params=grid, steps=STEPS, out_dir=out)  # fmt: skip
    assert (again.kept, again.ran) == (9, 0)
    assert [r.to_json() for r in again.records] == [r.to_json() for r in res.records]
    # another number of steps is another run
    more = run_sweep(small, seeds=[0], placements=["nearest"], migrations=["never"],
                     steps=STEPS + 1, out_dir=out)  # fmt: skip
    assert (more.kept, more.ran) == (0, 1)


def test_processes_give_the_sequential_records(small, sweep):
    res, _, _ = sweep
    grid = [parse_param("utility.beta=0.3,0.9", small)]
    par = run_sweep(small, seeds=[0, 1, 2], placements=["nearest"], migrations=["never", "utility"],
                    params=grid, steps=STEPS, workers=2)  # fmt: skip
    strip = [{**r.to_json(), "wall_s": 0} for r in par.records]
    assert strip == [{**r.to_json(), "wall_s": 0} for r in res.records]


def test_a_scenario_field_changes_every_run(small):
    grid = [parse_param("entities.count=50,100", small)]
    res = run_sweep(small, seeds=[0], placements=["nearest"], migrations=["never"],
                    params=grid, steps=2)  # fmt: skip
    assert [r.entities for r in res.records] == [50, 100]


@pytest.mark.parametrize(
    ("path", "key"),
    [("examples/offload-city.yaml", "offload_hit_ratio"), ("examples/xr-city.yaml", "xr_score")],
)
def test_the_services_metrics_are_swept_too(path, key, tmp_path):
    """A scenario with tasks or XR sessions: their metrics are rows of the tidy table, with
    mean ± interval in the summary and lines in the report, as the engine's are."""
    from pathlib import Path

    sc = load_scenario(Path(__file__).parents[2] / path)
    res = run_sweep(sc, seeds=[0, 1], placements=["nearest"], migrations=["never"], steps=3,
                    out_dir=tmp_path)  # fmt: skip
    assert res.metrics[: len(METRICS)] == list(METRICS) and key in res.metrics
    single = simulate(sc, seed=1, steps=3, placement="nearest", migration="never")
    run = next(r for r in res.records if r.key["seed"] == 1)
    assert run.summary[key] == pytest.approx(float(single.summary[key]), rel=1e-12)
    paths = write_sweep(res, tmp_path)
    pq = pd.read_parquet(paths["results_parquet"])
    assert set(pq["metric"]) == set(res.metrics)
    assert len(pq) == 2 * len(res.metrics)
    doc = json.loads((tmp_path / "summary.json").read_text())
    got = doc["groups"][0]["metrics"][key]
    mean, half = ci95([r.summary[key] for r in res.records])
    assert got["n"] == 2 and got["mean"] == pytest.approx(mean)
    assert got["ci95"] == (None if math.isnan(half) else pytest.approx(half))
    report = paths["report"].read_text()
    title = "task deadline hit ratio" if key.startswith("offload") else "XR experience (XRMI 1-5)"
    assert f"<td>{title}</td>" in report


MOVE_FIRST = "tests.engine.user_policies:MoveFirst"


def test_a_parameter_of_a_policy_class_by_import_path(small, tmp_path):
    """``module:Class.parameter`` sweeps a user class's parameter like a built-in one."""
    p = parse_param(f"{MOVE_FIRST}.count=0,3", small)
    assert (p.policy, p.parameter, p.values, p.kind) == (MOVE_FIRST, "count", (0, 3), None)
    res = run_sweep(small, seeds=[0], placements=["nearest"], migrations=["never", MOVE_FIRST],
                    params=[p], steps=STEPS, out_dir=tmp_path)  # fmt: skip
    assert set(res.groups()) == {("nearest+never", None), (f"nearest+{MOVE_FIRST}", 0),
                                 (f"nearest+{MOVE_FIRST}", 3)}  # fmt: skip
    by_count = {
        r.key["params"].get(p.path): r for r in res.records if r.key["migration"] != "never"
    }
    for count, rec in by_count.items():
        single = simulate(small, seed=0, steps=STEPS, placement="nearest", migration=MOVE_FIRST,
                          migration_params={"count": count})  # fmt: skip
        assert rec.summary["migrations"] == float(single.summary["migrations"])
    assert by_count[0].summary["migrations"] == 0 < by_count[3].summary["migrations"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"{MOVE_FIRST}.speed=1",
            f"policy '{MOVE_FIRST}' has no parameter 'speed' (its parameters: count)",
        ),
        (f"{MOVE_FIRST}.count=-1", "count must be >= 0"),
        (f"{MOVE_FIRST}.count=x", "'x' is not a whole number"),
        ("tests.engine.user_policies:stay_put.k=1", "is a function, so it takes no parameters"),
        ("tests.engine.user_policies:Nope.k=1", "has no attribute 'Nope"),
        ("tests.engine.nowhere:Nope.k=1", "no module named 'tests.engine.nowhere'"),
        ("tests.engine.user_policies:MoveFirst=1", "expected an import path and a parameter"),
    ],
)
def test_bad_class_params_say_what_is_wrong(small, text, message):
    with pytest.raises(TwinedgeError, match=re.escape(message)):
        parse_param(text, small)
