"""Gymnasium environments over the simulator: :class:`MigrationEnv` (which twins move,
every step) and :class:`PlacementEnv` (where every twin runs, at the initial placement
and at each re-placement).

Both drive the real engine (:class:`~twinedge.engine.Simulation`, stepped with
``reset``/``observe``/``decide``) and the real orchestrator: the agent's actions become a
policy's answer inside the orchestrator's cycle, so they pass the same validation
(allowed hosts, CPU and memory capacity) and cost the same migration downtime as any
built-in's. An action the network cannot carry out is refused and counted in ``info``,
never an error. See docs/gym.md.

Randomness: ``reset(seed=s)`` builds the world and the run exactly as
``twinedge.engine.simulate(scenario, seed=s)`` does (one root ``numpy.random.Generator``
spawned into the world, mobility and policy streams), so an episode in which every twin
stays is the run of the ``never`` migration policy, number for number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from twinedge.engine.simulation import Simulation
from twinedge.gym.features import (
    RATIO_MAX,
    feature_high,
    migration_observation,
    moves_from_actions,
    placement_from_actions,
    placement_observation,
)
from twinedge.orchestrator.policy import as_policy
from twinedge.orchestrator.view import NetworkView, candidate_hosts
from twinedge.policies.base import Moves
from twinedge.policies.placement import PlacementResult, resolve_placement
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Scenario
from twinedge.world import World, build_world

#: ``placement_period_s="scenario"``: re-place as the scenario's ``policies.placement_period_s`` says
FROM_SCENARIO: Literal["scenario"] = "scenario"


def step_reward(
    experienced_ms: np.ndarray,
    req_ms: np.ndarray,
    migrations: int,
    violation_weight: float,
    migration_cost: float,
) -> float:
    """The reward of one simulated step::

        r = -( late + violation_weight * violation + migration_cost * migrations / n )

    ``late`` is the fraction of twins whose experienced latency (latency plus migration
    downtime still to sit out) exceeded their requirement (the step's deadline-miss
    ratio); ``violation`` the mean of ``max(0, latency / requirement - 1)`` over the
    twins, each clipped at 10; ``migrations / n`` the moves decided in the cycle before
    the step, per twin. Every term is a fraction or a ratio, so the weights are
    dimensionless.

    Examples:
        >>> step_reward(np.array([10.0, 30.0]), np.array([15.0, 15.0]), 1, 0.1, 0.5)
        -0.8
    """
    n = max(experienced_ms.size, 1)
    ratio = experienced_ms / req_ms
    late = np.count_nonzero(ratio > 1.0) / n
    violation = float(np.minimum(np.maximum(ratio - 1.0, 0.0), RATIO_MAX).sum()) / n
    return -float(late + violation_weight * violation + migration_cost * migrations / n)


def _scenario(scenario: str | Scenario) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def _streams(seed: int) -> tuple[np.random.Generator, ...]:
    """The world, mobility and policy streams of a run, as ``simulate`` spawns them."""
    return tuple(np.random.default_rng(seed).spawn(3))


def _shape(sc: Scenario, candidates_k: int) -> tuple[int, int]:
    """``(twins, candidates per twin)`` of the scenario's world."""
    world = build_world(sc, _streams(sc.run.seed)[0])
    if world.n_entities == 0:
        raise ValueError(f"scenario {sc.name!r} has no twins: there is nothing to decide")
    return world.n_entities, int(candidate_hosts(world, candidates_k).shape[1])


def _check_action(action: Any, nvec: np.ndarray) -> np.ndarray:
    a = np.asarray(action)
    if a.shape != nvec.shape:
        raise ValueError(f"expected one action per twin, shape {nvec.shape}, got {a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"actions must be integers, got dtype {a.dtype}")
    if (a < 0).any() or (a >= nvec).any():
        raise ValueError(f"actions must lie in [0, {int(nvec[0])}) (the action space)")
    return a.astype(np.int64)


class _Base(gym.Env[np.ndarray, np.ndarray]):
    metadata = {"render_modes": []}  # noqa: RUF012  (gymnasium declares it an instance attribute)

    def __init__(
        self,
        scenario: str | Scenario,
        n_candidates: int,
        violation_weight: float,
        migration_cost: float,
    ):
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
        for name, v in (("violation_weight", violation_weight), ("migration_cost", migration_cost)):
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        self.scenario = _scenario(scenario)
        self.candidates_k = int(n_candidates)
        self.violation_weight = float(violation_weight)
        self.migration_cost = float(migration_cost)
        # the spaces' sizes: twins, and candidate hosts per twin (``c``: the k nearest and
        # the nearest of every tier above)
        self.n_twins, self.n_candidate_hosts = _shape(self.scenario, self.candidates_k)
        self.simulation: Simulation | None = None

    def _seed_run(self, seed: int | None) -> int:
        """The run's seed: ``seed`` itself, or drawn from the environment's generator."""
        return int(seed) if seed is not None else int(self.np_random.integers(2**63 - 1))

    def _world(self, world_rng: np.random.Generator) -> World:
        world = build_world(self.scenario, world_rng)
        c = int(candidate_hosts(world, self.candidates_k).shape[1])
        if (world.n_entities, c) != (self.n_twins, self.n_candidate_hosts):
            raise ValueError(
                f"scenario {self.scenario.name!r} built {world.n_entities} twins with {c} "
                f"candidates for this seed, not {self.n_twins} with {self.n_candidate_hosts}: "
                "its spaces are fixed, so its twin and host counts must not depend on the seed"
            )
        return world

    def _view(self) -> NetworkView:
        sim = self._sim()
        return sim.orchestrator.view(sim.world, sim.state)

    def _sim(self) -> Simulation:
        if self.simulation is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self.simulation

    def _reward(self, migrations: int) -> tuple[float, np.ndarray]:
        sim = self._sim()
        eff = sim.experienced_ms
        r = step_reward(
            eff, sim.world.latency_req_ms, migrations, self.violation_weight, self.migration_cost
        )
        return r, eff

    def _step_info(self, eff: np.ndarray) -> dict[str, Any]:
        sim = self._sim()
        late = int(np.count_nonzero(eff > sim.world.latency_req_ms))
        return {
            "step": sim.k,
            "t_s": float(sim.state.t_s),
            "late": late,
            "deadline_miss_ratio": late / max(eff.size, 1),
            "mean_latency_ms": float(eff.mean()) if eff.size else 0.0,
        }


class _ActionMigration:
    """The agent's side of the orchestrator: a migration policy whose answer is the
    pending actions (set by the environment before each cycle)."""

    kind = "migration"
    name = "agent"

    def __init__(self) -> None:
        self.pending: np.ndarray | None = None
        self.stayed = self.refused = 0

    def decide(self, view: NetworkView, rng: np.random.Generator) -> Moves:
        if self.pending is None:  # a cycle without an action (cannot happen in an episode)
            return Moves.none()
        out = moves_from_actions(view, self.pending)
        self.pending = None
        self.stayed, self.refused = out.stayed, out.refused
        return out.moves


class MigrationEnv(_Base):
    """Migrate twins in a simulated network, one decision per step for every twin.

    An episode is one run of ``scenario`` for ``steps`` steps: the scenario's placement
    policy places the twins, then at the end of every step but the last (a decision in
    the last one would take effect after the run) the agent chooses, for every twin, to
    stay or to move to one of its ``c`` candidate hosts. That is ``steps - 1`` decisions.

    - **Observation**: ``Box(0, high, (n_twins, 5 + 5c), float32)``, one row per twin:
      its latency / requirement, whether it is late, whether it is migrating, its speed,
      its host's utilisation, and for each candidate (nearest first) the latency it
      would have there / requirement, the host's utilisation, whether it fits, whether it
      is its host, and the downtime of moving there / requirement
      (:func:`twinedge.gym.features.migration_observation`; names:
      ``feature_names("migration", c)``).
    - **Action**: ``MultiDiscrete([c + 1] * n_twins)``: 0 stays, ``j + 1`` moves to
      candidate ``j``. Moves are taken in twin order while the destination has room; a
      move to a full or forbidden host is refused (``info["refused"]``).
    - **Reward**: after the moves, the next step is simulated and scored by
      :func:`step_reward`: ``-(late fraction + violation_weight * mean violation +
      migration_cost * migrations per twin)``.
    - ``info``: the step's ``late`` twins, ``deadline_miss_ratio``,
      ``mean_latency_ms`` (with downtime), ``moves``, ``refused``, ``stayed``,
      ``migrations`` (with a re-placement's); at the end ``summary``: the run's metrics,
      the numbers of a ``twinedge compare`` row.

    Parameters:
        scenario: a scenario name, file or :class:`~twinedge.scenario.schema.Scenario`
            (default the built-in ``city-small``: 200 twins, 15 hosts).
        steps: steps per episode (>= 2).
        n_candidates: nearest hosts offered per twin; the nearest host of every tier
            above is added, so ``c = n_candidates + tiers above`` (at most the hosts).
        placement: the placement policy (default: the scenario's first).
        placement_period_s: re-place every twin this often (``None``: never; default:
            as the scenario says).
        violation_weight, migration_cost: weights of the reward (>= 0).

    Attributes:
        n_twins, n_candidate_hosts: the sizes of the spaces (``n_candidate_hosts`` is ``c``).
        simulation: the episode's :class:`~twinedge.engine.Simulation` (its ``world``,
            ``state`` and ``metrics``), after :meth:`reset`.

    Raises:
        ValueError: a bad argument, or a scenario without twins.
        ScenarioError: the scenario cannot be loaded.

    Examples:
        >>> env = MigrationEnv(steps=3)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, env.action_space.nvec[0]
        ((200, 55), np.int64(11))
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> info["moves"] + info["refused"] + info["stayed"]
        200
    """

    def __init__(
        self,
        scenario: str | Scenario = "city-small",
        steps: int = 30,
        n_candidates: int = 8,
        *,
        placement: Any = None,
        placement_period_s: float | Literal["scenario"] | None = FROM_SCENARIO,
        violation_weight: float = 0.1,
        migration_cost: float = 0.0,
        render_mode: str | None = None,
    ):
        if steps < 2:
            raise ValueError(f"steps must be >= 2 (the last step decides nothing), got {steps}")
        if render_mode is not None:
            raise ValueError(
                f"MigrationEnv renders nothing; render_mode must be None, got {render_mode!r}"
            )
        super().__init__(scenario, n_candidates, violation_weight, migration_cost)
        self.steps = int(steps)
        pol = self.scenario.policies
        self.placement = placement if placement is not None else pol.as_list(pol.placement)[0]
        self.placement_params = (
            pol.placement_params.get(self.placement, {}) if isinstance(self.placement, str) else {}
        )
        self.placement_period_s: float | None = (
            pol.placement_period_s if placement_period_s == FROM_SCENARIO else placement_period_s
        )
        c = self.n_candidate_hosts
        self.observation_space = spaces.Box(
            0.0,
            np.broadcast_to(feature_high("migration", c), (self.n_twins, 5 + 5 * c)).copy(),
            dtype=np.float32,
        )
        self._nvec = np.full(self.n_twins, c + 1, dtype=np.int64)
        self.action_space = spaces.MultiDiscrete(self._nvec)
        self._agent = _ActionMigration()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a run: build the world for the seed, place the twins, simulate step 0
        and observe."""
        super().reset(seed=seed)
        world_rng, mobility_rng, policy_rng = _streams(self._seed_run(seed))
        self._agent = _ActionMigration()
        self.simulation = Simulation(
            self._world(world_rng),
            as_policy(self.placement, "placement", **self.placement_params),
            self._agent,
            steps=self.steps,
            step_s=self.scenario.run.step_s,
            placement_period_s=self.placement_period_s,
            rng=policy_rng,
            mobility_rng=mobility_rng,
            candidates_k=self.candidates_k,
            label=f"{self.placement if isinstance(self.placement, str) else 'placement'}+agent",
        )
        self.simulation.reset()
        self.simulation.observe()
        info = self._step_info(self.simulation.experienced_ms)
        return migration_observation(self._view()).obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the moves at the end of the current step, simulate the next step and
        score it.

        Raises:
            ValueError: an action outside the action space.
            ResetNeeded: before :meth:`reset` or after the episode ended.
        """
        sim = self._sim()
        if sim.k >= self.steps - 1:
            raise gym.error.ResetNeeded("the episode has ended: call reset()")
        self._agent.pending = _check_action(action, self._nvec)
        out = sim.decide()
        sim.observe()
        reward, eff = self._reward(out.migrations)
        info = self._step_info(eff)
        info.update(
            moves=out.migrations - out.replaced,
            refused=self._agent.refused,
            stayed=self._agent.stayed,
            migrations=out.migrations,
            replaced=out.replaced,
        )
        obs = migration_observation(self._view()).obs
        terminated = sim.k == self.steps - 1
        if terminated:
            sim.decide()  # the last step: its decisions would act after the run
            info["summary"] = sim.result().summary
        return obs, reward, terminated, False, info


class _ActionPlacement:
    """The agent's side of the orchestrator for placement: a placement policy whose
    answer is the pending candidate choices, completed by a fallback policy."""

    kind = "placement"
    name = "agent"

    def __init__(self, fallback: Callable[..., Any]) -> None:
        self.fallback = fallback
        self.pending: np.ndarray | None = None
        self.refused = 0

    def decide(self, view: NetworkView, rng: np.random.Generator) -> PlacementResult:
        if self.pending is None:
            raise ValueError("a placement was asked for without an action")
        hosts, refused = placement_from_actions(view, self.pending, self.fallback, rng)
        self.pending = None
        self.refused = int(refused.size)
        return PlacementResult(status="feasible", hosts=hosts, objective_ms=float("nan"))


class PlacementEnv(_Base):
    """Place the twins of a simulated network: one decision per placement period.

    An episode is one run of ``scenario`` for ``periods * period_steps`` steps. At its
    start (the initial placement) and at the end of every period but the last (a
    re-placement) the agent chooses a candidate host for every twin; the run then goes
    on for a period with the ``migration`` policy (default ``never``, so the placement
    alone decides). That is ``periods`` decisions (1: a one-step episode).

    - **Observation**: ``Box(0, high, (n_twins, 2 + 5c), float32)``: the twin's CPU
      demand / its nearest candidate's capacity, whether it is placed already, and for
      each candidate (nearest first) the latency on the idle host / requirement, the
      host's utilisation, the twin's CPU demand / the host's capacity, whether it is its
      host, and the downtime of moving there / requirement
      (:func:`twinedge.gym.features.placement_observation`).
    - **Action**: ``MultiDiscrete([c] * n_twins)``: candidate ``j`` for every twin.
      Choices are taken in twin order while the host has room; the refused twins (a full
      or forbidden host; ``info["refused"]``) are placed by ``fallback`` on the room left.
    - **Reward**: the sum of :func:`step_reward` over the period's steps.
    - ``info``: ``refused``, the period's ``deadline_miss_ratio``, ``mean_latency_ms``
      and ``migrations``; at the end ``summary`` (the run's metrics).

    Parameters:
        scenario: a scenario name, file or :class:`~twinedge.scenario.schema.Scenario`
            (default ``city-small``).
        periods: decisions per episode (>= 1).
        period_steps: steps per period (>= 1; with ``periods > 1`` at least 2).
        n_candidates: nearest hosts offered per twin (the tiers above are added).
        migration: the migration policy between placements (default ``never``).
        fallback: the placement policy that places refused twins (default ``greedy``).
        violation_weight, migration_cost: weights of the reward (>= 0).

    Raises:
        ValueError: a bad argument, or a scenario without twins.
        ScenarioError: the scenario cannot be loaded.

    Examples:
        >>> env = PlacementEnv(period_steps=3)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, env.action_space.nvec[0]
        ((200, 52), np.int64(10))
        >>> _, reward, terminated, _, info = env.step(np.zeros(200, dtype=np.int64))
        >>> terminated, "summary" in info
        (True, True)
    """

    def __init__(
        self,
        scenario: str | Scenario = "city-small",
        periods: int = 1,
        period_steps: int = 10,
        n_candidates: int = 8,
        *,
        migration: Any = "never",
        fallback: Any = "greedy",
        violation_weight: float = 0.1,
        migration_cost: float = 0.0,
        render_mode: str | None = None,
    ):
        if periods < 1 or period_steps < 1 or (periods > 1 and period_steps < 2):
            raise ValueError(
                f"periods must be >= 1 and period_steps >= 1 (>= 2 with several periods), "
                f"got {periods} and {period_steps}"
            )
        if render_mode is not None:
            raise ValueError(
                f"PlacementEnv renders nothing; render_mode must be None, got {render_mode!r}"
            )
        super().__init__(scenario, n_candidates, violation_weight, migration_cost)
        self.periods, self.period_steps = int(periods), int(period_steps)
        self.migration = migration
        self.fallback = resolve_placement(fallback) if isinstance(fallback, str) else fallback
        c = self.n_candidate_hosts
        self.observation_space = spaces.Box(
            0.0,
            np.broadcast_to(feature_high("placement", c), (self.n_twins, 2 + 5 * c)).copy(),
            dtype=np.float32,
        )
        self._nvec = np.full(self.n_twins, c, dtype=np.int64)
        self.action_space = spaces.MultiDiscrete(self._nvec)
        self._agent = _ActionPlacement(self.fallback)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Build the world for the seed and observe it before the initial placement."""
        super().reset(seed=seed)
        world_rng, mobility_rng, policy_rng = _streams(self._seed_run(seed))
        self._agent = _ActionPlacement(self.fallback)
        steps = self.periods * self.period_steps
        step_s = self.scenario.run.step_s
        self.simulation = Simulation(
            self._world(world_rng),
            self._agent,
            self.migration,
            steps=steps,
            step_s=step_s,
            placement_period_s=self.period_steps * step_s if self.periods > 1 else None,
            rng=policy_rng,
            mobility_rng=mobility_rng,
            candidates_k=self.candidates_k,
            label="agent+" + (self.migration if isinstance(self.migration, str) else "migration"),
        )
        self._started = False
        return placement_observation(self._view(), placed=False).obs, {"step": 0, "t_s": 0.0}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Place (or re-place) every twin, simulate the period and score it.

        Raises:
            ValueError: an action outside the action space.
            InfeasibleError: the refused twins do not fit in the room left.
            ResetNeeded: before :meth:`reset` or after the episode ended.
        """
        sim = self._sim()
        if sim.done:
            raise gym.error.ResetNeeded("the episode has ended: call reset()")
        self._agent.pending = _check_action(action, self._nvec)
        if not self._started:
            sim.reset()
            self._started = True
            migrations = 0
        else:
            migrations = sim.decide().migrations  # the cycle that re-places
        refused = self._agent.refused
        reward, late, lat_sum, n_steps, moved = 0.0, 0, 0.0, 0, migrations
        while True:
            sim.observe()
            r, eff = self._reward(migrations)
            reward += r
            late += int(np.count_nonzero(eff > sim.world.latency_req_ms))
            lat_sum += float(eff.sum())
            n_steps += 1
            if sim.k == sim.steps - 1 or sim.orchestrator.due(sim.k):
                break  # the run's last step, or the next placement is due
            migrations = sim.decide().migrations
            moved += migrations
        twin_steps = max(n_steps * self.n_twins, 1)
        info: dict[str, Any] = {
            "step": sim.k,
            "t_s": float(sim.state.t_s),
            "refused": refused,
            "steps": n_steps,
            "deadline_miss_ratio": late / twin_steps,
            "mean_latency_ms": lat_sum / twin_steps,
            "migrations": moved,
        }
        terminated = sim.k == sim.steps - 1
        if terminated:
            sim.decide()
            info["summary"] = sim.result().summary
        obs = placement_observation(self._view(), placed=True).obs
        return obs, reward, terminated, False, info
