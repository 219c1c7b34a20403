"""The simulation loop: mobility -> attachment -> latency -> (re-)placement -> migration
-> metrics, over a virtual clock, with all state in NumPy arrays.

Randomness: one root ``numpy.random.Generator`` per run (from the seed) is split with
``spawn`` into independent streams for the world, mobility and policies, so every policy
combination run with the same seed sees exactly the same world and the same movements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinedge.engine.check import check_world_memory
from twinedge.engine.metrics import Metrics
from twinedge.orchestrator import NetworkState, Orchestrator, Recorder
from twinedge.orchestrator.policy import as_policy, policy_name
from twinedge.scenario.schema import Scenario
from twinedge.world import World, build_world, models
from twinedge.world.budget import check_scenario_memory

__all__ = ["Recorder", "RunResult", "Simulation", "move_entities", "simulate"]


def move_entities(
    world: World, state: NetworkState, step_s: float, rng: np.random.Generator
) -> None:
    """Advance every entity by its mobility model over one step and re-attach it (the
    simulation driver's half of a step: the live driver takes positions from devices)."""
    s, w = state, world
    s.prev_xy_m = s.xy_m.copy()
    for sl, model in w.mobility:
        view = s.xy_m[sl]  # a slice is a view: the model moves it in place
        model.step(view, s.t_s, step_s, rng)
        if not isinstance(sl, slice):
            s.xy_m[sl] = view
    s.ap, s.dist_m = w.attach(s.xy_m)
    s.uplink_ms = w.uplink_ms(s.dist_m)


@dataclass
class RunResult:
    """Everything a run produced."""

    label: str
    world: World
    metrics: Metrics
    summary: dict
    placements: list[dict] = field(default_factory=list)
    wall_s: float = 0.0


class Simulation:
    """One run of one placement and one migration policy on one world: the simulation
    driver of the :class:`~twinedge.orchestrator.Orchestrator` (it owns the virtual
    clock and moves the entities; the orchestrator decides).

    Parameters:
        world: built with :func:`twinedge.world.build_world` (a world is used by one run:
            its mobility models carry state).
        placement, migration: policies: names, classes, instances or functions (see
            :func:`twinedge.orchestrator.as_policy`).
        steps, step_s: length of the run.
        placement_period_s: re-solve placement every this many seconds (``None``: only
            the initial placement).
        rng: the policy stream; ``mobility_rng`` moves the entities.
        recorder: optional receiver of every decision.
        trails: how many entities to record trails of, for the report map.
    """

    def __init__(
        self,
        world: World,
        placement: Any,
        migration: Any,
        *,
        steps: int,
        step_s: float,
        placement_period_s: float | None,
        rng: np.random.Generator,
        mobility_rng: np.random.Generator,
        recorder: Recorder | None = None,
        trails: int = 12,
        label: str = "run",
        candidates_k: int = 8,
    ):
        self.world, self.steps, self.step_s = world, steps, step_s
        self.mobility_rng, self.recorder, self.label = mobility_rng, recorder, label
        self.orchestrator = Orchestrator(
            placement,
            migration,
            step_s=step_s,
            placement_period_s=placement_period_s,
            rng=rng,
            recorder=recorder,
            candidates_k=candidates_k,
            horizon_steps=steps,
        )
        n = world.n_entities
        self.trail_ids = np.linspace(0, n - 1, min(trails, n)).astype(np.int64)
        self.state = NetworkState.at(world, world.xy_m)
        self.metrics = Metrics(steps, world.n_hosts, self.trail_ids.size)
        self._server_energy_j = np.zeros(world.n_hosts)

    @property
    def placements(self) -> list[dict]:
        return self.orchestrator.placements

    # --- the loop --------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        w, s, orch = self.world, self.state, self.orchestrator
        t0 = time.perf_counter()
        orch.place(w, s)
        idle_w, max_w = w.node_idle_w[w.hosts], w.node_max_w[w.hosts]
        host_cpu_ghz = w.host_cpu_ghz
        for k in range(self.steps):
            move_entities(w, s, self.step_s, self.mobility_rng)
            s.t_s = (k + 1) * self.step_s
            orch.evaluate(w, s)
            # 1. what the twins experienced this step (moves decided last step cost their
            #    downtime now: an update waits for the rest of the downtime)
            if s.downtime_left_s.any():
                effective = s.latency_ms + 1000.0 * s.downtime_left_s
                np.maximum(s.downtime_left_s - self.step_s, 0.0, out=s.downtime_left_s)
            else:  # the same numbers (+ 0.0); the arrays are replaced, never written
                effective = s.latency_ms
            util = s.used_cpu_ghz / host_cpu_ghz
            server_j = models.server_power_w(idle_w, max_w, util) * self.step_s
            self._server_energy_j += server_j
            # models.device_energy_j(tx_power_w, uplink_s) * update_hz, in place
            radio_j = s.uplink_ms / 1000.0
            radio_j *= w.tx_power_w
            radio_j *= w.update_hz
            device_j = float(radio_j.sum() * self.step_s)
            # 2. decisions on what was observed; they take effect from the next step, so
            #    the orchestrator (told the horizon) decides nothing in the last one
            out = orch.cycle(w, s, k)
            self.metrics.record(
                k,
                s.t_s,
                effective,
                w.latency_req_ms,
                util,
                out.migrations,
                out.downtime_s,
                out.bytes_moved,
                device_j,
                float(server_j.sum()),
                s.xy_m[self.trail_ids],
                replaced=out.replaced,
            )
            if self.recorder:
                self.recorder.step_end(k, s.t_s, w, s)
            if progress:
                progress(k + 1)
        if self.recorder:
            self.recorder.end(s.t_s, w, self._server_energy_j)
        wall = time.perf_counter() - t0
        summary = self.metrics.summary()
        return RunResult(self.label, w, self.metrics, summary, self.placements, wall)


def simulate(
    scenario: Scenario,
    *,
    seed: int | None = None,
    steps: int | None = None,
    placement: Any = None,
    migration: Any = None,
    placement_params: dict | None = None,
    migration_params: dict | None = None,
    recorder: Recorder | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Build the world of ``scenario`` and run one policy combination on it.

    Arguments left as ``None`` come from the scenario file (the first policy of a list).
    ``placement`` and ``migration`` may be names, import paths, classes, instances or
    plain functions (see :func:`twinedge.orchestrator.as_policy`).
    """
    seed = scenario.run.seed if seed is None else seed
    root = np.random.default_rng(seed)
    world_rng, mobility_rng, policy_rng = root.spawn(3)
    steps = steps or scenario.run.steps
    check_scenario_memory(scenario, scenario.name, steps)  # before anything is allocated
    world = build_world(scenario, world_rng)
    check_world_memory(world, steps, scenario.name)
    pol = scenario.policies
    p_spec = placement if placement is not None else pol.as_list(pol.placement)[0]
    m_spec = migration if migration is not None else pol.as_list(pol.migration)[0]
    p_params = (
        (pol.placement_params.get(p_spec, {}) if isinstance(p_spec, str) else {})
        if placement_params is None
        else placement_params
    )
    m_params = (
        (pol.migration_params.get(m_spec, {}) if isinstance(m_spec, str) else {})
        if migration_params is None
        else migration_params
    )
    p_pol = as_policy(p_spec, "placement", **p_params)
    m_pol = as_policy(m_spec, "migration", **m_params)
    p_name = p_spec if isinstance(p_spec, str) else policy_name(p_pol)
    m_name = m_spec if isinstance(m_spec, str) else policy_name(m_pol)
    sim = Simulation(
        world,
        p_pol,
        m_pol,
        steps=steps,
        step_s=scenario.run.step_s,
        placement_period_s=pol.placement_period_s,
        rng=policy_rng,
        mobility_rng=mobility_rng,
        recorder=recorder,
        label=f"{p_name}+{m_name}",
    )
    return sim.run(progress)
