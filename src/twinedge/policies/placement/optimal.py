"""Optimal placement: a certified answer to the two-resource generalised assignment problem.

Problem (see docs/placement.md)::

    min  sum_ij T_ij a_ij
    s.t. sum_j a_ij = 1                 for every twin i   (allowed pairs only)
         sum_i cpu_i a_ij <= CPU_j      for every host j
         sum_i mem_i a_ij <= MEM_j      for every host j
         a_ij in {0, 1}

A generic MILP on the dense instance stalls on a few thousand twins (HiGHS on 2,000 x
100 is still far from its bound after a minute), so the solver combines:

1. **LP relaxation with column generation.** The LP is solved (HiGHS dual simplex via
   ``scipy.optimize.linprog``) over the ``k_candidates`` nearest hosts of every twin.
   Its duals ``u_i`` (assignment rows) and ``v_j <= 0`` (capacity rows) price every
   pruned pair; pairs with a negative reduced cost are added and the LP re-solved.
2. **A bound valid for the whole instance.** For any ``v <= 0`` the Lagrangian bound

       L(v) = sum_i min_j (T_ij - cpu_i v_cpu_j - mem_i v_mem_j)
              + sum_j (CPU_j v_cpu_j + MEM_j v_mem_j)

   (min over *all* allowed hosts) is a lower bound on every feasible placement, and it
   equals the full LP value once no pruned pair has a negative reduced cost. It is
   computed in row chunks, so 100k x 1k instances do not need extra dense matrices.
3. **LP-guided rounding.** A basic LP solution of a GAP has at most ``2m`` fractional
   twins; the integral ones are fixed and the rest go to a small MILP over the residual
   capacities (or, failing that, to the ejection repair and the reduced-cost greedy).
4. **Local search** (shift and swap moves with capacity checks) and
   **large-neighbourhood search**: repeatedly free every twin on a few related hosts
   (picked where the gap certificate says the incumbent loses most) and re-solve that
   sub-problem exactly with HiGHS.
5. **Reduced-cost fixing and an exact MILP.** With ``rc_ij = T_ij - u_i - (cpu_i v_cpu_j
   + mem_i v_mem_j) >= 0`` (``u_i`` the row minimum of step 2) every placement costs at
   least ``L + sum rc``, so a pair with ``rc_ij > UB - L`` cannot be in a placement
   better than the incumbent ``UB``. When the surviving pairs are few enough
   (``exact_max_pairs``), HiGHS solves the MILP over them; ``min(UB, its dual bound)``
   is then a valid bound for the whole instance and usually proves optimality.

References: M. L. Fisher, R. Jaikumar and L. N. Van Wassenhove, "A multiplier
adjustment method for the generalized assignment problem", Management Science 32(9),
1986 (Lagrangian bounds for the GAP); J. F. Benders and J. A. E. E. van Nunen, "A
property of assignment type mixed integer linear programming problems", Operations
Research Letters 2(2), 1983 (at most ``m`` split jobs in a basic GAP LP solution, ``2m``
with two resources); P. Shaw, "Using constraint programming and local search methods to
solve vehicle routing problems", CP 1998 (large-neighbourhood search).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from twinedge.errors import InfeasibleError
from twinedge.policies.base import PlacementPolicy
from twinedge.policies.placement.base import (
    PlacementProblem,
    PlacementResult,
    candidate_hosts,
    check_totals,
    relative_gap,
    residual_capacity,
)
from twinedge.policies.placement.greedy import local_search, regret_greedy, repair

_EPS = 1e-9
_RC_TOL = 1e-7
_CHUNK = 2_000_000


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


@dataclass
class _Pairs:
    """Candidate (twin, host) pairs, sorted by twin then host."""

    twin: np.ndarray
    host: np.ndarray

    @classmethod
    def build(cls, twin: np.ndarray, host: np.ndarray, m: int) -> _Pairs:
        key = np.unique(twin.astype(np.int64) * m + host.astype(np.int64))
        return cls(key // m, key % m)

    def __len__(self) -> int:
        return int(self.twin.size)


def _solve_lp(problem: PlacementProblem, pairs: _Pairs, time_limit_s: float, rows: str = "both"):
    n, m = problem.n_twins, problem.n_hosts
    p = len(pairs)
    cols = np.arange(p)
    a_eq = sp.csr_array((np.ones(p), (pairs.twin, cols)), shape=(n, p))
    blocks, caps = [], []
    if rows in ("both", "cpu"):
        blocks.append(
            sp.csr_array((problem.demand_cpu_ghz[pairs.twin], (pairs.host, cols)), shape=(m, p))
        )
        caps.append(problem.capacity_cpu_ghz)
    if rows in ("both", "mem"):
        blocks.append(
            sp.csr_array((problem.demand_mem_gb[pairs.twin], (pairs.host, cols)), shape=(m, p))
        )
        caps.append(problem.capacity_mem_gb)
    a_ub = sp.vstack(blocks, format="csr")
    cost = problem.latency_ms[pairs.twin, pairs.host]
    # scipy-stubs lets A_ub/A_eq be dense only; the HiGHS methods take sparse arrays as well
    return linprog(  # type: ignore[call-overload]
        cost,
        A_ub=a_ub,
        b_ub=np.concatenate(caps),
        A_eq=a_eq,
        b_eq=np.ones(n),
        bounds=(0, None),
        method="highs-ipm",
        options={"time_limit": max(time_limit_s, 0.1), "presolve": True},
    )


def _lagrangian(problem: PlacementProblem, v_cpu: np.ndarray, v_mem: np.ndarray):
    """Row minima of the Lagrangian costs and the bound L(v), computed in row chunks."""
    n, m = problem.n_twins, problem.n_hosts
    rowmin = np.empty(n)
    step = max(1, _CHUNK // max(m, 1))
    for a in range(0, n, step):
        red = (
            problem.latency_ms[a : a + step]
            - problem.demand_cpu_ghz[a : a + step, None] * v_cpu[None, :]
            - problem.demand_mem_gb[a : a + step, None] * v_mem[None, :]
        )
        rowmin[a : a + step] = red.min(axis=1)
    bound = float(rowmin.sum() + problem.capacity_cpu_ghz @ v_cpu + problem.capacity_mem_gb @ v_mem)
    return rowmin, bound


def _negative_pairs(
    problem: PlacementProblem,
    pairs: _Pairs,
    u: np.ndarray,
    v_cpu: np.ndarray,
    v_mem: np.ndarray,
    per_twin: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Pruned pairs with a negative LP reduced cost (at most ``per_twin`` per twin)."""
    n, m = problem.n_twins, problem.n_hosts
    step = max(1, _CHUNK // max(m, 1))
    starts = np.searchsorted(pairs.twin, np.arange(0, n + step, step))
    out_t, out_h = [], []
    for c, a in enumerate(range(0, n, step)):
        b = min(a + step, n)
        rc = (
            problem.latency_ms[a:b]
            - u[a:b, None]
            - problem.demand_cpu_ghz[a:b, None] * v_cpu[None, :]
            - problem.demand_mem_gb[a:b, None] * v_mem[None, :]
        )
        s0, s1 = starts[c], starts[c + 1]
        rc[pairs.twin[s0:s1] - a, pairs.host[s0:s1]] = np.inf
        r, h = np.nonzero(rc < -_RC_TOL)
        if r.size == 0:
            continue
        val = rc[r, h]
        order = np.lexsort((val, r))
        r, h = r[order], h[order]
        first = np.searchsorted(r, r, side="left")
        keep = (np.arange(r.size) - first) < per_twin
        out_t.append(r[keep] + a)
        out_h.append(h[keep])
    if not out_t:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_t), np.concatenate(out_h)


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
        k_candidates: nearest hosts per twin in the first LP (default 16); pairs
            outside are priced by LP duals and added when needed, so this only
            affects speed, never the bound.
        rel_gap_tol: stop early once ``(objective - bound) / objective`` is at most
            this (default 0: use the whole time limit unless optimality is proven).
        exact_max_pairs: solve the exact MILP (after reduced-cost fixing) when at
            most this many pairs survive (default 20,000).
        lns_hosts: hosts freed together in one large-neighbourhood step (default 8;
            adapted during the search).
        lns_time_s: time limit of one neighbourhood MILP (default 2).
        max_lns_iter: cap on neighbourhood steps (default None: until the time
            limit); set it for runs that must not depend on machine speed.
        utilisation_cap: load-aware objective: fill every host's CPU to at most this
            fraction and charge service time at the queueing factor ``1 / (1 - cap)``
            (see :meth:`PlacementProblem.with_utilisation_cap`); the bound and gap are
            those of that problem. ``None`` (default): idle service time, full capacity.

    References: Fisher, Jaikumar & Van Wassenhove, Management Science 32(9), 1986;
    Benders & van Nunen, Operations Research Letters 2(2), 1983; Shaw, CP 1998.
    """

    name = "optimal"

    def __init__(
        self,
        time_limit_s: float = 60.0,
        k_candidates: int = 16,
        rel_gap_tol: float = 0.0,
        exact_max_pairs: int = 20_000,
        lns_hosts: int = 8,
        lns_time_s: float = 2.0,
        max_lns_iter: int | None = None,
        utilisation_cap: float | None = None,
    ) -> None:
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0")
        if utilisation_cap is not None and not 0.0 < utilisation_cap <= 1.0:
            raise ValueError(f"utilisation_cap must lie in (0, 1], got {utilisation_cap}")
        self.utilisation_cap = utilisation_cap
        if k_candidates < 1:
            raise ValueError("k_candidates must be >= 1")
        self.time_limit_s = time_limit_s
        self.k_candidates = k_candidates
        self.rel_gap_tol = rel_gap_tol
        self.exact_max_pairs = exact_max_pairs
        self.lns_hosts = lns_hosts
        self.lns_time_s = lns_time_s
        self.max_lns_iter = max_lns_iter

    def __repr__(self) -> str:
        cap = "" if self.utilisation_cap is None else f", utilisation_cap={self.utilisation_cap}"
        return (
            f"OptimalPlacement(time_limit_s={self.time_limit_s}, k_candidates={self.k_candidates},"
            f" rel_gap_tol={self.rel_gap_tol}{cap})"
        )

    # -- phases ---------------------------------------------------------------------

    def _relaxation(self, problem: PlacementProblem, deadline: float, info: dict):
        """LP with column generation. Returns (x, pairs, v_cpu, v_mem, bound) or raises."""
        n, m = problem.n_twins, problem.n_hosts
        allowed_pairs = int(problem.allowed.sum())
        k = min(self.k_candidates, m)
        cand, cand_lat = candidate_hosts(problem.latency_ms, k)
        ok = np.isfinite(cand_lat)
        pairs = _Pairs.build(np.repeat(np.arange(n), k)[ok.ravel()], cand[ok], m)
        best_bound = -np.inf
        rounds = 0
        while True:
            rounds += 1
            res = _solve_lp(problem, pairs, deadline - time.perf_counter())
            if res.status == 2:  # infeasible over the candidate pairs
                if len(pairs) >= allowed_pairs:
                    self._raise_lp_infeasible(problem, pairs, deadline)
                k = min(m, 4 * k)
                cand, cand_lat = candidate_hosts(problem.latency_ms, k)
                ok = np.isfinite(cand_lat)
                pairs = _Pairs.build(np.repeat(np.arange(n), k)[ok.ravel()], cand[ok], m)
                continue
            if res.status != 0:
                info["lp"] = f"LP stopped: {res.message}"
                return None
            u = np.asarray(res.eqlin.marginals, dtype=float)
            dual_ub = np.minimum(np.asarray(res.ineqlin.marginals, dtype=float), 0.0)
            v_cpu, v_mem = dual_ub[:m], dual_ub[m:]
            _, bound = _lagrangian(problem, v_cpu, v_mem)
            best_bound = max(best_bound, bound)
            new_t, new_h = _negative_pairs(problem, pairs, u, v_cpu, v_mem)
            if new_t.size == 0 or time.perf_counter() > deadline:
                break
            pairs = _Pairs.build(
                np.concatenate([pairs.twin, new_t]), np.concatenate([pairs.host, new_h]), m
            )
        info.update(lp_value=float(res.fun), lp_rounds=rounds, lp_pairs=len(pairs))
        return np.asarray(res.x), pairs, v_cpu, v_mem, best_bound

    def _raise_lp_infeasible(self, problem: PlacementProblem, pairs: _Pairs, deadline: float):
        tot = (
            f"total demand {problem.demand_cpu_ghz.sum():.6g} of {problem.capacity_cpu_ghz.sum():.6g}"
            f" cpu_ghz, {problem.demand_mem_gb.sum():.6g} of {problem.capacity_mem_gb.sum():.6g}"
            " mem_gb"
        )
        for res_name in ("cpu", "mem"):
            r = _solve_lp(problem, pairs, max(deadline - time.perf_counter(), 1.0), rows=res_name)
            if r.status == 2:
                unit = "cpu_ghz" if res_name == "cpu" else "mem_gb"
                raise InfeasibleError(
                    f"optimal: infeasible — even the LP relaxation cannot fit the {unit} "
                    f"demand on the allowed hosts ({tot}); the allowed pairs concentrate "
                    f"demand on hosts without enough {unit}. Add capacity or allow more hosts."
                )
        raise InfeasibleError(
            "optimal: infeasible — the LP relaxation cannot fit cpu_ghz and mem_gb together "
            f"on the allowed hosts ({tot}), although each resource alone fits. Add capacity "
            "or allow more hosts."
        )

    def _round(self, problem, x, pairs, deadline, info) -> np.ndarray | None:
        """LP-guided rounding: fix integral twins, MILP the fractional rest."""
        n = problem.n_twins
        order = np.lexsort((-x, pairs.twin))
        first = np.ones(order.size, dtype=bool)
        first[1:] = pairs.twin[order][1:] != pairs.twin[order][:-1]
        top = order[first]
        hosts = np.full(n, -1, dtype=np.int64)
        integral = x[top] > 1 - 1e-6
        hosts[pairs.twin[top][integral]] = pairs.host[top][integral]
        frac = np.flatnonzero(hosts < 0)
        info["lp_fractional_twins"] = int(frac.size)
        if frac.size == 0:
            return hosts
        res_cpu, res_mem = residual_capacity(problem, hosts)
        sel = np.isin(pairs.twin, frac)
        _, sub, _, _ = _sub_milp(
            problem,
            frac,
            pairs.twin[sel],
            pairs.host[sel],
            np.maximum(res_cpu, 0),
            np.maximum(res_mem, 0),
            min(2.0, max(deadline - time.perf_counter(), 0.1)),
            rel_gap=1e-4,
        )
        if sub is not None:
            hosts[frac] = sub
            info["rounding"] = "milp"
            return hosts
        hosts = repair(problem, hosts)
        if np.all(hosts >= 0):
            info["rounding"] = "repair"
            return hosts
        return None

    def _exact(self, problem, rc_fn, lag, incumbent, ub, lb, deadline, info):
        """MILP over the pairs that survive reduced-cost fixing. Returns (hosts, ub, lb).

        ``lag`` is L(v) for the multipliers behind ``rc_fn``; a pair whose reduced cost
        exceeds ``ub - lag`` cannot be part of a placement cheaper than ``ub``. HiGHS
        gets ``ub`` as a cutoff, so "infeasible" means: nothing beats the incumbent.
        """
        budget = deadline - time.perf_counter()
        if budget <= 0.05:
            return incumbent, ub, lb
        limit = ub - lag + 1e-6 if np.isfinite(ub) else np.inf
        t, h = rc_fn(limit)
        if t.size > self.exact_max_pairs:
            return incumbent, ub, lb
        if np.unique(t).size < problem.n_twins:  # cannot happen with a finite ub
            return incumbent, ub, lb
        cutoff = ub - 1e-7 if np.isfinite(ub) else None
        status, sub, obj, dual = _sub_milp(
            problem,
            np.arange(problem.n_twins),
            t,
            h,
            problem.capacity_cpu_ghz,
            problem.capacity_mem_gb,
            budget,
            cutoff=cutoff,
        )
        info["exact_milp"] = {
            "pairs": int(t.size),
            "status": int(status),
            "s": round(time.perf_counter() - deadline + budget, 3),
        }
        if sub is not None and obj < ub:
            incumbent, ub = sub, problem.objective_ms(sub)
            info.setdefault("trace", []).append(
                (round(time.perf_counter() - info["_t0"], 3), float(ub))
            )
        cap = ub if cutoff is None else min(ub, cutoff)
        if status == 0 and sub is not None:
            lb = max(lb, min(ub, obj, dual if np.isfinite(dual) else obj))
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
            lb = max(lb, cap)  # nothing cheaper than the cutoff exists
        elif np.isfinite(dual):
            lb = max(lb, min(cap, dual))
        return incumbent, ub, lb

    def _lns(
        self,
        problem,
        hosts,
        ub,
        lb,
        rc_row,
        v_cpu,
        v_mem,
        cand,
        rng,
        deadline,
        info,
        max_stale=None,
    ):
        """Large-neighbourhood search: re-solve the twins of a few related hosts exactly."""
        m = problem.n_hosts
        if m < 2:
            return hosts, ub
        lat = problem.latency_ms
        q = min(self.lns_hosts, m)
        it = improved = stale = run_stale = 0
        trace = info.setdefault("trace", [])
        while time.perf_counter() < deadline - 0.05:
            if self.max_lns_iter is not None and it >= self.max_lns_iter:
                break
            if _proven(ub, lb) or relative_gap(ub, lb) <= self.rel_gap_tol:
                break
            if max_stale is not None and run_stale >= max_stale:
                break
            it += 1
            res_cpu, res_mem = residual_capacity(problem, hosts)
            loss = np.bincount(hosts, weights=rc_row(hosts), minlength=m)
            loss += -v_cpu * res_cpu - v_mem * res_mem
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
        deadline = t0 + self.time_limit_s
        info: dict = {"_t0": t0}
        if self.utilisation_cap is not None:  # the load-aware problem is the one solved
            problem = problem.with_utilisation_cap(self.utilisation_cap)
            info["utilisation_cap"] = self.utilisation_cap
        check_totals(problem)
        n, m = problem.n_twins, problem.n_hosts
        lat = problem.latency_ms
        if n == 0:  # nothing to place: the empty placement is optimal
            return PlacementResult("optimal", np.zeros(0, dtype=np.int64), 0.0, 0.0, 0.0)

        relax = self._relaxation(problem, deadline, info)
        incumbent: np.ndarray | None = None
        ub = np.inf
        lb = -np.inf
        if relax is not None:
            x, pairs, v_cpu, v_mem, lb = relax
            incumbent = self._round(problem, x, pairs, deadline, info)
        else:
            v_cpu = v_mem = np.zeros(m)
        rowmin, lag = _lagrangian(problem, v_cpu, v_mem)
        lb = max(lb, lag)
        info["lp_bound_ms"] = float(lb)
        info["t_relaxation_s"] = round(time.perf_counter() - t0, 3)

        def rc_row(hosts: np.ndarray) -> np.ndarray:
            return (
                lat[np.arange(n), hosts]
                - problem.demand_cpu_ghz * v_cpu[hosts]
                - problem.demand_mem_gb * v_mem[hosts]
                - rowmin
            )

        def rc_pairs(limit: float) -> tuple[np.ndarray, np.ndarray]:
            out_t, out_h, total = [], [], 0
            step = max(1, _CHUNK // max(m, 1))
            for a in range(0, n, step):
                rc = (
                    lat[a : a + step]
                    - problem.demand_cpu_ghz[a : a + step, None] * v_cpu[None, :]
                    - problem.demand_mem_gb[a : a + step, None] * v_mem[None, :]
                    - rowmin[a : a + step, None]
                )
                r, h = np.nonzero((rc <= limit) & np.isfinite(rc))
                total += r.size
                if total > self.exact_max_pairs:
                    return np.empty(total, np.int64), np.empty(total, np.int64)
                out_t.append(r + a)
                out_h.append(h)
            return np.concatenate(out_t), np.concatenate(out_h)

        # a second opinion from the regret greedy (cheap, sometimes better)
        alt = regret_greedy(problem, 10)
        if np.any(alt < 0):
            alt = repair(problem, alt)
        for cand_hosts in (incumbent, alt):
            if cand_hosts is not None and np.all(cand_hosts >= 0):
                obj = problem.objective_ms(cand_hosts)
                if obj < ub:
                    incumbent, ub = cand_hosts, obj
        k = min(max(self.k_candidates, 8), m)
        cand, _ = candidate_hosts(lat, k)
        if incumbent is not None:
            incumbent = local_search(problem, incumbent, cand, deadline)
            ub = problem.objective_ms(incumbent)
        info["t_heuristic_s"] = round(time.perf_counter() - t0, 3)
        info["heuristic_ms"] = float(ub)
        info["trace"] = [(info["t_heuristic_s"], float(ub))]

        def lns(until: float, max_stale: int | None = None) -> None:
            nonlocal incumbent, ub
            if incumbent is not None and not _proven(ub, lb):
                incumbent, ub = self._lns(
                    problem,
                    incumbent,
                    ub,
                    lb,
                    rc_row,
                    v_cpu,
                    v_mem,
                    cand,
                    rng,
                    until,
                    info,
                    max_stale=max_stale,
                )

        def small() -> bool:
            limit = ub - lag + 1e-6 if np.isfinite(ub) else np.inf
            return rc_pairs(limit)[0].size <= self.exact_max_pairs

        if not _proven(ub, lb) and small():
            # small instance: a short LNS for a better cutoff, then prove it exactly
            now = time.perf_counter()
            lns(min(deadline, now + min(5.0, 0.1 * (deadline - now))), max_stale=2 * m)
            incumbent, ub, lb = self._exact(
                problem, rc_pairs, lag, incumbent, ub, lb, deadline, info
            )
        else:
            lns(deadline)
            if not _proven(ub, lb) and small():
                incumbent, ub, lb = self._exact(
                    problem, rc_pairs, lag, incumbent, ub, lb, deadline, info
                )
        info.pop("_t0")
        if incumbent is None:
            lp_txt = (
                f"the LP relaxation is feasible with bound {lb:.6g} ms"
                if relax is not None
                else "the LP relaxation did not finish either"
            )
            raise InfeasibleError(
                f"optimal: no feasible placement found within time_limit_s={self.time_limit_s} "
                f"({lp_txt}); the instance may be infeasible or very tight. Raise "
                "time_limit_s or add capacity."
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
