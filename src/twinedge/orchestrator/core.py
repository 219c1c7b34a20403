"""The orchestrator: placement periods, policy calls, move validation and decision
recording, over a :class:`NetworkView`. Drivers (the simulation engine, the live runtime)
own the clock and the state; the orchestrator decides and applies the decisions to the
state it is handed, the way SimPy's real-time environment changes only the clock of its
core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from twinedge.errors import PolicyError
from twinedge.orchestrator.policy import as_policy, decide, policy_name
from twinedge.orchestrator.view import NetworkState, NetworkView, candidate_hosts
from twinedge.policies.base import Moves
from twinedge.policies.placement import PlacementResult
from twinedge.world import models
from twinedge.world.state import World


class Recorder(Protocol):
    """Receives every decision, simulated or live (the ledger integration implements it)."""

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

    def step_end(self, k: int, t_s: float, world: World, state: NetworkState) -> None: ...

    def end(self, t_s: float, world: World, server_energy_j: np.ndarray) -> None: ...


@dataclass
class CycleOutcome:
    """What one orchestrator cycle decided and applied.

    Attributes:
        migrations: twins moved (by re-placement and by the migration policy).
        downtime_s: their summed migration downtime.
        bytes_moved: their summed state size.
        moves: every move, in the order applied (twin indices and destination hosts,
            with ``src`` the hosts they left).
        placement: the re-placement's certificate when one ran this cycle.
        replaced: how many of ``migrations`` the re-placement made (the rest are the
            migration policy's).
    """

    migrations: int = 0
    replaced: int = 0
    downtime_s: float = 0.0
    bytes_moved: float = 0.0
    twins: list[np.ndarray] = field(default_factory=list)
    src: list[np.ndarray] = field(default_factory=list)
    dst: list[np.ndarray] = field(default_factory=list)
    placement: dict[str, Any] | None = None

    def moves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(twins, src_hosts, dst_hosts)`` of every move this cycle."""
        if not self.twins:
            z = np.zeros(0, dtype=np.int64)
            return z, z, z
        return np.concatenate(self.twins), np.concatenate(self.src), np.concatenate(self.dst)


class Orchestrator:
    """Places twins and migrates them, the same way for a simulated and a live network.

    Parameters:
        placement, migration: policies — names, import paths, classes, instances or plain
            functions (see :func:`twinedge.orchestrator.as_policy`).
        step_s: seconds between two cycles.
        placement_period_s: re-place every twin every this many seconds (``None``: only the
            initial placement).
        rng: the policies' random stream.
        recorder: receives every decision (e.g. the ledger).
        candidates_k: nearest hosts offered per twin by ``view.candidates`` (the tiers
            above the edge are offered as well, see :func:`candidate_hosts`).
        horizon_steps: the number of cycles the driver will run (a simulation's steps), or
            ``None`` for an open-ended driver (the live runtime). A decision takes effect
            from the cycle after it, so cycle ``horizon_steps - 1`` and later decide nothing,
            and a re-placement spreads its moves' downtime over the cycles left, not over a
            period that ends after the horizon.

    Raises:
        PolicyError: a policy cannot be resolved, raises, or returns an invalid decision.

    Examples:
        >>> import numpy as np
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> state = NetworkState.at(world, world.xy_m)
        >>> orch = Orchestrator("greedy", "threshold", step_s=1.0, rng=np.random.default_rng(1))
        >>> result = orch.place(world, state)
        >>> bool((state.host == result.hosts).all())
        True
        >>> outcome = orch.cycle(world, state, 0)
    """

    def __init__(
        self,
        placement: Any,
        migration: Any,
        *,
        step_s: float,
        placement_period_s: float | None = None,
        rng: np.random.Generator,
        recorder: Recorder | None = None,
        candidates_k: int = 8,
        placement_params: dict[str, Any] | None = None,
        migration_params: dict[str, Any] | None = None,
        horizon_steps: int | None = None,
    ):
        if not step_s > 0:
            raise PolicyError(f"step_s must be > 0, got {step_s}")
        self.placement = as_policy(placement, "placement", **(placement_params or {}))
        self.migration = as_policy(migration, "migration", **(migration_params or {}))
        # how reports and the API name the policies: as the user named them
        self.placement_name = (
            placement.strip() if isinstance(placement, str) else policy_name(self.placement)
        )
        self.migration_name = (
            migration.strip() if isinstance(migration, str) else policy_name(self.migration)
        )
        self.step_s = float(step_s)
        self.period_s = placement_period_s
        self.period_steps = (
            None if placement_period_s is None else max(1, round(placement_period_s / step_s))
        )
        if horizon_steps is not None and horizon_steps < 1:
            raise PolicyError(f"horizon_steps must be >= 1, got {horizon_steps}")
        self.horizon_steps = horizon_steps
        self.rng, self.recorder, self.candidates_k = rng, recorder, candidates_k
        self.placements: list[dict[str, Any]] = []
        self._cand_cache: tuple[int, np.ndarray] | None = None

    # --- the view ----------------------------------------------------------------------
    def view(
        self, world: World, state: NetworkState, *, amortise_steps: int | None = None
    ) -> NetworkView:
        """The read-only view of ``state`` every policy receives."""
        key = id(world.ap_host_ms)
        if self._cand_cache is None or self._cand_cache[0] != key:
            self._cand_cache = (key, candidate_hosts(world, self.candidates_k))
        return NetworkView(
            world,
            state,
            self.step_s,
            self.candidates_k,
            amortise_steps=amortise_steps,
            ap_candidates=self._cand_cache[1],
        )

    @staticmethod
    def evaluate(world: World, state: NetworkState) -> None:
        """Set ``state.latency_ms``: every twin on its current host."""
        state.latency_ms = latency_on_hosts(world, state)

    # --- decisions ---------------------------------------------------------------------
    def place(self, world: World, state: NetworkState) -> PlacementResult:
        """Place every twin from scratch (the initial placement) and record it."""
        result = self._solve(world, state, amortise_steps=None)
        state.set_hosts(world, result.hosts)
        if self.recorder:
            self.recorder.placement(state.t_s, world, np.arange(world.n_entities), state.host)
        self.evaluate(world, state)
        return result

    def place_new(
        self, world: World, state_xy_m: np.ndarray, host: np.ndarray, t_s: float = 0.0
    ) -> np.ndarray:
        """Place the twins whose ``host`` is ``-1`` on the room the others leave, without
        moving the others (twins that appear in a live network). Returns the completed
        host array; records the new placements.

        Raises:
            InfeasibleError: the new twins do not fit in the room left.
            PolicyError: the policy's answer is invalid.
        """
        host = np.asarray(host, dtype=np.int64).copy()
        new = np.flatnonzero(host < 0)
        if new.size == 0:
            return host
        placed = np.flatnonzero(host >= 0)
        cpu_left = world.node_cpu_ghz.copy()
        mem_left = world.node_mem_gb.copy()
        m = world.n_hosts
        cpu_left[world.hosts] -= np.bincount(
            host[placed], weights=world.cpu_ghz[placed], minlength=m
        )
        mem_left[world.hosts] -= np.bincount(
            host[placed], weights=world.mem_gb[placed], minlength=m
        )
        sub = world.select(new).evolve(
            node_cpu_ghz=np.maximum(cpu_left, 0.0), node_mem_gb=np.maximum(mem_left, 0.0)
        )
        sub_state = NetworkState.at(sub, np.asarray(state_xy_m)[new])
        sub_state.t_s = t_s
        result = self._solve(sub, sub_state, amortise_steps=None)
        host[new] = result.hosts
        if self.recorder:
            self.recorder.placement(t_s, world, new, host[new])
        return host

    def due(self, k: int) -> bool:
        """Whether cycle ``k`` (0-based) ends a placement period."""
        return self.period_steps is not None and (k + 1) % self.period_steps == 0

    def steps_left(self, k: int) -> int | None:
        """How many cycles after cycle ``k`` a decision taken in it still acts on
        (``None``: no horizon)."""
        return None if self.horizon_steps is None else max(0, self.horizon_steps - 1 - k)

    def cycle(
        self, world: World, state: NetworkState, k: int, *, replace: bool | None = None
    ) -> CycleOutcome:
        """One cycle at the end of step ``k``: re-place if a period ends (or as
        ``replace`` says), then ask the migration policy; validate, apply and record
        every move. With a horizon, the last cycle decides nothing: its decisions would
        take effect after the run."""
        out = CycleOutcome()
        left = self.steps_left(k)
        if left == 0:
            return out
        if self.due(k) if replace is None else replace:
            amortise = self.period_steps if left is None else min(self.period_steps or left, left)
            result = self._solve(world, state, amortise_steps=amortise)
            out.placement = self.placements[-1]
            changed = np.flatnonzero(result.hosts != state.host)
            self.apply(world, state, Moves(changed, result.hosts[changed]), out, check=False)
            out.replaced = out.migrations
            self.evaluate(world, state)
        moves = decide(self.migration, self.view(world, state), self.rng)
        assert isinstance(moves, Moves)
        self.apply(world, state, moves, out)
        return out

    def _solve(
        self, world: World, state: NetworkState, amortise_steps: int | None
    ) -> PlacementResult:
        result = decide(
            self.placement, self.view(world, state, amortise_steps=amortise_steps), self.rng
        )
        assert isinstance(result, PlacementResult)
        check_assignment(world, state, result.hosts, None, policy_name(self.placement))
        self.placements.append(
            {"t_s": state.t_s, **{k: v for k, v in result.to_json().items() if k != "hosts"}}
        )
        return result

    def apply(
        self,
        world: World,
        state: NetworkState,
        moves: Moves,
        out: CycleOutcome | None = None,
        *,
        check: bool = True,
    ) -> CycleOutcome:
        """Validate (``check``) and apply ``moves`` to ``state``: hosts, loads and the
        downtime each moved twin sits out; record them."""
        out = CycleOutcome() if out is None else out
        if len(moves) == 0:
            return out
        twins, hosts = moves.twins, moves.hosts
        if check:
            check_moves(world, state, twins, hosts, policy_name(self.migration))
        down = self.view(world, state).downtime_s(twins, hosts)
        src = state.host[twins].copy()
        nbytes = world.state_bytes[twins]
        new_host = state.host.copy()
        new_host[twins] = hosts
        state.set_hosts(world, new_host)
        state.downtime_left_s[twins] = down
        if self.recorder:
            self.recorder.migration(state.t_s, world, twins, src, hosts, nbytes, down)
        out.migrations += int(twins.size)
        out.downtime_s += float(down.sum())
        out.bytes_moved += float(nbytes.sum())
        out.twins.append(twins)
        out.src.append(src)
        out.dst.append(hosts)
        return out


def latency_on_hosts(world: World, state: NetworkState) -> np.ndarray:
    """Latency of every twin on its current host: :func:`latency_ms` with ``hosts =
    state.host`` to the bit, with the load terms worked out once per host (each twin's
    demand is already in its host's load) and no ``(n,)`` temporaries beyond two."""
    w, s = world, state
    host = s.host
    cap = w.host_cpu_ghz
    # per host: the queueing factor at its load, and the divisor of the service time
    factor = models.queue_factor((s.used_cpu_ghz + 0.0) / cap)
    svc_div = np.maximum(cap, 1e-12)
    back = w.ap_host_ms
    if back.flags.c_contiguous:
        flat = s.ap * back.shape[1]
        flat += host
        out = back.ravel().take(flat)
    else:
        out = back[s.ap, host]
    out = np.add(s.uplink_ms, out, out=out)  # uplink + backbone, as latency_ms adds them
    if w.commits:  # the host's durable commit per report (at its report rate, on a curve)
        out += s.commit_ms(w).take(host)
    svc = 1000.0 * np.asarray(w.work_gcycles, dtype=float)  # models.service_ms, in place
    svc /= svc_div.take(host)
    svc *= factor.take(host)
    out += svc
    return out


def check_moves(
    world: World, state: NetworkState, twins: np.ndarray, hosts: np.ndarray, name: str
) -> None:
    """Raise :class:`PolicyError` unless the moves are valid: indices in range, each twin
    once, allowed hosts, and no host pushed over its CPU or memory capacity."""
    if np.unique(twins).size != twins.size:
        raise PolicyError(f"migration policy {name} moved a twin twice in one step")
    if twins.min() < 0 or twins.max() >= world.n_entities:
        raise PolicyError(f"migration policy {name} returned a twin index out of range")
    new_host = state.host.copy()
    new_host[twins] = hosts
    check_assignment(world, state, new_host, state.host, name, kind="migration", moved=twins)


def check_assignment(
    world: World,
    state: NetworkState,
    new_host: np.ndarray,
    old_host: np.ndarray | None,
    name: str,
    *,
    kind: str = "placement",
    moved: np.ndarray | None = None,
) -> None:
    """Raise :class:`PolicyError` unless ``new_host`` (one host per twin) is in range,
    allowed and within capacity. With ``old_host``, a host already over capacity may stay
    so but may not get worse."""
    n, m = world.n_entities, world.n_hosts
    new_host = np.asarray(new_host)
    if new_host.shape != (n,):
        raise PolicyError(f"{kind} policy {name} returned {new_host.shape} hosts for {n} twins")
    if n == 0:
        return
    if new_host.min() < 0 or new_host.max() >= m:
        raise PolicyError(f"{kind} policy {name} returned a host index out of range [0, {m})")
    idx = np.arange(n) if moved is None else moved
    if not world.group_allowed[world.entity_group[idx], new_host[idx]].all():
        raise PolicyError(f"{kind} policy {name} moved a twin to a host it may not use")
    for res, dem, cap in (
        ("cpu_ghz", world.cpu_ghz, world.host_cpu_ghz),
        ("mem_gb", world.mem_gb, world.host_mem_gb),
    ):
        used = np.bincount(new_host, weights=dem, minlength=m)
        over = used > cap * (1 + 1e-9) + 1e-9
        if old_host is not None:
            old = np.bincount(old_host, weights=dem, minlength=m)
            over &= used > old + 1e-12
        bad = np.flatnonzero(over)
        if bad.size:
            j = int(bad[0])
            raise PolicyError(
                f"{kind} policy {name} overloads host {world.host_ids[j]}: {res} "
                f"{used[j]:.4g} > capacity {cap[j]:.4g}"
            )
