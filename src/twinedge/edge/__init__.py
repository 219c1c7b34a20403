"""The edge tier, transport-agnostic: twins served by edge hosts near their devices.

An edge host owns the twins placed on it: their state in memory, their behaviour
(Python hooks), and a local durable log in which every update is committed before it
is acknowledged. It replicates committed changes to the core asynchronously, and a
twin migrates between hosts live (pre-copy, fenced by an epoch) without losing or
duplicating an acknowledged update.

Modules:

* :mod:`.log` — :class:`EdgeLog`, the SQLite log (records, snapshots, ownership) and
  recovery;
* :mod:`.behaviour` — :class:`TwinBehaviour`, :class:`DeadReckoning`, resolution by name
  or import path;
* :mod:`.host` — :class:`EdgeHost`: one writer with group commit, fencing, the
  replication outbox, the migration primitives;
* :mod:`.replica` — :class:`ReplicaApplier`, the receiving side of replication;
* :mod:`.migrate` — :func:`pre_copy`, :func:`stop_and_copy`, :func:`resume`,
  :func:`evacuate` over :class:`MigrationPeer`;
* :mod:`.document` — the twin document and the checks every change passes;
* :mod:`.errors` — the error tree (:class:`EdgeError` and below).

Nothing here opens a socket: processes, MQTT and the core are wired on top of these
classes (every method a remote party would call is a coroutine taking plain values).
"""

from twinedge.edge.behaviour import (
    BEHAVIOURS,
    DeadReckoning,
    FunctionBehaviour,
    TwinBehaviour,
    TwinView,
    resolve_behaviour,
)
from twinedge.edge.errors import (
    BehaviourError,
    CommandTimeoutError,
    EdgeError,
    EdgeLogError,
    EpochError,
    HostClosedError,
    InvalidReportError,
    MigrationError,
    NotOwnerError,
    ReplicationGapError,
    RevisionError,
    TwinNotReadyError,
    UnknownTwinError,
)
from twinedge.edge.host import (
    ChangeSet,
    EdgeHost,
    FenceResult,
    ReplicationLag,
    TickResult,
    TwinChange,
    TwinSnapshot,
)
from twinedge.edge.log import EdgeLog, LogRecord, Ownership, TwinStatus
from twinedge.edge.migrate import (
    MigrationPeer,
    MigrationReport,
    evacuate,
    migrate,
    pre_copy,
    resume,
    stop_and_copy,
)
from twinedge.edge.replica import ReplicaApplier, ReplicaTwin

__all__ = [
    "BEHAVIOURS",
    "BehaviourError",
    "ChangeSet",
    "CommandTimeoutError",
    "DeadReckoning",
    "EdgeError",
    "EdgeHost",
    "EdgeLog",
    "EdgeLogError",
    "EpochError",
    "FenceResult",
    "FunctionBehaviour",
    "HostClosedError",
    "InvalidReportError",
    "LogRecord",
    "MigrationError",
    "MigrationPeer",
    "MigrationReport",
    "NotOwnerError",
    "Ownership",
    "ReplicaApplier",
    "ReplicaTwin",
    "ReplicationGapError",
    "ReplicationLag",
    "RevisionError",
    "TickResult",
    "TwinBehaviour",
    "TwinChange",
    "TwinNotReadyError",
    "TwinSnapshot",
    "TwinStatus",
    "TwinView",
    "UnknownTwinError",
    "evacuate",
    "migrate",
    "pre_copy",
    "resolve_behaviour",
    "resume",
    "stop_and_copy",
]
