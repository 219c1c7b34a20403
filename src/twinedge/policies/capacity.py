"""The one capacity rule every vectorised assignment shares: hosts take, in priority
order, the askers whose cumulative demand fits their room."""

from __future__ import annotations

import numpy as np

#: slack for rounding in cumulative sums of demands (GHz, GB)
EPS = 1e-9


def fitting_prefix(
    hosts: np.ndarray, cpu: np.ndarray, mem: np.ndarray, room_cpu: np.ndarray, room_mem: np.ndarray
) -> np.ndarray:
    """For askers grouped by host (equal ``hosts`` in contiguous runs, priority order
    within a run): whether each lies in its run's prefix whose cumulative CPU and memory
    demand fits the host's room (``room_*`` indexed by host).

    Demands are ≥ 0, so the cumulative sums only grow along a run and the askers that fit
    are always a prefix of it: an asker behind one refused is refused too.

    Examples:
        >>> import numpy as np
        >>> fitting_prefix(np.array([0, 0, 0, 1]), np.array([1.0, 1.0, 1.0, 3.0]),
        ...                np.zeros(4), np.array([2.0, 2.0]), np.ones(2)).tolist()
        [True, True, False, False]
    """
    start = np.empty(hosts.size, dtype=bool)
    start[:1] = True
    np.not_equal(hosts[1:], hosts[:-1], out=start[1:])
    seg = np.cumsum(start) - 1
    ok = np.ones(hosts.size, dtype=bool)
    for dem, room in ((cpu, room_cpu), (mem, room_mem)):
        cum = np.cumsum(dem)
        ok &= cum - (cum - dem)[start][seg] <= room[hosts] + EPS
    return ok
