"""The placement contract: a :class:`PlacementProblem` in, one host index per twin out.

The problem is the seed-000 twin placement problem: choose a_ij in {0, 1} to minimise
sum_ij a_ij * T_ij subject to sum_j a_ij = 1 for every twin i (only allowed pairs) and,
for every host j, sum_i a_ij * cpu_i <= CPU_j and sum_i a_ij * mem_i <= MEM_j.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from twinedge.errors import InfeasibleError, ScenarioError

Status = Literal["optimal", "feasible", "infeasible"]


@dataclass(frozen=True)
class PlacementProblem:
    """One placement instance.

    Attributes:
        latency_ms: ``(n_twins, n_hosts)`` latency of serving twin i from host j, in ms;
            ``inf`` (or NaN on input) marks a pair that is not allowed.
        demand_cpu_ghz, demand_mem_gb: ``(n_twins,)`` resource demand of each twin.
        capacity_cpu_ghz, capacity_mem_gb: ``(n_hosts,)`` capacity of each host.
        service_ms: optional ``(n_twins, n_hosts)`` part of ``latency_ms`` that is
            processing time on an idle host, the part that grows with the host's load
            (the network view fills it; :meth:`with_utilisation_cap` uses it).
    """

    latency_ms: np.ndarray
    demand_cpu_ghz: np.ndarray
    demand_mem_gb: np.ndarray
    capacity_cpu_ghz: np.ndarray
    capacity_mem_gb: np.ndarray
    service_ms: np.ndarray | None = None

    def __post_init__(self) -> None:
        lat = np.asarray(self.latency_ms, dtype=float)
        if lat.ndim != 2:
            raise ScenarioError(
                [f"latency_ms: expected a 2-D twins x hosts matrix, got shape {lat.shape}"]
            )
        lat = np.where(np.isnan(lat), np.inf, lat)
        n, m = lat.shape
        problems = []
        arrays = {}
        for name, size in (
            ("demand_cpu_ghz", n),
            ("demand_mem_gb", n),
            ("capacity_cpu_ghz", m),
            ("capacity_mem_gb", m),
        ):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.shape != (size,):
                problems.append(f"{name}: expected {size} values, got shape {a.shape}")
            elif not np.all(np.isfinite(a)) or np.any(a < 0):
                problems.append(f"{name}: every value must be finite and >= 0")
            arrays[name] = a
        if np.any(lat < 0):
            problems.append("latency_ms: latencies must be >= 0")
        if self.service_ms is not None:
            svc = np.asarray(self.service_ms, dtype=float)
            if svc.shape != lat.shape:
                problems.append(f"service_ms: expected shape {lat.shape}, got {svc.shape}")
            elif np.any(svc[np.isfinite(svc)] < 0):
                problems.append("service_ms: service times must be >= 0")
            else:
                object.__setattr__(self, "service_ms", svc)
        if problems:
            raise ScenarioError(problems)
        object.__setattr__(self, "latency_ms", lat)
        for name, a in arrays.items():
            object.__setattr__(self, name, a)

    @property
    def n_twins(self) -> int:
        return self.latency_ms.shape[0]

    @property
    def n_hosts(self) -> int:
        return self.latency_ms.shape[1]

    @property
    def allowed(self) -> np.ndarray:
        """Boolean ``(n_twins, n_hosts)`` mask of allowed pairs."""
        return np.isfinite(self.latency_ms)

    def with_utilisation_cap(self, cap: float) -> PlacementProblem:
        """The load-aware problem: every host's CPU filled to at most ``cap`` of its
        capacity, and every twin's service time charged at the M/M/1 queueing factor
        ``1 / (1 - cap)`` that load can reach, ``T'_ij = T_ij + service_ij * cap / (1 -
        cap)``. Its objective bounds from above the latency the twins see right after
        the placement (their host's utilisation is at most ``cap``); a solver's bound
        and gap certify this problem. Without ``service_ms`` only the cap applies.

        Raises:
            ValueError: ``cap`` outside (0, 1].

        Examples:
            >>> p = PlacementProblem([[1.0, 3.0]], [2.0], [1.0], [4.0, 4.0], [8.0, 8.0],
            ...                      service_ms=[[0.5, 0.5]])
            >>> q = p.with_utilisation_cap(0.5)
            >>> q.latency_ms.tolist(), q.capacity_cpu_ghz.tolist()
            ([[1.5, 3.5]], [2.0, 2.0])
        """
        if not 0.0 < cap <= 1.0:
            raise ValueError(f"utilisation_cap must lie in (0, 1], got {cap}")
        lat = self.latency_ms
        if self.service_ms is not None and cap < 1.0:
            lat = lat + self.service_ms * (cap / (1.0 - cap))
        return PlacementProblem(
            lat,
            self.demand_cpu_ghz,
            self.demand_mem_gb,
            self.capacity_cpu_ghz * cap,
            self.capacity_mem_gb,
            None if self.service_ms is None else self.service_ms,
        )

    def objective_ms(self, hosts: np.ndarray) -> float:
        """Sum of the latency of the chosen pairs."""
        hosts = np.asarray(hosts, dtype=np.int64)
        return float(self.latency_ms[np.arange(self.n_twins), hosts].sum())

    def check(self, hosts: np.ndarray, *, tol: float = 1e-9) -> None:
        """Raise :class:`InfeasibleError` unless ``hosts`` is a valid, capacity-respecting answer."""
        hosts = np.asarray(hosts)
        if hosts.shape != (self.n_twins,) or not np.issubdtype(hosts.dtype, np.integer):
            raise InfeasibleError(
                f"a placement must be {self.n_twins} integer host indices, got {hosts.dtype} {hosts.shape}"
            )
        if np.any(hosts < 0) or np.any(hosts >= self.n_hosts):
            raise InfeasibleError(f"host indices must lie in [0, {self.n_hosts})")
        if not np.all(self.allowed[np.arange(self.n_twins), hosts]):
            bad = int(np.flatnonzero(~self.allowed[np.arange(self.n_twins), hosts])[0])
            raise InfeasibleError(
                f"twin {bad} placed on host {int(hosts[bad])}, which is not allowed for it"
            )
        for res, dem, cap in (
            ("cpu_ghz", self.demand_cpu_ghz, self.capacity_cpu_ghz),
            ("mem_gb", self.demand_mem_gb, self.capacity_mem_gb),
        ):
            used = np.bincount(hosts, weights=dem, minlength=self.n_hosts)
            over = np.flatnonzero(used > cap * (1 + tol) + tol)
            if over.size:
                j = int(over[0])
                raise InfeasibleError(f"host {j} {res} over capacity: {used[j]:.6g} > {cap[j]:.6g}")


@dataclass
class PlacementResult:
    """The answer of a placement policy, with the quality certificate when it has one."""

    status: Status
    hosts: np.ndarray
    objective_ms: float
    lower_bound_ms: float = float("nan")
    gap: float = float("nan")
    solve_s: float = 0.0
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {
            "status": self.status,
            "hosts": [int(h) for h in self.hosts],
            "objective_ms": num(self.objective_ms),
            "lower_bound_ms": num(self.lower_bound_ms),
            "gap": num(self.gap),
            "solve_s": float(self.solve_s),
        }


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / max(|objective|, tiny); 0 when both are 0."""
    if not (np.isfinite(objective) and np.isfinite(bound)):
        return float("inf")
    denom = max(abs(objective), 1e-12)
    return max(0.0, (objective - bound) / denom)


def check_totals(problem: PlacementProblem) -> None:
    """Raise :class:`InfeasibleError` for the obvious infeasibilities (totals, no allowed host)."""
    no_host = np.flatnonzero(~problem.allowed.any(axis=1))
    if no_host.size:
        raise InfeasibleError(
            f"twin {int(no_host[0])} has no allowed host ({no_host.size} twins in all)"
        )
    for res, dem, cap in (
        ("cpu_ghz", problem.demand_cpu_ghz, problem.capacity_cpu_ghz),
        ("mem_gb", problem.demand_mem_gb, problem.capacity_mem_gb),
    ):
        if dem.sum() > cap.sum() + 1e-9:
            raise InfeasibleError(
                f"total {res} demand {dem.sum():.6g} exceeds total capacity {cap.sum():.6g}"
            )
        big = np.flatnonzero(
            dem > cap.max(initial=0.0) + 1e-9
        )  # the tolerance of PlacementProblem.check
        if big.size:
            i = int(big[0])
            raise InfeasibleError(
                f"twin {i} needs {dem[i]:.6g} {res}, more than the largest host offers ({cap.max():.6g})"
            )


def random_instance(
    n_twins: int,
    n_hosts: int,
    rng: np.random.Generator,
    *,
    capacity_ratio: float = 1.3,
    side_m: float = 4000.0,
    clustered_fraction: float = 0.7,
    n_clusters: int = 6,
    cluster_sigma_m: float = 300.0,
    base_ms: float = 1.0,
    ms_per_km: float = 2.0,
    noise_ms: float = 0.2,
    max_latency_ms: float | None = None,
    min_hosts: int = 3,
) -> PlacementProblem:
    """A random city-like instance, hard enough to make ``nearest`` fail.

    Hosts lie uniformly in a ``side_m`` square; ``clustered_fraction`` of the twins
    sit in ``n_clusters`` Gaussian hot spots (``cluster_sigma_m``), the rest uniformly,
    so the hosts near a hot spot are oversubscribed. Latency is
    ``base_ms + ms_per_km * distance_km + U(0, noise_ms)``. Demands are heterogeneous
    (cpu U(0.2, 2) GHz, mem U(0.25, 4) GB); host sizes are heterogeneous (1x, 2x or
    4x, with +-20 % per resource) and scaled so that each resource's total capacity
    is ``capacity_ratio`` times its total demand. With ``max_latency_ms`` (a latency
    requirement shared by all twins) the pairs above it are not allowed, except that
    every twin keeps its ``min_hosts`` nearest hosts; such instances may be infeasible.
    """
    if n_twins < 1 or n_hosts < 1:
        raise ValueError("random_instance needs at least one twin and one host")
    host_xy = rng.uniform(0.0, side_m, size=(n_hosts, 2))
    n_clustered = round(clustered_fraction * n_twins)
    centres = rng.uniform(0.1 * side_m, 0.9 * side_m, size=(max(n_clusters, 1), 2))
    which = rng.integers(0, centres.shape[0], size=n_clustered)
    clustered = centres[which] + rng.normal(0.0, cluster_sigma_m, size=(n_clustered, 2))
    uniform = rng.uniform(0.0, side_m, size=(n_twins - n_clustered, 2))
    twin_xy = np.clip(np.vstack([clustered, uniform]), 0.0, side_m)
    twin_xy = twin_xy[rng.permutation(n_twins)]
    dist_km = np.sqrt(((twin_xy[:, None, :] - host_xy[None, :, :]) ** 2).sum(axis=2)) / 1000.0
    latency = base_ms + ms_per_km * dist_km + rng.uniform(0.0, noise_ms, size=dist_km.shape)
    if max_latency_ms is not None:
        keep = np.zeros(latency.shape, dtype=bool)
        near = np.argsort(latency, axis=1)[:, : max(1, min(min_hosts, n_hosts))]
        np.put_along_axis(keep, near, True, axis=1)
        latency = np.where(keep | (latency <= max_latency_ms), latency, np.inf)
    cpu = rng.uniform(0.2, 2.0, size=n_twins)
    mem = rng.uniform(0.25, 4.0, size=n_twins)
    size = rng.choice([1.0, 2.0, 4.0], size=n_hosts, p=[0.5, 0.35, 0.15])
    cap_cpu = size * rng.uniform(0.8, 1.2, size=n_hosts)
    cap_mem = size * rng.uniform(0.8, 1.2, size=n_hosts)
    cap_cpu *= capacity_ratio * cpu.sum() / cap_cpu.sum()
    cap_mem *= capacity_ratio * mem.sum() / cap_mem.sum()
    return PlacementProblem(latency, cpu, mem, cap_cpu, cap_mem)


def candidate_hosts(
    latency_ms: np.ndarray, k: int, *, chunk_elems: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` lowest-latency hosts of every twin, nearest first.

    Returns ``(hosts, latency)``, both ``(n_twins, k)``; a twin with fewer than ``k``
    allowed hosts gets its disallowed hosts at the end with latency ``inf``. Works in
    row chunks of about ``chunk_elems`` matrix entries so large instances stay in memory.
    """
    n, m = latency_ms.shape
    k = int(min(max(k, 1), m))
    hosts = np.empty((n, k), dtype=np.int64)
    lats = np.empty((n, k), dtype=float)
    step = max(1, chunk_elems // max(m, 1))
    for a in range(0, n, step):
        block = latency_ms[a : a + step]
        if k < m:
            part = np.argpartition(block, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(m), block.shape).copy()
        part_lat = np.take_along_axis(block, part, axis=1)
        order = np.argsort(part_lat, axis=1, kind="stable")
        hosts[a : a + step] = np.take_along_axis(part, order, axis=1)
        lats[a : a + step] = np.take_along_axis(part_lat, order, axis=1)
    return hosts, lats


def residual_capacity(
    problem: PlacementProblem, hosts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(cpu_ghz, mem_gb)`` left on every host once ``hosts`` (``-1`` = unplaced) is applied."""
    hosts = np.asarray(hosts, dtype=np.int64)
    placed = hosts >= 0
    m = problem.n_hosts
    used_cpu = np.bincount(hosts[placed], weights=problem.demand_cpu_ghz[placed], minlength=m)
    used_mem = np.bincount(hosts[placed], weights=problem.demand_mem_gb[placed], minlength=m)
    return problem.capacity_cpu_ghz - used_cpu, problem.capacity_mem_gb - used_mem
