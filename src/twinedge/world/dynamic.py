"""The moving part of the world: positions, attachments and hosts as arrays, and the
read-only view (:class:`SimContext`) that migration policies receive.

The simulation engine and the live runtime both drive this state; policies only see it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twinedge.world import models
from twinedge.world.state import World


@dataclass
class SimState:
    """Per-entity and per-host arrays that change during a run."""

    t_s: float
    xy_m: np.ndarray
    prev_xy_m: np.ndarray
    ap: np.ndarray  # index into world.access
    dist_m: np.ndarray
    uplink_ms: np.ndarray
    host: np.ndarray  # index into world.hosts
    downtime_left_s: np.ndarray
    used_cpu_ghz: np.ndarray  # (H,)
    used_mem_gb: np.ndarray  # (H,)
    latency_ms: np.ndarray  # latency of the last evaluation (without migration downtime)

    def set_hosts(self, world: World, host: np.ndarray) -> None:
        self.host = np.asarray(host, dtype=np.int64)
        self.used_cpu_ghz = np.bincount(self.host, weights=world.cpu_ghz, minlength=world.n_hosts)
        self.used_mem_gb = np.bincount(self.host, weights=world.mem_gb, minlength=world.n_hosts)


class SimContext:
    """What a migration policy sees: the world, the current state, and vectorised helpers
    to evaluate candidate hosts. Policies never see which driver (simulation or live)
    produced the state."""

    def __init__(self, world: World, state: SimState, step_s: float, candidates_k: int = 8):
        self.world = world
        self.state = state
        self.step_s = step_s
        self.k = min(candidates_k, world.n_hosts)
        # the k hosts with the lowest backbone latency from every access point
        self.ap_candidates = np.argsort(world.ap_host_ms, axis=1, kind="stable")[:, : self.k]

    # --- state -------------------------------------------------------------------------
    @property
    def free_cpu_ghz(self) -> np.ndarray:
        return self.world.host_cpu_ghz - self.state.used_cpu_ghz

    @property
    def free_mem_gb(self) -> np.ndarray:
        return self.world.host_mem_gb - self.state.used_mem_gb

    @property
    def migrating(self) -> np.ndarray:
        return self.state.downtime_left_s > 0

    def velocity_mps(self) -> np.ndarray:
        return (self.state.xy_m - self.state.prev_xy_m) / self.step_s

    # --- models ------------------------------------------------------------------------
    def latency_ms(
        self,
        twins: np.ndarray | slice,  # indexes of twins, or slice(None) for all
        hosts: np.ndarray,
        ap: np.ndarray | None = None,
        uplink_ms: np.ndarray | None = None,
    ) -> np.ndarray:
        """Latency of each twin if served by ``hosts`` (``(n,)`` or ``(n, k)``), with the
        host load it would see (its own demand added where it is not already there)."""
        w, s = self.world, self.state
        hosts = np.asarray(hosts)

        def per_twin(a: np.ndarray) -> np.ndarray:  # lined up with ``hosts``
            return a[:, None] if hosts.ndim == 2 else a

        ap = s.ap[twins] if ap is None else ap
        up = s.uplink_ms[twins] if uplink_ms is None else uplink_ms
        own = (hosts != per_twin(s.host[twins])) * per_twin(w.cpu_ghz[twins])
        rho = (s.used_cpu_ghz[hosts] + own) / w.host_cpu_ghz[hosts]
        svc = models.service_ms(per_twin(w.work_gcycles[twins]), w.host_cpu_ghz[hosts])
        back = w.ap_host_ms[per_twin(ap), hosts]
        return per_twin(up) + back + svc * models.queue_factor(rho)

    def candidates(
        self, twins: np.ndarray, ap: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest hosts of each twin's access point and the latency on each
        (``inf`` where the twin may not run there)."""
        ap = self.state.ap[twins] if ap is None else ap
        cand = self.ap_candidates[ap]
        lat = self.latency_ms(twins, cand, ap=ap)
        ok = self.world.allowed(twins)[np.arange(len(twins))[:, None], cand]
        return cand, np.where(ok, lat, np.inf)

    def downtime_s(self, twins: np.ndarray, to_hosts: np.ndarray) -> np.ndarray:
        """Stop-and-copy downtime of moving each twin from its host to ``to_hosts``."""
        w, s = self.world, self.state
        frm = s.host[twins]
        return models.migration_downtime_s(
            w.state_bytes[twins], w.host_host_mbps[frm, to_hosts], w.host_host_ms[frm, to_hosts]
        )
