"""The errors of the federated-learning experiment."""

from __future__ import annotations

from twinedge.errors import TwinedgeError


class FLError(TwinedgeError):
    """A federated-learning experiment was given a bad setting: a negative noise
    variance, no devices, an unknown scheme, or a mask of the wrong shape."""
