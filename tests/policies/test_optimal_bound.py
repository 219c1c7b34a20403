"""The optimal policy's certificate: its bound never exceeds the exact optimum, on
both of its paths (the direct MILP and the Lagrangian search), for the plain and the
load-aware objective; the Lagrangian relaxation is exact over all hosts whatever its
candidate lists."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from twinedge.errors import InfeasibleError
from twinedge.policies.placement import (
    PlacementProblem,
    random_instance,
    resolve_placement,
    solve_placement,
)
from twinedge.policies.placement.lagrangian import CapacityRelaxation, ascend


def exact_optimum(problem: PlacementProblem) -> float:
    """The MILP optimum by HiGHS over every allowed pair (inf when infeasible)."""
    n, m = problem.n_twins, problem.n_hosts
    t, h = np.nonzero(problem.allowed)
    cols = np.arange(t.size)
    a = sp.vstack(
        [
            sp.csr_array((np.ones(t.size), (t, cols)), shape=(n, t.size)),
            sp.csr_array((problem.demand_cpu_ghz[t], (h, cols)), shape=(m, t.size)),
            sp.csr_array((problem.demand_mem_gb[t], (h, cols)), shape=(m, t.size)),
        ],
        format="csr",
    )
    lo = np.concatenate([np.ones(n), np.full(2 * m, -np.inf)])
    hi = np.concatenate([np.ones(n), problem.capacity_cpu_ghz, problem.capacity_mem_gb])
    res = milp(
        problem.latency_ms[t, h],
        integrality=np.ones(t.size),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(a, lo, hi),
        options={"mip_rel_gap": 0.0},
    )
    assert res.status in (0, 2), res.message
    return float(res.fun) if res.status == 0 else float("inf")


def dense_lagrangian(problem: PlacementProblem, lam: np.ndarray) -> float:
    """L(lam) by hand: every twin's minimum over the full matrix."""
    cost = (
        problem.latency_ms
        + problem.demand_cpu_ghz[:, None] * lam[0][None, :]
        + problem.demand_mem_gb[:, None] * lam[1][None, :]
    )
    return float(
        cost.min(axis=1).sum()
        - lam[0] @ problem.capacity_cpu_ghz
        - lam[1] @ problem.capacity_mem_gb
    )


@st.composite
def instances(draw, max_twins: int = 24, max_hosts: int = 6):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, max_twins))
    m = draw(st.integers(1, max_hosts))
    rng = np.random.default_rng(seed)
    lat = rng.uniform(0.5, 10.0, (n, m))
    lat[rng.random((n, m)) < draw(st.sampled_from([0.0, 0.3, 0.6]))] = np.inf
    lat[np.arange(n), rng.integers(0, m, n)] = rng.uniform(0.5, 10.0, n)  # one host each
    cpu = rng.uniform(0.1, 2.0, n)
    mem = rng.uniform(0.1, 2.0, n)
    ratio = draw(st.sampled_from([1.05, 1.3, 2.0]))
    cap_cpu = rng.uniform(0.5, 1.5, m)
    cap_mem = rng.uniform(0.5, 1.5, m)
    cap_cpu *= ratio * cpu.sum() / cap_cpu.sum()
    cap_mem *= ratio * mem.sum() / cap_mem.sum()
    svc = rng.uniform(0.0, 2.0, (n, m)) if draw(st.booleans()) else None
    return PlacementProblem(lat, cpu, mem, cap_cpu, cap_mem, service_ms=svc)


PATHS = {
    "milp": {},  # small: the direct MILP decides
    "lagrangian": {"milp_max_pairs": 0, "exact_max_pairs": 0, "max_lns_iter": 3},
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    problem=instances(),
    path=st.sampled_from(sorted(PATHS)),
    cap=st.sampled_from([None, 0.8]),
)
def test_bound_le_optimum_le_answer(problem, path, cap):
    """bound <= exact optimum <= answer, the answer feasible, on both paths and for the
    load-aware objective (whose optimum is that of the capped problem)."""
    params = dict(PATHS[path], time_limit_s=20, ascent_iter=60)
    if cap is not None:
        params["utilisation_cap"] = cap
    solved = problem if cap is None else problem.with_utilisation_cap(cap)
    opt = exact_optimum(solved)
    policy = resolve_placement("optimal", **params)
    try:
        r = solve_placement(policy, problem, np.random.default_rng(0))
    except InfeasibleError:
        # the Lagrangian path may give up within its iteration caps; the MILP path may not
        assert path == "lagrangian" or not np.isfinite(opt)
        return
    assert np.isfinite(opt), "a placement was returned for an infeasible instance"
    solved.check(r.hosts)
    assert r.objective_ms == pytest.approx(solved.objective_ms(r.hosts))
    assert r.lower_bound_ms <= opt + 1e-6
    assert r.info["proof_bound_ms"] <= opt + 1e-6
    assert opt <= r.objective_ms + 1e-6
    assert r.info["method"] in ("milp", "lagrangian", "lagrangian+milp")
    if path == "milp":
        # proved by the MILP, or already by the relaxation when it meets the heuristic
        assert r.status == "optimal" and r.info["method"] in ("milp", "lagrangian")
        assert r.objective_ms == pytest.approx(opt, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(problem=instances(max_twins=30, max_hosts=8), k=st.integers(1, 8), data=st.data())
def test_relaxation_is_exact_over_all_hosts_for_any_candidate_count(problem, k, data):
    """The candidate sweep with its tau_i fallback equals the dense minimum over all
    hosts, for any multipliers, and never exceeds the optimum."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    relax = CapacityRelaxation(problem, k=k)
    opt = exact_optimum(problem)
    for scale in (0.0, 0.5, 5.0):
        lam = scale * rng.random((2, problem.n_hosts))
        point = relax.evaluate(lam)
        assert point.value == pytest.approx(dense_lagrangian(problem, lam), rel=1e-12, abs=1e-9)
        cost = problem.latency_ms + problem.demand_cpu_ghz[:, None] * lam[0]
        cost = cost + problem.demand_mem_gb[:, None] * lam[1]
        picked = cost[np.arange(problem.n_twins), point.host]
        assert np.allclose(picked, point.rowmin)
        if np.isfinite(opt):
            assert point.value <= opt + 1e-9


def test_hand_computed_lagrangian_and_ascent():
    """Two twins (1 GHz each) prefer host 0 (1 ms); it holds one. Moving twin 1 to host
    1 costs +1 ms (1 -> 2), moving twin 0 costs +2 (1 -> 3): optimum 1 + 2 = 3 ms.
    L(0) = 1 + 1 = 2. L at lam_cpu_0 = 1: row minima min(1 + 1, 3) = 2 and
    min(1 + 1, 2) = 2, minus 1 GHz x 1 = 3, the optimum."""
    p = PlacementProblem([[1.0, 3.0], [1.0, 2.0]], [1.0, 1.0], [0.0, 0.0], [1.0, 5.0], [1.0, 1.0])
    relax = CapacityRelaxation(p, k=1)
    assert relax.evaluate(np.zeros((2, 2))).value == pytest.approx(2.0)
    assert relax.evaluate(np.array([[1.0, 0.0], [0.0, 0.0]])).value == pytest.approx(3.0)
    # the ascent from 0 reaches the LP value 3 (= the optimum here)
    best, _ = ascend(relax, relax.evaluate(np.zeros((2, 2))), np.inf, max_iter=200)
    assert best.value == pytest.approx(3.0, abs=1e-6)
    r = solve_placement(resolve_placement("optimal"), p, np.random.default_rng(0))
    assert r.hosts.tolist() == [0, 1] and r.objective_ms == 3.0 and r.status == "optimal"


def test_lagrangian_path_on_a_mid_size_instance_reports_a_valid_gap():
    """With the direct MILP ruled out, the Lagrangian search still returns a feasible
    answer whose bound is at most the exact optimum, and says how it was solved."""
    p = random_instance(80, 8, np.random.default_rng(7), max_latency_ms=3.5, side_m=1130.0)
    opt = exact_optimum(p)
    r = solve_placement(
        resolve_placement(
            "optimal", time_limit_s=30, milp_max_pairs=0, exact_max_pairs=0, max_lns_iter=30
        ),
        p,
        np.random.default_rng(0),
    )
    p.check(r.hosts)
    assert r.info["method"] == "lagrangian"
    assert r.lower_bound_ms <= opt + 1e-6 <= r.objective_ms + 2e-6
    assert r.info["ascent_iterations"] >= 1
    assert 0.0 <= r.gap < 0.05


def test_small_instance_is_solved_by_the_direct_milp():
    p = random_instance(60, 8, np.random.default_rng(11))
    r = solve_placement(resolve_placement("optimal", time_limit_s=30), p, np.random.default_rng(0))
    assert r.status == "optimal" and r.info["method"] == "milp"
    assert r.objective_ms == pytest.approx(exact_optimum(p), abs=1e-6)


def test_deterministic_on_the_lagrangian_path():
    p = random_instance(80, 8, np.random.default_rng(3))
    params = {"time_limit_s": 30, "milp_max_pairs": 0, "exact_max_pairs": 0, "max_lns_iter": 10}
    a = solve_placement(resolve_placement("optimal", **params), p, np.random.default_rng(5))
    b = solve_placement(resolve_placement("optimal", **params), p, np.random.default_rng(5))
    assert a.hosts.tolist() == b.hosts.tolist()
    assert a.lower_bound_ms == b.lower_bound_ms


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"milp_share": 0.0}, r"milp_share must lie in \(0, 1\], got 0.0"),
        ({"ascent_iter": 0}, "ascent_iter must be >= 1"),
        ({"time_limit_s": 0}, "time_limit_s must be > 0"),
    ],
)
def test_bad_parameters_are_named(params, needle):
    from twinedge.errors import PolicyError

    with pytest.raises(PolicyError, match=needle):
        resolve_placement("optimal", **params)


def test_lagrangian_bound_proves_an_lp_infeasible_instance():
    """Both twins (1 GHz) may only use host 0 (1 GHz); totals fit (2 of 6 GHz), so only
    the relaxation can tell: its bound grows past 2 ms, the worst placement's cost."""
    p = PlacementProblem(
        [[1.0, np.inf], [1.0, np.inf]], [1.0, 1.0], [0.0, 0.0], [1.0, 5.0], [1.0, 1.0]
    )
    lag = resolve_placement("optimal", time_limit_s=20, milp_max_pairs=0, exact_max_pairs=0)
    with pytest.raises(InfeasibleError, match=r"Lagrangian lower bound .* exceeds 2 ms"):
        solve_placement(lag, p, np.random.default_rng(0))
    with pytest.raises(InfeasibleError, match="exact MILP over all allowed pairs proves"):
        solve_placement(resolve_placement("optimal"), p, np.random.default_rng(0))
