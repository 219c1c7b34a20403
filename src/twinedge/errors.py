"""The exception hierarchy of twinedge.

Every error a user can cause derives from :class:`TwinedgeError`; the CLI prints
its message on one line and exits non-zero instead of showing a traceback.

The live service (:mod:`twinedge.runtime`) refuses a request with a
:class:`ServiceError`, one class per kind of refusal, whichever channel the request came
by. The errors carry what went wrong (``detail``, a sentence that says what to do),
where in the request (``pointer``, a JSON Pointer, RFC 6901) and any further facts an
answer may quote (``extra``, e.g. the ``column`` of a filter's syntax error), but no
status of any protocol: the edges translate them (like httpx's ``_exceptions`` and
FastAPI's exception handlers), the HTTP API to RFC 7807 problem documents
(``twinedge.runtime.api.problems``), the MQTT gateway to problems on a device's
``errors`` topic (``twinedge.runtime.mqtt.core``)::

    ServiceError
     ├── InvalidInput         the request is malformed or a value is out of range
     ├── Unauthenticated      no credentials, or unknown or revoked ones
     ├── Forbidden            the caller is known but may not do this
     ├── NotFound             no such thing, path or group (or not visible to the caller)
     ├── Conflict             the request contradicts the state (a namespace of another domain)
     ├── PreconditionFailed   a condition of the caller's (a revision, "must not exist") fails
     ├── TooLarge             the result would exceed a size limit
     ├── TimedOut             a device did not answer in time
     ├── Unavailable          the service cannot do it now; retry later
     │    ├── Overloaded      the write queue is full
     │    └── ServedAtEdge    a write reached the core's writer for a twin an edge host serves
     └── OperationFailed      this one operation failed for good; sending it again will not help
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class TwinedgeError(Exception):
    """Base class of every error twinedge raises on purpose."""


# a field of a problem line: a dotted path with [i] indices, ``(top level)``, a
# ``--option`` or ``line N`` of a CSV file
_FIELD = re.compile(
    r"\(top level\)|--[\w-]+|line \d+|[A-Za-z_][\w-]*(?:\[\d+\])*(?:\.[\w-]+(?:\[\d+\])*)*"
)
# the start of a line that names a file: a path with a folder or a file extension
_PATHLIKE = re.compile(r"^(?:builtin:[\w-]+|.*[/\\].*|.*\.[A-Za-z]\w{0,4})$")
_GOT = re.compile(r"got (?P<value>[^;]*?)(?:; (?P<rest>.*))?$", re.S)
_EXPECTED = re.compile(r"(?:^|;\s)expected (?P<expected>.*)$", re.S)


def _json_value(value: Any) -> Any:
    """``value`` if JSON can carry it as it is, else its ``repr``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


@dataclass(frozen=True)
class Problem:
    """One problem of an input, in the parts a program needs: ``file`` (where the input
    came from), ``field`` (a dotted path with ``[i]`` indices, ``(top level)``, a
    ``--option`` or ``line N`` of a CSV file), ``value`` (the value found, as JSON can carry it; ``None`` when it is
    missing or not known), ``expected`` (what would be accepted) and ``message`` (the whole
    line a person reads: ``FILE: FIELD: got VALUE; expected WHAT``). A part that is not
    known is ``None``.

    Examples:
        >>> p = Problem.parse("s.yaml: run.steps: got 0; expected Input should be greater than or equal to 1")
        >>> p.file, p.field, p.value, p.expected
        ('s.yaml', 'run.steps', 0, 'Input should be greater than or equal to 1')
        >>> Problem.parse("infrastructure: no access points (tier: access)", file="s.yaml").to_json()
        {'file': 's.yaml', 'field': 'infrastructure', 'value': None, 'expected': None, 'message': 'infrastructure: no access points (tier: access)'}
    """

    file: str | None
    field: str | None
    value: Any
    expected: str | None
    message: str

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON object: file, field, value, expected, message."""
        return {
            "file": self.file,
            "field": self.field,
            "value": _json_value(self.value),
            "expected": self.expected,
            "message": self.message,
        }

    @classmethod
    def parse(cls, line: str, file: str | None = None) -> Problem:
        """The parts of a problem line ``FILE: FIELD: got VALUE; expected WHAT``.

        A ``VALUE`` shown as a Python literal (``'fast'``, ``-3``, ``[1, 2]``) becomes
        that value, ``missing`` becomes ``None``, anything else stays the text shown.
        ``file`` is the input the line is about, used when the line does not start with
        a file of its own. A line of another form keeps only its message (and ``file``).
        """
        rest, where = line, None
        if file and line.startswith(f"{file}: "):
            where, rest = file, line[len(file) + 2 :]
        else:
            head, sep, tail = line.partition(": ")
            nxt, sep2, _ = tail.partition(": ")
            if sep and sep2 and _FIELD.fullmatch(nxt):
                where, rest = head, tail
        field = None
        head, sep, tail = rest.partition(": ")
        if sep and _FIELD.fullmatch(head):
            field, rest = head, tail
        if field is None:
            if where is None and sep and _PATHLIKE.match(head):
                where = head
            return cls(where or file, None, None, None, line)
        value: Any = None
        got = _GOT.match(rest)
        if got is not None:
            shown = got.group("value")
            rest = got.group("rest") or ""
            if shown != "missing":
                try:
                    value = ast.literal_eval(shown)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    value = shown
        expected = None
        m = _EXPECTED.search(rest)
        if m is not None:
            expected = m.group("expected")
            before = rest[: m.start()].strip().rstrip(";").strip()
            if before:
                expected = f"{expected} ({before})"
        return cls(where or file, field, value, expected, line)


class ScenarioError(TwinedgeError):
    """A scenario file or instance is malformed; ``problems`` holds one line per problem
    and ``details`` the same problems as :class:`Problem` objects (file, field, value,
    expected), given by the raiser or parsed from its lines."""

    def __init__(self, problems: Sequence[str | Problem]):
        self.details = [p if isinstance(p, Problem) else Problem.parse(p) for p in problems]
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


class InputError(TwinedgeError):
    """An input file cannot be read safely: too large, not UTF-8, nested too deeply,
    aliases that expand too far, numbers too long or not finite, or strings with a NUL or
    a lone surrogate. The message names the file and, where known, the field."""


class InfeasibleError(TwinedgeError):
    """No assignment satisfies the constraints; the message names the binding resource."""


class PolicyError(TwinedgeError):
    """A policy could not be found, loaded, or returned an invalid answer."""


class SimulationError(TwinedgeError):
    """A simulation was stepped out of order (stepped before its start, past its end, or
    started twice)."""


class LedgerError(TwinedgeError):
    """A ledger operation failed (bad key, bad proof input, tampered storage...)."""


class OffloadError(TwinedgeError):
    """Task offloading was given bad input (negative or non-finite cycles, bytes or
    deadlines, a rate that is not positive, an unknown policy) or a policy answered with
    an invalid assignment; the message names the field and the value."""


class MarketError(TwinedgeError):
    """A compute market was given bad bids (a value that is not a finite non-negative
    number, units that are not positive integers, an empty side) or an unknown
    mechanism; the message names the side, the bid and the value."""


class ServiceError(TwinedgeError):
    """The live service refused or could not carry out a request (see the module
    docstring for the tree and how the edges answer each kind).

    Parameters:
        detail: what went wrong and what to do, one or a few sentences.
        pointer: where in the request (a JSON Pointer into the body, or ``/name`` for a
            parameter); ``None`` when it is about the request as a whole.
        **extra: further facts an answer may quote (``column`` of a syntax error...).
    """

    def __init__(self, detail: str, pointer: str | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer
        self.extra = extra


class InvalidInput(ServiceError):
    """The request is malformed or a value in it is out of range (``pointer`` says where)."""


class Unauthenticated(ServiceError):
    """The request carries no credentials, or unknown or revoked ones."""


class Forbidden(ServiceError):
    """The caller is known but its role or domain does not allow this."""


class NotFound(ServiceError):
    """The thing, path or group does not exist, or is not visible to the caller (the two
    are indistinguishable on purpose)."""


class Conflict(ServiceError):
    """The request contradicts the service's state (e.g. a thing in a namespace that
    belongs to another domain)."""


class PreconditionFailed(ServiceError):
    """A condition the caller set does not hold (the expected revision, "must not exist")."""


class TooLarge(ServiceError):
    """Carrying out the request would exceed a size limit (e.g. of a thing)."""


class TimedOut(ServiceError):
    """A device did not answer within the time the caller allowed."""


class Unavailable(ServiceError):
    """The service cannot carry out the request now (shutting down, store failing, no
    device connection); the same request may succeed later."""


class Overloaded(Unavailable):
    """The write queue is full: back-pressure; retry after a moment."""


class ServedAtEdge(Unavailable):
    """A write reached the core's own writer for a twin that an edge host process
    serves (its edge replica position is set): the host holds the authoritative copy, so
    the core did not apply it. Most often the write was routed to the core before the
    twin was placed on its host, and the service routes it again, to the host. When no
    host can take it now (the twin's host is not recorded yet, is being recovered, or
    the core is still reaching its hosts after a start), the caller is told to send it
    again. ``extra["thing_id"]`` names the twin.

    Examples:
        >>> e = ServedAtEdge("twin a:b is served by an edge host", thing_id="a:b")
        >>> e.thing_id, isinstance(e, Unavailable)
        ('a:b', True)
    """

    @property
    def thing_id(self) -> str | None:
        """The twin the write was for (``None`` when not given)."""
        value = self.extra.get("thing_id")
        return value if isinstance(value, str) else None


class OperationFailed(ServiceError):
    """This one operation failed for good while the service works (the store refused this
    write alone, a mutation raised); sending it again will not help."""
