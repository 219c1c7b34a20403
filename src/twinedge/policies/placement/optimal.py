"""Optimal placement: a certified answer to the two-resource generalised assignment problem.

Problem (see docs/placement.md)::

    min  sum_ij T_ij a_ij
    s.t. sum_j a_ij = 1                 for every twin i   (allowed pairs only)
         sum_i cpu_i a_ij <= CPU_j      for every host j
         sum_i mem_i a_ij <= MEM_j      for every host j
         a_ij in {0, 1}

The answer always comes with a lower bound valid for the whole instance, available
from the first millisecond on (an *anytime* bound), so the search keeps its time:

1. **Lagrangian bound** (:mod:`.lagrangian`). Relaxing the capacity rows with
   multipliers ``lam >= 0`` leaves one independent choice per twin; every ``lam``
   gives a valid bound ``L(lam)`` whose maximum is the LP relaxation's value. A few
   hundred subgradient steps (vectorised numpy over candidate pairs, exact over all
   hosts) bring it close.
2. **Lagrangian heuristic.** The regret greedy (Martello–Toth) on the Lagrangian costs
   ``T_ij + lam . d_i`` steers twins away from the hosts the multipliers price up; the
   ejection repair and shift/swap local search on the true latency finish it.
3. **Direct MILP on small instances.** When at most ``milp_max_pairs`` pairs survive
   reduced-cost fixing (a pair whose reduced cost exceeds ``UB - L(lam)`` is in no
   placement better than the incumbent ``UB``), HiGHS solves the exact MILP over them
   with ``UB`` as cutoff, time-boxed to ``milp_share`` of the budget; ``min(UB, its
   dual bound)`` is a bound for the whole instance. This proves most small instances.
4. **Large-neighbourhood search** for the rest of the time: repeatedly free every twin
   on a few related hosts (where the Lagrangian certificate says the incumbent loses
   most) and re-solve that sub-problem exactly with HiGHS, alternating with more
   subgradient steps aimed at the incumbent (Polyak target), and a final exact MILP
   when reduced-cost fixing leaves few pairs.

``PlacementResult.info["method"]`` says how the answer was obtained: ``"milp"`` (the
direct MILP proved it), ``"lagrangian"`` (bound from the relaxation, answer from the
heuristic and the neighbourhood search) or ``"lagrangian+milp"`` (the final exact MILP
closed or tightened the gap).

References: M. L. Fisher, "The Lagrangian relaxation method for solving integer
programming problems", Management Science 27(1), 1981; M. Held, P. Wolfe and H. P.
Crowder, "Validation of subgradient optimization", Mathematical Programming 6, 1974;
S. Martello and P. Toth, *Knapsack Problems* (Wiley, 1990), sec. 7.4; P. Shaw, "Using
constraint programming and local search methods to solve vehicle routing problems",
CP 1998 (large-neighbourhood search).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from twinedge.errors import InfeasibleError
from twinedge.policies.base import PlacementPolicy
from twinedge.policies.placement.base import (
    PlacementProblem,
    PlacementResult,
    check_totals,
    relative_gap,
    residual_capacity,
)
from twinedge.policies.placement.greedy import local_search, regret_greedy, repair
from twinedge.policies.placement.lagrangian import (
    AscentLog,
    CapacityRelaxation,
    LagrangianPoint,
    ascend,
)

_CHUNK = 250_000


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level writes to fd 1 (HiGHS's MIP solver prints debug lines there,
    which would corrupt ``--json`` output)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _proven(objective: float, bound: float) -> bool:
    return objective - bound < 1e-6 or relative_gap(objective, bound) <= 1e-9


def _max_cost(problem: PlacementProblem) -> float:
    """The cost of the most expensive placement (each twin on its worst allowed host)."""
    lat = problem.latency_ms
    step = max(1, _CHUNK // max(problem.n_hosts, 1))
    total = 0.0
    for a in range(0, problem.n_twins, step):
        block = lat[a : a + step]
        total += float(np.where(np.isfinite(block), block, -np.inf).max(axis=1).sum())
    return total


def _sub_milp(
    problem: PlacementProblem,
    twins: np.ndarray,
    pair_twin: np.ndarray,
    pair_host: np.ndarray,
    cap_cpu: np.ndarray,
    cap_mem: np.ndarray,
    time_limit_s: float,
    rel_gap: float = 0.0,
    cutoff: float | None = None,
):
    """Solve the GAP restricted to ``twins`` and the given (global-index) pairs.

    ``cap_cpu``/``cap_mem`` are per-host capacities (all hosts) for this sub-problem.
    Returns ``(status, hosts_of_twins or None, objective, dual_bound)``.
    """
    local = np.full(problem.n_twins, -1, dtype=np.int64)
    local[twins] = np.arange(twins.size)
    lt = local[pair_twin]
    hosts_used, lh = np.unique(pair_host, return_inverse=True)
    p, nt, nh = pair_twin.size, twins.size, hosts_used.size
    cols = np.arange(p)
    a = sp.vstack(
        [
            sp.csr_array((np.ones(p), (lt, cols)), shape=(nt, p)),
            sp.csr_array((problem.demand_cpu_ghz[pair_twin], (lh, cols)), shape=(nh, p)),
            sp.csr_array((problem.demand_mem_gb[pair_twin], (lh, cols)), shape=(nh, p)),
        ],
        format="csr",
    )
    lo = np.concatenate([np.ones(nt), np.full(2 * nh, -np.inf)])
    hi = np.concatenate([np.ones(nt), cap_cpu[hosts_used], cap_mem[hosts_used]])
    options = {"time_limit": max(time_limit_s, 0.05), "mip_rel_gap": rel_gap, "presolve": True}
    if cutoff is not None:
        # HiGHS option, passed through by scipy: prune every node that cannot beat it
        options["objective_bound"] = cutoff
    with warnings.catch_warnings(), _quiet_stdout():
        warnings.filterwarnings("ignore", message="Unrecognized options", category=Warning)
        res = milp(
            problem.latency_ms[pair_twin, pair_host],
            integrality=np.ones(p, dtype=np.uint8),
            bounds=Bounds(0, 1),
            constraints=LinearConstraint(a, lo, hi),
            # scipy-stubs list scipy's own options only; scipy hands objective_bound to HiGHS
            options=options,  # type: ignore[arg-type]
        )
    dual = getattr(res, "mip_dual_bound", None)
    dual = float(dual) if dual is not None and np.isfinite(dual) else -np.inf
    if res.x is None:
        return res.status, None, np.inf, dual
    chosen = res.x > 0.5
    out = np.full(nt, -1, dtype=np.int64)
    out[lt[chosen]] = pair_host[chosen]
    if np.any(out < 0):
        return res.status, None, np.inf, dual
    return res.status, out, float(res.fun), dual


class OptimalPlacement(PlacementPolicy):
    """Certified placement: best answer found within a time limit, with a valid bound.

    Parameters:
        time_limit_s: wall-clock budget (default 60). The answer is the best found
            by then; ``status`` is ``"optimal"`` only when the gap is proven zero.
        k_candidates: hosts per twin swept by the Lagrangian step before it looks at
            the others (default 16; widened automatically when the multipliers push
            many twins beyond their list) and scanned by the heuristics. Speed only:
            the bound always ranges over every allowed host.
        rel_gap_tol: stop early once ``(objective - bound) / objective`` is at most
            this (default 0: use the whole time limit unless optimality is proven).
        milp_max_pairs: solve the MILP directly (after reduced-cost fixing) when at
            most this many pairs survive (default 20,000).
        milp_share: share of ``time_limit_s`` the direct MILP may take before the
            search falls back to the Lagrangian method (default 0.8).
        exact_max_pairs: the same for the closing MILP after the search, which gets the
            rest of the time (default 20,000).
        ascent_iter: subgradient steps of the first ascent (default 300; later ascents
            take a tenth of it). Iteration caps, not time, keep runs reproducible.
        lns_hosts: hosts freed together in one large-neighbourhood step (default 8;
            adapted during the search).
        lns_time_s: time limit of one neighbourhood MILP (default 2).
        max_lns_iter: cap on neighbourhood steps (default None: until the time
            limit); set it for runs that must not depend on machine speed.
        utilisation_cap: load-aware objective: fill every host's CPU to at most this
            fraction and charge service time at the queueing factor ``1 / (1 - cap)``
            (see :meth:`PlacementProblem.with_utilisation_cap`); the bound and gap are
            those of that problem. ``None`` (default): idle service time, full capacity.

    References: Fisher, Management Science 27(1), 1981; Held, Wolfe & Crowder,
    Mathematical Programming 6, 1974; Martello & Toth, *Knapsack Problems*, 1990;
    Shaw, CP 1998.
    """

    name = "optimal"

    def __init__(
        self,
        time_limit_s: float = 60.0,
        k_candidates: int = 16,
        rel_gap_tol: float = 0.0,
        milp_max_pairs: int = 20_000,
        milp_share: float = 0.8,
        exact_max_pairs: int = 20_000,
        ascent_iter: int = 300,
        lns_hosts: int = 8,
        lns_time_s: float = 2.0,
        max_lns_iter: int | None = None,
        utilisation_cap: float | None = None,
    ) -> None:
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0")
        if utilisation_cap is not None and not 0.0 < utilisation_cap <= 1.0:
            raise ValueError(f"utilisation_cap must lie in (0, 1], got {utilisation_cap}")
        if k_candidates < 1:
            raise ValueError("k_candidates must be >= 1")
        if not 0.0 < milp_share <= 1.0:
            raise ValueError(f"milp_share must lie in (0, 1], got {milp_share}")
        if ascent_iter < 1:
            raise ValueError("ascent_iter must be >= 1")
        self.time_limit_s = time_limit_s
        self.k_candidates = k_candidates
        self.rel_gap_tol = rel_gap_tol
        self.milp_max_pairs = milp_max_pairs
        self.milp_share = milp_share
        self.exact_max_pairs = exact_max_pairs
        self.ascent_iter = ascent_iter
        self.lns_hosts = lns_hosts
        self.lns_time_s = lns_time_s
        self.max_lns_iter = max_lns_iter
        self.utilisation_cap = utilisation_cap

    def __repr__(self) -> str:
        cap = "" if self.utilisation_cap is None else f", utilisation_cap={self.utilisation_cap}"
        return (
            f"OptimalPlacement(time_limit_s={self.time_limit_s}, k_candidates={self.k_candidates},"
            f" rel_gap_tol={self.rel_gap_tol}, milp_max_pairs={self.milp_max_pairs}{cap})"
        )

    # -- phases ---------------------------------------------------------------------

    def _heuristic(
        self,
        problem: PlacementProblem,
        relax: CapacityRelaxation,
        point: LagrangianPoint,
        deadline: float,
        info: dict,
    ) -> np.ndarray | None:
        """Lagrangian heuristic: regret greedy on ``T + lam . d``, repair, local search."""
        n = problem.n_twins
        k = min(10, problem.n_hosts)
        hosts = regret_greedy(problem, k, cost_ms=relax.reduced_cost_matrix(point.lam))
        unplaced = int((hosts < 0).sum())
        info.setdefault("heuristic_unplaced", []).append(unplaced)
        # the ejection repair scans every twin per ejection: only for a few stragglers
        if 0 < unplaced <= max(50, n // 100) and time.perf_counter() < deadline:
            hosts = repair(problem, hosts)
        if np.any(hosts < 0):
            return None
        # shift/swap rounds cost O(n) Python work each: bounded to 15 % of the budget
        until = min(deadline, time.perf_counter() + max(1.0, 0.15 * self.time_limit_s))
        return local_search(problem, hosts, relax.candidates(k), until)

    def _milp(
        self,
        problem: PlacementProblem,
        pairs: tuple[np.ndarray, np.ndarray],
        incumbent: np.ndarray | None,
        ub: float,
        lb: float,
        budget_s: float,
        info: dict,
        key: str,
    ) -> tuple[np.ndarray | None, float, float, bool]:
        """The exact MILP over ``pairs`` (all pairs that can beat ``ub``), with ``ub`` as
        cutoff. Returns ``(incumbent, ub, lb, finished)``; raises when the MILP over
        every pair that could be used proves that no placement exists."""
        t, h = pairs
        t0 = time.perf_counter()
        if np.unique(t).size < problem.n_twins:  # cannot happen: rc = 0 at a row minimum
            return incumbent, ub, lb, False
        cutoff = ub - 1e-7 if np.isfinite(ub) else None
        status, sub, obj, dual = _sub_milp(
            problem,
            np.arange(problem.n_twins),
            t,
            h,
            problem.capacity_cpu_ghz,
            problem.capacity_mem_gb,
            budget_s,
            cutoff=cutoff,
        )
        info[key] = {
            "pairs": int(t.size),
            "status": int(status),
            "s": round(time.perf_counter() - t0, 3),
        }
        if sub is not None and obj < ub:
            incumbent, ub = sub, problem.objective_ms(sub)
            info["trace"].append((round(time.perf_counter() - info["_t0"], 3), float(ub)))
        finished = False
        if status == 0 and sub is not None:
            lb = max(lb, min(ub, obj, dual if np.isfinite(dual) else obj))
            finished = True
        elif status == 2:
            if cutoff is None:
                raise InfeasibleError(
                    "optimal: infeasible — the exact MILP over all allowed pairs proves that "
                    "no placement satisfies both cpu_ghz and mem_gb capacities "
                    f"(total demand {problem.demand_cpu_ghz.sum():.6g} of "
                    f"{problem.capacity_cpu_ghz.sum():.6g} cpu_ghz, "
                    f"{problem.demand_mem_gb.sum():.6g} of {problem.capacity_mem_gb.sum():.6g}"
                    " mem_gb). Add capacity or allow more hosts."
                )
            lb = max(lb, min(ub, cutoff))  # nothing cheaper than the cutoff exists
            finished = True
        elif np.isfinite(dual):
            lb = max(lb, min(ub, dual))
        return incumbent, ub, lb, finished

    def _lns(
        self,
        problem: PlacementProblem,
        hosts: np.ndarray,
        ub: float,
        lb: float,
        point: LagrangianPoint,
        cand: np.ndarray,
        rng: np.random.Generator,
        deadline: float,
        info: dict,
        max_stale: int | None = None,
    ) -> tuple[np.ndarray, float]:
        """Large-neighbourhood search: re-solve the twins of a few related hosts exactly.

        Where to look: the Lagrangian certificate splits ``UB - L(lam)`` into per-twin
        reduced costs and per-host unused priced capacity; a host is picked with
        probability proportional to its share, together with the hosts most of its
        twins also have as candidates.
        """
        m = problem.n_hosts
        if m < 2:
            return hosts, ub
        lat = problem.latency_ms
        n = problem.n_twins
        lam, rowmin = point.lam, point.rowmin
        demand = np.stack([problem.demand_cpu_ghz, problem.demand_mem_gb])
        q = int(info.get("lns_hosts_final", min(self.lns_hosts, m)))
        it = improved = stale = run_stale = 0
        trace = info["trace"]
        while time.perf_counter() < deadline - 0.05:
            if self.max_lns_iter is not None and info.get("lns_iterations", 0) + it >= (
                self.max_lns_iter
            ):
                break
            if _proven(ub, lb) or relative_gap(ub, lb) <= self.rel_gap_tol:
                break
            if max_stale is not None and run_stale >= max_stale:
                break
            it += 1
            res_cpu, res_mem = residual_capacity(problem, hosts)
            rc = (
                lat[np.arange(n), hosts]
                + demand[0] * lam[0, hosts]
                + demand[1] * lam[1, hosts]
                - rowmin
            )
            loss = np.bincount(hosts, weights=rc, minlength=m)
            loss += lam[0] * res_cpu + lam[1] * res_mem
            loss = np.maximum(loss, 0.0)
            w = loss + 1e-3 * (loss.mean() + 1e-9)
            seed = int(rng.choice(m, p=w / w.sum()))
            on_seed = np.flatnonzero(hosts == seed)
            if on_seed.size:
                near = np.bincount(cand[on_seed].ravel(), minlength=m).astype(float)
            else:
                near = np.zeros(m)
            near += 1e-6 * rng.random(m)
            near[seed] = np.inf
            pick = np.argsort(-near, kind="stable")[:q]
            twins = np.flatnonzero(np.isin(hosts, pick))
            if twins.size == 0:
                continue
            tt = np.repeat(twins, pick.size)
            hh = np.tile(pick, twins.size)
            keep = np.isfinite(lat[tt, hh])
            tt, hh = tt[keep], hh[keep]
            t0 = time.perf_counter()
            budget = min(self.lns_time_s, deadline - t0)
            if budget <= 0.02:
                break
            old = float(lat[twins, hosts[twins]].sum())
            _, sub, obj, _ = _sub_milp(
                problem,
                twins,
                tt,
                hh,
                problem.capacity_cpu_ghz,
                problem.capacity_mem_gb,
                budget,
                rel_gap=1e-6,
                cutoff=old - 1e-7,
            )
            took = time.perf_counter() - t0
            run_stale += 1
            if sub is not None and obj < old - 1e-7:
                trial = hosts.copy()
                trial[twins] = sub
                new_ub = problem.objective_ms(trial)
                if new_ub < ub:
                    hosts, ub = trial, new_ub
                    improved += 1
                    stale = run_stale = 0
                    trace.append((round(time.perf_counter() - info["_t0"], 3), ub))
                    continue
            stale += 1
            # adapt the neighbourhood: grow while sub-problems are quick, shrink if slow
            if took > 0.8 * self.lns_time_s and q > 3:
                q -= 1
            elif stale > 30 and q < m:
                q = min(m, q + 1)
                stale = 0
        info["lns_iterations"] = info.get("lns_iterations", 0) + it
        info["lns_improvements"] = info.get("lns_improvements", 0) + improved
        info["lns_hosts_final"] = q
        return hosts, ub

    # -- entry point ----------------------------------------------------------------

    def __call__(self, problem: PlacementProblem, rng: np.random.Generator) -> PlacementResult:
        t0 = time.perf_counter()
        budget = self.time_limit_s
        deadline = t0 + budget
        info: dict = {"_t0": t0, "trace": []}
        if self.utilisation_cap is not None:  # the load-aware problem is the one solved
            problem = problem.with_utilisation_cap(self.utilisation_cap)
            info["utilisation_cap"] = self.utilisation_cap
        check_totals(problem)
        n, m = problem.n_twins, problem.n_hosts
        if n == 0:  # nothing to place: the empty placement is optimal
            return PlacementResult(
                "optimal", np.zeros(0, dtype=np.int64), 0.0, 0.0, 0.0, info={"method": "trivial"}
            )

        def now() -> float:
            return time.perf_counter()

        def stamp(key: str) -> None:
            info[key] = round(now() - t0, 3)

        # 1. the anytime bound: a first subgradient ascent from lam = 0
        relax = CapacityRelaxation(problem, k=self.k_candidates)
        log = AscentLog()
        point = relax.evaluate(np.zeros((2, m)))
        point, theta = ascend(
            relax, point, min(deadline, t0 + 0.3 * budget), max_iter=self.ascent_iter, log=log
        )
        lb = point.value
        max_cost = _max_cost(problem)
        stamp("t_bound_s")
        info["first_bound_ms"] = float(lb)

        # 2. the Lagrangian heuristic (and the plain regret greedy, lam = 0, when cheap)
        incumbent: np.ndarray | None = None
        ub = np.inf
        tries = [point]
        if n * m <= 2_000_000:
            tries.append(relax.evaluate(np.zeros((2, m))))
        for p in tries:
            if lb > max_cost * (1 + 1e-9) + 1e-6:
                break
            hosts = self._heuristic(problem, relax, p, deadline, info)
            if hosts is not None and problem.objective_ms(hosts) < ub:
                incumbent, ub = hosts, problem.objective_ms(hosts)
        stamp("t_heuristic_s")
        info["heuristic_ms"] = float(ub)
        if np.isfinite(ub):
            info["trace"].append((info["t_heuristic_s"], float(ub)))
        method = "lagrangian"

        # 3. small instances: the direct MILP over the pairs reduced-cost fixing keeps
        limit = ub - lb + 1e-6 if np.isfinite(ub) else np.inf
        pairs = relax.pairs_within(point, limit, self.milp_max_pairs)
        if pairs is not None and not _proven(ub, lb):
            box = max(min(deadline, t0 + self.milp_share * budget) - now(), 0.05)
            incumbent, ub, lb, finished = self._milp(
                problem, pairs, incumbent, ub, lb, box, info, "milp"
            )
            if finished:
                method = "milp"
        stamp("t_milp_s")

        # no placement yet (a tight instance): more ascent, then the heuristic again, until
        # one is found or the bound passes the most expensive placement (infeasible)
        while incumbent is None and now() < deadline - 0.05 and lb <= max_cost * (1 + 1e-9):
            before = point.lam
            point, theta = ascend(
                relax,
                point,
                deadline,
                max_iter=self.ascent_iter,
                theta=max(theta, 0.05),
                log=log,
            )
            lb = max(lb, point.value)
            if lb > max_cost * (1 + 1e-9) + 1e-6 or point.lam is before:
                break  # proved infeasible, or the ascent has stalled: same heuristic again
            hosts = self._heuristic(problem, relax, point, deadline, info)
            if hosts is not None:
                incumbent, ub = hosts, problem.objective_ms(hosts)
                info["trace"].append((round(now() - t0, 3), float(ub)))

        # 4. the search: neighbourhoods, more ascent aimed at the incumbent, and a
        #    closing MILP when fixing leaves few pairs
        cand = relax.candidates(min(max(self.k_candidates, 8), m))
        burst = max(2.0, 0.1 * budget)
        rounds = 0
        while (
            incumbent is not None
            and now() < deadline - 0.05
            and not _proven(ub, lb)
            and relative_gap(ub, lb) > self.rel_gap_tol
        ):
            rounds += 1
            if self.max_lns_iter is not None and info.get("lns_iterations", 0) >= self.max_lns_iter:
                break
            incumbent, ub = self._lns(
                problem, incumbent, ub, lb, point, cand, rng, min(deadline, now() + burst), info
            )
            if _proven(ub, lb) or now() > deadline - 0.05:
                break
            # shift and swap moves the neighbourhood steps opened up (bounded)
            hosts = local_search(
                problem, incumbent, cand, min(deadline, now() + max(0.5, 0.02 * budget))
            )
            if problem.objective_ms(hosts) < ub:
                incumbent, ub = hosts, problem.objective_ms(hosts)
                info["trace"].append((round(now() - t0, 3), float(ub)))
            point, theta = ascend(
                relax,
                point,
                deadline,
                upper=ub,
                max_iter=max(1, self.ascent_iter // 10),
                theta=max(theta, 0.05),
                log=log,
            )
            lb = max(lb, point.value)
            pairs = relax.pairs_within(point, ub - lb + 1e-6, self.exact_max_pairs)
            if pairs is not None and not _proven(ub, lb):
                incumbent, ub, lb, finished = self._milp(
                    problem, pairs, incumbent, ub, lb, deadline - now(), info, "exact_milp"
                )
                if finished and method == "lagrangian":
                    method = "lagrangian+milp"
        info.update(
            method=method,
            search_rounds=rounds,
            lagrangian_bound_ms=float(point.value),
            ascent_iterations=log.iterations,
            ascent_s=round(log.seconds, 3),
            candidates_per_twin=relax.k,
        )
        info.pop("_t0")
        if incumbent is None:
            if lb > max_cost * (1 + 1e-9) + 1e-6:
                raise InfeasibleError(
                    f"optimal: infeasible — the Lagrangian lower bound {lb:.6g} ms exceeds "
                    f"{max_cost:.6g} ms, the cost of placing every twin on its worst allowed "
                    "host, so the LP relaxation (and every placement) violates a capacity "
                    f"(total demand {problem.demand_cpu_ghz.sum():.6g} of "
                    f"{problem.capacity_cpu_ghz.sum():.6g} cpu_ghz, "
                    f"{problem.demand_mem_gb.sum():.6g} of {problem.capacity_mem_gb.sum():.6g}"
                    " mem_gb). Add capacity or allow more hosts."
                )
            raise InfeasibleError(
                f"optimal: no feasible placement found within time_limit_s={self.time_limit_s} "
                f"(Lagrangian bound {lb:.6g} ms, worst placement {max_cost:.6g} ms); the "
                "instance may be infeasible or very tight. Raise time_limit_s or add capacity."
            )
        lb = min(lb, ub)
        proven = _proven(ub, lb)
        info["proof_bound_ms"] = float(lb)
        if proven:  # equal within the tolerance of the proof (1e-6 ms or 1e-9 relative)
            lb = ub
        gap = 0.0 if proven else relative_gap(ub, lb)
        return PlacementResult(
            status="optimal" if proven else "feasible",
            hosts=incumbent,
            objective_ms=float(ub),
            lower_bound_ms=float(lb),
            gap=gap,
            info=info,
        )
