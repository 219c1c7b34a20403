"""The ledger tamper matrix: one named JSON vector per mutation, walked by one generic test.

Each vector in ``tests/ledger/vectors/tamper/`` names a mutation (a function below),
its arguments, and what ``twinedge ledger verify`` and ``twinedge ledger audit`` must
answer afterwards: the exit code and a phrase of the message that names the reason.
The ledger is real and built through the CLI: three domains, three rounds of
appends and cross-witnessed checkpoints.  ``control`` (no mutation) must pass, so the
matrix can fail.

Sizes of domain ``a`` in the built ledger (each round appends entries, signs, records
the other two domains' checkpoints, signs again): checkpoints at 0, 10, 12, 22, 24,
29 and 31; ``b`` and ``c`` hold witnessed checkpoints of ``a`` at 10, 22 and 29.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.ledger.ledger_helpers import make_entry, rebuild_nodes
from twinedge.ledger import Checkpoint, LedgerDir, Signer
from twinedge.ledger.cli import app
from twinedge.ledger.entry import canonical_json
from twinedge.ledger.note import parse_note
from twinedge.ledger.store import _TRIGGERS, TRIGGER_NAMES

runner = CliRunner()
VECTORS = sorted((Path(__file__).parent / "vectors" / "tamper").glob("*.json"))
DOMAINS = ("a", "b", "c")
ROUNDS = (10, 10, 5)  # entries appended to every domain in each witnessed round


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    r = runner.invoke(app, list(args), input=input)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("matrix") / "L"
    args = [a for d in DOMAINS for a in ("--domain", d)]
    assert cli("init", str(path), *args)[0] == 0
    i = 0
    for n in ROUNDS:
        lines = [json.dumps(make_entry(d, k)) for k in range(i, i + n) for d in DOMAINS]
        i += n
        code, out = cli("append", str(path), "-", input="\n".join(lines))
        assert code == 0, out
        code, out = cli("checkpoint", str(path))
        assert code == 0, out
    return path


# ---------------------------------------------------------------------- mutations
def _con(path: Path, domain: str) -> sqlite3.Connection:
    con = sqlite3.connect(path / domain / "log.sqlite", isolation_level=None)
    for t in TRIGGER_NAMES:
        con.execute(f"DROP TRIGGER IF EXISTS {t}")
    return con


def _done(con: sqlite3.Connection) -> None:
    """Put the append-only triggers back, so their absence gives nothing away."""
    for stmt in _TRIGGERS.strip().split("\n"):
        con.execute(stmt)
    con.close()


def _trim(path: Path, domain: str, size: int) -> None:
    con = _con(path, domain)
    con.execute("DELETE FROM entries WHERE idx >= ?", (size,))
    for rid, level, start, blob in con.execute("SELECT * FROM nodes").fetchall():
        keep = (size >> level) - start
        if keep <= 0:
            con.execute("DELETE FROM nodes WHERE id = ?", (rid,))
        elif keep * 32 < len(blob):
            con.execute("UPDATE nodes SET hashes = ? WHERE id = ?", (blob[: keep * 32], rid))
    _done(con)


def _rollback(path: Path, domain: str, size: int) -> None:
    _trim(path, domain, size)
    cdir = path / domain / "checkpoints"
    for p in cdir.iterdir():
        if p.name.isdigit() and int(p.name) > size:
            p.unlink()
    shutil.copy(cdir / str(size), cdir / "latest")


def _fork(path: Path, domain: str, size: int, extra: int) -> None:
    _rollback(path, domain, size)
    with LedgerDir.open(path) as ld:
        ld.log(domain).append_many([make_entry(domain, 9000 + k) for k in range(extra)])
        ld.checkpoint(domain)


def _truncate_table(path: Path, domain: str, keep: int) -> None:
    con = _con(path, domain)
    con.execute("DELETE FROM entries WHERE idx >= ?", (keep,))
    _done(con)


def _truncate_file(path: Path, domain: str, fraction: float) -> None:
    db = path / domain / "log.sqlite"
    raw = db.read_bytes()
    db.write_bytes(raw[: int(len(raw) * fraction)])


def _replace_dir(path: Path, domain: str, by: str) -> None:
    shutil.rmtree(path / domain)
    shutil.copytree(path / by, path / domain)


def _delete_dir(path: Path, domain: str) -> None:
    shutil.rmtree(path / domain)


def _replay(path: Path, domain: str, size: int) -> None:
    cdir = path / domain / "checkpoints"
    shutil.copy(cdir / str(size), cdir / "latest")


def _new_key(path: Path, domain: str) -> None:
    d = path / domain
    with LedgerDir.open(path) as ld:
        origin = ld.log(domain).origin
    signer = Signer.generate(origin)
    (d / "key.ed25519").unlink()
    signer.save(d / "key.ed25519")
    (d / "key.pub").write_text(signer.verifier.vkey() + "\n")
    for p in (d / "checkpoints").iterdir():
        body, _ = parse_note(p.read_text())
        p.write_text(Checkpoint.parse_body(body).sign(signer))


def _flip_byte(path: Path, domain: str, needle: str) -> None:
    db = path / domain / "log.sqlite"
    raw = db.read_bytes()
    assert raw.count(needle.encode()) == 1
    db.write_bytes(raw.replace(needle.encode(), needle[:-2].encode() + b"X" + needle[-1:].encode()))


def _last_witness(con: sqlite3.Connection, of: str) -> tuple[int, dict[str, Any]]:
    found = None
    for idx, data in con.execute("SELECT idx, data FROM entries ORDER BY idx"):
        e = json.loads(data)
        if e["type"] == "witness" and e["body"]["origin"] == f"twinedge/{of}":
            found = (idx, e)
    assert found is not None
    return found


def _forge_witness(path: Path, witness: str, of: str) -> None:
    con = _con(path, witness)
    idx, e = _last_witness(con, of)
    note = e["body"]["checkpoint"]
    sig_line = note.rstrip("\n").split("\n")[-1]
    _, enc = sig_line[2:].split(" ")
    forged = base64.b64encode(base64.b64decode(enc)[:4] + bytes(range(64))).decode()
    e["body"]["checkpoint"] = note.replace(enc, forged)
    con.execute("UPDATE entries SET data = ? WHERE idx = ?", (canonical_json(e), idx))
    rebuild_nodes(con)
    _done(con)


def _delete_witness(path: Path, witness: str, of: str) -> None:
    con = _con(path, witness)
    idx, _ = _last_witness(con, of)
    con.execute("DELETE FROM entries WHERE idx = ?", (idx,))
    _done(con)


MUTATIONS: dict[str, Callable[..., None]] = {
    "none": lambda path: None,
    "rollback": _rollback,
    "fork": _fork,
    "truncate_table": _truncate_table,
    "truncate_file": _truncate_file,
    "replace_dir": _replace_dir,
    "delete_dir": _delete_dir,
    "replay": _replay,
    "new_key": _new_key,
    "flip_byte": _flip_byte,
    "forge_witness": _forge_witness,
    "delete_witness": _delete_witness,
}


def test_matrix_has_the_required_vectors() -> None:
    names = {json.loads(p.read_text())["mutation"] for p in VECTORS}
    assert names >= set(MUTATIONS)


@pytest.mark.parametrize("vector", VECTORS, ids=[p.stem for p in VECTORS])
def test_tamper_vector(vector: Path, template: Path, tmp_path: Path) -> None:
    v = json.loads(vector.read_text())
    path = tmp_path / "L"
    shutil.copytree(template, path)
    MUTATIONS[v["mutation"]](path, **v["args"])
    for command in ("verify", "audit"):
        code, out = cli(command, str(path))
        want = v[command]
        assert code == want["exit"], f"{v['name']}: {command} exited {code}:\n{out}"
        assert want["reason"] in out, f"{v['name']}: {command} did not say why:\n{out}"
