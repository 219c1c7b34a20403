"""The twin document on an edge host, and the checks every change passes.

An edge twin is the core's thing document without the service fields (Eclipse Ditto
layout, see :mod:`twinedge.runtime.things`)::

    {"thingId": "fleet:car-7", "attributes": {...},
     "features": {"position": {"properties": {...}, "desiredProperties": {...}}}}

Its revision and fencing epoch are kept beside it, not inside it. Every change to it is a
JSON merge patch of the whole document (RFC 7396): a report ``{"battery": {"level": 71}}``
becomes ``{"features": {"battery": {"properties": {"level": 71}}}}``. The log stores the
patch, so replaying the log (recovery, a migration's catch-up, the core's replica)
rebuilds exactly the same document whatever a behaviour computed.

What a document may hold is what the core stores (:data:`twinedge.runtime.things.JSON_LIMITS`,
at most :data:`twinedge.runtime.things.MAX_DEPTH` levels, at most :data:`MAX_TWIN_BYTES`),
so that a change the edge acknowledged is never refused by the core later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twinedge import jsontext
from twinedge.edge.errors import InvalidReportError
from twinedge.errors import ServiceError
from twinedge.runtime import things
from twinedge.textinput import TextInputError, check_value, loads

__all__ = [
    "MAX_TWIN_BYTES",
    "Patch",
    "check_patch",
    "check_report",
    "decode",
    "desired_patch",
    "encode",
    "new_document",
    "patch_changes",
    "report_patch",
]

#: The largest twin document the core stores (the same limit as ``twinedge serve``).
MAX_TWIN_BYTES = 256_000

Patch = dict[str, Any]
"""A JSON merge patch (RFC 7396) of the twin document."""

_FEATURE_KEYS = frozenset({"properties", "desiredProperties"})


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value`` (what the log stores and migrations copy)."""
    return jsontext.dumps_bytes(value)


def decode(data: bytes | str) -> Any:
    """Strict JSON (:func:`twinedge.textinput.loads` under the runtime's limits).

    Raises:
        InvalidReportError: the text is not strict JSON or holds a value the core refuses.
    """
    try:
        return loads(data, things.JSON_LIMITS)
    except TextInputError as e:
        raise InvalidReportError(e.message, e.pointer or "") from None


def _problem(e: ServiceError) -> InvalidReportError:
    return InvalidReportError(e.detail, e.pointer or "")


def check_report(
    report: Any, what: str = "report", *, values_checked: bool = False
) -> dict[str, dict[str, Any]]:
    """Check a device report (or desired state): ``{feature_id: merge patch of its
    properties}``, as ``docs/mqtt.md`` describes reports; returns it unchanged.

    Parameters:
        report: the decoded JSON value.
        what: how to name it in messages (``"report"``, ``"desired state"``).
        values_checked: ``report`` was read by :func:`twinedge.textinput.loads` under
            :data:`twinedge.runtime.things.JSON_LIMITS` (as the MQTT gateway reads a
            payload), which refused every value the core would not store: its values are
            not walked again (its shape, feature ids and depth still are).

    Raises:
        InvalidReportError: not a non-empty object, a feature id that is not valid, a
            feature patch that is not an object, a value the core would not store, or
            nesting deeper than the document allows; ``pointer`` says where.

    Examples:
        >>> check_report({"battery": {"level": 71}})
        {'battery': {'level': 71}}
        >>> check_report({"battery": 71})
        Traceback (most recent call last):
        ...
        twinedge.edge.errors.InvalidReportError: feature 'battery': the properties patch must be a JSON object (at '/battery')
    """
    if not isinstance(report, dict) or not report:
        raise InvalidReportError(
            f"a {what} must be a non-empty JSON object of feature id -> properties merge patch"
        )
    for fid, props in report.items():
        if not isinstance(props, dict):
            raise InvalidReportError(
                f"feature {fid!r}: the properties patch must be a JSON object",
                f"/{things.escape_token(str(fid))}",
            )
    try:
        for fid, props in report.items():
            if type(fid) is not str or not things.FEATURE_ID_RE.fullmatch(fid):
                things.validate_feature(fid, {"properties": props})  # raises, saying why
        if not values_checked:
            things.check_json(report)
    except ServiceError as e:
        raise _problem(e) from None
    if _too_deep(report, things.MAX_DEPTH - 3):
        raise InvalidReportError(f"the {what} nests deeper than {things.MAX_DEPTH - 3} levels")
    return report


def _too_deep(v: Any, limit: int) -> bool:
    """:func:`twinedge.runtime.things.too_deep` for decoded JSON (plain dicts and lists),
    without a generator per level."""
    if limit < 0:
        return True
    t = type(v)
    if t is dict:
        children = v.values()
    elif t is list:
        children = v
    else:
        return False
    if limit == 0:
        return True
    for x in children:
        tx = type(x)
        if (tx is dict or tx is list) and _too_deep(x, limit - 1):
            return True
    return False


def report_patch(report: Mapping[str, Any]) -> Patch:
    """The document patch of a (checked) report: each feature's properties merged.

    Examples:
        >>> report_patch({"battery": {"level": 71, "old": None}})
        {'features': {'battery': {'properties': {'level': 71, 'old': None}}}}
    """
    return {"features": {fid: {"properties": props} for fid, props in report.items()}}


def desired_patch(desired: Mapping[str, Any]) -> Patch:
    """The document patch of (checked) desired state: each feature's desiredProperties.

    Examples:
        >>> desired_patch({"lights": {"on": True}})
        {'features': {'lights': {'desiredProperties': {'on': True}}}}
    """
    return {"features": {fid: {"desiredProperties": props} for fid, props in desired.items()}}


def check_patch(patch: Any, what: str = "patch") -> Patch:
    """Check a merge patch of the twin document (what a behaviour hook returns).

    Only ``attributes`` and ``features`` may change; a feature holds ``properties`` and
    ``desiredProperties`` (objects) and may be removed with ``null``.

    Raises:
        InvalidReportError: anything else, with a pointer to it.

    Examples:
        >>> check_patch({"features": {"pos": {"properties": {"x_m": 1.5}}}})
        {'features': {'pos': {'properties': {'x_m': 1.5}}}}
        >>> check_patch({"_revision": 3})
        Traceback (most recent call last):
        ...
        twinedge.edge.errors.InvalidReportError: patch: only 'attributes' and 'features' may change, not '_revision' (at '/_revision')
    """
    if not isinstance(patch, dict):
        raise InvalidReportError(f"{what} must be a JSON object, got {type(patch).__name__}")
    for key, value in patch.items():
        if key not in ("attributes", "features"):
            raise InvalidReportError(
                f"{what}: only 'attributes' and 'features' may change, not {key!r}",
                f"/{things.escape_token(str(key))}",
            )
        if not isinstance(value, dict):
            raise InvalidReportError(f"{what}: {key} must be a JSON object", f"/{key}")
    for fid, f in (patch.get("features") or {}).items():
        at = f"/features/{things.escape_token(str(fid))}"
        if not isinstance(fid, str) or not things.FEATURE_ID_RE.fullmatch(fid):
            raise InvalidReportError(f"{what}: feature id {fid!r} is not valid", at)
        if f is None:
            continue
        if not isinstance(f, dict):
            raise InvalidReportError(f"{what}: feature {fid!r} must be an object or null", at)
        for k, v in f.items():
            if k not in _FEATURE_KEYS:
                raise InvalidReportError(
                    f"{what}: feature {fid!r} has unknown field {k!r}; a feature has "
                    "properties and desiredProperties",
                    f"{at}/{things.escape_token(str(k))}",
                )
            if v is not None and not isinstance(v, dict):
                raise InvalidReportError(f"{what}: {k} must be a JSON object", f"{at}/{k}")
    try:
        check_value(patch, things.JSON_LIMITS)
    except TextInputError as e:
        raise InvalidReportError(f"{what}: {e.message}", e.pointer or "") from None
    if things.too_deep(patch, things.MAX_DEPTH):
        raise InvalidReportError(f"{what} nests deeper than {things.MAX_DEPTH} levels")
    return patch


def patch_changes(target: Any, patch: Patch) -> bool:
    """Whether the merge patch ``patch`` (an object) changes ``target``: exactly
    ``not json_equal(merge_patch(target, patch), target)``, found by walking the patch
    alone (nothing is copied, the rest of the document is never looked at).

    Examples:
        >>> doc = {"features": {"battery": {"properties": {"level": 71}}}}
        >>> patch_changes(doc, {"features": {"battery": {"properties": {"level": 71}}}})
        False
        >>> patch_changes(doc, {"features": {"battery": {"properties": {"level": 71.0}}}})
        True
        >>> patch_changes(doc, {"features": {"gps": None}}), patch_changes(doc, {"attributes": {}})
        (False, True)
    """
    if not isinstance(target, dict):
        return True  # the merge makes an object of it
    for k, v in patch.items():
        if v is None:
            if k in target:
                return True
        elif isinstance(v, dict):
            if k not in target or patch_changes(target[k], v):
                return True
        elif k not in target or not things.json_equal(target[k], v):
            return True
    return False


def new_document(twin_id: str, document: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A twin document for ``twin_id``: ``document`` checked like a thing body (service
    fields such as ``_revision`` dropped), or an empty twin.

    Raises:
        InvalidReportError: the id is not a thing id (``namespace:name``) or the body is
            not a valid thing.

    Examples:
        >>> new_document("fleet:car-7")
        {'thingId': 'fleet:car-7', 'attributes': {}, 'features': {}}
    """
    try:
        things.check_thing_id(twin_id)
        body = {k: v for k, v in (document or {}).items() if k not in things.META_FIELDS}
        doc = things.validate_thing(body, twin_id)
    except ServiceError as e:
        raise _problem(e) from None
    if len(encode(doc)) > MAX_TWIN_BYTES:
        raise InvalidReportError(f"twin {twin_id} is larger than {MAX_TWIN_BYTES // 1000} kB")
    return doc
