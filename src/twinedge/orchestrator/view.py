"""The network state the drivers keep (:class:`NetworkState`) and the read-only view of it
that every policy receives (:class:`NetworkView`).

Two drivers fill the same state: the simulation engine from mobility models over a
virtual clock, the live runtime from the positions devices report. Policies see a
:class:`NetworkView` and cannot tell which driver produced it; its arrays are read-only,
so a policy cannot change the network behind the orchestrator's back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from twinedge.policies.placement.base import PlacementProblem
from twinedge.world import models
from twinedge.world.state import World


@dataclass
class NetworkState:
    """Per-entity and per-host arrays that change over time (the drivers write them).

    Attributes:
        t_s: the driver's clock (virtual seconds in a simulation, seconds since start live).
        xy_m, prev_xy_m: ``(n, 2)`` position now and one step ago, in metres.
        ap, dist_m, uplink_ms: access point (index into ``world.access``), distance to it
            and the time to send one update over it.
        host: ``(n,)`` index into ``world.hosts`` of the host running each twin.
        downtime_left_s: migration downtime each twin still has to sit out.
        used_cpu_ghz, used_mem_gb: ``(H,)`` load of every host.
        latency_ms: latency of every twin on its host at the last evaluation (without
            migration downtime).
        forecast_peak_utilisation: ``(H,)`` the CPU utilisation every host is forecast
            to reach within the forecast's horizon (the network's own twin, live), or
            ``None`` without a forecast (a simulation).
        report_hz: ``(H,)`` reports per second arriving at every host (the
            ``update_hz`` of its twins): the rate a host's commit curve is read at.
    """

    t_s: float
    xy_m: np.ndarray
    prev_xy_m: np.ndarray
    ap: np.ndarray
    dist_m: np.ndarray
    uplink_ms: np.ndarray
    host: np.ndarray
    downtime_left_s: np.ndarray
    used_cpu_ghz: np.ndarray
    used_mem_gb: np.ndarray
    latency_ms: np.ndarray
    forecast_peak_utilisation: np.ndarray | None = None
    report_hz: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @classmethod
    def at(cls, world: World, xy_m: np.ndarray, host: np.ndarray | None = None) -> NetworkState:
        """The state of ``world``'s entities at positions ``xy_m`` (not moving, no
        migration under way), with twins on ``host`` (all on host 0 when ``None``)."""
        xy = np.asarray(xy_m, dtype=float).reshape(-1, 2).copy()
        ap, dist = world.attach(xy) if len(xy) else (np.zeros(0, np.int64), np.zeros(0))
        n = xy.shape[0]
        state = cls(
            t_s=0.0,
            xy_m=xy,
            prev_xy_m=xy.copy(),
            ap=ap,
            dist_m=dist,
            uplink_ms=world.uplink_ms(dist),
            host=np.zeros(n, dtype=np.int64),
            downtime_left_s=np.zeros(n),
            used_cpu_ghz=np.zeros(world.n_hosts),
            used_mem_gb=np.zeros(world.n_hosts),
            latency_ms=np.zeros(n),
        )
        state.set_hosts(world, np.zeros(n, dtype=np.int64) if host is None else host)
        return state

    def set_hosts(self, world: World, host: np.ndarray) -> None:
        """Put the twins on ``host`` and recompute every host's load."""
        self.host = np.asarray(host, dtype=np.int64)
        self.used_cpu_ghz = np.bincount(self.host, weights=world.cpu_ghz, minlength=world.n_hosts)
        self.used_mem_gb = np.bincount(self.host, weights=world.mem_gb, minlength=world.n_hosts)
        self.report_hz = np.bincount(self.host, weights=world.update_hz, minlength=world.n_hosts)

    def commit_ms(self, world: World) -> np.ndarray:
        """``(H,)`` every host's durable commit per report at its report rate now
        (:meth:`World.commit_ms_at <twinedge.world.World.commit_ms_at>`)."""
        return world.commit_ms_at(np.arange(world.n_hosts), self.report_hz)

    def commit_ms_on(self, world: World, twins: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        """The durable commit per report of twins ``twins`` on ``hosts`` (lined up by
        broadcasting) at the report rate each host would see: its rate now, plus the
        twin's own ``update_hz`` where the twin is not on it yet (as its CPU is added to
        the host's load)."""
        twins, hosts = np.asarray(twins), np.asarray(hosts)
        if world.host_commit_curve is None:
            return world.host_commit_ms[hosts]
        own = (hosts != self.host[twins]) * np.asarray(world.update_hz, dtype=float)[twins]
        return world.commit_ms_at(hosts, self.report_hz[hosts] + own)

    def copy(self) -> NetworkState:
        """An independent copy (arrays copied)."""
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).copy()
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)
            },
        )

    def readonly(self) -> NetworkState:
        """A copy-free snapshot whose arrays cannot be written (what policies get)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.view()
                v.flags.writeable = False
            out[f.name] = v
        return NetworkState(**out)


class NetworkView:
    """What a policy sees: the world (nodes, links, twins' demands), the current state
    (read-only), and vectorised helpers to evaluate candidate hosts.

    Parameters:
        world: the network and its twins.
        state: the current state (made read-only here).
        step_s: the period between two decisions, in seconds.
        candidates_k: how many nearest hosts :meth:`candidates` offers per twin (besides
            the nearest host of every tier above, see :func:`candidate_hosts`).
        amortise_steps: for a re-placement, the number of steps until the next one (the
            placement problem then charges each move its downtime spread over them);
            ``None`` for an initial placement.
        ap_candidates: precomputed candidate hosts of every access point, ``(A, c)`` (the
            orchestrator caches them across cycles); :func:`candidate_hosts` when ``None``.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> import numpy as np
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)
        >>> view.state.host.flags.writeable
        False
    """

    def __init__(
        self,
        world: World,
        state: NetworkState,
        step_s: float,
        candidates_k: int = 8,
        *,
        amortise_steps: int | None = None,
        ap_candidates: np.ndarray | None = None,
    ):
        self.world = world
        self.state = state.readonly()
        self.step_s = float(step_s)
        self.k = min(candidates_k, world.n_hosts)
        self.amortise_steps = amortise_steps
        if ap_candidates is None:
            ap_candidates = candidate_hosts(world, self.k)
        self.ap_candidates = ap_candidates

    # --- state -------------------------------------------------------------------------
    @property
    def free_cpu_ghz(self) -> np.ndarray:
        return self.world.host_cpu_ghz - self.state.used_cpu_ghz

    @property
    def free_mem_gb(self) -> np.ndarray:
        return self.world.host_mem_gb - self.state.used_mem_gb

    @property
    def forecast_peak_utilisation(self) -> np.ndarray | None:
        """``(H,)`` peak CPU utilisation each host is forecast to reach, or ``None``."""
        return self.state.forecast_peak_utilisation

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
        return latency_ms(self.world, self.state, twins, hosts, ap, uplink_ms)

    def candidates(
        self, twins: np.ndarray, ap: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The candidate hosts of each twin's access point (the k nearest, and the
        nearest of every tier above them: a regional hub, the cloud) and the latency on
        each (``inf`` where the twin may not run there)."""
        ap = self.state.ap[twins] if ap is None else ap
        cand = self.ap_candidates[ap]
        lat = self.latency_ms(twins, cand, ap=ap)
        ok = self.world.allowed_on(twins, cand)
        return cand, np.where(ok, lat, np.inf)

    def downtime_s(self, twins: np.ndarray, to_hosts: np.ndarray) -> np.ndarray:
        """Stop-and-copy downtime of moving each twin from its host to ``to_hosts``."""
        w, s = self.world, self.state
        frm = s.host[twins]
        return models.migration_downtime_s(
            w.state_bytes[twins], w.host_host_mbps[frm, to_hosts], w.host_host_ms[frm, to_hosts]
        )

    def load_limit_ghz(self) -> np.ndarray:
        """``(H,)`` the CPU load each host can carry before a twin on it that meets its
        latency requirement now would miss it; the host's capacity where no twin limits it.

        A twin on host j meets its requirement while ``up + back + commit + svc / (1 - rho)
        <= req``, that is while ``rho <= 1 - svc / (req - up - back - commit)``; the host's
        limit is
        the least of these over its twins on time (no limit once the queueing factor is
        held at :data:`~twinedge.world.models.RHO_CAP`). Migration policies use it so
        twins moving in do not push twins already there past their deadline.
        """
        w, s = self.world, self.state
        cap = w.host_cpu_ghz
        if w.n_entities == 0:
            return cap.astype(float).copy()
        limit_rho = models.utilisation_limit(
            w.latency_req_ms - s.uplink_ms - w.ap_host_ms[s.ap, s.host] - s.commit_ms(w)[s.host],
            models.service_ms(w.work_gcycles, cap[s.host]),
        )
        on_time = s.latency_ms <= w.latency_req_ms
        out = np.full(w.n_hosts, np.inf)
        np.minimum.at(out, s.host[on_time], limit_rho[on_time] * cap[s.host[on_time]])
        return np.minimum(out, cap)

    def placement_problem(self) -> PlacementProblem:
        """The seed-000 placement problem for every twin at its current access point:
        ``T_ij = uplink_i + backbone(ap_i, j) + commit_j + service_ij`` with the idle service time
        (load is held in check by the capacity constraints) and the commit of host j
        receiving twin i's reports alone (``World.idle_commit_ms``); ``inf`` where i may not
        use j.

        For a re-placement (``amortise_steps`` set), moving twin i away from its current
        host also costs its migration downtime, spread over the steps until the next
        re-placement: ``T_ij += 1000 * downtime_s(host_i -> j) / amortise_steps`` for
        ``j != host_i``. The objective is then the average latency over the coming period
        including the moves it causes, so a re-placement does not reshuffle twins for
        sub-millisecond gains.

        The problem is sparse (see :class:`PlacementProblem`): every twin's candidates
        are its access point's (:attr:`ap_candidates`: the k nearest hosts and the
        nearest of every tier above) and, for a re-placement, its current host (a
        twin whose current host is among them gets its access point's next nearest host
        instead, so every row has distinct hosts). Any other pair is priced on demand by
        the same formula, and the dense ``latency_ms`` (``O(twins x hosts)`` memory) is
        computed only when a policy reads it. ``candidate_service_ms`` holds the idle
        service times, for policies with a load-aware objective
        (:meth:`PlacementProblem.with_utilisation_cap`).
        """
        w, s = self.world, self.state
        n = w.n_entities
        pair = _pair_costs(w, s, self.amortise_steps)
        apc = np.asarray(self.ap_candidates, dtype=np.int64)
        # the access points' candidate columns, priced per access point and gathered by
        # row (the same operations as ``pair``, so the same values bit for bit)
        cand = apc[s.ap]
        lat = w.ap_host_ms[np.arange(apc.shape[0])[:, None], apc][s.ap]
        lat += s.uplink_ms[:, None]
        if w.commits:  # the host's durable commit: not stretched by its load
            lat += w.idle_commit_ms(np.arange(n)[:, None], cand)
        # models.service_ms, in place: 1000 * work / max(cpu, 1e-12)
        svc = np.maximum(w.host_cpu_ghz, 1e-12)[cand]
        np.divide((1000.0 * np.asarray(w.work_gcycles, dtype=float))[:, None], svc, out=svc)
        lat += svc
        if self.amortise_steps:
            src = s.host[:, None]
            down_s = models.migration_downtime_s(
                w.state_bytes[:, None], w.host_host_mbps[src, cand], w.host_host_ms[src, cand]
            )
            down_s[cand == src] = 0.0
            down_s *= 1000.0
            down_s /= self.amortise_steps
            lat += down_s
            del down_s
        ok = w.group_allowed[:, apc][w.entity_group, s.ap]
        if not ok.all():
            lat[~ok] = np.inf
        del ok
        if self.amortise_steps and apc.shape[1] < w.n_hosts and n:
            spare = _spare_hosts(w, apc)[s.ap]
            here = (cand == s.host[:, None]).any(axis=1)
            extra = np.where(here, spare, s.host)[:, None]
            e_lat, e_svc = pair(np.arange(n)[:, None], extra)
            cand = np.concatenate([cand, extra], axis=1)
            lat = np.concatenate([lat, e_lat], axis=1)
            svc = np.concatenate([svc, e_svc], axis=1)
        return PlacementProblem(
            None,
            w.cpu_ghz,
            w.mem_gb,
            w.host_cpu_ghz,
            w.host_mem_gb,
            candidates=cand,
            candidate_latency_ms=lat,
            candidate_service_ms=svc,
            pair_costs=pair,
        )


def _pair_costs(world: World, state: NetworkState, amortise_steps: int | None):
    """The placement problem's pair pricing (:data:`PairCosts`) for ``state`` as it is
    now: the per-twin arrays it needs are copied, so a later step does not change it.
    The operations are those of the dense matrix the problem used to build, in the same
    order, so a pair costs bit for bit what its matrix entry did. Whole rows (``hosts``
    the ``(1, H)`` range) are gathered row by row, which is several times faster."""
    w = world
    ap = np.array(state.ap, dtype=np.int64)
    up = np.array(state.uplink_ms, dtype=float)
    frm = np.array(state.host, dtype=np.int64) if amortise_steps else None
    every = np.arange(w.n_hosts)

    def rows(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lat = w.ap_host_ms[ap[t]] + up[t][:, None]
        if w.commits:
            lat += w.idle_commit_ms(t[:, None], every[None, :])
        svc = models.service_ms(w.work_gcycles[t][:, None], w.host_cpu_ghz[None, :])
        lat = lat + svc
        if frm is not None and amortise_steps:
            src = frm[t]
            down_s = models.migration_downtime_s(
                w.state_bytes[t][:, None], w.host_host_mbps[src], w.host_host_ms[src]
            )
            down_s = np.where(every[None, :] == src[:, None], 0.0, down_s)
            lat = lat + 1000.0 * down_s / amortise_steps
        lat = np.where(w.group_allowed[w.entity_group[t]], lat, np.inf)
        return lat, np.broadcast_to(svc, lat.shape)

    def pair_costs(twins: np.ndarray, hosts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        twins, hosts = np.asarray(twins), np.asarray(hosts)
        if (
            twins.ndim == 2
            and twins.shape[1] == 1
            and hosts.shape == (1, every.size)
            and np.array_equal(hosts[0], every)
        ):
            return rows(twins[:, 0])
        lat = w.ap_host_ms[ap[twins], hosts] + up[twins]
        if w.commits:
            lat = lat + w.idle_commit_ms(twins, hosts)
        svc = models.service_ms(w.work_gcycles[twins], w.host_cpu_ghz[hosts])
        lat = lat + svc
        if frm is not None and amortise_steps:
            src = frm[twins]
            down_s = models.migration_downtime_s(
                w.state_bytes[twins], w.host_host_mbps[src, hosts], w.host_host_ms[src, hosts]
            )
            down_s = np.where(hosts == src, 0.0, down_s)
            lat = lat + 1000.0 * down_s / amortise_steps
        lat = np.where(w.group_allowed[w.entity_group[twins], hosts], lat, np.inf)
        return lat, np.broadcast_to(svc, lat.shape)

    return pair_costs


def _spare_hosts(world: World, ap_candidates: np.ndarray) -> np.ndarray:
    """For every access point, its nearest host (lowest backbone latency) that is not
    among its candidates, ``(A,)``; ``-1`` where the candidates hold every host."""
    a, h = world.ap_host_ms.shape
    order = np.argsort(world.ap_host_ms, axis=1, kind="stable")
    chosen = np.zeros((a, h), dtype=bool)
    if ap_candidates.size:
        chosen[np.arange(a)[:, None], ap_candidates] = True
    free = ~np.take_along_axis(chosen, order, axis=1)
    first = free.argmax(axis=1)
    return np.where(free.any(axis=1), order[np.arange(a), first], -1)


def nearest_hosts(world: World, k: int) -> np.ndarray:
    """The ``k`` hosts with the lowest backbone latency from every access point."""
    return np.argsort(world.ap_host_ms, axis=1, kind="stable")[:, : min(k, world.n_hosts)]


def candidate_hosts(world: World, k: int) -> np.ndarray:
    """The candidate hosts of every access point, ``(A, c)``, nearest (lowest backbone
    latency) first: its ``k`` nearest hosts and, for every tier above the lowest host
    tier (a regional hub, the cloud), the nearest host of that tier. Where a tier's
    nearest host is among the ``k`` already, the next nearest host fills its column, so
    every row has ``c = min(k + tiers above, hosts)`` distinct hosts.

    The tiers above keep a twin a way out when every edge host near it is full: it moves
    up and its latency grows, instead of finding no candidate with room.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> cand = candidate_hosts(world, 2)
        >>> cand.shape[1], sorted(set(world.host_tier[cand[0]].tolist()))
        (4, [1, 2, 3])
    """
    a, h = world.ap_host_ms.shape
    if a == 0 or h == 0:
        return np.zeros((a, 0), dtype=np.int64)
    order = np.argsort(world.ap_host_ms, axis=1, kind="stable")
    k = min(k, h)
    tier = world.host_tier
    upper = np.unique(tier[tier > tier.min()])
    width = min(k + upper.size, h)
    rows = np.arange(a)[:, None]
    rank = np.empty_like(order)
    rank[rows, order] = np.arange(h)[None, :]
    chosen = np.zeros((a, h), dtype=bool)
    chosen[rows, order[:, :k]] = True
    for t in upper:
        first = np.argmax(tier[order] == t, axis=1)  # rank of the tier's nearest host
        chosen[np.arange(a), order[np.arange(a), first]] = True
    # the chosen hosts first, then the nearest others to fill the row; nearest first
    pick = np.argsort(np.where(chosen, rank, h + rank), axis=1, kind="stable")[:, :width]
    return np.take_along_axis(
        pick, np.argsort(np.take_along_axis(rank, pick, 1), axis=1, kind="stable"), 1
    )


def latency_ms(
    world: World,
    state: NetworkState,
    twins: np.ndarray | slice,
    hosts: np.ndarray,
    ap: np.ndarray | None = None,
    uplink_ms: np.ndarray | None = None,
) -> np.ndarray:
    """Latency of each twin if served by ``hosts``: uplink + backbone + the host's
    durable commit (``commit_ms``, a fixed time per report, or its ``commit_curve_ms`` at
    the host's report rate) + service time stretched by the host's queueing factor at the
    load it would see (the twin's own demand, CPU and reports, added where it is not
    already there). The one latency formula of both faces.
    """
    w, s = world, state
    hosts = np.asarray(hosts)

    def per_twin(a: np.ndarray) -> np.ndarray:  # lined up with ``hosts``
        return a[:, None] if hosts.ndim == 2 else a

    ap = s.ap[twins] if ap is None else ap
    up = s.uplink_ms[twins] if uplink_ms is None else uplink_ms
    own = (hosts != per_twin(s.host[twins])) * per_twin(w.cpu_ghz[twins])
    rho = (s.used_cpu_ghz[hosts] + own) / w.host_cpu_ghz[hosts]
    svc = models.service_ms(per_twin(w.work_gcycles[twins]), w.host_cpu_ghz[hosts])
    back = w.ap_host_ms[per_twin(ap), hosts]
    net = per_twin(up) + back
    if w.host_commit_curve is not None:  # at the report rate the host would see
        net = net + s.commit_ms_on(w, per_twin(np.arange(s.host.size)[twins]), hosts)
    elif w.commits:
        net = net + w.host_commit_ms[hosts]
    return net + svc * models.queue_factor(rho)
