"""The network's own twin: run the live state ahead in the simulator.

:func:`forecast` copies a live :class:`NetworkState` into a simulation whose entities
keep their reported velocities (dead reckoning, reflected at the area's edges), runs the
same policies on it for ``horizon_s`` seconds, and reports what would happen: latency,
deadline misses and migrations per step, and every host's peak utilisation, so that a
demand spike shows up before it happens (seed 001: online simulation of the network).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinedge.orchestrator.core import Orchestrator
from twinedge.orchestrator.view import NetworkState
from twinedge.world.state import World

SPIKE_UTILISATION = 0.8


def dead_reckon(world: World, state: NetworkState, step_s: float, velocity_mps: np.ndarray) -> None:
    """Move every entity one step at ``velocity_mps`` (reflected at the area's edges, the
    velocity flipped where it reflects) and re-attach it."""
    lo, hi = world.bounds_m[:2], world.bounds_m[2:]
    state.prev_xy_m = state.xy_m.copy()
    xy = state.xy_m + velocity_mps * step_s
    below, above = xy < lo, xy > hi
    xy = np.where(below, 2 * lo - xy, np.where(above, 2 * hi - xy, xy))
    velocity_mps[below | above] *= -1
    state.xy_m = np.clip(xy, lo, hi)
    if len(state.xy_m):
        state.ap, state.dist_m = world.attach(state.xy_m)
        state.uplink_ms = world.uplink_ms(state.dist_m)


def forecast(
    world: World,
    state: NetworkState,
    orchestrator: Orchestrator,
    *,
    horizon_s: float,
    seed: int = 0,
) -> dict[str, Any]:
    """What the next ``horizon_s`` seconds look like if every entity keeps its velocity
    and the orchestrator's policies keep deciding.

    Parameters:
        world, state: the live network and its state now (neither is changed).
        orchestrator: its policies, cycle and placement period are used (its state and
            recorder are not: the forecast decides on a copy and records nothing).
        horizon_s: how far ahead; rounded up to whole cycles.
        seed: the policies' random stream in the forecast.

    Returns:
        ``{"t_s", "horizon_s", "step_s", "twins", "steps": [...], "hosts": [...],
        "spikes": [...]}``: per step the mean and 95th-percentile latency, the deadline
        miss ratio, the migrations and the most utilised host; per host its peak CPU
        utilisation and when; ``spikes`` the hosts whose utilisation is forecast to
        reach 80 %.

    Examples:
        >>> import numpy as np
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> w = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> s = NetworkState.at(w, w.xy_m)
        >>> o = Orchestrator("greedy", "threshold", step_s=1.0, rng=np.random.default_rng(0))
        >>> _ = o.place(w, s)
        >>> f = forecast(w, s, o, horizon_s=3)
        >>> len(f["steps"]), f["twins"]
        (3, 200)
    """
    step_s = orchestrator.step_s
    steps = max(1, int(np.ceil(horizon_s / step_s - 1e-9)))
    sim = Orchestrator(
        orchestrator.placement,
        orchestrator.migration,
        step_s=step_s,
        placement_period_s=orchestrator.period_s,
        rng=np.random.default_rng(seed),
        candidates_k=orchestrator.candidates_k,
    )
    s = state.copy()
    velocity = (s.xy_m - s.prev_xy_m) / step_s
    cap = world.host_cpu_ghz
    peak = s.used_cpu_ghz / cap
    peak_t = np.full(world.n_hosts, s.t_s)
    t0 = s.t_s
    rows = []
    for k in range(steps):
        dead_reckon(world, s, step_s, velocity)
        s.t_s = t0 + (k + 1) * step_s
        sim.evaluate(world, s)
        effective = s.latency_ms + 1000.0 * s.downtime_left_s
        util = s.used_cpu_ghz / cap
        higher = util > peak
        peak = np.where(higher, util, peak)
        peak_t = np.where(higher, s.t_s, peak_t)
        np.maximum(s.downtime_left_s - step_s, 0.0, out=s.downtime_left_s)
        out = sim.cycle(world, s, k)
        j = int(np.argmax(util)) if util.size else 0
        rows.append(
            {
                "t_s": round(s.t_s, 6),
                "mean_latency_ms": float(effective.mean()) if effective.size else 0.0,
                "p95_latency_ms": float(np.percentile(effective, 95)) if effective.size else 0.0,
                "deadline_miss_ratio": float((effective > world.latency_req_ms).mean())
                if effective.size
                else 0.0,
                "migrations": out.migrations,
                "max_host": world.host_ids[j] if util.size else None,
                "max_host_utilisation": float(util[j]) if util.size else 0.0,
            }
        )
    hosts: list[dict[str, Any]] = [
        {"id": h, "peak_utilisation": float(peak[j]), "at_t_s": float(peak_t[j])}
        for j, h in enumerate(world.host_ids)
    ]
    return {
        "t_s": t0,
        "horizon_s": steps * step_s,
        "step_s": step_s,
        "twins": world.n_entities,
        "model": "dead reckoning at the reported velocities; the live policies decide",
        "steps": rows,
        "hosts": hosts,
        "spikes": [h for h in hosts if h["peak_utilisation"] >= SPIKE_UTILISATION],
    }
