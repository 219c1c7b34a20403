"""Task offloading: entities' tasks run on their device, an edge host, a regional hub or
the cloud, or split between the device and a host, within the time window of the
physical event that caused them.

``policy(batch, view, rng) -> Assignment`` is the one contract (:mod:`.policies`);
:mod:`.tasks` holds the task batch and the latency and energy model, :mod:`.run` the
per-step generation and metrics the simulation engine calls. docs/offload.md has the
formulas, units and sources.
"""

from twinedge.offload.policies import (
    OFFLOAD_POLICIES,
    Assignment,
    DeadlineEnergy,
    Greedy,
    Local,
    Lyapunov,
    Nearest,
    OffloadPolicy,
    Optimal,
    check_assignment,
    resolve_offload_policy,
)
from twinedge.offload.tasks import OffloadCosts, OffloadModel, TaskBatch, TaskProblem

__all__ = [
    "OFFLOAD_POLICIES",
    "Assignment",
    "DeadlineEnergy",
    "Greedy",
    "Local",
    "Lyapunov",
    "Nearest",
    "OffloadCosts",
    "OffloadModel",
    "OffloadPolicy",
    "Optimal",
    "TaskBatch",
    "TaskProblem",
    "check_assignment",
    "resolve_offload_policy",
]
