"""The SQLite log, entry validation and signed-note checkpoints."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ledger.ledger_helpers import make_entry
from twinedge.errors import LedgerError
from twinedge.ledger import Checkpoint, LedgerDir, LedgerLog, Signer, Verifier, merkle
from twinedge.ledger.entry import canonical_json, encode_entries, encode_entry, is_canonical
from twinedge.ledger.note import key_hash, open_checkpoint, parse_note


# ---------------------------------------------------------------- entries
def test_canonical_encoding() -> None:
    e = {"type": "usage", "domain": "a", "time": 1.5, "actor": "x", "body": {"b": 1, "a": "é"}}
    data = encode_entry(e)
    assert data == (
        '{"actor":"x","body":{"a":"é","b":1},"domain":"a","time":1.5,"type":"usage"}'.encode()
    )
    assert is_canonical(data)
    assert not is_canonical(b'{"actor": "x"}')


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"type": None}, "type"),
        ({"type": ""}, "type"),
        ({"domain": 3}, "domain"),
        ({"time": "soon"}, "time"),
        ({"time": True}, "time"),
        ({"time": float("nan")}, "time"),
        ({"actor": 1}, "actor"),
        ({"body": [1]}, "body"),
        ({"body": {"x": float("inf")}}, "body"),
        ({"body": {"x": object()}}, "body"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_entries_name_the_field(patch: dict, field: str) -> None:
    e = {**make_entry("a", 0), **patch}
    with pytest.raises(LedgerError, match=f"'{field}'"):
        encode_entry(e)


@pytest.mark.parametrize("missing", ["type", "domain", "time", "body"])
def test_missing_field_is_named(missing: str) -> None:
    e = make_entry("a", 0)
    del e[missing]
    with pytest.raises(LedgerError, match=f"missing field '{missing}'"):
        encode_entry(e, actor="x")


def test_missing_actor_is_filled() -> None:
    e = make_entry("a", 0)
    del e["actor"]
    assert b'"actor":"run"' in encode_entry(e, actor="run")
    with pytest.raises(LedgerError, match="missing field 'actor'"):
        encode_entry(e)


# ---------------------------------------------------------------- store
def test_store_matches_in_memory_tree(tmp_path: Path) -> None:
    log = LedgerLog.create(tmp_path / "log.sqlite", "a", "twinedge/a")
    hashes: list[bytes] = []
    sizes = [1, 2, 1, 5, 8, 3, 13, 1, 30, 7]
    for k in sizes:
        ents = [make_entry("a", len(hashes) + j) for j in range(k)]
        r = log.append_many(ents)
        assert r == range(len(hashes), len(hashes) + k)
        hashes += [merkle.leaf_hash(encode_entry(e)) for e in ents]
        n = len(hashes)
        assert log.root() == merkle.tree_hash(hashes)
        for i in range(0, n, 3):
            assert log.inclusion_proof(i) == merkle.inclusion_proof(hashes, i)
        for m in range(0, n + 1, 2):
            assert log.consistency_proof(m) == merkle.consistency_proof(hashes, m)
            assert log.root(m) == merkle.tree_hash(hashes[:m])
    log.close()
    with LedgerLog.open(tmp_path / "log.sqlite") as log2:
        assert log2.size == len(hashes)
        assert log2.root() == merkle.tree_hash(hashes)
        assert log2.entry(3)["body"]["i"] == 3
        assert [e["body"]["i"] for e in log2.entries(5, 8)] == [5, 6, 7]


def test_batch_is_atomic_and_domain_checked(tmp_path: Path) -> None:
    with LedgerLog.create(tmp_path / "l.sqlite", "a", "twinedge/a") as log:
        bad = [make_entry("a", 0), {**make_entry("a", 1), "time": "x"}]
        with pytest.raises(LedgerError, match="entry 1: field 'time'"):
            log.append_many(bad)
        assert log.size == 0
        with pytest.raises(LedgerError, match="log of 'b'"):
            log.append_many([make_entry("b", 0)])
        assert log.append_many([]) == range(0, 0)
        assert log.append(make_entry("a", 0)) == 0


def test_triggers_refuse_update_and_delete(tmp_path: Path) -> None:
    with LedgerLog.create(tmp_path / "l.sqlite", "a", "twinedge/a") as log:
        log.append_many([make_entry("a", i) for i in range(3)])
    con = sqlite3.connect(tmp_path / "l.sqlite")
    for sql in [
        "UPDATE entries SET data = x'00' WHERE idx = 1",
        "DELETE FROM entries WHERE idx = 1",
        "UPDATE nodes SET hashes = x'00'",
        "DELETE FROM nodes",
        "UPDATE meta SET value = 'x'",
        "DELETE FROM meta",
    ]:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()


def test_two_writers_see_each_other(tmp_path: Path) -> None:
    p = tmp_path / "l.sqlite"
    w1 = LedgerLog.create(p, "a", "twinedge/a")
    w2 = LedgerLog.open(p)
    w1.append_many([make_entry("a", i) for i in range(3)])
    w2.append_many([make_entry("a", i) for i in range(3, 7)])
    w1.append_many([make_entry("a", 7)])
    hashes = [merkle.leaf_hash(encode_entry(make_entry("a", i))) for i in range(8)]
    assert w1.root() == w2.root() == merkle.tree_hash(hashes)
    w1.close()
    w2.close()


def test_store_rejects_bad_arguments(tmp_path: Path) -> None:
    with LedgerLog.create(tmp_path / "l.sqlite", "a", "twinedge/a") as log:
        log.append_many([make_entry("a", i) for i in range(4)])
        with pytest.raises(LedgerError, match="outside"):
            log.inclusion_proof(4)
        with pytest.raises(LedgerError, match="outside"):
            log.consistency_proof(5)
        with pytest.raises(LedgerError, match="outside"):
            log.root(9)
    with pytest.raises(LedgerError, match="already exists"):
        LedgerLog.create(tmp_path / "l.sqlite", "a", "twinedge/a")
    with pytest.raises(LedgerError, match="does not exist"):
        LedgerLog.open(tmp_path / "nope.sqlite")


# ---------------------------------------------------------------- notes and keys
def test_vkey_and_key_hash_follow_signed_note() -> None:
    s = Signer.generate("example.com/log")
    v = s.verifier
    name, hexid, enc = v.vkey().split("+", 2)
    raw = base64.b64decode(enc)
    assert name == "example.com/log" and raw[0] == 1 and raw[1:] == v.public_key
    assert bytes.fromhex(hexid) == key_hash(name, v.public_key)
    assert (
        bytes.fromhex(hexid)
        == __import__("hashlib").sha256(name.encode() + b"\n\x01" + v.public_key).digest()[:4]
    )
    assert Verifier.from_vkey(v.vkey()) == v
    with pytest.raises(LedgerError, match="malformed"):
        Verifier.from_vkey("nonsense")
    with pytest.raises(LedgerError, match="does not match"):
        Verifier.from_vkey(f"{name}+00000000+{enc}")


def test_checkpoint_format_and_signature() -> None:
    s = Signer.generate("twinedge/a")
    cp = Checkpoint("twinedge/a", 8, bytes(range(32)))
    note = cp.sign(s)
    lines = note.split("\n")
    assert lines[:4] == ["twinedge/a", "8", base64.b64encode(bytes(range(32))).decode(), ""]
    assert lines[4].startswith("— twinedge/a ")
    blob = base64.b64decode(lines[4].split(" ")[2])
    assert blob[:4] == s.verifier.key_id and len(blob) == 68
    assert open_checkpoint(note, [s.verifier]) == cp
    text, sigs = parse_note(note)
    assert text == cp.body() and len(sigs) == 1
    # a forged signature is rejected; an unknown signer alone is not trusted
    bad = bytearray(blob)
    bad[10] ^= 1
    forged = note.replace(lines[4].split(" ")[2], base64.b64encode(bytes(bad)).decode())
    with pytest.raises(LedgerError, match="does not verify"):
        open_checkpoint(forged, [s.verifier])
    other = Signer.generate("twinedge/a")
    with pytest.raises(LedgerError, match="not signed by a trusted key"):
        open_checkpoint(cp.sign(other), [s.verifier])
    # a note co-signed by an unknown key still opens with the known one
    assert open_checkpoint(cp.sign([other, s]), [s.verifier]) == cp
    for broken in ["", "x\n\n", note.replace("\n8\n", "\n08\n"), note.replace("—", "-")]:
        with pytest.raises(LedgerError):
            open_checkpoint(broken, [s.verifier])


def test_private_key_file_is_created_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        s = Signer.generate("twinedge/a")
        s.save(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert Signer.load(tmp_path / "k", "twinedge/a").verifier == s.verifier
    with pytest.raises(LedgerError, match="already exists"):
        s.save(tmp_path / "k")
    os.chmod(tmp_path / "k", 0o644)
    with pytest.raises(LedgerError, match="chmod 600"):
        Signer.load(tmp_path / "k", "twinedge/a")


def test_ledger_dir_layout_and_witnessing(tmp_path: Path) -> None:
    with LedgerDir.create(tmp_path / "L", ["a", "b", "c"]) as ld:
        for d in ld.domains:
            ddir = tmp_path / "L" / d
            assert stat.S_IMODE(os.stat(ddir / "key.ed25519").st_mode) == 0o600
            assert Verifier.from_vkey((ddir / "key.pub").read_text()).name == f"twinedge/{d}"
            assert (ddir / "checkpoints" / "latest").is_file()
        ld.append_many([make_entry(d, i) for i in range(3) for d in "abc"])
        notes = ld.checkpoint_all(witness=True)
        for d in "abc":
            cp = open_checkpoint(notes[d], [ld.verifier(d)])
            assert cp.size == 3 + 2  # three entries and one witness entry per other domain
            witnessed = [e for _, e in ld.log(d).find_type("witness")]
            assert sorted(e["body"]["origin"] for e in witnessed) == sorted(
                f"twinedge/{o}" for o in "abc" if o != d
            )
        assert all(r.ok for r in ld.verify())
        with pytest.raises(LedgerError, match="has no domain 'zz'"):
            ld.log("zz")
        with pytest.raises(LedgerError, match="invalid"):
            ld.add_domain("../x")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    typ=st.text(min_size=1, max_size=10),
    time=st.one_of(st.integers(0, 2**40), st.floats(0, 1e9)),
    actor=st.text(max_size=10),
    body=st.dictionaries(st.text(max_size=6), json_values, max_size=5),
)
def test_fast_batch_encoding_equals_canonical(
    typ: str, time: float, actor: str, body: dict
) -> None:
    e = {"type": typ, "domain": "a", "time": time, "actor": actor, "body": body}
    fast = encode_entries([e], domain="a")
    assert fast == [encode_entry(e)] == [canonical_json(e)]
    assert is_canonical(fast[0])


@pytest.mark.parametrize("bad", ["a\n", "", "-a", "a/b", "a" * 65, "\ud800"])
def test_domain_names_are_matched_whole(bad: str) -> None:
    from twinedge.ledger.ledgerdir import check_domain_name

    with pytest.raises(LedgerError, match="is invalid"):
        check_domain_name(bad)
    assert check_domain_name("fleet-op.1") == "fleet-op.1"
