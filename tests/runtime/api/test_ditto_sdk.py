"""Eclipse Ditto's own JavaScript client SDK against a real ``twinedge serve``.

tests/ditto_sdk/session.js runs a Ditto client session with
``@eclipse-ditto/ditto-javascript-client-node`` (pinned in tests/ditto_sdk/package.json,
installed on first use with ``npm ci`` from the committed lock file): the HTTP client
creates, reads (with a field selector), modifies, merges and deletes things, writes on
``rev:N`` ETags and on ``condition=``, searches (``GET`` page by page with ``size``,
``sort``, ``cursor``, ``namespaces``, ``fields`` and ``ilike``; ``POST`` with a form body;
Ditto's older ``limit(offset,count)`` paging by ``nextPageOffset``),
counts (``GET`` and ``POST``), gets things by ids and sends messages to a thing's inbox,
which a real MQTT device answers; the WebSocket client speaks the Ditto Protocol over
``/ws/2`` (retrieve, modify, merge, create, delete, events after
``START-SEND-EVENTS``, and a message on the live channel the same device answers). Each SDK call prints one JSON line; each test below checks the
content of one answer against values worked out by hand from the session's steps.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.runtime.test_reliability import free_port, start_server

SDK_DIR = Path(__file__).resolve().parents[2] / "ditto_sdk"
SDK_PACKAGE = SDK_DIR / "node_modules" / "@eclipse-ditto" / "ditto-javascript-client-node"


def _install_sdk() -> None:
    if SDK_PACKAGE.is_dir():
        return
    npm = shutil.which("npm")
    assert npm, "node is installed but npm is not; install npm (scripts/test.sh does)"
    r = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SDK_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"npm ci in {SDK_DIR} failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real ``twinedge serve`` and a write key of domain ``sdk``."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Ditto SDK session needs Node.js 18+")
    _install_sdk()
    data = tmp_path_factory.mktemp("ditto-sdk") / "data"
    data.mkdir()
    port, mqtt_port = free_port(), free_port()
    proc = start_server(data, port, mqtt_port)
    try:
        base = f"http://127.0.0.1:{port}"
        admin = (data / "admin.token").read_text().strip()
        r = httpx.post(
            f"{base}/api/2/keys",
            json={"domain": "sdk", "role": "write"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 201, r.text
        yield {
            "base": base,
            "token": r.json()["token"],
            "admin": admin,
            "data": data,
            "mqtt_port": mqtt_port,
        }
    finally:
        proc.terminate()
        proc.wait(30)


class Lamp:
    """The device of ``sdk:lamp-1`` on the server's MQTT broker: it answers the command
    ``switch`` with ``{"switched": <payload's on>, "level": <payload's level>}`` and never
    answers any other; ``commands`` lists every (subject, payload) it received."""

    THING = "sdk:lamp-1"
    PASSWORD = "lamp-pass-1"

    def __init__(self, port: int) -> None:
        self.commands: list[tuple[str, Any]] = []
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.THING)
        c.username_pw_set(self.THING, self.PASSWORD)
        c.on_connect = lambda c, *_: c.subscribe(f"twinedge/{self.THING}/commands/+", qos=1)
        c.on_subscribe = lambda *_: self.ready.set()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", port)
        c.loop_start()

    def _on_message(self, c: Any, _userdata: Any, m: Any) -> None:
        doc = json.loads(m.payload)
        subject = m.topic.rsplit("/", 1)[1]
        self.commands.append((subject, doc["payload"]))
        if subject == "switch":
            answer = {"switched": doc["payload"]["on"], "level": doc["payload"]["level"]}
            c.publish(
                f"twinedge/{self.THING}/responses/{doc['correlationId']}", json.dumps(answer), qos=1
            )

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def lamp(server: dict[str, Any]) -> Iterator[Lamp]:
    """``sdk:lamp-1`` with its device connected (the target of the session's messages)."""
    base, write = server["base"], {"Authorization": f"Bearer {server['token']}"}
    r = httpx.put(f"{base}/api/2/things/{Lamp.THING}", json={}, headers=write)
    assert r.status_code == 201, r.text
    r = httpx.put(
        f"{base}/api/2/things/{Lamp.THING}/credentials",
        json={"password": Lamp.PASSWORD},
        headers={"Authorization": f"Bearer {server['admin']}"},
    )
    assert r.status_code == 204, r.text
    device = Lamp(server["mqtt_port"])
    try:
        assert device.ready.wait(30), "the lamp's device did not subscribe to its commands"
        yield device
    finally:
        device.stop()


@pytest.fixture(scope="module")
def session(server: dict[str, Any], lamp: Lamp) -> dict[str, dict[str, Any]]:
    """The session's answers, by call name."""
    r = subprocess.run(
        ["node", str(SDK_DIR / "session.js"), server["base"], server["token"]],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, f"session.js failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    calls = {x["call"]: x for x in lines}
    assert len(calls) == len(lines), "a call name printed twice"
    return calls


def answer(session: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    assert name in session, f"session.js printed no line for {name}"
    return session[name]


def ok(session: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    a = answer(session, name)
    assert a["ok"], f"{name} was refused: {a['error']}"
    return a


def refused(session: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    a = answer(session, name)
    assert not a["ok"], f"{name} was accepted: {a}"
    return a["error"]


def ditto_view(thing: dict[str, Any]) -> dict[str, Any]:
    """The members of Ditto's thing model (no revision or timestamps)."""
    keys = ("thingId", "policyId", "definition", "attributes", "features")
    return {k: thing[k] for k in keys if k in thing}


CAR_2 = {
    "thingId": "sdk:car-2",
    "policyId": "sdk:car-policy",
    "definition": "sdk:vehicle:2.1.0",
    "attributes": {"model": "van"},
    # the SDK's Feature model keeps definition and properties (desired ones are read below)
    "features": {"engine": {"definition": ["sdk:engine:1.0.0"], "properties": {"rpm": 0}}},
}
# sdk:car-1 after the HTTP writes: year merged to 2021, owner added, color added and
# merged away again, rpm 0 -> 1200 (desired 900 -> 950, not in the SDK's Feature model)
CAR_1 = {
    "thingId": "sdk:car-1",
    "attributes": {"model": "roadster", "year": 2021, "owner": "ada"},
    "features": {"engine": {"properties": {"rpm": 1200}}},
}


# --- the HTTP client ----------------------------------------------------------------------


def test_http_put_thing_creates(session):
    a = ok(session, "http.putThing")
    assert a["status"] == 201
    assert ditto_view(a["value"]) == {
        "thingId": "sdk:car-1",
        "attributes": {"model": "roadster", "year": 2020},
        "features": {"engine": {"properties": {"rpm": 0}}},
    }


def test_http_put_thing_with_definition_and_policy_id(session):
    a = ok(session, "http.putThing.ditto")
    assert a["status"] == 201
    assert ditto_view(a["value"]) == CAR_2


def test_http_get_thing_with_fields(session):
    assert ok(session, "http.getThing.fields")["value"] == CAR_2


def test_http_get_policy_id(session):
    assert ok(session, "http.getPolicyId")["value"] == "sdk:car-policy"


def test_http_get_definition(session):
    assert ok(session, "http.getDefinition")["value"] == "sdk:vehicle:2.1.0"


def test_http_get_attributes(session):
    assert ok(session, "http.getAttributes")["value"] == {"model": "roadster", "year": 2020}


def test_http_get_properties(session):
    assert ok(session, "http.getProperties")["value"] == {"rpm": 0}


def test_http_get_desired_properties(session):
    assert ok(session, "http.getDesiredProperties")["value"] == {"rpm": 900}


@pytest.mark.parametrize(
    "name", ["http.putProperty", "http.putDesiredProperty", "http.patchAttributes"]
)
def test_http_writes_that_replace_answer_204(session, name):
    a = ok(session, name)
    assert (a["status"], a["value"]) == (204, None)


def test_http_put_attribute_creates(session):
    a = ok(session, "http.putAttribute")
    assert (a["status"], a["value"]) == (201, "ada")


def test_http_patch_thing_merges(session):
    a = ok(session, "http.patchThing")
    assert (a["status"], a["value"]) == (204, None)


def test_http_get_thing_after_the_writes(session):
    assert ditto_view(ok(session, "http.getThing")["value"]) == CAR_1


def test_http_conditional_write_with_current_revision(session):
    # sdk:car-1 is at revision 9: 6 HTTP writes, then 3 over the WebSocket
    a = ok(session, "http.putAttribute.ifMatch")
    assert (a["status"], a["value"]) == (204, None)
    assert a["etag"] == '"rev:10"'


def test_http_conditional_write_with_stale_revision(session):
    e = refused(session, "http.putAttribute.ifMatch.stale")
    assert e["status"] == 412
    assert e["body"]["status"] == 412
    assert e["body"]["error"] == "things:precondition.failed"


def test_http_delete_thing(session):
    assert ok(session, "http.deleteThing")["status"] == 204


def test_http_get_deleted_thing_is_a_ditto_404(session):
    e = refused(session, "http.getThing.deleted")
    assert e["status"] == 404
    assert e["body"]["status"] == 404
    assert e["body"]["error"] == "things:thing.notfound"
    assert "sdk:car-1" in e["body"]["message"]


# --- the WebSocket client (Ditto Protocol over /ws/2) ----------------------------------------


def test_ws_get_thing(session):
    v = ok(session, "ws.getThing")["value"]
    assert ditto_view(v) == CAR_1
    assert v["_revision"] == 6


def test_ws_missing_attribute_is_a_ditto_error(session):
    body = refused(session, "ws.getAttribute.missing")["body"]
    assert body["status"] == 404
    assert body["error"] == "things:attribute.notfound"
    assert "/attributes/nope" in body["message"]


@pytest.mark.parametrize("name", ["ws.requestEvents", "ws.stopEvents"])
def test_ws_start_and_stop_events_are_acknowledged(session, name):
    assert ok(session, name)["value"] is None


def test_ws_modify_answers_with_the_value_or_204(session):
    a = ok(session, "ws.putAttribute")
    assert (a["status"], a["value"], a["etag"]) == (201, 42, '"rev:7"')
    a = ok(session, "ws.putProperty")
    assert (a["status"], a["value"], a["etag"]) == (204, None, '"rev:8"')
    a = ok(session, "ws.patchAttributes")
    assert (a["status"], a["value"], a["etag"]) == (204, None, '"rev:9"')


def test_ws_custom_handle_reads_desired_properties(session):
    # 900 at creation, 950 after http.putDesiredProperty
    assert ok(session, "ws.getDesiredProperties")["value"] == {"rpm": 950}


def test_ws_create_and_create_again(session):
    a = ok(session, "ws.createThing")
    assert a["status"] == 201
    assert ditto_view(a["value"]) == {
        "thingId": "sdk:bike-1",
        "attributes": {"wheels": 2},
        "features": {},
    }
    body = refused(session, "ws.createThing.again")["body"]
    assert (body["status"], body["error"]) == (409, "things:thing.conflict")
    assert ok(session, "ws.deleteThing")["status"] == 204


def test_ws_events_after_start_send_events(session):
    t = "things/twin/events"
    assert ok(session, "ws.events")["value"] == [
        {
            "action": "created",
            "topic": f"sdk/car-1/{t}/created",
            "path": "/attributes/speed",
            "value": 42,
        },
        {
            "action": "modified",
            "topic": f"sdk/car-1/{t}/modified",
            "path": "/features/engine/properties/rpm",
            "value": 1500,
        },
        {
            "action": "merged",
            "topic": f"sdk/car-1/{t}/merged",
            "path": "/attributes",
            "value": {"trip": 12.5, "fuel": "diesel"},
        },
        {
            "action": "created",
            "topic": f"sdk/bike-1/{t}/created",
            "path": "/",
            "value": {"thingId": "sdk:bike-1", "attributes": {"wheels": 2}, "features": {}},
        },
        {"action": "deleted", "topic": f"sdk/bike-1/{t}/deleted", "path": "/", "value": None},
    ]


def test_query_token_is_redacted_in_the_server_log(server, session):
    """A client that cannot send headers passes ``?token=``; the server's log shows
    ``token=***`` instead of the key."""
    import websockets

    token = server["token"]
    url = server["base"].replace("http://", "ws://") + f"/ws/2?token={token}"

    async def retrieve() -> dict[str, Any]:
        async with websockets.connect(url) as ws:
            await ws.send(
                json.dumps(
                    {
                        "topic": "sdk/nothing/things/twin/commands/retrieve",
                        "path": "/",
                        "headers": {"correlation-id": "q1"},
                    }
                )
            )
            return json.loads(await ws.recv())

    env = asyncio.run(retrieve())
    assert env["status"] == 404 and env["value"]["error"] == "things:thing.notfound"
    logs = "".join(p.read_text() for p in server["data"].parent.glob("serve-*.log"))
    assert "/ws/2?token=***" in logs
    assert token not in logs


# --- search, count, ids -------------------------------------------------------------------

# (make, seats) of the things session.js creates for the searches
LOT = {
    "lot:a1": ("ACME Motors", 4),
    "lot:a2": ("acme trucks", 2),
    "lot:a3": ("Other", 7),
    "lot:a4": ("ACMEX", 5),
    "lot:a5": ("Acme", 3),
    "lot:a6": ("acme", 1),
    "yard:b1": ("ACME yard", 9),
}


@pytest.mark.parametrize("thing_id", sorted(LOT))
def test_http_put_things_to_search(session, thing_id):
    a = ok(session, f"http.putThing.{thing_id}")
    make, seats = LOT[thing_id]
    assert a["status"] == 201
    assert ditto_view(a["value"]) == {
        "thingId": thing_id,
        "attributes": {"make": make, "seats": seats, "color": "grey"},
        "features": {},
    }


def _seats_and_make(thing_id: str) -> dict[str, Any]:
    make, seats = LOT[thing_id]
    return {"thingId": thing_id, "attributes": {"seats": seats, "make": make}}


def test_http_search_pages_through_every_page(session):
    """GET with ilike(attributes/make,"acme*"), namespaces lot, size(2),
    sort(-attributes/seats), fields thingId,attributes(seats,make): of lot, a3 ("Other")
    does not match, yard:b1 is in another namespace; 5 matches by seats 5,4,3,2,1 make
    pages of 2, 2 and 1, the last without a cursor."""
    pages = [ok(session, f"http.search.page{n}")["value"] for n in (1, 2, 3)]
    assert [[x["thingId"] for x in p["items"]] for p in pages] == [
        ["lot:a4", "lot:a1"],
        ["lot:a5", "lot:a2"],
        ["lot:a6"],
    ]
    for p in pages:
        assert p["items"] == [_seats_and_make(x["thingId"]) for x in p["items"]]
        assert p["nextPageOffset"] == "(absent)"
    assert all(isinstance(p["cursor"], str) and p["cursor"] for p in pages[:2])
    assert pages[0]["cursor"] != pages[1]["cursor"]
    assert pages[2]["cursor"] is None
    assert "http.search.page4" not in session


def test_http_post_search_with_a_form_body(session):
    """POST in(attributes/seats,2,9) over namespaces lot and yard, size(1), sort(+thingId):
    lot:a2 (2 seats) then yard:b1 (9 seats), one a page."""
    p1 = ok(session, "http.postSearch.page1")["value"]
    p2 = ok(session, "http.postSearch.page2")["value"]
    assert p1["items"] == [{"thingId": "lot:a2"}] and p1["cursor"]
    assert p2 == {"items": [{"thingId": "yard:b1"}], "cursor": None, "nextPageOffset": "(absent)"}
    assert "http.postSearch.page3" not in session


def test_http_search_with_ditto_limit_pages_by_offset(session):
    """limit(offset,3), fewest seats first, namespace lot (6 things): a6 (1), a2 (2),
    a5 (3), then from offset 3 a1 (4), a4 (5), a3 (7) and nextPageOffset -1; no cursor."""
    p1 = ok(session, "http.search.limit")["value"]
    p2 = ok(session, "http.search.limit.page2")["value"]
    assert p1 == {
        "items": [{"thingId": "lot:a6"}, {"thingId": "lot:a2"}, {"thingId": "lot:a5"}],
        "cursor": "(absent)",
        "nextPageOffset": 3,
    }
    assert p2 == {
        "items": [{"thingId": "lot:a1"}, {"thingId": "lot:a4"}, {"thingId": "lot:a3"}],
        "cursor": "(absent)",
        "nextPageOffset": -1,
    }
    assert "http.search.limit.page3" not in session


def test_http_count_with_ilike_and_namespaces(session):
    # ilike(attributes/make,"ACME*") over lot and yard: all but lot:a3
    assert ok(session, "http.count")["value"] == 6


def test_http_post_count(session):
    # namespace lot, no filter: a1..a6
    assert ok(session, "http.postCount")["value"] == 6
    # ilike(attributes/make,"*Motors") over every visible thing: lot:a1 only
    assert ok(session, "http.postCount.filter")["value"] == 1


def test_http_get_things_by_ids(session):
    # the ones that exist, in the order asked (lot:nope does not), projected
    assert ok(session, "http.getThings")["value"] == [
        {"thingId": "lot:a3", "attributes": {"make": "Other"}},
        {"thingId": "yard:b1", "attributes": {"make": "ACME yard"}},
        {"thingId": "lot:a1", "attributes": {"make": "ACME Motors"}},
    ]


# --- condition= ---------------------------------------------------------------------------


def test_http_conditional_writes_with_condition(session):
    # lot:a3 is at revision 1 with seats 7: the condition holds, seats becomes 8
    a = ok(session, "http.putAttribute.condition")
    assert (a["status"], a["value"], a["etag"]) == (204, None, '"rev:2"')
    # the same condition again no longer holds: nothing is written
    e = refused(session, "http.putAttribute.condition.false")
    assert e["status"] == 412
    assert (e["body"]["status"], e["body"]["error"]) == (412, "things:condition.failed")
    assert e["body"]["currentRevision"] == 2
    # as Ditto's `condition` header: lt(seats,10) holds, eq(color,"grey") then does not
    a = ok(session, "http.patchAttributes.conditionHeader")
    assert (a["status"], a["value"], a["etag"]) == (204, None, '"rev:3"')
    e = refused(session, "http.patchAttributes.conditionHeader.false")
    assert (e["status"], e["body"]["error"]) == (412, "things:condition.failed")
    assert e["body"]["currentRevision"] == 3
    assert ok(session, "http.getAttributes.afterConditions")["value"] == {
        "make": "Other",
        "seats": 8,
        "color": "blue",
    }


# --- messages -----------------------------------------------------------------------------


def test_http_message_is_answered_by_the_device(session, lamp):
    a = ok(session, "http.messageToThing")
    assert (a["status"], a["value"]) == (200, {"switched": True, "level": 80})
    # the device got both messages of the session, with their payloads
    assert lamp.commands[:2] == [("switch", {"on": True, "level": 80}), ("ignore", {"on": False})]


def test_http_message_the_device_does_not_answer_times_out(session):
    e = refused(session, "http.messageToThing.timeout")
    assert e["status"] == 408
    assert (e["body"]["status"], e["body"]["error"]) == (408, "messages:message.timeout")
    assert "did not answer command 'ignore' within 1 s" in e["body"]["message"]


def test_ws_live_message_is_answered_by_the_device(session, lamp):
    """The same message over the WebSocket's live channel, as Ditto's client sends it: the
    device gets the command and its answer comes back with status 200."""
    a = ok(session, "ws.live.messageToThing")
    assert (a["status"], a["value"]) == (200, {"switched": False, "level": 20})
    assert ("switch", {"on": False, "level": 20}) in lamp.commands


def _live(subject: str, cid: str, value: Any, path: str | None = None, **headers: Any) -> dict:
    return {
        "topic": f"sdk/lamp-1/things/live/messages/{subject}",
        "path": path if path is not None else f"/inbox/messages/{subject}",
        "headers": {"correlation-id": cid, "content-type": "application/json", **headers},
        "value": value,
    }


def test_ws_live_messages_wait_in_their_own_task(server, lamp):
    """Over a real socket to the real server and device: a message the device never
    answers (timeout 2s) does not hold up the connection: a twin retrieve sent after it
    is answered first, then the message's 408; a message the device answers comes back
    with its payload; a path outside the inbox and a bad timeout are refused at once."""
    import websockets

    url = server["base"].replace("http://", "ws://") + "/ws/2"
    auth = {"Authorization": f"Bearer {server['token']}"}

    async def talk() -> list[dict[str, Any]]:
        async with websockets.connect(url, additional_headers=auth) as ws:
            await ws.send(json.dumps(_live("ignore", "m-slow", {"n": 1}, timeout="3s")))
            await ws.send(
                json.dumps(
                    {
                        "topic": "sdk/lamp-1/things/twin/commands/retrieve",
                        "path": "/",
                        "fields": "thingId",
                        "headers": {"correlation-id": "r-1"},
                    }
                )
            )
            await ws.send(json.dumps(_live("switch", "m-ok", {"on": True, "level": 5})))
            await ws.send(json.dumps(_live("switch", "m-out", {}, path="/outbox/messages/switch")))
            await ws.send(json.dumps(_live("switch", "m-t0", {}, timeout="0")))
            return [json.loads(await ws.recv()) for _ in range(5)]

    answers = asyncio.run(talk())
    by_cid = {a["headers"]["correlation-id"]: a for a in answers}
    order = [a["headers"]["correlation-id"] for a in answers]
    # the retrieve and the refusals, sent after it, come before the unanswered message's
    # time-out
    assert all(order.index(c) < order.index("m-slow") for c in ("r-1", "m-out", "m-t0"))
    assert (by_cid["r-1"]["status"], by_cid["r-1"]["value"]) == (200, {"thingId": "sdk:lamp-1"})
    ok_ = by_cid["m-ok"]
    assert (ok_["status"], ok_["value"]) == (200, {"switched": True, "level": 5})
    assert (ok_["topic"], ok_["path"]) == (
        "sdk/lamp-1/things/live/messages/switch",
        "/inbox/messages/switch",
    )
    slow = by_cid["m-slow"]
    assert slow["topic"] == "sdk/lamp-1/things/live/errors"
    assert (slow["status"], slow["value"]["error"]) == (408, "messages:message.timeout")
    assert "within 3 s" in slow["value"]["message"]
    out = by_cid["m-out"]
    assert (out["status"], out["value"]["error"]) == (400, "protocoladapter:unknown.path")
    assert "inbox only" in out["value"]["message"]
    t0 = by_cid["m-t0"]
    assert (t0["status"], t0["value"]["error"]) == (400, "timeout.invalid")
    assert ("ignore", {"n": 1}) in lamp.commands and ("switch", {"on": True, "level": 5}) in (
        lamp.commands
    )
