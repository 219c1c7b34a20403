"""The world as struct-of-arrays: nodes, backbone paths, entities and their twins' demand.

A :class:`World` is built once from a scenario (see :func:`twinedge.world.build_world`) and
does not change during a run; the moving parts (positions, hosts) live in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from twinedge.scenario.schema import DEMAND_FIELDS, Radio
from twinedge.world import models
from twinedge.world.network import Links
from twinedge.world.spatial import NearestGrid


@dataclass
class World:
    name: str
    bounds_m: np.ndarray  # xmin, ymin, xmax, ymax
    # nodes (N)
    node_ids: list[str]
    node_tier: np.ndarray
    node_xy_m: np.ndarray
    node_cpu_ghz: np.ndarray
    node_mem_gb: np.ndarray
    node_idle_w: np.ndarray
    node_max_w: np.ndarray
    node_coverage_m: np.ndarray
    node_domain: np.ndarray
    domains: list[str]
    links: Links
    access: np.ndarray  # (A,) node index of every access point
    hosts: np.ndarray  # (H,) node index of every host (edge/region/cloud with capacity)
    ap_host_ms: np.ndarray  # (A, H) backbone latency
    host_host_ms: np.ndarray  # (H, H)
    host_host_mbps: np.ndarray  # (H, H) bottleneck bandwidth
    # entities (E)
    entity_ids: np.ndarray
    entity_kind: np.ndarray
    kinds: list[str]
    entity_owner: np.ndarray
    owners: list[str]
    entity_group: np.ndarray
    group_allowed: np.ndarray  # (G, H) bool
    xy_m: np.ndarray  # initial positions
    cpu_ghz: np.ndarray
    mem_gb: np.ndarray
    state_bytes: np.ndarray
    update_bytes: np.ndarray
    update_hz: np.ndarray
    work_gcycles: np.ndarray
    latency_req_ms: np.ndarray
    tx_power_w: np.ndarray
    radio: Radio
    mobility: list = field(default_factory=list)  # (slice, model) per entity group
    # (N,) a node's fixed time per report for its durable commit, ms (None: 0 everywhere)
    node_commit_ms: np.ndarray | None = None
    # node index -> (K, 2) [gap_ms, commit_ms]: the commit time at the report spacing
    # (None: every host's commit is the fixed node_commit_ms)
    node_commit_curve: dict[int, np.ndarray] | None = None

    @property
    def n_entities(self) -> int:
        return int(self.xy_m.shape[0])

    @property
    def n_hosts(self) -> int:
        return int(self.hosts.size)

    @property
    def host_cpu_ghz(self) -> np.ndarray:
        return self.node_cpu_ghz[self.hosts]

    @cached_property
    def host_commit_ms(self) -> np.ndarray:
        """``(H,)`` every host's fixed time per report for its durable commit, ms: the
        part of a twin's latency that neither the CPU nor its load explains (docs/models.md)."""
        if self.node_commit_ms is None:
            return np.zeros(self.n_hosts)
        return np.asarray(self.node_commit_ms, dtype=float)[self.hosts]

    @cached_property
    def commits(self) -> bool:
        """Whether any host has a commit time (else the latency terms skip it)."""
        return bool(self.host_commit_ms.any()) or self.host_commit_curve is not None

    @cached_property
    def host_commit_curve(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every host's commit curve as ``(gap_ms, commit_ms)``, two ``(H, K)`` arrays
        (spacings increasing; a shorter curve padded with its last point, a host with a
        fixed ``commit_ms`` the one point ``(0, commit_ms)``); ``None`` when no host has
        a curve (then the commit is :attr:`host_commit_ms` whatever the rate)."""
        curves = self.node_commit_curve
        if not curves:
            return None
        rows = [curves.get(int(node)) for node in self.hosts]
        if all(r is None for r in rows):
            return None
        k = max(len(r) for r in rows if r is not None)
        gap, ms = np.zeros((self.n_hosts, k)), np.zeros((self.n_hosts, k))
        for j, r in enumerate(rows):
            if r is None:
                ms[j] = self.host_commit_ms[j]
            else:
                gap[j, : len(r)], ms[j, : len(r)] = r[:, 0], r[:, 1]
                gap[j, len(r) :], ms[j, len(r) :] = r[-1, 0], r[-1, 1]
        return gap, ms

    def commit_ms_at(self, hosts: np.ndarray, report_hz: np.ndarray) -> np.ndarray:
        """The durable commit per report of each of ``hosts`` when it receives
        ``report_hz`` reports per second (broadcast together): its curve at the spacing
        ``1000 / report_hz`` (:func:`~twinedge.world.models.curve_ms`), or its fixed
        ``commit_ms`` without a curve. The one commit term of the simulator, the
        orchestrator's view, the policies and the gym features.

        Examples:
            >>> from twinedge.scenario import load_scenario
            >>> from twinedge.world import build_world
            >>> w = build_world(load_scenario("examples/two-sites-fleet.yaml"), np.random.default_rng(0))
            >>> w.commit_ms_at(np.array([0, 1]), np.array([25.0, 250.0])).tolist()
            [0.0, 0.0]
        """
        hosts = np.asarray(hosts)
        curve = self.host_commit_curve
        if curve is None:
            fixed = self.host_commit_ms[hosts]
            return np.broadcast_to(fixed, np.broadcast_shapes(fixed.shape, np.shape(report_hz)))
        gap, ms = curve
        return models.curve_ms(models.report_gap_ms(report_hz), gap[hosts], ms[hosts])

    def idle_commit_ms(self, twins: np.ndarray | slice, hosts: np.ndarray) -> np.ndarray:
        """The durable commit of twins ``twins`` on ``hosts`` (indices lined up by
        broadcasting, as ``update_hz[twins]`` and ``hosts``) priced as the idle service
        time is: the host receiving this twin's reports alone (its ``update_hz``).
        Without commit curves, the hosts' fixed ``commit_ms``."""
        hosts = np.asarray(hosts)
        if self.host_commit_curve is None:
            return self.host_commit_ms[hosts]
        return self.commit_ms_at(hosts, np.asarray(self.update_hz, dtype=float)[twins])

    @property
    def host_mem_gb(self) -> np.ndarray:
        return self.node_mem_gb[self.hosts]

    @property
    def host_tier(self) -> np.ndarray:
        return self.node_tier[self.hosts]

    @property
    def host_ids(self) -> list[str]:
        return [self.node_ids[i] for i in self.hosts]

    @cached_property
    def _ap_index(self) -> NearestGrid:
        return NearestGrid(self.node_xy_m[self.access], self.bounds_m)

    def attach(self, xy_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest access point (index into ``access``) and its distance in m, per entity.

        Exact: the smallest Euclidean distance, ties to the access point listed first
        (see :class:`~twinedge.world.spatial.NearestGrid`, built on the first call)."""
        return self._ap_index.query(xy_m)

    def uplink_ms(
        self,
        dist_m: np.ndarray,
        idx: np.ndarray | slice = slice(None),
        update_bytes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Time to send one update from each entity to its access point (ms): the
        entity's transmit power at ``dist_m``, an update of ``update_bytes`` (default: the
        entity's ``update_bytes``)."""
        r = self.radio
        rate = models.uplink_rate_bps(
            dist_m,
            self.tx_power_w[idx],
            r.bandwidth_mhz * 1e6,
            r.noise_dbm_per_hz,
            r.path_loss_ref_db,
            r.path_loss_exponent,
            r.min_distance_m,
        )
        nbytes = self.update_bytes[idx] if update_bytes is None else update_bytes
        return models.uplink_ms(nbytes, rate)

    def network_ms(
        self,
        xy_m: np.ndarray,
        host: np.ndarray,
        idx: np.ndarray | slice = slice(None),
        update_bytes: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network part of a twin's latency: the entity at ``xy_m`` attaches to its
        nearest access point, sends an update over the radio (:meth:`uplink_ms`) and the
        backbone carries it to ``host`` (an index into ``hosts``): the same two terms a
        simulation step adds (``engine.move_entities`` and the orchestrator's
        ``latency_on_hosts``), for any positions and hosts. The live device emulator
        delays each report by their sum (``twinedge devices --emulate-links``).

        Parameters:
            xy_m: ``(n, 2)`` positions, metres.
            host: ``(n,)`` host indices (into :attr:`hosts`).
            idx: the entities (rows of the entity arrays: transmit power, update size).
            update_bytes: ``(n,)`` update sizes (default: the entities' ``update_bytes``).

        Returns:
            ``(ap, uplink_ms, backbone_ms)``: the access point of each (index into
            :attr:`access`) and the two delays, ms.

        Raises:
            ValueError: a host index out of range, or arrays of different lengths.

        Examples:
            >>> from twinedge.scenario import load_scenario
            >>> from twinedge.world import build_world
            >>> w = build_world(load_scenario("city-small"), np.random.default_rng(0))
            >>> ap, up, back = w.network_ms(w.xy_m[:2], np.array([0, 0]), idx=np.arange(2))
            >>> bool((back == w.ap_host_ms[ap, 0]).all()), up.shape
            (True, (2,))
        """
        xy = np.asarray(xy_m, dtype=float).reshape(-1, 2)
        host = np.asarray(host, dtype=np.int64)
        if host.shape != (xy.shape[0],):
            raise ValueError(f"network_ms: {xy.shape[0]} positions but host has shape {host.shape}")
        if host.size and (host.min() < 0 or host.max() >= self.n_hosts):
            raise ValueError(f"network_ms: a host index out of range [0, {self.n_hosts})")
        ap, dist = self.attach(xy)
        up = self.uplink_ms(dist, idx, update_bytes)
        return ap, up, self.ap_host_ms[ap, host]

    def allowed(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        """``(n, H)`` mask of the hosts each twin may run on."""
        return self.group_allowed[self.entity_group[idx]]

    def allowed_on(self, idx: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        """Whether twin ``idx[i]`` may run on ``hosts[i]`` (``(n,)``) or on each of
        ``hosts[i, :]`` (``(n, c)``): :meth:`allowed` at those hosts only, without the
        ``(n, H)`` mask."""
        group = self.entity_group[idx]
        return self.group_allowed[group[:, None] if np.ndim(hosts) == 2 else group, hosts]

    def with_entities(self, entities: dict[str, np.ndarray], **other: Any) -> World:
        """The same network with other entities: ``entities`` maps every per-entity field
        (``entity_ids``, ``entity_kind``, ``entity_owner``, ``entity_group``, ``xy_m``,
        ``cpu_ghz``, ``mem_gb``, ``state_bytes``, ``update_bytes``, ``update_hz``,
        ``work_gcycles``, ``latency_req_ms``, ``tx_power_w``) to its array. The new world
        has no mobility models (its driver moves the entities) and shares the network's
        arrays and access-point index with this one. ``other`` replaces further fields
        (``owners``, ``kinds``, ``node_cpu_ghz``...).

        Raises:
            ValueError: a field is missing or the arrays disagree in length.
        """
        missing = sorted(set(ENTITY_FIELDS) - set(entities))
        if missing:
            raise ValueError(f"with_entities: missing fields {missing}")
        n = {k: len(entities[k]) for k in ENTITY_FIELDS}
        if len(set(n.values())) > 1:
            raise ValueError(f"with_entities: arrays of different lengths {n}")
        fields: dict[str, Any] = {k: entities[k] for k in ENTITY_FIELDS} | other
        return self.evolve(mobility=[], **fields)

    def evolve(self, **fields: Any) -> World:
        """A copy with ``fields`` replaced that keeps the access-point index (the network's
        positions must be the same)."""
        out = replace(self, **fields)
        if "_ap_index" in self.__dict__:
            out.__dict__["_ap_index"] = self.__dict__["_ap_index"]
        return out

    def select(self, idx: np.ndarray) -> World:
        """The same network with only the entities ``idx`` (no mobility models)."""
        idx = np.asarray(idx, dtype=np.int64)
        return self.with_entities({k: getattr(self, k)[idx] for k in ENTITY_FIELDS})


ENTITY_FIELDS = (
    "entity_ids",
    "entity_kind",
    "entity_owner",
    "entity_group",
    "xy_m",
    *DEMAND_FIELDS,
)
