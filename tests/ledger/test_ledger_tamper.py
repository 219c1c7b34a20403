"""Tampering with a stored log is detected by `verify`, which names the first bad index."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.ledger.ledger_helpers import rebuild_nodes
from twinedge.ledger import Checkpoint, LedgerDir, Signer
from twinedge.ledger.cli import app
from twinedge.ledger.store import TRIGGER_NAMES

runner = CliRunner()


def _verify(path: Path, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["verify", str(path), *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.output


def _sql(path: Path, *stmts: str) -> None:
    con = sqlite3.connect(path / "a" / "log.sqlite")
    for t in TRIGGER_NAMES:
        con.execute(f"DROP TRIGGER IF EXISTS {t}")
    for s in stmts:
        con.execute(s)
    con.commit()
    con.close()


def test_untouched_ledger_verifies(ledger: Path) -> None:
    code, out = _verify(ledger)
    assert code == 0, out
    assert "ok: a: 50 entries" in out


def test_changed_byte_in_file(ledger: Path) -> None:
    db = ledger / "a" / "log.sqlite"
    raw = db.read_bytes()
    assert raw.count(b"marker-0017") == 1
    db.write_bytes(raw.replace(b"marker-0017", b"marker-0X17"))
    code, out = _verify(ledger)
    assert code == 1
    assert "first bad index 17" in out


def test_changed_entry_via_sql_without_triggers(ledger: Path) -> None:
    _sql(
        ledger,
        "UPDATE entries SET data = CAST(replace(data, 'marker-0033', 'marker-9999') AS BLOB)",
    )
    code, out = _verify(ledger)
    assert code == 1 and "first bad index 33" in out


def test_deleted_row(ledger: Path) -> None:
    _sql(ledger, "DELETE FROM entries WHERE idx = 20")
    code, out = _verify(ledger)
    assert code == 1 and "first bad index 20" in out and "missing" in out


def test_deleted_last_row(ledger: Path) -> None:
    _sql(ledger, "DELETE FROM entries WHERE idx = 49")
    code, out = _verify(ledger)
    assert code == 1 and "first bad index 49" in out


def test_reordered_rows(ledger: Path) -> None:
    _sql(
        ledger,
        "UPDATE entries SET idx = -1 WHERE idx = 12",
        "UPDATE entries SET idx = 12 WHERE idx = 40",
        "UPDATE entries SET idx = 40 WHERE idx = -1",
    )
    code, out = _verify(ledger)
    assert code == 1 and "first bad index 12" in out


def test_truncated_file(ledger: Path) -> None:
    db = ledger / "a" / "log.sqlite"
    raw = db.read_bytes()
    db.write_bytes(raw[: len(raw) // 2])
    code, out = _verify(ledger)
    assert code == 1
    assert "first bad index" in out


def test_truncated_to_nothing(ledger: Path) -> None:
    (ledger / "a" / "log.sqlite").write_bytes(b"")
    code, out = _verify(ledger)
    assert code == 1 and "first bad index 0" in out


def test_forged_signature(ledger: Path) -> None:
    latest = ledger / "a" / "checkpoints" / "latest"
    text = latest.read_text()
    sig_line = text.rstrip("\n").split("\n")[-1]
    blob = bytearray(base64.b64decode(sig_line.split(" ")[2]))
    blob[20] ^= 0x40
    latest.write_text(text.replace(sig_line.split(" ")[2], base64.b64encode(bytes(blob)).decode()))
    code, out = _verify(ledger)
    assert code == 1 and "does not verify" in out


def test_checkpoint_signed_by_another_key(ledger: Path) -> None:
    latest = ledger / "a" / "checkpoints" / "latest"
    with LedgerDir.open(ledger) as ld:
        log = ld.log("a")
        note = Checkpoint(log.origin, log.size, log.root()).sign(Signer.generate(log.origin))
    latest.write_text(note)
    code, out = _verify(ledger)
    assert code == 1 and "not signed by a trusted key" in out


def test_consistent_rewrite_is_caught_by_the_signed_root(ledger: Path) -> None:
    """Change entry 30 and rebuild every stored hash: only the signature can tell."""
    db = ledger / "a" / "log.sqlite"
    _sql(
        ledger,
        "UPDATE entries SET data = CAST(replace(data, 'marker-0030', 'marker-3000') AS BLOB)",
    )
    con = sqlite3.connect(db)
    rebuild_nodes(con)
    con.commit()
    con.close()
    code, out = _verify(ledger, "--no-entry-check")
    assert code == 1
    # checkpoints were signed at sizes 25 and 50: the bad entry is in [25, 50)
    assert "first bad index in [25, 50)" in out
    code, out = _verify(ledger, "--json")
    assert code == 1 and '"bad_range": [' in out


def test_dropped_triggers_alone_are_reported(ledger: Path) -> None:
    _sql(ledger)
    code, out = _verify(ledger)
    assert code == 1 and "triggers were removed" in out


def test_verify_with_explicit_trusted_key(ledger: Path) -> None:
    vkey = (ledger / "a" / "key.pub").read_text().strip()
    code, out = _verify(ledger, "--domain", "a", "--key", vkey)
    assert code == 0, out
    other = Signer.generate("twinedge/a").verifier.vkey()
    code, out = _verify(ledger, "--domain", "a", "--key", other)
    assert code == 1 and "not signed by a trusted key" in out


@pytest.mark.parametrize("sync", ["NORMAL", "FULL"])
def test_synchronous_modes_verify(tmp_path: Path, sync: str) -> None:
    with LedgerDir.create(tmp_path / "L", ["a"], synchronous=sync) as ld:  # type: ignore[arg-type]
        ld.log("a").append_many(
            [{"type": "usage", "domain": "a", "time": 1.0, "body": {}} for _ in range(10)]
        )
        ld.checkpoint("a")
        assert ld.verify()[0].ok


def test_text_typed_row_is_reported_not_crashing(ledger: Path) -> None:
    _sql(ledger, "UPDATE entries SET data = replace(data, 'marker-0007', 'marker-7777')")
    code, out = _verify(ledger)
    assert code == 1 and "first bad index 7" in out
