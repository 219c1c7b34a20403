"""Search, count, aggregate, paging and groups over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from .conftest import Api, problem_of


@pytest.fixture
def api(api2: Api) -> Api:
    """Every test here runs on both stores (filters, sorts and cursors are compiled to each
    store's SQL)."""
    return api2


S = "/api/2/search/things"


def _fleet(api: Api, n: int = 7) -> None:
    for i in range(n):
        kind = "car" if i % 2 == 0 else "bus"
        api.put_thing(
            f"fleet:v-{i}",
            {
                "attributes": {"kind": kind, "name": f"v{i:02d}", "seats": 4 + i},
                "features": {"location": {"properties": {"x": i * 10.0, "y": 5.0}}},
            },
        )


def test_search_filter_sort_fields_and_paging(api: Api):
    _fleet(api)
    c, h = api.client, api.h()
    r = c.get(
        S, params={"filter": 'eq(attributes/kind,"car")', "sort": "-attributes/name"}, headers=h
    )
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["thingId"] for i in items] == ["fleet:v-6", "fleet:v-4", "fleet:v-2", "fleet:v-0"]
    assert all("_inSync" in i for i in items)
    assert r.json()["cursor"] is None

    # "+" arrives as a space when not percent-encoded: still ascending
    r = c.get(f"{S}?sort=+attributes/name&limit=3&fields=thingId,attributes/name", headers=h)
    page = r.json()
    assert [i["thingId"] for i in page["items"]] == ["fleet:v-0", "fleet:v-1", "fleet:v-2"]
    assert page["items"][0] == {"thingId": "fleet:v-0", "attributes": {"name": "v00"}}
    seen = [i["thingId"] for i in page["items"]]
    while page["cursor"]:
        page = c.get(
            S,
            params={
                "sort": "+attributes/name",
                "limit": 3,
                "cursor": page["cursor"],
                "fields": "thingId,attributes/name",
            },
            headers=h,
        ).json()
        seen += [i["thingId"] for i in page["items"]]
    assert seen == [f"fleet:v-{i}" for i in range(7)]


def test_count_and_aggregate(api: Api):
    _fleet(api)
    c, h = api.client, api.h()
    r = c.get(f"{S}/count", headers=h)
    assert r.status_code == 200 and r.json() == 7
    assert c.get(f"{S}/count", params={"filter": "gt(attributes/seats,8)"}, headers=h).json() == 2
    r = c.get(f"{S}/aggregate", params={"groupBy": "attributes/kind"}, headers=h)
    assert r.status_code == 200, r.text
    rows = {row["key"]: row["value"] for row in r.json()["items"]}
    assert rows == {"car": 4, "bus": 3}
    r = c.get(
        f"{S}/aggregate",
        params={"groupBy": "attributes/kind", "fn": "max", "field": "attributes/seats"},
        headers=h,
    )
    rows = {row["key"]: row["value"] for row in r.json()["items"]}
    assert rows == {"car": 10, "bus": 9}
    doc = problem_of(
        c.get(f"{S}/aggregate", params={"groupBy": "attributes/kind", "fn": "median"}, headers=h),
        400,
    )
    assert doc["invalid-params"][0]["name"] == "fn"
    problem_of(
        c.get(f"{S}/aggregate", params={"groupBy": "attributes/kind", "fn": "avg"}, headers=h), 400
    )


def test_bad_filter_names_the_column(api: Api):
    doc = problem_of(
        api.client.get(S, params={"filter": 'eq(attributes/kind,"car"'}, headers=api.h()), 400
    )
    assert "column" in doc["detail"]
    assert doc.get("column") is not None
    doc = problem_of(api.client.get(S, params={"filter": "frob(a,1)"}, headers=api.h()), 400)
    assert "frob" in doc["detail"]
    problem_of(api.client.get(S, params={"limit": 0}, headers=api.h()), 400)
    problem_of(api.client.get(S, params={"cursor": "garbage"}, headers=api.h()), 400)


def test_groups_filter_and_members(api: Api):
    _fleet(api, 4)
    c, h = api.client, api.h()
    r = c.put("/api/2/groups/cars", json={"filter": 'eq(attributes/kind,"car")'}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json() == {
        "name": "cars",
        "domain": "fleet",
        "filter": 'eq(attributes/kind,"car")',
        "size": 2,
    }
    r = c.put("/api/2/groups/pair", json={"members": ["fleet:v-1", "fleet:v-3"]}, headers=h)
    assert r.status_code == 201
    r = c.get("/api/2/groups", headers=h)
    assert {g["name"]: g["size"] for g in r.json()["items"]} == {"cars": 2, "pair": 2}
    # membership follows the twins
    c.patch("/api/2/things/fleet:v-1/attributes", json={"kind": "car"}, headers=h)
    g = c.get("/api/2/groups/cars", headers=h).json()
    assert g["size"] == 3 and sorted(g["members"]) == ["fleet:v-0", "fleet:v-1", "fleet:v-2"]
    page = c.get("/api/2/groups/cars", params={"limit": 2}, headers=h).json()
    assert len(page["members"]) == 2 and page["cursor"]
    rest = c.get(
        "/api/2/groups/cars", params={"limit": 2, "cursor": page["cursor"]}, headers=h
    ).json()
    assert sorted(page["members"] + rest["members"]) == ["fleet:v-0", "fleet:v-1", "fleet:v-2"]
    # replace: 200
    r = c.put("/api/2/groups/cars", json={"filter": 'eq(attributes/kind,"bus")'}, headers=h)
    assert r.status_code == 200 and r.json()["size"] == 1
    assert c.delete("/api/2/groups/cars", headers=h).status_code == 204
    problem_of(c.get("/api/2/groups/cars", headers=h), 404)
    problem_of(c.delete("/api/2/groups/cars", headers=h), 404)
    # bad bodies
    problem_of(c.put("/api/2/groups/x", json={"filter": "eq(a", "members": []}, headers=h), 400)
    problem_of(c.put("/api/2/groups/x", json={}, headers=h), 400)
    doc = problem_of(
        c.put("/api/2/groups/x", json={"filter": "exists(a)", "colour": 1}, headers=h), 400
    )
    assert doc["pointer"] == "/colour"
    doc = problem_of(c.put("/api/2/groups/x", json={"members": "fleet:v-1"}, headers=h), 400)
    assert doc["pointer"] == "/members"
    # other domains see neither the groups nor their members
    assert c.get("/api/2/groups", headers=api.h("city")).json()["items"] == []
    problem_of(c.get("/api/2/groups/pair", headers=api.h("city")), 404)
