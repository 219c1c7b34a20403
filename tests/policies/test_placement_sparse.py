"""The sparse placement problem (candidate hosts per twin) and the vectorised heuristics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinedge.errors import InfeasibleError, PolicyError, ScenarioError
from twinedge.orchestrator import NetworkState, NetworkView
from twinedge.orchestrator.view import candidate_hosts as ap_candidate_hosts
from twinedge.policies.placement import (
    PlacementProblem,
    random_instance,
    resolve_placement,
    solve_placement,
)
from twinedge.policies.placement.assign import assign_rounds, shift_improve
from twinedge.scenario import load_scenario
from twinedge.world import build_world, models

RNG = np.random.default_rng


def run(name: str, problem: PlacementProblem, **params):
    return solve_placement(resolve_placement(name, **params), problem, RNG(0))


def sparse_of(dense: PlacementProblem, cand: np.ndarray, *, priced: bool) -> PlacementProblem:
    """The same instance given by candidate lists ``cand`` (and, with ``priced``, a pair
    pricing that reads the dense matrix for the pairs outside them)."""
    rows = np.arange(dense.n_twins)[:, None]
    lat = dense.latency_ms

    def pair(t: np.ndarray, h: np.ndarray):
        return lat[t, h], None

    return PlacementProblem(
        None,
        dense.demand_cpu_ghz,
        dense.demand_mem_gb,
        dense.capacity_cpu_ghz,
        dense.capacity_mem_gb,
        candidates=cand,
        candidate_latency_ms=lat[rows, cand],
        pair_costs=pair if priced else None,
    )


# -- hand-computed ---------------------------------------------------------------------


def hand_case() -> PlacementProblem:
    """3 twins (1 GHz each), hosts A, B (1 GHz each) and C, the cloud (10 GHz); each twin
    is offered two hosts:

        twin 0: A 1 ms, C 9 ms     twin 1: A 2 ms, B 3 ms     twin 2: B 1 ms, C 5 ms

    nearest (best latency first: twin 0 and twin 2 at 1 ms, then twin 1 at 2 ms): 0 -> A,
    2 -> B, then twin 1 finds A and B full and has no other candidate: infeasible.
    greedy (regret: twin 0 8 ms, twin 2 4 ms, twin 1 1 ms): in one round twin 0 takes A
    and twin 2 takes B, and twin 1 finds no candidate with room. One twin at a time
    (MTHG, which greedy falls back to when the rounds strand a twin) re-scores twin 1 once
    A is taken: B is its last choice (regret inf), so it goes before twin 2, which then
    takes C: hosts [A, B, C], 1 + 3 + 5 = 9 ms, nothing left to the repair."""
    return PlacementProblem(
        None,
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0],
        [1.0, 1.0, 10.0],
        [1.0, 1.0, 1.0],
        candidates=[[0, 2], [0, 1], [1, 2]],
        candidate_latency_ms=[[1.0, 9.0], [2.0, 3.0], [1.0, 5.0]],
    )


def test_hand_case_nearest_and_greedy():
    p = hand_case()
    assert p.sparse and p.n_twins == 3 and p.n_hosts == 3
    with pytest.raises(InfeasibleError, match="nearest: twin 1"):
        run("nearest", p)
    g = run("greedy", p)
    assert g.hosts.tolist() == [0, 1, 2]
    assert g.objective_ms == pytest.approx(9.0)
    assert g.info["unplaced_before_repair"] == 0


def test_pairs_outside_the_candidates_are_not_allowed_without_pricing():
    p = hand_case()
    assert p.latency_ms.tolist() == [
        [1.0, np.inf, 9.0],
        [2.0, 3.0, np.inf],
        [np.inf, 1.0, 5.0],
    ]
    assert p.latency_of(np.array([0, 1]), np.array([1, 1])).tolist() == [np.inf, 3.0]
    # a user policy may answer outside the candidates only where the pair is allowed
    with pytest.raises(PolicyError, match="twin 0 placed on host 1, which is not allowed"):
        solve_placement(lambda problem, rng: [1, 0, 2], p, RNG(0))


def test_an_answer_outside_the_candidates_is_valid_when_priced_and_within_capacity():
    dense = PlacementProblem(
        [[1.0, 4.0, 6.0], [2.0, 1.0, 7.0]], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0, 1.0], [1.0] * 3
    )
    p = sparse_of(dense, np.array([[0, 1], [1, 0]]), priced=True)
    r = solve_placement(lambda problem, rng: [2, 1], p, RNG(0))
    assert r.hosts.tolist() == [2, 1] and r.objective_ms == pytest.approx(6.0 + 1.0)
    with pytest.raises(PolicyError, match="host 2 cpu_ghz over capacity"):
        solve_placement(lambda problem, rng: [2, 2], p, RNG(0))


def test_a_twin_whose_candidates_are_full_is_placed_outside_them():
    """Hosts 0 and 1 (1 GHz) are the only candidates of both twins; host 2 (1 GHz, 8 ms
    away for twin 1) is not a candidate. Whatever the order, one twin is left over and
    both policies widen it to host 2 through the problem's pricing."""
    dense = PlacementProblem(
        [[1.0, 1.5, 9.0], [1.2, 2.0, 8.0]],
        [1.0, 1.0],
        [0.0, 0.0],
        [1.0, 0.0, 1.0],
        [1.0, 1.0, 1.0],
    )
    p = sparse_of(dense, np.array([[0, 1], [0, 1]]), priced=True)
    for name in ("nearest", "greedy"):
        r = run(name, p)
        p.check(r.hosts)
        assert r.hosts.tolist() == [0, 2], name  # twin 0 nearest (1 ms) and regret 8 ms
        assert r.objective_ms == pytest.approx(9.0)
    g = run("greedy", p)
    assert g.info["unplaced_before_repair"] == 0
    # without pricing the instance is infeasible over the candidates
    with pytest.raises(InfeasibleError):
        run("greedy", sparse_of(dense, np.array([[0, 1], [0, 1]]), priced=False))


def test_bad_sparse_input_names_the_problem():
    base = dict(
        demand_cpu_ghz=[1.0, 1.0],
        demand_mem_gb=[1.0, 1.0],
        capacity_cpu_ghz=[2.0, 2.0],
        capacity_mem_gb=[2.0, 2.0],
    )
    cases = [
        (
            {"candidates": [[0, 0], [0, 1]], "candidate_latency_ms": np.ones((2, 2))},
            "row 0 lists a host twice",
        ),
        (
            {"candidates": [[0, 2], [0, 1]], "candidate_latency_ms": np.ones((2, 2))},
            r"lie in \[0, 2\)",
        ),
        (
            {"candidates": [[0, 1], [0, 1]], "candidate_latency_ms": np.ones((2, 3))},
            "expected shape",
        ),
        ({"candidates": [[0.5, 1], [0, 1]], "candidate_latency_ms": np.ones((2, 2))}, "integer"),
        ({"candidates": [[0, 1], [0, 1]], "candidate_latency_ms": -np.ones((2, 2))}, ">= 0"),
        ({"candidates": [[0, 1], [0, 1]]}, "got nothing"),
    ]
    for kw, message in cases:
        with pytest.raises(ScenarioError, match=message):
            PlacementProblem(None, **base, **kw)
    with pytest.raises(ScenarioError, match="not both"):
        PlacementProblem(np.ones((2, 2)), **base, candidates=[[0, 1], [0, 1]])
    with pytest.raises(ScenarioError, match="candidate_service_ms"):
        PlacementProblem(
            None,
            **base,
            candidates=[[0, 1], [0, 1]],
            candidate_latency_ms=np.ones((2, 2)),
            service_ms=np.ones((2, 2)),
        )


# -- the network view's problem --------------------------------------------------------


def old_dense(view: NetworkView) -> tuple[np.ndarray, np.ndarray]:
    """The dense problem exactly as the network view used to build it."""
    w, s = view.world, view.state
    lat = w.ap_host_ms[s.ap] + s.uplink_ms[:, None]
    svc = models.service_ms(w.work_gcycles[:, None], w.host_cpu_ghz[None, :])
    lat += svc
    if view.amortise_steps:
        down_s = models.migration_downtime_s(
            w.state_bytes[:, None], w.host_host_mbps[s.host], w.host_host_ms[s.host]
        )
        down_s[np.arange(w.n_entities), s.host] = 0.0
        lat += 1000.0 * down_s / view.amortise_steps
    lat[~w.allowed()] = np.inf
    return lat, svc


CITY = build_world(load_scenario("city-small"), RNG(0))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000), amortise=st.sampled_from([None, 1, 7, 300]), k=st.integers(1, 6)
)
def test_the_lazy_dense_matrix_is_the_old_one_bit_for_bit(seed, amortise, k):
    rng = RNG(seed)
    # some twins may use only some hosts
    allowed = CITY.group_allowed.copy()
    allowed[:, rng.integers(0, CITY.n_hosts, 3)] = False
    allowed[:, -1] = True  # the cloud
    world = CITY.evolve(group_allowed=allowed)
    xy = world.xy_m + rng.normal(0.0, 400.0, world.xy_m.shape)
    state = NetworkState.at(world, xy, host=rng.integers(0, world.n_hosts, world.n_entities))
    view = NetworkView(
        world, state, 1.0, k, amortise_steps=amortise, ap_candidates=ap_candidate_hosts(world, k)
    )
    p = view.placement_problem()
    lat, svc = old_dense(view)
    assert p.sparse
    rows = np.arange(world.n_entities)[:, None]
    # the candidate columns and every priced pair are the old entries, bit for bit
    assert np.array_equal(p.candidate_latency_ms, lat[rows, p.candidates])
    assert np.array_equal(p.candidate_service_ms, svc[rows, p.candidates])
    some = rng.integers(0, world.n_hosts, world.n_entities)
    assert np.array_equal(p.latency_of(np.arange(world.n_entities), some), lat[rows[:, 0], some])
    assert np.array_equal(p.rows(np.array([3, 1])), lat[[3, 1]])
    assert np.array_equal(p.latency_ms, lat)
    assert np.array_equal(p.service_ms, svc)
    # candidates: distinct per row; a re-placement offers each twin its current host
    srt = np.sort(p.candidates, axis=1)
    assert (srt[:, 1:] != srt[:, :-1]).all()
    if amortise:
        assert (p.candidates == state.host[:, None]).any(axis=1).all()
        assert p.candidates.shape[1] == view.ap_candidates.shape[1] + 1
    capped = p.with_utilisation_cap(0.8)
    assert np.array_equal(capped.latency_ms, lat + svc * (0.8 / (1.0 - 0.8)))
    assert np.array_equal(
        capped.candidate_latency_ms, (lat + svc * (0.8 / (1.0 - 0.8)))[rows, p.candidates]
    )


def test_the_view_problem_stays_as_it_was_when_the_state_moves_on():
    state = NetworkState.at(CITY, CITY.xy_m)
    p = NetworkView(CITY, state, 1.0, amortise_steps=5).placement_problem()
    before = p.rows(np.arange(4)).copy()
    state.ap[:] = (state.ap + 1) % len(CITY.access)
    state.set_hosts(CITY, np.full(CITY.n_entities, CITY.n_hosts - 1))
    assert np.array_equal(p.rows(np.arange(4)), before)


# -- properties: capacities, agreement with the dense form -----------------------------


@st.composite
def instances(draw):
    seed = draw(st.integers(0, 100_000))
    n = draw(st.integers(1, 40))
    m = draw(st.integers(1, 7))
    ratio = draw(st.sampled_from([1.05, 1.3, 2.0]))
    return random_instance(n, m, RNG(seed), capacity_ratio=ratio, side_m=1500.0), seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_sparse_covering_every_host_answers_as_the_dense_form(case):
    dense, seed = case
    perm = np.argsort(RNG(seed + 1).random((dense.n_twins, dense.n_hosts)), axis=1)
    sparse = sparse_of(dense, perm, priced=False)  # every host, columns in random order
    assert np.array_equal(sparse.latency_ms, dense.latency_ms)
    for name in ("nearest", "greedy"):
        try:
            d = run(name, dense)
        except InfeasibleError:
            with pytest.raises(InfeasibleError):
                run(name, sparse)
            continue
        s = run(name, sparse)
        dense.check(s.hosts)  # never overloads a host
        assert s.hosts.tolist() == d.hosts.tolist(), name
        assert s.objective_ms == d.objective_ms


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.integers(1, 4), st.booleans())
def test_sparse_heuristics_never_overload_a_host(case, c, priced):
    dense, seed = case
    c = min(c, dense.n_hosts)
    cand = np.argsort(RNG(seed + 2).random((dense.n_twins, dense.n_hosts)), axis=1)[:, :c]
    p = sparse_of(dense, cand, priced=priced)
    for name in ("nearest", "greedy"):
        try:
            r = run(name, p)
        except InfeasibleError:
            continue
        p.check(r.hosts)
        dense.check(r.hosts)
        assert r.objective_ms == pytest.approx(dense.objective_ms(r.hosts))
        if not priced:  # without pricing only the candidates exist
            assert (cand == r.hosts[:, None]).any(axis=1).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), regret=st.booleans(), tight=st.sampled_from([0.5, 0.9, 1.5]))
def test_assignment_rounds_keep_capacity_and_leave_no_fit_unused(seed, regret, tight):
    """The vectorised rounds (no one-by-one tail): every host within capacity, every
    twin on one of its allowed candidates, and a twin left over has no candidate with
    room."""
    rng = RNG(seed)
    r, c, h = 300, 4, 12
    cand = np.argsort(rng.random((r, h)), axis=1)[:, :c]
    lat = rng.uniform(1.0, 10.0, (r, c))
    lat[rng.random((r, c)) < 0.1] = np.inf
    cpu, mem = rng.uniform(0.1, 1.0, r), rng.uniform(0.1, 1.0, r)
    cap_cpu = np.full(h, tight * cpu.sum() / h)
    cap_mem = np.full(h, tight * mem.sum() / h)
    res_cpu, res_mem = cap_cpu.copy(), cap_mem.copy()
    key = None if regret else lat.min(axis=1)
    hosts = assign_rounds(cand, lat, cpu, mem, res_cpu, res_mem, key=key, tail=0)
    placed = hosts >= 0
    used_cpu = np.bincount(hosts[placed], weights=cpu[placed], minlength=h)
    used_mem = np.bincount(hosts[placed], weights=mem[placed], minlength=h)
    assert (used_cpu <= cap_cpu + 1e-9).all() and (used_mem <= cap_mem + 1e-9).all()
    assert np.allclose(res_cpu, cap_cpu - used_cpu) and np.allclose(res_mem, cap_mem - used_mem)
    col = (cand == hosts[:, None]).argmax(axis=1)
    assert (cand[placed, col[placed]] == hosts[placed]).all()
    assert np.isfinite(lat[placed, col[placed]]).all()
    for i in np.flatnonzero(~placed):
        room = (cpu[i] <= res_cpu[cand[i]] + 1e-9) & (mem[i] <= res_mem[cand[i]] + 1e-9)
        assert not (room & np.isfinite(lat[i])).any()
    # the improvement phase keeps every host within capacity and lowers latencies
    cur = np.where(placed, lat[np.arange(r), col], np.inf)
    sub = np.flatnonzero(placed)
    h2, cur2 = hosts[sub], cur[sub]
    shift_improve(cand[sub], lat[sub], h2, cur2, cpu[sub], mem[sub], res_cpu, res_mem)
    assert (cur2 <= cur[sub]).all()
    used_cpu = np.bincount(h2, weights=cpu[sub], minlength=h)
    used_mem = np.bincount(h2, weights=mem[sub], minlength=h)
    assert (used_cpu <= cap_cpu + 1e-9).all() and (used_mem <= cap_mem + 1e-9).all()
    assert np.allclose(res_cpu, cap_cpu - used_cpu)


def test_shift_improve_moves_to_cheaper_room_and_keeps_capacity():
    """Twin 0 sits on host 1 at 5 ms while host 0 (its 1 ms candidate) has room for one;
    twin 1 also wants host 0 (gain 1 ms < 4 ms): twin 0 moves, twin 1 stays."""
    cand = np.array([[0, 1], [0, 1]])
    lat = np.array([[1.0, 5.0], [2.0, 3.0]])
    hosts = np.array([1, 1])
    cur = np.array([5.0, 3.0])
    res_cpu, res_mem = np.array([1.0, 0.0]), np.array([5.0, 5.0])
    moved = shift_improve(cand, lat, hosts, cur, np.ones(2), np.ones(2), res_cpu, res_mem)
    assert moved == 1 and hosts.tolist() == [0, 1] and cur.tolist() == [1.0, 3.0]
    assert res_cpu.tolist() == [0.0, 1.0]


def test_greedy_runs_its_rounds_on_a_large_sparse_instance():
    """6,000 twins (more than the one-by-one tail) with their 6 nearest of 40 hosts."""
    dense = random_instance(6000, 40, RNG(4), capacity_ratio=1.2, side_m=6000.0)
    p = sparse_of(dense, np.argsort(dense.latency_ms, axis=1, kind="stable")[:, :6], priced=True)
    for name in ("nearest", "greedy"):
        try:
            r = run(name, p)
        except InfeasibleError:
            assert name == "nearest"
            continue
        dense.check(r.hosts)
    g = run("greedy", p)
    d = run("greedy", dense)
    # lists of 6 instead of 10: the same placement quality within a few per cent
    assert g.objective_ms <= 1.05 * d.objective_ms
