"""Capacity-aware assignment over candidate lists, vectorised: the engine of the built-in
``nearest`` and ``greedy`` policies.

Both take twins in a priority order and give each the first host of its list (cheapest
first) that still has room. Done one twin at a time in Python this costs microseconds
per twin and grows with the contention (a twin walks its list again whenever a host it
counted on fills up). Here it runs in *rounds*, each a handful of NumPy passes over the
``(twins, c)`` candidate arrays:

1. every unplaced twin finds its cheapest candidate with room at the start of the round
   (and, for the regret order, its second cheapest: regret = second - best, ``inf``
   when there is no second, as in Martello and Toth's MTHG);
2. the twins are sorted by priority and grouped by the host they ask for (one stable
   sort); within a host the prefix of askers whose cumulative CPU and memory demand fits
   its room is accepted (a cumulative sum per group);
3. the accepted twins are placed, the room is updated, and the rest try again.

Every host asked for accepts at least its first asker (that twin fits by step 1), so each
round places at least one twin per contested host and the rounds end; in practice a
handful of rounds place all twins, each ``O(twins x c)``, plus one sort. Once few twins are
left (or after ``max_rounds``) they are finished one by one in the same priority order,
which is cheap for a short tail.

The result is a greedy answer in the priority order with one difference from strictly
sequential processing: within a round, a twin that asks a host for the first time can
take room that a higher-priority twin turned away elsewhere in the same round would
have taken one round later. Neither order is better in general; the regret order is
refreshed every round, so the twins with the least choice still go first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from twinedge.policies.capacity import fitting_prefix

_EPS = 1e-9


Widen = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``widen(twins, res_cpu, res_mem) -> (hosts, latency)``: longer lists, ``(len(twins), w)``,
for twins whose list has no room left (see :func:`fitting_lists`)."""


class _Pool:
    """Twins sharing one list width: lists along axis 0 (NumPy runs every operation
    along the twins, not along a short row, several times faster), the twins' global
    indices, and the local rows still unplaced."""

    def __init__(self, cand: np.ndarray, lat: np.ndarray, twins: np.ndarray) -> None:
        self.cand_t = np.ascontiguousarray(cand.T)
        self.lat_t = np.ascontiguousarray(lat.T)
        self.twins = twins
        self.todo = np.arange(twins.size)


def assign_rounds(
    cand: np.ndarray,
    lat: np.ndarray,
    cpu: np.ndarray,
    mem: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    *,
    key: np.ndarray | None = None,
    widen: Widen | None = None,
    max_rounds: int = 64,
    tail: int = 256,
) -> np.ndarray:
    """Give every twin (row) the cheapest host of its list that still has room.

    Parameters:
        cand, lat: ``(r, c)`` candidate hosts of each twin and their latency (``inf``:
            not allowed), in any order within a row; ties go to the first column.
        cpu, mem: ``(r,)`` demand of each twin.
        res_cpu, res_mem: ``(H,)`` room left on every host; updated in place.
        key: ``(r,)`` fixed priority, smallest first (``nearest``: the latency of the
            twin's best candidate); ``None``: the regret order, refreshed every round.
        widen: called once for the twins whose list has no host with room left; they
            go on, in the same rounds, with the lists it returns. ``None``: they stay
            unplaced.
        max_rounds: rounds before the rest is finished one twin at a time.
        tail: finish one twin at a time once at most this many are left.

    Returns:
        ``(r,)`` host of each twin, ``-1`` where no host of its list(s) has room.

    Examples:
        >>> cand = np.array([[0, 1], [0, 1], [0, 1]])
        >>> lat = np.array([[1.0, 5.0], [1.0, 2.0], [1.0, 9.0]])
        >>> res = np.array([2.0, 2.0])
        >>> assign_rounds(cand, lat, np.ones(3), np.zeros(3), res, np.ones(2)).tolist()
        [0, 1, 0]
    """
    r = cand.shape[0]
    out = np.full(r, -1, dtype=np.int64)
    m = res_cpu.size
    pools = [_Pool(cand, lat, np.arange(r))]
    for _ in range(max_rounds):
        asks = []  # per pool: (pool, local rows, host, best, regret)
        dead = []
        for pool in pools:
            todo = pool.todo
            if todo.size == 0:
                continue
            cc = pool.cand_t[:, todo]
            g = pool.twins[todo]
            ci, mi = cpu[g], mem[g]
            room = res_cpu[cc]
            room += _EPS
            ok = ci[None, :] <= room
            room = res_mem[cc]
            room += _EPS
            ok &= mi[None, :] <= room
            masked = pool.lat_t[:, todo]
            masked[~ok] = np.inf
            cols = np.arange(todo.size)
            first = masked.argmin(axis=0)
            best = masked[first, cols]
            alive = best < np.inf
            if not alive.all():
                if pool is pools[0]:  # a widened list holds every host with room: no more
                    dead.append(g[~alive])
                todo, cc, masked, first, best = (
                    todo[alive],
                    cc[:, alive],
                    masked[:, alive],
                    first[alive],
                    best[alive],
                )
                pool.todo = todo
                cols = np.arange(todo.size)
            if todo.size == 0:
                continue
            host = cc[first, cols]
            if key is None:
                masked[first, cols] = np.inf
                regret = masked.min(axis=0) - best  # inf without a second choice
            else:
                regret = np.zeros(todo.size)
            asks.append((pool, todo, host, best, regret))
        if dead and widen is not None:  # each twin is widened once
            lost = np.concatenate(dead)
            wc, wl = widen(lost, res_cpu, res_mem)
            pools.append(_Pool(wc, wl, lost))
            continue  # they ask from the next round on, with the others still unplaced
        if not asks:
            return out
        g = np.concatenate([a[0].twins[a[1]] for a in asks])
        host = np.concatenate([a[2] for a in asks])
        best = np.concatenate([a[3] for a in asks])
        regret = np.concatenate([a[4] for a in asks])
        if key is None:
            by_best = np.lexsort((g, best))
            order = by_best[np.argsort(-regret[by_best], kind="stable")]
        else:
            order = np.lexsort((g, key[g]))
        if g.size <= tail:
            _one_by_one(g[order], pools, cpu, mem, res_cpu, res_mem, out)
            main = pools[0]
            lost = main.twins[main.todo[out[main.twins[main.todo]] < 0]]
            if widen is None or lost.size == 0:
                return out
            for pool in pools:  # the widened lists were tried: only the lost go on
                pool.todo = pool.todo[:0]
            wc, wl = widen(lost, res_cpu, res_mem)
            pools.append(_Pool(wc, wl, lost))
            continue
        grouped = order[np.argsort(host[order], kind="stable")]
        hg = host[grouped]
        acc = grouped[fitting_prefix(hg, cpu[g[grouped]], mem[g[grouped]], res_cpu, res_mem)]
        out[g[acc]] = host[acc]
        res_cpu -= np.bincount(host[acc], weights=cpu[g[acc]], minlength=m)
        res_mem -= np.bincount(host[acc], weights=mem[g[acc]], minlength=m)
        placed = np.zeros(r, dtype=bool)
        placed[g[acc]] = True
        for pool in pools:
            pool.todo = pool.todo[~placed[pool.twins[pool.todo]]]
    left = np.concatenate([pool.twins[pool.todo] for pool in pools])
    if left.size:
        order = np.argsort(left, kind="stable") if key is None else np.lexsort((left, key[left]))
        _one_by_one(left[order], pools, cpu, mem, res_cpu, res_mem, out)
    return out


def _one_by_one(
    twins: np.ndarray,
    pools: list[_Pool],
    cpu: np.ndarray,
    mem: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    out: np.ndarray,
) -> None:
    """Sequential first fit of ``twins`` in the given order (the short tail), each over
    its list(s) by increasing latency: a widened twin's own list, then its wider one."""
    inf = math.inf
    rc, rm = res_cpu.tolist(), res_mem.tolist()
    lists: dict[int, list[tuple[float, int]]] = {}
    want = np.zeros(out.size, dtype=bool)
    want[twins] = True
    for pool in pools:
        rows = np.flatnonzero(want[pool.twins])
        if rows.size == 0:
            continue
        hs = pool.cand_t[:, rows].T.tolist()
        ls = pool.lat_t[:, rows].T.tolist()
        for t, row_h, row_l in zip(pool.twins[rows].tolist(), hs, ls, strict=True):
            lists.setdefault(t, []).extend(
                sorted(zip(row_l, row_h, strict=True), key=lambda pair: pair[0])
            )
    for i in twins.tolist():
        ci, mi = float(cpu[i]), float(mem[i])
        for lj, j in lists.get(i, ()):
            if lj == inf:
                continue
            if ci <= rc[j] + _EPS and mi <= rm[j] + _EPS:
                out[i] = j
                rc[j] -= ci
                rm[j] -= mi
                break
    res_cpu[:] = rc
    res_mem[:] = rm


def fitting_lists(problem: Any, width: int = 16) -> Widen:
    """A :data:`Widen` over ``problem``'s whole rows (:meth:`PlacementProblem.rows`, in
    chunks, no dense matrix): for each twin the ``width`` cheapest hosts that have room
    for it now. Room only shrinks, so a host without room for a twin now never has it."""
    m = problem.n_hosts
    w = min(width, m)
    step = max(1, 2_000_000 // max(m, 1))
    cpu, mem = problem.demand_cpu_ghz, problem.demand_mem_gb

    def widen(
        twins: np.ndarray, res_cpu: np.ndarray, res_mem: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cand = np.empty((twins.size, w), dtype=np.int64)
        lat = np.empty((twins.size, w))
        for a in range(0, twins.size, step):
            t = twins[a : a + step]
            row = problem.rows(t)
            fits = (cpu[t, None] <= res_cpu[None, :] + _EPS) & (
                mem[t, None] <= res_mem[None, :] + _EPS
            )
            row = np.where(fits, row, np.inf)
            if w < m:
                part = np.argpartition(row, w - 1, axis=1)[:, :w]
            else:
                part = np.broadcast_to(np.arange(m), row.shape)
            cand[a : a + step] = part
            lat[a : a + step] = np.take_along_axis(row, part, axis=1)
        return cand, lat

    return widen


def shift_improve(
    cand: np.ndarray,
    lat: np.ndarray,
    hosts: np.ndarray,
    cur: np.ndarray,
    cpu: np.ndarray,
    mem: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    max_rounds: int = 50,
) -> int:
    """MTHG's improvement phase over the candidate lists, vectorised: every twin that has
    a cheaper candidate with room asks for the best one; each host takes its askers by
    largest gain while they fit (as in :func:`assign_rounds`). Repeats until no twin
    gains. ``hosts``, ``cur`` (each twin's latency now), ``res_cpu`` and ``res_mem`` are
    updated in place; returns the number of moves.

    Room a twin leaves is offered from the next round on, so every round keeps every host
    within capacity.
    """
    moved = 0
    # only twins with a cheaper candidate can ever gain; cur only decreases
    floor = lat.min(axis=1) if lat.shape[1] else np.full(cur.size, np.inf)
    live = np.flatnonzero(cur > floor + 1e-9)
    m = res_cpu.size
    for _ in range(max_rounds):
        if live.size == 0:
            break
        cc, ll = cand[live], lat[live]
        ci, mi = cpu[live], mem[live]
        fits = (
            (cc != hosts[live, None])
            & (ci[:, None] <= res_cpu[cc] + _EPS)
            & (mi[:, None] <= res_mem[cc] + _EPS)
        )
        delta = np.where(fits, ll - cur[live, None], np.inf)
        k = delta.argmin(axis=1)
        rows = np.arange(live.size)
        d = delta[rows, k]
        go = np.flatnonzero(d < -1e-9)
        if go.size == 0:
            break
        order = go[np.argsort(d[go], kind="stable")]
        grouped = order[np.argsort(cc[order, k[order]], kind="stable")]
        h = cc[grouped, k[grouped]]
        ok = fitting_prefix(h, ci[grouped], mi[grouped], res_cpu, res_mem)
        acc = grouped[ok]
        dst = cc[acc, k[acc]]
        twins = live[acc]
        src = hosts[twins]
        res_cpu += np.bincount(src, weights=ci[acc], minlength=m) - np.bincount(
            dst, weights=ci[acc], minlength=m
        )
        res_mem += np.bincount(src, weights=mi[acc], minlength=m) - np.bincount(
            dst, weights=mi[acc], minlength=m
        )
        hosts[twins] = dst
        cur[twins] = ll[acc, k[acc]]
        moved += int(acc.size)
        live = live[cur[live] > floor[live] + 1e-9]
    return moved
