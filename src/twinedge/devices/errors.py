"""The one error of the device emulator: what the user has to fix, in one line."""

from __future__ import annotations

from twinedge.errors import TwinedgeError


class DevicesError(TwinedgeError):
    """The emulator cannot start or go on: a bad option, the twin service or the broker
    unreachable, an API key or device password refused. The message says which, where,
    and what to do; the CLI prints it on one line and exits with status 2."""
