"""JSON types survive the HTTP API: a write that changes only a value's type (``1`` to
``true``, ``1`` to ``1.0``, also inside arrays and objects) is a change on every write
route (PUT of the thing, merge PATCH, PUT of a path, desired properties); it gets a new
revision and reads back with its type (also as of that revision), and the delta and
search tell the types apart. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import Api

PAIRS: list[tuple[Any, Any]] = [
    (1, True),
    (True, 1),
    (0, False),
    (1, 1.0),
    ([1, 0], [True, False]),
    ({"a": [1]}, {"a": [True]}),
]
THING = "/api/2/things/fleet:t"
MERGE = {"Content-Type": "application/merge-patch+json"}


def text(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def revision(r: Any) -> int:
    return int(r.headers["etag"].strip('"').removeprefix("rev:"))


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{text(a)}->{text(b)}" for a, b in PAIRS])
def test_a_change_of_type_is_a_change_on_every_route(api2: Api, old: Any, new: Any):
    c, h = api2.client, api2.h()
    r = c.put(THING, json={"attributes": {"x": old}}, headers=h)
    assert r.status_code == 201 and revision(r) == 1
    writes = [  # (request, path of the value in the thing)
        (lambda v: c.put(THING, json={"attributes": {"x": v}}, headers=h), ("attributes", "x")),
        (
            lambda v: c.patch(
                f"{THING}/attributes", content=json.dumps({"x": v}), headers={**h, **MERGE}
            ),
            ("attributes", "x"),
        ),
        (lambda v: c.put(f"{THING}/attributes/x", json=v, headers=h), ("attributes", "x")),
    ]
    rev = 1
    for write, path in writes:
        for v in (new, old):
            r = write(v)
            rev += 1
            assert r.status_code in (200, 204), r.text
            assert revision(r) == rev, (path, v, r.headers)
            got = c.get(THING, headers=h).json()
            assert text(got[path[0]][path[1]]) == text(v), (path, v, got)

    # desired state against the reported value: the delta tells the types apart
    r = c.put(f"{THING}/features/f", json={"properties": {"v": old}}, headers=h)
    assert r.status_code in (201, 204), r.text
    r = c.put(f"{THING}/features/f/desiredProperties", json={"v": new}, headers=h)
    assert r.status_code in (201, 204), r.text
    d = c.get(f"{THING}/delta", headers=h).json()
    assert d["inSync"] is False and text(d["delta"]["f"]["v"]) == text(new), d
    r = c.put(f"{THING}/features/f/properties/v", json=new, headers=h)
    assert r.status_code == 204, r.text
    assert c.get(f"{THING}/delta", headers=h).json()["inSync"] is True

    # every acknowledged write is in the history, and reads back as of its revision
    items = c.get(f"{THING}/history", headers=h).json()["items"]
    assert [i["revision"] for i in items] == list(range(1, revision(r) + 1))
    assert all(i["ops"] for i in items[1:])  # no revision without a change
    as_of = [c.get(THING, params={"revision": n}, headers=h).json() for n in range(2, 8)]
    assert [text(d["attributes"]["x"]) for d in as_of] == [text(new), text(old)] * 3


def test_search_tells_true_from_one(api2: Api):
    c, h = api2.client, api2.h()
    for name, v in (("one", 1), ("true", True), ("float", 1.0)):
        c.put(f"/api/2/things/fleet:{name}", json={"attributes": {"v": v}}, headers=h)
    found = {}
    for literal in ("true", "1"):
        r = c.get(
            "/api/2/search/things", params={"filter": f"eq(attributes/v,{literal})"}, headers=h
        )
        assert r.status_code == 200, r.text
        found[literal] = sorted(t["thingId"] for t in r.json()["items"])
    assert found["true"] == ["fleet:true"]
    assert found["1"] == ["fleet:float", "fleet:one"]  # 1 and 1.0 are the same JSON number
