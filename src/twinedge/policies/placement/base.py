"""The placement contract: a :class:`PlacementProblem` in, one host index per twin out.

The problem is the seed-000 twin placement problem: choose a_ij in {0, 1} to minimise
sum_ij a_ij * T_ij subject to sum_j a_ij = 1 for every twin i (only allowed pairs) and,
for every host j, sum_i a_ij * cpu_i <= CPU_j and sum_i a_ij * mem_i <= MEM_j.

A problem comes in one of two forms. The *dense* form gives ``T`` as a twins x hosts
matrix (an instance file, :func:`random_instance`). The *sparse* form gives a short list
of candidate hosts per twin with their latency (``candidates``,
``candidate_latency_ms``, ``(twins, c)``) and, optionally, a function that prices any
other pair on demand: the network view builds this form, so a million twins on 675
hosts cost a few candidate columns, not a 675-column matrix. Both forms answer every
question (``latency_ms``, ``allowed``, ``objective_ms``, ``check``); the dense matrix of
a sparse problem is computed on first access, in ``O(twins x hosts)`` memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from twinedge.errors import InfeasibleError, ScenarioError

Status = Literal["optimal", "feasible", "infeasible"]

PairCosts = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]
"""``pair_costs(twins, hosts) -> (latency_ms, service_ms | None)``: the latency of every
pair of the broadcast index arrays ``twins`` and ``hosts`` (``inf`` where not allowed)
and the idle service time part of it (or ``None``)."""

_CHUNK_ELEMS = 4_000_000


class PlacementProblem:
    """One placement instance, dense or sparse (see the module docstring).

    Parameters:
        latency_ms: ``(n_twins, n_hosts)`` latency of serving twin i from host j, in ms;
            ``inf`` (or NaN on input) marks a pair that is not allowed. ``None`` for a
            sparse problem (then computed on first access: ``O(twins x hosts)`` memory).
        demand_cpu_ghz, demand_mem_gb: ``(n_twins,)`` resource demand of each twin.
        capacity_cpu_ghz, capacity_mem_gb: ``(n_hosts,)`` capacity of each host.
        service_ms: optional ``(n_twins, n_hosts)`` part of ``latency_ms`` that is
            processing time on an idle host, the part that grows with the host's load
            (:meth:`with_utilisation_cap` uses it). Dense form only.
        candidates: sparse form: ``(n_twins, c)`` host indices, the hosts each twin is
            offered first (distinct within a row).
        candidate_latency_ms: ``(n_twins, c)`` their latency (``inf``: not allowed).
        candidate_service_ms: optional ``(n_twins, c)`` their idle service time.
        pair_costs: optional :data:`PairCosts` pricing any pair, candidate or not; it
            must agree with the candidate columns. Without it a pair outside the
            candidates is not allowed.

    Raises:
        ScenarioError: shapes that disagree, negative or non-finite demands or
            capacities, negative latencies, host indices out of range, a host listed
            twice in one candidate row.

    Examples:
        >>> p = PlacementProblem(None, [1.0, 1.0], [1.0, 1.0], [2.0, 2.0, 2.0], [4.0] * 3,
        ...                      candidates=[[0, 2], [1, 2]],
        ...                      candidate_latency_ms=[[1.0, 5.0], [2.0, 6.0]])
        >>> p.n_twins, p.n_hosts, p.sparse
        (2, 3, True)
        >>> p.latency_ms.tolist()
        [[1.0, inf, 5.0], [inf, 2.0, 6.0]]
        >>> p.objective_ms([0, 1])
        3.0
    """

    sparse: bool
    """Whether the problem was given by candidate lists (its dense matrix is lazy)."""

    demand_cpu_ghz: np.ndarray
    demand_mem_gb: np.ndarray
    capacity_cpu_ghz: np.ndarray
    capacity_mem_gb: np.ndarray
    _n: int
    _m: int
    _lat: Any  # np.ndarray | None: the dense matrix, given or computed
    _svc: Any
    _cand: Any  # np.ndarray | None: the candidate lists, given or (dense) all hosts
    _clat: Any
    _csvc: Any
    _pair: PairCosts | None

    def __init__(
        self,
        latency_ms: Any,
        demand_cpu_ghz: Any,
        demand_mem_gb: Any,
        capacity_cpu_ghz: Any,
        capacity_mem_gb: Any,
        service_ms: Any = None,
        *,
        candidates: Any = None,
        candidate_latency_ms: Any = None,
        candidate_service_ms: Any = None,
        pair_costs: PairCosts | None = None,
    ) -> None:
        problems: list[str] = []
        sparse = latency_ms is None
        set_ = object.__setattr__
        if sparse:
            if candidates is None or candidate_latency_ms is None:
                raise ScenarioError(
                    [
                        "latency_ms: got nothing; expected a twins x hosts matrix, or "
                        "candidates and candidate_latency_ms"
                    ]
                )
            cand = np.asarray(candidates)
            clat = np.asarray(candidate_latency_ms, dtype=float)
            if cand.ndim != 2 or not (np.issubdtype(cand.dtype, np.integer) or cand.size == 0):
                raise ScenarioError(
                    [
                        f"candidates: expected a 2-D twins x c integer array, got {cand.dtype} "
                        f"{cand.shape}"
                    ]
                )
            if clat.shape != cand.shape:
                raise ScenarioError(
                    [f"candidate_latency_ms: expected shape {cand.shape}, got {clat.shape}"]
                )
            n = cand.shape[0]
            m = int(np.asarray(capacity_cpu_ghz).shape[0]) if np.ndim(capacity_cpu_ghz) else -1
            cand = cand.astype(np.int64, copy=False)
            if np.isnan(clat).any():
                clat = np.where(np.isnan(clat), np.inf, clat)
            if cand.size and m >= 0 and (cand.min() < 0 or cand.max() >= m):
                problems.append(f"candidates: host indices must lie in [0, {m})")
            elif cand.size and cand.shape[1] > 1:
                srt = np.sort(cand, axis=1)
                dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
                if dup.size:
                    problems.append(
                        f"candidates: row {int(dup[0])} lists a host twice ({dup.size} rows)"
                    )
            if np.any(clat < 0):
                problems.append("candidate_latency_ms: latencies must be >= 0")
            csvc = None
            if candidate_service_ms is not None:
                csvc = np.asarray(candidate_service_ms, dtype=float)
                if csvc.shape != cand.shape:
                    problems.append(
                        f"candidate_service_ms: expected shape {cand.shape}, got {csvc.shape}"
                    )
                elif np.any(csvc[np.isfinite(csvc)] < 0):
                    problems.append("candidate_service_ms: service times must be >= 0")
            if service_ms is not None:
                problems.append("service_ms: a sparse problem takes candidate_service_ms")
            lat = None
            svc = None
        else:
            lat = np.asarray(latency_ms, dtype=float)
            if lat.ndim != 2:
                raise ScenarioError(
                    [f"latency_ms: expected a 2-D twins x hosts matrix, got shape {lat.shape}"]
                )
            lat = np.where(np.isnan(lat), np.inf, lat)
            n, m = lat.shape
            if np.any(lat < 0):
                problems.append("latency_ms: latencies must be >= 0")
            svc = None
            if service_ms is not None:
                svc = np.asarray(service_ms, dtype=float)
                if svc.shape != lat.shape:
                    problems.append(f"service_ms: expected shape {lat.shape}, got {svc.shape}")
                elif np.any(svc[np.isfinite(svc)] < 0):
                    problems.append("service_ms: service times must be >= 0")
            if candidates is not None or candidate_latency_ms is not None:
                problems.append("candidates: give either latency_ms or candidates, not both")
            cand, clat, csvc = None, None, None
        arrays = {}
        for name, value, size in (
            ("demand_cpu_ghz", demand_cpu_ghz, n),
            ("demand_mem_gb", demand_mem_gb, n),
            ("capacity_cpu_ghz", capacity_cpu_ghz, m),
            ("capacity_mem_gb", capacity_mem_gb, m),
        ):
            a = np.asarray(value, dtype=float)
            if a.shape != (size,):
                problems.append(f"{name}: expected {size} values, got shape {a.shape}")
            elif not np.all(np.isfinite(a)) or np.any(a < 0):
                problems.append(f"{name}: every value must be finite and >= 0")
            arrays[name] = a
        if problems:
            raise ScenarioError(problems)
        for name, a in arrays.items():
            set_(self, name, a)
        set_(self, "sparse", sparse)
        set_(self, "_n", int(n))
        set_(self, "_m", int(m))
        set_(self, "_lat", lat)
        set_(self, "_svc", svc)
        set_(self, "_cand", cand)
        set_(self, "_clat", clat)
        set_(self, "_csvc", csvc)
        set_(self, "_pair", pair_costs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __repr__(self) -> str:
        form = f"sparse, {self._cand.shape[1]} candidates per twin" if self.sparse else "dense"
        return f"PlacementProblem({self.n_twins} twins x {self.n_hosts} hosts, {form})"

    # --- sizes and the two forms ------------------------------------------------------
    @property
    def n_twins(self) -> int:
        return self._n

    @property
    def n_hosts(self) -> int:
        return self._m

    @property
    def latency_ms(self) -> np.ndarray:
        """``(n_twins, n_hosts)`` latency of every pair (``inf``: not allowed). For a
        sparse problem it is computed on first access and kept: ``O(twins x hosts)``
        memory (8 bytes a pair; 5.4 GB at 1,000,000 x 675). Prefer :attr:`candidates`,
        :meth:`rows` and :meth:`latency_of` where they suffice."""
        if self._lat is None:
            object.__setattr__(self, "_lat", self.rows(slice(None)))
        return self._lat

    @property
    def service_ms(self) -> np.ndarray | None:
        """``(n_twins, n_hosts)`` idle service time of every pair, or ``None`` when the
        problem has none. Lazy for a sparse problem, like :attr:`latency_ms`."""
        if self._svc is None and self.sparse and self._has_service():
            object.__setattr__(self, "_svc", self._dense_service())
        return self._svc

    @property
    def allowed(self) -> np.ndarray:
        """Boolean ``(n_twins, n_hosts)`` mask of allowed pairs (dense: see
        :attr:`latency_ms`)."""
        return np.isfinite(self.latency_ms)

    @property
    def candidates(self) -> np.ndarray:
        """``(n_twins, c)`` candidate hosts of every twin. A dense problem offers every
        host (``c = n_hosts``, computed on first access)."""
        if self._cand is None:
            object.__setattr__(
                self, "_cand", np.broadcast_to(np.arange(self._m), (self._n, self._m))
            )
        return self._cand

    @property
    def candidate_latency_ms(self) -> np.ndarray:
        """``(n_twins, c)`` latency of every candidate pair (``inf``: not allowed)."""
        if self._clat is None:
            object.__setattr__(self, "_clat", self.latency_ms)
        return self._clat

    @property
    def candidate_service_ms(self) -> np.ndarray | None:
        """``(n_twins, c)`` idle service time of every candidate pair, or ``None``."""
        if self._csvc is None and not self.sparse:
            return self._svc
        return self._csvc

    def _has_service(self) -> bool:
        return self._csvc is not None or self._svc is not None

    def rows(self, twins: np.ndarray | slice) -> np.ndarray:
        """The dense latency rows of ``twins``, ``(len(twins), n_hosts)``, without the
        whole matrix (for a sparse problem: priced by ``pair_costs``, or ``inf``
        outside the candidates)."""
        if self._lat is not None:
            return self._lat[twins]
        idx = np.arange(self._n)[twins]
        out = np.empty((idx.size, self._m))
        step = max(1, _CHUNK_ELEMS // max(self._m, 1))
        hosts = np.arange(self._m)[None, :]
        for a in range(0, idx.size, step):
            t = idx[a : a + step]
            if self._pair is not None:
                out[a : a + step] = self._pair(t[:, None], hosts)[0]
            else:
                block = np.full((t.size, self._m), np.inf)
                np.put_along_axis(block, self._cand[t], self._clat[t], axis=1)
                out[a : a + step] = block
        return out

    def _dense_service(self) -> np.ndarray:
        out = np.zeros((self._n, self._m))
        step = max(1, _CHUNK_ELEMS // max(self._m, 1))
        hosts = np.arange(self._m)[None, :]
        for a in range(0, self._n, step):
            t = np.arange(a, min(a + step, self._n))
            svc = None if self._pair is None else self._pair(t[:, None], hosts)[1]
            if svc is None and self._csvc is not None:
                svc = np.zeros((t.size, self._m))
                np.put_along_axis(svc, self._cand[t], self._csvc[t], axis=1)
            out[a : a + step] = 0.0 if svc is None else svc
        return out

    def latency_of(self, twins: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        """Latency of the pairs ``(twins[k], hosts[k])`` (``inf``: not allowed), without
        the dense matrix."""
        twins = np.asarray(twins, dtype=np.int64)
        hosts = np.asarray(hosts, dtype=np.int64)
        if self._lat is not None:
            return self._lat[twins, hosts]
        if self._pair is not None:
            return np.asarray(self._pair(twins, hosts)[0], dtype=float)
        hit = self._cand[twins] == hosts[..., None]
        col = hit.argmax(axis=-1)
        val = np.take_along_axis(self._clat[twins], col[..., None], axis=-1)[..., 0]
        return np.where(hit.any(axis=-1), val, np.inf)

    def with_utilisation_cap(self, cap: float) -> PlacementProblem:
        """The load-aware problem: every host's CPU filled to at most ``cap`` of its
        capacity, and every twin's service time charged at the M/M/1 queueing factor
        ``1 / (1 - cap)`` that load can reach, ``T'_ij = T_ij + service_ij * cap / (1 -
        cap)``. Its objective bounds from above the latency the twins see right after
        the placement (their host's utilisation is at most ``cap``); a solver's bound
        and gap certify this problem. Without service times only the cap applies. A
        sparse problem stays sparse.

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
        factor = cap / (1.0 - cap) if cap < 1.0 else 0.0
        cpu_cap = self.capacity_cpu_ghz * cap
        if not self.sparse:
            lat = self._lat
            if self._svc is not None and cap < 1.0:
                lat = lat + self._svc * factor
            return PlacementProblem(
                lat,
                self.demand_cpu_ghz,
                self.demand_mem_gb,
                cpu_cap,
                self.capacity_mem_gb,
                self._svc,
            )
        clat = self._clat
        if self._csvc is not None and cap < 1.0:
            clat = clat + self._csvc * factor
        pair = self._pair
        if pair is not None and cap < 1.0:
            inner = pair

            def pair(twins: np.ndarray, hosts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
                lat, svc = inner(twins, hosts)
                return (lat if svc is None else lat + svc * factor), svc

        return PlacementProblem(
            None,
            self.demand_cpu_ghz,
            self.demand_mem_gb,
            cpu_cap,
            self.capacity_mem_gb,
            candidates=self._cand,
            candidate_latency_ms=clat,
            candidate_service_ms=self._csvc,
            pair_costs=pair,
        )

    def objective_ms(self, hosts: np.ndarray) -> float:
        """Sum of the latency of the chosen pairs."""
        hosts = np.asarray(hosts, dtype=np.int64)
        return float(self.latency_of(np.arange(self.n_twins), hosts).sum())

    def check(self, hosts: np.ndarray, *, tol: float = 1e-9) -> None:
        """Raise :class:`InfeasibleError` unless ``hosts`` is a valid, capacity-respecting
        answer. A host outside a twin's candidates is valid when the pair is allowed."""
        hosts = np.asarray(hosts)
        if hosts.shape != (self.n_twins,) or not np.issubdtype(hosts.dtype, np.integer):
            raise InfeasibleError(
                f"a placement must be {self.n_twins} integer host indices, got {hosts.dtype} {hosts.shape}"
            )
        if np.any(hosts < 0) or np.any(hosts >= self.n_hosts):
            raise InfeasibleError(f"host indices must lie in [0, {self.n_hosts})")
        ok = np.isfinite(self.latency_of(np.arange(self.n_twins), hosts))
        if not np.all(ok):
            bad = int(np.flatnonzero(~ok)[0])
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

    def lists(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate lists for a heuristic, ``(hosts, latency)``, both ``(n_twins, c)``
        (``inf``: not allowed; no order within a row is promised).

        A sparse problem gives its own candidates (all of them, whatever ``k``: they
        hold the way out to the tiers above); a dense problem its ``k`` lowest-latency
        hosts (:func:`candidate_hosts`)."""
        if not self.sparse:
            return candidate_hosts(self._lat, k)
        return self._cand, self._clat

    def has_allowed(self) -> np.ndarray:
        """``(n_twins,)`` whether each twin has at least one allowed host (only the twins
        without an allowed candidate are priced over every host)."""
        if not self.sparse:
            return np.asarray(self.allowed.any(axis=1))
        ok = np.isfinite(self._clat).any(axis=1)
        if self._pair is not None and not ok.all():
            bad = np.flatnonzero(~ok)
            ok[bad] = np.isfinite(self.rows(bad)).any(axis=1)
        return ok


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
    no_host = np.flatnonzero(~problem.has_allowed())
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
