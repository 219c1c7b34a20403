"""Capacity-aware regret greedy for twin placement, with an ejection repair.

Reference: S. Martello and P. Toth, "An algorithm for the generalized assignment
problem", Operational Research '81 (1981), and *Knapsack Problems* (Wiley, 1990),
section 7.4 — the "regret" heuristic MTHG: repeatedly place the twin that would lose
the most if it did not get its best host (regret = cost of its second-best host that
still has room minus cost of its best), on that best host.

:class:`GreedyPlacement` (the ``greedy`` policy) runs MTHG over the problem's candidate
lists in vectorised rounds (:mod:`twinedge.policies.placement.assign`): the regret is
refreshed every round and every host takes the askers with the largest regret that fit,
so a placement costs ``O(twins x candidates)`` per round, a handful of rounds, whatever
the number of hosts. It never reads the dense matrix of a sparse problem: a twin left
with no candidate with room is priced over every host, its row only.

:func:`regret_greedy` is MTHG one twin at a time over a dense matrix (a heap of regrets;
each host keeps heaps of the twins that watch it, so when it fills exactly the twins
that no longer fit are re-scored). The optimal policy uses it, with LP reduced costs as
the cost, for one of its incumbents. :func:`repair` places twins that fit nowhere by
ejecting one (or a chain of two) placed twins; it reads only the rows it needs.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

import numpy as np

from twinedge.errors import InfeasibleError
from twinedge.policies.base import PlacementPolicy
from twinedge.policies.placement.assign import assign_rounds, fitting_lists, shift_improve
from twinedge.policies.placement.base import (
    PlacementProblem,
    PlacementResult,
    candidate_hosts,
    check_totals,
    residual_capacity,
)

_EPS = 1e-9
_SEQUENTIAL_MAX_TWINS = 50_000


def regret_greedy(
    problem: PlacementProblem,
    k_candidates: int = 10,
    cost_ms: np.ndarray | None = None,
    *,
    candidate_lists: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Martello–Toth regret greedy; returns hosts with ``-1`` for twins it could not place.

    ``cost_ms`` replaces the latency as the greedy's cost when given (same shape, ``inf``
    marks a forbidden pair); the optimal policy uses this to follow LP reduced costs.
    ``candidate_lists`` (``(hosts, latency)``, each row by increasing latency) replaces the
    ``k_candidates`` nearest hosts: then only the rows of the twins that run out of room
    in their list are priced (:meth:`PlacementProblem.rows`), never the whole matrix.
    """
    lat = problem.latency_ms if cost_ms is None and candidate_lists is None else cost_ms
    n, m = problem.n_twins, problem.n_hosts
    if candidate_lists is None:
        assert lat is not None
        cand, cand_lat = candidate_hosts(lat, k_candidates)
    else:
        cand, cand_lat = candidate_lists
    lists: list[list[int]] = cand.tolist()
    lists_lat: list[list[float]] = cand_lat.tolist()
    full = [cand.shape[1] >= m] * n
    cpu = problem.demand_cpu_ghz.tolist()
    mem = problem.demand_mem_gb.tolist()
    rc = problem.capacity_cpu_ghz.tolist()
    rm = problem.capacity_mem_gb.tolist()
    ptr = [0] * n
    ver = [0] * n
    assigned = [-1] * n
    best = [-1] * n
    heap: list[tuple[float, float, int, int]] = []
    watch_cpu: list[list[tuple[float, int, int]]] = [[] for _ in range(m)]
    watch_mem: list[list[tuple[float, int, int]]] = [[] for _ in range(m)]
    failed: list[int] = []
    inf = math.inf

    def scan(i: int) -> tuple[int, int, float, float]:
        """Best and second-best host with room for twin i: (b, s, cost_b, regret)."""
        while True:
            hs = lists[i]
            ls = lists_lat[i]
            ci = cpu[i]
            mi = mem[i]
            b = -1
            bl = inf
            q = ptr[i]
            size = len(hs)
            while q < size:
                lq = ls[q]
                if lq == inf:
                    break
                j = hs[q]
                if ci <= rc[j] + _EPS and mi <= rm[j] + _EPS:
                    if b < 0:
                        b, bl = j, lq
                    else:
                        return b, j, bl, lq - bl
                elif b < 0:
                    ptr[i] = q + 1
                q += 1
            if full[i]:
                return b, -1, bl, inf
            row = lat[i] if lat is not None else problem.rows(np.array([i]))[0]
            order = np.argsort(row, kind="stable")
            order = order[np.isfinite(row[order])]
            lists[i] = order.tolist()
            lists_lat[i] = row[order].tolist()
            ptr[i] = 0
            full[i] = True

    def score(i: int) -> None:
        ver[i] += 1
        v = ver[i]
        b, s, bl, regret = scan(i)
        if b < 0:
            failed.append(i)
            return
        best[i] = b
        heapq.heappush(heap, (-regret, bl, i, v))
        heapq.heappush(watch_cpu[b], (-cpu[i], i, v))
        heapq.heappush(watch_mem[b], (-mem[i], i, v))
        if s >= 0:
            heapq.heappush(watch_cpu[s], (-cpu[i], i, v))
            heapq.heappush(watch_mem[s], (-mem[i], i, v))

    for i in range(n):
        score(i)
    while heap:
        _, _, i, v = heapq.heappop(heap)
        if assigned[i] >= 0 or v != ver[i]:
            continue
        j = best[i]
        assigned[i] = j
        rc[j] -= cpu[i]
        rm[j] -= mem[i]
        for wheap, left in ((watch_cpu[j], rc[j]), (watch_mem[j], rm[j])):
            while wheap and -wheap[0][0] > left + _EPS:
                _, t, tv = heapq.heappop(wheap)
                if assigned[t] < 0 and tv == ver[t]:
                    score(t)
    return np.asarray(assigned, dtype=np.int64)


def _best_moves(
    problem: PlacementProblem,
    twins: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    exclude: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each twin, the cheapest host (not ``exclude``) with room, and that latency."""
    lat = problem.rows(twins)
    fits = (problem.demand_cpu_ghz[twins, None] <= res_cpu[None, :] + _EPS) & (
        problem.demand_mem_gb[twins, None] <= res_mem[None, :] + _EPS
    )
    fits[:, exclude] = False
    masked = np.where(fits, lat, np.inf)
    h = np.argmin(masked, axis=1)
    return h, masked[np.arange(twins.size), h]


def _eject_one(
    problem: PlacementProblem,
    i: int,
    hosts: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    max_hosts: int,
    forbid: int = -1,
    on: Callable[[int], np.ndarray] | None = None,
) -> tuple[float, int, int, int] | None:
    """Cheapest single ejection making room for twin i: (delta, host j, ejected k, k's new
    host). ``on(j)``: the twins on host j, ascending (default: a scan of ``hosts``)."""
    row = problem.rows(np.array([i]))[0]
    order = np.argsort(row, kind="stable")[:max_hosts]
    ci, mi = problem.demand_cpu_ghz[i], problem.demand_mem_gb[i]
    best: tuple[float, int, int, int] | None = None
    for j in order:
        j = int(j)
        if not np.isfinite(row[j]) or j == forbid:
            continue
        if ci <= res_cpu[j] + _EPS and mi <= res_mem[j] + _EPS:
            return (float(row[j]), j, -1, -1)
        on_j = on(j) if on is not None else np.flatnonzero(hosts == j)
        need_c, need_m = ci - res_cpu[j], mi - res_mem[j]
        ok = (problem.demand_cpu_ghz[on_j] + _EPS >= need_c) & (
            problem.demand_mem_gb[on_j] + _EPS >= need_m
        )
        ks = on_j[ok]
        if ks.size == 0:
            continue
        h, lat_h = _best_moves(problem, ks, res_cpu, res_mem, exclude=j)
        delta = row[j] + lat_h - problem.latency_of(ks, np.full(ks.size, j))
        a = int(np.argmin(delta))
        if np.isfinite(delta[a]) and (best is None or delta[a] < best[0]):
            best = (float(delta[a]), j, int(ks[a]), int(h[a]))
    return best


def repair(problem: PlacementProblem, hosts: np.ndarray, max_hosts: int = 50) -> np.ndarray:
    """Place the twins marked ``-1`` by ejecting placed twins to make room.

    For each unplaced twin (largest first) it tries, over its ``max_hosts`` nearest
    allowed hosts, a direct insertion, then the cheapest single ejection (move one twin
    off host j to any host with room so the new twin fits on j), then a chain of two
    ejections. Returns the new hosts; twins it could not place stay ``-1``.
    """
    hosts = np.array(hosts, dtype=np.int64)
    res_cpu, res_mem = residual_capacity(problem, hosts)
    cpu, mem = problem.demand_cpu_ghz, problem.demand_mem_gb
    todo = np.flatnonzero(hosts < 0)
    size = cpu[todo] / max(problem.capacity_cpu_ghz.max(), 1e-12) + mem[todo] / max(
        problem.capacity_mem_gb.max(), 1e-12
    )
    todo = todo[np.argsort(-size, kind="stable")]

    members: dict[int, set[int]] = {}  # twins on a host, for the hosts looked at so far

    def on(j: int) -> np.ndarray:
        if j not in members:
            members[j] = set(np.flatnonzero(hosts == j).tolist())
        return np.array(sorted(members[j]), dtype=np.int64)

    def move(t: int, dst: int) -> None:
        src = hosts[t]
        if src in members:
            members[src].discard(t)
        if dst in members:
            members[dst].add(t)
        if src >= 0:
            res_cpu[src] += cpu[t]
            res_mem[src] += mem[t]
        hosts[t] = dst
        if dst >= 0:
            res_cpu[dst] -= cpu[t]
            res_mem[dst] -= mem[t]

    for i in map(int, todo):
        one = _eject_one(problem, i, hosts, res_cpu, res_mem, max_hosts, on=on)
        if one is not None:
            _, j, k, h = one
            if k >= 0:
                move(k, h)
            move(i, j)
            continue
        # chain of two: eject k from j (i takes its place), then place k by one ejection
        row = problem.rows(np.array([i]))[0]
        placed = False
        for j in map(int, np.argsort(row, kind="stable")[: min(max_hosts, 10)]):
            if not np.isfinite(row[j]):
                break
            on_j = on(j)
            need_c, need_m = cpu[i] - res_cpu[j], mem[i] - res_mem[j]
            ks = on_j[(cpu[on_j] + _EPS >= need_c) & (mem[on_j] + _EPS >= need_m)]
            for k in map(int, ks[np.argsort(cpu[ks] + mem[ks], kind="stable")][:8]):
                move(k, -1)
                move(i, j)
                two = _eject_one(problem, k, hosts, res_cpu, res_mem, max_hosts, forbid=j, on=on)
                if two is not None:
                    _, j2, k2, h2 = two
                    if k2 >= 0:
                        move(k2, h2)
                    move(k, j2)
                    placed = True
                    break
                move(i, -1)
                move(k, j)
            if placed:
                break
    return hosts


def raise_unplaced(problem: PlacementProblem, hosts: np.ndarray, policy: str) -> None:
    """Raise :class:`InfeasibleError` describing the twins a heuristic could not place."""
    left = np.flatnonzero(hosts < 0)
    if left.size == 0:
        return
    i = int(left[0])
    res_cpu, res_mem = residual_capacity(problem, hosts)
    raise InfeasibleError(
        f"{policy}: could not place {left.size} of {problem.n_twins} twins (twin {i} needs "
        f"{problem.demand_cpu_ghz[i]:.6g} cpu_ghz and {problem.demand_mem_gb[i]:.6g} mem_gb; "
        f"the most free on any host is {res_cpu.max():.6g} cpu_ghz, {res_mem.max():.6g} mem_gb; "
        f"total demand {problem.demand_cpu_ghz.sum():.6g}/{problem.capacity_cpu_ghz.sum():.6g} "
        f"cpu_ghz, {problem.demand_mem_gb.sum():.6g}/{problem.capacity_mem_gb.sum():.6g} mem_gb). "
        "The instance may still be feasible: try the 'optimal' policy, which also proves "
        "infeasibility."
    )


def local_search(
    problem: PlacementProblem,
    hosts: np.ndarray,
    cand: np.ndarray,
    deadline: float,
    max_rounds: int = 100,
    swap_k: int = 5,
) -> np.ndarray:
    """Improve a feasible placement by shift and swap moves until no move helps.

    Shift: move a twin to a candidate host with room and lower latency (vectorised over
    all twins, applied best-first with a capacity re-check). Swap: exchange a twin with
    one on a cheaper candidate host when both hosts stay within capacity.
    """
    hosts = np.array(hosts, dtype=np.int64)
    lat = problem.latency_ms
    cpu, mem = problem.demand_cpu_ghz, problem.demand_mem_gb
    n = problem.n_twins
    rows = np.arange(n)
    cand_lat = lat[rows[:, None], cand]
    for _ in range(max_rounds):
        if time.perf_counter() > deadline:
            break
        res_cpu, res_mem = residual_capacity(problem, hosts)
        cur = lat[rows, hosts]
        fits = (cpu[:, None] <= res_cpu[cand] + _EPS) & (mem[:, None] <= res_mem[cand] + _EPS)
        delta = np.where(fits, cand_lat - cur[:, None], np.inf)
        kbest = np.argmin(delta, axis=1)
        d = delta[rows, kbest]
        movers = np.flatnonzero(d < -1e-9)
        moved = 0
        for i in movers[np.argsort(d[movers], kind="stable")].tolist():
            j = int(cand[i, kbest[i]])
            if cpu[i] <= res_cpu[j] + _EPS and mem[i] <= res_mem[j] + _EPS:
                h = hosts[i]
                res_cpu[h] += cpu[i]
                res_mem[h] += mem[i]
                res_cpu[j] -= cpu[i]
                res_mem[j] -= mem[i]
                hosts[i] = j
                moved += 1
        if moved:
            continue
        # swaps: twin i wants candidate host j (cheaper, no room); exchange with b on j
        cur = lat[rows, hosts]
        want = (cand_lat[:, :swap_k] < cur[:, None] - 1e-9) & (cand[:, :swap_k] != hosts[:, None])
        order = np.argsort(hosts, kind="stable")
        bounds = np.searchsorted(hosts[order], np.arange(problem.n_hosts + 1))
        dirty = np.zeros(problem.n_hosts, dtype=bool)
        swapped = 0
        for i, kk in zip(*np.nonzero(want), strict=True):
            j, h = int(cand[i, kk]), int(hosts[i])
            if dirty[j] or dirty[h] or time.perf_counter() > deadline:
                continue
            bs = order[bounds[j] : bounds[j + 1]]
            gain = lat[i, j] + lat[bs, h] - cur[i] - cur[bs]
            ok = (
                (gain < -1e-9)
                & (res_cpu[j] + cpu[bs] - cpu[i] >= -_EPS)
                & (res_mem[j] + mem[bs] - mem[i] >= -_EPS)
                & (res_cpu[h] + cpu[i] - cpu[bs] >= -_EPS)
                & (res_mem[h] + mem[i] - mem[bs] >= -_EPS)
            )
            if not ok.any():
                continue
            b = int(bs[np.argmin(np.where(ok, gain, np.inf))])
            hosts[i], hosts[b] = j, h
            res_cpu[j] += cpu[b] - cpu[i]
            res_mem[j] += mem[b] - mem[i]
            res_cpu[h] += cpu[i] - cpu[b]
            res_mem[h] += mem[i] - mem[b]
            dirty[j] = dirty[h] = True
            swapped += 1
        if not swapped:
            break
    return hosts


class GreedyPlacement(PlacementPolicy):
    """Regret greedy (Martello–Toth MTHG) over candidate lists, with an ejection repair.

    Works on the problem's candidate lists (:meth:`PlacementProblem.lists`): a sparse
    problem's own candidates (the network view's: the k nearest hosts, the tiers above
    and, in a re-placement, the current host), a dense problem's ``k_candidates``
    nearest hosts. The greedy runs in vectorised rounds
    (:func:`~twinedge.policies.placement.assign.assign_rounds`): every round each
    unplaced twin's regret (latency of its second-best candidate with room minus its
    best) is refreshed and every host takes the twins with the largest regret that fit.
    A twin left with no candidate with room is priced over every host (its row only) and
    placed in a second pass, so the lists never make an instance infeasible that the
    full problem is not; what they can change is the objective, when a host outside a
    twin's list would be cheaper than the one it got (see docs/placement.md).

    Parameters:
        k_candidates: for a dense problem, hosts per twin scanned before widening to all
            allowed hosts (default 10). Smaller is faster; the answer is the same unless
            many twins run out of room in their list. A sparse problem uses its own lists.
        repair: run the ejection repair on twins the greedy could not place
            (default True).
        improve: finish with MTHG's improvement phase — shift twins to a cheaper
            candidate host with room while that helps (default True).
        utilisation_cap: load-aware objective: fill every host's CPU to at most this
            fraction and charge service time at the queueing factor ``1 / (1 - cap)``
            (see :meth:`PlacementProblem.with_utilisation_cap`); ``None`` (default):
            idle service time, full capacity.

    Reference: Martello & Toth, *Knapsack Problems* (1990), sec. 7.4.
    """

    name = "greedy"

    def __init__(
        self,
        k_candidates: int = 10,
        repair: bool = True,
        improve: bool = True,
        utilisation_cap: float | None = None,
    ) -> None:
        if k_candidates < 1:
            raise ValueError("k_candidates must be >= 1")
        if utilisation_cap is not None and not 0.0 < utilisation_cap <= 1.0:
            raise ValueError(f"utilisation_cap must lie in (0, 1], got {utilisation_cap}")
        self.k_candidates = k_candidates
        self.repair = repair
        self.improve = improve
        self.utilisation_cap = utilisation_cap

    def __repr__(self) -> str:
        cap = "" if self.utilisation_cap is None else f", utilisation_cap={self.utilisation_cap}"
        return (
            f"GreedyPlacement(k_candidates={self.k_candidates}, repair={self.repair}, "
            f"improve={self.improve}{cap})"
        )

    def __call__(self, problem: PlacementProblem, rng: np.random.Generator) -> PlacementResult:
        if self.utilisation_cap is not None:
            problem = problem.with_utilisation_cap(self.utilisation_cap)
        check_totals(problem)
        cpu, mem = problem.demand_cpu_ghz, problem.demand_mem_gb
        res_cpu = problem.capacity_cpu_ghz.copy()
        res_mem = problem.capacity_mem_gb.copy()
        cand, lat = problem.lists(self.k_candidates)
        wide = fitting_lists(problem) if cand.shape[1] < problem.n_hosts else None
        hosts = assign_rounds(cand, lat, cpu, mem, res_cpu, res_mem, widen=wide)
        if (hosts < 0).any() and problem.n_twins <= _SEQUENTIAL_MAX_TWINS:
            # rounds settle contention in batches; where that strands twins, MTHG one
            # twin at a time (regrets re-scored as hosts fill) usually leaves fewer to
            # the costly repair
            order = np.argsort(lat, axis=1, kind="stable")
            one = regret_greedy(
                problem,
                candidate_lists=(
                    np.take_along_axis(cand, order, axis=1),
                    np.take_along_axis(lat, order, axis=1),
                ),
            )
            if (one < 0).sum() < (hosts < 0).sum():
                hosts = one
        unplaced = int((hosts < 0).sum())
        if unplaced and self.repair:
            hosts = repair(problem, hosts)
        raise_unplaced(problem, hosts, "greedy")
        moved = 0
        if self.improve:
            res_cpu, res_mem = residual_capacity(problem, hosts)
            cur = problem.latency_of(np.arange(problem.n_twins), hosts)
            moved = shift_improve(cand, lat, hosts, cur, cpu, mem, res_cpu, res_mem)
        return PlacementResult(
            status="feasible",
            hosts=hosts,
            objective_ms=problem.objective_ms(hosts),
            info={"unplaced_before_repair": unplaced, "shifted": moved}
            | ({} if self.utilisation_cap is None else {"utilisation_cap": self.utilisation_cap}),
        )
