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
from twinedge.errors import SimulationError
from twinedge.orchestrator import (
    CycleOutcome,
    NetworkState,
    Orchestrator,
    PlacementResult,
    Recorder,
)
from twinedge.orchestrator.policy import as_policy, policy_name
from twinedge.scenario.schema import Scenario, Sync, Xr
from twinedge.world import World, build_world, models
from twinedge.world.budget import check_scenario_memory

__all__ = ["Recorder", "RunResult", "Simulation", "build_simulation", "move_entities", "simulate"]


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
        offload: an :class:`twinedge.offload.run.OffloadRun` that assigns the step's
            tasks in every :meth:`decide` (``None``: no tasks, no cost).
        xr, xr_rng: the scenario's ``xr:`` section and XR's own random stream: XR
            sessions are placed and their frames measured every step (docs/xr.md), their
            numbers added to the summary; ``None`` (the default) costs nothing.
        sync: the scenario's ``sync:`` section: every entity's position is offered to the
            predictive-sync sender rule each step (docs/sync.md), its ``sync_*`` numbers
            added to the summary; ``None`` (the default) costs nothing.
        carbon: a :class:`twinedge.carbon.run.CarbonRun` that turns every step's server
            and device energy into grams of CO2 and schedules the jobs released in it
            (docs/carbon.md); ``None``: no carbon accounting.
        market: a :class:`twinedge.market.run.MarketRun` that clears the compute market
            at the end of every period (docs/market.md); ``None``: no market.

    :meth:`run` is :meth:`reset`, then :meth:`observe` and :meth:`decide` for every step,
    then :meth:`result`; a driver that acts between the two halves of a step (a
    reinforcement-learning environment, :mod:`twinedge.gym`) calls them itself.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world_rng, mobility_rng, policy_rng = np.random.default_rng(0).spawn(3)
        >>> sim = Simulation(build_world(load_scenario("city-small"), world_rng), "greedy",
        ...                  "threshold", steps=3, step_s=1.0, placement_period_s=None,
        ...                  rng=policy_rng, mobility_rng=mobility_rng)
        >>> placed = sim.reset()                 # the initial placement
        >>> sim.observe()                        # step 0: entities move, twins are measured
        >>> sim.experienced_ms.shape
        (200,)
        >>> outcome = sim.decide()               # threshold's moves, validated and applied
        >>> while not sim.done:
        ...     _ = sim.advance()
        >>> sim.result().summary["migrations"] >= outcome.migrations
        True
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
        offload: Any = None,
        xr: Xr | None = None,
        xr_rng: np.random.Generator | None = None,
        sync: Sync | None = None,
        carbon: Any = None,
        market: Any = None,
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
        self.offload, self.carbon, self.market = offload, carbon, market
        self.k = 0  # the next step to run
        self._t0: float | None = None
        self._observed: tuple[np.ndarray, np.ndarray, float, float] | None = None
        self._idle_w = self._max_w = np.zeros(0)
        self.xr = None
        if xr is not None:
            from twinedge.xr.sessions import XrRun

            self.xr = XrRun(world, xr, xr_rng or np.random.default_rng(), candidates_k)
        self.sync = None
        if sync is not None:
            from twinedge.sync.meter import SyncMeter
            from twinedge.sync.sender import ByteModel

            bm = ByteModel(header_bytes=sync.header_bytes, number_bytes=sync.number_bytes)
            self.sync = SyncMeter(n, sync.predictor, sync.threshold_m, sync.heartbeat_s, bm)

    @property
    def placements(self) -> list[dict]:
        return self.orchestrator.placements

    @property
    def done(self) -> bool:
        """Whether every step has run (:meth:`result` may be called)."""
        return self.k >= self.steps

    # --- the loop --------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        """Run every step and return the result: :meth:`reset`, then :meth:`advance`
        ``steps`` times (``progress(k + 1)`` after step ``k``), then :meth:`result`."""
        self.reset()
        for k in range(self.steps):
            self.observe()
            self.decide()
            if progress:
                progress(k + 1)
        return self.result()

    def reset(self) -> PlacementResult:
        """Start the run: place every twin (the initial placement) at time 0 and start
        the wall clock. A :class:`Simulation` runs once: call it on a fresh one.

        Raises:
            PolicyError: the placement policy fails or answers invalidly.
            InfeasibleError: the twins do not fit.
        """
        if self.k or self._t0 is not None:
            raise SimulationError("a Simulation runs once: reset() was already called")
        self._t0 = time.perf_counter()
        w = self.world
        self._idle_w, self._max_w = w.node_idle_w[w.hosts], w.node_max_w[w.hosts]
        return self.orchestrator.place(w, self.state)

    def advance(self) -> CycleOutcome:
        """Run step ``k`` (:attr:`k`, then ``k + 1``): :meth:`observe` then :meth:`decide`.

        Raises:
            SimulationError: every step has run, or :meth:`reset` was not called.
        """
        self.observe()
        return self.decide()

    def observe(self) -> None:
        """The first half of step ``k``: move the entities, set the clock to the step's
        end, evaluate every twin's latency and measure what the twins experienced (moves
        decided the step before cost their downtime now). The state is then what the
        step's decisions see; a stepping driver (a reinforcement-learning environment)
        may read it before :meth:`decide`.

        Raises:
            SimulationError: every step has run, :meth:`reset` was not called, or the
                step was already observed.
        """
        if self._t0 is None:
            raise SimulationError("call reset() before stepping a Simulation")
        if self.k >= self.steps:
            raise SimulationError(f"the run has ended: all {self.steps} steps have run")
        if self._observed is not None:
            raise SimulationError(f"step {self.k} was already observed: call decide()")
        w, s, k = self.world, self.state, self.k
        move_entities(w, s, self.step_s, self.mobility_rng)
        s.t_s = (k + 1) * self.step_s
        self.orchestrator.evaluate(w, s)
        if self.xr is not None:
            self.xr.step(self.xr.view(s, self.step_s), k)
        if self.sync is not None:
            self.sync.step(s.t_s, s.xy_m)
        # what the twins experienced this step (moves decided last step cost their
        # downtime now: an update waits for the rest of the downtime)
        if s.downtime_left_s.any():
            effective = s.latency_ms + 1000.0 * s.downtime_left_s
            np.maximum(s.downtime_left_s - self.step_s, 0.0, out=s.downtime_left_s)
        else:  # the same numbers (+ 0.0); the arrays are replaced, never written
            effective = s.latency_ms
        util = s.used_cpu_ghz / w.host_cpu_ghz
        server_j = models.server_power_w(self._idle_w, self._max_w, util) * self.step_s
        self._server_energy_j += server_j
        # models.device_energy_j(tx_power_w, uplink_s) * update_hz, in place
        radio_j = s.uplink_ms / 1000.0
        radio_j *= w.tx_power_w
        radio_j *= w.update_hz
        device_j = float(radio_j.sum() * self.step_s)
        if self.carbon is not None:
            self.carbon.record(k, server_j, device_j)
        self._observed = (effective, util, device_j, float(server_j.sum()))

    @property
    def experienced_ms(self) -> np.ndarray:
        """The latency each twin experienced in the step last observed (its latency plus
        the migration downtime it still had to sit out), in ms.

        Raises:
            SimulationError: no step is observed and not yet decided.
        """
        if self._observed is None:
            raise SimulationError("no step is observed: call observe() first")
        return self._observed[0]

    def decide(self) -> CycleOutcome:
        """The second half of step ``k``: the orchestrator's cycle (re-placement when a
        period ends, then the migration policy) on what :meth:`observe` saw, its moves
        taking effect from the next step (so the last step decides nothing); then the
        step's metrics are recorded and ``k`` advances.

        Raises:
            SimulationError: the step was not observed.
            PolicyError: a policy fails or answers invalidly.
        """
        if self._observed is None:
            raise SimulationError("call observe() before decide()")
        w, s, k = self.world, self.state, self.k
        effective, util, device_j, server_j = self._observed
        out = self.orchestrator.cycle(w, s, k)
        if self.offload is not None or self.market is not None:  # over the same view
            view = self.orchestrator.view(w, s)
            if self.offload is not None:  # the step's tasks
                self.offload.step(view, s.t_s - self.step_s)
            if self.market is not None:  # the periods that end in this step
                self.market.step(view, s.t_s - self.step_s, s.t_s, self.recorder)
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
            server_j,
            s.xy_m[self.trail_ids],
            replaced=out.replaced,
        )
        if self.recorder:
            self.recorder.step_end(k, s.t_s, w, s)
        self._observed = None
        self.k = k + 1
        return out

    def result(self) -> RunResult:
        """End the run (the recorder's end) and return its result.

        Raises:
            SimulationError: steps are left to run.
        """
        if self._t0 is None or self.k < self.steps:
            raise SimulationError(f"the run is not over: {self.k} of {self.steps} steps have run")
        s = self.state
        if self.recorder:
            self.recorder.end(s.t_s, self.world, self._server_energy_j)
        wall = time.perf_counter() - self._t0
        summary = self.metrics.summary()
        if self.offload is not None:
            summary.update(self.offload.summary())
        if self.xr is not None:
            summary.update(self.xr.summary())
        if self.sync is not None:
            summary.update(self.sync.summary())
        if self.carbon is not None:
            summary.update(self.carbon.summary())
        if self.market is not None:
            summary.update(self.market.summary())
        return RunResult(self.label, self.world, self.metrics, summary, self.placements, wall)


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
    offload: Any = None,
) -> RunResult:
    """Build the world of ``scenario`` and run one policy combination on it.

    Arguments left as ``None`` come from the scenario file (the first policy of a list).
    ``offload`` is the offloading policy when the scenario has an ``offloading`` section.
    ``placement`` and ``migration`` may be names, import paths, classes, instances or
    plain functions (see :func:`twinedge.orchestrator.as_policy`).
    """
    return build_simulation(
        scenario,
        seed=seed,
        steps=steps,
        placement=placement,
        migration=migration,
        placement_params=placement_params,
        migration_params=migration_params,
        recorder=recorder,
        offload=offload,
    ).run(progress)


def build_simulation(
    scenario: Scenario,
    *,
    seed: int | None = None,
    steps: int | None = None,
    placement: Any = None,
    migration: Any = None,
    placement_params: dict | None = None,
    migration_params: dict | None = None,
    recorder: Recorder | None = None,
    offload: Any = None,
) -> Simulation:
    """The :class:`Simulation` :func:`simulate` runs (same arguments, same random
    streams), not started: a driver that reads the state between steps (the live
    comparison of ``twinedge devices --compare``) steps it itself.
    """
    seed = scenario.run.seed if seed is None else seed
    root = np.random.default_rng(seed)
    world_rng, mobility_rng, policy_rng = root.spawn(3)
    xr_rng = root.spawn(1)[0] if scenario.xr is not None else None  # the three unchanged
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
        offload=_offload_run(scenario, world, root, offload),
        xr=scenario.xr,
        xr_rng=xr_rng,
        sync=scenario.sync,
        carbon=carbon_run(scenario, world, root, steps),
        market=market_run(scenario, root),
    )
    if sim.offload is not None:
        sim.label += f"+offload-{sim.offload.label}"
    return sim


def _offload_run(scenario: Scenario, world: World, root: np.random.Generator, policy: Any) -> Any:
    """The run's offloading (its own random stream, after the three of the run), or
    ``None`` without an ``offloading`` section."""
    if scenario.offloading is None:
        if policy is not None:
            raise SimulationError(
                "an offloading policy is given but the scenario has no offloading section"
            )
        return None
    from twinedge.offload.run import OffloadRun

    (rng,) = root.spawn(1)
    return OffloadRun(scenario.offloading, world, rng, policy)


def carbon_run(scenario: Scenario, world: World, root: np.random.Generator, steps: int) -> Any:
    """The run's carbon accounting (its own random stream, after those of the run,
    XR and offloading), or ``None`` without a ``carbon`` section."""
    if scenario.carbon is None:
        return None
    from twinedge.carbon.run import CarbonRun

    (rng,) = root.spawn(1)
    return CarbonRun(scenario.carbon, world, scenario.run.step_s, steps, rng)


def market_run(scenario: Scenario, root: np.random.Generator) -> Any:
    """The run's compute market (its own random stream, after all the others), or
    ``None`` without a ``market`` section."""
    if scenario.market is None:
        return None
    from twinedge.market.run import MarketRun

    (rng,) = root.spawn(1)
    return MarketRun(scenario.market, rng)
