"""Reinforcement learning over the simulator: Gymnasium environments for migration and
placement, vectorised over twins, and a linear policy a learner can train in them and
then run as an ordinary migration policy.

- :class:`MigrationEnv` (``gymnasium.make("twinedge/Migration-v0")``): every step, stay or
  move for every twin.
- :class:`PlacementEnv` (``gymnasium.make("twinedge/Placement-v0")``): a host for every
  twin at the initial placement and at each re-placement.
- :class:`LinearMigrationPolicy`: a per-twin linear score over the migration features,
  a migration policy like the built-ins (``check_policy`` passes).

The environments need Gymnasium (``pip install 'twinedge[gym]'``); the features and the
linear policy need only NumPy. Importing this package registers the environments with
Gymnasium. See docs/gym.md.
"""

from __future__ import annotations

from typing import Any

from twinedge.gym.features import (
    feature_high,
    feature_names,
    migration_observation,
    moves_from_actions,
    placement_from_actions,
    placement_observation,
)
from twinedge.gym.policy import LINEAR_FEATURES, LinearMigrationPolicy, linear_actions

ENV_IDS = {"MigrationEnv": "twinedge/Migration-v0", "PlacementEnv": "twinedge/Placement-v0"}

try:
    import gymnasium
except ImportError:  # pragma: no cover - exercised only without the extra
    gymnasium = None  # type: ignore[assignment]

if gymnasium is not None:
    from twinedge.gym.envs import MigrationEnv, PlacementEnv, step_reward

    for _cls, _id in ENV_IDS.items():
        if _id not in gymnasium.registry:
            gymnasium.register(id=_id, entry_point=f"twinedge.gym.envs:{_cls}")
else:  # pragma: no cover

    def __getattr__(name: str) -> Any:
        if name in ("MigrationEnv", "PlacementEnv", "step_reward"):
            raise ImportError(
                f"twinedge.gym.{name} needs Gymnasium: pip install 'twinedge[gym]' "
                "(or pip install gymnasium)"
            )
        raise AttributeError(name)


__all__ = [
    "ENV_IDS",
    "LINEAR_FEATURES",
    "LinearMigrationPolicy",
    "MigrationEnv",
    "PlacementEnv",
    "feature_high",
    "feature_names",
    "linear_actions",
    "migration_observation",
    "moves_from_actions",
    "placement_from_actions",
    "placement_observation",
    "step_reward",
]
