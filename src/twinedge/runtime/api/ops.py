"""Operations: ``/healthz``, ``/metrics`` (Prometheus text) and the dashboard at ``/``.

Both report the service's dependencies as of the request: the store (a read answered in
time; the last commit and the last commit error) and, when the app was given its MQTT
front end, the embedded broker (listening) or the bridge to an external broker
(connected). A dependency that is down makes ``/healthz`` answer 503 with ``detail``
saying which; ``/metrics`` has ``twinedge_store_up`` and ``twinedge_mqtt_up`` (1 or 0)
for alerting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import Scope

from twinedge.gcpauses import PAUSES
from twinedge.gcpauses import status as gc_status
from twinedge.runtime.api.models import Health, problem_responses
from twinedge.runtime.api.problems import PROBLEM_JSON
from twinedge.runtime.api.redact import redact
from twinedge.runtime.service import TwinService

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"

router = APIRouter()

_HELP = {
    "updates": "Accepted changes of twins, by source (http, mqtt = device ingest, orchestrator)",
    "rejected": "Rejected mutations (bad input, failed precondition, ...), by source",
    "events_published": "CloudEvents published to subscribers",
    "events_dropped": "Subscriptions cut off because the client was too slow",
    "commit_failures": "Batches the store failed to commit",
    "command_timeouts": "Commands the device did not answer in time",
    "access_denied": "Reads or writes refused because the thing belongs to another domain",
    "desired_publish_failures": "Desired-state messages that could not be sent to a device",
    "history_pruned": "History rows removed by retention",
}
_ALWAYS = ("events_published", "events_dropped", "commit_failures")
_LABELLED = ("updates", "rejected")


class ServiceCollector:
    """Exposes the service's own counters and gauges at scrape time (and the health of
    its dependencies, as :attr:`health` holds it: set just before each scrape)."""

    def __init__(self, service: TwinService) -> None:
        self.service = service
        self.health: dict[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._dependencies()
        yield from self._counters()
        yield from _gc_pauses()

    def _dependencies(self) -> Iterator[Metric]:
        h = self.health
        if h is None:
            return
        yield GaugeMetricFamily(
            "twinedge_store_up",
            "1 when the store answered a read within 2 s at this scrape, else 0",
            value=1.0 if h.get("store") else 0.0,
        )
        err = self.service.last_commit_error
        if err is not None:
            yield GaugeMetricFamily(
                "twinedge_last_commit_error_timestamp_seconds",
                "Unix time of the last failed store commit",
                value=err[0],
            )
        ok = self.service.last_commit_ok_s
        if ok is not None:
            yield GaugeMetricFamily(
                "twinedge_last_commit_timestamp_seconds",
                "Unix time of the last committed batch",
                value=ok,
            )
        mq = h.get("mqtt")
        if isinstance(mq, dict):
            fam = GaugeMetricFamily(
                "twinedge_mqtt_up",
                "1 when the embedded MQTT broker listens / the bridge to the external broker "
                "is connected, else 0",
                labels=["mode"],
            )
            fam.add_metric([str(mq.get("mode"))], 1.0 if mq.get("up") else 0.0)
            yield fam
            if mq.get("mode") == "external":
                yield CounterMetricFamily(
                    "twinedge_mqtt_connections",
                    "Connections the bridge made to the external broker",
                    value=float(mq.get("connections", 0)),
                )
            else:
                yield GaugeMetricFamily(
                    "twinedge_mqtt_clients",
                    "Devices connected to the embedded broker",
                    value=float(mq.get("clients", 0)),
                )

    def _counters(self) -> Iterator[Metric]:
        s = self.service
        plain: dict[str, float] = {}
        labelled: dict[str, dict[str, float]] = {b: {} for b in _LABELLED}
        for key, count in list(s.metrics.items()):
            name, _, label = key.partition(":")
            base = name.removesuffix("_total")
            if label or base in _LABELLED:
                labelled.setdefault(base, {})[label] = labelled.get(base, {}).get(label, 0) + count
            else:
                plain[base] = plain.get(base, 0) + count
        if "commits_total" in s.metrics:  # as long as there was a commit to time
            plain["commit_seconds"] = s.commit_seconds_total
        for base in _ALWAYS:
            plain.setdefault(base, 0)
        for base, value in sorted(plain.items()):
            if base in labelled:
                labelled[base][""] = value
                continue
            yield CounterMetricFamily(f"twinedge_{base}", _HELP.get(base, base), value=value)
        for base, by_source in sorted(labelled.items()):
            fam = CounterMetricFamily(f"twinedge_{base}", _HELP.get(base, base), labels=["source"])
            for source, value in sorted(by_source.items()):
                fam.add_metric([source], value)
            yield fam
        yield GaugeMetricFamily("twinedge_things", "Twins in the service", value=len(s.things))
        yield GaugeMetricFamily(
            "twinedge_subscribers",
            "Open event subscriptions (SSE + WebSocket)",
            value=s.subscribers,
        )
        yield GaugeMetricFamily(
            "twinedge_writer_queue_depth", "Mutations waiting for the writer", value=s.queue_depth
        )
        window = sorted(s.commit_latency_s)
        quantiles = GaugeMetricFamily(
            "twinedge_commit_latency_seconds",
            "Store commit (group commit of one batch) latency over the last <=1000 commits",
            labels=["quantile"],
        )
        if window:
            for q in (0.5, 0.9, 0.99, 1.0):
                quantiles.add_metric([str(q)], window[min(len(window) - 1, int(q * len(window)))])
        yield quantiles
        yield GaugeMetricFamily(
            "twinedge_commit_latency_window",
            "Number of commits in the twinedge_commit_latency_seconds window",
            value=len(window),
        )


def _gc_pauses() -> Iterator[Metric]:
    """The cycle collector's pauses (:mod:`twinedge.gcpauses`): timed once ``serve``
    settled its heap."""
    if not PAUSES.installed:
        return
    count = CounterMetricFamily(
        "twinedge_gc_pauses", "Cycle collections (the process stands still)", labels=["generation"]
    )
    seconds = CounterMetricFamily(
        "twinedge_gc_pause_seconds", "Time in cycle collections", labels=["generation"]
    )
    longest = GaugeMetricFamily(
        "twinedge_gc_pause_max_seconds", "The longest cycle collection", labels=["generation"]
    )
    status = gc_status()
    for gen, g in status["generations"].items():
        count.add_metric([gen], g["count"])
        seconds.add_metric([gen], g["seconds_total"])
        longest.add_metric([gen], g["max_s"])
    yield from (count, seconds, longest)
    yield GaugeMetricFamily(
        "twinedge_gc_frozen_objects",
        "Objects frozen (not walked by the cycle collector until the next deep collection)",
        value=status["frozen"],
    )
    yield CounterMetricFamily(
        "twinedge_gc_refreezes",
        "Full collections whose survivors were frozen again",
        value=status["refreezes"],
    )
    yield CounterMetricFamily(
        "twinedge_gc_deep_collections",
        "Full collections that walked the whole heap (one per interval, frees frozen cycles)",
        value=status["deep_collections"],
    )


class ApiMetrics:
    """Per-app Prometheus registry (no global state, so several apps can coexist)."""

    def __init__(self, service: TwinService) -> None:
        self.service = service
        self.mqtt: Any = None  # the MQTT front end, whose state is reported
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ServiceCollector(service)
        self.registry.register(self.collector)
        self.requests = Counter(
            "twinedge_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twinedge_http_request_duration_seconds",
            "HTTP request duration by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.events_sent = Counter(
            "twinedge_events_sent",
            "CloudEvents written to clients, by transport",
            ["transport"],
            registry=self.registry,
        )
        self.event_lag = Histogram(
            "twinedge_event_lag_seconds",
            "From the change's commit batch to the event being handed to a client connection",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
        )

    def observe_http(self, scope: Scope, status: int, duration_s: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.requests.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(duration_s)

    def observe_event(self, event: dict[str, Any], transport: str) -> None:
        self.events_sent.labels(transport).inc()
        try:
            t = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError):
            return
        self.event_lag.observe(max(0.0, time.time() - t))

    async def exposition(self) -> bytes:
        """The Prometheus text, with the dependencies checked now."""
        self.collector.health = await health(self.service, mqtt=self.mqtt)
        return _generate_latest(self.registry)


async def health(service: TwinService, timeout_s: float = 2.0, mqtt: Any = None) -> dict[str, Any]:
    """See :meth:`TwinService.health`; with ``mqtt`` (an embedded broker or an external
    bridge) its ``state()`` as ``mqtt``, and ``status`` unavailable when it is not up.
    Messages are redacted (a store error may quote its URL)."""
    doc = await service.health(timeout_s)
    if mqtt is not None:
        state = mqtt.state()
        doc["mqtt"] = state
        if not state.get("up") and doc["status"] == "ok":
            doc["status"] = "unavailable"
            doc["detail"] = (
                f"the MQTT bridge is not connected to the broker at {state.get('broker')} "
                f"(retrying): {state.get('lastError') or 'connection lost'}"
                if state.get("mode") == "external"
                else f"the embedded MQTT broker does not listen on {state.get('listen')}"
            )
    err = doc.get("commits", {}).get("lastError")
    if err:
        err["message"] = redact(err["message"])
    if "detail" in doc:
        doc["detail"] = redact(doc["detail"])
    return doc


@router.get(
    "/healthz",
    operation_id="health",
    response_model=Health,
    responses=problem_responses(503),
    tags=["operations"],
)
async def healthz(request: Request) -> JSONResponse:
    """200 when the writer is alive, the store answers, MQTT is up (``mqtt``: the embedded
    broker listens, or the bridge is connected to the external broker) and, with
    ``--network``, the orchestrator's cycle task runs (``orchestrator`` says its network,
    cycles, the age of the last cycle and its error); 503 otherwise (a problem document
    with the same fields, ``detail`` saying what is down). ``commits`` has the time of
    the last committed batch and the last commit error. Needs no key."""
    doc = await health(request.app.state.service, mqtt=getattr(request.app.state, "mqtt", None))
    live = getattr(request.app.state, "live", None)
    if live is not None:
        doc["orchestrator"] = live.health()
        if not doc["orchestrator"]["running"] and doc["status"] == "ok":
            doc["status"] = "unavailable"
            doc["detail"] = "the orchestrator's cycle task is not running"
    if doc["status"] == "ok":
        return JSONResponse(doc)
    problem = {
        "type": "https://twinedge.dev/problems/service-unavailable",
        "title": "Service Unavailable",
        "status": 503,
        **{k: v for k, v in doc.items() if k != "status"},
    }
    return JSONResponse(problem, status_code=503, media_type=PROBLEM_JSON)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
    },
    tags=["operations"],
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition. Needs no key (protect it at the network edge)."""
    body = await request.app.state.metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def dashboard(
    token: Annotated[str | None, Query(description="read by the page, not the server")] = None,
) -> FileResponse:
    """The dashboard page; its script reads ``?token=`` (the server never does)."""
    return FileResponse(DASHBOARD_DIR / "index.html", headers={"Cache-Control": "no-cache"})
