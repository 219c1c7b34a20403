"""Policies a user might write, loaded by import path in the tests."""

import numpy as np


def stay_put(ctx, rng):
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def everyone_to_host_zero(ctx, rng):
    n = ctx.world.n_entities
    return np.arange(n), np.zeros(n, dtype=np.int64)


def first_host(problem, rng):
    return np.zeros(problem.n_twins, dtype=np.int64)


class MoveFirst:
    """A migration class with a parameter: each step, the first ``count`` late twins move
    to host 0 (no kind attribute: usable wherever a migration policy is)."""

    def __init__(self, count: int = 0) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.count = count

    def __call__(self, ctx, rng):
        late = np.flatnonzero(ctx.state.latency_ms > ctx.world.latency_req_ms)[: self.count]
        late = late[ctx.state.host[late] != 0]
        return late, np.zeros(late.size, dtype=np.int64)
