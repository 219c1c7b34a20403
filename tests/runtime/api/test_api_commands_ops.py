"""Commands (503 / 408 / 200), health, metrics, OpenAPI and the dashboard files."""

from __future__ import annotations

import asyncio
from typing import Any

from .conftest import Api, problem_of

T = "/api/2/things/fleet:car-1"


class SilentDevice:
    """The device side of the MQTT bridge, reduced to what the service calls; it records
    commands and never answers."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, Any]] = []
        self.desired: list[tuple[str, str, dict]] = []

    async def publish_desired(self, thing_id: str, feature_id: str, desired: dict) -> None:
        self.desired.append((thing_id, feature_id, desired))

    async def publish_command(
        self, thing_id: str, subject: str, correlation_id: str, payload: Any
    ) -> None:
        self.commands.append((thing_id, subject, payload))

    async def publish_error(self, thing_id: str, problem: dict) -> None:
        pass


class EchoDevice(SilentDevice):
    def __init__(self, service) -> None:
        super().__init__()
        self.service = service

    async def publish_command(
        self, thing_id: str, subject: str, correlation_id: str, payload: Any
    ) -> None:
        await super().publish_command(thing_id, subject, correlation_id, payload)
        asyncio.get_running_loop().call_soon(
            self.service.command_response, thing_id, correlation_id, {"ok": True, "got": payload}
        )


def test_command_without_device_connection_is_503(api: Api):
    api.put_thing("fleet:car-1", {})
    doc = problem_of(api.client.post(f"{T}/inbox/messages/reboot", json={}, headers=api.h()), 503)
    assert "MQTT" in doc["detail"]


def test_command_timeout_is_408(api: Api):
    api.put_thing("fleet:car-1", {})
    device = SilentDevice()
    api.service.outbound = device
    r = api.client.post(
        f"{T}/inbox/messages/reboot", params={"timeout": 0.2}, json={"delay_s": 1}, headers=api.h()
    )
    doc = problem_of(r, 408)
    assert "did not answer" in doc["detail"]
    assert device.commands == [("fleet:car-1", "reboot", {"delay_s": 1})]
    assert api.service.metrics["command_timeouts_total"] == 1


def test_command_answer_and_desired_push(api: Api):
    api.put_thing("fleet:car-1", {})
    device = EchoDevice(api.service)
    api.service.outbound = device
    r = api.client.post(f"{T}/inbox/messages/ping", json={"n": 1}, headers=api.h())
    assert r.status_code == 200 and r.json() == {"ok": True, "got": {"n": 1}}
    r = api.client.post(f"{T}/inbox/messages/ping", headers=api.h())  # no body: payload null
    assert r.json() == {"ok": True, "got": None}
    problem_of(api.client.post(f"{T}/inbox/messages/ping", headers=api.h("city")), 404)
    # desired properties written over HTTP reach the device
    api.client.patch(f"{T}/features/lamp/desiredProperties", json={"on": True}, headers=api.h())
    api.client.put(f"{T}/features/lamp/desiredProperties/lux", json=10, headers=api.h())
    assert device.desired == [
        ("fleet:car-1", "lamp", {"on": True}),
        ("fleet:car-1", "lamp", {"on": True, "lux": 10}),
    ]


def test_healthz(api: Api):
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["writer"] and r.json()["store"]
    # the writer gone -> 503 problem
    task = api.service._writer.task
    api.service._writer.task = None
    try:
        doc = problem_of(api.client.get("/healthz"), 503)
        assert doc["writer"] is False and "writer" in doc["detail"]
    finally:
        api.service._writer.task = task


def test_metrics(api: Api):
    api.put_thing("fleet:car-1", {})
    api.client.put("/api/2/things/fleet:car-1", json={"colour": 1}, headers=api.h())
    api.call(api.service.device_report, "fleet:car-1", {"battery": {"level": 3}})
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'twinedge_updates_total{source="http"} 1.0',
        'twinedge_updates_total{source="mqtt"} 1.0',
        "twinedge_events_published_total",
        "twinedge_events_dropped_total 0.0",
        "twinedge_subscribers 0.0",
        "twinedge_writer_queue_depth 0.0",
        "twinedge_things 1.0",
        'twinedge_commit_latency_seconds{quantile="0.5"}',
        'twinedge_http_requests_total{method="PUT",route="/api/2/things/{thingId}",status="201"} 1.0',
        "twinedge_http_request_duration_seconds_bucket",
        "twinedge_event_lag_seconds_count",
    ):
        assert needle in text, needle
    # a report for an unknown thing is rejected by the writer, counted by source
    try:
        api.call(api.service.device_report, "fleet:ghost", {"battery": {"level": 3}})
    except Exception:
        pass
    assert 'twinedge_rejected_total{source="mqtt"} 1.0' in api.client.get("/metrics").text


def test_openapi_document(api: Api):
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    for p in (
        "/api/2/things/{thingId}",
        "/api/2/things/{thingId}/attributes/{path}",
        "/api/2/things/{thingId}/features/{featureId}/desiredProperties/{path}",
        "/api/2/things/{thingId}/delta",
        "/api/2/things/{thingId}/history",
        "/api/2/things/{thingId}/inbox/messages/{subject}",
        "/api/2/search/things",
        "/api/2/search/things/count",
        "/api/2/search/things/aggregate",
        "/api/2/groups",
        "/api/2/groups/{name}",
        "/api/2/keys",
        "/api/2/grants",
        "/api/2/events",
        "/healthz",
        "/metrics",
    ):
        assert p in paths, p
    assert set(paths["/api/2/things/{thingId}"]) == {"get", "put", "patch", "delete"}
    schemas = doc["components"]["schemas"]
    assert {"ThingIn", "Thing", "Feature", "Problem", "GroupIn", "KeyIn", "GrantIn"} <= set(schemas)
    assert "HTTPValidationError" not in schemas
    assert all("422" not in op["responses"] for ops in paths.values() for op in ops.values())
    put = paths["/api/2/things/{thingId}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ThingIn"
    }
    patch = paths["/api/2/things/{thingId}"]["patch"]
    assert "application/merge-patch+json" in patch["requestBody"]["content"]
    assert api.client.get("/docs").status_code == 404  # no CDN-backed docs


def test_dashboard_is_served_without_remote_assets(api: Api):
    r = api.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for asset in ("/dashboard/app.js", "/dashboard/style.css"):
        assert asset in page
        assert api.client.get(asset).status_code == 200
    for text in (
        page,
        api.client.get("/dashboard/app.js").text,
        api.client.get("/dashboard/style.css").text,
    ):
        text = text.replace("http://www.w3.org/2000/svg", "")  # a namespace name, not a load
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
