"""A linear per-twin migration policy over the observation of
:class:`~twinedge.gym.MigrationEnv`: what a learner trains in the environment and then
runs as an ordinary migration policy (``simulate(..., migration=policy)``,
``twinedge compare --migration module:Policy``). NumPy only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from twinedge.gym.features import migration_observation, moves_from_actions
from twinedge.policies.base import MigrationPolicy, Moves

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

#: what each weight of :class:`LinearMigrationPolicy` multiplies, for candidate ``j``
LINEAR_FEATURES = (
    "bias",  # 1
    "gain",  # latency_ratio - cand_latency_ratio (> 0: the candidate is faster)
    "late_gain",  # late * gain
    "downtime_ratio",  # cand_downtime_ratio
    "utilisation",  # cand_utilisation
    "migrating",  # migrating
    "speed",  # speed
    "latency_ratio",  # latency_ratio
)


def linear_actions(obs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The actions of the linear policy with ``weights`` on a migration observation.

    Every candidate ``j`` a twin could move to (``fits`` and not ``current``) gets the
    score ``weights · phi_j`` with ``phi_j`` the :data:`LINEAR_FEATURES`; the twin moves
    to its best-scoring candidate (action ``j + 1``) when that score is above 0 and
    stays (action 0) otherwise.

    Parameters:
        obs: ``(n, 5 + 5c)`` a migration observation.
        weights: ``(8,)`` one weight per :data:`LINEAR_FEATURES`.

    Raises:
        ValueError: the observation's width is not ``5 + 5c`` or there are not 8 weights.

    Examples:
        >>> obs = np.zeros((1, 15), np.float32)           # one twin, two candidates
        >>> obs[0, :2] = 1.5, 1.0                          # 1.5x its deadline, late
        >>> obs[0, 5:7] = 0.5, 2.0                         # candidate 0 at 0.5x, 1 at 2x
        >>> obs[0, 9:11] = 1.0, 1.0                        # both fit
        >>> linear_actions(obs, np.array([-0.1, 0, 1, 0, 0, 0, 0, 0])).tolist()
        [1]
    """
    obs = np.asarray(obs, dtype=float)
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(LINEAR_FEATURES),):
        raise ValueError(f"expected {len(LINEAR_FEATURES)} weights, got shape {w.shape}")
    if obs.ndim != 2 or (obs.shape[1] - 5) % 5 or obs.shape[1] < 5:
        raise ValueError(f"expected an (n, 5 + 5c) migration observation, got {obs.shape}")
    c = (obs.shape[1] - 5) // 5
    if c == 0:
        return np.zeros(obs.shape[0], dtype=np.int64)
    lat, late, mig, speed = obs[:, 0:1], obs[:, 1:2], obs[:, 2:3], obs[:, 3:4]
    cl, cu, fits, cur, down = (obs[:, 5 + i * c : 5 + (i + 1) * c] for i in range(5))
    gain = lat - cl
    score = (
        w[0]
        + w[1] * gain
        + w[2] * late * gain
        + w[3] * down
        + w[4] * cu
        + w[5] * mig
        + w[6] * speed
        + w[7] * lat
    )
    score = np.where((fits > 0.5) & (cur < 0.5), score, -np.inf)
    best = np.argmax(score, axis=1)
    top = score[np.arange(obs.shape[0]), best]
    return np.where(top > 0, best + 1, 0).astype(np.int64)


class LinearMigrationPolicy(MigrationPolicy):
    """A migration policy that scores every candidate host of every twin linearly in the
    features of :class:`~twinedge.gym.MigrationEnv` (see :func:`linear_actions`) and
    moves a twin to its best candidate when the score is positive. Moves go through
    :func:`~twinedge.gym.features.moves_from_actions`, exactly as the environment's
    actions do: a move without room is refused.

    Parameters:
        weights: one weight per :data:`LINEAR_FEATURES` (default all 0: nobody moves).

    Raises:
        ValueError: not 8 finite weights.

    Examples:
        >>> from twinedge.orchestrator import check_policy
        >>> like_threshold = LinearMigrationPolicy([-0.05, 0, 1, 0, 0, 0, 0, 0])
        >>> "valid decisions" in check_policy(like_threshold)
        True
    """

    def __init__(self, weights: Sequence[float] = (0.0,) * len(LINEAR_FEATURES)):
        w = tuple(float(x) for x in weights)
        if len(w) != len(LINEAR_FEATURES) or not all(np.isfinite(w)):
            raise ValueError(
                f"weights must be {len(LINEAR_FEATURES)} finite numbers "
                f"({', '.join(LINEAR_FEATURES)}), got {list(weights)}"
            )
        self.weights = w

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The actions for a :class:`~twinedge.gym.MigrationEnv` observation."""
        return linear_actions(obs, np.asarray(self.weights))

    def __call__(self, view: NetworkView, rng: np.random.Generator) -> Moves:
        o = migration_observation(view)
        if o.obs.shape[0] == 0:
            return Moves.none()
        return moves_from_actions(view, self.act(o.obs), o.cand).moves

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON document (``features`` and ``weights``)."""
        return {"policy": "LinearMigrationPolicy", "features": list(LINEAR_FEATURES),
                "weights": list(self.weights)}  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``; returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> LinearMigrationPolicy:
        """A policy from a file written by :meth:`save`.

        Raises:
            ValueError: the file is not such a document (names the file and what is wrong).
            OSError: the file cannot be read.
        """
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
            features, weights = doc["features"], doc["weights"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{p}: not a saved LinearMigrationPolicy ({exc})") from None
        if list(features) != list(LINEAR_FEATURES):
            raise ValueError(f"{p}: features {features} are not {list(LINEAR_FEATURES)}")
        return cls(weights)
