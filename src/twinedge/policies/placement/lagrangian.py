"""Lagrangian relaxation of the capacity rows: an anytime lower bound for placement.

Relaxing both capacity rows of the placement problem (see :mod:`.base`) with
multipliers ``lam_cpu, lam_mem >= 0`` leaves one independent choice per twin::

    L(lam) = sum_i min_j (T_ij + cpu_i lam_cpu_j + mem_i lam_mem_j)     (min over ALL allowed j)
             - sum_j (CPU_j lam_cpu_j + MEM_j lam_mem_j)

For any feasible placement ``a``, ``sum T a = sum_ij (T_ij + lam . d_i) a_ij - sum_j
lam_j . used_j``; every twin's term is at least its row minimum and ``lam_j . used_j <=
lam_j . cap_j`` (``lam >= 0``, ``used <= cap``), so ``sum T a >= L(lam)``: **every**
``lam >= 0`` gives a valid lower bound, at every iteration of whatever method moves
``lam``. The subproblem has the integrality property, so ``max L`` equals the LP
relaxation's value (Geoffrion 1974) — the bound the LP would give, without solving it.

``L`` is concave and piecewise linear; ``used(x(lam)) - cap`` is a subgradient. It is
maximised by the subgradient method with the Polyak/Held–Wolfe–Crowder step
``lam += theta (target - L) / |g|^2 g`` (projected on ``lam >= 0``), ``theta`` halved
after a run of iterations without progress, and a Camerini–Fratta–Maffioli deflection
of the direction against zig-zagging. Each iteration is one vectorised pass over each
twin's candidate hosts (its ``k`` lowest-latency ones), exact over all hosts thanks to
the ``tau_i`` fallback of :class:`CapacityRelaxation`; at 10,000 x 300 it costs tens of
milliseconds on a busy 2-core machine.

The row minimum is always the one over every allowed host: candidate lists decide
speed only. What the class needs from a problem is, per twin, its ``k`` cheapest hosts
with their latencies, ``tau_i`` (the lowest latency among the others) and, for the few
rows where the candidates do not settle the minimum, that twin's full row — so a
problem kept as sparse candidate lists can feed it as long as it can bound the hosts
it leaves out. Restricting twins to a few hosts is done only where placements are
built (the regret greedy on :meth:`CapacityRelaxation.reduced_cost_matrix`, the
neighbourhood search), never for the bound.

References: M. L. Fisher, "The Lagrangian relaxation method for solving integer
programming problems", Management Science 27(1), 1981; M. Held, P. Wolfe and H. P.
Crowder, "Validation of subgradient optimization", Mathematical Programming 6, 1974;
P. M. Camerini, L. Fratta and F. Maffioli, "On improving relaxation methods by modified
gradient techniques", Mathematical Programming Study 3, 1975; A. M. Geoffrion,
"Lagrangean relaxation for integer programming", Mathematical Programming Study 2, 1974.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from twinedge.policies.placement.base import PlacementProblem, candidate_hosts

_CHUNK = 250_000


@dataclass
class LagrangianPoint:
    """``L(lam)`` and the relaxed solution behind it.

    Attributes:
        lam: ``(2, n_hosts)`` multipliers (row 0 cpu, row 1 mem), per unit of demand.
        value: ``L(lam)``, a lower bound on every feasible placement's objective.
        rowmin: ``(n_twins,)`` each twin's smallest Lagrangian cost.
        host: ``(n_twins,)`` the host reaching it (the relaxed placement ``x(lam)``).
        excess: ``(2, n_hosts)`` ``used - capacity`` of ``x(lam)``: the subgradient.
    """

    lam: np.ndarray
    value: float
    rowmin: np.ndarray
    host: np.ndarray
    excess: np.ndarray


@dataclass
class AscentLog:
    """What the subgradient ascent did."""

    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    trace: list[tuple[int, float]] = field(default_factory=list)


class CapacityRelaxation:
    """Evaluates ``L(lam)`` exactly, over all allowed hosts, by sweeping candidate pairs.

    Every twin keeps its ``k`` lowest-latency hosts as candidates and ``tau_i``, the
    lowest latency among the others (``inf`` when it has no others). Because ``lam >=
    0``, a non-candidate host costs at least ``tau_i`` in the relaxation, so the row
    minimum over the candidates is the true row minimum whenever it is below ``tau_i``;
    only the few rows where it is not are swept in full. ``L(lam)`` is therefore exact
    and costs about ``n k`` operations instead of ``n m``.

    Parameters:
        problem: the placement problem (its dense ``latency_ms``; ``inf`` = not allowed).
        k: candidate hosts per twin (default 16).

    Examples:
        >>> p = PlacementProblem([[1.0, 3.0], [1.0, 2.0]], [1.0, 1.0], [0.0, 0.0],
        ...                      [1.0, 1.0], [1.0, 1.0])
        >>> r = CapacityRelaxation(p, k=1)
        >>> r.evaluate(np.zeros((2, 2))).value  # both twins on host 0: 1 + 1
        2.0
        >>> r.evaluate(np.array([[1.0, 0.0], [0.0, 0.0]])).value  # (2 + 2) - 1
        3.0
    """

    def __init__(self, problem: PlacementProblem, k: int = 16) -> None:
        self.problem = problem
        n, m = problem.n_twins, problem.n_hosts
        self.n, self.m = n, m
        self.demand = np.stack([problem.demand_cpu_ghz, problem.demand_mem_gb])
        self.capacity = np.stack([problem.capacity_cpu_ghz, problem.capacity_mem_gb])
        self.full_rows = 0  # rows swept in full by the last evaluation
        self._cand: dict[int, np.ndarray] = {}
        self._build(k)

    def _build(self, k: int) -> None:
        n, m = self.n, self.m
        k = int(min(max(k, 1), m))
        self.k = k
        cand, cand_lat = candidate_hosts(self.problem.latency_ms, min(k + 1, m))
        self.tau = cand_lat[:, k] if k < m else np.full(n, np.inf)
        # (n, k) candidate hosts and latencies; a twin with fewer allowed hosts has
        # inf-latency padding, which no minimum ever picks (it has an allowed host)
        self.cand_host = cand[:, :k]
        self.cand_cost = cand_lat[:, :k]
        if n and not np.isfinite(self.cand_cost[:, 0]).all():
            raise ValueError("every twin needs an allowed host (call check_totals first)")

    def _full(self, lam: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Dense ``T_ij + lam . d_i`` for ``rows``."""
        lat = self.problem.latency_ms[rows]
        d = self.demand[:, rows]
        return lat + d[0][:, None] * lam[0][None, :] + d[1][:, None] * lam[1][None, :]

    def _cand_costs(self, lam: np.ndarray) -> np.ndarray:
        """``(n, k)`` Lagrangian costs of the candidate pairs."""
        c = self.cand_cost + self.demand[0][:, None] * lam[0][self.cand_host]
        c += self.demand[1][:, None] * lam[1][self.cand_host]
        return c

    def evaluate(self, lam: np.ndarray) -> LagrangianPoint:
        """``L(lam)`` with its relaxed placement and subgradient (``lam >= 0``, shape
        ``(2, n_hosts)``)."""
        n, m = self.n, self.m
        c = self._cand_costs(lam)
        arg = np.argmin(c, axis=1)
        rows_all = np.arange(n)
        rowmin = c[rows_all, arg]
        host = self.cand_host[rows_all, arg].astype(np.int64)
        wide = np.flatnonzero(rowmin >= self.tau)
        self.full_rows = int(wide.size)
        step = max(1, _CHUNK // max(m, 1))
        for a in range(0, wide.size, step):
            rows = wide[a : a + step]
            full = self._full(lam, rows)
            best = np.argmin(full, axis=1)
            host[rows] = best
            rowmin[rows] = full[np.arange(rows.size), best]
        used = np.stack(
            [
                np.bincount(host, weights=self.demand[0], minlength=m),
                np.bincount(host, weights=self.demand[1], minlength=m),
            ]
        )
        value = float(rowmin.sum() - (lam * self.capacity).sum())
        return LagrangianPoint(lam, value, rowmin, host, used - self.capacity)

    def reduced_cost_matrix(self, lam: np.ndarray) -> np.ndarray:
        """Dense ``T_ij + lam . d_i`` (``inf`` where not allowed), for the regret greedy."""
        return self._full(lam, np.arange(self.n))

    def pairs_within(
        self, point: LagrangianPoint, limit: float, max_count: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Allowed pairs whose reduced cost ``T_ij + lam . d_i - rowmin_i`` is at most
        ``limit``; ``None`` when more than ``max_count`` qualify.

        By the identity in the module docstring, every placement costs at least
        ``L(lam) + sum_i rc_{i,a(i)}``, so a pair with ``rc > UB - L(lam)`` is in no
        placement cheaper than ``UB``: dropping it is exact (reduced-cost fixing).
        Non-candidate hosts cost at least ``tau_i``, so only rows with ``tau_i -
        rowmin_i <= limit`` are swept in full.
        """
        lam, rowmin = point.lam, point.rowmin
        wide = np.flatnonzero((self.tau - rowmin <= limit) & np.isfinite(self.tau))
        rc = self._cand_costs(lam) - rowmin[:, None]
        rc[wide] = np.inf
        r, c = np.nonzero((rc <= limit) & np.isfinite(rc))
        out_t, out_h = [r], [self.cand_host[r, c]]
        total = int(r.size)
        if total > max_count:
            return None
        step = max(1, _CHUNK // max(self.m, 1))
        for a in range(0, wide.size, step):
            rows = wide[a : a + step]
            full = self._full(lam, rows) - rowmin[rows, None]
            r, h = np.nonzero((full <= limit) & np.isfinite(full))
            total += r.size
            if total > max_count:
                return None
            out_t.append(rows[r])
            out_h.append(h)
        return np.concatenate(out_t).astype(np.int64), np.concatenate(out_h).astype(np.int64)

    def candidates(self, k: int) -> np.ndarray:
        """The ``k`` lowest-latency hosts of every twin, nearest first (cached)."""
        k = int(min(max(k, 1), self.m))
        if k not in self._cand:
            self._cand[k] = candidate_hosts(self.problem.latency_ms, k)[0]
        return self._cand[k]

    def widen(self) -> bool:
        """Double the candidates when the rows the last evaluation swept in full (the
        multipliers made those twins look beyond their list) cost more than the
        candidate sweep itself. Speed only: the value of ``L`` never depends on ``k``.
        Returns whether it widened."""
        if self.full_rows * self.m <= self.n * self.k or self.k >= self.m:
            return False
        self._build(2 * self.k)
        return True


def ascend(
    relax: CapacityRelaxation,
    start: LagrangianPoint,
    deadline: float,
    *,
    upper: float = np.inf,
    max_iter: int = 1000,
    patience: int = 15,
    theta: float = 1.0,
    min_theta: float = 1e-4,
    log: AscentLog | None = None,
) -> tuple[LagrangianPoint, float]:
    """Subgradient ascent on ``L`` from ``start``; returns the best point and final ``theta``.

    ``upper`` (an incumbent's objective) is the Polyak target; without one the target
    is 2 % above the best bound so far. Stops at ``deadline``, after ``max_iter``
    iterations, or when ``theta`` falls below ``min_theta`` or the subgradient
    vanishes (``x(lam)`` is then feasible and, with complementary slackness, optimal).
    Deterministic: no randomness.
    """
    t0 = time.perf_counter()
    best = cur = start
    direction = np.zeros_like(start.lam)
    stale = 0
    # resource rows scaled by their mean capacity so one step suits both
    scale = relax.capacity.mean(axis=1, keepdims=True)
    scale = np.where(scale > 1e-9, scale, 1.0)
    it = 0
    for it in range(1, max_iter + 1):
        if time.perf_counter() > deadline or theta < min_theta:
            break
        g = cur.excess / scale
        g = np.where((cur.lam <= 0) & (g < 0), 0.0, g)  # projected: lam stays at 0
        if not np.any(g):
            break
        # Camerini–Fratta–Maffioli: deflect by the last direction when they disagree
        dot = float((g * direction).sum())
        beta = max(0.0, -1.5 * dot / max(float((direction**2).sum()), 1e-300))
        direction = g + beta * direction
        norm2 = float((direction**2).sum())
        if not norm2 > 0.0 or not np.isfinite(norm2):  # degenerate (tiny demands)
            break
        target = upper if np.isfinite(upper) else best.value + 0.02 * abs(best.value) + 1e-9
        target = max(target, best.value + 1e-9 * (abs(best.value) + 1.0))
        step = theta * (target - cur.value) / norm2
        lam = np.maximum(cur.lam + step * direction / scale, 0.0)
        cur = relax.evaluate(lam)
        if cur.value > best.value + 1e-12 * (abs(best.value) + 1.0):
            best = cur
            stale = 0
        else:
            stale += 1
            if stale >= patience:
                theta /= 2.0
                stale = 0
                cur = best  # restart from the best multipliers
                direction = np.zeros_like(direction)
        if relax.widen():
            cur = relax.evaluate(cur.lam)
        if log is not None and it % 25 == 0:
            log.trace.append((log.iterations + it, best.value))
    if log is not None:
        log.iterations += it
        log.evaluations += it
        log.seconds += time.perf_counter() - t0
    return best, theta
