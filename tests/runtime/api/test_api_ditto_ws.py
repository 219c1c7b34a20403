"""The Ditto Protocol over WebSocket (``/ws/2``): commands and their answers, error
envelopes for bad input, access control by domain, events after START-SEND-EVENTS with
filters and namespaces, and the event translation as an invariant (hypothesis)."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from twinedge.runtime import things
from twinedge.runtime.api.ditto_ws import DittoError, ditto_events, parse_fields, tokens_of

from .conftest import Api

CMD = "things/twin/commands"


def _ws(api: Api, domain: str | None = "fleet", role: str = "write"):
    token = api.admin if domain is None else api.key(domain, role)
    return api.client.websocket_connect("/ws/2", headers={"Authorization": f"Bearer {token}"})


def _cmd(action: str, path: str = "/", thing: str = "fleet/car-1", **kw: Any) -> dict:
    env = {"topic": f"{thing}/{CMD}/{action}", "path": path, "headers": {"correlation-id": "c"}}
    env.update(kw)
    return env


def _ask(ws, env: dict | str) -> Any:
    """Send ``env`` and return the answer (JSON, or the text of an acknowledgement)."""
    if isinstance(env, str):
        ws.send_text(env)
    else:
        ws.send_json(env)
    text = ws.receive_text()
    return text if text.endswith(":ACK") else json.loads(text)


def _error(answer: dict, status: int, code: str) -> dict:
    assert answer["status"] == status, answer
    assert answer["topic"].endswith("/things/twin/errors"), answer
    v = answer["value"]
    assert (v["status"], v["error"]) == (status, code), v
    assert v["message"]
    return v


def _wait_subscribers(api: Api, n: int) -> None:
    deadline = time.monotonic() + 5
    while api.service.subscribers < n:
        assert time.monotonic() < deadline, "the subscription did not open"
        time.sleep(0.005)


# --- commands -------------------------------------------------------------------------------


def test_command_round_trip(api: Api):
    with _ws(api) as ws:
        a = _ask(ws, _cmd("create", value={"attributes": {"kind": "car"}}))
        assert (a["status"], a["topic"], a["path"]) == (201, f"fleet/car-1/{CMD}/create", "/")
        assert a["headers"]["correlation-id"] == "c"
        assert a["value"]["thingId"] == "fleet:car-1"
        assert a["value"]["attributes"] == {"kind": "car"}
        assert a["headers"]["etag"] == '"rev:1"'

        a = _ask(ws, _cmd("modify", "/attributes/speed", value=12))
        assert (a["status"], a["value"]) == (201, 12)  # created at the path
        a = _ask(ws, _cmd("modify", "/attributes/speed", value=13))
        assert a["status"] == 204 and "value" not in a
        a = _ask(ws, _cmd("merge", "/attributes", value={"speed": None, "lane": 2}))
        assert a["status"] == 204 and a["headers"]["etag"] == '"rev:4"'
        a = _ask(ws, _cmd("modify", "/features/motor", value={"properties": {"rpm": 1}}))
        assert a["status"] == 201
        a = _ask(ws, _cmd("merge", "/features/motor/desiredProperties", value={"rpm": 5}))
        assert a["status"] == 204

        a = _ask(ws, _cmd("retrieve"))
        assert a["status"] == 200
        assert a["value"]["attributes"] == {"kind": "car", "lane": 2}
        assert a["value"]["features"] == {
            "motor": {"properties": {"rpm": 1}, "desiredProperties": {"rpm": 5}}
        }
        assert a["value"]["_revision"] == 6 and a["value"]["_inSync"] is False
        a = _ask(ws, _cmd("retrieve", "/features/motor/desiredProperties/rpm"))
        assert (a["status"], a["value"]) == (200, 5)

        a = _ask(ws, _cmd("delete", "/attributes/lane"))
        assert a["status"] == 204
        a = _ask(ws, _cmd("delete", "/attributes/lane"))
        _error(a, 404, "things:attribute.notfound")
        a = _ask(ws, _cmd("delete"))
        assert a["status"] == 204
        _error(_ask(ws, _cmd("retrieve")), 404, "things:thing.notfound")
    assert api.client.get("/api/2/things/fleet:car-1", headers=api.h()).status_code == 404


def test_retrieve_with_fields_and_history(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"a": 1, "b": {"c": 2, "d": 3}}})
    api.client.patch("/api/2/things/fleet:car-1/attributes", json={"a": 9}, headers=api.h())
    with _ws(api) as ws:
        a = _ask(ws, _cmd("retrieve", fields="thingId,attributes(b(c))"))
        assert a["value"] == {"thingId": "fleet:car-1", "attributes": {"b": {"c": 2}}}
        env = _cmd("retrieve", "/attributes/a")
        env["headers"]["at-historical-revision"] = 1
        assert _ask(ws, env)["value"] == 1
        _error(_ask(ws, _cmd("retrieve", fields="attributes(")), 400, "json.fieldselector.invalid")


def test_merge_at_root_creates_and_retrieve_many(api: Api):
    with _ws(api) as ws:
        a = _ask(ws, _cmd("merge", value={"attributes": {"x": 1, "gone": None}}))
        assert a["status"] == 201
        assert a["value"]["attributes"] == {"x": 1}
        a = _ask(ws, _cmd("merge", value={"attributes": {"y": 2}}))
        assert a["status"] == 204
        api.put_thing("city:lamp-1", {}, domain="city")
        a = _ask(
            ws,
            _cmd(
                "retrieve",
                thing="_/_",
                value={"thingIds": ["fleet:car-1", "city:lamp-1", "fleet:nope"]},
                fields="thingId,attributes",
            ),
        )
        assert (a["status"], a["value"]) == (
            200,
            [{"thingId": "fleet:car-1", "attributes": {"x": 1, "y": 2}}],
        )


def test_conditional_headers(api: Api):
    api.put_thing("fleet:car-1", {"attributes": {"speed": 5}})  # revision 1
    with _ws(api) as ws:

        def modify(value: int, **headers: Any) -> dict:
            env = _cmd("modify", "/attributes/speed", value=value)
            env["headers"].update(headers)
            return _ask(ws, env)

        _error(modify(6, **{"If-Match": '"rev:7"'}), 412, "things:precondition.failed")
        assert modify(6, **{"if-match": '"rev:1"'})["status"] == 204
        assert modify(7, **{"if-match": "*"})["status"] == 204
        _error(modify(8, **{"if-none-match": "*"}), 412, "things:precondition.failed")
        _error(modify(8, condition="gt(attributes/speed,10)"), 412, "things:condition.failed")
        assert modify(8, condition="lt(attributes/speed,10)")["status"] == 204
        _error(modify(9, condition="lt(attributes/speed"), 400, "things:condition.invalid")
        _error(modify(9, **{"if-match": "rev:x"}), 400, "header.invalid")
        _error(modify(9, **{"if-equal": "skip"}), 400, "header.notsupported")
        _error(modify(9, **{"put-metadata": []}), 400, "header.notsupported")
        a = _ask(ws, _cmd("create", value={}, headers={"if-none-match": "*"}))
        _error(a, 412, "things:precondition.failed")
        _error(_ask(ws, _cmd("create", value={})), 409, "things:thing.conflict")
    r = api.client.get("/api/2/things/fleet:car-1", headers=api.h())
    assert (r.json()["attributes"], r.json()["_revision"]) == ({"speed": 8}, 4)


def test_response_required_false_answers_only_errors(api: Api):
    with _ws(api) as ws:
        env = _cmd("create", value={})
        env["headers"]["response-required"] = False
        ws.send_json(env)
        env = _cmd("retrieve", "/attributes/nope")
        env["headers"]["response-required"] = False
        a = _ask(ws, env)  # the first answer on the socket is this error
        _error(a, 404, "things:attribute.notfound")
    assert api.client.get("/api/2/things/fleet:car-1", headers=api.h()).status_code == 200


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        ("hello", 400, "json.invalid"),
        ("[1, 2]", 400, "json.invalid"),
        ('{"path": "/"}', 400, "json.field.missing"),
        ('{"topic": "fleet/car-1/things/twin/commands"}', 400, "protocoladapter:unknown.topicpath"),
        (
            '{"topic": "fleet/p1/policies/twin/commands/create"}',
            400,
            "protocoladapter:unknown.topicpath",
        ),
        (
            '{"topic": "fleet/car-1/things/live/commands/modify"}',
            400,
            "protocoladapter:unknown.channel",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/events/modified"}',
            400,
            "protocoladapter:unknown.topicpath",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/commands/upsert"}',
            400,
            "protocoladapter:unknown.command",
        ),
        ('{"topic": "fle et/car-1/things/twin/commands/retrieve"}', 400, "things:id.invalid"),
        (
            '{"topic": "fleet/car-1/things/twin/commands/retrieve", "path": "/thingId"}',
            400,
            "protocoladapter:unknown.path",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/commands/retrieve", "path": "/features/f/x"}',
            400,
            "protocoladapter:unknown.path",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/commands/retrieve", "path": "/attributes//a"}',
            400,
            "json.pointer.invalid",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/commands/create", "path": "/attributes", "value": {}}',
            400,
            "protocoladapter:unknown.path",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/commands/modify", "path": "/"}',
            400,
            "json.field.missing",
        ),
        (
            '{"topic": "fleet/car-1/things/twin/commands/retrieve", "headers": 3}',
            400,
            "json.invalid",
        ),
        ("START-SEND-MESSAGES", 501, "signal.unsupported"),
        ("JWT-TOKEN?jwtToken=abc", 501, "signal.unsupported"),
        ("START-SEND-EVENTS?extraFields=attributes", 400, "header.notsupported"),
        ("START-SEND-EVENTS?filter=eq(", 400, "rql.expression.invalid"),
        ("START-SEND-EVENTS?filter=a&filter=b", 400, "json.invalid"),
    ],
)
def test_bad_input_answers_an_error_envelope(api: Api, message: str, status: int, code: str):
    with _ws(api) as ws:
        _error(_ask(ws, message), status, code)
        ws.send_text("STOP-SEND-EVENTS")  # the connection is still usable afterwards
        assert ws.receive_text() == "STOP-SEND-EVENTS:ACK"


def test_an_envelope_twinedge_does_not_serve_is_answered_to_its_correlation_id(api: Api):
    """A live command (the live channel carries messages only), an unknown command or
    criterion: the error carries the envelope's correlation-id (any case), so the
    client's request ends at once instead of waiting for an answer that never comes."""
    live = {
        "topic": "fleet/car-1/things/live/commands/modify",
        "path": "/attributes/on",
        "headers": {"correlation-id": "m-1", "content-type": "application/json"},
        "value": True,
    }
    upsert = {"topic": f"fleet/car-1/{CMD}/upsert", "headers": {"Correlation-Id": "m-2"}}
    events = {"topic": "fleet/car-1/things/twin/events/modified", "headers": {"correlation-id": 7}}
    with _ws(api) as ws:
        a = _ask(ws, live)
        _error(a, 400, "protocoladapter:unknown.channel")
        assert (a["topic"], a["headers"]["correlation-id"]) == (
            "fleet/car-1/things/twin/errors",
            "m-1",
        )
        a = _ask(ws, upsert)
        _error(a, 400, "protocoladapter:unknown.command")
        assert a["headers"]["correlation-id"] == "m-2"
        a = _ask(ws, events)
        _error(a, 400, "protocoladapter:unknown.topicpath")
        assert a["headers"]["correlation-id"] == "7"
        # none sent, none made up
        a = _ask(ws, {"topic": "fleet/car-1/things/live/commands/modify"})
        _error(a, 400, "protocoladapter:unknown.channel")
        assert "correlation-id" not in a["headers"]


@pytest.mark.parametrize(
    "subject, path, headers, code, why",
    [
        ("switch", "/outbox/messages/switch", {}, "protocoladapter:unknown.path", "inbox only"),
        (
            "switch",
            "/features/lamp/inbox/messages/switch",
            {},
            "protocoladapter:unknown.path",
            "inbox only",
        ),
        ("switch", "/inbox/messages/other", {}, "protocoladapter:unknown.path", "inbox only"),
        ("", "/inbox/messages/", {}, "messages:subject.invalid", "subject"),
        ("switch", "/inbox/messages/switch", {"timeout": "0"}, "timeout.invalid", "more than 0"),
        ("switch", "/inbox/messages/switch", {"timeout": "301"}, "timeout.invalid", "at most 300"),
        ("switch", "/inbox/messages/switch", {"timeout": "10h"}, "timeout.invalid", "10s, 500ms"),
        ("switch", "/inbox/messages/switch", {"timeout": "-1"}, "timeout.invalid", "more than 0"),
    ],
)
def test_bad_messages_are_refused_on_the_live_errors_topic(
    api: Api, subject: str, path: str, headers: dict, code: str, why: str
):
    env = {
        "topic": f"fleet/car-1/things/live/messages/{subject}",
        "path": path,
        "headers": {"correlation-id": "m-9", **headers},
        "value": {},
    }
    with _ws(api) as ws:
        a = _ask(ws, env)
    assert a["topic"] == "fleet/car-1/things/live/errors", a
    assert a["headers"]["correlation-id"] == "m-9"
    assert (a["status"], a["value"]["error"]) == (400, code), a
    assert why in a["value"]["message"], a


def test_connection_survives_bad_input(api: Api):
    with _ws(api) as ws:
        _error(_ask(ws, "{"), 400, "json.invalid")
        ws.send_text("STOP-SEND-EVENTS")
        assert ws.receive_text() == "STOP-SEND-EVENTS:ACK"
        a = _ask(ws, _cmd("create", value={}))
        assert a["status"] == 201


def test_too_large_message(api: Api, tmp_path):
    from .conftest import make_api

    for small in make_api(tmp_path / "small", max_body_bytes=200):
        with _ws(small) as ws:
            a = _ask(ws, _cmd("create", value={"attributes": {"x": "y" * 300}}))
            _error(a, 413, "things:thing.toolarge")


def test_bad_token_closes_with_policy_violation(api: Api):
    with api.client.websocket_connect("/ws/2?token=te_nope_nope") as ws:
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_text()
    assert e.value.code == 1008
    assert "401" in e.value.reason


# --- access control -----------------------------------------------------------------------


def test_a_domain_key_sees_and_writes_only_its_domain(api: Api):
    api.put_thing("city:lamp-1", {"attributes": {"on": True}}, domain="city")
    with _ws(api, "fleet") as ws:
        for env in (
            _cmd("retrieve", thing="city/lamp-1"),
            _cmd("modify", "/attributes/on", thing="city/lamp-1", value=False),
            _cmd("merge", thing="city/lamp-1", value={"attributes": {"on": False}}),
            _cmd("delete", thing="city/lamp-1"),
            _cmd("retrieve", "/attributes/on", thing="city/lamp-1"),
        ):
            _error(_ask(ws, env), 404, "things:thing.notfound")
        # creating a thing in a namespace of another domain is refused too
        a = _ask(ws, _cmd("create", thing="city/lamp-2", value={}))
        assert a["status"] in (403, 409), a
    with _ws(api, "city", role="read") as ws:
        assert _ask(ws, _cmd("retrieve", thing="city/lamp-1"))["status"] == 200
        a = _ask(ws, _cmd("modify", "/attributes/on", thing="city/lamp-1", value=False))
        _error(a, 403, "things:thing.notmodifiable")
        _error(_ask(ws, _cmd("delete", thing="city/lamp-1")), 403, "things:thing.notdeletable")
    r = api.client.get("/api/2/things/city:lamp-1", headers=api.h("city"))
    assert r.json()["attributes"] == {"on": True}


def test_events_only_of_visible_things(api: Api):
    with _ws(api, "fleet") as fleet, _ws(api, "city") as city:
        assert _ask(fleet, "START-SEND-EVENTS") == "START-SEND-EVENTS:ACK"
        assert _ask(city, "START-SEND-EVENTS") == "START-SEND-EVENTS:ACK"
        _wait_subscribers(api, 2)
        api.put_thing("city:lamp-1", {}, domain="city")
        api.put_thing("fleet:car-1", {}, domain="fleet")
        ev = fleet.receive_json()
        assert ev["topic"] == "fleet/car-1/things/twin/events/created"
        ev = city.receive_json()
        assert ev["topic"] == "city/lamp-1/things/twin/events/created"
        # the next event each gets is again of its own domain
        api.client.patch(
            "/api/2/things/city:lamp-1/attributes", json={"on": True}, headers=api.h("city")
        )
        api.client.patch("/api/2/things/fleet:car-1/attributes", json={"n": 1}, headers=api.h())
        assert fleet.receive_json()["topic"] == "fleet/car-1/things/twin/events/created"
        ev = city.receive_json()
        assert (ev["topic"], ev["path"], ev["value"], ev["revision"]) == (
            "city/lamp-1/things/twin/events/created",
            "/attributes/on",
            True,
            2,
        )


# --- events -------------------------------------------------------------------------------


def test_event_filter_namespaces_and_stop(api: Api):
    api.client.put("/api/2/namespaces/bus", json={"domain": "fleet"}, headers=api.h(None))
    api.put_thing("fleet:car-1", {"attributes": {"kind": "car"}})
    api.put_thing("fleet:car-2", {"attributes": {"kind": "van"}})
    api.put_thing("bus:b-1", {"attributes": {"kind": "car"}})
    with _ws(api) as ws:
        q = "filter=eq(attributes%2Fkind%2C%22car%22)&namespaces=fleet"
        assert _ask(ws, f"START-SEND-EVENTS?{q}") == "START-SEND-EVENTS:ACK"
        _wait_subscribers(api, 1)
        for tid in ("bus:b-1", "fleet:car-2", "fleet:car-1"):
            r = api.client.patch(
                f"/api/2/things/{tid}/attributes", json={"n": 1, "m": 2}, headers=api.h()
            )
            assert r.status_code == 204, r.text
        ev = ws.receive_json()
        assert ev == {
            "topic": "fleet/car-1/things/twin/events/merged",
            "headers": {"content-type": "application/merge-patch+json"},
            "path": "/attributes",
            "value": {"n": 1, "m": 2},
            "revision": 2,
            "timestamp": ev["timestamp"],
        }
        assert _ask(ws, "STOP-SEND-EVENTS") == "STOP-SEND-EVENTS:ACK"
        _wait_subscribers(api, 0)
        api.client.patch("/api/2/things/fleet:car-1/attributes", json={"n": 2}, headers=api.h())
        # nothing more arrives: the next message is the answer to this command
        a = _ask(ws, _cmd("retrieve", "/attributes/n"))
        assert (a["status"], a["value"]) == (200, 2)


def test_shutdown_closes_with_going_away(api: Api):
    with _ws(api) as ws:
        assert _ask(ws, "START-SEND-EVENTS") == "START-SEND-EVENTS:ACK"
        _wait_subscribers(api, 1)
        api.service.close_subscriptions("server shutting down")
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_text()
    assert e.value.code == 1001


# --- the pure parts -------------------------------------------------------------------------


def test_parse_fields():
    assert parse_fields("thingId") == [("thingId",)]
    assert parse_fields("a(b,c(d,e)),f/g") == [
        ("a", "b"),
        ("a", "c", "d"),
        ("a", "c", "e"),
        ("f", "g"),
    ]
    for bad in ("a(", "a)", "(a)", "a,,b", "a(b)c"):
        with pytest.raises(DittoError):
            parse_fields(bad)


def test_tokens_of():
    assert tokens_of("/attributes/a~1b") == ["attributes", "a/b"]
    assert tokens_of("/features/f/definition") == ["features", "f", "definition"]
    for bad in ("/foo", "/definition/x", "/features/f/definition/0", "/features/f/inbox"):
        with pytest.raises(DittoError) as e:
            tokens_of(bad)
        assert e.value.status == 400


def _apply(doc: dict, env: dict) -> dict:
    """Apply a Ditto event to ``doc`` as a Ditto client would."""
    action = env["topic"].rsplit("/", 1)[1]
    tokens = [] if env["path"] == "/" else things.split_path(env["path"])
    doc = copy.deepcopy(doc)
    if action == "deleted":
        if not tokens:
            return {}
        things.delete_path(doc, tokens)
        return doc
    if action == "merged":
        old = things.get_path(doc, tokens) if tokens else doc
        new = things.merge_patch(old, env["value"])
        if not tokens:
            return new
        things.set_path(doc, tokens, new)
        return doc
    if not tokens:
        return copy.deepcopy(env["value"])
    things.set_path(doc, tokens, copy.deepcopy(env["value"]))
    return doc


KEYS = st.sampled_from(["a", "b", "c/d", "~e"])
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
VALUE = st.recursive(
    LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6,
)
THING = st.fixed_dictionaries(
    {
        "attributes": st.dictionaries(KEYS, VALUE, max_size=3),
        "features": st.dictionaries(
            KEYS,
            st.fixed_dictionaries(
                {},
                optional={
                    "properties": st.dictionaries(KEYS, VALUE, max_size=3),
                    "desiredProperties": st.dictionaries(KEYS, VALUE, max_size=2),
                },
            ),
            max_size=2,
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(old=THING, new=THING)
def test_events_carry_every_change(old: dict, new: dict):
    """Applying the Ditto events of a change to the thing before gives the thing after."""
    ops = things.json_patch(old, new)
    ce = {
        "type": "dev.twinedge.thing.modified",
        "time": "2024-01-01T00:00:00Z",
        "data": {"thingId": "fleet:car-1", "revision": 2, "patch": ops},
    }
    envs = ditto_events(ce)
    assert (len(envs) == 0) == (len(ops) == 0)
    doc = old
    for env in envs:
        assert env["topic"].startswith("fleet/car-1/things/twin/events/")
        assert env["revision"] == 2
        doc = _apply(doc, env)
    assert doc == new


def test_created_and_deleted_events():
    created = {
        "type": "dev.twinedge.thing.created",
        "time": "2024-01-01T00:00:00Z",
        "data": {
            "thingId": "fleet:car-1",
            "revision": 1,
            "patch": [
                {"op": "add", "path": "", "value": {"thingId": "fleet:car-1", "_domain": "fleet"}}
            ],
        },
    }
    [env] = ditto_events(created)
    assert (env["topic"], env["path"], env["value"]) == (
        "fleet/car-1/things/twin/events/created",
        "/",
        {"thingId": "fleet:car-1"},
    )
    deleted = {**created, "type": "dev.twinedge.thing.deleted"}
    [env] = ditto_events(deleted)
    assert env["topic"].endswith("/events/deleted") and "value" not in env
    host_only = {
        **created,
        "type": "dev.twinedge.thing.modified",
        "data": {
            "thingId": "fleet:car-1",
            "revision": 3,
            "patch": [{"op": "replace", "path": "/_host", "value": "e1"}],
        },
    }
    assert ditto_events(host_only) == []
    assert ditto_events({**created, "type": "dev.twinedge.group.joined"}) == []
