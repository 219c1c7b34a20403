"""Fixtures: the real app on the real SQLite store in a temporary directory.

``api`` is a :class:`Api`: a Starlette ``TestClient`` whose portal (one event loop)
runs the service, the admin token, and helpers to make domain keys and things.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")

from starlette.testclient import TestClient  # noqa: E402

from twinedge.runtime.api import create_app  # noqa: E402
from twinedge.runtime.service import TwinService  # noqa: E402


def _open_store(url: str):
    try:
        from twinedge.runtime.store import open_store
    except ImportError as e:  # pragma: no cover - only while the store is being written
        pytest.skip(f"twinedge.runtime.store.open_store is not available yet ({e})")
    return open_store(url)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    client: TestClient
    service: TwinService
    admin: str
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def key(self, domain: str, role: str = "write") -> str:
        """A token of ``domain`` with ``role`` (made once through the API)."""
        if (domain, role) not in self.keys:
            r = self.client.post(
                "/api/2/keys", json={"domain": domain, "role": role}, headers=bearer(self.admin)
            )
            assert r.status_code == 201, r.text
            self.keys[(domain, role)] = r.json()["token"]
        return self.keys[(domain, role)]

    def h(self, domain: str | None = "fleet", role: str = "write", **extra: str) -> dict[str, str]:
        """Headers for a key of ``domain`` (None: the service admin)."""
        token = self.admin if domain is None else self.key(domain, role)
        return {**bearer(token), **extra}

    def put_thing(self, thing_id: str, body: dict[str, Any], domain: str = "fleet") -> Any:
        r = self.client.put(f"/api/2/things/{thing_id}", json=body, headers=self.h(domain))
        assert r.status_code in (201, 204), r.text
        return r

    def call(self, fn, *args, **kw):
        """Run a coroutine function of the service on the app's event loop."""
        assert self.client.portal is not None
        return self.client.portal.call(lambda: fn(*args, **kw))


def make_api(tmp_path: Path, url: str | None = None, **app_kw: Any) -> Iterator[Api]:
    service = TwinService(_open_store(url or f"sqlite:///{tmp_path}/t.db"))
    app = create_app(service, manage_service=True, **app_kw)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.portal is not None
        admin = client.portal.call(service.ensure_admin_key)
        assert admin
        yield Api(client, service, admin)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def api2(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """Like ``api``, once on SQLite and once on PostgreSQL."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_schema_url")
    yield from make_api(tmp_path, url)


def problem_of(r: Any, status: int) -> dict[str, Any]:
    """Assert ``r`` is an RFC 7807 problem with ``status`` and return it."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc["status"] == status
    assert doc["title"] and doc["detail"] and doc["type"].startswith("https://")
    assert "Traceback" not in r.text
    return doc


@dataclass
class LiveServer:
    """The app served by uvicorn on 127.0.0.1 in a background thread (its own loop)."""

    base_url: str
    service: TwinService
    admin: str
    loop: Any

    def call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


@contextlib.contextmanager
def live_server(
    db_dir: Path, url: str | None = None, log_level: str = "warning", **app_kw: Any
) -> Iterator[LiveServer]:
    import asyncio
    import socket
    import threading
    import time

    import uvicorn

    service = TwinService(_open_store(url or f"sqlite:///{db_dir}/t.db"))
    app = create_app(service, manage_service=True, **app_kw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=2, ws_ping_interval=15
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name="twinedge-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    live = LiveServer(f"http://127.0.0.1:{port}", service, "", loop)
    live.admin = live.call(service.ensure_admin_key())
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
