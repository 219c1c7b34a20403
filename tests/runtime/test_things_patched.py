"""Checking only what a merge patch touches is checking the whole twin: the same result,
the same first error (message and pointer), on random valid twins and random patches,
the invalid ones included; and the JSON Patch of a change is what it always was."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinedge.errors import InvalidInput
from twinedge.runtime import things
from twinedge.runtime.things import escape_token, json_equal, merge_patch

TID = "fleet:car-1"

# leaves, the refused ones included: NaN, ints outside 64 bits, NUL, a lone surrogate
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**63, -(2**63) - 1, float("nan"), float("inf"), "a\x00b", "\ud800"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_keys = st.sampled_from(["a", "b", "c", "x/y", "~k", "\ud800", "n\x00"])


def _values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
        max_leaves=max_leaves,
    )


def _deep(n: int) -> Any:
    v: Any = 1
    for _ in range(n):
        v = {"d": v}
    return v


_fids = st.sampled_from(["position", "battery", "f/x", "bad id?", "ok.1"])
_defs = st.sampled_from(["org.example:car:1.0", "car", None, 7, "https://example.org/x"])


def _feature() -> st.SearchStrategy[Any]:
    props = st.one_of(
        st.dictionaries(_keys, _values(), max_size=3),
        st.just([1]),
        st.integers(30, 33).map(_deep),
    )
    return st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "properties": props,
                "desiredProperties": props,
                "definition": st.sampled_from([["org.example:b:2.1"], [], ["x"], "y"]),
                "other": st.just(1),
            },
        ),
        st.none(),
        st.integers(0, 3),
    )


@st.composite
def patches(draw: st.DrawFn) -> dict[str, Any]:
    """A merge patch of a twin: mostly well-formed, sometimes not in every way."""
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["features"] = draw(
            st.one_of(st.dictionaries(_fids, _feature(), max_size=3), st.none(), st.just(5))
        )
    if draw(st.booleans()):
        out["attributes"] = draw(
            st.one_of(
                st.dictionaries(_keys, _values(), max_size=3),
                st.none(),
                st.just([]),
                st.integers(30, 33).map(lambda n: {"deep": _deep(n)}),
            )
        )
    for k, gen in (
        ("thingId", st.sampled_from([TID, "fleet:other", None])),
        ("policyId", st.sampled_from(["fleet:pol", "nope", None])),
        ("definition", _defs),
        ("color", st.sampled_from([1, None])),
    ):
        if draw(st.integers(0, 5)) == 0:
            out[k] = draw(gen)
    return out


@st.composite
def valid_twins(draw: st.DrawFn) -> dict[str, Any]:
    """A twin that :func:`things.validate_thing` accepts, as it returns it (a random one,
    or the empty twin when the random one is refused)."""
    base = {"thingId": TID, "attributes": {}, "features": {}}
    for _ in range(2):
        try:
            return things.validate_thing(merge_patch(base, draw(patches())), TID)
        except InvalidInput:
            continue
    return base


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except InvalidInput as e:
        return ("error", e.detail, e.pointer, e.extra)


_SLOW = [HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large]


@settings(max_examples=600, deadline=None, suppress_health_check=_SLOW)
@given(valid_twins(), patches())
def test_validate_patched_is_validate_thing_of_the_patched_twin(old, patch):
    new = merge_patch(old, patch)
    want = _outcome(things.validate_thing, new, TID)
    got = _outcome(things.validate_patched, new, patch, TID)
    assert got == want
    try:
        things.check_json(patch)
    except InvalidInput:
        return
    # a patch whose values were checked when it was read: the same without the walk
    assert _outcome(lambda: things.validate_patched(new, patch, TID, values_checked=True)) == want
    if want[0] == "ok":  # the same document, key order included
        assert list(got[1]) == list(want[1])


@settings(max_examples=300, deadline=None, suppress_health_check=_SLOW)
@given(valid_twins(), patches())
def test_a_merge_patch_adds_at_most_its_own_text(old, patch):
    """What lets the replica skip measuring a twin far below the size limit."""
    new = merge_patch(old, patch)
    try:
        new = things.validate_thing(new, TID)
    except InvalidInput:
        return

    def size(v: Any) -> int:
        return len(json.dumps(v, separators=(",", ":")))

    assert size(new) <= size(old) + size(patch)


def _json_patch_before(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """:func:`things.json_patch` as it was written first (every changed subtree compared
    whole before it was walked), the oracle of the faster one."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for k in old:
            if k not in new:
                ops.append({"op": "remove", "path": f"{path}/{escape_token(k)}"})
        for k, v in new.items():
            if k in old and old[k] is v:
                continue
            p = f"{path}/{escape_token(k)}"
            if k not in old:
                ops.append({"op": "add", "path": p, "value": v})
            elif not json_equal(old[k], v):
                ops.extend(_json_patch_before(old[k], v, p))
        return ops
    if json_equal(old, new):
        return []
    return [{"op": "replace", "path": path or "", "value": new}]


_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.0, 0.0]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(_plain, _plain, st.booleans())
def test_json_patch_gives_the_operations_it_always_gave(old, new, share):
    if share and isinstance(old, dict) and isinstance(new, dict):
        new = {**old, **new}  # shared subtrees, as a merge patch leaves them
    ops = things.json_patch(old, new)
    assert ops == _json_patch_before(old, new)
    assert json_equal(things.apply_json_patch(old, ops), new)


def test_validate_patched_by_hand():
    old = things.validate_thing(
        {"attributes": {"n": 1}, "features": {"a": {"properties": {"x": 1}}}}, TID
    )
    patch = {"features": {"b": {"properties": {"y": 2}}}}
    out = things.validate_patched(merge_patch(old, patch), patch, TID)
    assert out == {
        "thingId": TID,
        "attributes": {"n": 1},
        "features": {"a": {"properties": {"x": 1}}, "b": {"properties": {"y": 2}}},
    }
    bad = {"features": {"b": {"properties": {"s": "\ud800"}}}}
    try:
        things.validate_patched(merge_patch(old, bad), bad, TID)
    except InvalidInput as e:
        assert e.pointer == "/features/b/properties/s"
    else:  # pragma: no cover - the assertion is the test
        raise AssertionError("a lone surrogate was accepted")
