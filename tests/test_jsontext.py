"""The compact JSON text the stores and edge logs write (twinedge.jsontext): the same
values as the standard library's text, NaN and Infinity refused, orjson's gaps filled."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.jsontext import dumps, dumps_bytes

STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# hypothesis' text has no lone surrogates: they have no UTF-8 (test_what_json_cannot_hold...)
no_floats_scalars = (
    st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.text()  # beyond 64 bits too
)


def json_values(scalars):
    return st.recursive(
        scalars,
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=30,
    )


values = json_values(no_floats_scalars | st.floats(allow_nan=False, allow_infinity=False))
no_floats = json_values(no_floats_scalars)


@given(values)
def test_reads_back_as_the_standard_librarys_text_does(v):
    text = dumps(v)
    assert json.loads(text) == json.loads(STDLIB(v))
    assert dumps_bytes(v) == text.encode()


@given(no_floats)
def test_without_floats_the_text_is_the_standard_librarys(v):
    # strings, integers (big ones through the fallback), nesting and key order: byte for byte
    assert dumps(v) == STDLIB(v)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "where",
    [
        lambda x: x,
        lambda x: {"features": {"f": {"properties": {"p": [1, None, x]}}}},
        lambda x: (None, {"a": x}),  # a tuple: written as an array
        lambda x: {1: x},  # a key that is not a string: the standard library's path
        lambda x: [2**70, x],  # a big integer: the standard library's path
    ],
)
def test_a_float_that_is_not_finite_is_refused_wherever_it_is(bad, where):
    with pytest.raises(ValueError, match="JSON has no NaN or Infinity"):
        dumps(where(bad))


def test_nulls_alone_are_written():
    assert dumps({"a": None, "b": [None, 0.5]}) == '{"a":null,"b":[null,0.5]}'


def test_what_orjson_does_not_write_the_standard_library_does():
    assert dumps({1: "one", "two": 2}) == '{"1":"one","two":2}'
    assert dumps([-(2**64), 2**64]) == "[-18446744073709551616,18446744073709551616]"


def test_what_json_cannot_hold_is_an_error():
    with pytest.raises(TypeError):
        dumps({"a": {1, 2}})
    with pytest.raises(UnicodeEncodeError):
        dumps("lone \ud800 surrogate")


def test_unicode_is_written_as_utf8_not_escaped():
    assert dumps_bytes({"name": "Zoë 東京"}) == '{"name":"Zoë 東京"}'.encode()
