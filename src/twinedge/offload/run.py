"""Offloading inside a run: every step the entities' tasks arrive, one policy assigns
them over the step's network view, and the outcome is accumulated into the run's
``offload_*`` metrics.

Tasks run in the host CPU the twins leave free over the step (twins first): they do
not change the twins' load or latency, and their host energy is the marginal energy of
the work they add (:class:`~twinedge.offload.tasks.TaskProblem`). Cost is the host
compute they use priced per GHz*s by tier (``offloading.per_cpu_ghz_s``, the compute
market's default prices).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from twinedge.engine.metrics import HIST_EDGES_MS, histogram_bins, histogram_quantile
from twinedge.errors import OffloadError
from twinedge.offload.policies import (
    Assignment,
    Lyapunov,
    OffloadPolicy,
    check_assignment,
    resolve_offload_policy,
)
from twinedge.offload.tasks import OffloadModel, TaskBatch, TaskProblem
from twinedge.scenario.schema import TIERS, Offloading

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView
    from twinedge.world import World

__all__ = ["OFFLOAD_KEYS", "OffloadRun", "TaskGenerator"]

#: The summary keys a run with offloading adds (in the order of the tables).
OFFLOAD_KEYS = (
    "offload_tasks",
    "offload_hit_ratio",
    "offload_p50_latency_ms",
    "offload_p95_latency_ms",
    "offload_p99_latency_ms",
    "offload_device_energy_j",
    "offload_server_energy_j",
    "offload_cost",
    "offload_offloaded_ratio",
)


def _draw(v: float | tuple[float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(v, tuple):
        return rng.uniform(v[0], v[1], n)
    return np.full(n, float(v))


class TaskGenerator:
    """The tasks every step of a run, from the scenario's ``offloading.tasks``.

    Poisson arrivals: ``N_d ~ Poisson(rate_hz * step_s)`` tasks per device per step.
    Periodic: a device with phase ``u_d ~ U(0, period_s)`` emits one task at every
    ``u_d + k * period_s`` in the step's interval ``[t, t + step_s)``.

    Raises:
        OffloadError: a kind in ``tasks`` has no entities in the world.
    """

    def __init__(self, spec: Offloading, world: World, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.model = OffloadModel(
            spec.downlink_power_w,
            spec.miss_penalty,
            spec.energy_weight_per_j,
            spec.latency_weight_per_s,
        )
        self.groups: list[tuple[Any, np.ndarray, np.ndarray]] = []
        for kind, ts in spec.tasks.items():
            if kind not in world.kinds:
                raise OffloadError(
                    f"offloading.tasks: kind {kind!r} has no entities; the kinds are "
                    f"{', '.join(world.kinds)}"
                )
            idx = np.flatnonzero(world.entity_kind == world.kinds.index(kind))
            phase = rng.uniform(0.0, ts.period_s, idx.size) if ts.period_s else np.zeros(0)
            self.groups.append((ts, idx, phase))
        self.tx_power_w = world.tx_power_w

    def batch(self, t_s: float, step_s: float) -> TaskBatch:
        """The tasks that arrive in ``[t_s, t_s + step_s)``."""
        parts = []
        for ts, idx, phase in self.groups:
            if ts.rate_hz is not None:
                count = self.rng.poisson(ts.rate_hz * step_s, idx.size)
            else:
                p = ts.period_s
                count = np.floor((t_s + step_s - phase) / p) - np.floor((t_s - phase) / p)
                count = count.astype(np.int64)
            ent = np.repeat(idx, count)
            n = ent.size
            if n == 0:
                continue
            parts.append(
                TaskBatch.of(
                    ent,
                    _draw(ts.gcycles, n, self.rng),
                    _draw(ts.input_bytes, n, self.rng),
                    _draw(ts.output_bytes, n, self.rng),
                    _draw(ts.deadline_ms, n, self.rng),
                    ts.splittable,
                    ts.f_local_ghz,
                    ts.kappa,
                    self.tx_power_w[ent] if ts.tx_power_w is None else ts.tx_power_w,
                    model=self.model,
                )
            )
        if not parts:
            return TaskBatch.of([], [], 0.0, 0.0, 1.0, model=self.model)
        return TaskBatch.concat(parts)


class OffloadRun:
    """One offloading policy over a run: :meth:`step` once per step, then
    :meth:`summary` (the :data:`OFFLOAD_KEYS`).

    Parameters:
        spec: the scenario's ``offloading`` section.
        world: the run's world.
        policy: a name, class, instance or function (``spec.policy``'s first when None).
        rng: the tasks' random stream (arrivals and draws; the policy gets a child).
    """

    def __init__(
        self,
        spec: Offloading,
        world: World,
        rng: np.random.Generator,
        policy: Any = None,
        params: dict | None = None,
    ):
        pol = spec.policy.strip() if policy is None else policy
        if params is None:
            params = spec.policy_params.get(pol, {}) if isinstance(pol, str) else {}
        self.label = pol if isinstance(pol, str) else getattr(pol, "name", type(pol).__name__)
        self.policy = resolve_offload_policy(pol, **params)
        gen_rng, self.policy_rng = rng.spawn(2)
        self.tasks = TaskGenerator(spec, world, gen_rng)
        host_tier = world.host_tier
        price = np.array([spec.per_cpu_ghz_s.get(TIERS[t], 0.0) for t in range(len(TIERS))])  # type: ignore[call-overload]
        self.price_per_gcycle = price[host_tier]
        self.hist = np.zeros(HIST_EDGES_MS.size - 1, dtype=np.int64)
        self.n = self.hit = self.offloaded = 0
        self.device_j = self.server_j = self.cost = 0.0
        self.gaps: list[float] = []

    def step(self, view: NetworkView, t_s: float) -> Assignment:
        """Generate the tasks of the step starting at ``t_s``, assign them and record."""
        batch = self.tasks.batch(t_s, view.step_s)
        problem = TaskProblem.of(batch, view)
        pol = self.policy
        if isinstance(pol, Lyapunov):  # built-ins share the problem (one options table)
            a = pol.step(problem, view.world.n_entities, view.step_s)
        elif isinstance(pol, OffloadPolicy):
            a = pol.assign(problem, self.policy_rng)
        else:
            a = Assignment.of(pol(batch, view, self.policy_rng), self.label)
        check_assignment(problem, a, self.label)
        c = problem.evaluate(a.host, a.local_fraction)
        if len(batch):
            self.hist += np.bincount(histogram_bins(c.latency_ms), minlength=self.hist.size)
        self.n += len(batch)
        self.hit += int(c.on_time.sum())
        self.offloaded += int(a.offloaded.sum())
        self.device_j += float(c.device_j.sum())
        self.server_j += float(c.server_j.sum())
        h = np.maximum(a.host, 0)
        self.cost += float((c.host_gcycles * self.price_per_gcycle[h]).sum())
        if "gap" in a.info:
            self.gaps.append(float(a.info["gap"]))
        return a

    def summary(self) -> dict[str, float]:
        """The run's offloading metrics (:data:`OFFLOAD_KEYS`, and
        ``offload_max_gap`` for a policy that reports a gap)."""
        n = max(self.n, 1)
        out: dict[str, float] = {
            "offload_tasks": self.n,
            "offload_hit_ratio": self.hit / n,
            "offload_p50_latency_ms": histogram_quantile(self.hist, 0.50),
            "offload_p95_latency_ms": histogram_quantile(self.hist, 0.95),
            "offload_p99_latency_ms": histogram_quantile(self.hist, 0.99),
            "offload_device_energy_j": self.device_j,
            "offload_server_energy_j": self.server_j,
            "offload_cost": self.cost,
            "offload_offloaded_ratio": self.offloaded / n,
        }
        if self.gaps:
            out["offload_max_gap"] = max(self.gaps)
        return out
