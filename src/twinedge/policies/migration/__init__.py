"""Migration policies: ``never``, ``threshold``, ``utility`` (seed 000) and ``predictive``.

A policy is ``policy(ctx, rng) -> (twins, hosts)``; see :mod:`.base` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twinedge.policies.migration.base import NO_MOVES, assign_under_capacity
from twinedge.policies.migration.policies import Never, Predictive, Threshold, Utility
from twinedge.policies.registry import resolve

MIGRATION_POLICIES: dict[str, type] = {
    "never": Never,
    "threshold": Threshold,
    "utility": Utility,
    "predictive": Predictive,
}


def resolve_migration(spec: str, **params: Any) -> Callable:
    """A migration policy by name (see :data:`MIGRATION_POLICIES`) or ``module:attribute``."""
    return resolve(spec, MIGRATION_POLICIES, "migration", **params)


__all__ = [
    "MIGRATION_POLICIES",
    "NO_MOVES",
    "Never",
    "Predictive",
    "Threshold",
    "Utility",
    "assign_under_capacity",
    "resolve_migration",
]
