"""User placement policies loaded by import path in the placement tests."""

from __future__ import annotations

import numpy as np

from twinedge.policies.placement import PlacementProblem


def cheapest_fit(problem: PlacementProblem, rng: np.random.Generator) -> np.ndarray:
    """Twin by twin, the cheapest allowed host that still has room (a bare host array)."""
    res_cpu = problem.capacity_cpu_ghz.copy()
    res_mem = problem.capacity_mem_gb.copy()
    hosts = np.zeros(problem.n_twins, dtype=np.int64)
    for i in range(problem.n_twins):
        fits = (problem.demand_cpu_ghz[i] <= res_cpu) & (problem.demand_mem_gb[i] <= res_mem)
        j = int(np.argmin(np.where(fits, problem.latency_ms[i], np.inf)))
        hosts[i] = j
        res_cpu[j] -= problem.demand_cpu_ghz[i]
        res_mem[j] -= problem.demand_mem_gb[i]
    return hosts


def everything_on_host_zero(problem: PlacementProblem, rng: np.random.Generator) -> np.ndarray:
    """Ignores capacity: every twin on host 0."""
    return np.zeros(problem.n_twins, dtype=np.int64)


class Fixed:
    """A class policy with a parameter: every twin on ``host``."""

    def __init__(self, host: int = 0) -> None:
        self.host = host

    def __call__(self, problem: PlacementProblem, rng: np.random.Generator) -> list[int]:
        return [self.host] * problem.n_twins
