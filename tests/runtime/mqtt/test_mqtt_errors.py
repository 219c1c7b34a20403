"""How the MQTT edge tells a device of a service error (``mqtt/core.py``'s table)."""

from __future__ import annotations

import logging

import pytest

from twinedge import errors
from twinedge.errors import ServiceError
from twinedge.runtime.api.problems import status_of
from twinedge.runtime.mqtt.core import REASON_OF, REASONS, rejection_of

from ..error_classes import service_errors


@pytest.mark.parametrize("cls", service_errors(), ids=lambda c: c.__name__)
def test_every_service_error_maps_to_a_reason_with_the_http_status(cls):
    doc = rejection_of(cls("what went wrong", "/battery")).problem("twinedge/a:b/reported")
    # a device reads the status an application would get over HTTP
    assert doc["status"] == status_of(cls("x"))
    assert doc["reason"] in REASONS and doc["type"].endswith("/mqtt/" + doc["reason"])
    assert doc["detail"] == "what went wrong" and doc["topic"] == "twinedge/a:b/reported"
    if doc["reason"] in ("service-unavailable", "internal-error"):
        assert "pointer" not in doc  # about the service, not about the message
    else:
        assert doc["pointer"] == "/battery"


def test_the_reasons_are_those_the_devices_know():
    assert {c.__name__: r for c, (r, _) in REASON_OF.items()} == {
        "InvalidInput": "invalid-report",
        "Unauthenticated": "invalid-report",
        "Forbidden": "invalid-report",
        "NotFound": "unknown-thing",
        "TimedOut": "invalid-report",
        "Conflict": "invalid-report",
        "PreconditionFailed": "invalid-report",
        "TooLarge": "invalid-report",
        "OperationFailed": "internal-error",
        "Unavailable": "service-unavailable",
    }
    assert rejection_of(errors.Overloaded("full")).reason == "service-unavailable"


class Strange(ServiceError):
    """A service error nobody mapped."""


def test_an_unmapped_error_is_an_internal_error_without_its_message(caplog):
    with caplog.at_level(logging.ERROR, "twinedge.mqtt"):
        doc = rejection_of(Strange("secret internals", "/x")).problem("t")
    assert (doc["reason"], doc["status"]) == ("internal-error", 500)
    assert "secret" not in str(doc) and "pointer" not in doc
    assert "secret internals" in caplog.text
