"""Nearest-host placement: every twin on the lowest-latency host that still has room.

The baseline every edge-placement paper compares against (e.g. the "nearest edge
server" policy of EdgeSimPy and of Wang et al., "Dynamic service migration in mobile
edge computing based on Markov decision process", IEEE/ACM ToN 2019). Twins are taken
in a fixed order — increasing latency to their best allowed host, ties by index — so
the twins that are closest to a host claim it first. A twin whose nearest host is full
falls back to its next-nearest host with room.
"""

from __future__ import annotations

import numpy as np

from twinedge.errors import InfeasibleError
from twinedge.policies.base import PlacementPolicy
from twinedge.policies.placement.base import PlacementProblem, PlacementResult, check_totals

_EPS = 1e-9


class NearestPlacement(PlacementPolicy):
    """Each twin on its nearest allowed host with room, closest twins first.

    No parameters. Fast (one masked ``argmin`` per twin whose nearest host is full)
    and deterministic, but blind to contention: it fails on instances where the
    hosts near a hot spot are oversubscribed even though a placement exists.

    Reference: the nearest-edge baseline, e.g. Wang et al., IEEE/ACM ToN 27(3), 2019.
    """

    name = "nearest"

    def __repr__(self) -> str:
        return "NearestPlacement()"

    def __call__(self, problem: PlacementProblem, rng: np.random.Generator) -> PlacementResult:
        check_totals(problem)
        lat = problem.latency_ms
        n = problem.n_twins
        first = np.argmin(lat, axis=1)
        first_lat = lat[np.arange(n), first]
        order = np.lexsort((np.arange(n), first_lat))
        cpu, mem = problem.demand_cpu_ghz, problem.demand_mem_gb
        res_cpu = problem.capacity_cpu_ghz.copy()
        res_mem = problem.capacity_mem_gb.copy()
        hosts = np.full(n, -1, dtype=np.int64)
        fallbacks = 0
        for i in order.tolist():
            j = int(first[i])
            if not (cpu[i] <= res_cpu[j] + _EPS and mem[i] <= res_mem[j] + _EPS):
                fits = (cpu[i] <= res_cpu + _EPS) & (mem[i] <= res_mem + _EPS)
                masked = np.where(fits, lat[i], np.inf)
                j = int(np.argmin(masked))
                if not np.isfinite(masked[j]):
                    placed = int((hosts >= 0).sum())
                    raise InfeasibleError(
                        f"nearest: twin {i} (needs {cpu[i]:.6g} cpu_ghz, {mem[i]:.6g} mem_gb) "
                        f"fits on none of its allowed hosts after {placed} twins were placed "
                        f"nearest-first (most free: {res_cpu.max():.6g} cpu_ghz, "
                        f"{res_mem.max():.6g} mem_gb). The instance may still be feasible: "
                        "try the 'greedy' or 'optimal' policy."
                    )
                fallbacks += 1
            hosts[i] = j
            res_cpu[j] -= cpu[i]
            res_mem[j] -= mem[i]
        return PlacementResult(
            status="feasible",
            hosts=hosts,
            objective_ms=problem.objective_ms(hosts),
            info={"fallbacks": fallbacks},
        )
