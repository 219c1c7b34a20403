"""The simulated face of attention-guided sharing: value-weighted staleness against bytes,
on entity movements of the simulator (a built-in city) or of real traces (iFogSim2's
Melbourne user paths), for three ways of feeding subscribers:

* ``all``: every update to every subscriber (the full stream);
* ``distance``: distance-based interest sets (Donnybrook, SIGCOMM 2008): a subscriber's
  ``interest_set`` nearest entities get every update, the others share what is left of
  the budget round-robin (the one not sent the longest first), the reduced rate;
* ``attention``: :func:`twinedge.attention.select.scores` and
  :func:`~twinedge.attention.select.choose`: the softmax of relevance, filter, change and
  staleness, the staleness bound first.

The model (docs/attention.md has it with units): every tick of ``tick_s`` an entity that
moved during it produces a new version of its state (``update_bytes``), out at the tick's
end. A subscriber holds one copy per entity (the positions at the start: a subscription
begins with a snapshot); a copy is *out of date* from the start of the tick in which a
newer version appeared until one is delivered; delivery is at the tick's end, when the
policy chooses (no network delay is modelled: this compares what is sent, not how), and
then the copy counts as up to date.
Subscriber ``s`` is one of the entities; its region is a circle of ``radius_m`` around
it. The value of entity ``i`` to ``s`` at time ``t`` is ``v = exp(-d / radius_m) * phi``
(``d`` the entity's distance outside the region, ``phi`` 1 or ``miss_factor`` for an
entity of a kind outside ``kinds``), and::

    value-weighted staleness = sum_{t, s, i} v_si(t) * stale_si(t) / sum_{t, s, i} v_si(t)

with ``stale_si(t)`` the seconds the copy has been out of date at the end of tick ``t``
(0 when up to date), sampled every tick after the tick's sends. The budget of each
subscriber is a share of the full stream's mean rate, over windows of one tick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from twinedge.attention.errors import AttentionError
from twinedge.attention.interest import Circle, Interest, Weights
from twinedge.attention.select import WindowBudget, choose, scores

__all__ = [
    "POLICIES",
    "Movements",
    "Outcome",
    "Setup",
    "city_movements",
    "compare",
    "path_movements",
    "run_policy",
]

Policy = Literal["all", "distance", "attention"]
POLICIES: tuple[Policy, ...] = ("all", "distance", "attention")


@dataclass(frozen=True)
class Movements:
    """Positions of ``n`` entities at ``ticks + 1`` instants ``tick_s`` apart.

    Attributes:
        xy_m: ``(ticks + 1, n, 2)`` positions, metres; row 0 is the start.
        tick_s: seconds between rows.
        kind: ``(n,)`` the entities' kinds.
        source: where the movements come from (a scenario name, trace files).
    """

    xy_m: np.ndarray
    tick_s: float
    kind: np.ndarray
    source: str

    @property
    def ticks(self) -> int:
        return int(self.xy_m.shape[0] - 1)

    @property
    def n(self) -> int:
        return int(self.xy_m.shape[1])


def city_movements(
    scenario: str | Path = "city-small", *, ticks: int = 600, tick_s: float = 0.1, seed: int = 0
) -> Movements:
    """The movements of a scenario's entities as the simulation engine moves them
    (:func:`twinedge.engine.simulation.move_entities`, steps of ``tick_s``).

    Raises:
        ScenarioError: the scenario cannot be loaded.
        AttentionError: ``ticks`` < 1 or ``tick_s`` <= 0.

    Examples:
        >>> m = city_movements(ticks=3)
        >>> m.xy_m.shape, m.tick_s, sorted(set(m.kind.tolist()))
        ((4, 200, 2), 0.1, ['pedestrian', 'sensor', 'vehicle'])
    """
    from twinedge.engine.simulation import move_entities
    from twinedge.orchestrator import NetworkState
    from twinedge.scenario import load_scenario
    from twinedge.world import build_world

    _check_ticks(ticks, tick_s)
    sc = load_scenario(scenario)
    world_rng, mobility_rng = np.random.default_rng(seed).spawn(2)
    world = build_world(sc, world_rng)
    state = NetworkState.at(world, world.xy_m)
    xy = np.empty((ticks + 1, world.n_entities, 2))
    xy[0] = state.xy_m
    for t in range(1, ticks + 1):
        move_entities(world, state, tick_s, mobility_rng)
        state.t_s = t * tick_s
        xy[t] = state.xy_m
    kind = np.asarray(world.kinds, dtype=object)[world.entity_kind]
    return Movements(xy, tick_s, kind.astype(str), f"scenario {sc.name}")


def path_movements(
    files: Sequence[Path],
    *,
    copies: int = 30,
    ticks: int = 600,
    tick_s: float = 0.1,
    path_step_s: float = 10.0,
    seed: int = 0,
) -> Movements:
    """Movements replayed from path or trace files (iFogSim2's user paths: one point
    every ``path_step_s``), each path walked by ``copies`` entities that start at
    random points along it (uniform phases, looping at its end), interpolated linearly.

    Raises:
        ScenarioError: a file cannot be read.
        AttentionError: no files, ``copies`` < 1, ``ticks`` < 1 or ``tick_s`` <= 0.
    """
    from twinedge.world.geo import latlon_to_xy_m
    from twinedge.world.mobility import read_trace

    _check_ticks(ticks, tick_s)
    if not files or copies < 1:
        raise AttentionError("files", "give at least one trace file and copies >= 1")
    tracks: list[tuple[np.ndarray, np.ndarray]] = []
    latlon: list[bool] = []
    for f in files:
        _ids, off, t_s, ab, is_ll = read_trace(Path(f), path_step_s)
        for k in range(len(off) - 1):
            tracks.append((t_s[off[k] : off[k + 1]], ab[off[k] : off[k + 1]]))
            latlon.append(is_ll)
    if any(latlon):
        allab = np.concatenate([ab for _, ab in tracks])
        o_lat, o_lon = float(allab[:, 0].mean()), float(allab[:, 1].mean())
        tracks = [
            (t, latlon_to_xy_m(ab[:, 0], ab[:, 1], o_lat, o_lon) if ll else ab)
            for (t, ab), ll in zip(tracks, latlon, strict=True)
        ]
    rng = np.random.default_rng(seed)
    times = np.arange(ticks + 1) * tick_s
    cols = []
    for t, xy in tracks:
        period = float(t[-1] - t[0]) + path_step_s  # loop: back to the first point
        tt = np.append(t - t[0], period)
        px, py = np.append(xy[:, 0], xy[0, 0]), np.append(xy[:, 1], xy[0, 1])
        for phase in rng.uniform(0.0, period, copies):
            u = (times + phase) % period
            cols.append(np.column_stack([np.interp(u, tt, px), np.interp(u, tt, py)]))
    out = np.stack(cols, axis=1)
    names = ", ".join(Path(f).name for f in files)
    return Movements(out, tick_s, np.full(out.shape[1], "user"), f"traces {names}")


def _check_ticks(ticks: int, tick_s: float) -> None:
    if ticks < 1 or not (math.isfinite(tick_s) and tick_s > 0):
        raise AttentionError("ticks", f"ticks {ticks}, tick_s {tick_s}: need >= 1 and > 0")


@dataclass(frozen=True)
class Setup:
    """The experiment's settings.

    Parameters:
        subscribers: how many entities subscribe (spread evenly over the entity list).
        radius_m: the radius of each subscriber's region, around itself.
        update_bytes: the size of one update (a position report with its envelope).
        budget_share: each subscriber's budget as a share of the full stream's mean rate.
        max_staleness_s: the staleness bound of ``attention``.
        interest_set: ``distance``'s interest-set size (Donnybrook: 5).
        kinds: the subscribers' filter: the entity kinds that match (``None``: all).
        weights: ``attention``'s score weights.
        miss_factor: the value factor of an entity that does not match the filter.
    """

    subscribers: int = 20
    radius_m: float = 200.0
    update_bytes: int = 200
    budget_share: float = 0.1
    max_staleness_s: float = 10.0
    interest_set: int = 5
    kinds: tuple[str, ...] | None = None
    weights: Weights = field(default_factory=Weights)
    miss_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.subscribers < 1 or self.interest_set < 0 or self.update_bytes <= 0:
            raise AttentionError(
                "setup", "subscribers >= 1, interest_set >= 0 and update_bytes > 0 are needed"
            )
        if not 0 < self.budget_share <= 1:
            raise AttentionError(
                "budget_share", f"budget_share: {self.budget_share}: expected in (0, 1]"
            )


@dataclass(frozen=True)
class Outcome:
    """One policy's result: ``bytes`` delivered to all subscribers, their ``share`` of the
    full stream, the value-weighted staleness ``vws_s`` (seconds), the largest staleness
    any copy reached, ``max_stale_s``, and that of copies worth at least 0.5 (within
    ``radius_m * ln 2`` of the region), ``max_stale_near_s``."""

    policy: str
    bytes: float
    share: float
    vws_s: float
    max_stale_s: float
    max_stale_near_s: float
    interest_set: int | None = None


def _values(mov: Movements, setup: Setup, t: int, subs: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(M, n)`` distances outside each region, distances to each centre, and values."""
    xy = mov.xy_m[t]
    centre = xy[subs]
    d_c = np.hypot(xy[None, :, 0] - centre[:, 0:1], xy[None, :, 1] - centre[:, 1:2])
    d_out = np.maximum(d_c - setup.radius_m, 0.0)
    v = np.exp(-d_out / setup.radius_m)
    if setup.kinds is not None:
        v = v * np.where(np.isin(mov.kind, setup.kinds), 1.0, setup.miss_factor)[None, :]
    return d_out, d_c, v


def full_stream_bps(mov: Movements, setup: Setup) -> float:
    """The mean rate of the full stream to one subscriber: every new version, bits/s."""
    moved = (np.diff(mov.xy_m, axis=0) != 0).any(axis=2)
    return float(moved.sum() * setup.update_bytes * 8 / (mov.ticks * mov.tick_s))


def run_policy(
    mov: Movements,
    setup: Setup,
    policy: Policy,
    *,
    budget_bps: float | None = None,
    interest_set: int | None = None,
) -> Outcome:
    """Feed every subscriber for the whole of ``mov`` with ``policy`` and measure.

    Parameters:
        mov: the movements.
        setup: the settings.
        policy: ``all``, ``distance`` or ``attention``.
        budget_bps: each subscriber's budget (default: ``budget_share`` of the full
            stream); ``all`` ignores it.
        interest_set: ``distance``'s interest-set size (default ``setup.interest_set``).

    Raises:
        AttentionError: an unknown policy, or a budget below one update per tick.

    Examples:
        >>> m = city_movements(ticks=20)
        >>> run_policy(m, Setup(subscribers=4), "all").vws_s
        0.0
    """
    if policy not in POLICIES:
        raise AttentionError("policy", f"policy: {policy!r}: expected one of {POLICIES}")
    n, tick = mov.n, mov.tick_s
    bits = setup.update_bytes * 8.0
    if budget_bps is None:
        budget_bps = setup.budget_share * full_stream_bps(mov, setup)
    if policy != "all" and budget_bps * tick < bits:
        raise AttentionError(
            "budget_bps",
            f"budget {budget_bps:.0f} bit/s carries less than one {setup.update_bytes}-byte"
            f" update per {tick} s tick",
        )
    k = setup.interest_set if interest_set is None else interest_set
    subs = np.unique(np.linspace(0, n - 1, min(setup.subscribers, n)).astype(np.int64))
    m = subs.size
    interest = Interest(
        Circle((0.0, 0.0), setup.radius_m),
        weights=setup.weights,
        budget_bps=budget_bps,
        window_s=tick,
        max_staleness_s=setup.max_staleness_s,
        miss_factor=setup.miss_factor,
    )
    # budgets count in ticks (exact integers): windows of one tick, budget_bps * tick each
    budgets = [WindowBudget(budget_bps * tick, 1.0) for _ in range(m)]
    held = np.broadcast_to(mov.xy_m[0], (m, n, 2)).copy()
    since = np.full((m, n), np.nan)
    last_sent = np.zeros((m, n))
    matches = None if setup.kinds is None else np.isin(mov.kind, setup.kinds)
    sent_bits = num = den = 0.0
    max_stale = max_near = 0.0
    bits_arr = np.full(n, bits)
    for t in range(1, mov.ticks + 1):
        now = t * tick
        moved = (mov.xy_m[t] != mov.xy_m[t - 1]).any(axis=1)
        since[np.isnan(since) & moved[None, :]] = now - tick  # moved during the tick
        d_out, d_c, v = _values(mov, setup, t, subs)
        for s in range(m):
            pend = np.flatnonzero(~np.isnan(since[s]))
            if pend.size == 0:
                continue
            if policy == "all":
                chosen = pend
            else:
                avail = budgets[s].available_bits(float(t))
                cap = int(avail // bits)
                if policy == "attention":
                    st = now - since[s, pend]
                    ch = np.hypot(*(mov.xy_m[t, pend] - held[s, pend]).T)
                    a = scores(interest, d_out[s, pend], st, matches=_at(matches, pend), change=ch)
                    chosen = pend[choose(a, bits_arr[pend], st, avail, setup.max_staleness_s)]
                else:  # Donnybrook: the interest set in full, the rest round-robin
                    near = np.argsort(d_c[s], kind="stable")
                    near = near[near != subs[s]][:k]
                    in_set = np.isin(pend, near)
                    first = pend[in_set][np.argsort(d_c[s, pend[in_set]], kind="stable")]
                    others = pend[~in_set]
                    others = others[np.argsort(last_sent[s, others], kind="stable")]
                    chosen = np.concatenate([first, others])[:cap]
                budgets[s].spend(float(t), chosen.size * bits)
            sent_bits += chosen.size * bits
            held[s, chosen] = mov.xy_m[t, chosen]
            since[s, chosen] = np.nan
            last_sent[s, chosen] = now
        stale = np.where(np.isnan(since), 0.0, now - since)
        num += float((v * stale).sum())
        den += float(v.sum())
        max_stale = max(max_stale, float(stale.max()))
        near_mask = v >= 0.5
        if near_mask.any():
            max_near = max(max_near, float(stale[near_mask].max()))
    full_bits = full_stream_bps(mov, setup) * mov.ticks * tick * m
    return Outcome(
        policy,
        sent_bits / 8.0,
        sent_bits / full_bits if full_bits else 0.0,
        num / den if den else 0.0,
        max_stale,
        max_near,
        k if policy == "distance" else None,
    )


def _at(x: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if x is None else x[idx]


def compare(
    mov: Movements, setup: Setup | None = None, *, interest_sets: Sequence[int] = (1, 5, 10, 20)
) -> dict:
    """The three policies on ``mov`` at ``setup.budget_share`` of the full stream, the
    distance baseline at every interest-set size of ``interest_sets`` (and
    ``setup.interest_set``), and the ratios of attention's value-weighted staleness to
    the baseline's at Donnybrook's size and at the best size.

    Returns:
        A JSON-ready dict: ``source``, ``entities``, ``ticks``, ``tick_s``,
        ``full_stream_bps`` (per subscriber), ``budget_bps``, ``setup`` (``null`` for no
        staleness bound), ``outcomes`` (one dict per run), ``ratio``, ``ratio_best`` and
        ``best_interest_set``.

    Examples:
        >>> r = compare(city_movements(ticks=30), Setup(subscribers=4), interest_sets=())
        >>> [o["policy"] for o in r["outcomes"]], r["ratio"] < 1
        (['all', 'distance', 'attention'], True)
    """
    setup = setup or Setup()
    full = full_stream_bps(mov, setup)
    budget = setup.budget_share * full
    outs = [run_policy(mov, setup, "all")]
    sizes = sorted({setup.interest_set, *interest_sets})
    dist = {k: run_policy(mov, setup, "distance", budget_bps=budget, interest_set=k) for k in sizes}
    outs += [dist[k] for k in sizes]
    att = run_policy(mov, setup, "attention", budget_bps=budget)
    outs.append(att)
    best = min(dist.values(), key=lambda o: o.vws_s)
    base = dist[setup.interest_set]
    setup_d = asdict(setup)
    setup_d["kinds"] = list(setup.kinds) if setup.kinds is not None else None
    if not math.isfinite(setup.max_staleness_s):
        setup_d["max_staleness_s"] = None  # no bound (JSON has no infinity)
    return {
        "source": mov.source,
        "entities": mov.n,
        "ticks": mov.ticks,
        "tick_s": mov.tick_s,
        "full_stream_bps": full,
        "budget_bps": budget,
        "setup": setup_d,
        "outcomes": [asdict(o) for o in outs],
        "ratio": att.vws_s / base.vws_s if base.vws_s else math.inf,
        "ratio_best": att.vws_s / best.vws_s if best.vws_s else math.inf,
        "best_interest_set": best.interest_set,
    }
