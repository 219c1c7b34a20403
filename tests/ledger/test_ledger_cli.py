"""Every `twinedge ledger` command through typer's CliRunner, with good and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.ledger.ledger_helpers import make_entry
from twinedge.ledger import merkle
from twinedge.ledger.cli import app

runner = CliRunner()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    r = runner.invoke(app, list(args), input=input)
    # user mistakes and failures exit cleanly: never an uncaught exception
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    return r.exit_code, r.output


@pytest.fixture
def ldir(tmp_path: Path) -> Path:
    p = tmp_path / "L"
    code, out = run("init", str(p), "-d", "a", "--domain", "b")
    assert code == 0 and "created domain a: twinedge/a+" in out
    return p


def test_init_errors(ldir: Path, tmp_path: Path) -> None:
    code, out = run("init", str(ldir), "-d", "a")
    assert code == 2 and out.strip() == f"error: domain 'a' already exists in {ldir}"
    code, out = run("init", str(tmp_path / "x"), "-d", "bad name")
    assert code == 2 and "domain name 'bad name' is invalid" in out
    code, _ = run("init", str(tmp_path / "y"))
    assert code == 2  # --domain is required


def test_append_show_and_errors(ldir: Path, tmp_path: Path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text("\n".join(json.dumps(make_entry(d, i)) for i in range(4) for d in "ab"))
    code, out = run("append", str(ldir), str(f))
    assert code == 0 and "appended 4 entries to a (indices 0..3)" in out
    code, out = run("append", str(ldir), "-", input=json.dumps([make_entry("a", 9)]))
    assert code == 0 and "appended 1 entries to a (indices 4..4)" in out
    code, out = run("show", str(ldir), "--json")
    assert code == 0
    info = {d["domain"]: d for d in json.loads(out)}
    assert info["a"]["size"] == 5 and info["b"]["size"] == 4
    code, out = run("show", str(ldir), "-d", "a", "--start", "3", "--limit", "2", "--json")
    assert [e["index"] for e in json.loads(out)["entries"]] == [3, 4]
    code, out = run("show", str(ldir), "-d", "a", "--limit", "1")
    assert code == 0 and '"marker": "marker-0000"' in out
    # bad input: one line, non-zero
    bad = make_entry("a", 0)
    del bad["time"]
    code, out = run("append", str(ldir), "-", input=json.dumps(bad))
    assert code == 2 and out.strip() == (
        "error: entry 0: missing field 'time'; an entry needs type, domain, time, actor and body"
    )
    code, out = run("append", str(ldir), "-", input="{not json")
    assert code == 2 and "line 1 is not a JSON object" in out
    code, out = run("append", str(ldir), "-", "-d", "a", input=json.dumps(make_entry("b", 0)))
    assert code == 2 and "not 'a'" in out
    code, out = run("append", str(ldir), str(tmp_path / "missing.jsonl"))
    assert code == 2 and out.startswith("error: No such file")
    code, out = run("append", str(ldir), "-", input=json.dumps(make_entry("foo", 0)))
    assert code == 2
    assert out.strip() == (
        f"error: ledger dir {ldir} has no domain 'foo'; "
        f"create it with: twinedge ledger init {ldir} --domain foo"
    )


def test_unknown_dir_and_domain(tmp_path: Path, ldir: Path) -> None:
    code, out = run("show", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist; create it with: twinedge ledger init" in out
    code, out = run("show", str(ldir), "-d", "foo")
    assert code == 2 and out.strip() == (
        f"error: ledger dir {ldir} has no domain 'foo'; "
        f"create it with: twinedge ledger init {ldir} --domain foo"
    )


def test_a_folder_of_ledger_dirs_names_them(tmp_path: Path) -> None:
    """`twinedge run --ledger out/ledger` writes one ledger dir per policy combination;
    the folder above them is no ledger dir, and says which ones it holds."""
    runs = tmp_path / "ledger"
    for combo in ("greedy+never", "greedy+threshold"):
        assert run("init", str(runs / combo), "-d", "city-net")[0] == 0
    (runs / "notes").mkdir()  # a folder without logs is not named
    code, out = run("verify", str(runs))
    assert code == 2 and out.strip() == (
        f"error: ledger dir {runs} has no domains of its own but holds 2 ledger dirs "
        "(twinedge run --ledger writes one per policy combination): greedy+never, "
        f"greedy+threshold; name one of them, e.g. {runs / 'greedy+never'}"
    )
    code, out = run("verify", str(runs / "greedy+never"))
    assert code == 0, out
    for k in range(5):
        assert run("init", str(runs / f"more{k}"), "-d", "d")[0] == 0
    code, out = run("show", str(runs))
    assert code == 2 and "holds 7 ledger dirs" in out and ", more3 and 1 more;" in out
    # an empty folder: nothing to name, so how to make a ledger there
    (tmp_path / "empty").mkdir()
    code, out = run("show", str(tmp_path / "empty"))
    assert code == 2 and out.strip() == (
        f"error: ledger dir {tmp_path / 'empty'} has no domains (no DOMAIN/log.sqlite inside); "
        f"create one with: twinedge ledger init {tmp_path / 'empty'} --domain NAME"
    )


def test_checkpoint_prove_verify_audit(ldir: Path) -> None:
    entries = "\n".join(json.dumps(make_entry("a", i)) for i in range(13))
    assert run("append", str(ldir), "-", input=entries)[0] == 0
    code, out = run("checkpoint", str(ldir), "-d", "a")
    assert code == 0 and "signed a: size 13" in out
    code, out = run("checkpoint", str(ldir))
    assert code == 0 and "signed a: size 14" in out and "signed b: size 1" in out
    code, out = run("prove", str(ldir), "-d", "a", "--index", "5", "--json")
    assert code == 0
    p = json.loads(out)
    assert p["verified"] and p["size"] == 14
    assert merkle.verify_inclusion(
        bytes.fromhex(p["leaf_hash"]),
        5,
        14,
        [bytes.fromhex(h) for h in p["proof"]],
        bytes.fromhex(p["root"]),
    )
    code, out = run("prove", str(ldir), "-d", "a", "--old-size", "7", "--json")
    c = json.loads(out)
    assert code == 0 and c["verified"] and c["kind"] == "consistency"
    code, out = run("prove", str(ldir), "-d", "a", "-i", "3")
    assert code == 0 and "verified: True" in out
    for bad in (["-i", "99"], ["--old-size", "99"], [], ["-i", "1", "--old-size", "2"]):
        code, out = run("prove", str(ldir), "-d", "a", *bad)
        assert code == 2 and out.startswith("error: ")
    code, out = run("verify", str(ldir), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out = run("verify", str(ldir))
    assert code == 0 and "ok: a: 14 entries" in out
    code, out = run("verify", str(ldir), "--key", "garbage")
    assert code == 2 and "malformed" in out
    code, out = run("audit", str(ldir), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out = run("audit", str(ldir), "--checkpoint", str(ldir / "nope"))
    assert code == 2 and out.startswith("error: ")


def test_help_lists_every_command() -> None:
    code, out = run("--help")
    assert code == 0
    for cmd in ["init", "append", "checkpoint", "show", "prove", "verify", "audit", "settle"]:
        assert cmd in out


def test_damaged_log_is_one_line_error(ldir: Path) -> None:
    entries = "\n".join(json.dumps(make_entry("a", i)) for i in range(300))
    assert run("append", str(ldir), "-", input=entries)[0] == 0
    db = ldir / "a" / "log.sqlite"
    db.write_bytes(db.read_bytes()[:5000])
    for cmd in (["show", str(ldir)], ["prove", str(ldir), "-d", "a", "-i", "250"]):
        code, out = run(*cmd)
        assert code == 2 and out.startswith("error: ") and out.count("\n") == 1, out
    code, out = run("verify", str(ldir), "-d", "a")
    assert code == 1 and "first bad index" in out
