"""Per-twin observations and the translation of per-twin actions into decisions the
orchestrator accepts. Plain NumPy over a :class:`~twinedge.orchestrator.NetworkView`, so
the environments and a trained policy running as an ordinary migration policy compute
exactly the same numbers.

Every feature is dimensionless and clipped into a fixed range (the observation space is
a bounded box): latencies are in units of the twin's own requirement ``latency_req_ms``
(1.0 is the deadline), utilisations are used / capacity of CPU, speed is in units of
10 m/s. ``c`` is the number of candidate hosts per twin (``view.candidates``: the
``k`` nearest hosts of its access point and the nearest host of every tier above).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from twinedge.policies.base import Moves
from twinedge.policies.capacity import fitting_prefix
from twinedge.world import models

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

#: latency and downtime ratios (in units of the requirement) are clipped at this value
RATIO_MAX = 10.0
#: utilisations are clipped at this value
UTILISATION_MAX = 2.0
#: speed is given in units of this many m/s
SPEED_UNIT_MPS = 10.0
#: ... and clipped at this many units
SPEED_MAX = 10.0

#: the twin's own features of a migration observation, in column order
MIGRATION_TWIN_FEATURES = ("latency_ratio", "late", "migrating", "speed", "host_utilisation")
#: the per-candidate features of a migration observation: ``c`` columns each, in this order
MIGRATION_CANDIDATE_FEATURES = (
    "latency_ratio",
    "utilisation",
    "fits",
    "current",
    "downtime_ratio",
)
#: the twin's own features of a placement observation, in column order
PLACEMENT_TWIN_FEATURES = ("cpu_share", "placed")
#: the per-candidate features of a placement observation: ``c`` columns each, in this order
PLACEMENT_CANDIDATE_FEATURES = (
    "latency_ratio",
    "utilisation",
    "cpu_share",
    "current",
    "downtime_ratio",
)

_MAX = {
    "latency_ratio": RATIO_MAX,
    "downtime_ratio": RATIO_MAX,
    "late": 1.0,
    "migrating": 1.0,
    "fits": 1.0,
    "current": 1.0,
    "placed": 1.0,
    "speed": SPEED_MAX,
    "host_utilisation": UTILISATION_MAX,
    "utilisation": UTILISATION_MAX,
    "cpu_share": UTILISATION_MAX,
}


def feature_names(kind: str, c: int) -> list[str]:
    """The column names of an observation of ``kind`` (``"migration"`` or
    ``"placement"``) with ``c`` candidates: the twin's own features, then each candidate
    feature for candidates ``0 .. c-1`` (nearest first), e.g. ``cand0_latency_ratio``.

    Raises:
        ValueError: an unknown ``kind`` or a negative ``c``.

    Examples:
        >>> feature_names("migration", 2)[:7]
        ['latency_ratio', 'late', 'migrating', 'speed', 'host_utilisation', 'cand0_latency_ratio', 'cand1_latency_ratio']
    """
    if c < 0:
        raise ValueError(f"c must be >= 0, got {c}")
    own: tuple[str, ...]
    per: tuple[str, ...]
    if kind == "migration":
        own, per = MIGRATION_TWIN_FEATURES, MIGRATION_CANDIDATE_FEATURES
    elif kind == "placement":
        own, per = PLACEMENT_TWIN_FEATURES, PLACEMENT_CANDIDATE_FEATURES
    else:
        raise ValueError(f"kind must be 'migration' or 'placement', got {kind!r}")
    return [*own, *(f"cand{j}_{f}" for f in per for j in range(c))]


def feature_high(kind: str, c: int) -> np.ndarray:
    """The upper bound of every column of an observation of ``kind`` (the lower bound is
    0), float32.

    Examples:
        >>> feature_high("placement", 1).tolist()
        [2.0, 1.0, 10.0, 2.0, 2.0, 1.0, 10.0]
    """
    names = feature_names(kind, c)
    return np.array(
        [_MAX[n.split("_", 1)[1] if n.startswith("cand") else n] for n in names], np.float32
    )


def n_candidates(view: NetworkView) -> int:
    """``c``: how many candidate hosts every twin of ``view`` has."""
    return int(view.ap_candidates.shape[1])


@dataclass(frozen=True)
class MigrationObservation:
    """A migration observation and what it was computed from.

    Attributes:
        obs: ``(n, 5 + 5c)`` float32 features (:func:`feature_names` ``("migration", c)``).
        cand: ``(n, c)`` the candidate hosts (indices into ``world.hosts``), nearest first.
        allowed: ``(n, c)`` whether the twin may run on each candidate.
    """

    obs: np.ndarray
    cand: np.ndarray
    allowed: np.ndarray


def migration_observation(view: NetworkView) -> MigrationObservation:
    """The features every twin's migration decision sees (one row per twin).

    Own features: ``latency_ratio`` (latency on its host / requirement), ``late``
    (1 when that exceeds the requirement), ``migrating`` (1 while it sits out a
    migration's downtime), ``speed`` (its entity's speed over the last step, in units of
    10 m/s), ``host_utilisation`` (CPU used / capacity of its host). Per candidate ``j``
    (nearest first): ``latency_ratio`` (latency it would have there, with the load it
    would add, / requirement; the maximum where it may not run there),
    ``utilisation`` (of that host now), ``fits`` (1 when its CPU and memory fit in the
    host's free room, or it is already there), ``current`` (1 for its own host),
    ``downtime_ratio`` (the stop-and-copy downtime of moving there, in ms / requirement;
    0 for its own host). Every value is clipped into ``[0, feature_high]``.

    Examples:
        >>> import numpy as np
        >>> from twinedge.orchestrator import NetworkState, NetworkView
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0, candidates_k=4)
        >>> migration_observation(view).obs.shape
        (200, 35)
    """
    w, s = view.world, view.state
    n, c = w.n_entities, n_candidates(view)
    if n == 0:
        return MigrationObservation(
            np.zeros((0, 5 + 5 * c), np.float32),
            np.zeros((0, c), np.int64),
            np.zeros((0, c), bool),
        )
    twins = np.arange(n)
    cand, lat = view.candidates(twins)
    req = w.latency_req_ms
    allowed = np.isfinite(lat)
    current = cand == s.host[:, None]
    free_cpu, free_mem = view.free_cpu_ghz, view.free_mem_gb
    fits = current | (
        (w.cpu_ghz[:, None] <= free_cpu[cand] + 1e-9) & (w.mem_gb[:, None] <= free_mem[cand] + 1e-9)
    )
    frm = np.broadcast_to(s.host[:, None], cand.shape)
    down_s = models.migration_downtime_s(
        w.state_bytes[:, None], w.host_host_mbps[frm, cand], w.host_host_ms[frm, cand]
    )
    util = s.used_cpu_ghz / w.host_cpu_ghz
    speed = np.hypot(*(s.xy_m - s.prev_xy_m).T) / view.step_s / SPEED_UNIT_MPS
    cols = [
        np.minimum(s.latency_ms / req, RATIO_MAX)[:, None],
        (s.latency_ms > req)[:, None],
        (s.downtime_left_s > 0)[:, None],
        np.minimum(speed, SPEED_MAX)[:, None],
        np.minimum(util[s.host], UTILISATION_MAX)[:, None],
        np.where(allowed, np.minimum(lat / req[:, None], RATIO_MAX), RATIO_MAX),
        np.minimum(util[cand], UTILISATION_MAX),
        fits & allowed,
        current,
        np.where(current, 0.0, np.minimum(1000.0 * down_s / req[:, None], RATIO_MAX)),
    ]
    obs = np.concatenate([np.asarray(col, dtype=float) for col in cols], axis=1)
    np.maximum(obs, 0.0, out=obs)
    return MigrationObservation(obs.astype(np.float32), cand, allowed)


@dataclass(frozen=True)
class ActionOutcome:
    """What became of the per-twin actions of one decision.

    Attributes:
        moves: the accepted moves (twins in index order), for the orchestrator.
        stayed: twins whose action was to stay, or to move to the host they are on.
        refused: twins whose move was refused: a host they may not run on, or one
            without room left for them.
    """

    moves: Moves
    stayed: int
    refused: int


def moves_from_actions(
    view: NetworkView, actions: np.ndarray, cand: np.ndarray | None = None
) -> ActionOutcome:
    """Turn one action per twin (0: stay; ``j + 1``: move to candidate ``j`` of
    :func:`migration_observation`) into moves the orchestrator's validation accepts.

    A move to a host the twin may not run on is refused. The other moves are taken in
    twin-index order: a move is accepted while its destination still has CPU and memory
    room for it after the moves accepted before it (room that twins leave in the same
    decision counts only from the next one), so every accepted set keeps every host
    within capacity; the rest are refused.

    Parameters:
        view: the view the decision is made on.
        actions: ``(n,)`` integers in ``[0, c]``.
        cand: the candidates of ``view`` (computed when ``None``).

    Raises:
        ValueError: ``actions`` has the wrong shape, is not integral, or is out of range.

    Examples:
        >>> import numpy as np
        >>> from twinedge.orchestrator import NetworkState, NetworkView
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)
        >>> out = moves_from_actions(view, np.zeros(world.n_entities, dtype=np.int64))
        >>> len(out.moves), out.stayed, out.refused
        (0, 200, 0)
    """
    w, s = view.world, view.state
    n = w.n_entities
    c = n_candidates(view)
    a = np.asarray(actions)
    if a.shape != (n,):
        raise ValueError(f"expected one action per twin, shape ({n},), got {a.shape}")
    if n and a.dtype.kind not in "iu":
        raise ValueError(f"actions must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if n and (a.min() < 0 or a.max() > c):
        raise ValueError(f"actions must lie in [0, {c}] (0: stay, j + 1: candidate j)")
    if cand is None:
        cand = view.ap_candidates[s.ap]
    go = np.flatnonzero(a > 0)
    dst = cand[go, a[go] - 1]
    real = dst != s.host[go]
    go, dst = go[real], dst[real]
    stayed = n - go.size
    ok = w.allowed(go)[np.arange(go.size), dst] if go.size else np.zeros(0, bool)
    go, dst = go[ok], dst[ok]
    refused = int((~ok).sum())
    if go.size:
        order = np.lexsort((go, dst))  # by host, twin order inside each host
        go, dst = go[order], dst[order]
        # a prefix per host: once one move does not fit, the later ones are refused too
        keep = fitting_prefix(dst, w.cpu_ghz[go], w.mem_gb[go], view.free_cpu_ghz, view.free_mem_gb)
        refused += int((~keep).sum())
        go, dst = go[keep], dst[keep]
        order = np.argsort(go, kind="stable")
        go, dst = go[order], dst[order]
    return ActionOutcome(Moves(go, dst), stayed, refused)


@dataclass(frozen=True)
class PlacementObservation:
    """A placement observation and what it was computed from.

    Attributes:
        obs: ``(n, 2 + 5c)`` float32 features (:func:`feature_names` ``("placement", c)``).
        cand: ``(n, c)`` the candidate hosts, nearest first.
        idle_ms: ``(n, c)`` latency on each candidate with an idle host (``inf`` where
            the twin may not run there).
    """

    obs: np.ndarray
    cand: np.ndarray
    idle_ms: np.ndarray


def placement_observation(view: NetworkView, placed: bool) -> PlacementObservation:
    """The features every twin's placement decision sees (one row per twin).

    Own features: ``cpu_share`` (its CPU demand / the capacity of its nearest
    candidate), ``placed`` (1 at a re-placement, 0 at the initial placement). Per
    candidate ``j`` (nearest first): ``latency_ratio`` (uplink + backbone + service time
    on the idle host, / requirement: the placement problem's latency; the maximum where
    it may not run there), ``utilisation`` (CPU used / capacity now; 0 at the initial
    placement), ``cpu_share`` (its CPU demand / the host's capacity), ``current``
    (1 for the host it is on; 0 at the initial placement), ``downtime_ratio`` (the
    downtime of moving there / requirement; 0 at the initial placement).

    Parameters:
        view: the view the decision is made on.
        placed: whether the twins are placed already (a re-placement).
    """
    w, s = view.world, view.state
    n, c = w.n_entities, n_candidates(view)
    if n == 0:
        z = np.zeros((0, c))
        return PlacementObservation(np.zeros((0, 2 + 5 * c), np.float32), z.astype(np.int64), z)
    cand = view.ap_candidates[s.ap]
    req = w.latency_req_ms[:, None]
    allowed = w.allowed()[np.arange(n)[:, None], cand]
    idle = (
        s.uplink_ms[:, None]
        + w.ap_host_ms[s.ap[:, None], cand]
        + w.idle_commit_ms(np.arange(n)[:, None], cand)
        + models.service_ms(w.work_gcycles[:, None], w.host_cpu_ghz[cand])
    )
    idle = np.where(allowed, idle, np.inf)
    share = w.cpu_ghz[:, None] / w.host_cpu_ghz[cand]
    if placed:
        util = (s.used_cpu_ghz / w.host_cpu_ghz)[cand]
        current = cand == s.host[:, None]
        frm = np.broadcast_to(s.host[:, None], cand.shape)
        down_s = models.migration_downtime_s(
            w.state_bytes[:, None], w.host_host_mbps[frm, cand], w.host_host_ms[frm, cand]
        )
        down = np.where(current, 0.0, 1000.0 * down_s / req)
    else:
        util = down = np.zeros(cand.shape)
        current = np.zeros(cand.shape, bool)
    cols = [
        np.minimum(share[:, :1], UTILISATION_MAX),
        np.full((n, 1), float(placed)),
        np.minimum(idle / req, RATIO_MAX),
        np.minimum(util, UTILISATION_MAX),
        np.minimum(share, UTILISATION_MAX),
        current,
        np.minimum(down, RATIO_MAX),
    ]
    obs = np.concatenate([np.asarray(col, dtype=float) for col in cols], axis=1)
    np.maximum(obs, 0.0, out=obs)
    return PlacementObservation(obs.astype(np.float32), cand, idle)


def placement_from_actions(
    view: NetworkView,
    actions: np.ndarray,
    fallback: Callable[..., Any],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn one candidate per twin (``j`` in ``[0, c)``: candidate ``j`` of
    :func:`placement_observation`) into a placement of every twin within capacity.

    A choice of a host the twin may not run on is refused. The other choices are taken
    in twin-index order, each accepted while its host still has CPU and memory room for
    it after the twins accepted before it; the rest are refused. Refused twins are placed
    by ``fallback`` (a placement policy ``fn(problem, rng)``, e.g. ``greedy``) on the
    room the accepted twins leave, so the answer is always a complete placement.

    Parameters:
        view: the view the decision is made on.
        actions: ``(n,)`` integers in ``[0, c)``.
        fallback: places the refused twins.
        rng: the policy stream (for ``fallback``).

    Returns:
        ``(hosts, refused)``: one host per twin, and the indices of the refused twins.

    Raises:
        ValueError: ``actions`` has the wrong shape, is not integral, or is out of range.
        InfeasibleError: the refused twins do not fit in the room left.
        PolicyError: ``fallback`` answers invalidly.
    """
    from twinedge.policies.placement import PlacementProblem, solve_placement

    w, s = view.world, view.state
    n, c = w.n_entities, n_candidates(view)
    a = np.asarray(actions)
    if a.shape != (n,):
        raise ValueError(f"expected one action per twin, shape ({n},), got {a.shape}")
    if n and a.dtype.kind not in "iu":
        raise ValueError(f"actions must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if n and (a.min() < 0 or a.max() >= c):
        raise ValueError(f"actions must lie in [0, {c}) (j: candidate j)")
    hosts = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return hosts, np.zeros(0, np.int64)
    twins = np.arange(n)
    dst = view.ap_candidates[s.ap][twins, a]
    ok = w.allowed()[twins, dst]
    go, to = twins[ok], dst[ok]
    order = np.lexsort((go, to))
    go, to = go[order], to[order]
    keep = fitting_prefix(to, w.cpu_ghz[go], w.mem_gb[go], w.host_cpu_ghz, w.host_mem_gb)
    hosts[go[keep]] = to[keep]
    refused = np.flatnonzero(hosts < 0)
    if refused.size:
        placed = np.flatnonzero(hosts >= 0)
        m = w.n_hosts
        cpu_left = w.host_cpu_ghz - np.bincount(hosts[placed], w.cpu_ghz[placed], minlength=m)
        mem_left = w.host_mem_gb - np.bincount(hosts[placed], w.mem_gb[placed], minlength=m)
        lat = (
            s.uplink_ms[refused, None]
            + w.ap_host_ms[s.ap[refused]]
            + w.idle_commit_ms(refused[:, None], np.arange(w.n_hosts)[None, :])
            + models.service_ms(w.work_gcycles[refused, None], w.host_cpu_ghz[None, :])
        )
        lat[~w.allowed(refused)] = np.inf
        problem = PlacementProblem(
            lat,
            w.cpu_ghz[refused],
            w.mem_gb[refused],
            np.maximum(cpu_left, 0.0),
            np.maximum(mem_left, 0.0),
        )
        hosts[refused] = solve_placement(fallback, problem, rng).hosts
    return hosts, refused
