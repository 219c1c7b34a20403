"""The exception hierarchy of twinedge.

Every error a user can cause derives from :class:`TwinedgeError`; the CLI prints
its message on one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class TwinedgeError(Exception):
    """Base class of every error twinedge raises on purpose."""


class ScenarioError(TwinedgeError):
    """A scenario file or instance is malformed; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InputError(TwinedgeError):
    """An input file cannot be read safely: too large, not UTF-8, nested too deeply,
    aliases that expand too far, numbers too long or not finite, or strings with a NUL or
    a lone surrogate. The message names the file and, where known, the field."""


class InfeasibleError(TwinedgeError):
    """No assignment satisfies the constraints; the message names the binding resource."""


class PolicyError(TwinedgeError):
    """A policy could not be found, loaded, or returned an invalid answer."""


class LedgerError(TwinedgeError):
    """A ledger operation failed (bad key, bad proof input, tampered storage...)."""
