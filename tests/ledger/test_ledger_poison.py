"""Poison matrix: bad user input to the two ledger input channels never gets a traceback.

Channels: the entries given to ``twinedge ledger append`` and the price table given to
``twinedge ledger settle --prices`` (run with ``--append``, so a half-done settlement
would show).  Every poison must give a non-zero exit, one readable ``error:`` line and
no traceback, within seconds, and leave the ledger exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.ledger.ledger_helpers import make_entry
from twinedge.ledger import LedgerDir
from twinedge.ledger.cli import app

runner = CliRunner()

GOOD = json.dumps(make_entry("a", 1))
GOOD_PRICES = (
    "currency: EUR\ntiers:\n  edge: {per_cpu_ghz_s: '0.001', per_mem_gb_s: '0.0005', "
    "per_migrated_gb: '0.05', per_kwh: '0.30'}\n"
)


def _entry_with(body_json: str, **top: str) -> str:
    fields = {
        "type": '"provenance"',
        "domain": '"a"',
        "time": "1.0",
        "actor": '"x"',
        "body": body_json,
        **top,
    }
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


# (name, file content); the entries file follows a valid first line, so a batch that is
# written before the poison is read would show as a changed ledger
ENTRY_POISONS: dict[str, bytes] = {
    "non_utf8": _entry_with('{"s":"\xff\xfe"}').encode("latin-1"),
    "deep_nesting": _entry_with("[" * 10_000 + "]" * 10_000).encode(),
    "deep_nesting_array": ("[" * 10_000 + "]" * 10_000).encode(),
    "huge_int": _entry_with('{"n":' + "9" * 5000 + "}").encode(),
    "huge_int_time": _entry_with("{}", time="1" + "0" * 5000).encode(),
    "float_1e400": _entry_with('{"x":1e400}').encode(),
    "time_1e400": _entry_with("{}", time="1e400").encode(),
    "nan": _entry_with('{"x":NaN}').encode(),
    "infinity": _entry_with("{}", time="Infinity").encode(),
    "lone_surrogate": _entry_with('{"s":"\\ud800"}').encode(),
    "lone_surrogate_domain": _entry_with("{}", domain='"\\ud800"').encode(),
    "lone_surrogate_key": _entry_with('{"\\udc00":1}').encode(),
    "nul_escaped": _entry_with('{"s":"a\\u0000b"}').encode(),
    "nul_raw": _entry_with('{"s":"a\x00b"}').encode(),
    "nul_actor": _entry_with("{}", actor='"\\u0000"').encode(),
    "huge_entry": _entry_with('{"s":"' + "x" * (2 << 20) + '"}').encode(),
}

# "billion laughs": 9 levels of 9 aliases each, 9**9 strings once expanded
_BOMB = (
    "[&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], "
    + ", ".join(
        f"&{n} [{','.join(['*' + p] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "]"
)

PRICE_POISONS: dict[str, tuple[str, bytes]] = {
    "non_utf8": (".yaml", GOOD_PRICES.replace("EUR", "E\xffR").encode("latin-1")),
    "deep_nesting": (".json", ("[" * 10_000 + "]" * 10_000).encode()),
    "deep_nesting_yaml": (".yaml", ("a: " + "[" * 10_000 + "]" * 10_000).encode()),
    "huge_int": (".yaml", GOOD_PRICES.replace("'0.30'", "1" + "0" * 5000).encode()),
    "huge_int_json": (
        ".json",
        json.dumps({"currency": "EUR", "tiers": {"edge": {"per_kwh": 0}}})
        .replace("0}", "1" + "0" * 5000 + "}")
        .encode(),
    ),
    "huge_decimal_string": (".yaml", GOOD_PRICES.replace("0.30", "1" + "0" * 5000).encode()),
    "float_1e400": (".yaml", GOOD_PRICES.replace("'0.30'", "1e400").encode()),
    "float_1e400_json": (
        ".json",
        b'{"currency":"EUR","tiers":{"edge":{"per_cpu_ghz_s":1e400,"per_mem_gb_s":0,'
        b'"per_migrated_gb":0,"per_kwh":0}}}',
    ),
    "nan": (".yaml", GOOD_PRICES.replace("'0.30'", ".nan").encode()),
    "infinity": (
        ".json",
        b'{"currency":"EUR","tiers":{"edge":{"per_cpu_ghz_s":Infinity,"per_mem_gb_s":0,'
        b'"per_migrated_gb":0,"per_kwh":0}}}',
    ),
    "lone_surrogate": (".yaml", GOOD_PRICES.replace("EUR", '"\\ud800"').encode()),
    "lone_surrogate_json": (
        ".json",
        GOOD_PRICES.replace("EUR", "x").encode()[:0]
        + b'{"currency":"\\ud800","tiers":{"edge":{"per_cpu_ghz_s":0,"per_mem_gb_s":0,'
        b'"per_migrated_gb":0,"per_kwh":0}}}',
    ),
    "nul_raw": (".yaml", GOOD_PRICES.replace("EUR", "E\x00R").encode()),
    "nul_escaped": (".yaml", GOOD_PRICES.replace("EUR", '"E\\0R"').encode()),
    "nul_tier_json": (
        ".json",
        b'{"currency":"EUR","tiers":{"ed\\u0000ge":{"per_cpu_ghz_s":0,"per_mem_gb_s":0,'
        b'"per_migrated_gb":0,"per_kwh":0}}}',
    ),
    "alias_bomb": (
        ".yaml",
        (
            "currency: EUR\ntiers:\n  edge: {per_cpu_ghz_s: '0', per_mem_gb_s: '0', "
            "per_migrated_gb: '0', per_kwh: " + _BOMB + "}\n"
        ).encode(),
    ),
    "alias_bomb_currency": (".yaml", ("currency: " + _BOMB + "\ntiers: {}\n").encode()),
    "recursive_alias": (".yaml", b"currency: &c [*c]\ntiers: {}\n"),
    "huge_size": (".yaml", GOOD_PRICES.encode() + b"#" + b"x" * (2 << 20) + b"\n"),
}


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "L"
    with LedgerDir.create(path, ["a", "b"]) as ld:
        ld.append_many([make_entry(d, i) for i in range(5) for d in "ab"])
        ld.checkpoint_all()
    return path


def _state(path: Path) -> str:
    """A digest of everything a command could change: every file of the ledger."""
    h = hashlib.sha256()
    with LedgerDir.open(path) as ld:
        for d in ld.domains:
            log = ld.log(d)
            h.update(f"{d} {log.size} {log.root().hex()}".encode())
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.endswith(("-wal", "-shm")):
            h.update(str(p.relative_to(path)).encode() + p.read_bytes())
    return h.hexdigest()


def _check(invoke: Callable[[], object], path: Path) -> None:
    before = _state(path) if path.is_dir() else None
    r = invoke()
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)  # type: ignore[attr-defined]
    out: str = r.output  # type: ignore[attr-defined]
    assert r.exit_code != 0, out  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out[:2000]
    assert lines[0].isprintable() and len(lines[0]) < 600, lines[0][:2000]
    if before is not None:
        assert _state(path) == before, "the ledger changed"


@pytest.mark.parametrize("name", sorted(ENTRY_POISONS))
def test_append_poison(name: str, ledger: Path, tmp_path: Path) -> None:
    f = tmp_path / "entries.jsonl"
    f.write_bytes(GOOD.encode() + b"\n" + ENTRY_POISONS[name] + b"\n")
    _check(lambda: runner.invoke(app, ["append", str(ledger), str(f)]), ledger)


@pytest.mark.parametrize("name", ["non_utf8", "deep_nesting_array", "lone_surrogate", "nan"])
def test_append_poison_on_stdin(name: str, ledger: Path) -> None:
    data = ENTRY_POISONS[name]
    _check(lambda: runner.invoke(app, ["append", str(ledger), "-"], input=data), ledger)


@pytest.mark.parametrize("name", sorted(PRICE_POISONS))
def test_price_poison(name: str, ledger: Path, tmp_path: Path) -> None:
    suffix, content = PRICE_POISONS[name]
    f = tmp_path / f"prices{suffix}"
    f.write_bytes(content)
    args = ["settle", str(ledger), "--prices", str(f), "--until", "10", "--append"]
    _check(lambda: runner.invoke(app, args), ledger)


def test_the_poisons_are_poisons_only_where_they_are(ledger: Path, tmp_path: Path) -> None:
    """The good line and the good price table alone are accepted (the matrix can fail)."""
    f = tmp_path / "prices.yaml"
    f.write_text(GOOD_PRICES)
    r = runner.invoke(app, ["settle", str(ledger), "--prices", str(f), "--until", "10"])
    assert r.exit_code == 0, r.output
    g = tmp_path / "entries.jsonl"
    g.write_text(GOOD + "\n")
    r = runner.invoke(app, ["append", str(ledger), str(g)])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("channel", ["append", "settle"])
def test_ledger_path_is_a_file(channel: str, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "ledger.txt"
    not_a_dir.write_text("x")
    f = tmp_path / "in"
    if channel == "append":
        f.write_text(GOOD)
        args = ["append", str(not_a_dir), str(f)]
    else:
        f.write_text(GOOD_PRICES)
        args = ["settle", str(not_a_dir), "--prices", str(f), "--until", "10"]
    _check(lambda: runner.invoke(app, args), not_a_dir)
    r = runner.invoke(app, args)
    assert "is a file, not a directory" in r.output


@pytest.mark.parametrize("channel", ["append", "settle"])
def test_input_path_is_a_directory(channel: str, ledger: Path, tmp_path: Path) -> None:
    d = tmp_path / "dir.yaml"
    d.mkdir()
    if channel == "append":
        args = ["append", str(ledger), str(d)]
    else:
        args = ["settle", str(ledger), "--prices", str(d), "--until", "10", "--append"]
    _check(lambda: runner.invoke(app, args), ledger)


def test_domain_dir_that_is_a_file(ledger: Path, tmp_path: Path) -> None:
    (ledger / "c").write_text("not a domain")
    f = tmp_path / "e.jsonl"
    f.write_text(json.dumps(make_entry("c", 0)))
    _check(lambda: runner.invoke(app, ["append", str(ledger), str(f)]), ledger)


def test_huge_input_is_refused_before_reading_it(
    ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twinedge.ledger import cli

    monkeypatch.setattr(cli, "MAX_INPUT_BYTES", 1000)
    f = tmp_path / "e.jsonl"
    f.write_text("\n".join([GOOD] * 50))
    _check(lambda: runner.invoke(app, ["append", str(ledger), str(f)]), ledger)
    _check(lambda: runner.invoke(app, ["append", str(ledger), "-"], input=f.read_text()), ledger)


def test_valid_batch_then_bad_line_writes_nothing(ledger: Path, tmp_path: Path) -> None:
    """Many valid entries (more than a write batch used to hold), then a bad one."""
    n = 10_005
    f = tmp_path / "e.jsonl"
    f.write_text("\n".join([json.dumps(make_entry("a", i)) for i in range(n)] + ["{bad"]))
    _check(lambda: runner.invoke(app, ["append", str(ledger), str(f)]), ledger)
