"""The error of predictive sync."""

from __future__ import annotations

from twinedge.errors import TwinedgeError


class SyncError(TwinedgeError, ValueError):
    """Predictive sync was given bad input: a threshold or heartbeat that is negative or
    not finite, an unknown predictor, values of the wrong shape, times that do not
    increase, or a prediction asked of a predictor that has had no report. The message
    names the parameter and the value."""
