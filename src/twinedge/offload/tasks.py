"""Tasks and their cost model: latency, device energy and server energy of running a task
on the device, on a host, or split between the two (formulas in docs/offload.md).

Latency of task ``i`` with a fraction ``x`` computed on its device and ``y = 1 - x`` on
host ``h`` (the two parts run in parallel; ``x = 1`` is local, ``x = 0`` a full offload)::

    local_ms  = 1000 * x * C_i / f_local_i                    (C in Gcycles, f in GHz)
    remote_ms = y * (up_i + compute_ih + down_i) + 2 * backbone(ap_i, h)
      up_i       = 1000 * 8 * in_bytes_i  / uplink_rate_bps_i    (Shannon, models.uplink_rate_bps)
      down_i     = 1000 * 8 * out_bytes_i / downlink_rate_bps_i  (the same Shannon formula with
                                                                  the access point's power)
      compute_ih = 1000 * C_i / F_h * 1 / (1 - rho_h)            (models.service_ms, queue_factor)
    latency_ms = max(local_ms, remote_ms)

``rho_h`` is host h's utilisation by the twins on it (tasks are served in the CPU the
twins leave free, so they wait behind them as an M/M/1 job would; they do not slow the
twins down). Energy::

    device_j = kappa * (f_local * 1e9)^2 * x * C_i * 1e9 + p_i * y * up_i / 1000
    server_j = y * C_i * (max_w_h - idle_w_h) / F_h     (J per Gcycle: the linear power model)

Capacity: the Gcycles placed on host h in one batch may not exceed what the twins leave
free over the step, ``(F_h - used_h) * step_s``. The device's own CPU is not a shared
resource (each device computes its own tasks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from twinedge.errors import OffloadError
from twinedge.world import models

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

__all__ = ["OffloadCosts", "OffloadModel", "TaskBatch", "TaskProblem", "evaluate"]


@dataclass(frozen=True)
class OffloadModel:
    """The parameters of the cost model that are not per task: the access point's
    downlink transmit power (W) and the objective's weights (a deadline miss counts as
    ``miss_penalty`` J-equivalents, a joule as ``energy_weight_per_j``, a second of
    latency as ``latency_weight_per_s``)."""

    downlink_power_w: float = 1.0
    miss_penalty: float = 10.0
    energy_weight_per_j: float = 1.0
    latency_weight_per_s: float = 1.0


_FIELDS = (
    "gcycles",
    "input_bytes",
    "output_bytes",
    "deadline_ms",
    "f_local_ghz",
    "kappa",
    "tx_power_w",
)


@dataclass(frozen=True)
class TaskBatch:
    """The tasks of one step, as arrays of equal length ``n``.

    Attributes:
        entity: index of the entity (device) that emitted each task.
        gcycles: CPU work, Gcycles. input_bytes, output_bytes: data up and down, bytes.
        deadline_ms: the time window of the physical event, ms.
        splittable: whether the task may run partly on the device, partly on a host.
        f_local_ghz: the device's CPU, GHz. kappa: effective switched capacitance
            (J / (Hz^2 * cycle)). tx_power_w: the device's transmit power, W.

    Raises:
        OffloadError: arrays of unequal length, or a value that is negative, not finite,
            or (for ``deadline_ms``, ``f_local_ghz``, ``kappa``) not positive.

    Examples:
        >>> b = TaskBatch.of(entity=[0, 1], gcycles=[1.0, 0.5], input_bytes=1e5,
        ...                  output_bytes=1e3, deadline_ms=50.0)
        >>> len(b), b.kappa.tolist()
        (2, [1e-27, 1e-27])
    """

    entity: np.ndarray
    gcycles: np.ndarray
    input_bytes: np.ndarray
    output_bytes: np.ndarray
    deadline_ms: np.ndarray
    splittable: np.ndarray
    f_local_ghz: np.ndarray
    kappa: np.ndarray
    tx_power_w: np.ndarray
    model: OffloadModel = OffloadModel()

    @classmethod
    def of(
        cls,
        entity: object,
        gcycles: object,
        input_bytes: object,
        output_bytes: object,
        deadline_ms: object,
        splittable: object = False,
        f_local_ghz: object = 1.0,
        kappa: object = 1e-27,
        tx_power_w: object = 0.2,
        model: OffloadModel | None = None,
    ) -> TaskBatch:
        """A batch from arrays or scalars (scalars are broadcast to every task)."""
        ent = np.asarray(entity, dtype=np.int64).reshape(-1)
        n = ent.size
        vals: dict[str, np.ndarray] = {}
        for name, v in zip(
            _FIELDS,
            (gcycles, input_bytes, output_bytes, deadline_ms, f_local_ghz, kappa, tx_power_w),
            strict=True,
        ):
            try:
                a = np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()
            except (TypeError, ValueError) as exc:
                raise OffloadError(
                    f"tasks: {name} got {v!r}; expected {n} numbers ({exc})"
                ) from None
            vals[name] = a
        split = np.broadcast_to(np.asarray(splittable, dtype=bool), (n,)).copy()
        return cls(ent, splittable=split, model=model or OffloadModel(), **vals)

    def __post_init__(self) -> None:
        n = self.entity.size
        for name in ("entity", "splittable", *_FIELDS):
            a = getattr(self, name)
            if a.shape != (n,):
                raise OffloadError(f"tasks: {name} has shape {a.shape}; expected ({n},)")
        if n and self.entity.min() < 0:
            raise OffloadError(f"tasks: entity got {int(self.entity.min())}; expected >= 0")
        for name in _FIELDS:
            a = getattr(self, name)
            strict = name in ("deadline_ms", "f_local_ghz", "kappa")
            bad = ~np.isfinite(a) | ((a <= 0) if strict else (a < 0))
            if bad.any():
                i = int(np.argmax(bad))
                raise OffloadError(
                    f"tasks: {name}[{i}] got {float(a[i])!r}; expected a finite number "
                    f"{'> 0' if strict else '>= 0'}"
                )

    def __len__(self) -> int:
        return int(self.entity.size)

    def take(self, idx: np.ndarray) -> TaskBatch:
        """The tasks at ``idx``."""
        keys = ("entity", "splittable", *_FIELDS)
        return TaskBatch(**{k: getattr(self, k)[idx] for k in keys}, model=self.model)

    @staticmethod
    def concat(batches: list[TaskBatch]) -> TaskBatch:
        """One batch of all tasks of ``batches``, in order."""
        keys = ("entity", "splittable", *_FIELDS)
        if not batches:
            return TaskBatch.of([], [], 0.0, 0.0, 1.0)
        return TaskBatch(
            **{k: np.concatenate([getattr(b, k) for b in batches]) for k in keys},
            model=batches[0].model,
        )


@dataclass(frozen=True)
class OffloadCosts:
    """What an assignment costs, per task: ``latency_ms``, ``device_j``, ``server_j``,
    ``host_gcycles`` (work placed on the host), ``on_time`` (latency <= deadline)."""

    latency_ms: np.ndarray
    device_j: np.ndarray
    server_j: np.ndarray
    host_gcycles: np.ndarray
    on_time: np.ndarray


@dataclass
class TaskProblem:
    """A batch's cost model over a network view: per task the access point, the uplink
    and downlink rates, and per host the speed, queueing factor, marginal energy and the
    Gcycles free this step; the candidate hosts of each task (its access point's
    candidates, :meth:`NetworkView.candidates`) and the objective's weights.

    The objective of an assignment (lower is better; docs/offload.md)::

        sum_i  miss_penalty * [latency_i > deadline_i]
             + energy_weight_per_j * (device_j_i + server_j_i)
             + latency_weight_per_s * latency_i / 1000

    ``options()`` lists every option of every task (local; whole on a candidate host;
    split with a candidate host when the task is splittable, at the fraction that makes
    the two parts equally long) with its cost; the policies choose among them.
    """

    batch: TaskBatch
    ap: np.ndarray  # (n,)
    up_ms_full: np.ndarray  # (n,) uplink of the whole input
    down_ms_full: np.ndarray  # (n,)
    host_ghz: np.ndarray  # (H,)
    host_qf: np.ndarray  # (H,) queueing factor 1 / (1 - rho)
    host_j_per_gcycle: np.ndarray  # (H,)
    cap_gcycles: np.ndarray  # (H,)
    ap_host_ms: np.ndarray  # (A, H)
    cand: np.ndarray  # (n, c) candidate hosts
    cand_ok: np.ndarray  # (n, c) allowed
    host_tier: np.ndarray  # (H,) tier index (TIERS)
    miss_penalty: float = 10.0
    energy_weight_per_j: float = 1.0
    latency_weight_per_s: float = 1.0
    _opts: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    _core: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    _split_y: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls,
        batch: TaskBatch,
        view: NetworkView,
    ) -> TaskProblem:
        """The problem of ``batch`` on ``view`` (tasks' devices at their current access
        points and distances), with the batch's :class:`OffloadModel`.

        Raises:
            OffloadError: a task's entity is not in the view's world.
        """
        w, s = view.world, view.state
        if len(batch) and batch.entity.max() >= w.n_entities:
            raise OffloadError(
                f"tasks: entity got {int(batch.entity.max())}; the world has {w.n_entities}"
            )
        ent = batch.entity
        ap = s.ap[ent]
        r = w.radio
        args = (
            r.bandwidth_mhz * 1e6,
            r.noise_dbm_per_hz,
            r.path_loss_ref_db,
            r.path_loss_exponent,
            r.min_distance_m,
        )
        dist = s.dist_m[ent]
        up_bps = models.uplink_rate_bps(dist, batch.tx_power_w, *args)
        m = batch.model
        down_bps = models.uplink_rate_bps(dist, np.full(len(batch), m.downlink_power_w), *args)
        cpu = w.host_cpu_ghz.astype(float)
        used = s.used_cpu_ghz
        idle_w, max_w = w.node_idle_w[w.hosts], w.node_max_w[w.hosts]
        cand = (
            view.ap_candidates[ap]
            if len(batch)
            else np.zeros((0, view.ap_candidates.shape[1]), np.int64)
        )
        ok = w.group_allowed[w.entity_group[ent][:, None], cand]  # (n, c), not (n, H)
        return cls(
            batch=batch,
            ap=ap,
            up_ms_full=models.uplink_ms(batch.input_bytes, up_bps),
            down_ms_full=models.uplink_ms(batch.output_bytes, down_bps),
            host_ghz=cpu,
            host_qf=models.queue_factor(used / cpu),
            host_j_per_gcycle=(max_w - idle_w) / cpu,
            cap_gcycles=np.maximum(cpu - used, 0.0) * view.step_s,
            ap_host_ms=w.ap_host_ms,
            cand=cand,
            cand_ok=ok,
            host_tier=w.host_tier,
            miss_penalty=m.miss_penalty,
            energy_weight_per_j=m.energy_weight_per_j,
            latency_weight_per_s=m.latency_weight_per_s,
        )

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def n_hosts(self) -> int:
        return int(self.host_ghz.size)

    # --- the model --------------------------------------------------------------------
    def evaluate(self, host: np.ndarray, local_fraction: np.ndarray) -> OffloadCosts:
        """The costs of running task ``i`` with ``local_fraction[i]`` on its device and
        the rest on ``host[i]`` (``-1``: wholly on the device; the fraction is then 1).
        ``host`` and ``local_fraction`` may also be ``(n, k)``: k choices per task."""
        b = self.batch
        host = np.asarray(host, dtype=np.int64)

        def per(v: np.ndarray) -> np.ndarray:  # a per-task array lined up with ``host``
            return v[:, None] if host.ndim == 2 else v

        x = np.where(host < 0, 1.0, np.asarray(local_fraction, dtype=float))
        y = 1.0 - x
        h = np.where(host < 0, 0, host)
        gc = per(b.gcycles)
        local_ms = 1000.0 * x * gc / per(b.f_local_ghz)
        compute_ms = models.service_ms(gc, self.host_ghz[h]) * self.host_qf[h]
        remote_ms = np.where(
            y > 0,
            y * (per(self.up_ms_full + self.down_ms_full) + compute_ms)
            + 2.0 * self.ap_host_ms[per(self.ap), h],
            0.0,
        )
        latency = np.maximum(local_ms, remote_ms)
        f_hz = b.f_local_ghz * 1e9
        device_j = per(b.kappa * f_hz**2 * b.gcycles * 1e9) * x + models.device_energy_j(
            per(b.tx_power_w), y * per(self.up_ms_full) / 1000.0
        )
        host_g = y * gc
        server_j = host_g * self.host_j_per_gcycle[h]
        return OffloadCosts(latency, device_j, server_j, host_g, latency <= per(b.deadline_ms))

    def objective_terms(self, costs: OffloadCosts) -> np.ndarray:
        """Each task's term of the objective."""
        return (
            self.miss_penalty * (~costs.on_time)
            + self.energy_weight_per_j * (costs.device_j + costs.server_j)
            + self.latency_weight_per_s * costs.latency_ms / 1000.0
        )

    def objective(self, host: np.ndarray, local_fraction: np.ndarray) -> float:
        """The objective of an assignment (see the class docstring)."""
        return float(self.objective_terms(self.evaluate(host, local_fraction)).sum())

    def split_fraction(self, host: np.ndarray) -> np.ndarray:
        """The device's fraction ``x`` that makes both parts equally long when the rest
        runs on ``host``: ``x * L = (1 - x) * a + b``, so ``x = (a + b) / (L + a)``,
        clipped to [0, 1] (L: the whole task on the device; a: the whole task's
        uplink + compute + downlink on the host; b: the backbone both ways)."""
        b = self.batch
        host = np.asarray(host, dtype=np.int64)
        ap = self.ap if host.ndim == 1 else self.ap[:, None]
        per = (lambda v: v) if host.ndim == 1 else (lambda v: v[:, None])
        loc = per(1000.0 * b.gcycles / b.f_local_ghz)
        a = (
            per(self.up_ms_full + self.down_ms_full)
            + models.service_ms(per(b.gcycles), self.host_ghz[host]) * self.host_qf[host]
        )
        bb = 2.0 * self.ap_host_ms[ap, host]
        den = loc + a
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(den > 0, (a + bb) / np.where(den > 0, den, 1.0), 1.0)
        return np.clip(x, 0.0, 1.0)

    def latency_options(self) -> tuple[np.ndarray, ...]:
        """The part of :meth:`options` that the latency-driven policies need:
        ``(host, local_fraction, latency_ms, host_gcycles, allowed)``, ``(n, O)`` each,
        without the energies and the objective (computed on demand by :meth:`options`).

        The numbers are those of :meth:`evaluate` on the same options, to the bit: the
        same operations in the same order, worked out per block of columns (local,
        whole, split) instead of through ``np.where`` over all of them, since within a
        block ``x`` is 1, 0 or the split fraction and the terms that multiply by 1 or 0
        are exact.
        """
        if self._core is not None:
            return self._core
        b = self.batch
        n, c = self.cand.shape
        o = 1 + 2 * c
        gc = b.gcycles[:, None]
        whole, split = slice(1, 1 + c), slice(1 + c, o)
        host = np.empty((n, o), dtype=np.int64)
        host[:, 0] = -1
        host[:, whole] = self.cand
        host[:, split] = self.cand
        # the whole task on a candidate: uplink + compute + downlink (a), backbone (bb)
        ghz = self.host_ghz[self.cand]
        a = models.service_ms(gc, ghz)
        a *= self.host_qf[self.cand]
        a += (self.up_ms_full + self.down_ms_full)[:, None]
        bb = self.ap_host_ms[self.ap[:, None], self.cand]
        bb *= 2.0
        loc = 1000.0 * b.gcycles / b.f_local_ghz  # the whole task on the device
        # split_fraction: x = (a + bb) / (loc + a), held in [0, 1]
        den = a + loc[:, None]
        num = a + bb
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
        np.clip(x, 0.0, 1.0, out=x)
        frac = np.empty((n, o))
        frac[:, 0] = 1.0
        frac[:, whole] = 0.0
        frac[:, split] = x
        y = 1.0 - x
        lat = np.empty((n, o))
        lat[:, 0] = loc  # (1000 * 1) * C / f, and the remote part is 0
        lat[:, whole] = num  # 1 * a + bb; the local part is 0
        local_ms = 1000.0 * x
        local_ms *= gc
        local_ms /= b.f_local_ghz[:, None]
        remote = y * a
        remote += bb
        remote[~(y > 0)] = 0.0
        np.maximum(local_ms, remote, out=lat[:, split])
        host_g = np.empty((n, o))
        host_g[:, 0] = 0.0
        host_g[:, whole] = gc
        np.multiply(y, gc, out=host_g[:, split])
        allowed = np.empty((n, o), dtype=bool)
        allowed[:, 0] = True
        room = self.cap_gcycles[self.cand]
        room += 1e-12
        np.less_equal(gc, room, out=allowed[:, whole])
        allowed[:, whole] &= self.cand_ok
        np.less_equal(host_g[:, split], room, out=allowed[:, split])
        allowed[:, split] &= self.cand_ok
        allowed[:, split] &= b.splittable[:, None]
        self._core = (host, frac, lat, host_g, allowed)
        self._split_y = y
        return self._core

    def options(self) -> tuple[np.ndarray, ...]:
        """Every option of every task, ``(n, O)`` arrays with ``O = 1 + 2c``: column 0
        local, columns ``1..c`` whole on the candidate hosts, ``c+1..2c`` split with
        them. Returns ``(host, local_fraction, latency_ms, device_j, server_j,
        host_gcycles, on_time, cost, allowed)``; ``allowed`` is False for a host the
        task may not use, a split of a task that may not split, or work larger than the
        host's free Gcycles. The numbers are those of :meth:`evaluate` on the options
        (and :meth:`split_fraction` for the splits), to the bit."""
        if self._opts is not None:
            return self._opts
        host, frac, lat, host_g, allowed = self.latency_options()
        b = self.batch
        c = self.cand.shape[1]
        whole, split = slice(1, 1 + c), slice(1 + c, 1 + 2 * c)
        f_hz = b.f_local_ghz * 1e9
        e_local = b.kappa * f_hz**2 * b.gcycles * 1e9
        up_s = self.up_ms_full / 1000.0
        device_j = np.empty_like(lat)
        device_j[:, 0] = e_local  # E * 1 + p * (0 * up / 1000)
        device_j[:, whole] = (b.tx_power_w * up_s)[:, None]  # E * 0 + p * (1 * up / 1000)
        y_up = self._split_y * self.up_ms_full[:, None]
        y_up /= 1000.0
        y_up *= b.tx_power_w[:, None]
        np.multiply(e_local[:, None], frac[:, split], out=device_j[:, split])
        device_j[:, split] += y_up
        server_j = np.empty_like(lat)
        server_j[:, 0] = 0.0
        np.multiply(host_g[:, 1:], self.host_j_per_gcycle[host[:, 1:]], out=server_j[:, 1:])
        on_time = lat <= b.deadline_ms[:, None]
        cost = self.objective_terms(OffloadCosts(lat, device_j, server_j, host_g, on_time))
        self._opts = (host, frac, lat, device_j, server_j, host_g, on_time, cost, allowed)
        return self._opts


def evaluate(problem: TaskProblem, host: np.ndarray, local_fraction: np.ndarray) -> OffloadCosts:
    """:meth:`TaskProblem.evaluate` as a function."""
    return problem.evaluate(host, local_fraction)
