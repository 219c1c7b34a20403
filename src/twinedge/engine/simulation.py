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
from typing import Protocol

import numpy as np

from twinedge.engine.check import check_world_memory
from twinedge.engine.metrics import Metrics
from twinedge.errors import PolicyError
from twinedge.policies.migration import resolve_migration
from twinedge.policies.placement import resolve_placement, solve_placement
from twinedge.policies.placement.base import PlacementProblem, PlacementResult
from twinedge.scenario.schema import Scenario
from twinedge.world import World, build_world, models
from twinedge.world.budget import check_scenario_memory
from twinedge.world.dynamic import SimContext, SimState


class Recorder(Protocol):
    """Receives every decision of a run (the ledger integration implements this)."""

    def placement(self, t_s: float, world: World, twins: np.ndarray, hosts: np.ndarray) -> None: ...

    def migration(
        self,
        t_s: float,
        world: World,
        twins: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        bytes_moved: np.ndarray,
        downtime_s: np.ndarray,
    ) -> None: ...

    def step_end(self, k: int, t_s: float, world: World, state: SimState) -> None: ...

    def end(self, t_s: float, world: World, server_energy_j: np.ndarray) -> None: ...


def placement_problem(ctx: SimContext, *, amortise_steps: int | None = None) -> PlacementProblem:
    """The seed-000 placement problem for every twin at its current access point:
    ``T_ij = uplink_i + backbone(ap_i, j) + service_ij`` with the idle service time (load
    is held in check by the capacity constraints); ``inf`` where i may not use host j.

    For a re-solve (``amortise_steps`` given), moving twin i away from its current host
    also costs its migration downtime, spread over the steps until the next re-solve:
    ``T_ij += 1000 * downtime_s(host_i -> j) / amortise_steps`` for ``j != host_i``. The
    objective is then the average latency over the coming period including the moves it
    causes, so a re-solve does not reshuffle twins for sub-millisecond gains.
    """
    w, s = ctx.world, ctx.state
    lat = w.ap_host_ms[s.ap] + s.uplink_ms[:, None]
    lat += models.service_ms(w.work_gcycles[:, None], w.host_cpu_ghz[None, :])
    if amortise_steps:
        down_s = models.migration_downtime_s(
            w.state_bytes[:, None], w.host_host_mbps[s.host], w.host_host_ms[s.host]
        )
        down_s[np.arange(w.n_entities), s.host] = 0.0
        lat += 1000.0 * down_s / amortise_steps
    lat[~w.allowed()] = np.inf
    return PlacementProblem(lat, w.cpu_ghz, w.mem_gb, w.host_cpu_ghz, w.host_mem_gb)


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
    """One run of one placement and one migration policy on one world.

    Parameters:
        world: built with :func:`twinedge.world.build_world` (a world is used by one run:
            its mobility models carry state).
        placement, migration: policies (callables) following the contracts in
            :mod:`twinedge.policies`.
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
        placement: Callable,
        migration: Callable,
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
        self.world, self.placement, self.migration = world, placement, migration
        self.steps, self.step_s, self.period_s = steps, step_s, placement_period_s
        self.rng, self.mobility_rng, self.recorder, self.label = rng, mobility_rng, recorder, label
        n = world.n_entities
        self.trail_ids = np.linspace(0, n - 1, min(trails, n)).astype(np.int64)
        xy = world.xy_m.copy()
        ap, dist = world.attach(xy)
        self.state = SimState(
            t_s=0.0,
            xy_m=xy,
            prev_xy_m=xy.copy(),
            ap=ap,
            dist_m=dist,
            uplink_ms=world.uplink_ms(dist),
            host=np.zeros(n, dtype=np.int64),
            downtime_left_s=np.zeros(n),
            used_cpu_ghz=np.zeros(world.n_hosts),
            used_mem_gb=np.zeros(world.n_hosts),
            latency_ms=np.zeros(n),
        )
        self.ctx = SimContext(world, self.state, step_s, candidates_k)
        self.metrics = Metrics(steps, world.n_hosts, self.trail_ids.size)
        self.placements: list[dict] = []
        self._server_energy_j = np.zeros(world.n_hosts)

    # --- pieces of a step ------------------------------------------------------------
    def _move(self) -> None:
        s, w = self.state, self.world
        s.prev_xy_m = s.xy_m.copy()
        for sl, model in w.mobility:
            view = s.xy_m[sl]
            model.step(view, s.t_s, self.step_s, self.mobility_rng)
            s.xy_m[sl] = view
        s.ap, s.dist_m = w.attach(s.xy_m)
        s.uplink_ms = w.uplink_ms(s.dist_m)

    def _latency(self) -> None:
        """Latency of every twin on its current host (the one formula: SimContext)."""
        self.state.latency_ms = self.ctx.latency_ms(slice(None), self.state.host)

    def _place(self, initial: bool) -> tuple[int, float, float]:
        s = self.state
        period = None if initial else max(1, round((self.period_s or self.step_s) / self.step_s))
        problem = placement_problem(self.ctx, amortise_steps=period)
        result: PlacementResult = solve_placement(self.placement, problem, self.rng)
        self.placements.append(
            {"t_s": s.t_s, **{k: v for k, v in result.to_json().items() if k != "hosts"}}
        )
        if initial:
            s.set_hosts(self.world, result.hosts)
            if self.recorder:
                self.recorder.placement(s.t_s, self.world, np.arange(self.world.n_entities), s.host)
            return 0, 0.0, 0.0
        changed = np.flatnonzero(result.hosts != s.host)
        return self._apply_moves(changed, result.hosts[changed], check=False)

    def _apply_moves(
        self, twins: np.ndarray, hosts: np.ndarray, check: bool = True
    ) -> tuple[int, float, float]:
        w, s = self.world, self.state
        twins = np.asarray(twins, dtype=np.int64)
        hosts = np.asarray(hosts, dtype=np.int64)
        if twins.size == 0:
            return 0, 0.0, 0.0
        if check:
            self._validate_moves(twins, hosts)
        down = self.ctx.downtime_s(twins, hosts)
        src = s.host[twins].copy()
        nbytes = w.state_bytes[twins]
        new_host = s.host.copy()
        new_host[twins] = hosts
        s.set_hosts(w, new_host)
        s.downtime_left_s[twins] = down
        if self.recorder:
            self.recorder.migration(s.t_s, w, twins, src, hosts, nbytes, down)
        return twins.size, float(down.sum()), float(nbytes.sum())

    def _validate_moves(self, twins: np.ndarray, hosts: np.ndarray) -> None:
        w, s = self.world, self.state
        name = getattr(self.migration, "__name__", type(self.migration).__name__)
        if twins.shape != hosts.shape or twins.ndim != 1:
            raise PolicyError(
                f"migration policy {name} returned twins {twins.shape} and hosts {hosts.shape}; expected two equal 1-D arrays"
            )
        if np.unique(twins).size != twins.size:
            raise PolicyError(f"migration policy {name} moved a twin twice in one step")
        if (
            twins.min() < 0
            or twins.max() >= w.n_entities
            or hosts.min() < 0
            or hosts.max() >= w.n_hosts
        ):
            raise PolicyError(f"migration policy {name} returned an index out of range")
        if not w.allowed(twins)[np.arange(twins.size), hosts].all():
            raise PolicyError(f"migration policy {name} moved a twin to a host it may not use")
        new_host = s.host.copy()
        new_host[twins] = hosts
        for res, dem, cap in (
            ("cpu_ghz", w.cpu_ghz, w.host_cpu_ghz),
            ("mem_gb", w.mem_gb, w.host_mem_gb),
        ):
            used = np.bincount(new_host, weights=dem, minlength=w.n_hosts)
            old = np.bincount(s.host, weights=dem, minlength=w.n_hosts)
            # a host already over capacity (it cannot be, but be safe) may not get worse
            over = np.flatnonzero((used > cap + 1e-9) & (used > old + 1e-12))
            if over.size:
                j = int(over[0])
                raise PolicyError(
                    f"migration policy {name} overloads host {w.host_ids[j]}: {res} {used[j]:.4g} > capacity {cap[j]:.4g}"
                )

    # --- the loop --------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        w, s = self.world, self.state
        t0 = time.perf_counter()
        self._place(initial=True)
        self._latency()
        period_steps = None if self.period_s is None else max(1, round(self.period_s / self.step_s))
        idle_w, max_w = w.node_idle_w[w.hosts], w.node_max_w[w.hosts]
        for k in range(self.steps):
            self._move()
            s.t_s = (k + 1) * self.step_s
            self._latency()
            # 1. what the twins experienced this step (moves decided last step cost their
            #    downtime now: an update waits for the rest of the downtime)
            effective = s.latency_ms + 1000.0 * s.downtime_left_s
            util = s.used_cpu_ghz / w.host_cpu_ghz
            server_j = models.server_power_w(idle_w, max_w, util) * self.step_s
            self._server_energy_j += server_j
            device_j = float(
                (models.device_energy_j(w.tx_power_w, s.uplink_ms / 1000.0) * w.update_hz).sum()
                * self.step_s
            )
            np.maximum(s.downtime_left_s - self.step_s, 0.0, out=s.downtime_left_s)
            # 2. decisions on what was observed; they take effect from the next step
            n_mig, down, nbytes = 0, 0.0, 0.0
            if period_steps and (k + 1) % period_steps == 0:
                n_mig, down, nbytes = self._place(initial=False)
                self._latency()
            twins, hosts = self.migration(self.ctx, self.rng)
            m2, d2, b2 = self._apply_moves(twins, hosts)
            n_mig, down, nbytes = n_mig + m2, down + d2, nbytes + b2
            self.metrics.record(
                k,
                s.t_s,
                effective,
                w.latency_req_ms,
                util,
                n_mig,
                down,
                nbytes,
                device_j,
                float(server_j.sum()),
                s.xy_m[self.trail_ids],
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
    placement: str | None = None,
    migration: str | None = None,
    placement_params: dict | None = None,
    migration_params: dict | None = None,
    recorder: Recorder | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Build the world of ``scenario`` and run one policy combination on it.

    Arguments left as ``None`` come from the scenario file (the first policy of a list).
    """
    seed = scenario.run.seed if seed is None else seed
    root = np.random.default_rng(seed)
    world_rng, mobility_rng, policy_rng = root.spawn(3)
    steps = steps or scenario.run.steps
    check_scenario_memory(scenario, scenario.name, steps)  # before anything is allocated
    world = build_world(scenario, world_rng)
    check_world_memory(world, steps, scenario.name)
    pol = scenario.policies
    p_name = placement or pol.as_list(pol.placement)[0]
    m_name = migration or pol.as_list(pol.migration)[0]
    p_params = (
        pol.placement_params.get(p_name, {}) if placement_params is None else placement_params
    )
    m_params = (
        pol.migration_params.get(m_name, {}) if migration_params is None else migration_params
    )
    sim = Simulation(
        world,
        resolve_placement(p_name, **p_params),
        resolve_migration(m_name, **m_params),
        steps=steps,
        step_s=scenario.run.step_s,
        placement_period_s=pol.placement_period_s,
        rng=policy_rng,
        mobility_rng=mobility_rng,
        recorder=recorder,
        label=f"{p_name}+{m_name}",
    )
    return sim.run(progress)
