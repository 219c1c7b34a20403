"""The HTTP API as Eclipse Ditto's clients use it: definitions and policyId, rev:N ETags
and conditions, Ditto's search parameters, field selectors, ids, error members, and
unknown parameters refused. Each answer is checked against content written by hand."""

from __future__ import annotations

import pytest

from .conftest import Api, problem_of
from .test_api_commands_ops import SilentDevice

T = "/api/2/things/fleet:lamp-1"
S = "/api/2/search/things"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
VOLATILE = ("_created", "_modified")

# a thing as Ditto's documentation writes one, pasted as it is
DITTO_THING = {
    "thingId": "fleet:lamp-1",
    "policyId": "fleet:lamp-policy",
    "definition": "org.example:lamp:1.0.0",
    "attributes": {
        "manufacturer": "ACME corp",
        "complex": {"some": False, "serialNo": 4711, "misc": "foo"},
    },
    "features": {
        "lamp": {
            "definition": ["org.example:switchable:2.1"],
            "properties": {"on": True, "color": "blue"},
        },
        "infrared-lamp": {"properties": {"on": False, "color": "red"}},
    },
}


def _stable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def _ditto_error(r, status: int, error: str) -> dict:
    """The answer's problem document, with Ditto's members checked."""
    doc = problem_of(r, status)
    assert doc["status"] == status and doc["error"] == error, doc
    assert doc["message"] == doc["detail"] and doc["description"]
    return doc


# --- definitions and policyId -------------------------------------------------------------


def test_a_ditto_thing_pasted_into_put_comes_back_whole(api: Api):
    c, h = api.client, api.h()
    r = c.put(T, json=DITTO_THING, headers=h)
    assert r.status_code == 201 and r.headers["etag"] == '"rev:1"'
    r = c.get(T, headers=h)
    assert r.headers["etag"] == '"rev:1"'
    assert _stable(r.json()) == {
        **DITTO_THING,
        "_revision": 1,
        "_domain": "fleet",
        "_host": None,
        "_inSync": True,
    }
    assert c.get(f"{T}/policyId", headers=h).json() == "fleet:lamp-policy"
    assert c.get(f"{T}/definition", headers=h).json() == "org.example:lamp:1.0.0"
    r = c.get(f"{T}/features/lamp/definition", headers=h)
    assert r.json() == ["org.example:switchable:2.1"] and r.headers["etag"] == '"rev:1"'
    assert c.get(f"{T}/features/lamp", headers=h).json() == {
        "definition": ["org.example:switchable:2.1"],
        "properties": {"on": True, "color": "blue"},
    }


def test_definition_and_policy_id_at_their_own_paths(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:lamp-1", {"attributes": {"a": 1}})
    # created at their paths (201 with the value), replaced (204)
    r = c.put(f"{T}/definition", json="org.example:lamp:2.0", headers=h)
    assert r.status_code == 201 and r.json() == "org.example:lamp:2.0"
    assert r.headers["etag"] == '"rev:2"'
    r = c.put(f"{T}/definition", json="https://models.example.org/lamp-3.tm.jsonld", headers=h)
    assert r.status_code == 204 and r.headers["etag"] == '"rev:3"'
    r = c.put(f"{T}/policyId", json="fleet:shared-policy", headers=h)
    assert r.status_code == 201 and r.json() == "fleet:shared-policy"
    r = c.put(f"{T}/features/lamp/definition", json=["a.b:c:1", "a.b:d:2"], headers=h)
    assert r.status_code == 201
    doc = c.get(T, headers=h).json()
    assert doc["definition"] == "https://models.example.org/lamp-3.tm.jsonld"
    assert doc["policyId"] == "fleet:shared-policy"
    assert doc["features"] == {"lamp": {"definition": ["a.b:c:1", "a.b:d:2"]}}
    # PATCH with null deletes (as Ditto), a thing definition may also be null
    r = c.patch(f"{T}/definition", content=b"null", headers=h)
    assert r.status_code == 204
    _ditto_error(c.get(f"{T}/definition", headers=h), 404, "things:definition.notfound")
    assert c.put(f"{T}/definition", content=b"null", headers=h).status_code == 201
    assert c.get(f"{T}/definition", headers=h).json() is None
    r = c.delete(f"{T}/features/lamp/definition", headers=h)
    assert r.status_code == 204
    _ditto_error(
        c.get(f"{T}/features/lamp/definition", headers=h),
        404,
        "things:feature.definition.notfound",
    )
    # Ditto has no DELETE of the policy id
    assert c.delete(f"{T}/policyId", headers=h).status_code == 405
    assert c.get(f"{T}/policyId", headers=h).json() == "fleet:shared-policy"


@pytest.mark.parametrize(
    "path, body, error, pointer",
    [
        ("", {"definition": "lamp"}, "things:definition.identifier.invalid", "/definition"),
        ("", {"definition": 7}, "things:definition.identifier.invalid", "/definition"),
        ("", {"definition": "a:b:c:d"}, "things:definition.identifier.invalid", "/definition"),
        ("", {"policyId": "no-namespace"}, "policies:id.invalid", "/policyId"),
        ("", {"policyId": None}, "policies:id.invalid", "/policyId"),
        (
            "",
            {"features": {"f": {"definition": []}}},
            "things:feature.definition.empty",
            "/features/f/definition",
        ),
        (
            "",
            {"features": {"f": {"definition": "a:b:1"}}},
            "things:feature.definition.identifier.invalid",
            "/features/f/definition",
        ),
        (
            "",
            {"features": {"f": {"definition": ["a:b:1", "a b:c:1"]}}},
            "things:feature.definition.identifier.invalid",
            "/features/f/definition/1",
        ),
        ("/definition", "x:y", "things:definition.identifier.invalid", "/definition"),
        ("/policyId", 42, "policies:id.invalid", "/policyId"),
        (
            "/features/f/definition",
            [None],
            "things:feature.definition.identifier.invalid",
            "/features/f/definition/0",
        ),
    ],
)
def test_bad_definitions_and_policy_ids_are_refused(api: Api, path, body, error, pointer):
    api.put_thing("fleet:lamp-1", {"features": {"f": {}}})
    r = api.client.put(f"{T}{path}", json=body, headers=api.h())
    doc = _ditto_error(r, 400, error)
    assert doc["pointer"] == pointer
    # nothing was written
    assert api.client.get(T, headers=api.h()).json()["_revision"] == 1


# --- ETags and conditions -----------------------------------------------------------------


def test_rev_etags_as_ditto_sends_them(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:lamp-1", DITTO_THING)
    assert c.get(f"{T}/attributes", headers=h).headers["etag"] == '"rev:1"'
    # If-Match with Ditto's form, then with the bare revision (still accepted)
    r = c.put(f"{T}/attributes/x", json=1, headers=api.h(**{"If-Match": '"rev:1"'}))
    assert r.status_code == 201 and r.headers["etag"] == '"rev:2"'
    r = c.put(f"{T}/attributes/x", json=2, headers=api.h(**{"If-Match": '"2"'}))
    assert r.status_code == 204 and r.headers["etag"] == '"rev:3"'
    doc = _ditto_error(
        c.put(f"{T}/attributes/x", json=3, headers=api.h(**{"If-Match": '"rev:2"'})),
        412,
        "things:precondition.failed",
    )
    assert doc["currentRevision"] == 3
    # Ditto's hash tags of sub-resources are not tags of this API
    doc = _ditto_error(
        c.put(f"{T}/attributes/x", json=3, headers=api.h(**{"If-Match": '"hash:1f2e"'})),
        412,
        "things:precondition.failed",
    )
    assert "rev:<revision>" in doc["detail"]
    r = c.get(T, headers=api.h(**{"If-None-Match": '"rev:3"'}))
    assert r.status_code == 304 and r.headers["etag"] == '"rev:3"'
    assert c.get(T, headers=api.h(**{"If-None-Match": '"rev:2"'})).status_code == 200
    assert c.get(f"{T}/attributes/x", headers=h).json() == 2


def test_condition_on_every_method(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:lamp-1", DITTO_THING)
    on = "eq(features/lamp/properties/on,true)"
    off = "eq(features/lamp/properties/on,false)"
    # PUT: applied when the condition holds on the current thing...
    r = c.put(
        f"{T}/features/lamp/properties/color", params={"condition": on}, json="green", headers=h
    )
    assert r.status_code == 204 and r.headers["etag"] == '"rev:2"'
    # ... and 412 with nothing done when it does not
    doc = _ditto_error(
        c.put(
            f"{T}/features/lamp/properties/color", params={"condition": off}, json="x", headers=h
        ),
        412,
        "things:condition.failed",
    )
    assert doc["currentRevision"] == 2 and off in doc["detail"]
    # PATCH and DELETE alike; the condition may also come as a header (Ditto's)
    r = c.patch(
        f"{T}/attributes",
        json={"checked": True},
        headers=api.h(condition="gt(attributes/complex/serialNo,4700)"),
    )
    assert r.status_code == 204 and r.headers["etag"] == '"rev:3"'
    _ditto_error(
        c.delete(f"{T}/attributes/checked", params={"condition": off}, headers=h),
        412,
        "things:condition.failed",
    )
    # GET: 200 when true, 412 when false (evaluated on the current thing)
    r = c.get(f"{T}/attributes/checked", params={"condition": on}, headers=h)
    assert r.status_code == 200 and r.json() is True
    _ditto_error(
        c.get(T, params={"condition": "exists(attributes/none)"}, headers=h),
        412,
        "things:condition.failed",
    )
    # an as-of read is conditioned on the current thing too
    r = c.get(T, params={"revision": 1, "condition": "eq(_revision,3)"}, headers=h)
    assert r.status_code == 200 and r.json()["features"]["lamp"]["properties"]["color"] == "blue"
    doc = c.get(T, headers=h).json()
    assert doc["_revision"] == 3
    assert doc["features"]["lamp"]["properties"] == {"on": True, "color": "green"}
    assert doc["attributes"]["checked"] is True
    r = c.delete(f"{T}/attributes/checked", params={"condition": on}, headers=h)
    assert r.status_code == 204


def test_bad_conditions(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:lamp-1", DITTO_THING)
    doc = _ditto_error(
        c.put(f"{T}/attributes/x", params={"condition": "eq(attributes/x"}, json=1, headers=h),
        400,
        "things:condition.invalid",
    )
    assert doc["detail"].startswith("condition: unexpected end of filter")
    _ditto_error(
        c.get(T, params={"condition": "exists(thingId)"}, headers=api.h(condition="exists(x)")),
        400,
        "things:condition.invalid",
    )
    # on a thing that does not exist a condition cannot be evaluated
    _ditto_error(
        c.put(
            "/api/2/things/fleet:nope",
            params={"condition": "exists(thingId)"},
            json={},
            headers=h,
        ),
        404,
        "things:thing.notfound",
    )
    assert c.get("/api/2/things/fleet:nope", headers=api.h()).status_code == 404


# --- field selectors ----------------------------------------------------------------------


def test_fields_on_a_single_thing_and_its_levels(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:lamp-1", DITTO_THING)

    def get(url: str, fields: str):
        r = c.get(url, params={"fields": fields}, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    assert get(T, "thingId,policyId") == {
        "thingId": "fleet:lamp-1",
        "policyId": "fleet:lamp-policy",
    }
    assert get(T, "attributes/complex(some,serialNo)") == {
        "attributes": {"complex": {"some": False, "serialNo": 4711}}
    }
    assert get(T, "attributes(manufacturer),features/lamp/properties/on") == {
        "attributes": {"manufacturer": "ACME corp"},
        "features": {"lamp": {"properties": {"on": True}}},
    }
    assert get(T, "features/*/properties/on") == {
        "features": {
            "lamp": {"properties": {"on": True}},
            "infrared-lamp": {"properties": {"on": False}},
        }
    }
    assert get(T, "definition,_revision,attributes/none") == {
        "definition": "org.example:lamp:1.0.0",
        "_revision": 1,
    }
    # relative to the level read
    assert get(f"{T}/attributes", "complex/misc,manufacturer") == {
        "complex": {"misc": "foo"},
        "manufacturer": "ACME corp",
    }
    assert get(f"{T}/features", "lamp(definition)") == {
        "lamp": {"definition": ["org.example:switchable:2.1"]}
    }
    assert get(f"{T}/features/lamp/properties", "color") == {"color": "blue"}


@pytest.mark.parametrize(
    "fields, why",
    [
        ("attributes(a", "is not closed"),
        ("attributes)", "unbalanced parentheses"),
        ("attributes,,thingId", "empty path"),
        ("attributes//a", "empty key"),
        ("attributes()", "empty path"),
    ],
)
def test_bad_field_selectors(api: Api, fields, why):
    api.put_thing("fleet:lamp-1", DITTO_THING)
    for url in (T, S):
        r = api.client.get(url, params={"fields": fields}, headers=api.h())
        doc = _ditto_error(r, 400, "json.fieldselector.invalid")
        assert why in doc["detail"]
    # a selector below a value that is not an object
    r = api.client.get(f"{T}/attributes/manufacturer", params={"fields": "x"}, headers=api.h())
    assert "not one" in _ditto_error(r, 400, "json.fieldselector.invalid")["detail"]


# --- GET /things?ids= ---------------------------------------------------------------------


def test_things_by_ids_lists_only_the_visible_ones_in_order(api: Api):
    c = api.client
    api.put_thing("fleet:a", {"attributes": {"n": 1}})
    api.put_thing("fleet:b", {"attributes": {"n": 2}})
    api.put_thing("city:c", {"attributes": {"n": 3}}, domain="city")
    r = c.get(
        "/api/2/things",
        params={
            "ids": "fleet:b,city:c,fleet:none,fleet:a,fleet:b",
            "fields": "thingId,attributes/n",
        },
        headers=api.h(),
    )
    assert r.status_code == 200
    assert r.json() == [
        {"thingId": "fleet:b", "attributes": {"n": 2}},
        {"thingId": "fleet:a", "attributes": {"n": 1}},
    ]
    whole = c.get("/api/2/things", params={"ids": "city:c"}, headers=api.h("city")).json()
    assert [_stable(t) for t in whole] == [
        {
            "thingId": "city:c",
            "attributes": {"n": 3},
            "features": {},
            "_revision": 1,
            "_domain": "city",
            "_host": None,
            "_inSync": True,
        }
    ]
    _ditto_error(c.get("/api/2/things", headers=api.h()), 400, "things:things.ids.missing")
    _ditto_error(
        c.get("/api/2/things", params={"ids": "fleet:a,nocolon"}, headers=api.h()),
        400,
        "things:id.invalid",
    )
    many = ",".join(f"fleet:t{i}" for i in range(201))
    doc = problem_of(c.get("/api/2/things", params={"ids": many}, headers=api.h()), 400)
    assert "at most 200" in doc["detail"]


# --- search -------------------------------------------------------------------------------


def _two_namespaces(api: Api) -> None:
    names = {"fleet:v-0": "Alpha", "fleet:v-1": "bravo", "fleet:v-2": "Charlie"}
    for tid, name in names.items():
        api.put_thing(tid, {"attributes": {"name": name, "n": int(tid[-1])}})
    api.client.put(
        "/api/2/namespaces/depot", json={"domain": "fleet"}, headers=api.h(None)
    ).raise_for_status()
    api.put_thing("depot:d-0", {"attributes": {"name": "ALPINE", "n": 10}})
    api.put_thing("depot:d-1", {"attributes": {"name": "delta", "n": 11}})


def _ids(r) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["thingId"] for i in r.json()["items"]]


def test_search_with_ditto_options_and_namespaces(api: Api):
    _two_namespaces(api)
    c, h = api.client, api.h()
    r = c.get(S, params={"option": "size(2),sort(-attributes/n)"}, headers=h)
    assert _ids(r) == ["depot:d-1", "depot:d-0"]
    cursor = r.json()["cursor"]
    assert cursor
    # the next pages: the same sort, the cursor as an option (the parameter may repeat)
    seen = []
    while cursor:
        r = c.get(f"{S}?option=sort(-attributes/n)&option=size(2),cursor({cursor})", headers=h)
        seen += _ids(r)
        cursor = r.json()["cursor"]
    assert seen == ["fleet:v-2", "fleet:v-1", "fleet:v-0"]
    # namespaces
    r = c.get(S, params={"namespaces": "depot", "option": "sort(+thingId)"}, headers=h)
    assert _ids(r) == ["depot:d-0", "depot:d-1"]
    r = c.get(
        S,
        params={
            "namespaces": "fleet,depot",
            "filter": "gt(attributes/n,1)",
            "option": "sort(+thingId)",
        },
        headers=h,
    )
    assert _ids(r) == ["depot:d-0", "depot:d-1", "fleet:v-2"]
    # fields with parentheses
    r = c.get(
        S,
        params={"namespaces": "fleet", "fields": "thingId,attributes(name)", "option": "size(1)"},
        headers=h,
    )
    assert r.json()["items"] == [{"thingId": "fleet:v-0", "attributes": {"name": "Alpha"}}]
    # ilike: like, with A-Z folded
    r = c.get(
        S, params={"filter": 'ilike(attributes/name,"al*")', "option": "sort(+thingId)"}, headers=h
    )
    assert _ids(r) == ["depot:d-0", "fleet:v-0"]
    assert _ids(c.get(S, params={"filter": 'like(attributes/name,"al*")'}, headers=h)) == []
    # counts with namespaces
    assert c.get(f"{S}/count", params={"namespaces": "depot"}, headers=h).json() == 2
    # limit(offset,count), Ditto's older paging: nextPageOffset instead of a cursor
    r = c.get(S, params={"option": "sort(+thingId),limit(0,1)"}, headers=h)
    assert _ids(r) == ["depot:d-0"]
    assert set(r.json()) == {"items", "nextPageOffset"} and r.json()["nextPageOffset"] == 1


def test_search_and_count_by_post_form(api: Api):
    _two_namespaces(api)
    c, h = api.client, api.h(**FORM)
    body = (
        "filter=" + "ilike(attributes/name,%22*A*%22)"  # "*A*" percent-encoded
        "&namespaces=fleet"
        "&option=sort(%2Battributes/n)"
        "&option=size(5)"
        "&fields=thingId,attributes/n"
    )
    r = c.post(S, content=body, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "items": [
            {"thingId": "fleet:v-0", "attributes": {"n": 0}},
            {"thingId": "fleet:v-1", "attributes": {"n": 1}},
            {"thingId": "fleet:v-2", "attributes": {"n": 2}},
        ],
        "cursor": None,
    }
    # a '+' not percent-encoded arrives as a space: still ascending
    r = c.post(S, content="option=sort(+thingId),size(1)&namespaces=depot", headers=h)
    assert _ids(r) == ["depot:d-0"]
    r = c.post(f"{S}/count", content="filter=gt(attributes/n,1)&namespaces=fleet,depot", headers=h)
    assert r.status_code == 200 and r.json() == 3
    assert c.post(f"{S}/count", content="", headers=h).json() == 5
    # bad forms
    r = c.post(S, content="filter=exists(thingId)&size=3", headers=h)
    assert "unknown form field 'size'" in problem_of(r, 400)["detail"]
    r = c.post(f"{S}/count", content="option=size(3)", headers=h)
    assert "unknown form field 'option'" in problem_of(r, 400)["detail"]
    r = c.post(S, content="filter=a&filter=b", headers=h)
    assert "given 2 times" in problem_of(r, 400)["detail"]
    r = c.post(S, json={"filter": "exists(thingId)"}, headers=api.h())
    assert "x-www-form-urlencoded" in problem_of(r, 415)["detail"]
    r = c.post(S, content="filter=%FF", headers=h)
    assert "UTF-8" in problem_of(r, 400)["detail"]


@pytest.mark.parametrize(
    "params, error, why",
    [
        ({"option": "size(0)"}, "thing-search:search.option.invalid", "from 1 to 200"),
        ({"option": "size(201)"}, "thing-search:search.option.invalid", "from 1 to 200"),
        ({"option": "size(x)"}, "thing-search:search.option.invalid", "whole number"),
        ({"option": "size(2"}, "thing-search:search.option.invalid", "unbalanced"),
        ({"option": "size"}, "thing-search:search.option.invalid", "not name(arguments)"),
        ({"option": "page(2)"}, "thing-search:search.option.invalid", "unknown option 'page'"),
        ({"option": "size(2),size(3)"}, "thing-search:search.option.invalid", "given twice"),
        ({"option": "size(2),limit(0,3)"}, "thing-search:search.option.invalid", "given twice"),
        ({"option": "limit(5)"}, "thing-search:search.option.invalid", "not limit(offset,count)"),
        ({"option": "limit(x,2)"}, "thing-search:search.option.invalid", "not limit(offset,count)"),
        (
            {"option": "limit(-1,2)"},
            "thing-search:search.option.invalid",
            "not limit(offset,count)",
        ),
        ({"option": "limit(0,0)"}, "thing-search:search.option.invalid", "from 1 to 200"),
        ({"option": "limit(0,201)"}, "thing-search:search.option.invalid", "from 1 to 200"),
        (
            {"option": "limit(1000000001,2)"},
            "thing-search:search.option.invalid",
            "offset must be 0..1,000,000,000",
        ),
        (
            {"option": "limit(0,2),cursor(abc)"},
            "thing-search:search.option.invalid",
            "use one of them",
        ),
        (
            {"option": "limit(2,2)", "cursor": "abc"},
            "thing-search:search.option.invalid",
            "takes no cursor",
        ),
        ({"option": "limit(2,2)", "limit": "3"}, "thing-search:search.option.invalid", "not both"),
        ({"option": "sort()"}, "thing-search:search.option.invalid", "names no field"),
        (
            {"option": "sort(+nope)"},
            "thing-search:search.option.invalid",
            "unknown sort path 'nope'",
        ),
        ({"option": "sort(+_inSync)"}, "thing-search:search.option.invalid", "unknown sort path"),
        ({"sort": "+nope/x"}, "thing-search:search.option.invalid", "unknown sort path 'nope/x'"),
        ({"option": "cursor()"}, "thing-search:search.option.invalid", "cursor() is empty"),
        (
            {"option": "cursor(garbage!)"},
            "thing-search:search.option.invalid",
            "not one this service made",
        ),
        ({"option": "size(2)", "limit": "3"}, "thing-search:search.option.invalid", "not both"),
        (
            {"option": "sort(+thingId)", "sort": "-thingId"},
            "thing-search:search.option.invalid",
            "not both",
        ),
        (
            {"namespaces": "fleet,no:pe"},
            "thing-search:search.namespaces.invalid",
            "'no:pe' is not a namespace",
        ),
        ({"filter": "eq(attributes/n"}, "rql.expression.invalid", "unexpected end of filter"),
    ],
)
def test_bad_search_parameters(api: Api, params, error, why):
    api.put_thing("fleet:v-0", {"attributes": {"n": 0}})
    r = api.client.get(S, params=params, headers=api.h())
    doc = _ditto_error(r, 400, error)
    assert why in doc["detail"], doc["detail"]


# seven things and their order by -attributes/n, then +thingId (v-3 and v-4 tie on n=5)
LIMIT_THINGS = {"v-0": 2, "v-1": 9, "v-2": 4, "v-3": 5, "v-4": 5, "v-5": 0, "v-6": 7}
LIMIT_ORDER = ["v-1", "v-6", "v-3", "v-4", "v-2", "v-0", "v-5"]


def test_limit_offset_pages_as_ditto(api2: Api, monkeypatch: pytest.MonkeyPatch):
    """limit(offset,count) over every offset 0..8 and count 1..4, on SQLite and PostgreSQL:
    the slice of the order written out above, and nextPageOffset offset+count while a
    thing follows, else -1. The walk to the offset reads 2 things a step here, so offsets
    above 2 take several steps (and end exactly on or past the last thing)."""
    from twinedge.runtime.api import routes_search

    monkeypatch.setattr(routes_search, "SKIP_PAGE", 2)
    for name, n in LIMIT_THINGS.items():
        api2.put_thing(f"fleet:{name}", {"attributes": {"n": n}})
    api2.put_thing("depot:d-0", {"attributes": {"n": 100}}, domain="depot")  # not visible
    c, h = api2.client, api2.h()
    for offset in range(9):
        for count in range(1, 5):
            option = f"sort(-attributes/n,+thingId),limit({offset},{count})"
            r = c.get(S, params={"option": option, "namespaces": "fleet"}, headers=h)
            assert r.status_code == 200, r.text
            want = [f"fleet:{x}" for x in LIMIT_ORDER[offset : offset + count]]
            nxt = offset + count if offset + count < len(LIMIT_ORDER) else -1
            assert _ids(r) == want, (offset, count)
            assert set(r.json()) == {"items", "nextPageOffset"}, r.json()
            assert r.json()["nextPageOffset"] == nxt, (offset, count)
    # fields, a filter and the form body of POST take part as with size(n)
    body = (
        "filter=gt(attributes/n,3)&namespaces=fleet&fields=thingId,attributes/n"
        "&option=sort(%2Battributes/n),limit(1,2)"
    )
    r = c.post(S, content=body, headers=api2.h(**FORM))
    assert r.status_code == 200, r.text
    # n > 3 ascending: v-2 (4), v-3 (5), v-4 (5), v-6 (7), v-1 (9); from position 1, two
    assert r.json() == {
        "items": [
            {"thingId": "fleet:v-3", "attributes": {"n": 5}},
            {"thingId": "fleet:v-4", "attributes": {"n": 5}},
        ],
        "nextPageOffset": 3,
    }
    # without namespaces: fleet's key never meets depot's thing (n=100) on any page
    r = c.get(S, params={"option": "sort(-attributes/n),limit(0,1)"}, headers=h)
    assert _ids(r) == ["fleet:v-1"] and r.json()["nextPageOffset"] == 1
    r = c.get(S, params={"option": "sort(-attributes/n),limit(6,5)"}, headers=h)
    assert _ids(r) == ["fleet:v-5"] and r.json()["nextPageOffset"] == -1


def test_a_cursor_belongs_to_its_namespaces(api: Api):
    _two_namespaces(api)
    c, h = api.client, api.h()
    cursor = c.get(S, params={"option": "size(1)", "namespaces": "fleet"}, headers=h).json()[
        "cursor"
    ]
    r = c.get(S, params={"option": f"size(1),cursor({cursor})", "namespaces": "depot"}, headers=h)
    assert "another query" in _ditto_error(r, 400, "thing-search:search.option.invalid")["detail"]


# --- errors as Ditto's clients read them --------------------------------------------------


def test_not_found_errors_name_the_missing_level(api: Api):
    c, h = api.client, api.h()
    api.put_thing("fleet:lamp-1", DITTO_THING)
    cases = {
        "/api/2/things/fleet:nope": "things:thing.notfound",
        "/api/2/things/fleet:nope/attributes/x": "things:thing.notfound",
        f"{T}/attributes/nope": "things:attribute.notfound",
        f"{T}/features/nope": "things:feature.notfound",
        f"{T}/features/nope/properties/on": "things:feature.notfound",
        f"{T}/features/infrared-lamp/properties/nope": "things:feature.property.notfound",
        f"{T}/features/lamp/desiredProperties": "things:feature.desiredProperties.notfound",
        f"{T}/features/lamp/desiredProperties/x": "things:feature.desiredProperties.notfound",
    }
    for url, error in cases.items():
        doc = _ditto_error(c.get(url, headers=h), 404, error)
        assert doc["instance"] == url
    r = c.delete(f"{T}/attributes/nope", headers=h)
    _ditto_error(r, 404, "things:attribute.notfound")
    r = c.get(T)
    doc = _ditto_error(r, 401, "gateway:authentication.failed")
    assert doc["title"] == "Unauthorized" and doc["type"].endswith("/unauthorized")


def test_errors_keep_rfc7807_beside_dittos_members(api: Api):
    r = api.client.get(f"{T}/attributes/x", headers=api.h())
    doc = problem_of(r, 404)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert doc == {
        "type": "https://twinedge.dev/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": doc["detail"],
        "instance": f"{T}/attributes/x",
        "error": "things:thing.notfound",
        "message": doc["detail"],
        "description": "Check the thing id and the path, and that your key may read the thing.",
    }
    assert "fleet:lamp-1" in doc["detail"]


def test_an_unanswered_message_is_dittos_message_timeout(api: Api):
    """A message to a thing's inbox that the device leaves unanswered is a 408 with
    Ditto's ``messages:message.timeout``; the device did get it."""
    api.put_thing("fleet:lamp-1", DITTO_THING)
    device = SilentDevice()
    api.service.outbound = device
    url = f"{T}/inbox/messages/switch"
    r = api.client.post(url, params={"timeout": 0.2}, json={"on": False}, headers=api.h())
    doc = _ditto_error(r, 408, "messages:message.timeout")
    assert doc["instance"] == url
    assert "did not answer command 'switch'" in doc["detail"]
    assert device.commands == [("fleet:lamp-1", "switch", {"on": False})]


# --- unknown parameters and headers -------------------------------------------------------


@pytest.mark.parametrize(
    "method, url",
    [
        ("GET", T),
        ("PUT", f"{T}/attributes/x"),
        ("PATCH", f"{T}/attributes"),
        ("DELETE", f"{T}/attributes/x"),
        ("GET", f"{T}/history"),
        ("GET", f"{T}/delta"),
        ("GET", S),
        ("GET", f"{S}/count"),
        ("GET", f"{S}/aggregate?groupBy=attributes/x"),
        ("GET", "/api/2/groups"),
        ("GET", "/api/2/events"),
        ("GET", "/healthz"),
        ("GET", "/api/2/things?ids=fleet:lamp-1"),
    ],
)
def test_unknown_query_parameters_are_refused(api: Api, method, url):
    api.put_thing("fleet:lamp-1", DITTO_THING)
    sep = "&" if "?" in url else "?"
    r = api.client.request(method, f"{url}{sep}timeout=5&Fields=x", json={}, headers=api.h())
    doc = _ditto_error(r, 400, "twinedge:query.parameter.unknown")
    assert doc["detail"].startswith("unknown query parameter 'Fields'")  # the first, sorted
    assert [p["name"] for p in doc["invalid-params"]] == ["Fields", "timeout"]
    assert api.client.get(T, headers=api.h()).json()["_revision"] == 1


def test_the_own_parameters_of_routes_still_work(api: Api):
    api.put_thing("fleet:lamp-1", DITTO_THING)
    c, h = api.client, api.h()
    assert c.get(f"{T}/history", params={"limit": 1, "from": "0"}, headers=h).status_code == 200
    r = c.get(f"{S}/aggregate", params={"groupBy": "_domain", "fn": "count"}, headers=h)
    assert r.json()["items"] == [{"key": "fleet", "value": 1}]
    assert c.get(
        S, params={"sort": "+thingId", "limit": 1, "fields": "thingId"}, headers=h
    ).json() == {
        "items": [{"thingId": "fleet:lamp-1"}],
        "cursor": None,
    }


@pytest.mark.parametrize(
    "header", ["If-Modified-Since", "If-Unmodified-Since", "If-Range", "if-equal"]
)
def test_unsupported_conditional_headers_are_refused(api: Api, header):
    api.put_thing("fleet:lamp-1", DITTO_THING)
    for method, url in (("GET", T), ("PUT", f"{T}/attributes/x"), ("GET", S)):
        r = api.client.request(
            method, url, json=1, headers=api.h(**{header: "Wed, 21 Oct 2015 07:28:00 GMT"})
        )
        doc = _ditto_error(r, 400, "header.notsupported")
        assert header.lower() in doc["detail"]
    assert api.client.get(T, headers=api.h()).json()["_revision"] == 1


def test_conditions_where_nothing_evaluates_them_are_refused(api: Api):
    api.put_thing("fleet:lamp-1", DITTO_THING)
    c = api.client
    for header, value in (
        ("If-Match", "*"),
        ("If-None-Match", '"rev:1"'),
        ("condition", "exists(thingId)"),
    ):
        for url in (S, f"{T}/delta", "/api/2/groups"):
            r = c.get(url, headers=api.h(**{header: value}))
            doc = _ditto_error(r, 400, "header.notsupported")
            assert "only the levels of a thing" in doc["detail"]
