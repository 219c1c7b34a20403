"""The orchestrator shared by both faces of twinedge.

``twinedge run`` (the simulation engine) and ``twinedge serve`` (the live runtime) are two
drivers of one :class:`Orchestrator`: each keeps a :class:`NetworkState` (positions,
attachment, hosts, loads) by its own clock, and the orchestrator hands policies the same
read-only :class:`NetworkView`, validates their typed decisions (:class:`Moves`,
:class:`PlacementResult`), applies them and records them (:class:`Recorder`, e.g. the
ledger). :func:`check_policy` runs the conformance checks a policy must pass.
"""

from twinedge.orchestrator.view import NetworkState, NetworkView  # noqa: I001  (first: no cycle)
from twinedge.orchestrator.check import check_policy
from twinedge.orchestrator.core import CycleOutcome, Orchestrator, Recorder
from twinedge.orchestrator.policy import FunctionPolicy, Policy, as_policy
from twinedge.policies.base import Moves
from twinedge.policies.placement import PlacementResult

__all__ = [
    "CycleOutcome",
    "FunctionPolicy",
    "Moves",
    "NetworkState",
    "NetworkView",
    "Orchestrator",
    "PlacementResult",
    "Policy",
    "Recorder",
    "as_policy",
    "check_policy",
]
