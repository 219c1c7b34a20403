"""The guarded reading of input files (twinedge.scenario.inputs) and the CSV readers."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.conftest import tiny_scenario
from twinedge.errors import InputError, ScenarioError
from twinedge.scenario import load_scenario
from twinedge.scenario.inputs import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    load_json,
    load_yaml,
    read_text,
)

LAUGHS = "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


def test_billion_laughs_is_refused_at_once(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny_scenario()) + LAUGHS.replace("a: &a", "x: &a"))
    assert len(f.read_bytes()) < 2000
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match="aliases expand the document") as e:
        load_scenario(f)
    assert time.perf_counter() - t0 < 2.0
    assert f"at most {MAX_ALIAS_NODES:,}" in str(e.value) and "387,420,489" not in str(e.value)


def test_a_few_aliases_are_fine_and_self_reference_is_refused():
    doc = load_yaml("d: &d {cpu_ghz: 1, mem_gb: 2}\na: [*d, *d]\n", "f.yaml")
    assert doc["a"] == [{"cpu_ghz": 1, "mem_gb": 2}] * 2
    with pytest.raises(InputError, match="refers to a node that contains it"):
        load_yaml("a: &a [1, *a]\n", "f.yaml")


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 10_000])
def test_nesting_is_bounded_in_yaml_and_json(levels):
    with pytest.raises(InputError, match="nested"):
        load_yaml("a: " + "[" * levels + "]" * levels, "f.yaml")
    with pytest.raises(InputError, match="nested"):
        load_json('{"a": ' + "[" * levels + "]" * levels + "}", "f.json")
    ok = MAX_DEPTH - 2
    assert load_yaml("a: " + "[" * ok + "]" * ok, "f.yaml")
    assert load_json('{"a": ' + "[" * ok + "]" * ok + "}", "f.json")


def test_aliases_cannot_nest_past_the_depth_limit():
    half = MAX_DEPTH // 2 + 2
    text = "a: &a " + "[" * half + "]" * half + "\nb: " + "[" * half + "*a" + "]" * half
    with pytest.raises(InputError, match="aliases nest"):
        load_yaml(text, "f.yaml")


def test_numbers():
    assert load_yaml("a: 1e9\nb: 5.0e6\nc: -2E-3\nd: 12\ne: e9\n", "f.yaml") == {
        "a": 1e9,
        "b": 5e6,
        "c": -2e-3,
        "d": 12,
        "e": "e9",
    }
    assert load_yaml("seed: " + "9" * 39, "f.yaml") == {"seed": int("9" * 39)}
    for text in ("a: 1e400", "a: .inf", "a: -.inf", "a: .nan", "a: [1, 1.0e+999]"):
        with pytest.raises(InputError, match="expected a finite number"):
            load_yaml(text, "f.yaml")
    with pytest.raises(InputError, match="5,000 digits"):
        load_yaml("a: " + "1" * 5000, "f.yaml")
    with pytest.raises(InputError, match="5,000 digits"):
        load_json("[" + "1" * 5000 + "]", "f.json")
    for text in ("[NaN]", "[Infinity]", "[-Infinity]", "[1e400]"):
        with pytest.raises(InputError, match="finite number"):
            load_json(text, "f.json")


def test_strings_with_nul_or_lone_surrogates_are_refused_where_they_are():
    with pytest.raises(InputError, match=r"f.yaml: a\[1\]: got 'x\\x00y' with a NUL"):
        load_yaml('a: [ok, "x\\0y"]', "f.yaml")
    with pytest.raises(InputError, match="b: got '\\\\ud800' with a lone surrogate"):
        load_json('{"b": "\\ud800"}', "f.json")
    with pytest.raises(InputError, match="got a key"):
        load_json('{"\\udfff": 1}', "f.json")


def test_read_text_refuses_big_and_non_utf8_files(tmp_path):
    f = tmp_path / "big.yaml"
    with open(f, "wb") as fh:
        fh.truncate(1 << 30)
    with pytest.raises(InputError, match="1,024 MiB; expected at most 64 MiB"):
        read_text(f)
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(
        InputError, match=r"line 1, column 10: got bytes b'\\xe9' that are not UTF-8"
    ):
        read_text(f)


def _with_csv(tmp_path, body: bytes) -> ScenarioError:
    (tmp_path / "p.csv").write_bytes(body)
    sc = tiny_scenario()
    del sc["entities"][0]["count"]
    sc["entities"][0]["positions_csv"] = "p.csv"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    from twinedge.engine import check_run

    with pytest.raises(ScenarioError) as e:
        check_run(load_scenario(f), str(f))
    return e.value


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"x_m,y_m\n1,2\nnan,3\n", "line 3: got 'nan','3'; expected two numbers"),
        (b"x_m,y_m\n1,inf\n", "line 2: got '1','inf'"),
        (b"x_m,y_m\n1,\xff\n", "is not UTF-8"),
        (b"x_m,y_m\n" + b'"' + b"x" * 200_000 + b'",1\n', "field larger than field limit"),
    ],
)
def test_positions_csv_poisons(tmp_path, body, needle):
    err = _with_csv(tmp_path, body)
    assert len(err.problems) == 1 and needle in err.problems[0]


def test_trace_poisons(tmp_path):
    sc = tiny_scenario()
    del sc["entities"][0]["count"]
    sc["entities"][0]["mobility"] = {"model": "trace", "file": "t.csv"}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc))
    from twinedge.engine import check_run

    for body, needle in [
        (b"entity_id,t_s,x_m,y_m\na,0,1,nan\n", "line 2"),
        (b"entity_id,t_s,x_m,y_m\na,0,1,\xfe\n", "is not UTF-8"),
    ]:
        (tmp_path / "t.csv").write_bytes(body)
        with pytest.raises(ScenarioError, match=needle):
            check_run(load_scenario(f), str(f))
