"""Inputs that used to crash the service (500) and are now 400 problem documents that say
what was wrong; every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from twinedge.errors import InvalidInput
from twinedge.runtime.api import ops

from .conftest import Api, bearer, live_server, problem_of

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


def _b64(o: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("=")


def _unb64(c: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))


@pytest.mark.parametrize("sort", ["+attributes/n", "-_revision", "+_host,-attributes/s", ""])
def test_forged_or_mismatched_cursors_are_400(api2: Api, sort: str):
    h = _seed(api2)
    c = api2.client
    params = {"limit": 1, "sort": sort}
    first = c.get(S, params=params, headers=h)
    assert first.status_code == 200, first.text
    good = _unb64(first.json()["cursor"])
    n = len(good["k"])
    forged = [
        {"q": good["q"], "k": [{}] * n},
        {"q": good["q"], "k": [[1]] * n},
        {"q": good["q"], "k": [10**30] * n},
        {"q": good["q"], "k": [True] * n},
        {"q": good["q"], "k": [None] * n},
        {"q": good["q"], "k": [1.5] * n},
        {"q": good["q"], "k": [-1] * n},
        {"q": good["q"], "k": good["k"][:-1]},
        {"q": good["q"], "k": [*good["k"], "x"]},
        {"q": good["q"], "k": "x"},
        {"q": "00000000", "k": good["k"]},
        {"k": good["k"]},
        [good["q"], good["k"]],
        "x",
        12,
    ]
    for doc in forged:
        r = c.get(S, params={**params, "cursor": _b64(doc)}, headers=h)
        assert "cursor" in problem_of(r, 400)["detail"], doc
    raw = [
        "!!!",
        "e30",  # {} in base64
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        base64.urlsafe_b64encode(b'{"q":"\\ud800","k":[]}').decode(),
        base64.urlsafe_b64encode(b'{"q":"a\\u0000","k":[]}').decode(),
        base64.urlsafe_b64encode(b'{"q":1e400}').decode(),
        base64.urlsafe_b64encode(b"[" * 10_000).decode(),
        "A" * 60_000,
    ]
    for cur in raw:
        r = c.get(S, params={**params, "cursor": cur}, headers=h)
        assert "cursor" in problem_of(r, 400)["detail"], cur[:40]
    # a cursor made for another sort
    other = c.get(S, params={"limit": 1, "sort": "-attributes/kind"}, headers=h).json()["cursor"]
    problem_of(c.get(S, params={**params, "cursor": other}, headers=h), 400)
    # the genuine cursor still pages through everything
    seen, cur = [], first.json()["cursor"]
    seen += [i["thingId"] for i in first.json()["items"]]
    while cur:
        page = c.get(S, params={**params, "cursor": cur}, headers=h).json()
        seen += [i["thingId"] for i in page["items"]]
        cur = page["cursor"]
    assert sorted(seen) == ["fleet:t0", "fleet:t1", "fleet:t2"]


def test_sort_keys_are_bounded(api2: Api):
    h = _seed(api2)
    c = api2.client
    for n in (17, 500):
        sort = ",".join(f"+attributes/f{i}" for i in range(n))
        doc = problem_of(c.get(S, params={"sort": sort}, headers=h), 400)
        assert "at most 16 fields" in doc["detail"]
    sort = ",".join(f"-attributes/f{i}" for i in range(15)) + ",+attributes/n"
    r = c.get(S, params={"sort": sort, "limit": 1}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["thingId"] == "fleet:t0"
    r = c.get(S, params={"sort": sort, "limit": 1, "cursor": r.json()["cursor"]}, headers=h)
    assert r.json()["items"][0]["thingId"] == "fleet:t1"


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:59:59+01:00",
        "9999-12-31T23:59:59-23:59",
        "5000-01-01T00:00:00Z",
        "-62135596801",
        "1e300",
        "-1e300",
        "9" * 30,
    ],
)
def test_times_outside_the_range_are_400(api2: Api, at: str):
    h = _seed(api2)
    c = api2.client
    for url, name in [
        ("/api/2/things/fleet:t0", "at"),
        ("/api/2/things/fleet:t0/attributes/n", "at"),
        ("/api/2/things/fleet:t0/history", "from"),
        ("/api/2/things/fleet:t0/history", "to"),
    ]:
        doc = problem_of(c.get(url, params={name: at}, headers=h), 400)
        assert "0001-01-01T00:00:00Z" in doc["detail"], doc
        assert doc["invalid-params"][0]["name"] == name


def test_times_at_the_edges_of_the_range(api2: Api):
    h = _seed(api2)
    c = api2.client
    for at in ("0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00", "4999-12-31T23:59:59Z"):
        r = c.get("/api/2/things/fleet:t0", params={"at": at}, headers=h)
        want = 404 if at.startswith("0") else 200
        assert r.status_code == want, r.text


@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_huge_etags_name_no_revision(api2: Api, header: str, method: str):
    h = _seed(api2)
    c = api2.client
    huge = '"' + "9" * 5000 + '"'
    url = "/api/2/things/fleet:t0/attributes/n"
    body = {"json": 7} if method != "DELETE" else {}
    ctype = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    r = c.request(method, url, headers={**h, **ctype, header: huge}, **body)
    if header == "If-Match":  # no revision has 5,000 digits: the precondition fails
        doc = problem_of(r, 412)
        assert len(doc["detail"]) < 300 and doc["currentRevision"] == 1
    else:  # ... and If-None-Match holds
        assert r.status_code == 204, r.text
    r = c.get("/api/2/things/fleet:t0", headers={**h, "If-None-Match": huge})
    assert r.status_code == 200
    rev = c.get("/api/2/things/fleet:t0", headers=h).json()["_revision"]
    r = c.put(url, json=1, headers={**h, header: f'"{rev}", "' + "1" * 30 + '"'})
    assert r.status_code == (204 if header == "If-Match" else 412), r.text


def _aborted_upload(app: Any, path: str, token: str) -> list[dict]:
    """Send half of a body, then disconnect (what uvicorn tells the app when the client's
    connection drops mid-upload); returns what the app sent."""
    sent: list[dict] = []
    messages = [
        {
            "type": "http.request",
            "body": b'{"attributes": {"a": "' + b"x" * 1000,
            "more_body": True,
        },
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"5000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return sent


def test_an_aborted_upload_is_a_client_disconnect_not_a_500(
    api: Api, caplog: pytest.LogCaptureFixture
):
    token = api.key("fleet")
    with caplog.at_level("DEBUG"):
        sent = _aborted_upload(api.client.app, "/api/2/things/fleet:up", token)
    assert sent == []  # nobody to answer
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    lines = [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()]
    assert lines == [
        "client disconnected during PUT /api/2/things/fleet:up before the request was read"
    ]
    metrics = api.client.get("/metrics").text
    assert 'route="/api/2/things/{thingId}",status="499"' in metrics
    assert 'status="500"' not in metrics
    assert api.client.get("/api/2/things/fleet:up", headers=api.h()).status_code == 404


def test_an_aborted_upload_over_a_real_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    seen = threading.Event()
    observe = ops.ApiMetrics.observe_http

    def observe_http(self: Any, scope: Any, status: int, duration_s: float) -> None:
        observe(self, scope, status, duration_s)
        if status == 499:
            seen.set()

    monkeypatch.setattr(ops.ApiMetrics, "observe_http", observe_http)
    with caplog.at_level("DEBUG"), live_server(tmp_path) as live:
        with httpx.Client(base_url=live.base_url, headers=bearer(live.admin)) as http:
            token = http.post("/api/2/keys", json={"domain": "fleet", "role": "write"})
            token = token.json()["token"]
            host, port = live.base_url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port))) as s:
                s.sendall(
                    b"PUT /api/2/things/fleet:up HTTP/1.1\r\nHost: x\r\n"
                    + f"Authorization: Bearer {token}\r\n".encode()
                    + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                    + b'{"attributes": {"a": "'
                    + b"x" * 5000
                )
            assert seen.wait(30), "the aborted request was never counted"
            metrics = http.get("/metrics").text
            assert 'route="/api/2/things/{thingId}",status="499"' in metrics
            assert 'status="500"' not in metrics
            assert http.get("/api/2/things/fleet:up").status_code == 404
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_query_tokens_never_reach_the_log(tmp_path: Path):
    from websockets.sync.client import connect

    lines = _Lines()
    loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error", "twinedge")]
    try:
        with live_server(tmp_path, log_level="info") as live:
            for lg in loggers:  # after uvicorn configured its loggers (that drops handlers)
                lg.addHandler(lines)
            secret = live.admin
            with httpx.Client(base_url=live.base_url) as http:
                assert (
                    http.get("/api/2/events", params={"token": "te_forged_sekrit"}).status_code
                    == 401
                )
                with http.stream(
                    "GET", f"/api/2/events?filter=exists(thingId)&token={secret}"
                ) as r:
                    assert r.status_code == 200
                r = http.get(f"/api/2/search/things?%74oken={secret}&limit=1")
                # search reads the header only: a token parameter is refused, unechoed
                assert r.status_code == 400 and secret not in r.text
                assert r.json()["error"] == "twinedge:query.parameter.unknown"
            ws_url = live.base_url.replace("http://", "ws://") + "/api/2/events/ws"
            with connect(f"{ws_url}?TOKEN=x&token={secret}", open_timeout=10):
                pass
    finally:
        for lg in loggers:
            lg.removeHandler(lines)
    text = "\n".join(lines.lines)
    assert "token=***" in text and "/api/2/events/ws?TOKEN=***&token=***" in text, text
    assert "%74oken=***" in text
    assert secret not in text and "sekrit" not in text, text


def test_our_own_log_lines_are_redacted_too(api: Api, caplog: pytest.LogCaptureFixture):
    with caplog.at_level("INFO"):
        logging.getLogger("twinedge.api").warning("GET %s", "/api/2/events?token=te_a_sekrit")
        logging.getLogger("twinedge.service").info("seen /x?a=1&token=te_b_sekrit&b=2")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "sekrit" not in text and text.count("token=***") == 2, text


def test_the_service_itself_refuses_times_before_year_1(api2: Api):
    _seed(api2)
    p = api2.call(api2.service.authenticate, api2.admin)
    for at in (-62_135_600_400.0, -1e11, 95_617_584_000.0):  # 0001-01-01T00:00:00+01:00, ...
        with pytest.raises(InvalidInput) as e:
            api2.call(api2.service.get_thing, p, "fleet:t0", at=at)
        assert "between the years 1 and 5000" in e.value.detail
