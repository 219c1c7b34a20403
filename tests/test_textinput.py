"""The one reader of untrusted text (twinedge.textinput): each poison gives its message."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

import pytest

from twinedge import textinput
from twinedge.textinput import INT64, Limits, TextInputError, check_text, check_value, loads

STRICT = Limits(max_depth=8, max_int_digits=19, int_range=INT64, max_alias_nodes=50)
YAML = replace(STRICT, json_only=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"a": "\xff"}', r"line 1, column 8: got bytes b'\\xff' that are not UTF-8"),
        (b'"\xed\xa0\x80"', "not UTF-8"),  # a surrogate written as raw bytes
        ('{"a": "\\ud800"}', r"got '\\ud800' with a lone surrogate \(\\ud800\) at position 0"),
        ('{"\\udc00": 1}', "got a key '\\\\udc00' with a lone surrogate"),
        ('["a\\u0000b"]', r"got 'a\\x00b' with a NUL character \(\\u0000\) at position 1"),
        ("[NaN]", "got NaN; expected a finite number"),
        ("-Infinity", "got -Infinity; expected a finite number"),
        ("[1e400]", "got 1e400, too large to be a finite number"),
        ("[" + "9" * 5000 + "]", "got an integer of 5,000 digits; expected at most 19"),
        ("9223372036854775808", "got an integer outside the signed 64-bit range"),
        ("[" * 9 + "]" * 9, "nested more than 8 levels deep; expected at most 8"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply; expected at most 8 levels"),
        ('{"a": 1,}', "line 1 column 9: got invalid JSON"),
        # a finite number whose literal is longer than max_number_chars (400)
        ("[0." + "1" * 500 + "]", "got a number of 502 characters; expected at most 400"),
        ('{"x": [1, 0.' + "5" * 450 + "]}", "got a number of 452 characters"),
    ],
)
def test_json_poisons(text: str | bytes, message: str) -> None:
    with pytest.raises(TextInputError, match=message):
        loads(text, STRICT)


def test_json_limits_are_parameters() -> None:
    assert loads("[9223372036854775807, -9223372036854775808]", STRICT) == [2**63 - 1, -(2**63)]
    assert loads("12345678901234567890123", Limits()) == 12345678901234567890123
    assert loads("[0.1]", replace(STRICT, parse_float=Decimal)) == [Decimal("0.1")]
    with pytest.raises(TextInputError, match="outside ±1"):
        loads("2", replace(STRICT, int_range=(-1, 1), int_range_name="±1"))
    deep = "[" * 200 + "]" * 200
    assert loads(deep, replace(STRICT, max_depth=None)) is not None


def test_errors_locate_the_value() -> None:
    with pytest.raises(TextInputError) as e:
        loads('{"a": [1, {"b/c": "\\u0000"}]}', STRICT)
    assert e.value.path == ("a", 1, "b/c") and e.value.pointer == "/a/1/b~1c"
    assert e.value.where() == "a[1].b/c"
    with pytest.raises(TextInputError) as e:
        check_value({"x": float("inf")}, STRICT, base="/attributes")
    assert e.value.pointer == "/attributes/x"
    with pytest.raises(TextInputError) as e:
        loads('{"a":\n  oops}', STRICT)
    assert (e.value.line, e.value.column, e.value.pointer) == (2, 3, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2**64, "outside the signed 64-bit range"),
        (float("nan"), "got nan; expected a finite number"),
        (Decimal("Infinity"), "got Infinity; expected a finite number"),
        ({1: "x"}, "object keys must be strings, got 1"),
        (object(), "object is not a JSON value"),
        ({"k\ud800": 1}, "got a key"),
    ],
)
def test_value_poisons(value: object, message: str) -> None:
    with pytest.raises(TextInputError, match=message):
        check_value(value, STRICT)


def test_check_text_names_what() -> None:
    assert check_text("ok", "the filter") == "ok"
    with pytest.raises(TextInputError, match="got the filter 'a\\\\x00' with a NUL"):
        check_text("a\x00", "the filter")


LAUGHS = "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, c in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1, *a]\n", "line 1, column 11: alias \\*a refers to a node that contains it"),
        ("a: " + "[" * 9 + "]" * 9, "line 1, column 11: nested more than 8 levels deep"),
        ("a: " + "[" * 10_000 + "]" * 10_000, "nested more than 8 levels"),
        ("a: 1" + "0" * 19, "line 1, column 4: got an integer of 20 digits; expected at most 19"),
        ("a: .inf", "a: got inf|got inf; expected a finite number"),
        ('a: "x\\0y"', "got 'x\\\\x00y' with a NUL character"),
        ('a: "\\ud800"', "with a lone surrogate"),
        ("a: x\x00y", "not valid YAML \\(character '\\\\x00' is not allowed in YAML\\)"),
        ("a: [1, 2", "not valid YAML"),
        ("a: 2020-13-45", "got a value that cannot be read"),
    ],
)
def test_yaml_poisons(text: str, message: str) -> None:
    with pytest.raises(TextInputError, match=message):
        textinput.load_yaml(text, YAML)


def test_billion_laughs_is_refused_at_once() -> None:
    t0 = time.perf_counter()
    with pytest.raises(TextInputError, match=r"aliases expand the document from .* add at most 50"):
        textinput.load_yaml(LAUGHS, Limits(json_only=False, max_alias_nodes=50))
    assert time.perf_counter() - t0 < 2.0
    doc = textinput.load_yaml("a: &a [1, 2]\nb: [*a, *a]\n", YAML)
    assert doc == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_aliases_cannot_nest_past_the_depth_limit() -> None:
    text = "a: &a [[[[[1]]]]]\nb: [[[[*a]]]]\n"
    with pytest.raises(TextInputError, match="aliases nest the document 10 levels deep"):
        textinput.load_yaml(text, YAML)


def test_yaml_exponent_numbers_are_an_option() -> None:
    assert textinput.load_yaml("a: 1e9", YAML) == {"a": "1e9"}  # YAML 1.1
    assert textinput.load_yaml("a: 1e9", replace(YAML, yaml12_exponents=True)) == {"a": 1e9}


def test_read_text_bounds_the_size(tmp_path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"x" * 2049)
    with pytest.raises(TextInputError, match="got a file of 2,049 bytes; expected at most 2,048"):
        textinput.read_text(f, 2048)
    assert textinput.read_text(f, 4096) == "x" * 2049
    with pytest.raises(OSError):
        textinput.read_text(tmp_path / "missing", 10)


@pytest.mark.parametrize("levels", [8, 9])
def test_json_and_yaml_count_levels_alike(levels: int) -> None:
    text = "[" * levels + "]" * levels
    if levels <= 8:
        assert loads(text, STRICT) == textinput.load_yaml(text, YAML)
        return
    with pytest.raises(TextInputError, match="nested more than 8"):
        loads(text, STRICT)
    with pytest.raises(TextInputError, match="nested more than 8"):
        textinput.load_yaml(text, YAML)
