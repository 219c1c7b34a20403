"""Nearest-host placement: every twin on the lowest-latency host that still has room.

The baseline every edge-placement paper compares against (e.g. the "nearest edge
server" policy of EdgeSimPy and of Wang et al., "Dynamic service migration in mobile
edge computing based on Markov decision process", IEEE/ACM ToN 2019). Twins are taken
in a fixed order — increasing latency to their best allowed host, ties by index — so
the twins that are closest to a host claim it first. A twin whose nearest host is full
falls back to its next-nearest host with room.

It works on the problem's candidate lists (:meth:`PlacementProblem.lists`: a sparse
problem's own candidates, a dense problem's 8 nearest hosts), in the vectorised rounds
of :func:`~twinedge.policies.placement.assign.assign_rounds`; only a twin with no
candidate left with room is priced over every host (:meth:`PlacementProblem.rows`), so
it still finds any allowed host with room.
"""

from __future__ import annotations

import numpy as np

from twinedge.errors import InfeasibleError
from twinedge.policies.base import PlacementPolicy
from twinedge.policies.placement.assign import assign_rounds, fitting_lists
from twinedge.policies.placement.base import PlacementProblem, PlacementResult, check_totals

_LIST_K = 8


class NearestPlacement(PlacementPolicy):
    """Each twin on its nearest allowed host with room, closest twins first.

    No parameters. Fast (a few vectorised passes over the candidate lists) and
    deterministic, but blind to contention: it fails on instances where the hosts near a
    hot spot are oversubscribed even though a placement exists.

    Reference: the nearest-edge baseline, e.g. Wang et al., IEEE/ACM ToN 27(3), 2019.
    """

    name = "nearest"

    def __repr__(self) -> str:
        return "NearestPlacement()"

    def __call__(self, problem: PlacementProblem, rng: np.random.Generator) -> PlacementResult:
        check_totals(problem)
        n = problem.n_twins
        cpu, mem = problem.demand_cpu_ghz, problem.demand_mem_gb
        res_cpu = problem.capacity_cpu_ghz.copy()
        res_mem = problem.capacity_mem_gb.copy()
        cand, lat = problem.lists(_LIST_K)
        key = lat.min(axis=1) if lat.shape[1] else np.full(n, np.inf)
        wide = None
        if cand.shape[1] < problem.n_hosts:
            wide = fitting_lists(problem)
            no_cand = np.flatnonzero(~np.isfinite(key))
            if no_cand.size:  # no allowed candidate: its place in the order is its best host
                key = key.copy()
                key[no_cand] = problem.rows(no_cand).min(axis=1)
        hosts = assign_rounds(cand, lat, cpu, mem, res_cpu, res_mem, key=key, widen=wide)
        left = np.flatnonzero(hosts < 0)
        if left.size:
            i = int(left[np.lexsort((left, key[left]))][0])
            placed = int((hosts >= 0).sum())
            raise InfeasibleError(
                f"nearest: twin {i} (needs {cpu[i]:.6g} cpu_ghz, {mem[i]:.6g} mem_gb) "
                f"fits on none of its allowed hosts after {placed} twins were placed "
                f"nearest-first (most free: {res_cpu.max():.6g} cpu_ghz, "
                f"{res_mem.max():.6g} mem_gb). The instance may still be feasible: "
                "try the 'greedy' or 'optimal' policy."
            )
        return PlacementResult(
            status="feasible",
            hosts=hosts,
            objective_ms=problem.objective_ms(hosts),
            info={"fallbacks": int((problem.latency_of(np.arange(n), hosts) > key).sum())},
        )
