"""Attention-guided sharing: score the pending updates of each subscriber and choose what
to send within its bandwidth budget, with a bound on staleness.

:mod:`.interest` is what a subscriber declares (a region, a filter factor, weights, a
budget in bits per second, a staleness bound) and its parsing from text parameters;
:mod:`.select` scores pending updates (a softmax over four interest features, as the
attention weights of seed 004), chooses within a sliding-window budget and keeps one
subscriber's coalesced queue; :mod:`.sim` measures value-weighted staleness against bytes
on the simulator's entity movements, against sending everything and against distance-based
interest sets (Donnybrook). The live service's WebSocket and SSE subscriptions use
:class:`AttentionQueue` (docs/attention.md).
"""

from twinedge.attention.errors import AttentionError
from twinedge.attention.interest import Box, Circle, Interest, Weights, parse_interest, value
from twinedge.attention.select import AttentionQueue, Pending, WindowBudget, choose, scores

__all__ = [
    "AttentionError",
    "AttentionQueue",
    "Box",
    "Circle",
    "Interest",
    "Pending",
    "Weights",
    "WindowBudget",
    "choose",
    "parse_interest",
    "scores",
    "value",
]
