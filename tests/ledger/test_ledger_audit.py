"""`audit` finds split views (forked logs), bad signatures and failing inclusions."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from tests.ledger.ledger_helpers import make_entry
from twinedge.ledger import Checkpoint, LedgerDir, Signer, audit
from twinedge.ledger.cli import app

runner = CliRunner()


def _witnessed(tmp_path: Path) -> Path:
    path = tmp_path / "L"
    with LedgerDir.create(path, ["a", "b"]) as ld:
        ld.append_many([make_entry(d, i) for i in range(10) for d in "ab"])
        ld.checkpoint_all(witness=True)
    return path


def test_honest_ledger_audits_clean(tmp_path: Path) -> None:
    path = _witnessed(tmp_path)
    rep = audit([path])
    assert rep.ok, rep.issues
    assert rep.consistency_proofs > 0 and rep.inclusion_proofs > 0
    r = runner.invoke(app, ["audit", str(path)])
    assert r.exit_code == 0 and "ok: 2 logs" in r.output


def test_forked_log_is_a_split_view(tmp_path: Path) -> None:
    path = _witnessed(tmp_path)
    fork = tmp_path / "fork"
    shutil.copytree(path, fork)
    # the operator of 'a' shows one history here...
    with LedgerDir.open(path) as ld:
        ld.log("a").append_many([make_entry("a", 100)])
        ld.checkpoint("a")
    # ...and a different one to another party
    with LedgerDir.open(fork) as ld:
        ld.log("a").append_many([make_entry("a", 200)])
        ld.checkpoint("a")
    rep = audit([path, fork])
    assert not rep.ok
    kinds = {(i.kind, i.origin) for i in rep.issues}
    assert ("split_view", "twinedge/a") in kinds
    assert all(i.origin == "twinedge/a" for i in rep.issues if i.kind == "split_view")
    r = runner.invoke(app, ["audit", str(path), str(fork), "--json"])
    assert r.exit_code == 1 and '"split_view"' in r.output


def test_rewritten_log_contradicts_its_witnessed_checkpoint(tmp_path: Path) -> None:
    """'a' throws its log away and starts over with the same key; b's witness entry
    still holds the old checkpoint, so the new one cannot be reconciled with it."""
    path = _witnessed(tmp_path)
    key = (path / "a" / "key.ed25519").read_bytes()
    for p in (path / "a").iterdir():
        if p.is_file() and p.name.startswith("log.sqlite"):
            p.unlink()
    shutil.rmtree(path / "a" / "checkpoints")
    (path / "a" / "key.ed25519").unlink()
    (path / "a" / "key.pub").unlink()
    with LedgerDir.open(path) as ld:
        ld.add_domain("a")
    # restore the old key so the new history is signed by the same identity
    (path / "a" / "key.ed25519").chmod(0o600)
    (path / "a" / "key.ed25519").write_bytes(key)
    signer = Signer.load(path / "a" / "key.ed25519", "twinedge/a")
    (path / "a" / "key.pub").write_text(signer.verifier.vkey() + "\n")
    with LedgerDir.open(path) as ld:
        ld.log("a").append_many([make_entry("a", 1000 + i) for i in range(12)])
        note = ld.checkpoint("a")
    presented = tmp_path / "presented.ckpt"
    presented.write_text(note)
    rep = audit([path], checkpoints=[(str(presented), note)])
    assert any(i.kind == "split_view" for i in rep.issues), rep.issues
    r = runner.invoke(app, ["audit", str(path), "--checkpoint", str(presented)])
    assert r.exit_code == 1 and "split_view" in r.output


def test_presented_checkpoint_with_bad_signature(tmp_path: Path) -> None:
    path = _witnessed(tmp_path)
    with LedgerDir.open(path) as ld:
        log = ld.log("a")
        forged = Checkpoint(log.origin, log.size, log.root()).sign(Signer.generate(log.origin))
        good = ld.latest_checkpoint("a")
    assert good is not None
    tampered = good.replace(good.split("\n")[1], "99999", 1)
    rep = audit([path], checkpoints=[("forged", forged), ("tampered", tampered)])
    bad = [i for i in rep.issues if i.kind == "bad_signature"]
    assert {i.detail.split(":")[0] for i in bad} == {"forged", "tampered"}


def test_two_checkpoints_same_size_different_roots(tmp_path: Path) -> None:
    path = _witnessed(tmp_path)
    with LedgerDir.open(path) as ld:
        log = ld.log("a")
        signer = ld.signer("a")
        other = Checkpoint(log.origin, 3, b"\x11" * 32).sign(signer)
    rep = audit([path], checkpoints=[("evil", other)])
    assert any(i.kind == "split_view" and "size 3" in i.detail for i in rep.issues)


def test_tampered_copy_fails_inclusion(tmp_path: Path) -> None:
    import sqlite3

    from twinedge.ledger import merkle
    from twinedge.ledger.store import TRIGGER_NAMES

    path = _witnessed(tmp_path)
    con = sqlite3.connect(path / "a" / "log.sqlite")
    for t in TRIGGER_NAMES:
        con.execute(f"DROP TRIGGER {t}")
    con.execute(
        "UPDATE entries SET data = CAST(replace(data, 'marker-0000', 'marker-0001') AS BLOB)"
    )
    # keep the stored leaf hash consistent so only the signed root can disagree
    d = con.execute("SELECT data FROM entries WHERE idx = 0").fetchone()[0]
    blob = con.execute("SELECT hashes FROM nodes WHERE level = 0 AND start = 0").fetchone()[0]
    con.execute(
        "UPDATE nodes SET hashes = ? WHERE level = 0 AND start = 0",
        (merkle.leaf_hash(d) + blob[32:],),
    )
    con.commit()
    con.close()
    rep = audit([path])
    assert any(i.kind == "inclusion_failed" and "entry 0" in i.detail for i in rep.issues)
