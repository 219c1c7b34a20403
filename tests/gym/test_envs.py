"""The Gymnasium environments: the checker, registration, determinism, the equivalence
with ordinary runs, hand-computed refusals, invariants under any action, bad input."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_scenario
from twinedge.engine import simulate
from twinedge.errors import ScenarioError
from twinedge.gym import (
    LinearMigrationPolicy,
    MigrationEnv,
    PlacementEnv,
    feature_names,
    step_reward,
)
from twinedge.scenario import load_scenario, parse_scenario


def three_twins_on_the_region():
    """tiny: an access point with a co-located edge (10 GHz) and a region hub (100 GHz);
    three static twins of 5 GHz each, all placed on the region."""
    sc = tiny_scenario()
    sc["entities"][0]["count"] = 3
    return parse_scenario(sc)


def on_region(problem, rng):
    return np.full(problem.n_twins, 1, dtype=np.int64)  # hosts: [edge, region]


def rollout(env, seed: int, actions_seed: int):
    """Observations, rewards and infos of one episode with seeded random actions."""
    obs, info = env.reset(seed=seed)
    env.action_space.seed(actions_seed)
    seen, done = [(obs, 0.0, info)], False
    while not done:
        obs, reward, done, truncated, info = env.step(env.action_space.sample())
        seen.append((obs, reward, info))
        assert not truncated
    return seen


# --- the checker and registration --------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("twinedge/Migration-v0", {"steps": 4}),
        ("twinedge/Placement-v0", {"periods": 2, "period_steps": 2}),
    ],
)
def test_gymnasium_checker_passes_without_a_warning(env_id, kwargs):
    env = gymnasium.make(env_id, **kwargs).unwrapped  # the checker wants the bare env
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []


def test_registered_with_gymnasium():
    env = gymnasium.make("twinedge/Migration-v0", steps=3, n_candidates=4)
    assert isinstance(env.unwrapped, MigrationEnv)
    # city-small: 12 edge servers, 2 regional hubs, a cloud: 4 nearest + region + cloud
    assert env.action_space.nvec.tolist() == [7] * 200
    assert env.observation_space.shape == (200, 5 + 5 * 6)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    place = gymnasium.make("twinedge/Placement-v0", period_steps=2)
    assert isinstance(place.unwrapped, PlacementEnv)
    assert place.action_space.nvec.tolist() == [10] * 200


def test_observation_columns_are_named():
    env = MigrationEnv(steps=2, n_candidates=1)
    c = env.n_candidate_hosts
    names = feature_names("migration", c)
    assert len(names) == env.observation_space.shape[1] == 5 + 5 * c
    assert names[5 : 5 + c] == [f"cand{j}_latency_ratio" for j in range(c)]
    assert env.observation_space.high[0, names.index("late")] == 1.0
    assert env.observation_space.high[0, names.index("cand0_latency_ratio")] == 10.0


# --- determinism --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [MigrationEnv(steps=6), PlacementEnv(periods=3, period_steps=2)],
    ids=["migration", "placement"],
)
def test_same_seed_same_episode_other_seed_other_world(env):
    a, b = rollout(env, 7, 1), rollout(env, 7, 1)
    assert len(a) == len(b)
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b, strict=True):
        assert np.array_equal(oa, ob) and ra == rb and ia == ib
    c = rollout(env, 8, 1)
    assert not np.array_equal(a[0][0], c[0][0])


def test_reset_without_a_seed_draws_one_from_the_environment_stream():
    env = MigrationEnv(steps=2)
    env.reset(seed=3)
    first = env.reset()[0]
    env.reset(seed=3)
    assert np.array_equal(env.reset()[0], first)
    assert not np.array_equal(env.reset()[0], first)


# --- the environments are the engine --------------------------------------------------------


def test_an_episode_where_everyone_stays_is_the_never_run():
    """40 steps, so the scenario's re-placement at 30 s happens inside the episode."""
    env = MigrationEnv(steps=40)
    env.reset(seed=4)
    stay = np.zeros(env.n_twins, dtype=np.int64)
    total, done, steps = 0.0, False, 0
    while not done:
        _, reward, done, _, info = env.step(stay)
        total += reward
        steps += 1
        assert info["moves"] == info["refused"] == 0 and info["stayed"] == 200
    ref = simulate(load_scenario("city-small"), seed=4, steps=40, migration="never")
    assert steps == 39
    assert info["summary"] == ref.summary
    # the return: every step after the first, scored from the run's own per-step numbers
    misses = ref.metrics.step_values[1:, 3] / 200
    assert -total >= misses.sum() - 1e-9
    assert -total <= misses.sum() + 0.1 * 10 * 39 + 1e-9


def test_a_linear_policy_in_the_env_is_the_same_policy_in_a_run():
    policy = LinearMigrationPolicy([-0.05, 0, 1, 0, 0, 0, 0, 0])
    env = MigrationEnv(steps=25)  # the scenario re-places at 30 s: not within the episode
    obs, _ = env.reset(seed=2)
    done, moved = False, 0
    while not done:
        obs, _, done, _, info = env.step(policy.act(obs))
        moved += info["moves"]
    ref = simulate(load_scenario("city-small"), seed=2, steps=25, migration=policy)
    assert moved > 0
    assert info["summary"] == ref.summary
    # ... which is threshold's run: moving late twins to the best candidate with room
    thr = simulate(load_scenario("city-small"), seed=2, steps=25, migration="threshold")
    assert (
        ref.summary["deadline_miss_ratio"]
        < simulate(load_scenario("city-small"), seed=2, steps=25, migration="never").summary[
            "deadline_miss_ratio"
        ]
    )
    assert thr.summary["migrations"] > 0


# --- refusals by hand ------------------------------------------------------------------------


def test_moves_beyond_capacity_are_refused_in_twin_order():
    env = MigrationEnv(three_twins_on_the_region(), steps=3, n_candidates=1, placement=on_region)
    obs, _ = env.reset(seed=0)
    names = feature_names("migration", 2)
    sim = env.simulation
    assert sim.world.host_ids == ["edge", "region"]
    # candidates: the edge (nearest), then the region; all three fit on the empty edge
    col = {n: obs[:, i] for i, n in enumerate(names)}
    assert col["cand0_fits"].tolist() == [1, 1, 1] and col["cand1_current"].tolist() == [1, 1, 1]
    assert col["host_utilisation"].tolist() == pytest.approx([0.15] * 3)  # 15 of 100 GHz
    obs, _, _, _, info = env.step(np.array([1, 1, 1]))
    # 5 + 5 GHz fill the edge's 10: twin 2's move is refused
    assert (info["moves"], info["refused"], info["stayed"]) == (2, 1, 0)
    assert sim.state.host.tolist() == [0, 0, 1]
    assert sim.state.used_cpu_ghz.tolist() == [10.0, 5.0]
    col = {n: obs[:, i] for i, n in enumerate(names)}
    assert col["cand0_fits"].tolist() == [1, 1, 0]  # the edge is full for twin 2
    assert col["cand0_current"].tolist() == [1, 1, 0]
    # moving to the host it is on is staying, not a refusal
    _, _, done, _, info = env.step(np.array([1, 0, 2]))
    assert (info["moves"], info["refused"], info["stayed"]) == (0, 0, 3) and done


def test_placement_choices_beyond_capacity_go_to_the_fallback():
    env = PlacementEnv(three_twins_on_the_region(), period_steps=2, n_candidates=1)
    obs, _ = env.reset(seed=0)
    names = feature_names("placement", 2)
    col = {n: obs[:, i] for i, n in enumerate(names)}
    assert col["cpu_share"].tolist() == [0.5] * 3  # 5 GHz of the edge's 10
    assert col["cand1_cpu_share"].tolist() == pytest.approx([0.05] * 3)
    assert col["placed"].tolist() == [0, 0, 0]
    _, reward, done, _, info = env.step(np.array([0, 0, 0]))
    assert info["refused"] == 1 and done
    # twins 0 and 1 on the edge as chosen; twin 2 placed by greedy on the room left
    assert env.simulation.state.host.tolist() == [0, 0, 1]
    assert reward < 0 and info["steps"] == 2


# --- invariants under any action ---------------------------------------------------------------

MIG = MigrationEnv(steps=4, n_candidates=3)
PLACE = PlacementEnv(periods=3, period_steps=2, n_candidates=3)


def capacity_respected(sim) -> bool:
    w, s = sim.world, sim.state
    cpu = np.bincount(s.host, weights=w.cpu_ghz, minlength=w.n_hosts)
    mem = np.bincount(s.host, weights=w.mem_gb, minlength=w.n_hosts)
    return bool(
        np.all(cpu <= w.host_cpu_ghz + 1e-9)
        and np.all(mem <= w.host_mem_gb + 1e-9)
        and np.allclose(cpu, s.used_cpu_ghz)
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), actions_seed=st.integers(0, 2**32 - 1), bias=st.integers(0, 3))
def test_any_migration_action_keeps_capacity_and_the_box(seed, actions_seed, bias):
    rng = np.random.default_rng(actions_seed)
    obs, _ = MIG.reset(seed=seed)
    done = False
    while not done:
        assert MIG.observation_space.contains(obs)
        # bias toward one candidate so that many twins crowd onto the same host
        a = np.where(rng.random(MIG.n_twins) < 0.5, bias, rng.integers(0, MIG.action_space.nvec))
        obs, reward, done, _, info = MIG.step(a.astype(np.int64))
        assert capacity_respected(MIG.simulation)
        assert info["moves"] + info["refused"] + info["stayed"] == MIG.n_twins
        assert -1 - 0.1 * 10 - 0.0 <= reward <= 0
    assert MIG.observation_space.contains(obs)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    actions_seed=st.integers(0, 2**32 - 1),
    crowd=st.floats(0.0, 1.0),
)
def test_any_placement_action_keeps_capacity_and_the_box(seed, actions_seed, crowd):
    """``crowd`` of the twins choose their nearest candidate (the rest at random), so
    edge servers overflow and the fallback places the refused twins."""
    rng = np.random.default_rng(actions_seed)
    obs, _ = PLACE.reset(seed=seed)
    done, decisions = False, 0
    while not done:
        assert PLACE.observation_space.contains(obs)
        a = np.where(rng.random(PLACE.n_twins) < crowd, 0, rng.integers(0, PLACE.action_space.nvec))
        obs, _, done, _, info = PLACE.step(a)
        decisions += 1
        assert capacity_respected(PLACE.simulation)
        assert 0 <= info["refused"] <= PLACE.n_twins
    assert decisions == 3 and PLACE.observation_space.contains(obs)


def test_everyone_on_the_nearest_candidate_overflows_into_the_fallback():
    PLACE.reset(seed=1)
    _, _, _, _, info = PLACE.step(np.zeros(PLACE.n_twins, dtype=np.int64))
    assert info["refused"] > 0 and capacity_respected(PLACE.simulation)


# --- rewards and bad input ------------------------------------------------------------------


def test_step_reward_by_hand():
    # twin 0 on time; twin 1 at 2x its 15 ms (late, violation 1); one move among two twins
    assert step_reward(np.array([10.0, 30.0]), np.array([15.0, 15.0]), 1, 0.1, 0.5) == (
        pytest.approx(-(0.5 + 0.1 * 0.5 + 0.5 * 0.5))
    )
    # a violation is clipped at 10 requirements
    assert step_reward(np.array([1500.0]), np.array([15.0]), 0, 1.0, 0.0) == -11.0
    assert step_reward(np.array([15.0]), np.array([15.0]), 0, 1.0, 1.0) == 0.0


def test_bad_actions_and_bad_order_are_refused_with_a_reason():
    env = MigrationEnv(steps=2)
    with pytest.raises(gymnasium.error.ResetNeeded, match="reset"):
        env.step(np.zeros(200, dtype=np.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(200,\)"):
        env.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        env.step(np.full(200, 11))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.zeros(200))
    _, _, done, _, info = env.step(np.zeros(200, dtype=np.int64))
    assert done and "summary" in info
    with pytest.raises(gymnasium.error.ResetNeeded, match="ended"):
        env.step(np.zeros(200, dtype=np.int64))
    place = PlacementEnv(period_steps=1)
    place.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        place.step(np.full(200, 10))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MigrationEnv(steps=1), "steps must be >= 2"),
        (lambda: MigrationEnv(n_candidates=0), "n_candidates must be >= 1"),
        (lambda: MigrationEnv(migration_cost=-1), "migration_cost must be"),
        (lambda: MigrationEnv(render_mode="human"), "renders nothing"),
        (lambda: PlacementEnv(periods=0), "periods must be >= 1"),
        (lambda: PlacementEnv(periods=2, period_steps=1), ">= 2 with several periods"),
    ],
)
def test_bad_arguments_say_which(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_scenario_without_twins_is_refused():
    sc = tiny_scenario()
    sc["entities"][0]["count"] = 0
    with pytest.raises(ScenarioError, match="no entities"):
        MigrationEnv(parse_scenario(sc))
