"""The errors of the edge tier, transport-neutral (no HTTP status, no MQTT reason code).

::

    TwinedgeError
    └── EdgeError                  anything the edge tier refuses or cannot do
        ├── EdgeLogError           the local log cannot be opened, read or written (corrupt,
        │                          not an edge log, another host's log, held by another process)
        ├── HostClosedError        the host is closed or was killed; the update was NOT
        │                          acknowledged, send it again (to the twin's owner)
        ├── UnknownTwinError       this host has never had the twin
        ├── NotOwnerError          the twin was fenced or moved away: ``owner`` and ``epoch``
        │                          say where it lives now, so the device edge can redirect
        ├── TwinNotReadyError      the twin is arriving here (migration under way); retry soon
        ├── EpochError             a fencing epoch that is stale or does not match
        ├── RevisionError          a write conditioned on a revision the twin is not at
        ├── InvalidReportError     a malformed report, desired state or behaviour patch;
        │                          ``pointer`` (RFC 6901) says where
        ├── ReplicationGapError    a replica was given revision n+2 before n+1
        ├── MigrationError         a migration step that the protocol does not allow now
        ├── CommandTimeoutError    the twin's device did not answer a command in time
        └── BehaviourError         a behaviour cannot be resolved or misbehaved (also a
                                   :class:`twinedge.errors.PolicyError`)

Whoever carries these over a wire translates them at the edge of that wire (an MQTT
problem on the device's ``errors`` topic, an RPC error code), as the runtime does with its
own problems; nothing below that layer knows about transports.

Which are worth retrying: :class:`HostClosedError` and :class:`TwinNotReadyError` (the same
request later, or at the new owner), :class:`NotOwnerError` (at ``owner``). The others
would fail again.
"""

from __future__ import annotations

from twinedge.errors import PolicyError, TwinedgeError

__all__ = [
    "BehaviourError",
    "CommandTimeoutError",
    "EdgeError",
    "EdgeLogError",
    "EpochError",
    "HostClosedError",
    "InvalidReportError",
    "MigrationError",
    "NotOwnerError",
    "ReplicationGapError",
    "RevisionError",
    "TwinNotReadyError",
    "UnknownTwinError",
]


class EdgeError(TwinedgeError):
    """Base class of every error of :mod:`twinedge.edge`."""


class EdgeLogError(EdgeError):
    """The edge log file cannot be used; the message names the file and what is wrong.

    Raised for a file that is not SQLite, a damaged SQLite file, a SQLite file that is not
    an edge log (or belongs to another host), a record that does not decode, a gap in a
    twin's revisions, and a write the disk refused. Never a silent loss: a log that
    cannot be read completely is not opened at all.
    """


class HostClosedError(EdgeError):
    """The host is closed (or was killed) and did not acknowledge the request.

    The update may or may not have reached the log: resend it (a report is a merge patch,
    applying it twice changes nothing the second time).
    """


class UnknownTwinError(EdgeError):
    """The host has no record of the twin ``twin_id`` at all.

    Attributes:
        twin_id: the twin asked for.
        host_id: the host that was asked.
    """

    def __init__(self, twin_id: str, host_id: str):
        self.twin_id, self.host_id = twin_id, host_id
        super().__init__(f"host {host_id!r} has no twin {twin_id!r}; ask the core where it lives")


class NotOwnerError(EdgeError):
    """The twin was fenced on this host (a migration took it away): send to ``owner``.

    Attributes:
        twin_id: the twin.
        host_id: the host that refused.
        owner: the host that owns (or is about to own) the twin from ``epoch`` on.
        epoch: the fencing epoch of the new owner.
    """

    def __init__(self, twin_id: str, host_id: str, owner: str | None, epoch: int):
        self.twin_id, self.host_id, self.owner, self.epoch = twin_id, host_id, owner, epoch
        where = f"host {owner!r}" if owner else "another host"
        super().__init__(
            f"twin {twin_id!r} is no longer served by host {host_id!r}: it moved to {where} "
            f"at epoch {epoch}; send the update there"
        )


class TwinNotReadyError(EdgeError):
    """The twin is being migrated to this host and is not served yet; retry shortly.

    Attributes:
        twin_id: the twin.
        host_id: the host that is receiving it.
    """

    def __init__(self, twin_id: str, host_id: str):
        self.twin_id, self.host_id = twin_id, host_id
        super().__init__(
            f"twin {twin_id!r} is arriving on host {host_id!r} (migration under way) and is "
            "not served yet; retry in a few milliseconds"
        )


class EpochError(EdgeError):
    """A fencing epoch is stale (not above the one already known) or does not match.

    Attributes:
        twin_id: the twin.
        epoch: the epoch that was given.
        current: the epoch the host knows.
    """

    def __init__(self, twin_id: str, epoch: int, current: int, what: str):
        self.twin_id, self.epoch, self.current = twin_id, epoch, current
        super().__init__(f"twin {twin_id!r}: {what} (given epoch {epoch}, known epoch {current})")


class RevisionError(EdgeError):
    """A write was conditioned on a revision the twin is not at (it changed meanwhile).

    Attributes:
        twin_id: the twin.
        expected: the revision the writer expected.
        current: the twin's revision on this host.
    """

    def __init__(self, twin_id: str, expected: int, current: int):
        self.twin_id, self.expected, self.current = twin_id, expected, current
        super().__init__(f"twin {twin_id!r} is at revision {current}, not {expected}")


class InvalidReportError(EdgeError):
    """A report, desired state or patch that cannot be applied.

    Attributes:
        pointer: RFC 6901 JSON pointer into the offending value ("" = the whole value).
    """

    def __init__(self, detail: str, pointer: str = ""):
        self.detail, self.pointer = detail, pointer
        super().__init__(f"{detail} (at {pointer!r})" if pointer else detail)


class ReplicationGapError(EdgeError):
    """A replica received a change whose revision is not the next one of its twin.

    Attributes:
        twin_id: the twin.
        expected: the revision the replica can apply next (``None``: it needs a snapshot
            first, it has never seen the twin).
        got: the revision it was given.
    """

    def __init__(self, twin_id: str, expected: int | None, got: int):
        self.twin_id, self.expected, self.got = twin_id, expected, got
        need = "a snapshot first" if expected is None else f"revision {expected}"
        super().__init__(
            f"twin {twin_id!r}: replica needs {need}, got revision {got}; "
            "send the missing changes first (in seq order)"
        )


class MigrationError(EdgeError):
    """A migration step the protocol does not allow in the twin's current state."""


class CommandTimeoutError(EdgeError):
    """The device of a twin served here did not answer a command within its timeout.

    The command was published to the device (it may still act on it); no answer came.

    Attributes:
        twin_id: the twin.
        host_id: the host that sent the command.
        subject: the command's subject.
        timeout_s: how long the host waited.
    """

    def __init__(self, twin_id: str, host_id: str, subject: str, timeout_s: float):
        self.twin_id, self.host_id, self.subject, self.timeout_s = (
            twin_id,
            host_id,
            subject,
            timeout_s,
        )
        super().__init__(
            f"device {twin_id} did not answer command {subject!r} on host {host_id!r} "
            f"within {timeout_s:g} s"
        )


class BehaviourError(EdgeError, PolicyError):
    """A behaviour cannot be resolved, or a hook raised or returned something invalid."""
