"""Placement policies: hand-computed and brute-forced optima, bounds, errors, user policies."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinedge.errors import InfeasibleError, PolicyError, ScenarioError
from twinedge.policies.placement import (
    PLACEMENT_POLICIES,
    PlacementProblem,
    PlacementResult,
    load_instance,
    problem_from_json,
    problem_to_json,
    random_instance,
    resolve_placement,
    solve_placement,
)

USER = "tests.policies.user_placement"


def tiny() -> PlacementProblem:
    """3 twins x 2 hosts (2 GHz each). Nearest puts twin 0 on A and twin 1 on B, and
    then twin 2 (2 GHz) fits nowhere. Optimum by enumeration: twins 0, 1 on A and twin 2
    on B, 1 + 3 + 4.5 = 8.5 ms (the other split costs 4 + 5 + 2 = 11 ms)."""
    return PlacementProblem(
        latency_ms=np.array([[1.0, 5.0], [3.0, 2.0], [4.0, 4.5]]),
        demand_cpu_ghz=np.array([1.0, 1.0, 2.0]),
        demand_mem_gb=np.array([1.0, 1.0, 1.0]),
        capacity_cpu_ghz=np.array([2.0, 2.0]),
        capacity_mem_gb=np.array([10.0, 10.0]),
    )


def brute_force(problem: PlacementProblem) -> tuple[float, np.ndarray | None]:
    best, arg = math.inf, None
    for combo in itertools.product(range(problem.n_hosts), repeat=problem.n_twins):
        hosts = np.array(combo, dtype=np.int64)
        try:
            problem.check(hosts)
        except InfeasibleError:
            continue
        obj = problem.objective_ms(hosts)
        if obj < best - 1e-12:
            best, arg = obj, hosts
    return best, arg


def run(name: str, problem: PlacementProblem, seed: int = 0, **params) -> PlacementResult:
    return solve_placement(resolve_placement(name, **params), problem, np.random.default_rng(seed))


# -- hand-computed ---------------------------------------------------------------------


def test_tiny_nearest_is_infeasible_but_optimum_is_known():
    p = tiny()
    with pytest.raises(InfeasibleError, match="twin 2"):
        run("nearest", p)
    r = run("optimal", p, time_limit_s=10)
    assert r.status == "optimal"
    assert r.objective_ms == pytest.approx(8.5)
    assert r.hosts.tolist() == [0, 0, 1]
    assert r.lower_bound_ms <= r.objective_ms + 1e-9
    assert r.gap == 0.0
    g = run("greedy", p)
    assert g.objective_ms >= r.objective_ms - 1e-9
    p.check(g.hosts)


def test_totals_infeasible_names_resource():
    p = PlacementProblem(
        latency_ms=np.ones((2, 2)),
        demand_cpu_ghz=np.array([1.0, 1.0]),
        demand_mem_gb=np.array([3.0, 3.0]),
        capacity_cpu_ghz=np.array([5.0, 5.0]),
        capacity_mem_gb=np.array([2.0, 2.0]),
    )
    for name in PLACEMENT_POLICIES:
        with pytest.raises(InfeasibleError, match="mem_gb"):
            run(name, p)


def test_optimal_proves_integer_infeasibility():
    # each host holds one of the 0.6 GHz twins only; LP splits them, the MILP proves no fit
    p = PlacementProblem(
        latency_ms=np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]),
        demand_cpu_ghz=np.array([0.6, 0.6, 0.6]),
        demand_mem_gb=np.zeros(3),
        capacity_cpu_ghz=np.array([1.0, 1.0]),
        capacity_mem_gb=np.ones(2),
    )
    with pytest.raises(InfeasibleError, match="infeasible"):
        run("optimal", p, time_limit_s=10)
    with pytest.raises(InfeasibleError):
        run("greedy", p)


def test_pruned_candidates_still_give_valid_bound_and_optimum():
    p = random_instance(40, 6, np.random.default_rng(3))
    full = run("optimal", p, time_limit_s=20)
    pruned = run("optimal", p, time_limit_s=20, k_candidates=1)
    assert full.status == pruned.status == "optimal"
    assert pruned.objective_ms == pytest.approx(full.objective_ms, abs=1e-6)
    assert pruned.lower_bound_ms <= full.objective_ms + 1e-6
    assert pruned.info["candidates_per_twin"] >= 1


# -- brute force on random tiny instances -------------------------------------------------


@st.composite
def tiny_instances(draw):
    n = draw(st.integers(1, 6))
    m = draw(st.integers(1, 3))
    lat = draw(
        st.lists(
            st.lists(
                st.one_of(st.none(), st.floats(0.0, 20.0, allow_nan=False)),
                min_size=m,
                max_size=m,
            ),
            min_size=n,
            max_size=n,
        )
    )
    lat = np.array([[np.inf if v is None else v for v in row] for row in lat])
    # keep at least one allowed host per twin most of the time
    if draw(st.booleans()):
        lat[np.arange(n), draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))] = 1.0
    dem = st.floats(0.0, 3.0, allow_nan=False)
    cap = st.floats(0.0, 8.0, allow_nan=False)
    return PlacementProblem(
        latency_ms=lat,
        demand_cpu_ghz=np.array(draw(st.lists(dem, min_size=n, max_size=n))),
        demand_mem_gb=np.array(draw(st.lists(dem, min_size=n, max_size=n))),
        capacity_cpu_ghz=np.array(draw(st.lists(cap, min_size=m, max_size=m))),
        capacity_mem_gb=np.array(draw(st.lists(cap, min_size=m, max_size=m))),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny_instances())
def test_policies_agree_with_brute_force(problem):
    opt, _ = brute_force(problem)
    results = {}
    for name in PLACEMENT_POLICIES:
        params = {"time_limit_s": 20} if name == "optimal" else {}
        try:
            r = run(name, problem, **params)
        except InfeasibleError:
            if name == "optimal":
                assert not math.isfinite(opt), "optimal says infeasible but brute force found one"
            continue
        assert math.isfinite(opt), f"{name} found a placement brute force says cannot exist"
        problem.check(r.hosts)
        assert r.objective_ms == pytest.approx(problem.objective_ms(r.hosts))
        results[name] = r
    if math.isfinite(opt):
        best = results["optimal"]
        assert best.status == "optimal"
        assert best.objective_ms == pytest.approx(opt, abs=1e-6)
        assert best.lower_bound_ms <= opt + 1e-6
        for r in results.values():
            assert best.objective_ms <= r.objective_ms + 1e-6


@pytest.mark.parametrize("name", sorted(PLACEMENT_POLICIES))
def test_deterministic_given_seed(name):
    p = random_instance(60, 8, np.random.default_rng(11))
    params = {"time_limit_s": 20, "max_lns_iter": 20} if name == "optimal" else {}
    a = run(name, p, seed=5, **params)
    b = run(name, p, seed=5, **params)
    assert a.hosts.tolist() == b.hosts.tolist()


def test_optimal_beats_heuristics_on_contended_instance():
    p = random_instance(80, 8, np.random.default_rng(7), max_latency_ms=3.5, side_m=1130.0)
    r = run("optimal", p, time_limit_s=30)
    assert r.status == "optimal", r.info
    assert r.lower_bound_ms == pytest.approx(r.objective_ms, abs=1e-6)
    for name in ("nearest", "greedy"):
        try:
            h = run(name, p)
        except InfeasibleError:
            continue
        assert r.objective_ms <= h.objective_ms + 1e-6


@pytest.mark.slow
def test_optimal_proves_200x16():
    # how fast it proves it is a benchmark's question (benchmarks/bench_placement.py
    # --optimal-vs-milp); here: given the time, it proves the optimum (gap 0)
    p = random_instance(200, 16, np.random.default_rng(3), max_latency_ms=3.5, side_m=1600.0)
    r = run("optimal", p, time_limit_s=3600)
    assert r.status == "optimal"
    assert r.lower_bound_ms == pytest.approx(r.objective_ms, rel=1e-6)


def test_greedy_is_feasible_on_2000x100():
    p = random_instance(2000, 100, np.random.default_rng(2), max_latency_ms=4.0)
    r = run("greedy", p)
    p.check(r.hosts)


# -- registry and user policies ---------------------------------------------------------


def test_registry_and_params():
    assert set(PLACEMENT_POLICIES) == {"nearest", "greedy", "optimal"}
    pol = resolve_placement("optimal", time_limit_s=5)
    assert pol.time_limit_s == 5
    with pytest.raises(PolicyError, match="time_limit_s"):
        resolve_placement("optimal", time_limit=5)


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("nope", "unknown placement policy 'nope'"),
        ("no_such_module_xyz:f", "cannot import module"),
        (f"{USER}:missing", "has no attribute 'missing'"),
        (":f", "malformed"),
    ],
)
def test_resolve_errors_list_known_names(spec, needle):
    with pytest.raises(PolicyError) as exc:
        resolve_placement(spec)
    msg = str(exc.value)
    assert needle in msg
    assert "greedy, nearest, optimal" in msg
    assert "package.module:function_or_class" in msg


def test_user_function_policy_runs_and_is_wrapped():
    p = random_instance(30, 5, np.random.default_rng(0))
    r = run(f"{USER}:cheapest_fit", p)
    assert r.status == "feasible"
    assert math.isnan(r.lower_bound_ms)
    assert r.objective_ms == pytest.approx(p.objective_ms(r.hosts))
    assert r.solve_s >= 0
    assert set(r.to_json()) == {
        "status",
        "hosts",
        "objective_ms",
        "lower_bound_ms",
        "gap",
        "solve_s",
    }


def test_user_policy_that_overloads_a_host_is_rejected():
    p = random_instance(30, 5, np.random.default_rng(0))
    with pytest.raises(PolicyError, match=r"host 0 (cpu_ghz|mem_gb) over capacity"):
        run(f"{USER}:everything_on_host_zero", p)
    with pytest.raises(PolicyError, match="over capacity"):
        run(f"{USER}:Fixed", p, host=1)
    with pytest.raises(PolicyError, match="is a function"):
        resolve_placement(f"{USER}:cheapest_fit", k=1)


# -- the instance JSON format -------------------------------------------------------------


def test_json_round_trip(tmp_path):
    p = tiny()
    obj = problem_to_json(p)
    obj["latency_ms"][0][1] = None
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(obj))
    q = load_instance(path)
    assert q.n_twins == 3 and q.n_hosts == 2
    assert not q.allowed[0, 1]
    assert run("optimal", q, time_limit_s=5).objective_ms == pytest.approx(8.5)


def _errors(tmp_path, obj_or_text) -> str:
    path = tmp_path / "bad.json"
    path.write_text(obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text))
    with pytest.raises(ScenarioError) as exc:
        load_instance(path)
    for line in exc.value.problems:
        assert line.startswith(f"{path}: ")
    return str(exc.value)


def good() -> dict:
    return {
        "latency_ms": [[1.0, 2.0], [3.0, None]],
        "demand": {"cpu_ghz": [1.0, 1.0], "mem_gb": [1.0, 1.0]},
        "capacity": {"cpu_ghz": [2.0, 2.0], "mem_gb": [4.0, 4.0]},
    }


def test_bad_json_messages(tmp_path):
    assert "got invalid JSON" in _errors(tmp_path, "{not json")
    assert "(top level): got [1, 2]; expected an object" in _errors(tmp_path, [1, 2])
    obj = good()
    del obj["demand"]
    assert "demand: got nothing; expected an object" in _errors(tmp_path, obj)
    obj = good()
    obj["latency_ms"][1] = [1.0]
    assert "latency_ms[1]: got 1 values; expected 2" in _errors(tmp_path, obj)
    obj = good()
    obj["latency_ms"][0][0] = "fast"
    assert "latency_ms[0][0]: got 'fast'; expected a number >= 0 or null" in _errors(tmp_path, obj)
    obj = good()
    obj["demand"]["cpu_ghz"] = [1.0, -2.0]
    assert "demand.cpu_ghz[1]: got -2.0; expected a number >= 0" in _errors(tmp_path, obj)
    obj = good()
    obj["capacity"]["mem_gb"] = [4.0]
    assert "capacity.mem_gb: got 1 values; expected 2 (one per host)" in _errors(tmp_path, obj)
    obj = good()
    obj["demand"]["cpu_ghz"] = True
    assert "demand.cpu_ghz: got true; expected a list" in _errors(tmp_path, obj)
    obj = good()
    obj["capacity"] = {"cpu_ghz": [2.0, 2.0]}
    assert "capacity.mem_gb: got nothing" in _errors(tmp_path, obj)


def test_problem_from_json_collects_every_problem():
    obj = good()
    obj["demand"]["cpu_ghz"] = [1.0]
    obj["capacity"]["cpu_ghz"] = [2.0, "x"]
    with pytest.raises(ScenarioError) as exc:
        problem_from_json(obj, source="inst.json")
    assert len(exc.value.problems) == 2
    assert all(line.startswith("inst.json: ") for line in exc.value.problems)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_instance(tmp_path / "absent.json")


def two_twins_two_hosts() -> PlacementProblem:
    """Host A: 1 ms away, 1 ms of service, 2 GHz; host B: 3 ms away, 0.5 ms of service,
    4 GHz; two twins of 1 GHz. Idle service time: both on A, 2 x (1 + 1) = 4 ms, at
    utilisation 1. Capped at 0.5 (factor 1 / (1 - 0.5) = 2): A holds one twin at
    1 + 2 x 1 = 3 ms, B the other at 3 + 2 x 0.5 = 4 ms, 7 ms in all."""
    return PlacementProblem(
        latency_ms=np.array([[2.0, 3.5], [2.0, 3.5]]),
        demand_cpu_ghz=np.array([1.0, 1.0]),
        demand_mem_gb=np.array([1.0, 1.0]),
        capacity_cpu_ghz=np.array([2.0, 4.0]),
        capacity_mem_gb=np.array([8.0, 8.0]),
        service_ms=np.array([[1.0, 0.5], [1.0, 0.5]]),
    )


@pytest.mark.parametrize("name", ["greedy", "optimal"])
def test_utilisation_cap_gives_the_hand_computed_load_aware_optimum(name):
    problem = two_twins_two_hosts()
    plain = solve_placement(resolve_placement(name), problem, np.random.default_rng(0))
    assert plain.hosts.tolist() == [0, 0] and plain.objective_ms == pytest.approx(4.0)
    capped = solve_placement(
        resolve_placement(name, utilisation_cap=0.5), problem, np.random.default_rng(0)
    )
    assert sorted(capped.hosts.tolist()) == [0, 1]
    assert capped.objective_ms == pytest.approx(7.0)
    if name == "optimal":  # the bound certifies the capped problem
        assert capped.status == "optimal" and capped.gap == 0.0
        assert capped.lower_bound_ms == pytest.approx(7.0)


def test_utilisation_cap_errors():
    with pytest.raises(PolicyError, match=r"utilisation_cap must lie in \(0, 1\], got 1.5"):
        resolve_placement("greedy", utilisation_cap=1.5)
    with pytest.raises(ValueError, match="got 0"):
        two_twins_two_hosts().with_utilisation_cap(0)
    with pytest.raises(ScenarioError, match="service_ms: expected shape"):
        PlacementProblem([[1.0]], [1.0], [1.0], [1.0], [1.0], service_ms=np.ones((2, 1)))
    # both twins (2 GHz) do not fit in half of a 2 GHz host and nothing else is allowed
    lone = PlacementProblem([[1.0], [1.0]], [1.0, 1.0], [1.0, 1.0], [2.0], [8.0])
    with pytest.raises(InfeasibleError, match="cpu_ghz"):
        solve_placement(
            resolve_placement("greedy", utilisation_cap=0.5), lone, np.random.default_rng(0)
        )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), cap=st.sampled_from([0.5, 0.7, 0.9]))
def test_capped_objective_bounds_the_loaded_latency(seed, cap):
    """Every twin's latency at its host's load after the capped placement (M/M/1, the
    engine's formula) is at most what the capped objective charged it."""
    from twinedge.world import models

    rng = np.random.default_rng(seed)
    n, m = 12, 4
    net = rng.uniform(0.5, 5.0, (n, m))
    svc = rng.uniform(0.1, 2.0, (n, m))
    cpu = rng.uniform(0.2, 1.0, n)
    problem = PlacementProblem(
        net + svc, cpu, np.ones(n), np.full(m, cpu.sum() / m * 2.5), np.full(m, 100.0), svc
    )
    res = solve_placement(resolve_placement("greedy", utilisation_cap=cap), problem, rng)
    rho = np.bincount(res.hosts, weights=cpu, minlength=m) / problem.capacity_cpu_ghz
    assert rho.max() <= cap + 1e-9
    i = np.arange(n)
    seen = net[i, res.hosts] + svc[i, res.hosts] * models.queue_factor(rho[res.hosts])
    charged = net[i, res.hosts] + svc[i, res.hosts] / (1 - cap)
    assert (seen <= charged + 1e-9).all()
    assert res.objective_ms == pytest.approx(charged.sum())
