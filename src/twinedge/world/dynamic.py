"""Former home of the network state and the policy view; they now live in
:mod:`twinedge.orchestrator.view` (``SimState`` is :class:`NetworkState`, ``SimContext``
is :class:`NetworkView`). These names stay for code written against them."""

from __future__ import annotations

from twinedge.orchestrator.view import NetworkState as SimState
from twinedge.orchestrator.view import NetworkView as SimContext

__all__ = ["SimContext", "SimState"]
