"""Invariants of the offloading policies on random small batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.errors import OffloadError
from twinedge.offload import (
    OFFLOAD_POLICIES,
    Assignment,
    Optimal,
    TaskProblem,
    check_assignment,
    resolve_offload_policy,
)

from .helpers import make_problem

HEURISTICS = ["local", "nearest", "greedy", "deadline-energy", "lyapunov"]


@st.composite
def problems(draw: st.DrawFn) -> TaskProblem:
    n = draw(st.integers(1, 12))
    h = draw(st.integers(1, 4))
    f = st.floats
    arr = lambda lo, hi, k: np.array(draw(st.lists(f(lo, hi), min_size=k, max_size=k)))  # noqa: E731
    return make_problem(
        gcycles=arr(0.0, 3.0, n),
        deadline_ms=arr(5.0, 3000.0, n),
        splittable=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        f_local_ghz=arr(0.5, 3.0, n),
        kappa=arr(1e-28, 1e-27, n),
        tx_power_w=arr(0.05, 1.0, n),
        up_ms=arr(0.0, 300.0, n),
        down_ms=arr(0.0, 50.0, n),
        host_ghz=tuple(arr(1.0, 40.0, h)),
        host_rho=tuple(arr(0.0, 0.9, h)),
        host_j_per_gcycle=tuple(arr(0.0, 30.0, h)),
        cap_gcycles=tuple(arr(0.0, 6.0, h)),
        backbone_ms=tuple(arr(0.0, 50.0, h)),
    )


@settings(max_examples=60, deadline=None)
@given(problems())
def test_capacity_and_optimality(p: TaskProblem) -> None:
    rng = np.random.default_rng(0)
    opt = Optimal().assign(p, rng)
    check_assignment(p, opt, "optimal")
    info = opt.info
    assert info["status"] == "optimal"
    obj = p.objective(opt.host, opt.local_fraction)
    assert obj == pytest.approx(info["objective"], rel=1e-9)
    tol = 1e-6 * max(1.0, abs(obj))
    assert info["bound"] <= obj + tol
    for name in HEURISTICS:
        a = resolve_offload_policy(name).assign(p, rng)
        check_assignment(p, a, name)  # never over a host's free Gcycles
        assert obj <= p.objective(a.host, a.local_fraction) + tol, name


@settings(max_examples=60, deadline=None)
@given(problems())
def test_local_energy_is_kappa_f2_cycles(p: TaskProblem) -> None:
    a = resolve_offload_policy("local").assign(p, np.random.default_rng(0))
    assert (a.host == -1).all() and (a.local_fraction == 1.0).all()
    b = p.batch
    expect = sum(
        k * (f * 1e9) ** 2 * c * 1e9
        for k, f, c in zip(
            b.kappa.tolist(), b.f_local_ghz.tolist(), b.gcycles.tolist(), strict=True
        )
    )
    got = p.evaluate(a.host, a.local_fraction).device_j.sum()
    assert got == pytest.approx(expect, rel=1e-12, abs=1e-300)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_deadline_energy_keeps_local_on_time_tasks_on_time(p: TaskProblem) -> None:
    local = p.evaluate(np.full(len(p), -1), np.ones(len(p)))
    a = resolve_offload_policy("deadline-energy").assign(p, np.random.default_rng(0))
    c = p.evaluate(a.host, a.local_fraction)
    assert c.on_time[local.on_time].all()
    # and it never spends more device energy than local on those tasks
    assert (c.device_j[local.on_time] <= local.device_j[local.on_time] + 1e-12).all()


def test_optimal_beats_greedy_by_hand() -> None:
    # two tasks, one host with room for one: greedy (earliest deadline first) gives it
    # the first task, the optimum gives it to the task that saves more
    p = make_problem(
        gcycles=[1.0, 2.0],
        deadline_ms=[600.0, 700.0],
        up_ms=10.0,
        down_ms=0.0,
        host_rho=(0.0,),
        host_j_per_gcycle=(0.0,),
        cap_gcycles=(2.0,),
        backbone_ms=(0.0,),
    )
    rng = np.random.default_rng(0)
    g = resolve_offload_policy("greedy").assign(p, rng)
    o = Optimal().assign(p, rng)
    assert g.host.tolist() == [0, -1]
    assert o.host.tolist() == [-1, 0]
    # greedy: task 0 offloaded (110 ms, 0.005 J), task 1 local (2000 ms late, 2 J)
    assert p.objective(g.host, g.local_fraction) == pytest.approx(0.005 + 0.11 + 10 + 2 + 2)
    # optimal: task 0 local (1000 ms late, 1 J), task 1 offloaded (210 ms, 0.005 J)
    assert o.info["objective"] == pytest.approx(10 + 1 + 1 + 0.005 + 0.21)


def test_unknown_policy_and_bad_params() -> None:
    with pytest.raises(
        OffloadError, match="offloading policy got 'fastest'; expected one of local"
    ):
        resolve_offload_policy("fastest")
    with pytest.raises(OffloadError, match="Optimal"):
        resolve_offload_policy("optimal", gap=0.1)
    assert set(OFFLOAD_POLICIES) == {
        "local",
        "nearest",
        "greedy",
        "deadline-energy",
        "optimal",
        "lyapunov",
    }


def test_invalid_assignments_are_refused() -> None:
    p = make_problem(gcycles=[2.0, 2.0], cap_gcycles=(3.0,))
    with pytest.raises(OffloadError, match="host 0 is given 4 Gcycles; it has 3 free"):
        check_assignment(p, Assignment([0, 0], [0.0, 0.0]))
    with pytest.raises(OffloadError, match="task 0 may not split"):
        check_assignment(p, Assignment([0, -1], [0.5, 1.0]))
    with pytest.raises(OffloadError, match="assignment has 1 hosts and 1 fractions for 2 tasks"):
        check_assignment(p, Assignment([0], [0.0]))
    with pytest.raises(OffloadError, match="out of range"):
        check_assignment(p, Assignment([5, -1], [0.0, 1.0]))
    with pytest.raises(OffloadError, match="expected an Assignment"):
        Assignment.of("all local")


def _options_by_evaluate(p: TaskProblem) -> tuple[np.ndarray, ...]:
    """Every option through :meth:`TaskProblem.evaluate` on all columns at once."""
    n, c = p.cand.shape
    host = np.concatenate([np.full((n, 1), -1), p.cand, p.cand], axis=1)
    frac = np.concatenate([np.ones((n, 1)), np.zeros((n, c)), p.split_fraction(p.cand)], axis=1)
    ev = p.evaluate(host, frac)
    allowed = np.concatenate(
        [np.ones((n, 1), bool), p.cand_ok, p.cand_ok & p.batch.splittable[:, None]], axis=1
    )
    allowed &= ev.host_gcycles <= p.cap_gcycles[np.maximum(host, 0)] + 1e-12
    allowed[:, 0] = True
    return (host, frac, ev.latency_ms, ev.device_j, ev.server_j, ev.host_gcycles,
            ev.on_time, p.objective_terms(ev), allowed)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(problems())
def test_options_are_evaluate_to_the_bit(p: TaskProblem) -> None:
    # options() works per block of columns; its numbers must be evaluate()'s, exactly
    names = ("host", "frac", "latency", "device_j", "server_j", "host_g", "on_time", "cost",
             "allowed")  # fmt: skip
    got, ref = p.options(), _options_by_evaluate(p)
    for name, a, b in zip(names, got, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    fast = p.latency_options()
    for a, b in zip(fast, (ref[0], ref[1], ref[2], ref[5], ref[8]), strict=True):
        assert a.tobytes() == b.tobytes()
