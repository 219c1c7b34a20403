"""The poison matrix: every hostile input on every file channel gets one clear line.

Channels: the serve configuration file (``twinedge serve --config``), a scenario file
(``twinedge scenario validate``, ``twinedge run`` and ``twinedge scenario show``) and a placement instance file
(``twinedge place``). Every poison is answered through the real command with exactly one
``error: ...`` line naming the file, a non-zero exit and never a traceback.

Defined behaviour where a poison is representable but legal-looking:

- a NUL or a lone surrogate written as an *escape* inside a quoted string parses to a
  string; twinedge refuses such strings in every input file (no name, path or URL needs
  them, and they break file paths, terminals and the UTF-8 outputs downstream);
- a raw NUL byte is not allowed in YAML at all (the YAML reader refuses it) and not inside
  a JSON string (JSON requires control characters to be escaped);
- ``1e400`` is a string in YAML 1.1 (a float needs a dot and a signed exponent); twinedge
  reads exponent numbers as YAML 1.2 does, so ``1e400`` and ``1.0e+400`` are both infinity
  and ``count: 1e9`` is a count of a billion;
- JSON has no aliases: a billion-laughs YAML given as an instance is not valid JSON.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_scenario

DEEP = 10_000
DIGITS = "9" * 5000

LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twinedge(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "twinedge", *map(str, args)],
        capture_output=True,
        timeout=timeout,
    )


# -- serve configuration --------------------------------------------------------------

SERVE_POISONS: dict[str, tuple[bytes, str]] = {
    "surrogate-escaped": (b'log_level: "\\ud800"\n', "surrogate"),
    "surrogate-raw": (b'log_level: "\xed\xa0\x80"\n', "not UTF-8"),
    "nul-escaped": (b'host: "127.0.0.1\\0"\n', "NUL"),
    "nul-raw": (b"host: 127.0.0.1\x00\n", "not valid YAML"),
    "1e400": (b"retention_s: 1.0e+400\n", "retention_s"),
    "1e400-plain": (b"retention_s: 1e400\n", "retention_s"),
    "digits": (b"batch_max: " + DIGITS.encode() + b"\n", "digits"),
    "deep": (b"batch_max: " + b"[" * DEEP + b"]" * DEEP + b"\n", "nested"),
    "non-utf8": (b"host: \xff\xfe\n", "not UTF-8"),
    "nan": (b"retention_s: .nan\n", "retention_s"),
    "infinity": (b"retention_s: .inf\n", "retention_s"),
    "huge-batch": (b"batch_max: 1e9\n", "batch_max"),
    "laughs": (LAUGHS.encode(), "alias"),
    "retention-abc": (b"retention_s: abc\n", "retention_s: got 'abc'"),
    "batch-abc": (b"batch_max: abc\n", "batch_max: got 'abc'"),
    "huge-file": (b"", "MiB"),  # written as a sparse file beyond the size limit
}


@pytest.mark.parametrize("poison", sorted(SERVE_POISONS))
def test_serve_config_poisons(tmp_path, poison):
    body, needle = SERVE_POISONS[poison]
    data = tmp_path / "data"
    head = f"mqtt: none\nport: {free_port()}\ndata_dir: {data}\n".encode()
    f = tmp_path / "serve.yaml"
    f.write_bytes(head + body)
    if poison == "huge-file":
        with open(f, "r+b") as fh:
            fh.truncate(1 << 30)  # 1 GiB of holes: no disk used, never read
    p = twinedge("serve", "--config", f, timeout=60)
    assert_one_line(p, needle, f)
    assert not data.exists()  # nothing started: the store was never opened


# -- scenario files ----------------------------------------------------------------------


def scenario_yaml() -> str:
    return yaml.safe_dump(tiny_scenario(), sort_keys=False)


def with_line(old: str, new: str | bytes) -> bytes:
    text = scenario_yaml().encode()
    assert old.encode() in text, old
    return text.replace(old.encode(), new if isinstance(new, bytes) else new.encode(), 1)


SCENARIO_POISONS: dict[str, tuple[bytes, str]] = {
    "surrogate-escaped": (with_line("name: tiny", 'name: "\\ud800"'), "surrogate"),
    "surrogate-raw": (with_line("name: tiny", b'name: "\xed\xa0\x80"'), "not UTF-8"),
    "nul-escaped": (with_line("name: tiny", 'name: "ti\\0ny"'), "NUL"),
    "nul-raw": (with_line("name: tiny", "name: ti\x00ny"), "not valid YAML"),
    "1e400": (with_line("step_s: 1.0", "step_s: 1.0e+400"), "run.step_s"),
    "1e400-plain": (with_line("step_s: 1.0", "step_s: 1e400"), "run.step_s"),
    "digits": (with_line("steps: 3", "steps: " + DIGITS), "digits"),
    "deep": (with_line("name: tiny", "name: " + "[" * DEEP + "]" * DEEP), "nested"),
    "non-utf8": (with_line("name: tiny", b"name: ti\xffny"), "not UTF-8"),
    "nan": (with_line("x_m: 500", "x_m: .nan"), "x_m"),
    "infinity": (with_line("step_s: 1.0", "step_s: .inf"), "run.step_s"),
    "huge-count": (with_line("count: 1", "count: 1e9"), "memory"),
    "huge-steps": (with_line("steps: 3", "steps: 1e12"), "memory"),
    "huge-area": (with_line("- 1000\n- 1000", "- .inf\n- .inf"), "area_m"),
    "infinite-speed": (
        with_line("model: static", "model: random_waypoint\n    speed_mps: [1.0, .inf]"),
        "speed_mps[1]: got inf",
    ),
    "infinite-mean-speed": (
        with_line("model: static", "model: gauss_markov\n    mean_speed_mps: .inf"),
        "mean_speed_mps: got inf",
    ),
    "laughs": (scenario_yaml().encode() + LAUGHS.replace("a: &a", "x: &a").encode(), "alias"),
    "code": (with_line("placement: nearest", "placement: os:system"), "import path"),
}


@pytest.mark.parametrize("command", ["validate", "run", "show"])
@pytest.mark.parametrize("poison", sorted(SCENARIO_POISONS))
def test_scenario_file_poisons(tmp_path, poison, command):
    f = tmp_path / "s.yaml"
    f.write_bytes(SCENARIO_POISONS[poison][0])
    args = {
        "validate": ["scenario", "validate", f],
        "run": ["run", f, "--out", tmp_path],
        "show": ["scenario", "show", f],
    }[command]
    p = twinedge(*args)
    assert_one_line(p, SCENARIO_POISONS[poison][1], f)


# -- placement instance files ---------------------------------------------------------


def instance(**over) -> dict:
    inst = {
        "latency_ms": [[1, 2], [1, 4]],
        "demand": {"cpu_ghz": [1, 1], "mem_gb": [1, 1]},
        "capacity": {"cpu_ghz": [2, 2], "mem_gb": [8, 8]},
    }
    inst.update(over)
    return inst


def inst_text(**over) -> str:
    return json.dumps(instance(**over))


INSTANCE_POISONS: dict[str, tuple[bytes, str]] = {
    "surrogate-escaped": (b'{"\\ud800": 1, ' + inst_text()[1:].encode(), "surrogate"),
    "surrogate-raw": (b'{"\xed\xa0\x80": 1, ' + inst_text()[1:].encode(), "not UTF-8"),
    "nul-escaped": (b'{"a\\u0000b": 1, ' + inst_text()[1:].encode(), "NUL"),
    "nul-raw": (b'{"a\x00b": 1, ' + inst_text()[1:].encode(), "invalid JSON"),
    "1e400": (inst_text(latency_ms=[["@", 2], [1, 4]]).replace('"@"', "1e400").encode(), "1e400"),
    "digits": (
        inst_text(latency_ms=[["@", 2], [1, 4]]).replace('"@"', DIGITS).encode(),
        "digits",
    ),
    "deep": (inst_text(latency_ms="@").replace('"@"', "[" * DEEP + "]" * DEEP).encode(), "nested"),
    "non-utf8": (b'{"\xff": 1, ' + inst_text()[1:].encode(), "not UTF-8"),
    "nan": (inst_text(latency_ms=[["@", 2], [1, 4]]).replace('"@"', "NaN").encode(), "NaN"),
    "infinity": (
        inst_text(latency_ms=[["@", 2], [1, 4]]).replace('"@"', "-Infinity").encode(),
        "Infinity",
    ),
    "huge-file": (b"", "MiB"),  # written as a sparse file beyond the size limit
    "laughs": (LAUGHS.encode(), "invalid JSON"),
}


@pytest.mark.parametrize("poison", sorted(INSTANCE_POISONS))
def test_placement_instance_poisons(tmp_path, poison):
    body, needle = INSTANCE_POISONS[poison]
    f = tmp_path / "i.json"
    f.write_bytes(body)
    if poison == "huge-file":
        with open(f, "wb") as fh:
            fh.truncate(1 << 30)  # 1 GiB of holes: no disk used, never read
    p = twinedge("place", f)
    assert_one_line(p, needle, f)


def assert_one_line(p: subprocess.CompletedProcess, needle: str, path: Path) -> None:
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert str(path) in lines[0], err
    assert needle.lower() in lines[0].lower(), err
