"""Both stores: every RQL operator in SQL agrees with the Python evaluation, sort and
cursor paging, scope and grants, count, aggregate, projections and bad input."""

from __future__ import annotations

import functools

import pytest

from twinedge.errors import InvalidInput, ServiceError
from twinedge.runtime import rql
from twinedge.runtime.store import Grant, Scope, SearchQuery
from twinedge.runtime.things import get_path, split_path

ALL = Scope(None)

BODIES = {
    "fleet:car-1": {
        "attributes": {
            "kind": "vehicle",
            "n": 1,
            "ok": True,
            "none": None,
            "tags": ["x"],
            "name": "Émile",
        },
        "features": {
            "battery": {"properties": {"level": 80}},
            "location": {"properties": {"x": 100, "y": 200}},
        },
    },
    "fleet:car-2": {
        "attributes": {"kind": "vehicle", "n": 2.5, "ok": False, "name": "zed*?"},
        "features": {
            "battery": {"properties": {"level": 15}},
            "location": {"properties": {"x": 130, "y": 240}},
        },
    },
    "fleet:bike-1": {
        "attributes": {"kind": "bike", "n": "2", "ok": 1, "name": "a_b%c"},
        "features": {"location": {"properties": {"x": -50, "y": 0.5}}},
    },
    "robots:r-1": {
        "attributes": {"kind": "robot", "n": None, "ok": "true", "a/b": {"c": 1}},
        "features": {
            "battery": {"properties": {"level": 15.0}},
            "location": {"properties": {"x": "100", "y": 200}},
        },
    },
    "robots:r-2": {"attributes": {"kind": ["robot"], "n": {"v": 1}}, "features": {}},
    # strings longer than PostgreSQL's indexed prefix (and than a B-tree entry may be)
    "robots:r-3": {"attributes": {"name": "x" * 300 + "b", "huge": "y" * 5000}},
}
LONG = "x" * 300

FILTERS = [
    'eq(attributes/kind,"vehicle")',
    "eq(attributes/n,1)",
    "eq(attributes/n,2.5)",
    'eq(attributes/n,"2")',
    "eq(attributes/n,null)",
    "eq(attributes/ok,true)",
    "eq(attributes/ok,false)",
    "eq(attributes/ok,1)",
    'eq(attributes/ok,"true")',
    "eq(attributes/none,null)",
    'eq(attributes/kind,"robot")',
    "eq(attributes/tags,null)",
    'ne(attributes/kind,"vehicle")',
    "ne(attributes/n,1)",
    "ne(attributes/missing,1)",
    "not(eq(attributes/n,1))",
    "not(exists(features/battery))",
    "gt(features/battery/properties/level,15)",
    "ge(features/battery/properties/level,15)",
    "lt(features/battery/properties/level,80)",
    "le(features/battery/properties/level,15)",
    'gt(attributes/name,"a")',
    'lt(attributes/name,"zed")',
    'ge(attributes/name,"Émile")',
    'gt(attributes/n,"1")',
    "gt(attributes/n,1)",
    'in(attributes/kind,"bike","robot")',
    'in(attributes/n,1,"2",null)',
    "in(attributes/ok,true,false)",
    'like(attributes/name,"*e")',
    'like(attributes/name,"zed\\\\*\\\\?")',
    'like(attributes/name,"zed??")',
    'like(attributes/name,"a_b%c")',
    'like(attributes/name,"a?b?c")',
    'like(attributes/name,"?mile")',
    'like(attributes/kind,"*")',
    'like(thingId,"fleet:*")',
    'like(thingId,"*-1")',
    'ilike(attributes/name,"ÉMILE")',  # only A-Z fold: É stays É, é stays é
    'ilike(attributes/name,"émile")',
    'ilike(attributes/name,"*E")',
    'ilike(attributes/kind,"ROB*")',
    'ilike(thingId,"FLEET:*")',
    'ilike(_created,"19*")',
    "exists(attributes/none)",
    "exists(attributes/tags)",
    "exists(attributes/a~1b/c)",
    "exists(features/location)",
    "within(features/location/properties,circle(100,200,0))",
    "within(features/location/properties,circle(130,240,50))",
    "within(features/location/properties,circle(130,240,49.99))",
    "within(features/location/properties,circle(0,0,100000))",
    'eq(thingId,"fleet:car-1")',
    'gt(thingId,"fleet:car")',
    'in(thingId,"robots:r-2","nope")',
    'eq(_domain,"d")',
    "eq(_revision,1)",
    "gt(_revision,0.5)",
    "le(_revision,1.5)",
    "lt(_revision,1)",
    'eq(_revision,"1")',
    "eq(_host,null)",
    'ne(_host,"h")',
    'gt(_modified,"2000")',
    'like(_created,"19*")',
    "exists(_host)",
    'eq(_domain/x,"d")',
    'and(eq(attributes/kind,"vehicle"),gt(features/battery/properties/level,50))',
    'or(eq(attributes/kind,"bike"),lt(features/battery/properties/level,20))',
    'not(or(eq(attributes/kind,"bike"),not(exists(attributes/ok))))',
    f'eq(attributes/name,"{LONG}b")',
    f'eq(attributes/name,"{LONG}")',
    f'gt(attributes/name,"{LONG}a")',
    f'lt(attributes/name,"{LONG}c")',
    f'in(attributes/name,"{LONG}b","a_b%c")',
    f'like(attributes/name,"{LONG}*")',
    f'eq(attributes/huge,"{"y" * 5000}")',
]


@pytest.fixture
def loaded(store, twins):
    store.commit([twins.put(tid, body) for tid, body in BODIES.items()])
    return store, twins


def ids(store, flt=None, scope=ALL, **kw):
    return [d["thingId"] for d in store.search(SearchQuery(flt, scope, limit=1000, **kw)).items]


def test_every_operator_matches_the_python_evaluation(loaded):
    store, twins = loaded
    for flt in FILTERS:
        node = rql.parse(flt)
        expected = sorted(t for t, d in twins.docs.items() if rql.evaluate(node, d))
        assert ids(store, flt) == expected, flt
        assert store.count(flt, ALL) == len(expected), flt
    assert ids(store, 'eq(attributes/kind,"vehicle")') == ["fleet:car-1", "fleet:car-2"]
    assert ids(store, "within(features/location/properties,circle(130,240,50))") == [
        "fleet:car-1",
        "fleet:car-2",
    ]


def _py_key(doc, sort):
    """The documented order: by each sort path (missing last), then thingId."""

    def cmp(a, b):
        for path, asc in sort:
            va, vb = (_val(a, path), _val(b, path))
            if va is _MISSING or vb is _MISSING:
                if va is _MISSING and vb is _MISSING:
                    continue
                return 1 if va is _MISSING else -1
            ka = (rql.value_kind(va), *_tail(va))
            kb = (rql.value_kind(vb), *_tail(vb))
            if ka != kb:
                r = -1 if ka < kb else 1
                return r if asc else -r
        return -1 if a["thingId"] < b["thingId"] else 1 if a["thingId"] > b["thingId"] else 0

    return functools.cmp_to_key(cmp)


_MISSING = object()


def _val(doc, path):
    try:
        return get_path(doc, split_path(path))
    except KeyError:
        return _MISSING


def _tail(v):
    k = rql.value_kind(v)
    if k in (rql.K_NUM, rql.K_BOOL):
        return (rql.num_value(v), "")
    if k == rql.K_STR:
        return (0.0, v)
    return (0.0, "")


@pytest.mark.parametrize(
    "sort",
    [
        (),
        (("thingId", False),),
        (("features/battery/properties/level", True),),
        (("features/battery/properties/level", False),),
        (("attributes/n", True), ("thingId", False)),
        (("attributes/kind", False), ("features/battery/properties/level", True)),
        (("_host", True),),
        (("_revision", False), ("attributes/missing", True)),
    ],
)
def test_sort_and_cursor_paging_visit_everything_once(store, twins, sort):
    chs = [twins.put(tid, body) for tid, body in BODIES.items()]
    for i in range(23):
        chs.append(
            twins.put(
                f"bulk:t{i:02}",
                {
                    "attributes": {
                        "kind": ["vehicle", "bike", "robot"][i % 3],
                        "n": [i % 4, str(i % 3), None, True][i % 4],
                    },
                    "features": {"battery": {"properties": {"level": i % 5}}} if i % 6 else {},
                },
            )
        )
    store.commit(chs)
    store.commit(
        [
            twins.edit("bulk:t03", lambda d: d.update(_host="edge-1")),
            twins.edit("bulk:t04", lambda d: d.pop("_host")),
        ]
    )
    expected = [d["thingId"] for d in sorted(twins.docs.values(), key=_py_key(None, sort))]
    seen, cursor = [], None
    for _ in range(100):
        page = store.search(SearchQuery(None, ALL, sort, limit=4, cursor=cursor))
        seen += [d["thingId"] for d in page.items]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == expected
    assert len(set(seen)) == len(twins.docs)


def test_paging_is_stable_under_concurrent_inserts(store, twins):
    store.commit([twins.put(f"ns:t{i:02}", {"attributes": {"n": i}}) for i in range(0, 40, 2)])
    sort = (("attributes/n", True),)
    page = store.search(SearchQuery(None, ALL, sort, limit=5))
    seen = [d["thingId"] for d in page.items]
    # things inserted before and after the cursor position while paging
    store.commit([twins.put(f"ns:t{i:02}", {"attributes": {"n": i}}) for i in (1, 3, 31, 33)])
    while page.cursor:
        page = store.search(SearchQuery(None, ALL, sort, limit=5, cursor=page.cursor))
        seen += [d["thingId"] for d in page.items]
    assert len(seen) == len(set(seen))
    assert set(seen) >= {f"ns:t{i:02}" for i in range(0, 40, 2)}  # no gaps
    assert "ns:t31" in seen and "ns:t01" not in seen  # after the cursor: seen; before: not


def test_cursor_errors(loaded):
    store, _ = loaded
    page = store.search(SearchQuery(None, ALL, limit=2))
    with pytest.raises(ServiceError, match="belongs to another query"):
        store.search(SearchQuery("exists(attributes)", ALL, limit=2, cursor=page.cursor))
    with pytest.raises(ServiceError, match="not one this service made"):
        store.search(SearchQuery(None, ALL, limit=2, cursor="!!!"))
    with pytest.raises(ServiceError, match="limit must lie in"):
        store.search(SearchQuery(None, ALL, limit=0))


def test_scope_and_grants(store, twins):
    store.commit(
        [
            twins.put("a:1", {"attributes": {"level": 80}}, domain="dom-a"),
            twins.put("a:2", {"attributes": {"level": 10}}, domain="dom-a"),
            twins.put("b:1", {"attributes": {"level": 90}}, domain="dom-b"),
            twins.put("c:1", {"attributes": {"level": 95}}, domain="dom-c"),
        ]
    )
    assert ids(store, scope=Scope(("dom-a",))) == ["a:1", "a:2"]
    assert ids(store, scope=Scope(("dom-a", "dom-b"))) == ["a:1", "a:2", "b:1"]
    assert ids(store, scope=Scope(())) == []
    assert ids(store, scope=ALL) == ["a:1", "a:2", "b:1", "c:1"]
    g = Grant("dom-a", "dom-b", "gt(attributes/level,50)", "read")
    assert ids(store, scope=Scope(("dom-b",), (g,))) == ["a:1", "b:1"]
    # a grant covers only its grantor's things
    g2 = Grant("dom-c", "dom-b", "gt(attributes/level,50)", "write")
    assert ids(store, scope=Scope(("dom-b",), (g, g2))) == ["a:1", "b:1", "c:1"]
    assert ids(store, scope=Scope((), (g2,))) == ["c:1"]
    assert ids(store, "lt(attributes/level,91)", Scope(("dom-b",), (g,))) == ["a:1", "b:1"]
    assert store.count(None, Scope(("dom-b",), (g,))) == 2
    assert store.count("gt(attributes/level,85)", Scope(("dom-b",), (g,))) == 1


def test_count_and_aggregate(loaded):
    store, _ = loaded
    assert store.count(None, ALL) == 6
    assert store.count('eq(attributes/kind,"vehicle")', ALL) == 2
    assert store.count('eq(attributes/kind,"vehicle")', Scope(("other",))) == 0
    lvl = "features/battery/properties/level"
    assert store.aggregate(None, ALL, "attributes/kind", "count", None) == [
        {"key": "bike", "value": 1},
        {"key": "robot", "value": 1},
        {"key": "vehicle", "value": 2},
    ]  # robots:r-2's kind is an array: not a group key
    avg = store.aggregate(None, ALL, "attributes/kind", "avg", lvl)
    assert avg == [
        {"key": "bike", "value": None},
        {"key": "robot", "value": 15.0},
        {"key": "vehicle", "value": 47.5},
    ]
    assert store.aggregate(None, ALL, "attributes/kind", "count", lvl)[0] == {
        "key": "bike",
        "value": 0,
    }
    assert store.aggregate(None, ALL, "attributes/kind", "min", lvl)[2] == {
        "key": "vehicle",
        "value": 15.0,
    }
    assert store.aggregate("exists(features/battery)", ALL, "attributes/kind", "max", lvl) == [
        {"key": "robot", "value": 15.0},
        {"key": "vehicle", "value": 80.0},
    ]
    # keys keep their JSON type; null is a key, a missing field is not
    assert store.aggregate(None, ALL, "attributes/n", "count", None) == [
        {"key": None, "value": 1},
        {"key": 1, "value": 1},
        {"key": 2.5, "value": 1},
        {"key": "2", "value": 1},
    ]
    assert store.aggregate(None, ALL, "attributes/ok", "count", None) == [
        {"key": False, "value": 1},
        {"key": True, "value": 1},
        {"key": 1, "value": 1},
        {"key": "true", "value": 1},
    ]
    assert store.aggregate(None, ALL, "_domain", "max", "_revision") == [{"key": "d", "value": 1.0}]
    assert store.aggregate(None, ALL, "_host", "count", None) == [{"key": None, "value": 6}]
    with pytest.raises(ServiceError, match="count, min, max or avg"):
        store.aggregate(None, ALL, "attributes/kind", "sum", lvl)
    with pytest.raises(ServiceError, match="needs a numeric field"):
        store.aggregate(None, ALL, "attributes/kind", "avg", None)


def test_field_projection(loaded):
    store, _ = loaded
    page = store.search(
        SearchQuery(
            'eq(thingId,"fleet:car-1")',
            ALL,
            fields=("thingId", "features/battery/properties", "attributes/nope"),
        )
    )
    assert page.items == [
        {"thingId": "fleet:car-1", "features": {"battery": {"properties": {"level": 80}}}}
    ]


def test_bad_filters_are_400_with_the_column(loaded):
    store, _ = loaded
    with pytest.raises(InvalidInput) as e:
        store.search(SearchQuery('and(eq(attributes/kind,"x"),gt(attributes/n))'))
    assert "unexpected ')' at column 44: expected ','" in e.value.detail
    with pytest.raises(ServiceError, match="column 1"):
        store.count("bogus", ALL)
    with pytest.raises(ServiceError, match="unknown operator"):
        store.search(SearchQuery(None, Scope(("d",), (Grant("x", "d", "nope(a)", "read"),))))
