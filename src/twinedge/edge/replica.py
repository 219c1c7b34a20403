"""The receiving side of replication: apply edge hosts' records idempotently, in order.

The core gets records from every host that ever owned a twin, each host's in seq order,
but the hosts are not ordered with each other: after a migration A -> B, B's records
may arrive before A's last ones. :class:`ReplicaApplier` keeps, per twin, the document,
the revision and the highest epoch applied, and decides each record by ``(revision,
epoch)`` alone:

* ``change`` at revision ``R + 1`` (``R``: the replica's revision): applied;
  at ``R`` or below: a duplicate, ignored; above ``R + 1``: refused
  (:class:`~twinedge.edge.errors.ReplicationGapError`), the sender retries later, after
  the missing records arrived (from the same host, or another one).
* ``snapshot`` (a twin placed on or migrated to a host) above ``R``: replaces the document
  (this is what lets B's records through before A's: B's outbox starts with the
  snapshot it adopted); at ``R`` with a higher epoch: the epoch moves on; otherwise a
  duplicate.
* A record that contradicts the epochs — a change from an epoch below the replica's
  continuing its revisions, or a newer epoch starting below revisions already applied —
  means a fenced host wrote after its fence: refused with
  :class:`~twinedge.edge.errors.EpochError`, never applied.

The core applies these rules to its store; this class is the same logic in memory, for
tests and for anyone who wants a replica of an edge host's twins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twinedge.edge.errors import EpochError, InvalidReportError, ReplicationGapError
from twinedge.edge.log import LogRecord
from twinedge.jsonmerge import merge_patch

__all__ = ["ReplicaApplier", "ReplicaTwin"]


@dataclass(slots=True)
class ReplicaTwin:
    """A replicated twin: its document, revision and the highest epoch applied."""

    document: dict[str, Any]
    revision: int
    epoch: int


class ReplicaApplier:
    """Apply :class:`~twinedge.edge.log.LogRecord` s in revision order per twin.

    Examples:
        >>> r = ReplicaApplier()
        >>> r.apply(LogRecord(1, "a:b", 1, 0, "snapshot", b'{"features":{}}', 0.0))
        True
        >>> r.apply(LogRecord(2, "a:b", 1, 1, "change", b'{"attributes":{"k":1}}', 0.0))
        True
        >>> r.apply(LogRecord(2, "a:b", 1, 1, "change", b'{"attributes":{"k":1}}', 0.0))
        False
        >>> r.twin("a:b")
        ReplicaTwin(document={'features': {}, 'attributes': {'k': 1}}, revision=1, epoch=1)
    """

    def __init__(self) -> None:
        self._twins: dict[str, ReplicaTwin] = {}
        self.applied = 0
        """Records applied."""
        self.duplicates = 0
        """Records ignored as already applied."""

    def seed(
        self, twin_id: str, document: Mapping[str, Any], revision: int, epoch: int = 0
    ) -> None:
        """Start from a known state (the core's copy of the twin)."""
        self._twins[twin_id] = ReplicaTwin(dict(document), revision, epoch)

    def twin(self, twin_id: str) -> ReplicaTwin | None:
        """The replicated twin, or ``None``."""
        return self._twins.get(twin_id)

    @property
    def twins(self) -> Mapping[str, ReplicaTwin]:
        return self._twins

    def apply(self, record: LogRecord) -> bool:
        """Apply one record. Returns ``True`` if applied, ``False`` if a duplicate.

        Raises:
            ReplicationGapError: a change that does not follow the replica's revision
                (or of a twin it has never seen a snapshot of); nothing changed.
            EpochError: the record contradicts the epochs (a fenced host's write).
            InvalidReportError: the record's data does not decode or is not an object.
        """
        cur = self._twins.get(record.twin_id)
        if record.kind == "snapshot":
            if cur is not None:
                if record.revision < cur.revision or (
                    record.revision == cur.revision and record.epoch <= cur.epoch
                ):
                    if record.epoch > cur.epoch:
                        raise EpochError(
                            record.twin_id,
                            record.epoch,
                            cur.epoch,
                            f"epoch {record.epoch} starts at revision {record.revision} but the "
                            f"replica has revision {cur.revision}: a fenced host wrote after its fence",
                        )
                    self.duplicates += 1
                    return False
                if record.epoch < cur.epoch:
                    raise EpochError(
                        record.twin_id, record.epoch, cur.epoch, "a snapshot from a fenced epoch"
                    )
            doc = record.value()
            if not isinstance(doc, dict):
                raise InvalidReportError(
                    f"record seq {record.seq}: a snapshot must be a JSON object"
                )
            self._twins[record.twin_id] = ReplicaTwin(doc, record.revision, record.epoch)
            self.applied += 1
            return True
        if cur is None:
            raise ReplicationGapError(record.twin_id, None, record.revision)
        if record.revision <= cur.revision:
            self.duplicates += 1
            return False
        if record.revision != cur.revision + 1:
            raise ReplicationGapError(record.twin_id, cur.revision + 1, record.revision)
        if record.epoch < cur.epoch:
            raise EpochError(
                record.twin_id,
                record.epoch,
                cur.epoch,
                f"revision {record.revision} comes from a fenced epoch",
            )
        patch = record.value()
        if not isinstance(patch, dict):
            raise InvalidReportError(f"record seq {record.seq}: a change must be a JSON object")
        cur.document = merge_patch(cur.document, patch)
        cur.revision, cur.epoch = record.revision, record.epoch
        self.applied += 1
        return True

    def apply_all(self, records: Iterable[LogRecord]) -> int:
        """Apply one host's records in seq order, stopping before the first one that
        comes too early (:class:`ReplicationGapError`: its predecessors are still on
        their way from another host; send it again later).

        Returns:
            The seq of the last record handled (applied or duplicate), 0 if none: what the
            sender may acknowledge (:meth:`twinedge.edge.host.EdgeHost.ack_replicated`).

        Raises:
            EpochError, InvalidReportError: as :meth:`apply` (records before it were
                applied).
        """
        last = 0
        for r in records:
            try:
                self.apply(r)
            except ReplicationGapError:
                break
            last = r.seq
        return last
