"""Authentication, roles, domains, grants, keys and device credentials, on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from .conftest import Api, bearer, problem_of

T = "/api/2/things/fleet:car-1"


@pytest.fixture
def api(api2: Api) -> Api:
    """Every test here runs on both stores (grants are compiled to each store's SQL)."""
    return api2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer te_nokey_secret"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer garbage"},
    ],
)
def test_401_without_a_valid_key(api: Api, headers):
    doc = problem_of(api.client.get(T, headers=headers), 401)
    assert "Bearer" in doc["detail"] or "API key" in doc["detail"]
    r = api.client.get("/api/2/search/things", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_roles(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"a": 1}})
    reader = api.h("fleet", "read")
    assert api.client.get(T, headers=reader).status_code == 200
    doc = problem_of(api.client.patch(T, json={"attributes": {"a": 2}}, headers=reader), 403)
    assert "write" in doc["detail"]
    problem_of(
        api.client.post("/api/2/keys", json={"role": "read"}, headers=api.h("fleet", "write")), 403
    )


def test_other_domains_cannot_read_or_write_until_granted(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"kind": "car", "public": True}})
    api.put_thing("fleet:car-2", {"attributes": {"kind": "car", "public": False}})
    c, city = api.client, api.h("city")
    problem_of(c.get(T, headers=city), 404)
    problem_of(c.patch(T, json={"attributes": {"x": 1}}, headers=city), 404)
    # namespace fleet is fleet's: an existing thing and a free id answer alike
    taken = problem_of(c.put(T, json={}, headers=city), 403)
    free = problem_of(c.put("/api/2/things/fleet:never-made", json={}, headers=city), 403)
    assert taken["detail"] == free["detail"] and "namespace 'fleet'" in free["detail"]
    problem_of(c.delete(T, headers=city), 404)
    assert c.get("/api/2/search/things", headers=city).json()["items"] == []
    assert c.get("/api/2/search/things/count", headers=city).json() == 0

    # a domain admin of fleet lets city read its public things
    r = c.post(
        "/api/2/grants",
        json={"grantee": "city", "filter": "eq(attributes/public,true)", "role": "read"},
        headers=api.h("fleet", "admin"),
    )
    assert r.status_code == 201, r.text
    assert r.json() == {
        "grantor": "fleet",
        "grantee": "city",
        "filter": "eq(attributes/public,true)",
        "role": "read",
    }
    assert c.get(T, headers=city).status_code == 200
    problem_of(c.get("/api/2/things/fleet:car-2", headers=city), 404)
    assert [i["thingId"] for i in c.get("/api/2/search/things", headers=city).json()["items"]] == [
        "fleet:car-1"
    ]
    # read, not write
    problem_of(c.patch(T, json={"attributes": {"x": 1}}, headers=city), 404)
    r = c.post(
        "/api/2/grants",
        json={"grantee": "city", "filter": "eq(attributes/public,true)", "role": "write"},
        headers=api.h("fleet", "admin"),
    )
    assert r.status_code == 201
    assert c.patch(T, json={"attributes": {"x": 1}}, headers=city).status_code == 204
    assert c.get(T, headers=api.h()).json()["attributes"]["x"] == 1

    # grants need a domain admin, and a valid body
    problem_of(
        c.post(
            "/api/2/grants", json={"grantee": "x", "filter": "exists(a)"}, headers=api.h("fleet")
        ),
        403,
    )
    problem_of(
        c.post(
            "/api/2/grants", json={"grantee": "x", "filter": "exists(a)"}, headers=bearer(api.admin)
        ),
        400,
    )
    doc = problem_of(
        c.post(
            "/api/2/grants",
            json={"grantee": "x", "filter": "exists(a", "role": "read"},
            headers=api.h("fleet", "admin"),
        ),
        400,
    )
    assert "column" in doc["detail"]
    doc = problem_of(
        c.post(
            "/api/2/grants",
            json={"grantee": "x", "filter": "exists(a)", "role": "owner"},
            headers=api.h("fleet", "admin"),
        ),
        400,
    )
    assert doc["pointer"] == "/role"


def test_keys(api: Api):
    c = api.client
    r = c.post("/api/2/keys", json={"domain": "fleet", "role": "admin"}, headers=bearer(api.admin))
    assert r.status_code == 201
    body = r.json()
    assert body["token"].startswith("te_") and body["domain"] == "fleet" and body["role"] == "admin"
    assert body["keyId"] in body["token"]
    assert r.headers["cache-control"] == "no-store"
    fleet_admin = body["token"]
    # a domain admin makes keys of its own domain (domain may be omitted)
    r = c.post("/api/2/keys", json={"role": "read"}, headers=bearer(fleet_admin))
    assert r.status_code == 201 and r.json()["domain"] == "fleet"
    problem_of(
        c.post("/api/2/keys", json={"domain": "city", "role": "read"}, headers=bearer(fleet_admin)),
        403,
    )
    # the service admin must name the domain
    doc = problem_of(c.post("/api/2/keys", json={"role": "read"}, headers=bearer(api.admin)), 400)
    assert doc["pointer"] == "/domain"
    problem_of(
        c.post("/api/2/keys", json={"domain": "fleet", "role": "root"}, headers=bearer(api.admin)),
        400,
    )


def test_service_admin_creates_things_in_any_domain(api: Api):
    c = api.client
    r = c.put("/api/2/things/city:lamp-1", json={"_domain": "city"}, headers=bearer(api.admin))
    assert r.status_code == 201 and r.json()["_domain"] == "city"
    assert c.get("/api/2/things/city:lamp-1", headers=api.h("city")).status_code == 200
    doc = problem_of(c.put("/api/2/things/city:lamp-2", json={}, headers=bearer(api.admin)), 400)
    assert doc["pointer"] == "/_domain"


def test_device_credentials(api: Api):
    api.put_thing("fleet:car-1", {})
    c = api.client
    r = c.put(
        f"{T}/credentials", json={"password": "correct horse"}, headers=api.h("fleet", "admin")
    )
    assert r.status_code == 204
    assert api.call(api.service.authenticate_device, "fleet:car-1", "correct horse") is True
    assert api.call(api.service.authenticate_device, "fleet:car-1", "wrong") is False
    doc = problem_of(
        c.put(f"{T}/credentials", json={"password": "short"}, headers=api.h("fleet", "admin")), 400
    )
    assert doc["pointer"] == "/password"
    problem_of(
        c.put(f"{T}/credentials", json={"password": "long enough"}, headers=api.h("fleet")), 403
    )
    problem_of(
        c.put(f"{T}/credentials", json={"password": "long enough"}, headers=api.h("city", "admin")),
        404,
    )


def test_namespaces_belong_to_domains(api: Api):
    c = api.client
    api.put_thing("fleet:car-1", {})
    assert c.get("/api/2/namespaces", headers=api.h("fleet", "read")).json() == [
        {"namespace": "fleet", "domain": "fleet"}
    ]
    assert c.get("/api/2/namespaces", headers=api.h("city", "read")).json() == []
    # only the service admin assigns namespaces
    problem_of(
        c.put("/api/2/namespaces/fleet", json={"domain": "city"}, headers=api.h("city", "admin")),
        403,
    )
    problem_of(c.put("/api/2/namespaces/bad:ns", json={"domain": "city"}, headers=api.h(None)), 400)
    problem_of(c.put("/api/2/namespaces/x", json={"domain": "no/slash"}, headers=api.h(None)), 400)
    problem_of(
        c.put("/api/2/namespaces/x", json={"domain": "city", "x": 1}, headers=api.h(None)), 400
    )
    r = c.put("/api/2/namespaces/fleet", json={"domain": "city"}, headers=api.h(None))
    assert r.status_code == 200 and r.json() == {"namespace": "fleet", "domain": "city"}
    api.put_thing("fleet:bus-1", {}, domain="city")
    # fleet keeps the thing it had; new ones are city's
    assert c.get("/api/2/things/fleet:car-1", headers=api.h("fleet")).status_code == 200
    problem_of(c.put("/api/2/things/fleet:car-2", json={}, headers=api.h("fleet")), 403)
