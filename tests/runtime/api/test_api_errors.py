"""Every error is an RFC 7807 problem document that says what was wrong and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Api, make_api, problem_of

T = "/api/2/things/fleet:car-1"


def test_malformed_json_reports_line_and_column(api: Api):
    r = api.client.put(
        T,
        content=b'{"attributes": {\n  "a": 1,,\n}}',
        headers=api.h(**{"Content-Type": "application/json"}),
    )
    doc = problem_of(r, 400)
    assert doc["line"] == 2 and doc["column"] == 10
    assert "line 2 column 10" in doc["detail"]
    doc = problem_of(api.client.put(T, content=b"", headers=api.h()), 400)
    assert "needs a JSON body" in doc["detail"]
    doc = problem_of(api.client.put(T, content=b'{"a": NaN}', headers=api.h()), 400)
    problem_of(api.client.put(T, content=b"\xff\xfe", headers=api.h()), 400)


def test_bad_thing_id_and_feature_id(api: Api):
    doc = problem_of(api.client.put("/api/2/things/no-namespace", json={}, headers=api.h()), 400)
    assert doc["pointer"] == "/thingId" and "namespace:name" in doc["detail"]
    problem_of(api.client.get("/api/2/things/no-namespace", headers=api.h()), 400)
    api.put_thing("fleet:car-1", {})
    doc = problem_of(api.client.put(f"{T}/features/bad%20id", json={}, headers=api.h()), 400)
    assert "feature id" in doc["detail"]


def test_wrong_types_and_unknown_fields(api: Api):
    c, h = api.client, api.h()
    doc = problem_of(c.put(T, json={"attributes": [1, 2]}, headers=h), 400)
    assert doc["pointer"] == "/attributes"
    doc = problem_of(c.put(T, json={"colour": "red"}, headers=h), 400)
    assert doc["pointer"] == "/colour" and "unknown" in doc["detail"]
    doc = problem_of(c.put(T, json={"features": {"f": {"props": {}}}}, headers=h), 400)
    assert doc["pointer"] == "/features/f/props"
    doc = problem_of(c.put(T, json={"features": {"f": {"properties": 3}}}, headers=h), 400)
    assert doc["pointer"] == "/features/f/properties"
    doc = problem_of(c.put(T, json=[1], headers=h), 400)
    doc = problem_of(c.put(T, json={"thingId": "fleet:other"}, headers=h), 400)
    assert doc["pointer"] == "/thingId"
    api.put_thing("fleet:car-1", {})
    doc = problem_of(c.put(f"{T}/attributes", json=3, headers=h), 400)
    assert doc["pointer"] == "/attributes"
    doc = problem_of(c.put(f"{T}/features/f/properties", json="x", headers=h), 400)
    doc = problem_of(c.get(T, params={"revision": "abc"}, headers=h), 400)
    assert doc["invalid-params"][0]["name"] == "revision"
    assert doc["invalid-params"][0]["in"] == "query"
    doc = problem_of(c.post(f"{T}/inbox/messages/x", params={"timeout": -1}, headers=h), 400)
    assert doc["invalid-params"][0]["name"] == "timeout"


def test_unknown_routes_and_methods(api: Api):
    doc = problem_of(api.client.get("/nope", headers=api.h()), 404)
    assert "/api/2" in doc["detail"]
    r = api.client.post(T, json={}, headers=api.h())
    doc = problem_of(r, 405)
    assert "POST" in doc["detail"] and "GET" in r.headers["allow"]
    problem_of(api.client.get("/dashboard/nope.js"), 404)


def test_size_limit(tmp_path: Path):
    gen = make_api(tmp_path, max_body_bytes=1000)
    api = next(gen)
    try:
        big = {"attributes": {"blob": "x" * 2000}}
        doc = problem_of(api.client.put(T, json=big, headers=api.h()), 413)
        assert "1000" in doc["detail"]

        def chunks():
            for _ in range(10):
                yield b" " * 200

        problem_of(api.client.put(T, content=chunks(), headers=api.h()), 413)
        assert (
            api.client.put(T, json={"attributes": {"b": "x"}}, headers=api.h()).status_code == 201
        )
    finally:
        gen.close()


def test_documents_above_the_service_limit(api: Api):
    doc = problem_of(
        api.client.put(T, json={"attributes": {"blob": "x" * 300_000}}, headers=api.h()), 413
    )
    assert "256" in doc["detail"]


def test_unexpected_errors_are_logged_500_problems(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog
):
    async def boom(*a, **kw):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.service, "count", boom)
    with caplog.at_level("ERROR", logger="twinedge.api"):
        r = api.client.get("/api/2/search/things/count", headers=api.h())
    doc = problem_of(r, 500)
    assert "secret" not in r.text and doc["errorId"] in doc["detail"]
    assert any(doc["errorId"] in rec.getMessage() for rec in caplog.records)


def test_plain_http_to_the_websocket_route_says_so(api: Api):
    doc = problem_of(api.client.get("/api/2/events/ws", headers=api.h()), 404)
    assert "WebSocket" in doc["detail"]
