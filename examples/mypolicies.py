"""Example user policies (the ones in docs/policies.md); load them by import path.

From this folder (the current folder is searched first, as ``python -m`` does)::

    cd examples
    twinedge compare city-small --placement greedy,mypolicies:cheapest_with_room

From anywhere else, put the folder on the path:
``PYTHONPATH=examples twinedge compare city-small --placement greedy,mypolicies:cheapest_with_room``.
"""

import numpy as np

from twinedge.policies.migration import assign_under_capacity


def cheapest_with_room(problem, rng):
    """Each twin, in random order, on the lowest-latency host that still has room."""
    free_cpu = problem.capacity_cpu_ghz.copy()
    free_mem = problem.capacity_mem_gb.copy()
    hosts = np.empty(problem.n_twins, dtype=np.int64)
    for i in rng.permutation(problem.n_twins):
        fits = (free_cpu >= problem.demand_cpu_ghz[i]) & (free_mem >= problem.demand_mem_gb[i])
        j = int(np.argmin(np.where(fits, problem.latency_ms[i], np.inf)))
        hosts[i] = j
        free_cpu[j] -= problem.demand_cpu_ghz[i]
        free_mem[j] -= problem.demand_mem_gb[i]
    return hosts


def follow_when_late(ctx, rng):
    """Move twins that miss their deadline to the lowest-latency candidate with room."""
    late = np.flatnonzero(ctx.state.latency_ms > ctx.world.latency_req_ms)
    cand, lat = ctx.candidates(late)
    twins, hosts = assign_under_capacity(ctx, late, cand, lat, ctx.state.latency_ms[late])
    keep = hosts != ctx.state.host[twins]
    return twins[keep], hosts[keep]


class FollowWithMargin:
    """Move twins within ``margin_ms`` of their deadline (or past it) to the lowest-latency
    candidate with room: before they miss it, not after."""

    kind = "migration"

    def __init__(self, margin_ms: float = 0.0):
        if margin_ms < 0:
            raise ValueError(f"margin_ms must be >= 0, got {margin_ms}")
        self.margin_ms = margin_ms

    def __call__(self, ctx, rng):
        near = np.flatnonzero(ctx.state.latency_ms > ctx.world.latency_req_ms - self.margin_ms)
        cand, lat = ctx.candidates(near)
        twins, hosts = assign_under_capacity(ctx, near, cand, lat, ctx.state.latency_ms[near])
        keep = hosts != ctx.state.host[twins]
        return twins[keep], hosts[keep]
