"""The error of attention-guided sharing."""

from __future__ import annotations

from twinedge.errors import TwinedgeError


class AttentionError(TwinedgeError):
    """An interest or a budget is malformed or out of range (a negative budget, a region
    that is not ``circle:`` or ``box:``, a weight that is not a number...). ``field``
    names the parameter, so that an edge can point at it (a query parameter, a message
    key)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
