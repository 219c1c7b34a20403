"""The edge tier's messages as JSON: what an edge host's control API and its remote
peers (:class:`twinedge.edge.remote.RemoteHost`) send each other. Documents and patches
travel as the JSON text the log stores, so a copy is byte-for-byte the source's; so do the
records a host replicates to the core (:func:`replication_body` writes each record's
stored text into the request as it is, instead of decoding it to encode it again)."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any

from twinedge.edge.errors import EdgeError
from twinedge.edge.host import ChangeSet, FenceResult, TwinChange, TwinSnapshot
from twinedge.edge.log import LogRecord, Ownership, TwinStatus


def _need(d: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if (
        not isinstance(d, dict)
        or key not in d
        or not isinstance(d[key], kind)
        or (kind is int and isinstance(d[key], bool))
    ):
        raise EdgeError(
            f"message field {key!r}: missing or not a {getattr(kind, '__name__', kind)}"
        )
    return d[key]


def snapshot_to(s: TwinSnapshot) -> dict[str, Any]:
    return {
        "twin": s.twin_id,
        "source": s.source,
        "epoch": s.epoch,
        "revision": s.revision,
        "document": s.document.decode(),
        "behaviour": s.behaviour,
        "behaviour_params": dict(s.behaviour_params),
    }


def snapshot_from(d: Any) -> TwinSnapshot:
    return TwinSnapshot(
        twin_id=_need(d, "twin", str),
        source=_need(d, "source", str),
        epoch=_need(d, "epoch", int),
        revision=_need(d, "revision", int),
        document=_need(d, "document", str).encode(),
        behaviour=_need(d, "behaviour", str),
        behaviour_params=_need(d, "behaviour_params", dict),
    )


def changes_to(c: ChangeSet) -> dict[str, Any]:
    return {
        "twin": c.twin_id,
        "after_revision": c.after_revision,
        "changes": [
            {"revision": x.revision, "epoch": x.epoch, "patch": x.patch.decode()} for x in c.changes
        ],
    }


def changes_from(d: Any) -> ChangeSet:
    items = _need(d, "changes", list)
    return ChangeSet(
        twin_id=_need(d, "twin", str),
        after_revision=_need(d, "after_revision", int),
        changes=tuple(
            TwinChange(
                _need(x, "revision", int), _need(x, "epoch", int), _need(x, "patch", str).encode()
            )
            for x in items
        ),
    )


def fence_to(f: FenceResult) -> dict[str, Any]:
    return {
        "twin": f.twin_id,
        "source": f.source,
        "epoch": f.epoch,
        "owner": f.owner,
        "revision": f.revision,
    }


def fence_from(d: Any) -> FenceResult:
    return FenceResult(
        twin_id=_need(d, "twin", str),
        source=_need(d, "source", str),
        epoch=_need(d, "epoch", int),
        owner=_need(d, "owner", str),
        revision=_need(d, "revision", int),
    )


def ownership_to(o: Ownership) -> dict[str, Any]:
    return {
        "twin": o.twin_id,
        "status": str(o.status),
        "epoch": o.epoch,
        "owner": o.owner,
        "owner_epoch": o.owner_epoch,
        "behaviour": o.behaviour,
        "behaviour_params": dict(o.behaviour_params),
    }


def ownership_from(d: Any) -> Ownership:
    owner = d.get("owner") if isinstance(d, dict) else None
    return Ownership(
        twin_id=_need(d, "twin", str),
        status=TwinStatus(_need(d, "status", str)),
        epoch=_need(d, "epoch", int),
        owner=owner if isinstance(owner, str) else None,
        owner_epoch=_need(d, "owner_epoch", int),
        behaviour=_need(d, "behaviour", str),
        behaviour_params=_need(d, "behaviour_params", dict),
    )


def record_to(r: LogRecord) -> dict[str, Any]:
    """A committed record as the core's ``/internal/replicate`` takes it."""
    return {
        "seq": r.seq,
        "twin": r.twin_id,
        "epoch": r.epoch,
        "revision": r.revision,
        "kind": r.kind,
        "data": r.value(),
        "time_s": r.time_s,
    }


def replication_body(host_id: str, records: Sequence[LogRecord]) -> bytes:
    """The body of ``POST /internal/replicate``: ``{"host", "records": [record_to(r)
    ...]}`` as UTF-8 JSON, each record's ``data`` being its stored JSON text written in
    place (the log holds only the compact strict JSON the host encoded, checked again
    when the log is opened), so the core parses the same values :func:`record_to` would
    have sent.

    Examples:
        >>> r = LogRecord(7, "fleet:car-7", 1, 3, "change", b'{"attributes":{"a":1}}', 5.25)
        >>> replication_body("edge-1", [r])
        b'{"host":"edge-1","records":[{"seq":7,"twin":"fleet:car-7","epoch":1,"revision":3,"kind":"change","data":{"attributes":{"a":1}},"time_s":5.25}]}'
        >>> json.loads(replication_body("edge-1", [r]))["records"] == [record_to(r)]
        True
    """
    parts = [b'{"host":', _quoted(host_id), b',"records":[']
    for i, r in enumerate(records):
        t = float(r.time_s)
        head = (
            f'{"," if i else ""}{{"seq":{int(r.seq)},"twin":'.encode()
            + _quoted(r.twin_id)
            + f',"epoch":{int(r.epoch)},"revision":{int(r.revision)},"kind":'.encode()
            + _quoted(r.kind)
            + b',"data":'
        )
        time_s = repr(t) if math.isfinite(t) else json.dumps(t)  # what json.dumps writes
        parts += (head, bytes(r.data), f',"time_s":{time_s}}}'.encode())
    parts.append(b"]}")
    return b"".join(parts)


@functools.lru_cache(maxsize=65536)
def _quoted(s: str) -> bytes:
    """A string as a JSON string (twin ids repeat: each is quoted once)."""
    return json.dumps(s).encode()
