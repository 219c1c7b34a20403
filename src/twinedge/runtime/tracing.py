"""OpenTelemetry traces of ``twinedge serve`` (optional: ``pip install twinedge[otel]``).

Enabled with ``--otel`` or ``TWINEDGE_OTEL=1``. Spans:

* one ``SERVER`` span per HTTP request (and WebSocket session), named
  ``METHOD /route/template`` (the route's template, not the raw path, so span names
  stay few), with the semantic-convention attributes ``http.request.method``,
  ``url.path``, ``http.route`` and ``http.response.status_code``; a 5xx answer sets the
  span's status to error. An incoming W3C ``traceparent`` header is honoured, so the
  request joins its caller's trace. FastAPI releases with native telemetry make these
  spans themselves (with spans of the endpoint below them) once a tracer provider is
  installed; for older ones :class:`TraceMiddleware` makes them.
* one ``INTERNAL`` span per writer batch, ``twinedge.writer.batch``, with the number of
  mutations (``twinedge.batch.size``), the changes committed (``twinedge.batch.changes``)
  and, when the store failed, the exception. A request's span and the batch that
  committed its write are separate traces (the writer commits many requests at once);
  the request span carries ``twinedge.thing_id`` where the route names a thing.

Where spans go: :func:`configure` sets up the SDK's tracer provider with a batching
exporter chosen by the standard ``OTEL_TRACES_EXPORTER`` variable (``otlp``, the default,
needs ``opentelemetry-exporter-otlp-proto-http`` and reads ``OTEL_EXPORTER_OTLP_*``;
``console`` prints spans), unless the application has set a tracer provider of its own
already (as the tests do, with the SDK's in-memory exporter). Only this module imports
OpenTelemetry; without ``--otel`` nothing of it is loaded.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twinedge.errors import TwinedgeError

TRACER_NAME = "twinedge"


class TracingUnavailable(TwinedgeError):
    """``--otel`` was asked for, but OpenTelemetry is not installed."""


def _require() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider  # noqa: F401
    except ImportError:
        raise TracingUnavailable(
            "--otel / TWINEDGE_OTEL: OpenTelemetry is not installed; "
            "pip install 'twinedge[otel]' (or leave tracing off)"
        ) from None
    return trace


def configure() -> None:
    """Install the SDK's tracer provider with the exporter ``OTEL_TRACES_EXPORTER`` names,
    unless a real (SDK) provider is installed already.

    Raises:
        TracingUnavailable: the SDK (or the chosen exporter) is not installed, or the
            exporter is unknown.
    """
    trace = _require()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    exporter: Any
    if name == "console":
        exporter = ConsoleSpanExporter()
    elif name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TracingUnavailable(
                "OTEL_TRACES_EXPORTER=otlp: the OTLP exporter is not installed; "
                "pip install 'twinedge[otel]' (or OTEL_TRACES_EXPORTER=console)"
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise TracingUnavailable(f"OTEL_TRACES_EXPORTER: got {name!r}; expected otlp or console")
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "twinedge")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def instrument_app(app: Any, service: Any) -> None:
    """Trace the HTTP requests of ``app`` and the writer batches of ``service``.

    Raises:
        TracingUnavailable: OpenTelemetry is not installed.
    """
    trace = _require()
    tracer = trace.get_tracer(TRACER_NAME)
    if not fastapi_traces_requests():
        app.add_middleware(TraceMiddleware, tracer=tracer)
    service.trace_batches(BatchTracer(tracer))


def fastapi_traces_requests() -> bool:
    """Whether FastAPI makes the request spans itself (its native telemetry, in recent
    releases: on as soon as a tracer provider is installed); older releases get
    :class:`TraceMiddleware`."""
    import importlib.util

    return importlib.util.find_spec("fastapi.telemetry") is not None


class TraceMiddleware:
    """ASGI middleware: a ``SERVER`` span around each HTTP request and WebSocket."""

    def __init__(self, app: Any, tracer: Any) -> None:
        self.app, self.tracer = app, tracer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
        path = scope.get("path", "")
        status: dict[str, int] = {}

        async def send_and_note(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
            f"{method} {path}",
            context=propagate.extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            try:
                await self.app(scope, receive, send_and_note)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                params = scope.get("path_params", {})
                thing = params.get("thing_id", params.get("thingId"))
                if isinstance(thing, str):
                    span.set_attribute("twinedge.thing_id", thing)
                if "code" in status:
                    span.set_attribute("http.response.status_code", status["code"])
                    if status["code"] >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))


class BatchTracer:
    """What the writer calls around each batch: a span per batch (see the module
    docstring)."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def batch(self, size: int) -> Any:
        """A context manager: the span of one batch of ``size`` mutations; the writer
        sets ``twinedge.batch.changes`` on it."""
        from opentelemetry import trace

        return self.tracer.start_as_current_span(
            "twinedge.writer.batch",
            kind=trace.SpanKind.INTERNAL,
            attributes={"twinedge.batch.size": size},
            start_time=time.time_ns(),
        )
