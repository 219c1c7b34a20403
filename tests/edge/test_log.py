"""EdgeLog: group commit, recovery by hand-computed examples, compaction, and every way a
file can be wrong (each a clear EdgeLogError, never a silent loss). Real SQLite files."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from twinedge.edge.errors import EdgeLogError
from twinedge.edge.log import EdgeLog, LogRecord, Ownership, TwinStatus
from twinedge.errors import TwinedgeError

T = "fleet:car-7"


def rec(
    twin: str, rev: int, kind: str, value: object, *, epoch: int = 1, t: float = 0.0
) -> LogRecord:
    return LogRecord(0, twin, epoch, rev, kind, json.dumps(value).encode(), t)  # type: ignore[arg-type]


def owned(twin: str = T, epoch: int = 1) -> Ownership:
    return Ownership(twin, TwinStatus.OWNED, epoch)


def three_revisions(path: Path) -> None:
    with_log = EdgeLog.open(path, "edge-1")
    with_log.append([rec(T, 0, "snapshot", {"thingId": T, "features": {}})], [owned()])
    with_log.append(
        [
            rec(T, 1, "change", {"features": {"b": {"properties": {"level": 71, "v": 1}}}}, t=1.0),
            rec(
                T,
                2,
                "change",
                {"features": {"b": {"properties": {"v": None, "temp_c": 24.5}}}},
                t=2.0,
            ),
        ]
    )
    with_log.close()


def test_recover_hand_computed(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    three_revisions(path)
    log = EdgeLog.open(path)
    assert log.host_id == "edge-1"
    r = log.recover()
    assert r.last_seq == 3 and r.replicated_seq == 0
    assert r.unreplicated == [(1, 0.0), (2, 1.0), (3, 2.0)]
    tw = r.twins[T]
    # snapshot, then {level:71, v:1}, then v removed and temp_c added (RFC 7396)
    assert tw.document == {
        "thingId": T,
        "features": {"b": {"properties": {"level": 71, "temp_c": 24.5}}},
    }
    assert (tw.revision, tw.last_seq, tw.ownership.epoch) == (2, 3, 1)
    assert [x.seq for x in log.read(1, 10)] == [2, 3]
    assert log.read(1, 1)[0].value() == {"features": {"b": {"properties": {"level": 71, "v": 1}}}}
    log.close()
    log.close()  # twice is harmless


def test_group_commit_assigns_consecutive_seqs(tmp_path: Path) -> None:
    log = EdgeLog.open(tmp_path / "e.sqlite", "h")
    twins = [f"fleet:t{i}" for i in range(50)]
    out = log.append(
        [rec(t, 0, "snapshot", {"features": {}}) for t in twins], [owned(t) for t in twins]
    )
    assert [r.seq for r in out] == list(range(1, 51))
    out = log.append([rec(t, 1, "change", {"attributes": {"i": i}}) for i, t in enumerate(twins)])
    assert out[0].seq == 51 and out[-1].seq == 100 and log.last_seq == 100
    rebuilt = log.recover().twins
    assert rebuilt["fleet:t7"].document == {"features": {}, "attributes": {"i": 7}}
    log.close()


def test_compaction_keeps_unreplicated_and_never_reuses_seq(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    three_revisions(path)
    log = EdgeLog.open(path)
    state = log.recover().twins[T]
    snap = LogRecord(3, T, 1, 2, "snapshot", json.dumps(state.document).encode(), 5.0)
    assert log.compact([snap], replicated_seq=2) == 2  # seq 1, 2: replicated and folded
    assert [r.seq for r in log.read(0, 10)] == [3]  # not replicated yet: still in the outbox
    assert log.compact([snap], replicated_seq=3) == 1
    assert log.read(0, 10) == []
    log.close()
    log = EdgeLog.open(path)
    r = log.recover()
    assert r.twins[T].document == state.document and r.twins[T].revision == 2
    assert r.last_seq == 3 and r.replicated_seq == 3
    # every record is gone, yet the next seq continues after 3
    assert log.append([rec(T, 3, "change", {"attributes": {"a": 1}})])[0].seq == 4
    log.close()
    with EdgeLog.open(path) as log:
        assert log.recover().twins[T].revision == 3


def test_fenced_and_moved_twins_recover_as_such(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite"
    three_revisions(path)
    log = EdgeLog.open(path)
    log.append([], [Ownership(T, TwinStatus.FENCED, 1, "edge-2", 2)])
    log.append(
        [rec("fleet:x", 4, "snapshot", {"features": {}}, epoch=3)],
        [Ownership("fleet:x", TwinStatus.MOVED, 3, "edge-3", 4)],
    )
    log.close()
    with EdgeLog.open(path) as log:
        r = log.recover()
    assert r.twins[T].ownership == Ownership(T, TwinStatus.FENCED, 1, "edge-2", 2)
    assert r.twins[T].revision == 2  # a fenced twin keeps its state for the final copy
    assert r.twins["fleet:x"].document is None and r.twins["fleet:x"].last_seq == 4


# --------------------------------------------------------------------------- bad files


def test_creating_needs_a_valid_host_id(tmp_path: Path) -> None:
    with pytest.raises(EdgeLogError, match="does not exist; give a host id"):
        EdgeLog.open(tmp_path / "new.sqlite")
    with pytest.raises(EdgeLogError, match="host id 'a b' is not valid"):
        EdgeLog.open(tmp_path / "new.sqlite", "a b")
    with pytest.raises(EdgeLogError, match="cannot open edge log"):
        EdgeLog.open(tmp_path / "missing-dir" / "new.sqlite", "h")


def test_another_hosts_log_is_refused(tmp_path: Path) -> None:
    EdgeLog.open(tmp_path / "e.sqlite", "edge-1").close()
    with pytest.raises(EdgeLogError, match="belongs to host 'edge-1', not 'edge-2'"):
        EdgeLog.open(tmp_path / "e.sqlite", "edge-2")


def test_one_writer_per_log(tmp_path: Path) -> None:
    log = EdgeLog.open(tmp_path / "e.sqlite", "h")
    with pytest.raises(EdgeLogError, match=f"open elsewhere \\(process {os.getpid()} holds"):
        EdgeLog.open(tmp_path / "e.sqlite")
    log.close()
    EdgeLog.open(tmp_path / "e.sqlite").close()  # the lock goes with the log


def test_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    path.write_bytes(b"this is not a database, just text\n" * 200)
    with pytest.raises(EdgeLogError, match="unreadable or corrupt") as e:
        EdgeLog.open(path)
    assert isinstance(e.value, TwinedgeError) and str(path) in str(e.value)


def test_sqlite_but_not_an_edge_log(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('format', 'twinedge-ledger/1')")
    con.commit()
    con.close()
    with pytest.raises(EdgeLogError, match="is not a twinedge edge log"):
        EdgeLog.open(path)


def _big_log(path: Path) -> None:
    log = EdgeLog.open(path, "h")
    log.append([rec(T, 0, "snapshot", {"features": {}})], [owned()])
    for i in range(1, 200):
        log.append([rec(T, i, "change", {"attributes": {"pad": "x" * 500, "i": i}})])
    log.close()  # the last connection checkpoints the WAL into the file


def test_damaged_page(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    _big_log(path)
    data = bytearray(path.read_bytes())
    assert len(data) > 30 * 4096
    data[15 * 4096 : 17 * 4096] = b"\xa5" * 8192  # two pages in the middle of the records
    path.write_bytes(bytes(data))
    with pytest.raises(EdgeLogError, match=r"damaged|corrupt"):
        EdgeLog.open(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    _big_log(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeLogError, match=r"damaged|corrupt"):
        EdgeLog.open(path)


def _edit(path: Path, sql: str, *args: object) -> None:
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()


def test_a_record_that_does_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    three_revisions(path)
    _edit(path, "UPDATE records SET data = ? WHERE seq = 2", b'{"features": {"b": ')
    with pytest.raises(
        EdgeLogError, match=r"record seq 2 \(twin 'fleet:car-7', revision 1\) does not decode"
    ):
        with EdgeLog.open(path) as log:
            log.recover()


def test_a_missing_record_is_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    three_revisions(path)
    _edit(path, "DELETE FROM records WHERE seq = 2")
    with pytest.raises(EdgeLogError, match=r"record seq 3 .* does not follow revision 0"):
        with EdgeLog.open(path) as log:
            log.recover()


def test_a_record_without_owner_or_with_a_future_epoch(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    three_revisions(path)
    _edit(path, "UPDATE records SET epoch = 9 WHERE seq = 3")
    with pytest.raises(EdgeLogError, match="has epoch 9, above the twin's epoch 1"):
        with EdgeLog.open(path) as log:
            log.recover()
    _edit(path, "DELETE FROM twins")
    with pytest.raises(EdgeLogError, match="belongs to no twin this host knows"):
        with EdgeLog.open(path) as log:
            log.recover()


def test_an_owned_twin_without_state(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    three_revisions(path)
    _edit(path, "DELETE FROM records")
    with pytest.raises(EdgeLogError, match="is owned but its state is missing"):
        with EdgeLog.open(path) as log:
            log.recover()


def test_synchronous_normal_and_bad_values(tmp_path: Path) -> None:
    with EdgeLog.open(tmp_path / "e.sqlite", "h", synchronous="NORMAL") as log:
        assert log._w.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        log.append([rec(T, 0, "snapshot", {"features": {}})], [owned()])
    with EdgeLog.open(tmp_path / "e.sqlite") as log:
        assert log._w.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL by default
        assert log.recover().twins[T].revision == 0
    with pytest.raises(EdgeLogError, match="synchronous must be 'FULL' or 'NORMAL', got 'OFF'"):
        EdgeLog.open(tmp_path / "e.sqlite", synchronous="OFF")  # type: ignore[arg-type]


def test_closed_log(tmp_path: Path) -> None:
    log = EdgeLog.open(tmp_path / "e.sqlite", "h")
    log.close()
    for call in (lambda: log.read(0, 1), lambda: log.append([]), lambda: log.recover()):
        with pytest.raises(EdgeLogError, match="is closed"):
            call()
