"""The orchestrator on its own: the contract, validation, recording, and the same
decisions whatever form the policy was given in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import tiny_scenario
from twinedge.engine import simulate
from twinedge.errors import PolicyError
from twinedge.orchestrator import (
    Moves,
    NetworkState,
    Orchestrator,
    as_policy,
    check_policy,
)
from twinedge.policies.migration import Threshold
from twinedge.policies.placement import GreedyPlacement
from twinedge.scenario import load_scenario, parse_scenario
from twinedge.world import build_world


def tiny_world(count: int = 3):
    sc = tiny_scenario()
    sc["entities"][0]["count"] = count
    return build_world(parse_scenario(sc, "tiny.yaml"), np.random.default_rng(0))


class Log:
    """A recorder that keeps what it is told."""

    def __init__(self) -> None:
        self.placed: list[tuple] = []
        self.moved: list[tuple] = []

    def placement(self, t_s, world, twins, hosts):
        self.placed.append((t_s, twins.tolist(), hosts.tolist()))

    def migration(self, t_s, world, twins, src, dst, bytes_moved, downtime_s):
        self.moved.append((t_s, twins.tolist(), src.tolist(), dst.tolist(), downtime_s.tolist()))


def edge_region(world) -> tuple[int, int]:
    ids = world.host_ids
    return ids.index("edge"), ids.index("region")


def test_a_move_costs_its_stop_and_copy_downtime_and_is_recorded():
    world = tiny_world(1)
    edge, region = edge_region(world)
    state = NetworkState.at(world, world.xy_m, host=np.array([edge]))
    log = Log()
    orch = Orchestrator("nearest", "never", step_s=1.0, rng=np.random.default_rng(0), recorder=log)
    state.t_s = 7.0
    out = orch.apply(world, state, Moves([0], [region]))
    # 8 * 1e7 B / 1000 Mbit/s + 2 ms path = 0.082 s
    assert out.downtime_s == pytest.approx(0.082)
    assert out.migrations == 1 and out.bytes_moved == 1e7
    assert state.host.tolist() == [region]
    assert state.used_cpu_ghz[region] == 5.0 and state.used_cpu_ghz[edge] == 0.0
    assert state.downtime_left_s[0] == pytest.approx(0.082)
    assert log.moved == [(7.0, [0], [edge], [region], [pytest.approx(0.082)])]


def test_moves_that_overload_a_host_are_refused_and_nothing_is_applied():
    world = tiny_world(3)  # three 5 GHz twins; the edge has 10 GHz
    edge, region = edge_region(world)
    state = NetworkState.at(world, world.xy_m, host=np.full(3, region))
    orch = Orchestrator("nearest", "never", step_s=1.0, rng=np.random.default_rng(0))
    with pytest.raises(PolicyError, match=r"overloads host edge: cpu_ghz 15 > capacity 10"):
        orch.apply(world, state, Moves([0, 1, 2], [edge, edge, edge]))
    assert state.host.tolist() == [region] * 3
    orch.apply(world, state, Moves([0, 1], [edge, edge]))  # exactly full is fine
    assert state.used_cpu_ghz[edge] == 10.0


@pytest.mark.parametrize(
    ("twins", "hosts", "message"),
    [
        ([0, 0], [0, 1], "moved a twin twice"),
        ([5], [0], "twin index out of range"),
        ([0], [9], "host index out of range"),
        ([-1], [0], "twin index out of range"),
    ],
)
def test_malformed_moves_are_refused(twins, hosts, message):
    world = tiny_world(3)
    _, region = edge_region(world)
    state = NetworkState.at(world, world.xy_m, host=np.full(3, region))
    orch = Orchestrator("nearest", "never", step_s=1.0, rng=np.random.default_rng(0))
    with pytest.raises(PolicyError, match=message):
        orch.apply(world, state, Moves(twins, hosts))


def test_a_policy_cannot_write_to_the_view():
    def sneaky(view, rng):
        view.state.host[0] = 1
        return Moves.none()

    world = tiny_world(2)
    state = NetworkState.at(world, world.xy_m)
    orch = Orchestrator("nearest", sneaky, step_s=1.0, rng=np.random.default_rng(0))
    orch.place(world, state)
    before = state.host.copy()
    with pytest.raises(PolicyError, match="read-only"):
        orch.cycle(world, state, 0)
    assert np.array_equal(state.host, before)


def test_a_policy_that_raises_is_named():
    def broken(view, rng):
        raise KeyError("oops")

    world = tiny_world(2)
    state = NetworkState.at(world, world.xy_m)
    orch = Orchestrator("nearest", broken, step_s=1.0, rng=np.random.default_rng(0))
    orch.place(world, state)
    with pytest.raises(PolicyError, match="migration policy 'broken' raised KeyError"):
        orch.cycle(world, state, 0)


def test_one_policy_in_every_form_decides_the_same():
    sc = load_scenario("city-small")
    forms = ["threshold", Threshold, Threshold(), "twinedge.policies.migration:Threshold"]
    results = [simulate(sc, placement="greedy", migration=f, steps=20) for f in forms]
    for r in results[1:]:
        assert r.summary == results[0].summary


def test_functions_are_policies_wherever_a_name_is():
    sc = load_scenario("city-small")

    def everyone_on_the_smallest(problem, rng):
        return np.full(problem.n_twins, np.argmin(problem.capacity_cpu_ghz))

    def stay(view, rng):
        return Moves.none()

    with pytest.raises(
        PolicyError,
        match=r"everyone_on_the_smallest. returned an invalid placement: host .* over capacity",
    ):
        simulate(sc, placement=everyone_on_the_smallest, migration=stay, steps=2)
    res = simulate(sc, placement="greedy", migration=stay, steps=5)
    assert res.label == "greedy+stay"
    assert (
        res.summary["migrations"]
        == simulate(sc, placement="greedy", migration="never", steps=5).summary["migrations"]
    )


def test_as_policy_errors_are_clear():
    with pytest.raises(PolicyError, match="is a placement policy; a migration policy is needed"):
        as_policy(GreedyPlacement, "migration")
    with pytest.raises(PolicyError, match="unknown migration policy 'greedy'"):
        as_policy("greedy", "migration")
    with pytest.raises(PolicyError, match="unknown migration policy 'nope'"):
        as_policy("nope", "migration")
    with pytest.raises(PolicyError, match="already built, so it cannot take parameters"):
        as_policy(lambda v, r: Moves.none(), "migration", beta=1)
    with pytest.raises(PolicyError, match="no parameters \\['bogus'\\]"):
        as_policy(Threshold(), "migration", bogus=1)
    with pytest.raises(PolicyError, match="unknown policy kind"):
        as_policy("greedy", "offload")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="neither callable"):
        as_policy(42, "migration")


def test_params_like_scikit_learn():
    p = as_policy("utility", "migration", beta=0.4)
    assert p.get_params()["beta"] == 0.4  # type: ignore[attr-defined]
    assert repr(p).startswith("Utility(beta=0.4, ")
    clone = type(p)(**p.get_params())  # type: ignore[attr-defined]
    assert repr(clone) == repr(p) and clone is not p


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("placement", "nearest"),
        ("placement", "greedy"),
        ("placement", "optimal"),
        ("migration", "never"),
        ("migration", "threshold"),
        ("migration", "utility"),
        ("migration", "predictive"),
    ],
)
def test_every_built_in_passes_check_policy(kind, name):
    assert check_policy(name, kind) == [
        "resolves",
        "params",
        "valid decisions",
        "deterministic",
        "no twins",
        "one twin",
    ]


def test_check_policy_catches_a_nondeterministic_policy():
    def coin(view, rng):
        twins = np.flatnonzero(np.random.random(view.world.n_entities) < 0.05)  # noqa: NPY002 (global state on purpose)
        return Moves(twins, view.state.host[twins])

    with pytest.raises(PolicyError, match="deterministic: two runs"):
        check_policy(coin, "migration")


def test_check_policy_catches_overload_and_wrong_types():
    def pile_up(view, rng):
        n = view.world.n_entities
        return Moves(np.arange(n), np.full(n, np.argmin(view.world.host_cpu_ghz)))

    def wrong_type(view, rng):
        return "move everyone"

    with pytest.raises(PolicyError, match=r"valid decisions: .*overloads host"):
        check_policy(pile_up, "migration")
    with pytest.raises(PolicyError, match="returned str; expected Moves"):
        check_policy(wrong_type, "migration")
    with pytest.raises(PolicyError, match="say which kind"):
        check_policy(pile_up)


def test_check_policy_catches_a_policy_that_fails_without_twins():
    def first_twin_stays(view, rng):
        return Moves([0], [int(view.state.host[0])])  # assumes a twin exists

    with pytest.raises(PolicyError, match=r"no twins: .*IndexError"):
        check_policy(first_twin_stays, "migration")


@given(
    st.lists(st.integers(0, 2**40), max_size=20).flatmap(
        lambda t: st.tuples(
            st.just(t), st.lists(st.integers(0, 2**40), min_size=len(t), max_size=len(t))
        )
    )
)
def test_moves_accept_integer_pairs_and_unpack(pair):
    twins, hosts = pair
    m = Moves.of((twins, hosts))
    t, h = m
    assert t.tolist() == twins and h.tolist() == hosts and len(m) == len(twins)
    assert t.dtype == np.int64


@pytest.mark.parametrize(
    "answer",
    [([0.5], [1]), ([0, 1], [1]), ([[0]], [[1]]), (["a"], [0]), ([0], [np.nan]), None, ([0],)],
)
def test_moves_refuse_what_is_not_a_pair_of_index_arrays(answer):
    with pytest.raises(PolicyError):
        Moves.of(answer)


def test_the_check_policy_example_of_the_docs_runs():
    import re
    import subprocess
    import sys
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text()
    (block,) = re.findall(r"```python\n(# check_policy example\n.*?)```", doc, re.S)
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("['resolves', 'params', 'valid decisions'")
    assert lines[2] == "greedy+stay_put 0"


@given(k=st.integers(1, 12))
def test_candidates_are_the_k_nearest_and_the_nearest_of_every_tier_above(k):
    from twinedge.orchestrator.view import candidate_hosts, nearest_hosts

    world = CITY_SMALL
    cand = candidate_hosts(world, k)
    tiers = world.host_tier
    upper = sorted(set(tiers[tiers > tiers.min()].tolist()))  # region, cloud
    assert upper == [2, 3]
    assert cand.shape == (len(world.access), min(k + len(upper), world.n_hosts))
    near = nearest_hosts(world, k)
    for a, row in enumerate(cand):
        assert len(set(row.tolist())) == row.size  # distinct hosts
        assert set(near[a].tolist()) <= set(row.tolist())
        for t in upper:
            of_t = np.flatnonzero(tiers == t)
            assert of_t[np.argmin(world.ap_host_ms[a, of_t])] in row
        assert (np.diff(world.ap_host_ms[a, row]) >= 0).all()  # nearest first


def test_candidates_without_tiers_above_are_the_k_nearest():
    from twinedge.orchestrator.view import candidate_hosts, nearest_hosts

    world = CITY_SMALL.evolve(node_tier=np.where(CITY_SMALL.node_tier > 0, 1, 0))
    assert (candidate_hosts(world, 3) == nearest_hosts(world, 3)).all()


CITY_SMALL = build_world(load_scenario("city-small"), np.random.default_rng(0))
