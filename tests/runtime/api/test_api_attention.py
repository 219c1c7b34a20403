"""Attention streams of ``twinedge serve`` (docs/attention.md): a real server on
127.0.0.1 (uvicorn) with an injected clock, real clients (httpx for SSE, websockets for
WebSocket). The budget reads the test's clock, so which event goes when is decided by
the test, not by timing; waits are bounded polls of the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from .conftest import LiveServer, bearer, live_server


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _until(pred: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, Clock, httpx.Client]]:
    clock = Clock()
    with live_server(tmp_path, clock=clock) as live:
        with httpx.Client(base_url=live.base_url, headers=bearer(live.admin)) as admin:
            r = admin.post("/api/2/keys", json={"domain": "fleet", "role": "write"})
            assert r.status_code == 201, r.text
            token = r.json()["token"]
        with httpx.Client(base_url=live.base_url, headers=bearer(token), timeout=10) as http:
            http.token = token  # type: ignore[attr-defined]
            yield live, clock, http


def _thing(http: httpx.Client, name: str, x_m: float, **attrs: Any) -> None:
    body = {
        "attributes": {"kind": "car", **attrs},
        "features": {"position": {"properties": {"x_m": x_m, "y_m": 0.0}}},
    }
    r = http.put(f"/api/2/things/fleet:{name}", json=body)
    assert r.status_code in (201, 204), r.text


def _touch(http: httpx.Client, name: str, n: int) -> None:
    r = http.patch(f"/api/2/things/fleet:{name}/attributes", json={"n": n})
    assert r.status_code == 204, r.text


def _sub(live: LiveServer) -> Any:
    _until(lambda: live.service.subscribers == 1, "the subscription did not open")
    return next(iter(live.service._events.subscriptions))


def _pending(live: LiveServer, n: int) -> None:
    sub = _sub(live)
    _until(lambda: len(sub.attention) == n, f"{n} events did not reach the subscription")


@contextmanager
def _ws(live: LiveServer, token: str, **params: Any) -> Iterator[Any]:
    q = httpx.QueryParams({"token": token, **params})
    url = live.base_url.replace("http://", "ws://") + f"/api/2/events/ws?{q}"
    with connect(url, open_timeout=10) as ws:
        yield ws


def _recv(ws: Any) -> dict:
    return json.loads(ws.recv(timeout=10))


# one event of these things is about 470 bytes (3,760 bits) as JSON: 5,000 bit/s carries
# one a second, 9,000 two
ONE_A_SECOND = "5000"


def test_ws_sends_the_most_valuable_within_the_budget_then_the_rest(served):
    live, clock, http = served
    for name, x in (("warm", 0.0), ("far", 5000.0), ("near1", 10.0), ("near2", 20.0)):
        _thing(http, name, x)
    # room for two events a second, in a 100 m circle at the origin
    with _ws(live, http.token, budget_bps="9000", region="circle:0,0,100") as ws:
        _sub(live)
        _touch(http, "warm", 1)
        _touch(http, "warm", 2)  # t = 0: the window carries these two
        assert [_recv(ws)["subject"] for _ in range(2)] == ["fleet:warm", "fleet:warm"]
        for name in ("far", "near1", "near2"):
            _touch(http, name, 1)
        _pending(live, 3)  # nothing fits at t = 0: all three wait
        clock.t = 1.0  # the window has room for two again: the two near ones
        assert {_recv(ws)["subject"] for _ in range(2)} == {"fleet:near1", "fleet:near2"}
        _pending(live, 1)
        clock.t = 2.0
        far = _recv(ws)
        assert far["subject"] == "fleet:far"
        # coalesced streams carry the whole thing
        (op,) = far["data"]["patch"]
        assert op["op"] == "replace" and op["path"] == ""
        assert op["value"]["features"]["position"]["properties"]["x_m"] == 5000.0


@pytest.mark.parametrize(("bound", "fifth"), [("5", "fleet:far"), (None, "fleet:near")])
def test_ws_staleness_bound_sends_the_starved_thing_first(served, bound, fifth):
    live, clock, http = served
    _thing(http, "near", 0.0)
    _thing(http, "far", 5000.0)
    params = {"budget_bps": ONE_A_SECOND, "region": "circle:0,0,100"}
    if bound:
        params["max_staleness_s"] = bound
    with _ws(live, http.token, **params) as ws:
        _sub(live)
        _touch(http, "near", 0)
        assert _recv(ws)["subject"] == "fleet:near"  # t = 0, the window is now full
        _touch(http, "far", 1)  # out of date from t = 0
        _touch(http, "near", 1)
        _pending(live, 2)
        got = []
        for k in range(1, 6):
            clock.t = float(k)
            got.append(_recv(ws)["subject"])
            if got[-1] == "fleet:near":
                _touch(http, "near", 10 + k)
            _pending(live, 2 if got[-1] == "fleet:near" else 1)
        # near is always worth more; far's copy turns 5 s old at t = 5
        assert got == ["fleet:near"] * 4 + [fifth]


def test_ws_batch_and_a_filter_that_only_scores(served):
    live, clock, http = served
    _thing(http, "bus", 0.0, kind="bus")
    _thing(http, "car", 0.0)
    params = {"budget_bps": ONE_A_SECOND, "match": 'eq(attributes/kind,"car")', "batch": "true"}
    with _ws(live, http.token, **params) as ws:
        _sub(live)
        _touch(http, "bus", 1)
        assert [e["subject"] for e in _recv(ws)] == ["fleet:bus"]  # alone: it goes
        _touch(http, "bus", 2)
        _touch(http, "car", 2)
        _pending(live, 2)
        clock.t = 1.0
        assert [e["subject"] for e in _recv(ws)] == ["fleet:car"]  # the match first
        clock.t = 2.0
        assert [e["subject"] for e in _recv(ws)] == ["fleet:bus"]


def test_ws_subscription_message_changes_the_interest(served):
    live, _clock, http = served
    _thing(http, "a", 0.0)
    _thing(http, "b", 3000.0)
    with _ws(live, http.token, budget_bps=ONE_A_SECOND, region="circle:0,0,100") as ws:
        sub = _sub(live)
        ws.send(json.dumps({"region": "circle:3000,0,100", "budget_bps": 100000}))
        _until(lambda: sub.attention.interest.budget_bps == 100000.0, "not reconfigured")
        _touch(http, "a", 1)
        _touch(http, "b", 1)
        assert {_recv(ws)["subject"] for _ in range(2)} == {"fleet:a", "fleet:b"}
        # bad messages are answered with the problem and change nothing
        for msg, detail in [
            ("[1]", "a subscription message is a JSON object"),
            ("{not json", "a subscription message is a JSON object"),
            ('{"budget_bps": -5}', "budget_bps: -5: expected a finite number > 0"),
            ('{"region": "hexagon:1"}', "region: 'hexagon:1': expected circle:"),
            ('{"weights": [1, 2]}', "weights: '[1, 2]': expected 4 comma-separated numbers"),
            ('{"speed": 1}', "unknown key 'speed'"),
            ('{"match": "eq(("}', ""),
        ]:
            ws.send(msg)
            err = _recv(ws)["error"]
            assert err["status"] == 400 and detail in err["detail"], (msg, err)
        assert err["pointer"] == "/match"
        assert sub.attention.interest.budget_bps == 100000.0


@pytest.mark.parametrize(
    ("params", "pointer", "detail"),
    [
        ({"budget_bps": "0"}, "/budget_bps", "budget_bps: '0': expected a finite number > 0"),
        ({"budget_bps": "fast"}, "/budget_bps", "expected a number"),
        ({"region": "circle:0,0"}, "/region", "expected 3 comma-separated numbers"),
        ({"weights": "1,1,1,-1"}, "/weights", "weights.staleness"),
        ({"max_staleness_s": "-1", "budget_bps": "1e3"}, "/max_staleness_s", "max_staleness_s"),
        ({"budget_bps": "1000", "match": "eq(("}, "/match", ""),
        ({"temperature": "0"}, "/temperature", "temperature: '0': expected a finite number > 0"),
    ],
)
def test_bad_attention_parameters(served, params, pointer, detail):
    live, _clock, http = served
    r = http.get("/api/2/events", params=params)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert detail in doc["detail"] and doc["pointer"] == pointer, doc
    url = live.base_url.replace("http://", "ws://") + "/api/2/events/ws?"
    q = httpx.QueryParams({"token": http.token, **params})
    with connect(url + str(q), open_timeout=10) as ws:
        with pytest.raises(Exception) as exc:
            ws.recv(timeout=10)
    assert exc.value.rcvd.code == 1008 and "400" in exc.value.rcvd.reason  # type: ignore[attr-defined]


def _sse(lines: Iterator[str]) -> Iterator[dict]:
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def test_sse_coalesces_a_thing_and_keeps_the_budget(served):
    live, clock, http = served
    _thing(http, "car", 0.0)
    _thing(http, "warm", 0.0)
    params = {"budget_bps": ONE_A_SECOND, "token": http.token}
    with httpx.Client(base_url=live.base_url, timeout=10) as c:
        with c.stream("GET", "/api/2/events", params=params) as r:
            assert r.status_code == 200
            events = _sse(r.iter_lines())
            _sub(live)
            _touch(http, "warm", 1)
            assert next(events)["subject"] == "fleet:warm"
            for n in (1, 2, 3):  # three changes while the window is full
                _touch(http, "car", n)
            _until(
                lambda: (
                    (p := _sub(live).attention.pending)
                    and next(iter(p.values())).payload["data"]["revision"] == 4
                ),
                "the third change did not arrive",
            )
            clock.t = 1.0
            ev = next(events)
    assert ev["subject"] == "fleet:car" and ev["data"]["revision"] == 4
    (op,) = ev["data"]["patch"]
    assert op["value"]["attributes"]["n"] == 3


def test_plain_streams_are_unchanged(served):
    live, _clock, http = served
    _thing(http, "car", 0.0)
    with _ws(live, http.token) as ws:
        _until(lambda: live.service.subscribers == 1, "no subscription")
        _touch(http, "car", 1)
        ev = _recv(ws)
        assert ev["data"]["patch"] == [{"op": "add", "path": "/attributes/n", "value": 1}]
        ws.send(json.dumps({"budget_bps": 1000}))
        err = _recv(ws)["error"]
        assert "opened without attention parameters" in err["detail"]


@pytest.mark.parametrize(
    "name",
    [
        "budget_bps",
        "region",
        "weights",
        "window_s",
        "max_staleness_s",
        "falloff_m",
        "miss_factor",
        "change_scale",
        "staleness_scale_s",
        "temperature",
    ],
)
def test_poisoned_attention_parameters_answer_400(served, name):
    _live, _clock, http = served
    for poison in ["", " ", "a\x00b", "1e400", "nan", "-0", "\u00bd", "0x10"]:
        r = http.get("/api/2/events", params={name: poison})
        assert r.status_code == 400, (name, poison, r.text)
        assert r.json()["pointer"] == f"/{name}", (name, poison, r.json())


def test_sse_attention_keepalive_and_close(tmp_path: Path):
    clock = Clock()
    with live_server(tmp_path, clock=clock, keepalive_s=0.05) as live:
        params = {"budget_bps": ONE_A_SECOND, "token": live.admin}
        with httpx.Client(base_url=live.base_url, timeout=10) as c:
            with c.stream("GET", "/api/2/events", params=params) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith(": keep")) == (": keep-alive")
                live.loop.call_soon_threadsafe(
                    live.service.close_subscriptions, "server shutting down"
                )
                assert next(line for line in lines if line.startswith("event:")) == "event: close"
                assert "server shutting down" in next(lines)
