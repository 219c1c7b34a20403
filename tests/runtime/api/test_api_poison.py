"""The poison matrix of the HTTP channels: every poison in every channel is answered with
a 4xx problem document (never a 5xx), and a valid write another client sends at the same
moment succeeds and can be read back. On SQLite and PostgreSQL.

Channels: the JSON body of each kind of write, the path (thing id, feature id, property
path), the query (filter, sort, cursor, fields, at, from/to, limit) and the headers
(If-Match, If-None-Match, Authorization, Content-Type). A poison goes where it means
something in that channel: a JSON value in a body (escaped as JSON: ``"\\ud800"``),
percent-encoded bytes in a path or a query (``%ED%A0%80``), a JSON escape inside an RQL
string literal in a filter, raw bytes in a header.

Requests go straight to the ASGI app (raw bytes reach it; uvicorn itself refuses some of
them earlier, e.g. a NUL in a header, with its own plain 400).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import Api, make_api

_ids = itertools.count()

POISONS = ["surrogate", "nul", "1e400", "bigint", "deep", "non-utf8", "nan", "infinity", "huge"]

# as a JSON value in a body
JSON: dict[str, bytes] = {
    "surrogate": b'"a\\ud800b"',
    "nul": b'"a\\u0000b"',
    "1e400": b"1e400",
    "bigint": b"9" * 5000,
    "deep": b"[" * 10_000 + b"]" * 10_000,
    "non-utf8": b'"a\xff\xfeb"',
    "nan": b"NaN",
    "infinity": b"-Infinity",
    "huge": b'"' + b"x" * 1_100_000 + b'"',  # over the 1 MB body limit
}
# as text in a path segment or a query value (percent-encoded by _q)
TEXT: dict[str, bytes] = {
    "surrogate": b"a\xed\xa0\x80b",
    "nul": b"a\x00b",
    "1e400": b"1e400",
    "bigint": b"9" * 5000,
    "deep": b"a/" * 10_000 + b"a",
    "non-utf8": b"a\xff\xfeb",
    "nan": b"NaN",
    "infinity": b"Infinity",
    "huge": b"x" * 50_000,  # (httpx refuses a URL of more than 64 kB)
}
# as a header value
HEADER: dict[str, bytes] = {
    "surrogate": b'"\xed\xa0\x80"',
    "nul": b'"1\x002"',
    "1e400": b'"1e400"',
    "bigint": b'"' + b"9" * 5000 + b'"',
    "deep": b'"' + b"[" * 10_000 + b'"',
    "non-utf8": b'"\xff\xfe"',
    "nan": b'"NaN"',
    "infinity": b'"Infinity"',
    "huge": b'"1", ' * 50_000 + b'"2"',
}

THING = "/api/2/things/fleet:p"
BODY = b'{"attributes": {"x": 1}, "features": {"f": {"properties": {"v": 1}}}}'


def _q(raw: bytes) -> str:
    return quote(raw, safe="")


def _body(template: bytes, poison: str) -> bytes:
    return template.replace(b"SLOT", JSON[poison])


# channel -> (method, url, headers, body) for a poison
def request_for(channel: str, poison: str, a: dict[str, str]) -> tuple[str, str, dict, bytes]:
    jh = {**a, "Content-Type": "application/json"}
    mp = {**a, "Content-Type": "application/merge-patch+json"}
    t = TEXT[poison]
    match channel:
        case "body:put-thing":
            return "PUT", THING, jh, _body(b'{"attributes": {"x": SLOT}}', poison)
        case "body:put-thing-key":  # the poison as an object key
            key = JSON[poison] if JSON[poison].startswith(b'"') else b'"k"'
            body = b'{"attributes": {' + key + b": " + JSON[poison] + b"}}"
            return "PUT", THING, jh, body
        case "body:patch":
            return "PATCH", THING, mp, _body(b'{"attributes": {"x": SLOT}}', poison)
        case "body:put-path":
            return "PUT", f"{THING}/attributes/x", jh, JSON[poison]
        case "body:desired":
            url = f"{THING}/features/f/desiredProperties"
            return "PATCH", url, mp, _body(b'{"v": SLOT}', poison)
        case "body:group":
            return "PUT", "/api/2/groups/g", jh, _body(b'{"members": [SLOT]}', poison)
        case "body:grant":
            body = _body(b'{"grantee": SLOT, "filter": "exists(thingId)"}', poison)
            return "POST", "/api/2/grants", jh, body
        case "body:key":
            return "POST", "/api/2/keys", jh, _body(b'{"domain": SLOT, "role": "read"}', poison)
        case "path:thing":
            return "PUT", f"/api/2/things/fleet:{_q(t)}", jh, BODY
        case "path:feature":
            return "PUT", f"{THING}/features/{_q(t)}", jh, b'{"properties": {}}'
        case "path:property":
            return "PUT", f"{THING}/features/f/properties/{_q(t)}", jh, b"1"
        case "query:filter":  # a JSON escape in a string literal, or a number literal
            lit = JSON[poison] if poison != "huge" else b'"' + b"x" * 64_001 + b'"'
            return (
                "GET",
                f"/api/2/search/things?filter={_q(b'eq(attributes/x,' + lit + b')')}",
                a,
                b"",
            )
        case "query:sort":
            return "GET", f"/api/2/search/things?sort={_q(b'+attributes/' + t)}", a, b""
        case "query:cursor":
            return "GET", f"/api/2/search/things?cursor={_q(t)}", a, b""
        case "query:fields":
            return "GET", f"/api/2/search/things?fields={_q(b'attributes/' + t)}", a, b""
        case "query:at":
            return "GET", f"{THING}?at={_q(t)}", a, b""
        case "query:from":
            return "GET", f"{THING}/history?from={_q(t)}", a, b""
        case "query:to":
            return "GET", f"{THING}/history?to={_q(t)}", a, b""
        case "query:limit":
            return "GET", f"/api/2/search/things?limit={_q(t)}", a, b""
        case "header:If-Match":
            return "PUT", THING, {**jh, "If-Match": HEADER[poison]}, BODY
        case "header:If-None-Match":
            return "PUT", THING, {**jh, "If-None-Match": HEADER[poison]}, BODY
        case "header:Authorization":
            return "GET", THING, {"Authorization": b"Bearer " + HEADER[poison]}, b""
        case "header:Content-Type":
            return "PUT", THING, {**a, "Content-Type": HEADER[poison]}, BODY
    raise AssertionError(channel)


CHANNELS = [
    "body:put-thing",
    "body:put-thing-key",
    "body:patch",
    "body:put-path",
    "body:desired",
    "body:group",
    "body:grant",
    "body:key",
    "path:thing",
    "path:feature",
    "path:property",
    "query:filter",
    "query:sort",
    "query:cursor",
    "query:fields",
    "query:at",
    "query:from",
    "query:to",
    "query:limit",
    "header:If-Match",
    "header:If-None-Match",
    "header:Authorization",
    "header:Content-Type",
]

# Where a "poison" is an ordinary, valid input of the channel, so success is the right
# answer (never a 5xx all the same):
VALID = {
    # "1e400", "NaN", "Infinity" and 5,000 nines are legal names of a feature / property,
    # and words for a field path of a sort or a field list (no number is parsed there)
    *[
        (c, p)
        for c in ("path:feature", "path:property", "query:sort", "query:fields")
        for p in ("1e400", "nan", "infinity", "bigint")
    ],
    # "fleet:1e400", "fleet:NaN", "fleet:Infinity" are legal thing ids
    *[("path:thing", p) for p in ("1e400", "nan", "infinity")],
    # If-None-Match with a tag that names no revision: the condition holds
    *[("header:If-None-Match", p) for p in POISONS],
    # ... and 50,000 characters are a legal key (no limit below the document's size)
    ("query:fields", "huge"),
    ("query:sort", "huge"),
    ("path:property", "huge"),
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def mapi(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    url = None
    if request.param == "postgres":
        import psycopg

        base = request.getfixturevalue("postgres_url")
        name = f"poison{os.getpid()}"
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            c.execute(f"CREATE SCHEMA {name}")
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}options={quote(f'-csearch_path={name}')}"
    yield from make_api(tmp_path_factory.mktemp("poison"), url)


@pytest.mark.parametrize("poison", POISONS)
@pytest.mark.parametrize("channel", CHANNELS)
def test_poison_is_a_4xx_problem_and_others_write_meanwhile(mapi: Api, channel: str, poison: str):
    c = mapi.client
    admin = mapi.h("fleet", "admin")
    r = c.put(THING, content=BODY, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code in (201, 204), r.text
    method, url, headers, body = request_for(channel, poison, admin)
    other = f"/api/2/things/other:w{next(_ids)}"
    value = {"attributes": {"written": channel + "/" + poison}}

    def poisoned() -> Any:
        return c.request(method, url, headers=headers, content=body or None)

    def valid() -> Any:
        return c.put(other, json=value, headers=mapi.h("other"))

    with ThreadPoolExecutor(2) as pool:
        fp, fv = pool.submit(poisoned), pool.submit(valid)
        r, w = fp.result(), fv.result()
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if (channel, poison) not in VALID:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        doc = r.json()
        assert doc["status"] == r.status_code and doc["title"] and doc["detail"], doc
    assert w.status_code == 201, w.text
    got = c.get(other, headers=mapi.h("other"))
    assert got.status_code == 200 and got.json()["attributes"] == value["attributes"]
