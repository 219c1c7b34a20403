"""Offloading policies: ``policy(batch, view, rng) -> Assignment`` is the one contract.

Built-ins are small classes configured in ``__init__`` (scikit-learn style: their
parameters are their ``__init__`` keywords, :meth:`get_params` reads them); a plain
function with the same signature works wherever a policy is accepted, and may return an
:class:`Assignment` or a ``(host, local_fraction)`` pair. Every policy chooses among the
options of :meth:`TaskProblem.options` (local; whole on a candidate host; split with a
candidate host) under the hosts' free Gcycles of the step:

- ``local``: every task on its device.
- ``nearest``: the nearest candidate host (lowest backbone latency) with room, whole.
- ``greedy``: each task, earliest deadline first, takes its minimum-latency option
  that still has room.
- ``deadline-energy``: the minimum device energy among the options that meet the
  deadline; the minimum latency when none does.
- ``optimal``: the exact per-batch minimum of the objective (a MILP through HiGHS), with
  its bound, gap and status in ``Assignment.info``.
- ``lyapunov``: drift-plus-penalty (Neely 2010) under a long-run average device power
  budget: a virtual queue per device, each step minimising ``V * penalty + Q * energy``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from twinedge.errors import OffloadError
from twinedge.offload.tasks import TaskBatch, TaskProblem

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

__all__ = [
    "OFFLOAD_POLICIES",
    "Assignment",
    "DeadlineEnergy",
    "Greedy",
    "Local",
    "Lyapunov",
    "Nearest",
    "OffloadPolicy",
    "Optimal",
    "check_assignment",
    "resolve_offload_policy",
]


@dataclass(frozen=True)
class Assignment:
    """An offloading decision: task ``i`` runs ``local_fraction[i]`` on its device and
    the rest on ``host[i]`` (an index into ``world.hosts``; ``-1`` wholly on the device).
    ``info`` carries what the policy reports (``optimal``: objective, bound, gap, status).

    Examples:
        >>> a = Assignment([-1, 3], [1.0, 0.0])
        >>> a.host.tolist(), a.offloaded.tolist()
        ([-1, 3], [False, True])
    """

    host: np.ndarray
    local_fraction: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h = np.asarray(self.host)
        if h.size and h.dtype.kind not in "iu":
            raise OffloadError(f"assignment: host must be integer indices, got dtype {h.dtype}")
        f = np.asarray(self.local_fraction, dtype=float)
        object.__setattr__(self, "host", h.astype(np.int64).reshape(-1))
        object.__setattr__(self, "local_fraction", f.reshape(-1))

    @property
    def offloaded(self) -> np.ndarray:
        """Whether any of each task runs on a host."""
        return (self.host >= 0) & (self.local_fraction < 1.0)

    @classmethod
    def of(cls, answer: Any, label: str = "policy") -> Assignment:
        """Normalise a policy's answer (an ``Assignment`` or a ``(host, fraction)`` pair)."""
        if isinstance(answer, Assignment):
            return answer
        if isinstance(answer, tuple | list) and len(answer) == 2:
            return cls(answer[0], answer[1])
        raise OffloadError(
            f"offloading policy {label} returned {type(answer).__name__}; expected an "
            "Assignment or a (host, local_fraction) pair"
        )


def check_assignment(problem: TaskProblem, a: Assignment, label: str = "policy") -> None:
    """Check ``a`` against ``problem``: one entry per task, hosts that exist and that the
    task may use, fractions in [0, 1] (a split only for a splittable task), and no host
    given more Gcycles than it has free this step.

    Raises:
        OffloadError: naming the task or host and the numbers.
    """
    n = len(problem)
    if a.host.shape != (n,) or a.local_fraction.shape != (n,):
        raise OffloadError(
            f"offloading policy {label}: assignment has {a.host.size} hosts and "
            f"{a.local_fraction.size} fractions for {n} tasks"
        )
    if n == 0:
        return
    f = a.local_fraction
    if not np.all(np.isfinite(f)) or f.min() < 0 or f.max() > 1:
        raise OffloadError(f"offloading policy {label}: local_fraction must lie in [0, 1]")
    h = a.host
    if h.min() < -1 or h.max() >= problem.n_hosts:
        raise OffloadError(
            f"offloading policy {label}: host index out of range [-1, {problem.n_hosts - 1}]"
        )
    split = (h >= 0) & (f > 0) & (f < 1)
    bad = split & ~problem.batch.splittable
    if bad.any():
        i = int(np.argmax(bad))
        raise OffloadError(f"offloading policy {label}: task {i} may not split (fraction {f[i]})")
    off = a.offloaded
    if off.any():
        hit = problem.cand[off] == h[off][:, None]
        ok = (hit & problem.cand_ok[off]).any(axis=1)
        if not ok.all():
            i = int(np.flatnonzero(off)[np.argmin(ok)])
            raise OffloadError(
                f"offloading policy {label}: task {i} may not run on host {int(h[i])} "
                "(not a candidate of its access point, or a tier its kind may not use)"
            )
    used = np.bincount(
        h[off], weights=(1.0 - f[off]) * problem.batch.gcycles[off], minlength=problem.n_hosts
    )
    over = used > problem.cap_gcycles * (1 + 1e-9) + 1e-9
    if over.any():
        j = int(np.argmax(over))
        raise OffloadError(
            f"offloading policy {label}: host {j} is given {used[j]:.6g} Gcycles; it has "
            f"{problem.cap_gcycles[j]:.6g} free this step"
        )


class OffloadPolicy:
    """Base class of the built-in offloading policies (scikit-learn style parameters)."""

    name = "policy"

    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __call__(self, batch: TaskBatch, view: NetworkView, rng: np.random.Generator) -> Assignment:
        return self.assign(TaskProblem.of(batch, view), rng)

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        raise NotImplementedError


def _pick(problem: TaskProblem, choice: np.ndarray, info: dict | None = None) -> Assignment:
    """The assignment of option ``choice[i]`` (a column of :meth:`TaskProblem.options`)."""
    host, frac = problem.latency_options()[:2]
    rows = np.arange(len(problem))
    return Assignment(host[rows, choice], frac[rows, choice], info or {})


_EXACT_ROUNDS = 8


def _assign_by_score(
    problem: TaskProblem, score: np.ndarray, priority: np.ndarray | None = None
) -> np.ndarray:
    """Each task takes its lowest-score allowed option with room, tasks in ``priority``
    order (earliest deadline first when ``None``) competing for a host's free Gcycles.

    Vectorised in rounds: every pending task proposes its best option; per host the
    proposals are accepted in priority order while they fit; an option that no longer
    fits is struck for the task, which proposes again. After ``_EXACT_ROUNDS`` rounds a
    host that still turns tasks away is struck for every task it turned away (so the
    rounds stay few when many small tasks crowd one host). The local option (column 0)
    needs no room, so every task ends up with an option."""
    n = len(problem)
    choice = np.zeros(n, dtype=np.int64)
    if n == 0:
        return choice
    host, _, _, gcyc, allowed = problem.latency_options()
    s = np.where(allowed, score, np.inf)
    s[:, 0] = np.where(np.isfinite(score[:, 0]), score[:, 0], np.finfo(float).max)
    remaining = problem.cap_gcycles.astype(float).copy()
    order = np.argsort(problem.batch.deadline_ms, kind="stable") if priority is None else priority
    pending = np.asarray(order, dtype=np.int64)
    rounds = 0
    while pending.size:
        rounds += 1
        # the first round asks every task: no copy of the score matrix in their order
        best = np.argmin(s, axis=1)[pending] if rounds == 1 else np.argmin(s[pending], axis=1)
        choice[pending] = best
        off = best > 0
        tasks, opt = pending[off], best[off]
        if tasks.size == 0:
            break
        h = host[tasks, opt]
        g = gcyc[tasks, opt]
        by_host = np.argsort(h, kind="stable")  # keeps priority order within a host
        hs, gs = h[by_host], g[by_host]
        start = np.r_[0, np.flatnonzero(np.diff(hs)) + 1]
        csum = np.cumsum(gs)
        base = np.repeat(csum[start] - gs[start], np.diff(np.r_[start, hs.size]))
        fits = csum - base <= remaining[hs] * (1 + 1e-12) + 1e-12
        # a prefix per host: once one does not fit, the rest of that host waits a round
        bad_before = np.cumsum(~fits) - np.repeat(
            np.cumsum(~fits)[start] - (~fits)[start], np.diff(np.r_[start, hs.size])
        )
        acc = fits & (bad_before == 0)
        np.subtract.at(remaining, hs[acc], gs[acc])
        rej = by_host[~acc]
        rt, ro = tasks[rej], opt[rej]
        struck = gcyc[rt, ro] > remaining[host[rt, ro]] * (1 + 1e-12) + 1e-12
        if rounds >= _EXACT_ROUNDS:
            struck[:] = True
        s[rt[struck], ro[struck]] = np.inf
        keep = np.zeros(n, dtype=bool)
        keep[rt] = True
        pending = pending[keep[pending]]
    return choice


class Local(OffloadPolicy):
    """Every task on its own device."""

    name = "local"

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        return _pick(problem, np.zeros(len(problem), dtype=np.int64))


class Nearest(OffloadPolicy):
    """Each task wholly on the nearest candidate host (lowest backbone latency from its
    access point) that has room, on its device when none has."""

    name = "nearest"

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        n, c = problem.cand.shape
        score = np.full((n, 1 + 2 * c), np.inf)
        score[:, 0] = c + 1.0
        score[:, 1 : 1 + c] = np.arange(c)[None, :]
        return _pick(problem, _assign_by_score(problem, score))


class Greedy(OffloadPolicy):
    """Earliest deadline first, each task takes its minimum-latency option with room."""

    name = "greedy"

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        return _pick(problem, _assign_by_score(problem, problem.latency_options()[2]))


class DeadlineEnergy(OffloadPolicy):
    """The minimum device energy among the options that meet the deadline (latency
    breaks ties); the minimum latency when none does. Earliest deadline first."""

    name = "deadline-energy"

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        _, _, lat, dev, _, _, on_time, _, _ = problem.options()
        big = 1e6 * (1.0 + dev.max(initial=0.0))
        score = np.where(on_time, dev + 1e-9 * lat, big + lat)
        return _pick(problem, _assign_by_score(problem, score))


class Optimal(OffloadPolicy):
    """The exact minimum of the batch's objective (:class:`TaskProblem`) over the options
    of every task under the hosts' free Gcycles: a generalised assignment MILP solved by
    HiGHS (``scipy.optimize.milp``). Options that cost at least as much as running
    locally are pruned first (local needs no capacity, so they are never needed).

    ``Assignment.info`` holds ``objective``, ``bound`` (HiGHS's dual bound: no
    assignment is cheaper), ``gap`` (relative), ``status`` (``optimal``, ``time_limit``,
    ``no_solution``) and ``solve_s``. Without a solution in ``time_limit_s`` every task
    runs locally (always feasible) and the status says so.

    Parameters:
        time_limit_s: HiGHS's time limit.
        mip_rel_gap: the relative gap at which HiGHS stops.
    """

    name = "optimal"

    def __init__(self, time_limit_s: float = 10.0, mip_rel_gap: float = 1e-6):
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        t0 = time.perf_counter()
        n = len(problem)
        if n == 0:
            return _pick(problem, np.zeros(0, np.int64), _info(0.0, 0.0, "optimal", t0))
        host, _, _, _, _, gcyc, _, cost, allowed = problem.options()
        keep = _prune(problem, host, gcyc, cost, allowed)
        ti, oj = np.nonzero(keep)
        nv = ti.size
        c = cost[ti, oj]
        a_eq = sp.csr_array((np.ones(nv), (ti, np.arange(nv))), shape=(n, nv))
        off = oj > 0
        cols = np.flatnonzero(off)
        a_cap = sp.csr_array(
            (gcyc[ti[cols], oj[cols]], (host[ti[cols], oj[cols]], cols)),
            shape=(problem.n_hosts, nv),
        )
        res = milp(
            c,
            constraints=[
                LinearConstraint(a_eq, 1.0, 1.0),
                LinearConstraint(a_cap, -np.inf, problem.cap_gcycles),
            ],
            integrality=np.ones(nv, dtype=np.int64),
            bounds=Bounds(0.0, 1.0),
            options={"time_limit": self.time_limit_s, "mip_rel_gap": self.mip_rel_gap},
        )
        if res.x is None:
            choice = np.zeros(n, dtype=np.int64)
            obj = float(cost[:, 0].sum())
            bound = getattr(res, "mip_dual_bound", None)
            info = _info(obj, float(bound) if bound is not None else -np.inf, "no_solution", t0)
            return _pick(problem, choice, info)
        x = np.asarray(res.x)
        choice = np.zeros(n, dtype=np.int64)
        sel = x > 0.5
        choice[ti[sel]] = oj[sel]
        obj = float(cost[np.arange(n), choice].sum())
        bound = float(getattr(res, "mip_dual_bound", obj))
        status = "optimal" if res.status == 0 else "time_limit"
        return _pick(problem, choice, _info(obj, min(bound, obj), status, t0))


def _prune(
    problem: TaskProblem,
    host: np.ndarray,
    gcyc: np.ndarray,
    cost: np.ndarray,
    allowed: np.ndarray,
) -> np.ndarray:
    """The options an optimum may need (the rest are dominated; each rule keeps the
    optimum's value):

    1. an option that costs at least as much as local (local needs no capacity);
    2. whole on a host when the split with the same host costs no more (it needs less);
    3. on a host with room for every task that could use it (free Gcycles at least the
       sum of each such task's largest option there), every option but the task's
       cheapest on such hosts: moving a task to that one never breaks a capacity.
    """
    n, o = cost.shape
    c = (o - 1) // 2
    keep = allowed & (cost < cost[:, :1] - 1e-12)
    keep[:, 1 : 1 + c] &= ~(keep[:, 1 + c :] & (cost[:, 1 + c :] <= cost[:, 1 : 1 + c]))
    keep[:, 0] = True
    off = keep.copy()
    off[:, 0] = False
    # per task and host, the largest work of its options there, summed over tasks
    rows, cols = np.nonzero(off)
    if n * problem.n_hosts > 5_000_000:  # rule 3 needs an (n, H) table
        return keep
    per = np.zeros((n, problem.n_hosts))
    np.maximum.at(per, (rows, host[rows, cols]), gcyc[rows, cols])
    free = per.sum(axis=0) <= problem.cap_gcycles
    roomy = off & free[np.where(off, host, 0)]
    if roomy.any():
        masked = np.where(roomy, cost, np.inf)
        best = np.argmin(masked, axis=1)
        has = roomy.any(axis=1)
        drop = roomy.copy()
        drop[np.flatnonzero(has), best[has]] = False
        keep &= ~drop
    return keep


def _info(obj: float, bound: float, status: str, t0: float) -> dict[str, Any]:
    gap = 0.0 if obj == bound else (obj - bound) / max(abs(obj), 1e-12)
    return {
        "objective": obj,
        "bound": bound,
        "gap": gap,
        "status": status,
        "solve_s": time.perf_counter() - t0,
    }


class Lyapunov(OffloadPolicy):
    """Online drift-plus-penalty (Neely, *Stochastic Network Optimization with
    Application to Communication and Queueing Systems*, 2010, ch. 3) under a long-run
    average device power budget.

    Every device ``d`` keeps a virtual queue of the energy it spent beyond its budget::

        Q_d(t + 1) = max(Q_d(t) + E_d(t) - budget_w * step_s, 0)

    and every step each task minimises ``V * penalty + Q_d * device_j`` over its options
    (earliest deadline first, with capacity), where ``penalty`` is the objective's term
    without the device energy: ``miss_penalty * late + energy_weight * server_j +
    latency_weight * latency_s``. A stable ``Q`` means the budget is met on average; the
    theory bounds the time-average penalty within ``O(1/V)`` of the optimum and the
    queue, hence the budget's violation over ``T`` steps (at most ``Q(T) / (T step_s)``
    W), by ``O(V)``: ``V`` trades penalty against how fast the budget is met.

    Parameters:
        budget_w: the long-run average device power for tasks, W (J per s).
        v: the trade-off V (J-equivalent weight of the penalty).
    """

    name = "lyapunov"

    def __init__(self, budget_w: float = 0.1, v: float = 1.0):
        self.budget_w = budget_w
        self.v = v
        self.queues_j = np.zeros(0)

    def reset(self) -> None:
        """Empty every virtual queue."""
        self.queues_j = np.zeros(0)

    def __call__(self, batch: TaskBatch, view: NetworkView, rng: np.random.Generator) -> Assignment:
        return self.step(TaskProblem.of(batch, view), view.world.n_entities, view.step_s)

    def step(self, problem: TaskProblem, n_devices: int, step_s: float) -> Assignment:
        """Assign one step's tasks and update the virtual queues of ``n_devices``."""
        if not (np.isfinite(self.budget_w) and self.budget_w >= 0):
            raise OffloadError(f"lyapunov: budget_w got {self.budget_w!r}; expected >= 0")
        if not (np.isfinite(self.v) and self.v >= 0):
            raise OffloadError(f"lyapunov: v got {self.v!r}; expected >= 0")
        if self.queues_j.size < n_devices:
            self.queues_j = np.concatenate(
                [self.queues_j, np.zeros(n_devices - self.queues_j.size)]
            )
        _, _, lat, dev, srv, _, on_time, _, _ = problem.options()
        m = problem
        penalty = (
            m.miss_penalty * (~on_time)
            + m.energy_weight_per_j * srv
            + m.latency_weight_per_s * lat / 1000.0
        )
        q = self.queues_j[problem.batch.entity][:, None]
        choice = _assign_by_score(problem, self.v * penalty + q * dev)
        a = _pick(problem, choice)
        spent = np.bincount(
            problem.batch.entity, weights=dev[np.arange(len(problem)), choice], minlength=n_devices
        )
        self.queues_j = np.maximum(self.queues_j + spent - self.budget_w * step_s, 0.0)
        a.info["mean_queue_j"] = float(self.queues_j.mean()) if n_devices else 0.0
        return a

    def assign(self, problem: TaskProblem, rng: np.random.Generator) -> Assignment:
        n = int(problem.batch.entity.max()) + 1 if len(problem) else 0
        return self.step(problem, n, 1.0)


OFFLOAD_POLICIES: dict[str, type[OffloadPolicy]] = {
    "local": Local,
    "nearest": Nearest,
    "greedy": Greedy,
    "deadline-energy": DeadlineEnergy,
    "optimal": Optimal,
    "lyapunov": Lyapunov,
}

OffloadCallable = Callable[[TaskBatch, "NetworkView", np.random.Generator], Any]


def resolve_offload_policy(spec: Any, **params: Any) -> OffloadCallable:
    """An offloading policy from a name (:data:`OFFLOAD_POLICIES`), an import path
    ``package.module:attr`` (as ``--offload`` takes it), a class, an instance or a
    function ``fn(batch, view, rng)``, with ``params`` for a name or class.

    Raises:
        OffloadError: an unknown name, or parameters the policy does not take.
        PolicyError: an import path that does not resolve.

    Examples:
        >>> resolve_offload_policy("lyapunov", budget_w=0.05, v=2.0)
        Lyapunov(budget_w=0.05, v=2.0)
    """
    if isinstance(spec, str) and ":" in spec:  # package.module:attr (command line, Python)
        from twinedge.policies.registry import resolve

        return resolve(spec, OFFLOAD_POLICIES, "offloading", **params)
    if isinstance(spec, str):
        cls = OFFLOAD_POLICIES.get(spec.strip().lower())
        if cls is None:
            raise OffloadError(
                f"offloading policy got {spec!r}; expected one of {', '.join(OFFLOAD_POLICIES)}"
            )
        spec = cls
    if isinstance(spec, type):
        try:
            return spec(**params)
        except TypeError as exc:
            raise OffloadError(f"offloading policy {spec.__name__}: {exc}") from None
    if params:
        raise OffloadError(
            "parameters are given with a policy instance or function; set them on it"
        )
    if not callable(spec):
        raise OffloadError(f"offloading policy got {spec!r}; expected a name, class or callable")
    return spec
