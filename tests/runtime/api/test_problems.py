"""The one table from the core's errors to HTTP problems (``api/problems.py``)."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from twinedge import errors
from twinedge.errors import ServiceError
from twinedge.runtime.api.problems import (
    STATUS_OF,
    GuardMiddleware,
    ProblemError,
    install_problem_handlers,
    problem_of,
    status_of,
)

from ..error_classes import service_errors

# what each kind of error answered before the core had its own errors (status, type)
EXPECTED = {
    "InvalidInput": (400, "bad-request"),
    "Unauthenticated": (401, "unauthorized"),
    "Forbidden": (403, "forbidden"),
    "NotFound": (404, "not-found"),
    "TimedOut": (408, "request-timeout"),
    "Conflict": (409, "conflict"),
    "PreconditionFailed": (412, "precondition-failed"),
    "TooLarge": (413, "payload-too-large"),
    "OperationFailed": (500, "internal-server-error"),
    "Unavailable": (503, "service-unavailable"),
    "Overloaded": (503, "service-unavailable"),
    "ServedAtEdge": (503, "service-unavailable"),
}
# Ditto's error code of each on a thing's path (a read; a pointer into the body)
DITTO_ERROR = {
    "InvalidInput": "things:thing.invalid",
    "Unauthenticated": "gateway:authentication.failed",
    "Forbidden": "twinedge:access.forbidden",
    "NotFound": "things:thing.notfound",
    "TimedOut": "command.timeout",
    "Conflict": "things:thing.conflict",
    "PreconditionFailed": "things:precondition.failed",
    "TooLarge": "things:thing.toolarge",
    "OperationFailed": "internalerror",
    "Unavailable": "things:thing.unavailable",
    "Overloaded": "things:thing.unavailable",
    "ServedAtEdge": "things:thing.unavailable",
}


@pytest.mark.parametrize("cls", service_errors(), ids=lambda c: c.__name__)
def test_every_service_error_maps_to_its_problem(cls):
    status, kind = EXPECTED[cls.__name__]
    exc = cls("what went wrong; what to do", "/attributes/x", column=7)
    assert status_of(exc) == status
    doc = problem_of(exc).to_json("/api/2/things/a:b")
    assert doc == {
        "type": f"https://twinedge.dev/problems/{kind}",
        "title": doc["title"],
        "status": status,
        "detail": "what went wrong; what to do",
        "instance": "/api/2/things/a:b",
        "pointer": "/attributes/x",
        "column": 7,
        "error": DITTO_ERROR[cls.__name__],
        "message": "what went wrong; what to do",
        "description": doc["description"],
    }
    assert doc["title"].lower().replace(" ", "-") == kind
    assert doc["description"] and doc["description"] != doc["message"]


def test_the_table_lists_only_classes_of_the_error_tree():
    assert set(STATUS_OF) <= set(service_errors())
    assert set(EXPECTED) == {c.__name__ for c in service_errors()}


def test_a_problem_without_pointer_has_no_pointer_member():
    doc = problem_of(errors.NotFound("thing a:b does not exist")).to_json()
    assert "pointer" not in doc and "instance" not in doc and doc["status"] == 404


class Strange(ServiceError):
    """A service error nobody mapped (a bug in twinedge, not in the request)."""


def test_an_unmapped_error_is_a_500_without_its_message(caplog):
    with caplog.at_level(logging.ERROR, "twinedge.api"):
        p = problem_of(Strange("secret internals", "/x", hint="private"))
    doc = p.to_json()
    assert p.status == 500 and doc["type"].endswith("internal-server-error")
    assert "secret" not in str(doc) and "private" not in str(doc) and "pointer" not in doc
    assert doc["errorId"] in doc["detail"]
    assert doc["errorId"] in caplog.text and "secret internals" in caplog.text


def test_the_app_answers_service_errors_with_their_problems():
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(GuardMiddleware)

    @app.get("/missing")
    async def missing():
        raise errors.NotFound("thing a:b does not exist")

    @app.get("/overloaded")
    async def overloaded():
        raise errors.Overloaded("the service is overloaded (write queue full); retry")

    @app.get("/strange")
    async def strange():
        raise Strange("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/missing")
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json() == {
            "type": "https://twinedge.dev/problems/not-found",
            "title": "Not Found",
            "status": 404,
            "detail": "thing a:b does not exist",
            "instance": "/missing",
            "error": "twinedge:resource.notfound",
            "message": "thing a:b does not exist",
            "description": "Check the thing id and the path, and that your key may read the thing.",
        }
        assert client.get("/overloaded").json()["status"] == 503
        r = client.get("/strange")
        assert r.status_code == 500 and "secret" not in r.text and r.json()["errorId"]


def test_problem_document_members():
    doc = ProblemError(412, "Precondition Failed", "x").to_json("/api/2/things/a:b")
    assert (
        doc["status"] == 412
        and doc["instance"] == "/api/2/things/a:b"
        and doc["type"].endswith("precondition-failed")
    )
