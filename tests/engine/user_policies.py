"""Policies a user might write, loaded by import path in the tests."""

import numpy as np


def stay_put(ctx, rng):
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def everyone_to_host_zero(ctx, rng):
    n = ctx.world.n_entities
    return np.arange(n), np.zeros(n, dtype=np.int64)


def first_host(problem, rng):
    return np.zeros(problem.n_twins, dtype=np.int64)
