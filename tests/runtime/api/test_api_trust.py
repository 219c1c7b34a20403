"""Inputs that used to crash the service (500) and are now 400 problem documents that say
what was wrong; every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from .conftest import Api, problem_of

S = "/api/2/search/things"


def _seed(api: Api) -> dict[str, str]:
    for i, kind in enumerate(["car", "car", "bike"]):
        api.put_thing(f"fleet:t{i}", {"attributes": {"n": i, "kind": kind, "s": f"s{i}"}})
    return api.h("fleet")


@pytest.mark.parametrize(
    "group_by",
    ["_revision", "_modified", "_created", "thingId", "_revision/x", "_domain/x", "_host/a/b"],
)
def test_aggregate_refuses_service_fields_that_cannot_group(api2: Api, group_by: str):
    h = _seed(api2)
    r = api2.client.get(f"{S}/aggregate", params={"groupBy": group_by}, headers=h)
    doc = problem_of(r, 400)
    assert f"cannot group by {group_by}" in doc["detail"]
    assert "_domain, _host" in doc["detail"] and doc["pointer"] == "/groupBy"


def test_aggregate_groups_by_domain_host_and_numbers(api2: Api):
    h = _seed(api2)
    c = api2.client
    r = c.get(f"{S}/aggregate", params={"groupBy": "_domain"}, headers=h)
    assert r.json()["items"] == [{"key": "fleet", "value": 3}]
    r = c.get(f"{S}/aggregate", params={"groupBy": "_host"}, headers=h)
    assert r.json()["items"] == [{"key": None, "value": 3}]
    r = c.get(
        f"{S}/aggregate",
        params={"groupBy": "attributes/kind", "fn": "max", "field": "_revision"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [{"key": "bike", "value": 1.0}, {"key": "car", "value": 1.0}]
    r = c.get(f"{S}/aggregate", params={"groupBy": "attributes/n"}, headers=h)
    assert [i["key"] for i in r.json()["items"]] == [0, 1, 2]
