"""The migration contract and the shared capacity-aware assignment helper.

A migration policy is any callable ``policy(view: NetworkView, rng) -> Moves`` (or the
pair ``(twins, hosts)``): which twin moves to which host index. Built-ins are small
classes configured in ``__init__`` (scikit-learn style, see
:class:`twinedge.policies.base.MigrationPolicy`) and callable the same way. The
orchestrator rejects an answer that would exceed a host's CPU or memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twinedge.policies.base import Moves
from twinedge.policies.capacity import fitting_prefix
from twinedge.world import models

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

NO_MOVES = Moves.none()


def assign_under_capacity(
    ctx: NetworkView,
    twins: np.ndarray,
    cand: np.ndarray,
    score: np.ndarray,
    priority: np.ndarray,
    *,
    bound_ms: np.ndarray | None = None,
    protect_on_time: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Move each twin to its best-scoring candidate host (lowest score first) that still
    has CPU and memory room, honouring ``priority`` (higher first) when twins compete.

    Vectorised in rounds: every unplaced twin proposes its best remaining candidate; each
    host accepts proposals in priority order while they fit; the rest try their next
    candidate. ``inf`` scores are never chosen. Returns ``(twins, new_hosts)`` moved.

    Load-aware: latency grows with a host's load, so the room of a host is also limited
    by the latency its twins can bear. With ``protect_on_time`` (the default) a host
    takes no more load than keeps every twin on it that meets its requirement now on time
    (:meth:`~twinedge.orchestrator.NetworkView.load_limit_ghz`). With ``bound_ms`` (one
    per twin), a twin moves only where its latency, with every twin accepted before it
    on that host counted, stays at most ``bound_ms``; the twins accepted before it must
    keep their own bounds too. Without these checks, twins that all see the same lightly
    loaded host move there together, overload it, and move away again next step.

    Parameters:
        ctx: the network view.
        twins: ``(n,)`` twins that may move.
        cand: ``(n, c)`` candidate host indexes of each twin.
        score: ``(n, c)`` lower is better; ``inf`` = not a target.
        priority: ``(n,)`` higher goes first where twins compete for a host.
        bound_ms: ``(n,)`` the latency each twin must at least reach where it moves
            (e.g. its latency now); ``None`` for no such check.
        protect_on_time: refuse moves that would make twins on time miss their deadline.

    Raises:
        ValueError: if the shapes disagree.

    Examples:
        >>> import numpy as np
        >>> from twinedge.orchestrator import NetworkState, NetworkView
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)
        >>> twins = np.arange(3)
        >>> cand, lat = view.candidates(twins)
        >>> moved, hosts = assign_under_capacity(view, twins, cand, lat, -lat.min(axis=1))
        >>> len(moved) == len(hosts) <= 3
        True
    """
    twins = np.asarray(twins, dtype=np.int64)
    n = len(twins)
    if cand.shape != score.shape or cand.shape[:1] != (n,) or np.shape(priority) != (n,):
        raise ValueError(
            f"assign_under_capacity: twins {twins.shape}, cand {cand.shape}, score "
            f"{score.shape} and priority {np.shape(priority)} disagree"
        )
    if bound_ms is not None and np.shape(bound_ms) != (n,):
        raise ValueError(f"bound_ms has shape {np.shape(bound_ms)}; expected ({n},)")
    w, s = ctx.world, ctx.state
    cap = w.host_cpu_ghz
    free_cpu = ctx.free_cpu_ghz.copy()
    free_mem = ctx.free_mem_gb.copy()
    load = s.used_cpu_ghz.astype(float).copy()
    limit = ctx.load_limit_ghz() if protect_on_time else np.full(w.n_hosts, np.inf)
    order = np.argsort(score, axis=1, kind="stable")
    rank = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    out_t: list[np.ndarray] = []
    out_h: list[np.ndarray] = []
    k = cand.shape[1]
    for _ in range(k):
        live = np.flatnonzero(~done)
        if live.size == 0:
            break
        col = order[live, rank[live]]
        finite = np.isfinite(score[live, col])
        done[live[~finite]] = True  # the best remaining candidate is not allowed: give up
        live, col = live[finite], col[finite]
        if live.size == 0:
            break
        host = cand[live, col]
        t = twins[live]
        # group by host, priority order inside each group
        o = np.lexsort((-priority[live], host))
        host, t_o, live_o = host[o], t[o], live[o]
        # the prefix of each host's queue whose demand fits its room
        fits = fitting_prefix(host, w.cpu_ghz[t_o], w.mem_gb[t_o], free_cpu, free_mem)
        # ... and whose load keeps every twin there on time: the load grows along the
        # queue while the limits below only shrink, so what passes is a prefix too
        starts = np.r_[True, host[1:] != host[:-1]]
        group = np.cumsum(starts) - 1
        csum_cpu = np.cumsum(w.cpu_ghz[t_o])
        after = load[host] + csum_cpu - (csum_cpu - w.cpu_ghz[t_o])[starts][group]
        fits &= after <= limit[host] + 1e-9
        mover_limit = np.full(host.size, np.inf)
        if bound_ms is not None:
            bound = np.asarray(bound_ms, dtype=float)[live_o]
            rho = models.utilisation_limit(
                bound
                - s.uplink_ms[t_o]
                - w.ap_host_ms[s.ap[t_o], host]
                - s.commit_ms_on(w, t_o, host),
                models.service_ms(w.work_gcycles[t_o], cap[host]),
            )
            mover_limit = rho * cap[host]
            # the least limit of this twin and those before it on the same host
            finite_limit = np.clip(mover_limit, -1.0, 2.0 * cap.max() + 1.0)
            shift = group * (4.0 * cap.max() + 4.0)
            running = np.minimum.accumulate(finite_limit - shift) + shift
            fits &= after <= running + 1e-9
        acc_t, acc_h = t_o[fits], host[fits]
        np.subtract.at(free_cpu, acc_h, w.cpu_ghz[acc_t])
        np.subtract.at(free_mem, acc_h, w.mem_gb[acc_t])
        np.add.at(load, acc_h, w.cpu_ghz[acc_t])
        np.minimum.at(limit, acc_h, mover_limit[fits])
        out_t.append(acc_t)
        out_h.append(acc_h)
        done[live_o[fits]] = True
        rank[live_o[~fits]] += 1
        done[rank >= k] = True
    if not out_t:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_t), np.concatenate(out_h)
