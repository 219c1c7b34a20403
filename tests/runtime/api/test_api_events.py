"""Events over WebSocket and Server-Sent Events: CloudEvents with the patch and revision,
filters, domains, group joins and leaves, and the slow-consumer cut-off."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from .conftest import Api, make_api

T = "/api/2/things/fleet:car-1"


def _wait_subscribers(api: Api, n: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while api.service.subscribers < n:
        assert time.monotonic() < deadline, "the subscription did not open"
        time.sleep(0.005)


def _ws(api: Api, domain: str = "fleet", **params: str):
    q = "&".join(f"{k}={v}" for k, v in {"token": api.key(domain), **params}.items())
    return api.client.websocket_connect(f"/api/2/events/ws?{q}")


def test_websocket_receives_cloudevent_with_patch_and_revision(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"kind": "car"}})
    with _ws(api) as ws:
        _wait_subscribers(api, 1)
        api.client.patch(T, json={"attributes": {"speed": 12}}, headers=api.h())
        ev = ws.receive_json()
    assert ev["specversion"] == "1.0"
    assert ev["type"] == "dev.twinedge.thing.modified"
    assert ev["subject"] == "fleet:car-1"
    assert ev["id"] and ev["source"].endswith("/fleet") and ev["time"].endswith("Z")
    assert ev["data"]["revision"] == 2
    assert ev["data"]["patch"] == [{"op": "add", "path": "/attributes/speed", "value": 12}]
    _wait_subscribers(api, 0)


def test_websocket_filter_and_domains(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"kind": "car"}})
    api.put_thing("fleet:bus-1", {"attributes": {"kind": "bus"}})
    api.put_thing("city:lamp-1", {"attributes": {"kind": "lamp"}}, domain="city")
    with _ws(api, filter='eq(attributes/kind,"car")') as cars, _ws(api, "city") as city:
        _wait_subscribers(api, 2)
        api.client.patch("/api/2/things/fleet:bus-1/attributes", json={"n": 1}, headers=api.h())
        api.client.patch(T + "/attributes", json={"n": 1}, headers=api.h())
        api.client.patch(
            "/api/2/things/city:lamp-1/attributes", json={"n": 1}, headers=api.h("city")
        )
        assert cars.receive_json()["subject"] == "fleet:car-1"
        assert city.receive_json()["subject"] == "city:lamp-1"


def test_group_join_and_leave_events(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"kind": "bus"}})
    r = api.client.put(
        "/api/2/groups/cars", json={"filter": 'eq(attributes/kind,"car")'}, headers=api.h()
    )
    assert r.status_code == 201
    with _ws(api) as ws:
        _wait_subscribers(api, 1)
        api.client.patch(T + "/attributes", json={"kind": "car"}, headers=api.h())
        types = [ws.receive_json() for _ in range(2)]
        assert [e["type"] for e in types] == [
            "dev.twinedge.thing.modified",
            "dev.twinedge.group.joined",
        ]
        assert types[1]["data"] == {"thingId": "fleet:car-1", "revision": 2, "group": "fleet/cars"}
        api.client.patch(T + "/attributes", json={"kind": "bus"}, headers=api.h())
        types = [ws.receive_json() for _ in range(2)]
        assert types[1]["type"] == "dev.twinedge.group.left"
        api.client.delete(T, headers=api.h())
        assert ws.receive_json()["type"] == "dev.twinedge.thing.deleted"


def test_websocket_without_a_key_is_closed_with_the_reason(api: Api):
    with api.client.websocket_connect("/api/2/events/ws") as ws:
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
    assert e.value.code == 1008 and "401" in e.value.reason
    with api.client.websocket_connect(
        f"/api/2/events/ws?token={api.key('fleet')}&filter=eq("
    ) as ws:
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
    assert e.value.code == 1008 and "column" in e.value.reason
    assert len(e.value.reason.encode()) <= 123


def _groups_for_burst(api: Api, n: int) -> None:
    """``n`` groups that all match once attributes/hot exists: one PATCH -> 1 + n events."""
    for i in range(n):
        r = api.client.put(
            f"/api/2/groups/g{i}", json={"filter": "exists(attributes/hot)"}, headers=api.h()
        )
        assert r.status_code == 201


@pytest.fixture
def tiny_queue_api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path, event_queue_max=3)


def test_slow_websocket_consumer_is_cut_off_with_1013(tiny_queue_api: Api):
    api = tiny_queue_api
    api.put_thing("fleet:car-1", {})
    _groups_for_burst(api, 6)
    with _ws(api) as ws:
        _wait_subscribers(api, 1)
        api.client.patch(T + "/attributes", json={"hot": True}, headers=api.h())
        with pytest.raises(WebSocketDisconnect) as e:
            for _ in range(10):
                ws.receive_json()
    assert e.value.code == 1013
    assert "slow consumer" in e.value.reason and len(e.value.reason.encode()) <= 123
    assert api.service.metrics["events_dropped_total"] == 1


def _sse_events(lines: Iterator[str], want: int) -> list[dict[str, Any]]:
    """Parse SSE lines into ``{"event", "data", "id"}`` dicts (and ``{"comment":
    "keep-alive"}``) until ``want`` of them or the end of the stream."""
    out: list[dict[str, Any]] = []
    cur: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            if line[1:].strip() == "keep-alive":
                out.append({"comment": "keep-alive"})
        elif line == "":
            if "data" in cur or "event" in cur:
                out.append(cur)
            cur = {}
        else:
            name, _, value = line.partition(":")
            cur[name] = value.lstrip(" ")
        if len(out) >= want:
            break
    return out


def test_sse_stream(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"kind": "car"}})
    with api.client.stream("GET", "/api/2/events", headers=api.h()) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        _wait_subscribers(api, 1)
        api.client.patch(T, json={"attributes": {"speed": 3}}, headers=api.h())
        events = _sse_events(r.iter_lines(), 1)
    ev = json.loads(events[0]["data"])
    assert events[0]["id"] == ev["id"]
    assert ev["type"] == "dev.twinedge.thing.modified" and ev["data"]["revision"] == 2
    assert ev["data"]["patch"] == [{"op": "add", "path": "/attributes/speed", "value": 3}]


def test_sse_token_in_query_and_errors(api: Api):
    r = api.client.get("/api/2/events")
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    r = api.client.get("/api/2/events", params={"token": api.key("fleet"), "filter": "eq("})
    assert r.status_code == 400 and "column" in r.json()["detail"]
    with api.client.stream("GET", "/api/2/events", params={"token": api.key("fleet")}) as r:
        assert r.status_code == 200


def test_sse_keepalive_and_close_reason(tmp_path: Path):
    gen = make_api(tmp_path, event_queue_max=3, keepalive_s=0.05)
    api = next(gen)
    try:
        api.put_thing("fleet:car-1", {})
        _groups_for_burst(api, 6)
        with api.client.stream("GET", "/api/2/events", headers=api.h()) as r:
            _wait_subscribers(api, 1)
            lines = r.iter_lines()
            assert {"comment": "keep-alive"} in _sse_events(lines, 1)
            api.client.patch(T + "/attributes", json={"hot": True}, headers=api.h())
            events = _sse_events(lines, 20)
        close = [e for e in events if e.get("event") == "close"]
        assert close and "slow consumer" in json.loads(close[0]["data"])["reason"]
    finally:
        gen.close()


def test_shutdown_ends_streams_with_a_reason(api: Api):
    from twinedge.runtime.api import close_event_streams

    with _ws(api) as ws, api.client.stream("GET", "/api/2/events", headers=api.h()) as r:
        _wait_subscribers(api, 2)
        assert api.client.portal.call(close_event_streams, api.service) == 2
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        events = _sse_events(r.iter_lines(), 5)
    assert e.value.code == 1001 and e.value.reason == "server shutting down"
    assert events[-1]["event"] == "close"
    assert json.loads(events[-1]["data"]) == {"reason": "server shutting down"}
    assert api.service.subscribers == 0
