"""RQL: the parser (trees and error messages that point at the character) and the Python
evaluation's type-aware semantics. SQL equivalence is tested in tests/runtime/store."""

from __future__ import annotations

import pytest

from twinedge.errors import InvalidInput, ServiceError
from twinedge.runtime import rql
from twinedge.runtime.api.problems import problem_of
from twinedge.runtime.rql import And, Compare, Exists, In, Like, Not, Or, Within

THING = {
    "thingId": "fleet:car-7",
    "attributes": {
        "kind": "vehicle",
        "n": 7,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "tags": ["a"],
        "a/b": 1,
    },
    "features": {
        "battery": {"properties": {"level": 42}},
        "location": {"properties": {"x": 100.0, "y": 200}},
    },
    "_revision": 3,
    "_created": "2024-01-01T00:00:00Z",
    "_modified": "2024-01-02T00:00:00Z",
    "_domain": "fleet-op",
    "_host": None,
}


def test_parse_builds_the_tree():
    node = rql.parse(
        'and(eq(attributes/kind,"vehicle"), or(gt(features/battery/properties/level, 20),'
        ' not(exists(attributes/x))), in(_domain,"a","b"), like(thingId,"fleet:*"),'
        " within(features/location/properties, circle(100,200,50)))"
    )
    assert node == And(
        (
            Compare("eq", ("attributes", "kind"), "vehicle"),
            Or(
                (
                    Compare("gt", ("features", "battery", "properties", "level"), 20),
                    Not(Exists(("attributes", "x"))),
                )
            ),
            In(("_domain",), ("a", "b")),
            Like(("thingId",), "fleet:*"),
            Within(("features", "location", "properties"), 100.0, 200.0, 50.0),
        )
    )


def test_values_and_paths():
    assert rql.parse('eq(/attributes/a~1b,"\\u00e9\\n")') == Compare(
        "eq", ("attributes", "a/b"), "é\n"
    )
    assert rql.parse("eq(a,-1.5e2)").value == -150.0
    assert rql.parse("eq(a,null)").value is None
    assert rql.parse("ne(a,false)") == Compare("ne", ("a",), False)
    assert rql.parse("  eq ( a , true )  ") == Compare("eq", ("a",), True)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("eq(attributes/kind,)", "unexpected ')' at column 20: expected a value", 20),
        ("and(eq(attributes/x,1),foo(a))", "unknown operator 'foo' at column 24", 24),
        ("eq(attributes/x,1", "unexpected end of filter at column 18: expected ')'", 18),
        ('eq(attributes/x,"abc)', "bad value at column 17: Unterminated string", 17),
        ("eq(a,1) x", "unexpected 'x' at column 9: expected the end of the filter", 9),
        ("gt(a,true)", "gt at column 6 compares with a number or a string", 6),
        ("like(a,5)", "like at column 8 needs a string pattern", 8),
        ("eq(a//b,1)", "empty segment in the path at column 6", 6),
        ("eq(a~2,1)", "'~' at column 5 must be followed by 0 or 1", 5),
        ("within(p,circle(1,2))", "unexpected ')' at column 20: expected ','", 20),
        ("within(p,circle(1,2,-3))", "a radius 0 <= r <= 1e15", 10),
        ("within(p,box(1,2,3))", "unexpected 'b' at column 10: expected circle(x,y,r)", 10),
        ("not(eq(a,1),eq(b,2))", "expected ')' to close not(", 12),
        ("eq(a,NaN)", "unexpected 'N' at column 6: expected a value", 6),
        ("eq(a,1e999)", "out of range", 6),
        ("", "unexpected end of filter at column 1: expected an operator", 1),
        ("eq(a,[1])", "unexpected '[' at column 6", 6),
        ("and()", "unexpected ')' at column 5: expected an operator", 5),
    ],
)
def test_errors_point_at_the_character(text, message, column):
    with pytest.raises(InvalidInput) as e:
        rql.parse(text)
    err = e.value
    assert message in err.detail
    assert err.extra["column"] == column
    lines = err.detail.split("\n")
    assert lines[1] == "  " + text and lines[2] == "  " + " " * (column - 1) + "^"


def test_error_json_is_a_problem():
    with pytest.raises(InvalidInput) as e:
        rql.parse("eq(a,")
    doc = problem_of(e.value).to_json()
    assert doc["status"] == 400 and doc["column"] == 6 and doc["pointer"] == "/filter"


def test_deep_nesting_is_refused_cleanly():
    text = "not(" * 100 + "exists(a)" + ")" * 100
    with pytest.raises(ServiceError, match="nests deeper than 64"):
        rql.parse(text)


def ev(text: str, thing: dict = THING) -> bool:
    return rql.evaluate(rql.parse(text), thing)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('eq(attributes/kind,"vehicle")', True),
        ("eq(attributes/n,7)", True),
        ("eq(attributes/n,7.0)", True),
        ('eq(attributes/n,"7")', False),  # typed: a string never equals a number
        ("eq(attributes/ok,true)", True),
        ("eq(attributes/ok,1)", False),  # nor a bool a number
        ("eq(attributes/none,null)", True),
        ("eq(attributes/missing,null)", False),
        ("eq(attributes/tags,null)", False),  # arrays are opaque
        ("eq(attributes,null)", False),
        ("ne(attributes/n,8)", True),
        ('ne(attributes/n,"7")', True),
        ("ne(attributes/missing,1)", False),  # missing -> false
        ("not(eq(attributes/missing,1))", True),  # except under not
        ("gt(features/battery/properties/level,41.5)", True),
        ("ge(features/battery/properties/level,42)", True),
        ("lt(features/battery/properties/level,42)", False),
        ("le(features/battery/properties/level,42)", True),
        ('gt(attributes/kind,"van")', True),
        ('lt(attributes/kind,"w")', True),
        ('gt(attributes/n,"1")', False),  # a number never compares with a string
        ("gt(attributes/kind,1)", False),
        ("gt(attributes/ok,0)", False),
        ('in(attributes/kind,"car","vehicle")', True),
        ('in(attributes/n,"7",true)', False),
        ("in(attributes/n,1,7)", True),
        ('like(attributes/kind,"veh*")', True),
        ('like(attributes/kind,"v?hicle")', True),
        ('like(attributes/kind,"V*")', False),  # case-sensitive
        ('like(attributes/kind,"veh")', False),  # the whole string
        ('like(attributes/n,"*")', False),
        ('like(thingId,"fleet:car-?")', True),
        ('ilike(attributes/kind,"VEH*")', True),  # ilike ignores the case of A-Z
        ('ilike(attributes/kind,"v?HICLE")', True),
        ('ilike(attributes/kind,"veh")', False),  # still the whole string
        ('ilike(attributes/n,"*")', False),  # strings only
        ('ilike(thingId,"FLEET:*")', True),
        ("exists(attributes/none)", True),
        ("exists(attributes/tags)", True),
        ("exists(attributes/tags/0)", False),
        ("exists(attributes/a~1b)", True),
        ("exists(features/location)", True),
        ("within(features/location/properties,circle(100,200,0))", True),
        ("within(features/location/properties,circle(130,240,50))", True),
        ("within(features/location/properties,circle(130,240,49.99))", False),
        ("within(features/battery/properties,circle(0,0,1e9))", False),
        ("within(attributes/kind,circle(0,0,1e9))", False),
        ("eq(_revision,3)", True),
        ('eq(_domain,"fleet-op")', True),
        ("eq(_host,null)", True),
        ('gt(_modified,"2024-01-01")', True),
        ('eq(thingId/x,"a")', False),
        ("and(eq(attributes/n,7),not(eq(attributes/n,8)))", True),
        ("or(eq(attributes/n,8),eq(attributes/n,9))", False),
    ],
)
def test_evaluate(text, expected):
    assert ev(text) is expected


def test_like_escapes():
    thing = {"a": "x*y?z\\"}
    assert ev('like(a,"x\\\\*y\\\\?z\\\\\\\\")', thing)  # RQL text: like(a,"x\\*y\\?z\\\\")
    assert not ev('like(a,"x\\\\*q*")', thing)
    assert ev('like(a,"x*")', thing)


@pytest.mark.parametrize("path", ["a\x00b", "\x00", "attributes/\ud800", "x/\udfff/y"])
def test_paths_with_nul_or_lone_surrogates_are_refused(path: str):
    with pytest.raises(InvalidInput) as e:
        rql.parse_path(path, "/sort")
    assert e.value.pointer == "/sort"
    with pytest.raises(ServiceError):
        rql.parse(f"exists({path})")


def test_paths_have_at_most_64_segments():
    assert len(rql.parse_path("/".join(["a"] * 64))) == 64
    with pytest.raises(ServiceError, match="at most 64"):
        rql.parse_path("/".join(["a"] * 65), "/sort")
    with pytest.raises(ServiceError, match="at most 64"):
        rql.parse("exists(" + "/".join(["a"] * 10_000) + ")")
