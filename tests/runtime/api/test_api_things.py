"""The thing tree over HTTP: CRUD at every level, merge patch, conditional requests,
as-of reads, delta and history."""

from __future__ import annotations

import time

from .conftest import Api, problem_of

CAR = {
    "attributes": {"kind": "car", "name": "Seven", "tags": ["a"]},
    "features": {
        "battery": {"properties": {"level": 80}, "desiredProperties": {}},
        "location": {"properties": {"x": 10.0, "y": 20.0}},
    },
}
T = "/api/2/things/fleet:car-7"


def test_put_creates_then_replaces_and_get_returns_service_fields(api: Api):
    r = api.client.put(T, json=CAR, headers=api.h())
    assert r.status_code == 201
    assert r.headers["location"] == T
    assert r.headers["etag"] == '"rev:1"'
    doc = r.json()
    assert doc["thingId"] == "fleet:car-7"
    assert doc["_revision"] == 1 and doc["_domain"] == "fleet" and doc["_inSync"] is True
    assert doc["attributes"] == CAR["attributes"]

    r = api.client.put(T, json={"attributes": {"kind": "van"}}, headers=api.h())
    assert r.status_code == 204 and r.headers["etag"] == '"rev:2"' and r.content == b""

    r = api.client.get(T, headers=api.h())
    assert r.status_code == 200 and r.headers["etag"] == '"rev:2"'
    assert r.json()["attributes"] == {"kind": "van"} and r.json()["features"] == {}

    r = api.client.put(T, json=CAR, headers=api.h(**{"Prefer": "return=representation"}))
    assert r.status_code == 200 and r.json()["_revision"] == 3


def test_every_level_get_put_patch_delete(api: Api):
    api.put_thing("fleet:car-7", CAR)
    c, h = api.client, api.h()

    # attributes
    assert c.get(f"{T}/attributes", headers=h).json() == CAR["attributes"]
    assert c.get(f"{T}/attributes/name", headers=h).json() == "Seven"
    r = c.put(f"{T}/attributes/owner", json={"name": "Ada"}, headers=h)
    assert r.status_code == 201 and r.headers["location"] == f"{T}/attributes/owner"
    assert r.json() == {"name": "Ada"} and r.headers["etag"] == '"rev:2"'
    assert c.get(f"{T}/attributes/owner/name", headers=h).json() == "Ada"
    assert c.put(f"{T}/attributes/owner/name", json="Bob", headers=h).status_code == 204
    assert c.get(f"{T}/attributes/owner", headers=h).json() == {"name": "Bob"}
    r = c.put(f"{T}/attributes", json={"kind": "bus"}, headers=h)
    assert r.status_code == 204
    assert c.get(f"{T}/attributes", headers=h).json() == {"kind": "bus"}
    assert c.patch(f"{T}/attributes", json={"seats": 40}, headers=h).status_code == 204
    assert c.get(f"{T}/attributes", headers=h).json() == {"kind": "bus", "seats": 40}
    assert c.delete(f"{T}/attributes/seats", headers=h).status_code == 204
    problem_of(c.get(f"{T}/attributes/seats", headers=h), 404)

    # features
    assert set(c.get(f"{T}/features", headers=h).json()) == {"battery", "location"}
    r = c.put(f"{T}/features/lamp", json={"properties": {"on": False}}, headers=h)
    assert r.status_code == 201
    assert c.get(f"{T}/features/lamp/properties/on", headers=h).json() is False
    r = c.put(f"{T}/features/lamp/properties/on", json=True, headers=h)
    assert r.status_code == 204
    r = c.patch(f"{T}/features/lamp/properties", json={"lux": 300}, headers=h)
    assert r.status_code == 204
    assert c.get(f"{T}/features/lamp/properties", headers=h).json() == {"on": True, "lux": 300}
    r = c.put(f"{T}/features/lamp/desiredProperties", json={"on": False}, headers=h)
    assert r.status_code in (201, 204)
    r = c.put(f"{T}/features/lamp/desiredProperties/lux", json=100, headers=h)
    assert r.status_code == 201
    assert c.get(f"{T}/features/lamp/desiredProperties", headers=h).json() == {
        "on": False,
        "lux": 100,
    }
    assert c.delete(f"{T}/features/lamp/desiredProperties/lux", headers=h).status_code == 204
    assert c.delete(f"{T}/features/lamp", headers=h).status_code == 204
    problem_of(c.get(f"{T}/features/lamp", headers=h), 404)
    r = c.put(f"{T}/features", json={"gps": {"properties": {"fix": True}}}, headers=h)
    assert r.status_code == 204
    assert c.get(f"{T}/features", headers=h).json() == {"gps": {"properties": {"fix": True}}}

    # the whole thing
    assert c.delete(T, headers=h).status_code == 204
    problem_of(c.get(T, headers=h), 404)
    problem_of(c.delete(T, headers=h), 404)


def test_merge_patch_null_deletes_and_media_types(api: Api):
    api.put_thing("fleet:car-7", CAR)
    c, h = api.client, api.h()
    r = c.patch(
        T,
        content=b'{"attributes": {"name": null, "color": "red"}, "features": {"location": null}}',
        headers={**h, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 204 and r.headers["etag"] == '"rev:2"'
    doc = c.get(T, headers=h).json()
    assert doc["attributes"] == {"kind": "car", "tags": ["a"], "color": "red"}
    assert set(doc["features"]) == {"battery"}
    # arrays are replaced whole; a scalar patch of a path replaces it
    c.patch(f"{T}/attributes", json={"tags": ["b", "c"]}, headers=h)
    c.patch(f"{T}/attributes/kind", json="truck", headers=h)
    r = c.patch(f"{T}/attributes", json={}, headers=api.h(Prefer="return=representation"))
    assert r.status_code == 200
    assert r.json() == {"kind": "truck", "tags": ["b", "c"], "color": "red"}
    # null at a path deletes it
    c.patch(f"{T}/attributes", json={"color": None}, headers=h)
    assert "color" not in c.get(f"{T}/attributes", headers=h).json()
    # a merge patch of an object level must be an object
    doc = problem_of(c.patch(f"{T}/attributes", json=[1], headers=h), 400)
    assert "JSON object" in doc["detail"]
    # other media types are refused
    r = c.patch(T, content=b"{}", headers={**h, "Content-Type": "text/plain"})
    assert "merge-patch+json" in problem_of(r, 415)["detail"]


def test_etag_if_match_and_if_none_match(api: Api):
    c = api.client
    r = c.put(T, json=CAR, headers=api.h(**{"If-None-Match": "*"}))
    assert r.status_code == 201
    doc = problem_of(c.put(T, json=CAR, headers=api.h(**{"If-None-Match": "*"})), 412)
    assert "exists" in doc["detail"]

    assert (
        c.patch(
            T, json={"attributes": {"a": 1}}, headers=api.h(**{"If-Match": '"rev:1"'})
        ).status_code
        == 204
    )
    doc = problem_of(
        c.patch(T, json={"attributes": {"a": 2}}, headers=api.h(**{"If-Match": '"rev:1"'})), 412
    )
    assert "revision 2" in doc["detail"]
    # weak and list forms, and *
    assert (
        c.patch(
            T, json={"attributes": {"a": 3}}, headers=api.h(**{"If-Match": 'W/"2"'})
        ).status_code
        == 204
    )
    assert (
        c.patch(
            T, json={"attributes": {"a": 4}}, headers=api.h(**{"If-Match": '"1", "3"'})
        ).status_code
        == 204
    )
    assert (
        c.patch(T, json={"attributes": {"a": 5}}, headers=api.h(**{"If-Match": "*"})).status_code
        == 204
    )
    problem_of(c.put("/api/2/things/fleet:none", json={}, headers=api.h(**{"If-Match": "*"})), 412)
    problem_of(c.patch(T, json={}, headers=api.h(**{"If-Match": '"abc"'})), 412)
    problem_of(c.delete(T, headers=api.h(**{"If-Match": '"rev:1"'})), 412)

    # create-only at a path
    r = c.put(f"{T}/attributes/new", json=1, headers=api.h(**{"If-None-Match": "*"}))
    assert r.status_code == 201
    problem_of(c.put(f"{T}/attributes/new", json=2, headers=api.h(**{"If-None-Match": "*"})), 412)

    # conditional GET
    tag = c.get(T, headers=api.h()).headers["etag"]
    r = c.get(T, headers=api.h(**{"If-None-Match": tag}))
    assert r.status_code == 304 and r.headers["etag"] == tag
    assert c.get(f"{T}/attributes", headers=api.h()).headers["etag"] == tag
    assert c.delete(T, headers=api.h(**{"If-Match": tag})).status_code == 204


def test_as_of_reads(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:car-7", CAR)
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    c.patch(f"{T}/attributes", json={"name": "Eight"}, headers=h)
    c.patch(f"{T}/attributes", json={"name": "Nine"}, headers=h)

    r = c.get(T, params={"revision": 1}, headers=h)
    assert r.status_code == 200 and r.headers["etag"] == '"rev:1"'
    assert r.json()["attributes"]["name"] == "Seven" and r.json()["_revision"] == 1
    assert "_inSync" in r.json()
    assert c.get(f"{T}/attributes/name", params={"revision": 2}, headers=h).json() == "Eight"
    assert c.get(f"{T}/attributes/name", params={"at": middle}, headers=h).json() == "Seven"
    iso = (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + f".{int(middle % 1 * 1000):03d}Z"
    )
    assert c.get(f"{T}/attributes/name", params={"at": iso}, headers=h).json() == "Seven"
    assert c.get(f"{T}/attributes/name", headers=h).json() == "Nine"
    problem_of(c.get(T, params={"revision": 99}, headers=h), 404)
    doc = problem_of(c.get(T, params={"at": "yesterday"}, headers=h), 400)
    assert doc["invalid-params"][0]["name"] == "at"
    problem_of(c.get(T, params={"at": "1970-01-01T00:00:00Z"}, headers=h), 404)
    problem_of(c.get(T, params={"revision": 0}, headers=h), 400)


def test_delta_and_in_sync(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:car-7", CAR)
    assert c.get(f"{T}/delta", headers=h).json() == {
        "thingId": "fleet:car-7",
        "revision": 1,
        "inSync": True,
        "delta": {},
    }
    r = c.patch(
        f"{T}/features/battery/desiredProperties", json={"level": 100, "mode": "eco"}, headers=h
    )
    assert r.status_code == 204
    d = c.get(f"{T}/delta", headers=h)
    assert d.headers["etag"] == '"rev:2"'
    assert d.json()["inSync"] is False
    assert d.json()["delta"] == {"battery": {"level": 100, "mode": "eco"}}
    assert c.get(T, headers=h).json()["_inSync"] is False
    # the device reports part of it, then the rest
    api.call(api.service.device_report, "fleet:car-7", {"battery": {"mode": "eco"}})
    assert c.get(f"{T}/delta", headers=h).json()["delta"] == {"battery": {"level": 100}}
    api.call(api.service.device_report, "fleet:car-7", {"battery": {"level": 100}})
    assert c.get(f"{T}/delta", headers=h).json()["inSync"] is True
    assert c.get(T, headers=h).json()["_inSync"] is True
    problem_of(c.patch(f"{T}/features/battery/desiredProperties", json=5, headers=h), 400)


def test_history(api: Api):
    c, h = api.client, api.h()
    t0 = time.time()
    api.put_thing("fleet:car-7", CAR)
    for i in range(3):
        c.patch(f"{T}/attributes", json={"n": i}, headers=h)
    r = c.get(f"{T}/history", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["thingId"] == "fleet:car-7"
    revs = [e["revision"] for e in body["items"]]
    assert revs == [1, 2, 3, 4]
    last = body["items"][-1]
    assert last["ops"] == [{"op": "replace", "path": "/attributes/n", "value": 2}]
    assert last["source"] == "http"
    assert len(c.get(f"{T}/history", params={"limit": 2}, headers=h).json()["items"]) == 2
    assert (
        c.get(f"{T}/history", params={"from": t0 - 3600, "to": t0 - 1800}, headers=h).json()[
            "items"
        ]
        == []
    )
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 5))
    assert len(c.get(f"{T}/history", params={"from": iso}, headers=h).json()["items"]) == 4
    doc = problem_of(c.get(f"{T}/history", params={"limit": 0}, headers=h), 400)
    assert doc["invalid-params"][0] == {
        "name": "limit",
        "in": "query",
        "reason": doc["invalid-params"][0]["reason"],
    }


def test_escaped_pointer_tokens(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:car-7", {"attributes": {"a/b": 1, "m~n": 2}})
    assert c.get(f"{T}/attributes/a~1b", headers=h).json() == 1
    assert c.get(f"{T}/attributes/m~0n", headers=h).json() == 2
    assert c.put(f"{T}/attributes/a~1b", json=3, headers=h).status_code == 204
    assert c.get(f"{T}/attributes", headers=h).json()["a/b"] == 3


def test_service_fields_cannot_be_written(api: Api):
    api.put_thing("fleet:car-7", CAR)
    c, h = api.client, api.h()
    # the service fields in a body are ignored on PUT (a GET -> PUT round trip works)
    doc = c.get(T, headers=h).json()
    doc["_revision"] = 99
    r = c.put(T, json=doc, headers=h)
    assert r.status_code == 204 and r.headers["etag"] == '"rev:1"'  # same content: no new revision
    assert c.get(T, headers=h).json()["_revision"] == 1
    problem_of(c.put(f"{T}/_revision", json=5, headers=h), 404)
    doc = problem_of(
        c.patch(f"{T}/attributes", json={"x": 1}, headers=api.h(**{"If-Match": '"rev:7"'})), 412
    )
    assert doc["currentRevision"] == 1


def test_non_ascii_paths_get_an_encoded_location(api: Api):
    api.put_thing("fleet:car-7", {})
    r = api.client.put(f"{T}/attributes/größe\U0004ae3b", json=1, headers=api.h())
    assert r.status_code == 201
    assert r.headers["location"] == f"{T}/attributes/gr%C3%B6%C3%9Fe%F1%8A%B8%BB"
    assert api.client.get(r.headers["location"], headers=api.h()).json() == 1
    r = api.client.put("/api/2/groups/grün", json={"members": []}, headers=api.h())
    assert r.status_code == 201 and r.headers["location"] == "/api/2/groups/gr%C3%BCn"
