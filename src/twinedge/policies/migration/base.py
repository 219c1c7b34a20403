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

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

NO_MOVES = Moves.none()


def assign_under_capacity(
    ctx: NetworkView, twins: np.ndarray, cand: np.ndarray, score: np.ndarray, priority: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move each twin to its best-scoring candidate host (lowest score first) that still
    has CPU and memory room, honouring ``priority`` (higher first) when twins compete.

    Vectorised in rounds: every unplaced twin proposes its best remaining candidate; each
    host accepts proposals in priority order while they fit; the rest try their next
    candidate. ``inf`` scores are never chosen. Returns ``(twins, new_hosts)`` moved.
    """
    w = ctx.world
    free_cpu = ctx.free_cpu_ghz.copy()
    free_mem = ctx.free_mem_gb.copy()
    order = np.argsort(score, axis=1, kind="stable")
    n = len(twins)
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
        cpu = w.cpu_ghz[t_o]
        mem = w.mem_gb[t_o]
        start = np.r_[0, np.flatnonzero(np.diff(host)) + 1]
        csum_cpu = np.cumsum(cpu)
        csum_mem = np.cumsum(mem)
        base_cpu = np.repeat(csum_cpu[start] - cpu[start], np.diff(np.r_[start, host.size]))
        base_mem = np.repeat(csum_mem[start] - mem[start], np.diff(np.r_[start, host.size]))
        fits = (csum_cpu - base_cpu <= free_cpu[host] + 1e-9) & (
            csum_mem - base_mem <= free_mem[host] + 1e-9
        )
        # a prefix rule: once one twin does not fit on a host, later ones (lower priority)
        # may still fit if smaller; keep it simple and exact: accept only the fitting prefix
        bad_before = np.cumsum(~fits)
        first_bad = np.repeat(bad_before[start] - (~fits[start]), np.diff(np.r_[start, host.size]))
        accept = fits & (bad_before - first_bad == 0)
        acc_t, acc_h = t_o[accept], host[accept]
        np.subtract.at(free_cpu, acc_h, w.cpu_ghz[acc_t])
        np.subtract.at(free_mem, acc_h, w.mem_gb[acc_t])
        out_t.append(acc_t)
        out_h.append(acc_h)
        done[live_o[accept]] = True
        rank[live_o[~accept]] += 1
        done[rank >= k] = True
    if not out_t:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_t), np.concatenate(out_h)
