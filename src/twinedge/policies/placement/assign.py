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

import numpy as np

_EPS = 1e-9


def assign_rounds(
    cand: np.ndarray,
    lat: np.ndarray,
    cpu: np.ndarray,
    mem: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    *,
    key: np.ndarray | None = None,
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
        max_rounds: rounds before the rest is finished one twin at a time.
        tail: finish one twin at a time once at most this many are left.

    Returns:
        ``(r,)`` host of each twin, ``-1`` where no candidate has room.

    Examples:
        >>> cand = np.array([[0, 1], [0, 1], [0, 1]])
        >>> lat = np.array([[1.0, 5.0], [1.0, 2.0], [1.0, 9.0]])
        >>> res = np.array([2.0, 2.0])
        >>> assign_rounds(cand, lat, np.ones(3), np.zeros(3), res, np.ones(2)).tolist()
        [0, 1, 0]
    """
    r = cand.shape[0]
    out = np.full(r, -1, dtype=np.int64)
    todo = np.arange(r)
    m = res_cpu.size
    # candidates along axis 0: every operation below runs along the twins, not along
    # a short row (NumPy is several times faster so); a transposed F-ordered input
    # (the network view's) costs no copy
    cand_t = np.ascontiguousarray(cand.T)
    lat_t = np.ascontiguousarray(lat.T)
    for _ in range(max_rounds):
        if todo.size == 0:
            return out
        cc = cand_t[:, todo]
        ci, mi = cpu[todo], mem[todo]
        fits = res_cpu[cc]
        fits += _EPS
        ok = ci[None, :] <= fits
        fits = res_mem[cc]
        fits += _EPS
        ok &= mi[None, :] <= fits
        masked = lat_t[:, todo]
        masked[~ok] = np.inf
        cols = np.arange(todo.size)
        first = masked.argmin(axis=0)
        best = masked[first, cols]
        alive = best < np.inf
        if not alive.all():
            todo, ci, mi, first, best = (x[alive] for x in (todo, ci, mi, first, best))
            cc, masked = cc[:, alive], masked[:, alive]
            if todo.size == 0:
                return out
            cols = np.arange(todo.size)
        host = cc[first, cols]
        if key is None:
            masked[first, cols] = np.inf
            regret = masked.min(axis=0) - best  # inf without a second choice
            by_best = np.argsort(best, kind="stable")
            order = by_best[np.argsort(-regret[by_best], kind="stable")]
        else:
            order = np.argsort(key[todo], kind="stable")
        if todo.size <= tail:
            _one_by_one(todo[order], cand, lat, cpu, mem, res_cpu, res_mem, out)
            return out
        grouped = order[np.argsort(host[order], kind="stable")]
        acc = grouped[_fitting_prefix(host[grouped], ci[grouped], mi[grouped], res_cpu, res_mem)]
        out[todo[acc]] = host[acc]
        res_cpu -= np.bincount(host[acc], weights=ci[acc], minlength=m)
        res_mem -= np.bincount(host[acc], weights=mi[acc], minlength=m)
        keep = np.ones(todo.size, dtype=bool)
        keep[acc] = False
        todo = todo[keep]
    if todo.size:
        order = todo if key is None else todo[np.argsort(key[todo], kind="stable")]
        _one_by_one(order, cand, lat, cpu, mem, res_cpu, res_mem, out)
    return out


def _fitting_prefix(
    h: np.ndarray, cpu: np.ndarray, mem: np.ndarray, res_cpu: np.ndarray, res_mem: np.ndarray
) -> np.ndarray:
    """For askers grouped by host ``h`` (priority order within a group): whether each is
    in its group's prefix whose cumulative CPU and memory demand fits the host's room."""
    start = np.empty(h.size, dtype=bool)
    start[:1] = True
    np.not_equal(h[1:], h[:-1], out=start[1:])
    seg = np.cumsum(start) - 1
    ok = np.ones(h.size, dtype=bool)
    for dem, res in ((cpu, res_cpu), (mem, res_mem)):
        cum = np.cumsum(dem)
        ok &= cum - (cum - dem)[start][seg] <= res[h] + _EPS
    return ok


def _one_by_one(
    twins: np.ndarray,
    cand: np.ndarray,
    lat: np.ndarray,
    cpu: np.ndarray,
    mem: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    out: np.ndarray,
) -> None:
    """Sequential first fit of ``twins`` in the given order, each over its list by
    increasing latency (the short tail)."""
    inf = math.inf
    rc, rm = res_cpu.tolist(), res_mem.tolist()
    order = np.argsort(lat[twins], axis=1, kind="stable")
    hs = np.take_along_axis(cand[twins], order, axis=1).tolist()
    ls = np.take_along_axis(lat[twins], order, axis=1).tolist()
    for i, row_h, row_l in zip(twins.tolist(), hs, ls, strict=True):
        ci, mi = float(cpu[i]), float(mem[i])
        for j, lj in zip(row_h, row_l, strict=True):
            if lj == inf:
                break
            if ci <= rc[j] + _EPS and mi <= rm[j] + _EPS:
                out[i] = j
                rc[j] -= ci
                rm[j] -= mi
                break
    res_cpu[:] = rc
    res_mem[:] = rm


def widen(
    problem,
    twins: np.ndarray,
    hosts: np.ndarray,
    cpu: np.ndarray,
    mem: np.ndarray,
    res_cpu: np.ndarray,
    res_mem: np.ndarray,
    *,
    key: np.ndarray | None = None,
    width: int = 16,
) -> None:
    """Place ``twins`` (which found no room in their lists) over every host, in stages:
    price each twin's whole row (:meth:`PlacementProblem.rows`, in chunks, no dense
    matrix), keep the ``width`` cheapest hosts that have room for it now, run
    :func:`assign_rounds` on those lists, and repeat for the twins still unplaced until a
    stage places none. Room only shrinks, so a host without room for a twin now never
    has it later. ``hosts``, ``res_cpu`` and ``res_mem`` are updated in place; twins
    that fit nowhere stay ``-1``."""
    left = np.asarray(twins, dtype=np.int64)
    m = problem.n_hosts
    w = min(width, m)
    step = max(1, 2_000_000 // max(m, 1))
    while left.size:
        cand = np.empty((left.size, w), dtype=np.int64)
        lat = np.empty((left.size, w))
        for a in range(0, left.size, step):
            t = left[a : a + step]
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
        sub = assign_rounds(
            cand,
            lat,
            cpu[left],
            mem[left],
            res_cpu,
            res_mem,
            key=None if key is None else key[left],
        )
        placed = sub >= 0
        if not placed.any():
            return
        hosts[left[placed]] = sub[placed]
        left = left[~placed]


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
        ok = _fitting_prefix(h, ci[grouped], mi[grouped], res_cpu, res_mem)
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
