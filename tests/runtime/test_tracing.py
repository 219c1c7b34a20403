"""OpenTelemetry traces of `twinedge serve --otel`: the SDK's in-memory exporter (a real
exporter) collects the spans of a real server on loopback: a SERVER span per request
named by its route template, and a span per writer batch."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from twinedge.runtime.app import ServeConfig, Server

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace", reason="needs twinedge[otel]")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """One SDK tracer provider for the process (OpenTelemetry allows one), in memory."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):
        provider = sdk_trace.TracerProvider()
        trace.set_tracer_provider(provider)
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    return exp


def test_a_request_yields_a_server_span_and_a_writer_batch_span(tmp_path, exporter):
    cfg = ServeConfig.load(None, data_dir=str(tmp_path / "data"), port=0, mqtt="none", otel=True)

    async def main() -> None:
        server = Server(cfg)
        await server.start()
        task = asyncio.create_task(server.run())
        try:
            base = f"http://127.0.0.1:{server.port}"
            admin = (tmp_path / "data" / "admin.token").read_text().strip()
            async with httpx.AsyncClient(base_url=base, timeout=5) as c:
                for _ in range(100):
                    if server.http.started:
                        break
                    await asyncio.sleep(0.05)
                exporter.clear()
                r = await c.post(
                    "/api/2/keys",
                    json={"domain": "ops", "role": "admin"},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert r.status_code == 201
                key = {"Authorization": f"Bearer {r.json()['token']}"}
                parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                r = await c.put(
                    "/api/2/things/ops:t1",
                    json={"attributes": {"a": 1}},
                    headers={**key, "traceparent": parent},
                )
                assert r.status_code == 201
                r = await c.get("/api/2/things/ops:missing", headers=key)
                assert r.status_code == 404
        finally:
            server.http.should_exit = True
            await task

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    server_spans = [s for s in spans if s.kind == trace.SpanKind.SERVER]
    put = [s for s in server_spans if s.attributes["http.request.method"] == "PUT"]
    assert len(put) == 1
    (put_span,) = put
    assert put_span.attributes["url.path"] == "/api/2/things/ops:t1"
    assert put_span.attributes["http.response.status_code"] == 201
    assert put_span.name == f"PUT {put_span.attributes['http.route']}"
    assert "{" in put_span.name  # a route template, not the raw path
    # the caller's traceparent: the request joins its trace
    assert f"{put_span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{put_span.parent.span_id:016x}" == "b7ad6b7169203331"
    get = [s for s in server_spans if s.attributes["http.request.method"] == "GET"]
    assert [s.attributes["http.response.status_code"] for s in get] == [404]
    assert get[0].status.status_code != trace.StatusCode.ERROR  # a 4xx is not a server error
    # the PUT is the one write through the writer (keys are stored by access control)
    batches = [s for s in spans if s.name == "twinedge.writer.batch"]
    assert len(batches) == 1
    (batch,) = batches
    assert batch.kind == trace.SpanKind.INTERNAL
    assert dict(batch.attributes) == {"twinedge.batch.size": 1, "twinedge.batch.failed": 0}
    # the batch ran while the PUT waited for it
    assert put_span.start_time <= batch.start_time <= batch.end_time <= put_span.end_time


def test_tracing_off_by_default_and_the_missing_exporter_is_one_line(tmp_path):
    assert ServeConfig.load(None).otel is False
    env = {"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "zipkin-nope", "TWINEDGE_OTEL": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--port", "0", "--mqtt", "none",
         "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": ":".join(sys.path)},
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (
        "error: OTEL_TRACES_EXPORTER: got 'zipkin-nope'; expected otlp or console"
    )
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_the_fallback_middleware_for_fastapi_without_native_telemetry(exporter):
    """:class:`TraceMiddleware` (used where FastAPI does not trace requests itself) on a
    plain Starlette app, which has no telemetry of its own."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from twinedge.runtime.tracing import TraceMiddleware

    async def thing(request):
        code = 503 if request.path_params["thing_id"] == "down" else 200
        return PlainTextResponse("x", status_code=code)

    app = Starlette(routes=[Route("/things/{thing_id}", thing)])
    app.add_middleware(TraceMiddleware, tracer=trace.get_tracer("test"))

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/things/a:1")).status_code == 200
            assert (await c.get("/things/down")).status_code == 503

    exporter.clear()
    asyncio.run(main())
    spans = exporter.get_finished_spans()
    assert [(s.name, s.kind) for s in spans] == [
        ("GET /things/{thing_id}", trace.SpanKind.SERVER)
    ] * 2
    ok, down = spans
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "url.path": "/things/a:1",
        "http.route": "/things/{thing_id}",
        "twinedge.thing_id": "a:1",
        "http.response.status_code": 200,
    }
    assert ok.status.status_code == trace.StatusCode.UNSET
    assert down.status.status_code == trace.StatusCode.ERROR
