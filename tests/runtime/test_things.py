"""The twin document's pure functions: merge patch (RFC 7396), JSON Patch, delta."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.errors import InvalidInput, ServiceError
from twinedge.runtime import things

# RFC 7396, Appendix A: every example
RFC7396 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7396)
def test_merge_patch_rfc7396_appendix_a(target, patch, result):
    assert things.merge_patch(target, patch) == result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text("ab/~", max_size=3),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text("ab/~", max_size=3), c, max_size=4),
    max_leaves=12,
)


@given(
    st.dictionaries(st.text("ab/~", max_size=3), json_values, max_size=4),
    st.dictionaries(st.text("ab/~", max_size=3), json_values, max_size=4),
)
def test_json_patch_turns_old_into_new(old, new):
    ops = things.json_patch(old, new)
    assert things.apply_json_patch(old, ops) == new
    assert all(op["op"] in ("add", "remove", "replace") for op in ops)
    if things.json_equal(old, new):  # False == 0 in Python, not in JSON
        assert ops == []


def test_json_patch_paths_escape_rfc6901():
    ops = things.json_patch({"a/b": 1, "c~d": {"x": 1}}, {"a/b": 2, "c~d": {}})
    assert {"op": "replace", "path": "/a~1b", "value": 2} in ops
    assert {"op": "remove", "path": "/c~0d/x"} in ops
    assert things.split_path("/a~1b/c~0d") == ["a/b", "c~d"]


def test_delta_and_in_sync():
    thing = {
        "thingId": "f:car",
        "features": {
            "lamp": {
                "properties": {"on": False, "level": 3},
                "desiredProperties": {"on": True, "level": 3},
            },
            "door": {"properties": {"locked": True}, "desiredProperties": {"locked": True}},
            "hvac": {"properties": {"t": {"set": 20}}, "desiredProperties": {"t": {"set": 21}}},
        },
    }
    assert things.delta(thing) == {"lamp": {"on": True}, "hvac": {"t": {"set": 21}}}
    assert not things.in_sync(thing)
    thing["features"]["lamp"]["properties"]["on"] = True
    thing["features"]["hvac"]["properties"]["t"]["set"] = 21
    assert things.in_sync(thing)
    # 1 and 1.0 are equal numbers, True is not 1
    assert things.delta(
        {"features": {"x": {"properties": {"v": 1}, "desiredProperties": {"v": True}}}}
    ) == {"x": {"v": True}}


def test_validation_errors_say_where():
    with pytest.raises(InvalidInput) as e:
        things.validate_thing({"attributes": [], "features": {}}, "a:b")
    assert e.value.pointer == "/attributes"
    with pytest.raises(ServiceError, match="unknown top-level field 'colour'"):
        things.validate_thing({"colour": 1}, "a:b")
    with pytest.raises(ServiceError, match="does not match"):
        things.validate_thing({"thingId": "a:c"}, "a:b")
    with pytest.raises(ServiceError, match="unknown field 'props'") as e:
        things.validate_thing({"features": {"f": {"props": {}}}}, "a:b")
    assert e.value.pointer == "/features/f/props"
    with pytest.raises(ServiceError, match="namespace:name"):
        things.check_thing_id("no-namespace")
    deep: dict = {}
    cur = deep
    for _ in range(40):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(ServiceError, match="deeper than"):
        things.validate_thing({"attributes": deep}, "a:b")
