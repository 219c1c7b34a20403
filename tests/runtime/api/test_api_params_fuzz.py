"""Every query parameter, path parameter and conditional header of every route in the
OpenAPI document, given arbitrary strings and numbers (and the poison values of
``POISONS``): never a 5xx, and every 4xx is a problem document with ``status``,
``title`` and ``detail``. On SQLite and PostgreSQL.

Bounded: :data:`EXAMPLES` inputs per operation, the same ones on every run (derandomised,
as ``test_api_fuzz.py``); ``TWINEDGE_FUZZ_RANDOM=1`` explores new ones.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import Api
from .test_api_fuzz import EchoDevice

EXAMPLES = 10
SKIP = {"streamEvents"}  # never ends with a valid key (its parameters: test_api_trust.py)

POISONS = [
    "",
    " ",
    "\ud800",
    "a\x00b",
    "\x00",
    "1e400",
    "NaN",
    "Infinity",
    "9" * 5000,
    "0" * 300 + "1",
    "[" * 10_000,
    "(" * 2000,
    "not(" * 200 + "exists(thingId)" + ")" * 200,
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-23:59",
    "-62135596801",
    "*",
    '"1", W/"2", *',
    "%",
    "%ED%A0%80",
    "../..",
    "~2",
    "a/b/c",
    "_revision",
    "x" * 5000,
]

HEADER_POISONS = [p for p in POISONS if p.isprintable() and p.isascii() and len(p) < 6000] + [
    '"' + "9" * 5000 + '"',
    'W/"' + "1" * 30 + '"',
    "\xff\xfe",
]

_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
).map(str)
VALUES = st.one_of(st.text(max_size=30), _numbers, st.sampled_from(POISONS))
# header values are Latin-1 without control characters (HTTP clients refuse the rest)
_latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
HEADER_VALUES = st.one_of(
    st.text(_latin1, max_size=40),
    _numbers,
    st.sampled_from(HEADER_POISONS),
)

BODIES: dict[str, Any] = {
    "putThing": {"attributes": {"a": 1}},
    "putGroup": {"filter": "exists(thingId)"},
    "putCredentials": {"password": "a-long-enough-password"},
    "createKey": {"domain": "fleet", "role": "read"},
    "createGrant": {"grantee": "other", "filter": "exists(thingId)", "role": "read"},
    "putFeature": {"properties": {"x": 1}},
    "assignNamespace": {"domain": "fleet"},
}


def _q(v: str) -> str:
    return quote(v, safe="", errors="surrogatepass")


def check_problem(r: Any, where: str, failures: list[str]) -> None:
    """Record in ``failures`` why ``r`` is a 5xx or a 4xx that is not a problem document."""
    if r.status_code >= 500:
        failures.append(f"{where} -> {r.status_code}: {r.text[:300]}")
    elif r.status_code >= 400:
        ctype = r.headers.get("content-type", "")
        try:
            doc = r.json()
        except ValueError:
            doc = None
        ok = ctype.startswith("application/problem+json") and isinstance(doc, dict)
        ok = ok and doc.get("status") == r.status_code and bool(doc.get("title"))
        ok = ok and isinstance(doc.get("detail"), str) and bool(doc["detail"])
        if not ok:
            failures.append(f"{where} -> {r.status_code} {ctype}: {r.text[:200]}")


def _fuzz_operation(api: Api, path: str, method: str, op: dict, failures: list[str]) -> None:
    params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
    conditional = ["If-Match", "If-None-Match"] if "{thingId}" in path else []
    names = [(p["in"], p["name"]) for p in params] + [("header", h) for h in conditional]
    body = BODIES.get(op["operationId"], {} if op["operationId"].startswith("patch") else 1)
    has_body = "requestBody" in op
    defaults = {"thingId": "fleet:car-7", "featureId": "battery", "path": "level", "name": "g"}
    defaults["namespace"] = "fleet"
    defaults["subject"] = "ping"
    defaults["consumer"] = "city"
    defaults["sumId"] = "0"

    def call(given_: dict[tuple[str, str], str]) -> None:
        url = path
        for p in params:
            if p["in"] == "path":
                v = given_.get(("path", p["name"]), defaults[p["name"]])
                url = url.replace("{" + p["name"] + "}", _q(v) or "x")
        query = "&".join(f"{_q(n)}={_q(v)}" for (k, n), v in given_.items() if k == "query")
        headers: dict[str, Any] = dict(api.h(None))
        for (k, n), v in given_.items():
            if k == "header":
                headers[n] = v.encode("latin-1")
        kw: dict[str, Any] = {}
        if has_body:
            kw["json"] = body
            if method == "patch":
                headers["Content-Type"] = "application/merge-patch+json"
        target = url + (f"?{query}" if query else "")
        r = api.client.request(method.upper(), target, headers=headers, **kw)
        conds = [(k, v[:40]) for k, v in headers.items() if k.startswith("If")]
        check_problem(r, f"{method.upper()} {target[:200]} {conds}", failures)

    # every poison in every parameter, one at a time
    for name in names:
        for v in POISONS if name[0] != "header" else HEADER_POISONS:
            call({name: v})

    # then arbitrary values in arbitrary combinations
    @given(
        chosen=st.lists(st.sampled_from(names), min_size=1, unique=True) if names else st.just([]),
        values=st.lists(VALUES, min_size=len(names), max_size=len(names)),
        hvalues=st.lists(HEADER_VALUES, min_size=2, max_size=2),
    )
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not os.environ.get("TWINEDGE_FUZZ_RANDOM"),
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(chosen: list[tuple[str, str]], values: list[str], hvalues: list[str]) -> None:
        given_ = dict(zip(chosen, values, strict=False))
        for i, c in enumerate(c for c in chosen if c[0] == "header"):
            given_[c] = hvalues[i]
        call(given_)

    run()


def test_every_parameter_of_every_route(api2: Api):
    api2.service.outbound = EchoDevice(api2.service)
    api2.put_thing(
        "fleet:car-7",
        {
            "attributes": {"kind": "car", "level": 3},
            "features": {
                "battery": {"properties": {"level": 5}, "desiredProperties": {"level": 9}}
            },
        },
    )
    doc = api2.client.get("/openapi.json").json()
    failures: list[str] = []
    n = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op["operationId"] in SKIP:
                continue
            n += 1
            _fuzz_operation(api2, path, method, op, failures)
    assert n > 45
    assert not failures, "\n".join(failures[:30])
